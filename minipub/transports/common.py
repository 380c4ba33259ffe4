"""What the pooled transports share: URL splitting, error mapping, connection settings, the idle pool."""

from __future__ import annotations

import select
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, List, Optional, Protocol, Tuple, TypeVar
from urllib.parse import urlsplit

from .. import _fork
from .._modules import loaded_module
from ..errors import (
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    TLSError,
    TransportError,
    TransportTimeout,
    ValidationError,
)
from .base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from .h11parse import ResponseParser, is_token
from .proxy import Proxy, parse_proxy, select_proxy

if TYPE_CHECKING:
    import ssl

__all__ = ["Origin", "split_origin", "map_os_error", "ConnectOptions", "IdlePool", "PooledTransport", "Stale",
           "Deadline", "Sealed", "header_block", "send_request",
           "read_response", "readable", "idle_clean", "loaded_module", "READ_SIZE"]

#: How much one read asks for.
READ_SIZE = 65536
#: The most one send call is given: between pieces the socket is checked for an early answer.
SEND_PIECE = 1 << 18
#: How far above the time left a socket timeout may stay before it is set again (seconds).
TIMEOUT_SLACK = 0.01

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
        return ConnectError(f"could not connect{where}: {exc}")
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


class Stale(Exception):
    """A reused idle connection failed before any response byte: the server had closed it."""


# -- one attempt in bounded time ---------------------------------------------------------------


class Deadline:
    """The end of one attempt (connect, send, wait, read): each socket operation gets the time left."""

    __slots__ = ("at",)

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; ``TimeoutError`` (mapped to ``TransportTimeout``) once none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the attempt's timeout ran out")
        return left


SetTimeout = Callable[[float], None]


