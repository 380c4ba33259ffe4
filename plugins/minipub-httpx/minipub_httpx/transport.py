"""A minipub transport on httpx: HTTP/2 when ``h2`` is installed, or the ``httpx.Client`` you configured.

It keeps minipub's transport contract (``minipub.testing.TransportContract``): the request is
sent exactly as given (no client default headers), redirects are never followed, the body is
read raw up to ``max_body`` (then the connection is dropped), ``request.timeout`` bounds the
whole attempt (with the transport's own clients: ``bounded.py``), the header rule is minipub's
(``ValidationError`` before sending), a pooled connection the server closed while idle is
replaced by one resend, and every failure is one of ``minipub.errors``' transport errors.

``send_async`` (``await sdk.publish.event_async(...)``) keeps the same rules with an
``httpx.AsyncClient`` (``asyncclients.py``): one per running event loop, closed with it.
"""

from __future__ import annotations

import ssl
import threading
from importlib.util import find_spec
from typing import Any, Dict, List, Optional, Tuple

import httpx

from minipub.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    TLSError,
    TransportError,
    TransportTimeout,
)
from minipub.transports.base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from minipub.transports.common import header_block
from minipub.transports.proxy import Proxy, parse_proxy, select_proxy

from .asyncbounded import BoundedAsyncBackend
from .asyncclients import LoopClients
from .bounded import Attempt, BoundedBackend, current

__all__ = ["HttpxTransport", "map_httpx_error"]

_MAX_MESSAGE = 300
_LOST = ("disconnected", "peer closed", "incomplete", "connection closed", "connectionterminated")
_ProxyKey = Optional[Tuple[str, int, Optional[str]]]


def _ssl_cause(exc: BaseException) -> Optional[ssl.SSLError]:
    seen = 0
    cause: Optional[BaseException] = exc
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def _tls_error(cause: ssl.SSLError) -> TLSError:
    if isinstance(cause, ssl.SSLCertVerificationError):
        return TLSError(f"TLS certificate verification failed: {cause.verify_message}")
    return TLSError(f"TLS error: {cause.reason or type(cause).__name__}")


def _forget_frames(exc: BaseException) -> None:
    """Drop the frames of ``exc`` and of everything chained to it: httpx's and httpcore's frames
    hold the request headers (the key), which error reporters would record as frame locals."""
    seen = 0
    pending: List[Optional[BaseException]] = [exc]
    while pending and seen < 50:
        current_exc = pending.pop()
        if current_exc is None:
            continue
        seen += 1
        current_exc.with_traceback(None)
        pending.extend([current_exc.__cause__, current_exc.__context__])


