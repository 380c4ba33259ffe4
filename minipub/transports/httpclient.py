"""The default transport: pooled keep-alive ``http.client`` connections, thread-safe."""

from __future__ import annotations

import http.client
import socket
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from .. import _fork
from ..errors import ConnectError, ConnectionLostError, ProtocolError, TLSError, TransportError, TransportTimeout
from .base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from .proxy import Proxy, parse_proxy, select_proxy

if TYPE_CHECKING:
    import ssl

__all__ = ["HTTPClientTransport"]

_Origin = Tuple[str, str, int]  # scheme, host, port

# Failures of a reused idle connection that mean "the server had closed it": send again once.
_STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)


class _Stale(Exception):
    pass


def split_origin(url: str) -> Tuple[_Origin, str]:
    """The (scheme, host, port) of a URL and its path with query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"cannot send to {parts.scheme}://{parts.hostname or ''}: not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return (parts.scheme, parts.hostname, port), target


def map_os_error(exc: BaseException, *, connecting: bool) -> TransportError:
    """A socket-level exception as minipub's transport error (messages carry no secrets)."""
    ssl: Any = sys.modules.get("ssl")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransportTimeout("connect timed out" if connecting else "timed out waiting for the response")
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(f"TLS certificate verification failed: {exc.verify_message}")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS error: {exc.reason or exc}")
    if connecting or isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return ConnectError(f"could not connect: {exc}")
    if isinstance(exc, (http.client.IncompleteRead, ConnectionError, http.client.RemoteDisconnected)):
        return ConnectionLostError(f"connection lost: {type(exc).__name__}")
    if isinstance(exc, http.client.HTTPException):
        return ProtocolError(f"invalid HTTP response: {type(exc).__name__}: {exc}"[:300])
    return ConnectionLostError(f"connection failed: {type(exc).__name__}: {exc}")


def read_capped(stream: IO[bytes], max_body: int) -> Tuple[bytes, bool]:
    """At most ``max_body`` bytes of a response body and whether there was more.

    A body that ends before its ``Content-Length`` raises ``IncompleteRead`` (``read(n)`` alone
    would return it short, as if whole).
    """
    expected = getattr(stream, "length", None)
    body = stream.read(max_body + 1)
    if isinstance(expected, int) and len(body) < min(expected, max_body + 1):
        raise http.client.IncompleteRead(body, expected - len(body))
    if len(body) > max_body:
        return body[:max_body], True
    return body, False


class HTTPClientTransport:
    """Keep-alive connections per origin, reused across calls and threads (one user at a time).

    ``proxy``: ``"env"`` (default: ``HTTP(S)_PROXY``/``NO_PROXY``), ``None`` (direct) or a URL.
    """

    supports_keepalive = True
    supports_proxy = True

    def __init__(
        self,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        proxy: Optional[str] = "env",
        max_body: int = DEFAULT_MAX_BODY,
        pool_size: int = 10,
        connect_timeout: Optional[float] = None,
    ) -> None:
        if proxy not in (None, "env"):
            parse_proxy(proxy)  # a bad URL fails here, not on the first send
        self._ssl_context = ssl_context
        self._tls_files = (ca_file, client_cert, client_key)
        self._proxy_setting = proxy
        self._max_body = max_body
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle: Dict[_Origin, List[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._targets: Dict[str, Tuple[_Origin, str]] = {}
        _fork.register(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pool_size={self._pool_size}, max_body={self._max_body})"

    def _after_fork_in_child(self) -> None:
        """A forked child never uses the parent's sockets: it closes its copies (close(2) only, no
        shutdown or TLS alert, so the parent's connections are untouched) and starts an empty pool."""
        self._lock = threading.Lock()
        idle, self._idle = self._idle, {}
        for conn in (conn for conns in idle.values() for conn in conns):
            conn.close()

    # -- connections ---------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            from .tls import make_ssl_context

            ca_file, cert, key = self._tls_files
            self._ssl_context = make_ssl_context(ca_file=ca_file, client_cert=cert, client_key=key)
        return self._ssl_context

    def _connect(self, origin: _Origin, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = origin
        proxy = select_proxy(self._proxy_setting, *origin)
        connect_timeout = min(timeout, self._connect_timeout or timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                proxy.host if proxy else host, proxy.port if proxy else port,
                timeout=connect_timeout, context=self._context(),
            )
            if proxy:
                headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                conn.set_tunnel(host, port, headers=headers)
        else:
            conn = http.client.HTTPConnection(proxy.host if proxy else host, proxy.port if proxy else port,
                                              timeout=connect_timeout)
        conn._minipub_proxy = proxy if scheme == "http" else None  # type: ignore[attr-defined]
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc, connecting=True) from None
        sock = conn.sock
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _checkout(self, origin: _Origin) -> Optional[http.client.HTTPConnection]:
        with self._lock:
            if self._closed:
                raise ConnectError("transport is closed")
            idle = self._idle.get(origin)
            return idle.pop() if idle else None

    def _checkin(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._pool_size:
                idle.append(conn)
                return
        conn.close()

    # -- sending -------------------------------------------------------------------------

    def _target(self, url: str) -> Tuple[_Origin, str]:
        found = self._targets.get(url)
        if found is None:
            found = self._targets[url] = split_origin(url)
        return found

    def send(self, request: HTTPRequest) -> HTTPResponse:
        origin, path = self._target(request.url)
        conn = self._checkout(origin)
        if conn is not None:
            try:
                return self._exchange(origin, conn, path, request, reused=True)
            except _Stale:
                pass  # the server closed the idle connection: send once more on a fresh one
        conn = self._connect(origin, request.timeout)
        try:
            return self._exchange(origin, conn, path, request, reused=False)
        except _Stale as stale:  # pragma: no cover - _Stale is raised only for reused connections
            raise ConnectionLostError("connection lost") from stale

    def _exchange(
        self, origin: _Origin, conn: http.client.HTTPConnection, path: str, request: HTTPRequest, *, reused: bool
    ) -> HTTPResponse:
        proxy: Optional[Proxy] = getattr(conn, "_minipub_proxy", None)
        headers = request.headers
        if proxy is not None:  # plain http through a proxy: absolute URL, proxy credentials
            path = request.url
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        try:
            if conn.sock is not None:
                conn.sock.settimeout(request.timeout)
            conn.timeout = request.timeout
            conn.request(request.method, path, request.body, headers)
            response = conn.getresponse()
        except _STALE as exc:
            conn.close()
            if reused:
                raise _Stale() from None
            raise map_os_error(exc, connecting=False) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc, connecting=False) from None
        try:
            body, truncated = read_capped(response, self._max_body)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc, connecting=False) from None
        result = HTTPResponse(response.status, dict(response.getheaders()), body, truncated)
        if truncated or response.will_close or not response.isclosed():
            conn.close()
        else:
            self._checkin(origin, conn)
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()