class Sealed:
    """Request bytes that carry a credential: held here, never in a bare local, and never shown."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<{len(self.data)} request bytes, redacted>"


_BAD_HEADER_TEXT = frozenset("\r\n\0")


def _header_text_ok(text: str) -> bool:
    return (text.isascii() or max(text) <= "\xff") and _BAD_HEADER_TEXT.isdisjoint(text)


def header_block(request: HTTPRequest) -> Sealed:
    """The request's credential-free header fields as head lines (``Name: value\\r\\n``), checked.

    The one rule for every built-in transport: names are tokens, values latin-1 text without CR,
    LF or NUL; else ``ValidationError`` naming the header (never its value). No local variable and
    no exception (``UnicodeEncodeError.object``) ever holds a value in clear.
    """
    headers = request.public_headers  # no credential: those are Secrets apart (request.secret_head())
    for name, value in headers.items():
        if not is_token(name):
            raise ValidationError(f"request header name {name[:40]!r} is not a valid HTTP token")
        if not _header_text_ok(value):
            raise ValidationError(f"request header {name!r}: values must be latin-1 text without CR, LF or NUL")
    return Sealed("".join([f"{name}: {value}\r\n" for name, value in headers.items()]).encode("latin-1"))


def readable(sock: socket.socket) -> bool:
    """True when bytes, an EOF or an error wait on ``sock`` (nothing is read)."""
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return True  # TLS: decrypted bytes already buffered
    fd = sock.fileno()
    if fd < 0:
        return True
    if _poll is not None:
        poller = _poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [fd], 0)[0])  # pragma: no cover - platforms without poll


_poll: Optional[Callable[[], Any]] = getattr(select, "poll", None)



def idle_clean(sock: Optional[socket.socket]) -> bool:
    """True when an idle keep-alive connection received nothing since its last response.

    Unsolicited bytes (or a late answer to an earlier request) would be taken as the answer to
    the next one, and an EOF means the server closed it: either way the connection is dropped.
    TLS records without application data (TLS 1.3 session tickets) are read and do not count.
    """
    if sock is None:
        return False
    if not readable(sock):
        return True
    ssl: Any = loaded_module("ssl")
    if ssl is None or not isinstance(sock, ssl.SSLSocket):
        return False
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        sock.recv(1)  # application data, or b"" (closed): either way not clean
        return False
    except ssl.SSLWantReadError:
        return not readable(sock)
    except OSError:
        return False
    finally:
        try:
            sock.settimeout(timeout)
        except OSError:  # pragma: no cover - a socket closed by the failed read
            pass


def _wait(sock: socket.socket, timeout: float) -> Tuple[bool, bool]:
    """Wait until ``sock`` is readable (bytes, EOF, error) or writable: (readable, writable)."""
    fd = sock.fileno()
    if fd < 0:
        return True, False
    if _poll is not None:
        poller = _poll()
        poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLOUT)
        events = 0
        for _, event in poller.poll(max(1, int(timeout * 1000) + 1)):
            events |= event
        return bool(events & ~select.POLLOUT), bool(events & select.POLLOUT)
    readers, writers, errors = select.select([fd], [fd], [fd], timeout)  # pragma: no cover - no poll
    return bool(readers or errors), bool(writers)  # pragma: no cover


def _answered(sock: socket.socket) -> Optional[bytes]:
    """Whether the server said something while we were sending: None if not, else what was read
    of it (maybe nothing yet). TLS records without application data (session tickets) do not count."""
    ssl: Any = loaded_module("ssl")
    if ssl is None or not isinstance(sock, ssl.SSLSocket):
        return b""
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        start: bytes = sock.recv(READ_SIZE)  # the answer's first bytes, or b"" (closed)
        return start
    except ssl.SSLWantReadError:
        return None
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)


#: Plain sockets send without blocking (``MSG_DONTWAIT``) once the body outgrows one piece.
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
#: What one TLS send is given (one record): a blocked TLS write still sees an early answer soon.
TLS_PIECE = 16384


def send_request(sock: socket.socket, data: Sealed, deadline: Deadline, set_timeout: SetTimeout) -> Optional[bytes]:
    """Send ``data`` whole before the deadline: None, or the start of an answer that came first.

    The whole send is bounded, not each call: each gets the time left. A request that fits one
    piece goes in one call (the common case); a bigger one waits for the socket to be writable
    *or readable*, so a server that answers before the upload is done (a ``413``) or closes is
    heard at once: its answer (the bytes read of it so far are returned; maybe none yet) is then
    read like any other, and the connection is never reused.
    """
    view = memoryview(data.data)
    del data  # no frame local holds the head (error reporters record them); the view is released below
    total = len(view)
    sent = 0
    try:
        if total <= SEND_PIECE:
            set_timeout(deadline.left())
            sent = sock.send(view)
            if sent == total:
                return None
        plain = type(sock) is socket.socket and bool(_DONTWAIT)
        while sent < total:
            can_read, can_write = _wait(sock, deadline.left())
            if can_read:
                early = _answered(sock)
                if early is not None:
                    return early
            if not can_write:
                continue
            if plain:
                try:
                    sent += sock.send(view[sent:sent + SEND_PIECE], _DONTWAIT)
                except BlockingIOError:
                    continue
            else:
                set_timeout(deadline.left())
                sent += sock.send(view[sent:sent + TLS_PIECE])
        return None
    except (BlockingIOError, TimeoutError):
        raise
    except OSError:
        if readable(sock):
            return b""  # the server answered or closed: what it sent is read next
        raise
    finally:
        view.release()


def read_response(
    sock: socket.socket,
    parser: ResponseParser,
    deadline: Deadline,
    set_timeout: SetTimeout,
    *,
    reused: bool,
    first: Optional[bytes] = None,
) -> HTTPResponse:
    """Read one response with ``parser`` before the deadline (every read gets the time left).

    ``first``: bytes read already (b"" for an EOF). On a reused connection, an EOF or a reset
    before any byte raises :class:`Stale`.
    """
    chunk = first
    while True:
        if chunk is None:
            set_timeout(deadline.left())
            try:
                chunk = sock.recv(READ_SIZE)
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                if reused and not parser.received:
                    raise Stale() from None
                raise
        if not chunk:
            if reused and not parser.received:
                raise Stale()
            return parser.eof()
        response = parser.feed(chunk)
        if response is not None:
            return response
        chunk = None


class _Closable(Protocol):
    def close(self) -> None: ...


K = TypeVar("K", bound=_Closable)
#: One exchange on a connection: (request, what the transport prepared for it, origin, connection,
#: request target, reused, deadline) -> response. A method, not a closure made per request.
Exchange = Callable[[HTTPRequest, Any, Origin, K, str, bool, Deadline], HTTPResponse]


class PooledTransport(Generic[K]):
    """What the keep-alive transports share: options, the idle pool, and the stale-connection rule.

    Subclasses open connections (``_connect``) and run one exchange; an exchange on a reused
    connection raises :class:`Stale` when the server had closed it, and the request is then
    sent once more on a fresh connection (safe: the event id is fixed).
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
        self._options = ConnectOptions(ssl_context=ssl_context, ca_file=ca_file, client_cert=client_cert,
                                       client_key=client_key, proxy=proxy, connect_timeout=connect_timeout)
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