def map_httpx_error(exc: Exception) -> TransportError:
    """An httpx failure as minipub's transport error (the message never carries headers)."""
    text = f"{type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
    if isinstance(exc, httpx.TimeoutException):
        return TransportTimeout("connect timed out" if isinstance(exc, httpx.ConnectTimeout)
                                else f"timed out ({type(exc).__name__})")
    tls = _ssl_cause(exc)
    if tls is not None:
        return _tls_error(tls)
    if isinstance(exc, (httpx.ProxyError, httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ConnectError(f"could not connect: {text}")
    if isinstance(exc, httpx.RemoteProtocolError):
        if any(marker in str(exc).lower() for marker in _LOST):
            return ConnectionLostError(f"connection lost: {text}")
        return ProtocolError(f"invalid HTTP response: {text}")
    if isinstance(exc, httpx.LocalProtocolError):
        return ProtocolError(f"the request could not be sent as HTTP: {text}")
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return ConnectionLostError(f"connection lost: {text}")
    return TransportError(f"request failed: {text}")


class HttpxTransport:
    """Sends through httpx. Without ``client``, it makes its own clients (one per proxy in use).

    ``client``: your ``httpx.Client`` (proxies, CA bundle, limits, HTTP/2, mounts are yours; the
    client stays yours: ``close()`` does not close it, and TLS/proxy options cannot be given).
    ``http2``: offer HTTP/2 (ALPN, over https); default: when ``h2`` is installed.
    ``proxy``: ``"env"`` (``HTTP(S)_PROXY``/``NO_PROXY``, the same rules as minipub's built-in
    transport), ``None`` (direct) or a proxy URL.
    """

    supports_keepalive = True
    supports_proxy = True

    def __init__(
        self,
        client: Optional[httpx.Client] = None,
        *,
        http2: Optional[bool] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        proxy: Optional[str] = "env",
        max_body: int = DEFAULT_MAX_BODY,
        pool_size: int = 10,
    ) -> None:
        if client is not None and not isinstance(client, httpx.Client):
            raise ConfigurationError("HttpxTransport(client=...) must be an httpx.Client (not an AsyncClient)")
        if client is not None and (ssl_context or ca_file or client_cert or client_key or proxy not in ("env", None)):
            raise ConfigurationError("with client=..., configure TLS and proxies on your httpx.Client")
        if proxy not in (None, "env"):
            parse_proxy(proxy)  # a bad URL fails here, not on the first send
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ConfigurationError(f"max_body must be an int >= 0, got {max_body!r}")
        self._own = client is None
        self._user_client = client
        self.http2 = (find_spec("h2") is not None) if http2 is None else bool(http2)
        self._ssl_context = ssl_context
        self._tls_files = (ca_file, client_cert, client_key)
        self._proxy_setting = proxy
        self._max_body = max_body
        self._pool_size = pool_size
        self._clients: Dict[_ProxyKey, httpx.Client] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._async_clients = LoopClients(self._make_async_client)

    def __repr__(self) -> str:
        source = "own clients" if self._own else "caller's client"
        return f"HttpxTransport({source}, http2={self.http2}, max_body={self._max_body})"

    @property
    def max_body(self) -> int:
        """The response body cap, in bytes (more is cut off and the connection dropped)."""
        return self._max_body

    @property
    def open_clients(self) -> int:
        """How many ``httpx.Client`` this transport made and has open (``send``)."""
        return len(self._clients)

    @property
    def open_async_clients(self) -> int:
        """How many ``httpx.AsyncClient`` this transport made and has open (``send_async``; one per loop)."""
        return self._async_clients.count()

    # -- clients -------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            from minipub.transports.tls import make_ssl_context

            ca_file, cert, key = self._tls_files
            self._ssl_context = make_ssl_context(ca_file=ca_file, client_cert=cert, client_key=key)
        return self._ssl_context

    def _proxy_key(self, url: httpx.URL) -> Tuple[_ProxyKey, Optional[Proxy]]:
        proxy = select_proxy(self._proxy_setting, url.scheme, url.host,
                             url.port or (443 if url.scheme == "https" else 80))
        key: _ProxyKey = tuple(proxy) if proxy is not None else None  # type: ignore[assignment]
        return key, proxy

    def _client(self, url: httpx.URL) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        key, proxy = self._proxy_key(url)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                if self._closed:
                    raise ConnectError("transport is closed")
                client = self._clients.get(key)
                if client is None:
                    client = self._clients[key] = self._make_client(proxy)
        return client

    def _httpx_proxy(self, proxy: Optional[Proxy]) -> Optional[httpx.Proxy]:
        if proxy is None:
            return None
        headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
        return httpx.Proxy(f"http://{proxy.host}:{proxy.port}", headers=headers)

    def _make_client(self, proxy: Optional[Proxy]) -> httpx.Client:
        limits = httpx.Limits(max_keepalive_connections=self._pool_size)
        transport = httpx.HTTPTransport(verify=self._context(), http2=self.http2, proxy=self._httpx_proxy(proxy),
                                        limits=limits, trust_env=False)
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):  # pragma: no cover - an httpx we do not know
            raise ConfigurationError("this httpx/httpcore cannot take minipub's bounded network backend")
        pool._network_backend = BoundedBackend()  # every socket operation keeps to the attempt's deadline
        return httpx.Client(transport=transport, trust_env=False, follow_redirects=False, headers=None)

    def _make_async_client(self, proxy: Optional[Proxy]) -> httpx.AsyncClient:
        # The whole attempt runs under one asyncio deadline (send_async), whose cancellation closes
        # the connection it was using; the backend keeps the head cap and hears early answers.
        limits = httpx.Limits(max_keepalive_connections=self._pool_size)
        transport = httpx.AsyncHTTPTransport(verify=self._context(), http2=self.http2,
                                             proxy=self._httpx_proxy(proxy), limits=limits, trust_env=False)
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):  # pragma: no cover - an httpx we do not know
            raise ConfigurationError("this httpx/httpcore cannot take minipub's bounded network backend")
        pool._network_backend = BoundedAsyncBackend()  # the head cap, and answers heard during an upload
        return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False, headers=None)

    # -- sending -------------------------------------------------------------------------------

    def _url(self, request: HTTPRequest) -> httpx.URL:
        if self._closed:
            raise ConnectError("transport is closed")
        header_block(request)  # minipub's header rule: a ValidationError naming the header, never its value
        try:
            url = httpx.URL(request.url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConnectError(f"cannot send to this URL: {type(exc).__name__}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConnectError(f"cannot send to {url.scheme}://{url.host}: not an http(s) URL")
        return url

    def send(self, request: HTTPRequest) -> HTTPResponse:
        url = self._url(request)
        client = self._client(url)
        attempt = Attempt(request.timeout)
        token = current.set(attempt)
        try:
            return self._send(client, url, request, attempt)
        finally:
            current.reset(token)

    def _send(self, client: httpx.Client, url: httpx.URL, request: HTTPRequest, attempt: Attempt) -> HTTPResponse:
        timeout = httpx.Timeout(request.timeout).as_dict()
        for resend in (False, True):
            connected: List[str] = []

            def trace(event: str, info: Dict[str, Any], connected: List[str] = connected) -> None:
                attempt.trace(event, info)
                if "connect_tcp" in event:
                    connected.append(event)

            try:
                response = client.send(httpx.Request(request.method, url, headers=request.headers,
                                                     content=request.body,
                                                     extensions={"timeout": timeout, "trace": trace}),
                                       stream=True, follow_redirects=False)
            except (httpx.HTTPError, RuntimeError) as exc:
                if _resend(exc, resend, connected):
                    continue  # an idle pooled connection the server had closed: once more, fresh
                raise _mapped(exc) from None
            try:
                body, truncated = self._read(response)
            except httpx.HTTPError as exc:
                raise _mapped(exc) from None
            finally:
                response.close()
            return HTTPResponse(response.status_code, dict(response.headers.items()), body, truncated)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, response: httpx.Response) -> Tuple[bytes, bool]:
        body = bytearray()  # one buffer: a body of 1-byte chunks costs its size, not a list of objects
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > self._max_body:
                return bytes(body[: self._max_body]), True
        return bytes(body), False

    # -- sending, awaited ----------------------------------------------------------------------

    async def send_async(self, request: HTTPRequest) -> HTTPResponse:
        """:meth:`send` on the running event loop, through this loop's ``httpx.AsyncClient``.

        ``request.timeout`` bounds the whole attempt (connect, upload, answer, body): one deadline,
        whose cancellation closes the connection. With a caller's (sync) ``client``, :meth:`send`
        runs in a worker thread.
        """
        import asyncio

        url = self._url(request)
        if self._user_client is not None:
            return await asyncio.to_thread(self.send, request)
        key, proxy = self._proxy_key(url)
        client = await self._async_clients.get(key, proxy)
        token = current.set(Attempt(request.timeout))  # the head cap's count (asyncbounded.py)
        try:
            return await asyncio.wait_for(self._send_async(client, url, request), max(request.timeout, 0.001))
        except asyncio.TimeoutError:
            raise TransportTimeout(f"timed out (the attempt's {request.timeout:g} s ran out)") from None
        finally:
            current.reset(token)

    async def _send_async(self, client: httpx.AsyncClient, url: httpx.URL, request: HTTPRequest) -> HTTPResponse:
        timeout = httpx.Timeout(request.timeout).as_dict()
        for resend in (False, True):
            connected: List[str] = []

            async def trace(event: str, info: Dict[str, Any], connected: List[str] = connected) -> None:
                attempt = current.get()
                if attempt is not None:
                    attempt.trace(event, info)
                if "connect_tcp" in event:
                    connected.append(event)

            try:
                response = await client.send(httpx.Request(request.method, url, headers=request.headers,
                                                           content=request.body,
                                                           extensions={"timeout": timeout, "trace": trace}),
                                             stream=True, follow_redirects=False)
            except (httpx.HTTPError, RuntimeError, OSError) as exc:
                if _resend(exc, resend, connected):
                    continue
                raise _mapped(exc) from None
            try:
                body, truncated = await self._read_async(response)
            except (httpx.HTTPError, OSError) as exc:
                raise _mapped(exc) from None
            finally:
                await response.aclose()
            return HTTPResponse(response.status_code, dict(response.headers.items()), body, truncated)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_async(self, response: httpx.Response) -> Tuple[bytes, bool]:
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self._max_body:
                return bytes(body[: self._max_body]), True
        return bytes(body), False

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients this transport made (a caller's client stays open). Idempotent.

        The async clients of an event loop running in this thread are closed by a task on it (and,
        at the latest, when ``asyncio.run`` finalizes the loop); ``await aclose()`` closes them at once.
        """
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        self._async_clients.close()

    async def aclose(self) -> None:
        """:meth:`close`, awaited: the running loop's async clients are closed before it returns."""
        self.close()
        await self._async_clients.aclose_running()


def _resend(exc: Exception, resend: bool, connected: List[str]) -> bool:
    """Whether a failed send goes once more on a fresh connection: the first try, on a pooled
    connection (no new one was opened) that turned out closed."""
    return (not resend and not connected and isinstance(exc, httpx.HTTPError)
            and isinstance(map_httpx_error(exc), ConnectionLostError))


def _mapped(exc: Exception) -> TransportError:
    """A failure of httpx (or of a closed caller's client) as minipub's, its frames dropped."""
    _forget_frames(exc)
    if isinstance(exc, RuntimeError):  # the caller's client was closed
        return ConnectError(f"the httpx client cannot send: {exc}")
    if isinstance(exc, OSError):  # not mapped by httpcore (a TLS alert after the handshake, say)
        tls = _ssl_cause(exc)
        return _tls_error(tls) if tls is not None else ConnectionLostError(f"connection lost: {type(exc).__name__}")
    return map_httpx_error(exc)
