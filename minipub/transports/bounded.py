"""One attempt in bounded time: its deadline, the request bytes sealed, the bounded send and read,
and the checks of an idle connection (shared by the socket transports)."""

from __future__ import annotations

import select
import socket
import time

from .._modules import loaded_module
from ..errors import ValidationError
from .base import HTTPRequest, HTTPResponse
from .h11parse import ResponseParser, is_token

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

__all__ = ["Deadline", "Sealed", "header_block", "send_request", "read_response", "readable",
           "idle_clean", "READ_SIZE", "SEND_PIECE", "TIMEOUT_SLACK", "TLS_PIECE", "Stale"]

#: How much one read asks for.
READ_SIZE = 65536
#: The most one send call is given: between pieces the socket is checked for an early answer.
SEND_PIECE = 1 << 18
#: How far above the time left a socket timeout may stay before it is set again (seconds).
TIMEOUT_SLACK = 0.01


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


if TYPE_CHECKING:
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
