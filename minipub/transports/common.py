"""What the pooled transports share: URL splitting, error mapping, connection settings, the idle pool,
and ``PooledTransport`` (the bounded attempt itself is in ``bounded.py``)."""

from __future__ import annotations

import os
import socket

from .. import _fork
from .._modules import loaded_module
from .._url import urlsplit
from ..errors import (
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    TLSError,
    TransportError,
    TransportTimeout,
)
from .base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from .bounded import (  # re-exported: plugins import them from here
    READ_SIZE,
    TIMEOUT_SLACK,
    Deadline,
    Sealed,
    Stale,
    header_block,
    idle_clean,
    read_response,
    readable,
    send_request,
)
from .proxy import Proxy, parse_proxy, select_proxy

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any, Callable, Dict, Generic, List, Optional, Protocol, Tuple, TypedDict, TypeVar

    from typing_extensions import Unpack

    class ConnectSettings(TypedDict, total=False):
        """:class:`ConnectOptions`' arguments, for the transports that pass them on."""

        ssl_context: Optional[ssl.SSLContext]
        ca_file: Optional[str]
        client_cert: Optional[str]
        client_key: Optional[str]
        proxy: Optional[str]
        connect_timeout: Optional[float]

    class _Closable(Protocol):
        def close(self) -> None: ...
else:
    from .._runtime_typing import Generic, TypeVar


__all__ = ["split_origin", "map_os_error", "ConnectOptions", "IdlePool", "PooledTransport", "Stale",
           "Deadline", "Sealed", "header_block", "send_request",
           "read_response", "readable", "idle_clean", "loaded_module", "READ_SIZE", "TIMEOUT_SLACK"]


if TYPE_CHECKING:
    Origin = Tuple[str, str, int]  # scheme, host, port
C = TypeVar("C")


