"""The embedded server's HTTP front: connections (bounded in number and idle time), bodies read with
the one framing rule of ``wire.py`` (bounded, strict chunk sizes) within a deadline, the routing of
each request, and the order of a publish (fault, auth, body, record, answer).

What each endpoint answers is the fake Outpost's business (``_outpost.py``, ``_publish.py``); this
module reads requests, asks it, and writes answers.
"""

from __future__ import annotations

import io
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Tuple, cast
from urllib.parse import unquote, urlsplit

from ._faults import FaultInjector, fault_result
from ._outpost import Outpost
from ._routes import Params, Result, Route, find_route, no_route, text_result
from .wire import BodyReader, FramingError, body_length

__all__ = ["Connections", "Front", "HTTPFront"]

_LINGER_BYTES = 256 * 1024  # what is read and dropped after answering without reading a body
_LINGER_SECONDS = 0.5


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@dataclass
class _Conn:
    """A live client connection, the thread serving it, and since when it waits for a request."""

    sock: socket.socket
    thread: Optional[threading.Thread] = None
    idle_since: Optional[float] = field(default_factory=time.monotonic)


class Connections:
    """The open client connections, at most ``limit``: beyond it a new one closes the longest-idle
    (one between requests or still sending its head), or is itself closed when none is idle."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._conns: Dict[int, _Conn] = {}
        self._closing = False

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._conns)

    def open(self) -> None:
        with self._lock:
            self._closing = False

    def admit(self, sock: socket.socket) -> bool:
        """Take a new connection (in the accept thread), within the limit."""
        victim: Optional[_Conn] = None
        with self._lock:
            if self._closing:
                return False
            if len(self._conns) >= self.limit:
                idle = [c for c in self._conns.values() if c.idle_since is not None]
                if not idle:
                    return False
                victim = min(idle, key=lambda c: cast(float, c.idle_since))
                del self._conns[id(victim.sock)]
            self._conns[id(sock)] = _Conn(sock)
        if victim is not None:
            _shut(victim.sock)
        return True

    def _update(self, sock: socket.socket, **changes: Any) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None:
                for name, value in changes.items():
                    setattr(conn, name, value)

    def started(self, sock: socket.socket) -> None:
        self._update(sock, thread=threading.current_thread())

    def set_idle(self, sock: socket.socket, idle: bool) -> None:
        self._update(sock, idle_since=time.monotonic() if idle else None)

    def unregister(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None and conn.sock is sock:
                del self._conns[id(sock)]

    def close_all(self) -> List[threading.Thread]:
        """Refuse new connections, shut the open ones down; the threads serving them."""
        with self._lock:
            self._closing = True
            conns = list(self._conns.values())
        for conn in conns:
            _shut(conn.sock)
        return [c.thread for c in conns if c.thread is not None and c.thread is not threading.current_thread()]


@dataclass(frozen=True)
class Front:
    """What the HTTP front serves, and its own bounds."""

    outpost: Outpost
    faults: FaultInjector
    connections: Connections
    prefix: str
    max_body: int
    idle_timeout: float


class HTTPFront(ThreadingHTTPServer):
    """ThreadingHTTPServer bound to its ``Front``, quiet, IPv6-aware, with a bounded number of connections."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections (a pool
    # of workers starting at once), which the client's kernel resends only after a second.
    request_queue_size = 128

    def __init__(self, front: Front, host: str, port: int) -> None:
        self.front = front
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse-DNS lookup HTTPServer does."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.front.connections.admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors (e.g. sockets shut down by close())."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; state lives in the ``Front``."""

    protocol_version = "HTTP/1.1"
    _expect_continue = False
    _deadline = 0.0

    @property
    def _front(self) -> Front:
        return cast(HTTPFront, self.server).front

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._front.idle_timeout)
        self._front.connections.started(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._front.connections.unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no per-request logging."""

    def handle_one_request(self) -> None:
        """Read one request and answer it: every method name is routed (Outpost has no 405 or 501)."""
        front = self._front
        try:
            self.connection.settimeout(front.idle_timeout)
            front.connections.set_idle(self.connection, True)
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(431)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            self._expect_continue = False
            if not self.parse_request():
                return
            # busy from here: until its head is in, a connection counts as idle (a full server may close it)
            front.connections.set_idle(self.connection, False)
            self._deadline = time.monotonic() + front.idle_timeout  # for the whole body
            self._dispatch()
            self.wfile.flush()
        except socket.timeout:  # idle, or a body slower than idle_timeout in all: let it go
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        self._expect_continue = True  # "100 Continue" only once the body is wanted
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Framing errors as Go's server answers them: text/plain, then close."""
        self._respond(*text_result(code), close=True)

    # -- reading ----------------------------------------------------------------------------------

    def _announced(self) -> bool:
        """Whether the request says a body follows."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return True
        return self.headers.get("Content-Length", "0").strip() not in ("", "0")

    def _read_body(self) -> bytes:
        """The body, within the deadline; FramingError (400, 413, 501) when it cannot be read."""
        if self._expect_continue:
            self._expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        limit = self._front.max_body
        length = body_length(self.headers.get("Transfer-Encoding"), self.headers.get_all("Content-Length") or [],
                             limit)
        reader = BodyReader(length, limit)
        rfile = cast(io.BufferedReader, self.rfile)
        while not reader.done:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("request body too slow")
            self.connection.settimeout(left)
            data = rfile.peek(65536)
            if not data:
                if reader.eof():
                    break
                raise FramingError(400, "the body ended early")
            rfile.read(reader.feed(data))  # only the body's bytes: a next request stays buffered
        return reader.body

    # -- writing ----------------------------------------------------------------------------------

    def _respond(self, status: int, body: bytes = b"", headers: Iterable[Tuple[str, str]] = (), *,
                 close: bool = False) -> None:
        """Write a complete response with raw socket writes."""
        informational = 100 <= status < 200
        bodiless = informational or status in (204, 304)
        close = close or informational or self.close_connection
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('Unknown',))[0]}"]
        if not informational:
            lines.append(f"Date: {self.date_time_string()}")
        for name, value in headers:
            lowered = name.lower()
            if lowered in ("content-length", "transfer-encoding"):
                continue
            if lowered == "connection":
                close = close or value.strip().lower() == "close"
                continue
            lines.append(f"{name}: {value}")
        if not bodiless:
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body if not bodiless and self.command != "HEAD" else head)
        self.wfile.flush()

    def _respond_unread(self, result: Result) -> None:
        """Answer without reading the body: when one was announced, close (after a bounded drain)."""
        unread = self._announced()
        self._respond(*result, close=unread)
        if unread:
            self._linger()

    def _refuse(self, error: FramingError) -> None:
        self._respond(*text_result(error.status), close=True)
        self._linger()

    def _linger(self) -> None:
        """Close without reading the body, so that the answer is not lost to a reset: stop sending,
        then read and drop what arrives, up to a bound in bytes and time."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            left = _LINGER_BYTES
            while left > 0:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                sock.settimeout(wait)
                data = sock.recv(min(65536, left))
                if not data:
                    break
                left -= len(data)
        except OSError:
            pass

    def _drop(self) -> None:
        """Close the connection without sending anything."""
        self.close_connection = True
        _shut(self.connection)

    # -- routing ----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        front = self._front
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        found = find_route(self.command, path, front.prefix)
        if found is None:
            self._respond_unread(no_route(self.command, path, parts.query, front.prefix))
            return
        route, params = found
        if route.handler == "publish":
            self._publish(route)
            return
        if route.auth:
            denied = front.outpost.authenticate(self.headers.get("Authorization"), route, params)
            if denied is not None:
                self._respond_unread(denied)
                return
        self._call(route, params)

    def _call(self, route: Route, params: Params) -> None:
        read: List[bytes] = []

        def body() -> bytes:
            read.append(self._read_body())
            return read[-1]

        try:
            result = self._front.outpost.endpoint(route.handler)(params, body)
        except FramingError as error:
            self._refuse(error)
            return
        if read or not self._announced():
            self._respond(*result)
        else:
            self._respond_unread(result)

    def _publish(self, route: Route) -> None:
        """A proxy's fault comes first; else no key, no body read; then the record, then the answer."""
        front, outpost = self._front, self._front.outpost
        headers: Dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        port = self.client_address[1]
        fault = front.faults.pop()
        denied = outpost.authenticate(self.headers.get("Authorization"), route, {})
        if fault is None and denied is not None:
            outpost.record(self.command, self.path, headers, b"", port)
            self._respond_unread(denied)
            return
        try:
            body = self._read_body()
        except FramingError as error:
            outpost.record(self.command, self.path, headers, b"", port)
            self._refuse(error)
            return
        outpost.record(self.command, self.path, headers, body, port)
        publishes = outpost.publishes
        if fault is None:
            self._respond(*publishes.accept(body))
        elif fault.kind == "fail":
            self._respond(*fault_result(fault))
        elif fault.kind == "delay":
            if denied is not None:
                publishes.sleep(fault.seconds)
            self._respond(*(denied or publishes.accept(body, fault.seconds)))
        else:  # drop
            if fault.accepted and denied is None:
                publishes.accept(body)
            self._drop()
