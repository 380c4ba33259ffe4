"""A lean HTTP/1.1 transport on stdlib sockets: pooled keep-alive connections, thread-safe.

It writes the request head itself, sends head and body in one call, and parses the answer with
the sans-IO parser in ``h11parse.py``. TLS goes through ``ssl`` (verification on), proxies
through ``CONNECT`` (HTTPS) or absolute URLs (HTTP), both as ``HTTP(S)_PROXY``/``NO_PROXY`` say.
A reused idle connection that fails before any response byte arrives was closed by the server:
the request is sent once more on a fresh connection.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import threading

from ..errors import ConfigurationError, ConnectError, ConnectionLostError, TransportTimeout
from .base import HTTPRequest, HTTPResponse
from .common import (
    READ_SIZE,
    TIMEOUT_SLACK,
    Deadline,
    PooledTransport,
    Sealed,
    Stale,
    idle_clean,
    map_os_error,
    read_response,
    send_request,
)
from .h11parse import ResponseParser, parse_whole
from .head import HeaderLines, host_line, request_head
from .proxy import Proxy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

    from .aio import LoopSender
    from .common import Origin

__all__ = ["LeanTransport", "AsyncLeanTransport", "DEFAULT_MAX_CONNECTIONS"]

#: Connections open at once per origin and event loop for ``send_async``, by default.
DEFAULT_MAX_CONNECTIONS = 64

# A reused connection failing this way before any response byte: the server had closed it.
_STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_poll: Optional[Callable[[], Any]] = getattr(select, "poll", None)


def _timeval(seconds: float) -> bytes:
    """``seconds`` as the SO_RCVTIMEO/SO_SNDTIMEO option value (never 0, which means "no timeout")."""
    if sys.platform == "win32":  # a DWORD of milliseconds
        return struct.pack("L", max(1, int(seconds * 1000)))
    whole = int(seconds)
    return struct.pack("ll", whole, max(0 if whole else 1, int((seconds - whole) * 1_000_000)))


class _Connection:
    """One open socket, the origin it talks to, and what each request through it needs.

    A plain TCP socket stays in blocking mode with the kernel enforcing the read/write timeout
    (SO_RCVTIMEO/SO_SNDTIMEO): one system call per read, where a Python-level timeout costs a poll
    and a retried read each time. TLS sockets (and platforms refusing the option) use ``settimeout``.
    """

    __slots__ = ("absolute", "host_line", "kernel_timeouts", "lines", "poller", "proxy_auth", "sock", "timeout")

    def __init__(self, sock: socket.socket, host_line: str, proxy: Optional[Proxy], absolute: bool,
                 tls: bool) -> None:
        self.sock = sock
        self.host_line = host_line
        self.absolute = absolute  # plain HTTP through a proxy: the request target is the full URL
        self.proxy_auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if absolute and proxy and \
            proxy.authorization else ""
        self.timeout = -1.0
        self.kernel_timeouts = not tls
        self.lines: Dict[Tuple[str, str], bytes] = {}  # (method, URL): request line, Host, proxy lines
        # A plain socket's idle check: one poll(2) on a poll object made once (TLS: idle_clean).
        self.poller: Optional[Any] = None
        if not tls and _poll is not None:
            self.poller = _poll()
            self.poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)

    def idle_clean(self) -> bool:
        """True when nothing (no byte, no EOF, no error) arrived since the last response."""
        if self.poller is None:
            return idle_clean(self.sock)
        return not self.poller.poll(0)

    def set_timeout(self, seconds: float) -> None:
        """The timeout of the next socket operation: ``seconds`` (the attempt's time left), or at
        most ``TIMEOUT_SLACK`` more: the system calls are skipped while the one set is that close."""
        if 0.0 <= self.timeout - seconds <= TIMEOUT_SLACK:
            return
        if self.kernel_timeouts:
            try:
                value = _timeval(seconds)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
                self.sock.settimeout(None)
            except (OSError, struct.error):
                self.kernel_timeouts = False
        if not self.kernel_timeouts:
            self.sock.settimeout(seconds)
        self.timeout = seconds

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover - closing a socket does not fail in practice
            pass


class LeanTransport(PooledTransport[_Connection]):
    """Keep-alive connections per origin, reused across calls and threads (one user at a time);
    ``send_async`` sends on the running event loop (``aio.py``), many requests in flight at once.

    Same options as the ``http.client`` transport: ``ssl_context`` or ``ca_file``/``client_cert``/
    ``client_key``, ``proxy`` (``"env"``, ``None`` or a URL), ``max_body``, ``pool_size``,
    ``connect_timeout``; and ``max_connections``: open at once per origin and event loop for
    ``send_async`` (None: no limit); each loop keeps up to ``max(pool_size, max_connections)`` idle.
    """

    def __init__(self, *, max_connections: Optional[int] = DEFAULT_MAX_CONNECTIONS, **options: Any) -> None:
        if max_connections is not None and (type(max_connections) is not int or max_connections < 1):
            raise ConfigurationError("max_connections must be a positive int, or None for no limit")
        super().__init__(**options)
        self._limit = max_connections
        self._loops: Optional[LoopSender] = None  # the async half, made on the first send_async
        self._loops_made = threading.Lock()
        self._lines = HeaderLines()

    def _socket(self, conn: _Connection) -> Optional[socket.socket]:
        return conn.sock

    def _idle_clean(self, conn: _Connection) -> bool:
        return conn.idle_clean()

    def _connect(self, origin: Origin, deadline: Deadline) -> _Connection:
        scheme, host, port = origin
        proxy = self._options.proxy(origin)
        name, number = (proxy.host, proxy.port) if proxy else (host, port)
        try:
            connect_timeout = self._options.connect_timeout(deadline)
            # An ASCII name goes to getaddrinfo as bytes: no "idna" codec load (unicodedata) on the first send.
            address = (name.encode() if name.isascii() else name, number)
            sock = socket.create_connection(address, connect_timeout)  # type: ignore[arg-type]
        except OSError as exc:
            raise map_os_error(exc, connecting=True, target=(name, number)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if proxy is not None:
                    self._tunnel(sock, proxy, host, port, deadline)
                sock.settimeout(deadline.left())  # the whole handshake is bounded by one timeout
                sock = self._options.ssl_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            sock.close()
            raise map_os_error(exc, connecting=True) from None
        except BaseException:
            sock.close()
            raise
        return _Connection(sock, host_line(host, port, scheme), proxy, scheme == "http" and proxy is not None,
                           scheme == "https")

    def _tunnel(self, sock: socket.socket, proxy: Proxy, host: str, port: int, deadline: Deadline) -> None:
        """Ask an HTTP proxy for a tunnel to ``host:port`` (``CONNECT``)."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        send_request(sock, Sealed(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode(
            "latin-1")), deadline, sock.settimeout)
        del auth
        parser = ResponseParser(0, head_request=True)  # a CONNECT answer's body is never read
        try:
            response = read_response(sock, parser, deadline, sock.settimeout, reused=False)
        except ConnectionLostError as exc:
            raise ConnectError(f"could not connect: the proxy closed the connection ({exc})") from None
        if not 200 <= response.status < 300:
            raise ConnectError(f"could not connect: the proxy answered CONNECT with HTTP {response.status}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pool_size={self._pool.size}, max_connections={self._limit}, " \
               f"max_body={self._max_body})"

    def close(self) -> None:
        """Close every idle connection, the sync pool's and each event loop's (from any thread)."""
        super().close()
        with self._loops_made:  # a first send_async either made its half before, or sees the pool closed
            loops = self._loops
        if loops is not None:
            loops.close()

    async def aclose(self) -> None:
        self.close()

    async def send_async(self, request: HTTPRequest) -> HTTPResponse:
        """Send one request on the running event loop; ``request.timeout`` bounds the whole attempt."""
        loops = self._loops
        if loops is None:
            with self._loops_made:
                if self._pool.closed:  # closed before its first async send: closed for those too
                    raise ConnectError("transport is closed")
                if self._loops is None:
                    from .aio import LoopSender

                    self._loops = LoopSender(self._options, self._lines, self._max_body, self._pool.size,
                                             self._limit)
                loops = self._loops
        return await loops.send_async(request)

    # -- sending -------------------------------------------------------------------------

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return self._roundtrip(request, self._exchange, self._lines.get(request))

    def _exchange(
        self, request: HTTPRequest, fields: Sealed, origin: Origin, conn: _Connection, target: str, reused: bool,
        deadline: Deadline,
    ) -> HTTPResponse:
        sock = conn.sock
        head_request = request.method == "HEAD"
        received = False
        try:
            early = send_request(sock, request_head(request, conn, target, fields), deadline, conn.set_timeout)
            if early:
                chunk = early
            else:
                conn.set_timeout(deadline.left())
                chunk = sock.recv(READ_SIZE)
            received = bool(chunk)
            whole = parse_whole(chunk, self._max_body, head_request) if chunk else None
            if whole is not None:  # the common case: the whole response in one read
                response, will_close = whole
            else:
                parser = ResponseParser(self._max_body, head_request=head_request)
                response = read_response(sock, parser, deadline, conn.set_timeout, reused=reused, first=chunk)
                will_close = parser.will_close
        except _STALE as exc:
            conn.close()
            if reused and not received:
                raise Stale() from None
            raise map_os_error(exc, connecting=False) from None
        except BlockingIOError:  # a kernel-enforced timeout ran out
            conn.close()
            raise TransportTimeout("timed out waiting for the response") from None
        except OSError as exc:
            conn.close()
            raise map_os_error(exc, connecting=False) from None
        except BaseException:  # Stale, a parse error, an interrupt: the connection is in an unknown state
            conn.close()
            raise
        if will_close or early is not None:  # an early answer: the rest of the request was never sent
            conn.close()
        else:
            self._pool.checkin(origin, conn)
        return response


#: The name ``transport="lean-async"`` had when it was a transport of its own: the same transport.
AsyncLeanTransport = LeanTransport
