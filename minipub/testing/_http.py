"""The embedded server's HTTP front: connections (bounded in number and idle time), framing (bounded
bodies, strict chunk sizes), and Outpost's router (its routes, 404s and trailing-slash redirects).

What each endpoint answers is the owner's (``OutpostServer``) business; this module reads requests,
asks the owner, and writes answers.
"""

from __future__ import annotations

import io
import socket
import socketserver
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple, cast
from urllib.parse import unquote, urlsplit

from ._faults import _Fault
from ._gojson import dumps

if TYPE_CHECKING:
    import threading

    from .server import OutpostServer

_Headers = List[Tuple[str, str]]
_Result = Tuple[int, bytes, _Headers]
_Params = Dict[str, str]
_Body = Callable[[], bytes]

_LINGER_BYTES = 256 * 1024  # what is read and dropped after answering without reading a body
_LINGER_SECONDS = 0.5
_MAX_TRAILER_LINES = 64

_JSON_CT: Tuple[str, str] = ("Content-Type", "application/json; charset=utf-8")
_TEXT_CT: Tuple[str, str] = ("Content-Type", "text/plain; charset=utf-8")
_HTML_CT: Tuple[str, str] = ("Content-Type", "text/html; charset=utf-8")
_NOSNIFF: Tuple[str, str] = ("X-Content-Type-Options", "nosniff")
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass
class _Conn:
    """A live client connection, the thread serving it, and since when it waits for a request."""

    sock: socket.socket
    thread: threading.Thread | None = None
    idle_since: float | None = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Route:
    """One endpoint: ``auth`` None (open), else who may call it, as Outpost's auth middleware decides."""

    method: str
    pattern: str  # after the base path; root routes: the whole path
    handler: str
    root: bool = False
    auth: bool = True
    admin_only: bool = False
    require_tenant: bool = False


_ROUTES: tuple[_Route, ...] = (
    _Route("GET", "/healthz", "_on_health", root=True, auth=False),
    _Route("GET", "/healthz", "_on_health", auth=False),
    _Route("GET", "/topics", "_on_topics"),
    _Route("POST", "/publish", "publish", admin_only=True),
    _Route("PUT", "/tenants/{tenant}", "_on_upsert_tenant"),
    _Route("GET", "/tenants/{tenant}", "_on_get_tenant", require_tenant=True),
    _Route("GET", "/tenants/{tenant}/token", "_on_tenant_token", admin_only=True, require_tenant=True),
    _Route("GET", "/tenants/{tenant}/destinations", "_on_list_destinations", require_tenant=True),
    _Route("POST", "/tenants/{tenant}/destinations", "_on_create_destination", require_tenant=True),
    _Route("GET", "/tenants/{tenant}/destinations/{destination}", "_on_get_destination", require_tenant=True),
    _Route("PUT", "/tenants/{tenant}/destinations/{destination}/disable", "_on_disable", require_tenant=True),
    _Route("PUT", "/tenants/{tenant}/destinations/{destination}/enable", "_on_enable", require_tenant=True),
)


