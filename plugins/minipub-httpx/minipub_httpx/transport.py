"""A minipub transport on httpx: HTTP/2 when ``h2`` is installed, or the ``httpx.Client`` you configured.

It keeps minipub's transport contract (``minipub.testing.TransportContract``): the request is
sent exactly as given (no client default headers), redirects are never followed, the body is
read raw up to ``max_body`` (then the connection is dropped), ``request.timeout`` bounds the
whole attempt (with the transport's own clients: ``bounded.py``), the header rule is minipub's
(``ValidationError`` before sending), a pooled connection the server closed while idle is
replaced by one resend, and every failure is one of ``minipub.errors``' transport errors.

``send_async`` (``await sdk.publish.event_async(...)``) keeps the same rules with an
``httpx.AsyncClient`` (``asyncsend.py``): one per running event loop, closed with it.
"""

from __future__ import annotations

import ssl
import threading
from importlib.util import find_spec
from typing import Any, Dict, List, Optional, Tuple

import httpx

from minipub.errors import ConfigurationError, ConnectError
from minipub.transports.base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from minipub.transports.common import header_block
from minipub.transports.proxy import Proxy, parse_proxy, select_proxy

from .asyncclients import LoopClients
from .asyncsend import AsyncSending
from .bounded import Attempt, BoundedBackend, current, install_backend
from .errors import map_httpx_error, mapped, resend_fresh

__all__ = ["HttpxTransport", "map_httpx_error"]

_ProxyKey = Optional[Proxy]  # a Proxy is hashable: one client per proxy


class HttpxTransport(AsyncSending):
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
        self._async_clients = LoopClients(self._make_async_client)  # send_async's (asyncsend.py)

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
        return proxy, proxy

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
        install_backend(transport, BoundedBackend())  # every socket operation keeps to the attempt's deadline
        return httpx.Client(transport=transport, trust_env=False, follow_redirects=False, headers=None)

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
                if resend_fresh(exc, resend, connected):
                    continue  # an idle pooled connection the server had closed: once more, fresh
                raise mapped(exc) from None
            try:
                body, truncated = self._read(response)
            except httpx.HTTPError as exc:
                raise mapped(exc) from None
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