def split_origin(url: str) -> Tuple[Origin, str]:
    """The (scheme, host, port) of a URL and its path with query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"cannot send to {parts.scheme}://{parts.hostname or ''}: not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return (parts.scheme, parts.hostname, port), target


def _os_reason(exc: BaseException) -> str:
    """An OSError as the system says it (asyncio's "Connect call failed (...)" becomes "Connection refused")."""
    number = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and isinstance(number, int) and number > 0:
        return f"[Errno {number}] {os.strerror(number)}"
    return str(exc)


def map_os_error(exc: BaseException, *, connecting: bool, target: Optional[Tuple[str, int]] = None) -> TransportError:
    """A socket-level exception as minipub's transport error (messages carry no secrets);
    ``target``, the host and port being connected to, is named in a connect failure.

    ``ssl`` and ``http.client`` are not imported here: an instance implies its module is loaded.
    """
    ssl: Any = loaded_module("ssl")
    client: Any = loaded_module("http.client")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransportTimeout("connect timed out" if connecting else "timed out waiting for the response")
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(f"TLS certificate verification failed: {exc.verify_message}")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS error: {exc.reason or exc}")
    if connecting or isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        where = "" if target is None else f" to {target[0]}:{target[1]}"
        return ConnectError(f"could not connect{where}: {_os_reason(exc)}")
    if isinstance(exc, ConnectionError) or (
        client is not None and isinstance(exc, (client.IncompleteRead, client.RemoteDisconnected))
    ):
        return ConnectionLostError(f"connection lost: {type(exc).__name__}")
    if client is not None and isinstance(exc, client.HTTPException):
        return ProtocolError(f"invalid HTTP response: {type(exc).__name__}: {exc}"[:300])
    return ConnectionLostError(f"connection failed: {type(exc).__name__}: {exc}")


class ConnectOptions:
    """How connections are opened: the TLS context (made on first use), the proxy, the connect timeout.

    ``proxy``: ``"env"`` (``HTTP(S)_PROXY``/``NO_PROXY``), ``None`` (direct) or a proxy URL.
    """

    def __init__(
        self,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        proxy: Optional[str] = "env",
        connect_timeout: Optional[float] = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._tls_files = (ca_file, client_cert, client_key)
        if proxy not in (None, "env"):
            parse_proxy(proxy)  # a bad URL fails here, not on the first send
        self._proxy_setting = proxy
        self._connect_timeout = connect_timeout

    def ssl_context(self) -> ssl.SSLContext:
        """The verifying client context (``tls.make_ssl_context``), or the one given."""
        if self._ssl_context is None:
            from .tls import make_ssl_context

            ca_file, cert, key = self._tls_files
            self._ssl_context = make_ssl_context(ca_file=ca_file, client_cert=cert, client_key=key)
        return self._ssl_context

    def proxy(self, origin: Origin) -> Optional[Proxy]:
        """The proxy to go through for this origin, or None."""
        return select_proxy(self._proxy_setting, *origin)

    def connect_timeout(self, deadline: Deadline) -> float:
        """The timeout for opening a connection: the attempt's time left, capped by ``connect_timeout``."""
        left = deadline.left()
        return min(left, self._connect_timeout or left)


class IdlePool(Generic[C]):
    """Idle keep-alive connections per origin, at most ``size`` each; thread-safe.

    Lock-free: each origin's list is only popped and appended to (atomic list operations), and
    ``close`` sets ``closed`` before it drains, so a connection checked in meanwhile is either
    drained by it or, ``closed`` seen after the append, closed by its own checkin.
    """

    def __init__(self, size: int, close: Callable[[C], None]) -> None:
        self.size = size
        self._close = close
        self._idle: Dict[Origin, List[C]] = {}
        self.closed = False
        _fork.register(self)

    def _after_fork_in_child(self) -> None:
        """A forked child never uses the parent's sockets: it closes its copies (close(2) only, no
        shutdown or TLS alert, so the parent's connections are untouched) and starts an empty pool."""
        idle, self._idle = self._idle, {}
        for conn in (conn for conns in idle.values() for conn in conns):
            self._close(conn)

    def checkout(self, origin: Origin) -> Optional[C]:
        """An idle connection to reuse, or None; raises once the transport is closed."""
        if self.closed:
            raise ConnectError("transport is closed")
        idle = self._idle.get(origin)
        try:
            return idle.pop() if idle else None
        except IndexError:  # another thread took the last one
            return None

    def checkin(self, origin: Origin, conn: C) -> None:
        """Keep a connection for reuse (or close it when the pool is full or closed)."""
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle.setdefault(origin, [])
        idle.append(conn)
        while self.closed or len(idle) > self.size:  # the oldest goes (threads checking in at once)
            try:
                self._close(idle.pop(0))
            except IndexError:
                return

    def close(self) -> None:
        """Close every idle connection; later checkouts raise."""
        self.closed = True
        for idle in list(self._idle.values()):
            while idle:
                try:
                    conn = idle.pop()
                except IndexError:
                    break
                self._close(conn)


# Bound by a string: the Protocol exists for type checkers only.
K = TypeVar("K", bound="_Closable")
#: One exchange on a connection: (request, what the transport prepared for it, origin, connection,
#: request target, reused, deadline) -> response. A method, not a closure made per request.
if TYPE_CHECKING:
    Exchange = Callable[[HTTPRequest, Any, Origin, K, str, bool, Deadline], HTTPResponse]


class PooledTransport(Generic[K]):
    """What the keep-alive transports share: options, the idle pool, and the stale-connection rule.

    Subclasses open connections (``_connect``) and run one exchange; an exchange on a reused
    connection raises :class:`Stale` when the server had closed it, and the request is then
    sent once more on a fresh connection (safe: the event id is fixed).
    """

    supports_keepalive = True
    supports_proxy = True

    def __init__(self, *, max_body: int = DEFAULT_MAX_BODY, pool_size: int = 10,
                 **connect: Unpack[ConnectSettings]) -> None:
        self._options = ConnectOptions(**connect)
        self._max_body = max_body
        self._pool: IdlePool[K] = IdlePool(pool_size, _close)
        self._targets: Dict[str, Tuple[Origin, str]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pool_size={self._pool.size}, max_body={self._max_body})"

    def _connect(self, origin: Origin, deadline: Deadline) -> K:
        raise NotImplementedError

    def _socket(self, conn: K) -> Optional[socket.socket]:
        raise NotImplementedError

    def _idle_clean(self, conn: K) -> bool:
        """True when an idle connection received nothing since its last response (:func:`idle_clean`)."""
        return idle_clean(self._socket(conn))

    def _target(self, url: str) -> Tuple[Origin, str]:
        found = self._targets.get(url)
        if found is None:
            found = self._targets[url] = split_origin(url)
        return found

    def _roundtrip(self, request: HTTPRequest, exchange: Exchange[K], prepared: Any = None) -> HTTPResponse:
        """Send on an idle connection if there is a clean one, else (or if it was stale) on a fresh one.

        ``request.timeout`` bounds the whole attempt: connect, send, wait and read.
        """
        deadline = Deadline(request.timeout)
        origin, target = self._target(request.url)
        conn = self._pool.checkout(origin)
        while conn is not None and not self._idle_clean(conn):
            conn.close()  # bytes or an EOF arrived while it was idle: never read them as our answer
            conn = self._pool.checkout(origin)
        if conn is not None:
            try:
                return exchange(request, prepared, origin, conn, target, True, deadline)
            except Stale:
                pass  # the server closed the idle connection: send once more on a fresh one
        conn = self._connect(origin, deadline)
        try:
            return exchange(request, prepared, origin, conn, target, False, deadline)
        except Stale as stale:  # pragma: no cover - exchanges raise Stale only for reused connections
            raise ConnectionLostError("connection lost") from stale

    def close(self) -> None:
        self._pool.close()


def _close(conn: _Closable) -> None:
    conn.close()