class _BadRequest(Exception):
    """The request body could not be read (framing, or over the size bound)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _json(status: int, value: Any) -> _Result:
    return status, dumps(value), [_JSON_CT]


def _error(status: int, message: str, data: list[str] | None = None) -> _Result:
    payload: dict[str, Any] = {"status": status, "message": message}
    if data is not None:
        payload["data"] = data
    return _json(status, payload)


def _empty(status: int) -> _Result:
    return status, b"", []


_NOT_FOUND_JSON = _json(404, {"message": "not found", "status": 404})  # gin.H: keys in sorted order
_NOT_FOUND_TEXT: _Result = (404, b"404 page not found\n", [_TEXT_CT, _NOSNIFF])


def _text(status: int) -> _Result:
    reason = BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
    return status, f"{status} {reason}".encode(), [_TEXT_CT]


def _match(pattern: str, path: str) -> _Params | None:
    want, got = pattern.split("/"), path.split("/")
    if len(want) != len(got):
        return None
    params: _Params = {}
    for w, g in zip(want, got):
        if w.startswith("{"):
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer bound to its owner, quiet, IPv6-aware, with a bounded number of connections."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections (a pool
    # of workers starting at once), which the client's kernel resends only after a second.
    request_queue_size = 128

    def __init__(self, owner: OutpostServer, host: str, port: int) -> None:
        self.owner = owner
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
        if not self.owner._admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors (e.g. sockets shut down by close())."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; state lives in the OutpostServer."""

    protocol_version = "HTTP/1.1"
    _expect_continue = False
    _deadline = 0.0

    @property
    def _owner(self) -> OutpostServer:
        return cast(_Server, self.server).owner

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._owner._idle_timeout)
        self._owner._started(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._owner._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no per-request logging."""

    def handle_one_request(self) -> None:
        """Read one request and answer it: every method name is routed (Outpost has no 405 or 501)."""
        owner = self._owner
        try:
            self.connection.settimeout(owner._idle_timeout)
            owner._set_idle(self.connection, True)
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
            owner._set_idle(self.connection, False)
            self._deadline = time.monotonic() + owner._idle_timeout  # for the whole body
            self._dispatch()
            self.wfile.flush()
        except socket.timeout:  # idle, or a body slower than idle_timeout in all: let it go
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        self._expect_continue = True  # "100 Continue" only once the body is wanted
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Framing errors as Go's server answers them: text/plain, then close."""
        self._respond(*_text(code), close=True)

    # -- plumbing ---------------------------------------------------------

    def _announced(self) -> bool:
        """Whether the request says a body follows."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return True
        return self.headers.get("Content-Length", "0").strip() not in ("", "0")

    def _read_body(self) -> bytes:
        if self._expect_continue:
            self._expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _BadRequest(501)
            return self._read_chunked()
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return b""
        if len(set(v.strip() for v in values)) != 1 or not values[0].strip().isdigit():
            raise _BadRequest(400)
        length = int(values[0].strip())
        if length > self._owner._max_body:
            raise _BadRequest(413)
        body = self._read(length)
        if len(body) != length:
            raise _BadRequest(400)
        return body

    def _wait(self) -> None:
        """Let the next read wait only until the body's deadline."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("request body too slow")
        self.connection.settimeout(left)

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at the end of the stream), within the body's deadline."""
        parts: list[bytes] = []
        left = size
        reader = cast(io.BufferedReader, self.rfile)
        while left > 0:
            self._wait()
            data = reader.read1(min(left, 65536))
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        limit = self._owner._max_body
        while True:
            self._wait()
            line = self.rfile.readline(1025)
            size_text = line.split(b";", 1)[0].strip().decode("latin-1")
            # strictly hex digits: int(x, 16) alone takes "-1", "+5", "0x5" and "1_0"
            if not size_text or len(size_text) > 16 or not set(size_text) <= _HEX or not line.endswith(b"\n"):
                raise _BadRequest(400)
            size = int(size_text, 16)
            if size == 0:
                for _ in range(_MAX_TRAILER_LINES):
                    self._wait()
                    if self.rfile.readline(8193) in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
                raise _BadRequest(400)
            total += size
            if total > limit:
                raise _BadRequest(413)
            chunk = self._read(size)
            self._wait()
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadRequest(400)
            parts.append(chunk)

    def _respond(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        close: bool = False,
    ) -> None:
        """Write a complete response with raw socket writes."""
        informational = 100 <= status < 200
        bodiless = informational or status in (204, 304)
        close = close or informational or self.close_connection
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [f"HTTP/1.1 {status} {reason}"]
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
        send_body = not bodiless and self.command != "HEAD"
        self.wfile.write(head + body if send_body else head)
        self.wfile.flush()

    def _respond_unread(self, result: _Result) -> None:
        """Answer without reading the body: when one was announced, close (after a bounded drain)."""
        unread = self._announced()
        self._respond(*result, close=unread)
        if unread:
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
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routing ----------------------------------------------------------

    def _dispatch(self) -> None:
        owner = self._owner
        path = unquote(urlsplit(self.path).path)
        found = owner._route(self.command, path)
        if found is None:
            self._respond_unread(owner._no_route(self.command, path, urlsplit(self.path).query))
            return
        route, params = found
        if route.handler == "publish":
            self._publish(route)
            return
        if route.auth:
            denied = owner._authenticate(self.headers.get("Authorization"), route, params)
            if denied is not None:
                self._respond_unread(denied)
                return
        read: list[bytes] = []

        def body() -> bytes:
            read.append(self._read_body())
            return read[-1]

        try:
            result = cast(Callable[[_Params, _Body], _Result], getattr(owner, route.handler))(params, body)
        except _BadRequest as exc:
            self._respond(*_text(exc.status), close=True)
            self._linger()
            return
        if read or not self._announced():
            self._respond(*result)
        else:
            self._respond_unread(result)

    def _publish(self, route: _Route) -> None:
        owner = self._owner
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        port = self.client_address[1]
        fault = owner._pop_fault()
        authorization = self.headers.get("Authorization")
        denied = owner._authenticate(authorization, route, {})
        if fault is None and denied is not None:  # a proxy's fault comes first; else no key, no body read
            owner._record(self.command, self.path, headers, b"", port)
            self._respond_unread(denied)
            return
        try:
            body = self._read_body()
        except _BadRequest as exc:
            owner._record(self.command, self.path, headers, b"", port)
            self._respond(*_text(exc.status), close=True)
            self._linger()
            return
        owner._record(self.command, self.path, headers, body, port)
        if fault is None:
            self._respond(*owner._accept(body))
        elif fault.kind == "fail":
            self._respond_fault(fault)
        elif fault.kind == "delay":
            if denied is not None:
                owner._sleep(fault.seconds)
            self._respond(*(denied or owner._accept(body, fault.seconds)))
        else:  # drop
            if fault.accepted and denied is None:
                owner._accept(body)
            self._drop()

    def _respond_fault(self, fault: _Fault) -> None:
        status = fault.status
        headers = list(fault.headers)
        if fault.body is None:
            _, body, _ = _error(status, "injected failure")
            if not any(n.lower() == "content-type" for n, _ in headers):
                headers.append(_JSON_CT)
        else:
            body = fault.body
            if not any(n.lower() == "content-type" for n, _ in headers):
                headers.append(_TEXT_CT)
        if 100 <= status < 200 or status in (204, 304):
            headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
        self._respond(status, body, headers)
