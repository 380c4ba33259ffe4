"""In-process imitation of Hookdeck Outpost's API, for tests and demos.

``OutpostServer`` is a real threaded HTTP/1.1 server (keep-alive, always a ``Content-Length``) that
answers as Outpost v1.1.0 does, checked request by request against a running Outpost by
``tests/real/test_conformance.py``: ``POST {base}/publish`` (admin key; Go's JSON decoding and its
error texts; tenants and destinations matched as Outpost matches them; deduplication by event id
when a destination matched; 409 for an id still being processed), ``GET /healthz`` and
``GET {base}/healthz``, ``GET {base}/topics``, the tenant and destination endpoints a test needs to
set up a receiver, and Outpost's empty 401/403 and its 404s (JSON under ``/api/``, text elsewhere).

On top: faults (injected statuses, delays, dropped connections) queued or drawn at random for a
share of publish requests (``fail_rate``), as a proxy in front of Outpost would produce them; and
bounds that protect the test process (body size, connections, idle time), which Outpost itself
does not have.

Standard library only; imports nothing from the rest of the package.
"""

from __future__ import annotations

import hmac
import json
import math
import random
import secrets
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Callable, Dict, List, TextIO, Tuple, cast, final
from urllib.parse import unquote, urlsplit

from . import _jwt
from ._gojson import BOOL, RAW, STRING, STRING_LIST, STRING_MAP, TIME, GoDecodeError, decode_struct, dumps
from ._tenants import TenantStore, now_text

__all__ = ["OutpostServer", "ReceivedRequest"]

_Headers = List[Tuple[str, str]]
_Result = Tuple[int, bytes, _Headers]
_Params = Dict[str, str]
_Body = Callable[[], bytes]

_PROCESSING = "processing"
_PROCESSED = "processed"
#: Outpost's waiter: a repeat of an id still being processed sleeps this long, then looks again.
PROCESSING_WAIT = 5.0
#: The embedded server's own bounds (Outpost has none of them; see OutpostServer's docstring).
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0
_LINGER_BYTES = 256 * 1024  # what is read and dropped after answering without reading a body
_LINGER_SECONDS = 0.5
_MAX_TRAILER_LINES = 64

_JSON_CT: Tuple[str, str] = ("Content-Type", "application/json; charset=utf-8")
_TEXT_CT: Tuple[str, str] = ("Content-Type", "text/plain; charset=utf-8")
_HTML_CT: Tuple[str, str] = ("Content-Type", "text/html; charset=utf-8")
_NOSNIFF: Tuple[str, str] = ("X-Content-Type-Options", "nosniff")
_HEX = frozenset("0123456789abcdefABCDEF")

# Go struct fields Outpost decodes request bodies into (JSON name -> Go type).
_PUBLISH_FIELDS = {"id": STRING, "tenant_id": STRING, "destination_id": STRING, "topic": STRING,
                   "eligible_for_retry": BOOL, "time": TIME, "metadata": STRING_MAP, "data": RAW}
_DESTINATION_FIELDS = {"id": STRING, "type": STRING, "topics": STRING_LIST, "config": STRING_MAP,
                       "credentials": STRING_MAP, "metadata": STRING_MAP}
_WORKERS = ("deliverymq-consumer", "http-server", "logmq-consumer", "retrymq-consumer")


@dataclass(frozen=True)
class ReceivedRequest:
    """One request received on the publish path (authorization redacted).

    ``body`` is empty for a request answered without reading its body (401, 403, 413).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    client_port: int = 0


@dataclass(frozen=True)
class _Fault:
    """A queued fault, consumed by one publish request."""

    kind: str  # "fail", "delay" or "drop"
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    seconds: float = 0.0
    accepted: bool = False


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


def _health() -> dict[str, Any]:
    """Outpost's ``GET /healthz`` answer when every worker is healthy."""
    return {"status": "healthy", "timestamp": now_text(),
            "workers": {name: {"status": "healthy"} for name in _WORKERS}}


def _random_faults(retry_after: float) -> tuple[_Fault, ...]:
    """The mix ``fail_rate`` draws from: retryable failures a client must survive, equally likely."""
    hint = (("Retry-After", str(math.ceil(retry_after))), ("retry-after-ms", str(round(retry_after * 1000))))
    return (
        _Fault("fail", status=503),
        _Fault("fail", status=429, headers=hint),
        _Fault("drop"),
        _Fault("drop", accepted=True),
    )


def _fault_name(fault: _Fault) -> str:
    if fault.kind == "fail":
        return str(fault.status)
    return "drop-after-accept" if fault.accepted else fault.kind


def _redact(value: str) -> str:
    parts = value.split(None, 1)
    if len(parts) == 2:
        return f"{parts[0]} ***"
    return "***"


def _check_header(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text:
            raise ValueError("header names and values must not contain CR or LF")


def _printable(value: Any) -> str:
    """Untrusted text for one output line: control and other unprintable characters escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


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
            owner._set_idle(self.connection, True)
            self.raw_requestline = self.rfile.readline(65537)
            owner._set_idle(self.connection, False)
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
            self._dispatch()
            self.wfile.flush()
        except socket.timeout:  # idle (or a stalled client) for idle_timeout: let it go
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
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest(400)
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        limit = self._owner._max_body
        while True:
            line = self.rfile.readline(1025)
            size_text = line.split(b";", 1)[0].strip().decode("latin-1")
            # strictly hex digits: int(x, 16) alone takes "-1", "+5", "0x5" and "1_0"
            if not size_text or len(size_text) > 16 or not set(size_text) <= _HEX or not line.endswith(b"\n"):
                raise _BadRequest(400)
            size = int(size_text, 16)
            if size == 0:
                for _ in range(_MAX_TRAILER_LINES):
                    if self.rfile.readline(8193) in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
                raise _BadRequest(400)
            total += size
            if total > limit:
                raise _BadRequest(413)
            chunk = self.rfile.read(size)
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


@final
class OutpostServer:
    """An imitation of Outpost's API on a real socket, for tests.

    Use as a context manager (or call ``start()``/``close()``); ``url`` is the base URL including the
    version prefix, e.g. ``http://127.0.0.1:PORT/api/v1``.

    Destinations: ``destinations`` are tenant-agnostic ids that match every event of every tenant
    (the simple default: one, ``des_embedded``); pass ``destinations=()`` for Outpost's own model
    only, where an event matches the destinations of its tenant (``add_destination``, or
    ``PUT {base}/tenants/{id}`` and ``POST {base}/tenants/{id}/destinations`` as on Outpost), and
    an unknown tenant gets 202 with ``destination_ids: []`` and no deduplication.

    Deliberate differences from Outpost, to protect the test process: a body over
    ``max_body_bytes`` (default 10 MiB) is answered 413 (text/plain, connection closed) without
    being read, as a proxy in front of Outpost would; at most ``max_connections`` (default 256)
    connections are served at once (a new one beyond that closes the longest-idle connection, or
    is itself closed when none is idle); a connection silent for ``idle_timeout`` seconds
    (default 30) is closed. A request without a valid key is answered (401/403) before its body
    is read, and the body is never kept.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        topics: Iterable[str] | None = None,
        destinations: Sequence[str] = ("des_embedded",),
        processing_wait: float = PROCESSING_WAIT,
        prefix: str = "/api/v1",
        verbose: bool = False,
        stream: TextIO | None = None,
        fail_rate: float = 0.0,
        retry_after: float = 1.0,
        seed: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        """``fail_rate``: the share of publish requests (when no fault is queued) answered by a
        random retryable fault: 503, 429 asking to wait ``retry_after`` seconds (``Retry-After``,
        rounded up, and ``retry-after-ms``), a dropped connection, or a dropped connection after
        the event was accepted (a lost acknowledgement). ``seed`` makes the draws repeatable.
        ``processing_wait``: how long a repeat of an id still being processed sleeps before it looks
        again (duplicate, or 409): Outpost's fixed 5 s by default; tests pass less."""
        if isinstance(destinations, str):
            raise TypeError("destinations must be a sequence of strings, not a string")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if not 0.0 <= retry_after <= 3600.0:
            raise ValueError("retry_after must be between 0 and 3600 seconds")
        if max_body_bytes < 0 or max_connections < 1 or not idle_timeout > 0:
            raise ValueError("max_body_bytes must be >= 0, max_connections >= 1 and idle_timeout > 0")
        prefix = prefix.strip().rstrip("/")
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        self._api_key = api_key
        self._host = host
        self._requested_port = port
        self._topics: list[str] | None = None if topics is None else list(topics)
        self._shared: list[str] = list(destinations)
        self._processing_wait = float(processing_wait)
        self._prefix = prefix
        self._verbose = verbose
        self._stream = stream
        self._max_body = int(max_body_bytes)
        self._max_connections = int(max_connections)
        self._idle_timeout = float(idle_timeout)
        self._jwt_secret = secrets.token_bytes(32)

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._print_lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._stored_ids: set[str] = set()
        self._ids: dict[str, str] = {}
        self._requests: list[ReceivedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._fail_rate = float(fail_rate)
        self._random_faults = _random_faults(retry_after)
        self._random = random.Random(seed)
        self._injected: dict[str, int] = {}
        self._tenants = TenantStore(self._shared)
        self._conns: dict[int, _Conn] = {}
        self._closing = False
        self._stopping = threading.Event()

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> OutpostServer:
        """Bind and start serving in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        with self._lock:
            self._closing = False
        server = _Server(self, self._host, self._requested_port)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"OutpostServer:{server.server_port}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections and join threads (bounded)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        server.shutdown()
        with self._cond:
            self._closing = True
            conns = list(self._conns.values())
            self._cond.notify_all()
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        for conn in conns:
            if conn.thread is not None and conn.thread is not threading.current_thread():
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> OutpostServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"<OutpostServer {where}>"

    # -- properties -------------------------------------------------------

    @property
    def host(self) -> str:
        """The host the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (raises RuntimeError before start())."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL including the prefix, e.g. http://127.0.0.1:PORT/api/v1."""
        host = self._host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self._prefix}"

    @property
    def api_key(self) -> str:
        """The admin API key the server accepts (settable for rotation tests; "" turns auth off, as on Outpost)."""
        with self._lock:
            return self._api_key

    @api_key.setter
    def api_key(self, value: str) -> None:
        with self._lock:
            self._api_key = value

    @property
    def events(self) -> list[dict[str, Any]]:
        """Accepted events (once per id), as received with their final id."""
        with self._lock:
            return [dict(e) for e in self._events]

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received on the publish path, authorization redacted."""
        with self._lock:
            return list(self._requests)

    @property
    def fail_rate(self) -> float:
        """The share of publish requests answered by a random fault (settable)."""
        with self._lock:
            return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        with self._lock:
            self._fail_rate = float(value)

    @property
    def injected_faults(self) -> dict[str, int]:
        """How many random faults (``fail_rate``) were injected, by kind: "503", "429", "drop", ..."""
        with self._lock:
            return dict(self._injected)

    @property
    def connection_count(self) -> int:
        """How many client connections are open now."""
        with self._lock:
            return len(self._conns)

    def event_count(self, event_id: str) -> int:
        """How many accepted events carry this id (0 or 1)."""
        with self._lock:
            return sum(1 for e in self._events if e.get("id") == event_id)

    def clear(self) -> None:
        """Forget events, requests, processed ids, tenants and their destinations (queued faults are kept)."""
        with self._lock:
            self._events.clear()
            self._stored_ids.clear()
            self._requests.clear()
            self._tenants = TenantStore(self._shared)
            for key in [k for k, v in self._ids.items() if v == _PROCESSED]:
                del self._ids[key]

    # -- tenants and destinations -----------------------------------------

    def add_tenant(self, tenant_id: str) -> None:
        """Create a tenant (no-op when it exists), as ``PUT {base}/tenants/{id}`` does."""
        with self._lock:
            self._tenants.upsert(tenant_id)

    def add_destination(self, tenant_id: str, topics: Sequence[str] = ("*",), *, url: str = "",
                        destination_id: str | None = None, disabled: bool = False) -> str:
        """Give ``tenant_id`` (created if missing) a webhook destination subscribed to ``topics``; its id."""
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of strings, not a string")
        with self._lock:
            self._tenants.upsert(tenant_id)
            return self._tenants.add_destination(tenant_id, topics, url, destination_id, disabled).id

    def set_destination_disabled(self, tenant_id: str, destination_id: str, disabled: bool = True) -> None:
        """Disable (or enable) a destination: a disabled one matches nothing."""
        with self._lock:
            self._tenants.tenants[tenant_id].destinations[destination_id].disabled = disabled

    # -- fault programming ------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> None:
        """Answer the next ``times`` publish requests with ``status`` (before auth, as a proxy would).

        Default body: JSON ``{"status": S, "message": "injected failure"}``;
        a given ``body`` is sent as-is (text/plain unless ``headers`` say
        otherwise).  1XX, 204 and 304 are sent without a body; 1XX closes the
        connection.
        """
        if not 100 <= status <= 599:
            raise ValueError("status must be between 100 and 599")
        pairs = tuple((str(k), str(v)) for k, v in (headers or {}).items())
        for name, value in pairs:
            _check_header(name, value)
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self._queue(_Fault("fail", status=status, headers=pairs, body=raw), times)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` in the next ``times`` publish requests.

        The event id is claimed ("processing") before the sleep, so concurrent
        requests with the same id wait and may get 409.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._queue(_Fault("delay", seconds=float(seconds)), times)

    def drop_next(self, *, accepted: bool = False, times: int = 1) -> None:
        """Read the next ``times`` publish requests, then close without answering.

        With ``accepted=True`` the event is processed and stored first (a lost
        acknowledgement), so a retry with the same id gets ``duplicate: true``.
        """
        self._queue(_Fault("drop", accepted=accepted), times)

    def reset_faults(self) -> None:
        """Discard all queued faults."""
        with self._lock:
            self._faults.clear()

    def _queue(self, fault: _Fault, times: int) -> None:
        if times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._faults.extend([fault] * times)

    # -- connections --------------------------------------------------------

    def _admit(self, sock: socket.socket) -> bool:
        """Take a new connection (in the accept thread), within max_connections."""
        victim: _Conn | None = None
        with self._lock:
            if self._closing:
                return False
            if len(self._conns) >= self._max_connections:
                idle = [c for c in self._conns.values() if c.idle_since is not None]
                if not idle:
                    return False
                victim = min(idle, key=lambda c: cast(float, c.idle_since))
                del self._conns[id(victim.sock)]
            self._conns[id(sock)] = _Conn(sock)
        if victim is not None:
            try:
                victim.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return True

    def _started(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None:
                conn.thread = threading.current_thread()

    def _set_idle(self, sock: socket.socket, idle: bool) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None:
                conn.idle_since = time.monotonic() if idle else None

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None and conn.sock is sock:
                del self._conns[id(sock)]

    # -- routing and auth (Outpost's router and auth middleware) ------------

    def _route(self, method: str, path: str) -> tuple[_Route, _Params] | None:
        for route in _ROUTES:
            if route.method != method:
                continue
            if route.root:
                params = _match(route.pattern, path)
            elif path.startswith(self._prefix + "/"):
                params = _match(route.pattern, path[len(self._prefix):])
            else:
                params = None
            if params is not None:
                return route, params
        return None

    def _no_route(self, method: str, path: str, query: str) -> _Result:
        if len(path) > 1 and path.endswith("/") and self._route(method, path[:-1]) is not None:
            location = path[:-1] + ("?" + query if query else "")  # gin's trailing-slash redirect
            if method == "GET":
                return 301, f'<a href="{location}">Moved Permanently</a>.\n\n'.encode(), [
                    _HTML_CT, ("Location", location)]
            return 307, b"", [("Location", location)]
        if path.startswith(("/api/", self._prefix + "/")):
            return _NOT_FOUND_JSON
        return _NOT_FOUND_TEXT

    def _authenticate(self, header: str | None, route: _Route, params: _Params) -> _Result | None:
        """None when the caller may go on, else the answer (empty 401/403, or JSON 404 for no tenant)."""
        with self._lock:
            key = self._api_key
            tenants = self._tenants.tenants
            wanted = params.get("tenant", "")
            if not key:  # no key configured: everything is admin, as on Outpost
                return _error(404, "tenant not found") if route.require_tenant and wanted not in tenants else None
            value = (header or "").strip(" \t")
            token = value[len("Bearer "):] if value.startswith("Bearer ") else ""
            if not token:
                return _empty(401)
            if hmac.compare_digest(token.encode("latin-1", "replace"), key.encode("utf-8")):
                if route.require_tenant and wanted not in tenants:
                    return _error(404, "tenant not found")
                return None
            tenant = _jwt.tenant_of(self._jwt_secret, token)
            if tenant is None:
                return _empty(401)
            if route.admin_only or (wanted and wanted != tenant):
                return _empty(403)
            if tenant not in tenants:
                return _empty(401)
            return None

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: bytes, client_port: int) -> None:
        stored = dict(headers)
        if "authorization" in stored:
            stored["authorization"] = _redact(stored["authorization"])
        try:
            parsed: Any = json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        with self._lock:
            self._requests.append(ReceivedRequest(method, path, stored, body, parsed, client_port))

    def _pop_fault(self) -> _Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._fail_rate and self._random.random() < self._fail_rate:
                fault = self._random.choice(self._random_faults)
                name = _fault_name(fault)
                self._injected[name] = self._injected.get(name, 0) + 1
                return fault
            return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- endpoints ------------------------------------------------------------

    def _on_health(self, params: _Params, body: _Body) -> _Result:
        return _json(200, _health())

    def _on_topics(self, params: _Params, body: _Body) -> _Result:
        return _json(200, self._topics or None)

    def _on_upsert_tenant(self, params: _Params, body: _Body) -> _Result:
        raw = body()
        if raw:
            try:
                decode_struct(raw, {"metadata": STRING_MAP})
            except GoDecodeError as error:
                return _error(422, error.message)
        with self._lock:
            created = self._tenants.upsert(params["tenant"])
            return _json(201 if created else 200, self._tenants.tenants[params["tenant"]].view())

    def _on_get_tenant(self, params: _Params, body: _Body) -> _Result:
        with self._lock:
            return _json(200, self._tenants.tenants[params["tenant"]].view())

    def _on_tenant_token(self, params: _Params, body: _Body) -> _Result:
        tenant = params["tenant"]
        return _json(200, {"tenant_id": tenant, "token": _jwt.issue(self._jwt_secret, tenant)})

    def _on_list_destinations(self, params: _Params, body: _Body) -> _Result:
        with self._lock:
            tenant = self._tenants.tenants[params["tenant"]]
            return _json(200, [d.view() for d in tenant.destinations.values()])

    def _on_create_destination(self, params: _Params, body: _Body) -> _Result:
        try:
            fields = decode_struct(body(), _DESTINATION_FIELDS)[0]
        except GoDecodeError as error:
            return _error(422, error.message)
        missing = [f"{name} is required" for name in ("type", "topics") if not fields.get(name) and
                   (name == "type" or fields.get(name) is None)]
        if missing:
            return _error(422, "validation error", missing)
        topics: list[str] = fields["topics"]
        if not topics or (topics != ["*"] and any("*" in t for t in topics)):
            return _error(422, "validation failed: invalid topics")
        if fields["type"] != "webhook":
            return _error(422, f"no provider registered for destination type: {fields['type']}")
        url = (fields.get("config") or {}).get("url", "")
        if not url:
            return _error(422, "validation error", ["config.url is required"])
        with self._lock:
            destination = self._tenants.add_destination(params["tenant"], list(dict.fromkeys(topics)), url,
                                                         fields.get("id") or None)
            return _json(201, destination.view())

    def _find_destination(self, params: _Params) -> Any:
        return self._tenants.tenants[params["tenant"]].destinations.get(params["destination"])

    def _on_get_destination(self, params: _Params, body: _Body) -> _Result:
        with self._lock:
            destination = self._find_destination(params)
            return _json(200, destination.view()) if destination else _error(404, "destination not found")

    def _on_disable(self, params: _Params, body: _Body, disabled: bool = True) -> _Result:
        with self._lock:
            destination = self._find_destination(params)
            if destination is None:
                return _error(404, "destination not found")
            destination.disabled = disabled
            return _json(200, destination.view())

    def _on_enable(self, params: _Params, body: _Body) -> _Result:
        return self._on_disable(params, body, disabled=False)

    # -- publish (Outpost's publish handler and event handler) -------------------

    def _accept(self, body: bytes, delay: float = 0.0) -> _Result:
        """Decode, validate, match and deduplicate one publish; the answer (status, body, headers)."""
        try:
            fields, received = decode_struct(body, _PUBLISH_FIELDS)
        except GoDecodeError as error:
            self._sleep(delay)
            return _error(422, error.message)
        problems = [f"{name} is required" for name in ("tenant_id", "data")
                    if (not fields.get(name) if name == "tenant_id" else name not in fields)]
        if not problems and not isinstance(fields["data"], dict):
            problems = ["data must be a valid JSON object"]
        topic = fields.get("topic") or ""
        if not problems and self._topics:
            if not topic:
                problems = ["topic is required"]
            elif topic != "*" and topic not in self._topics:
                problems = ["topic is invalid"]
        if problems:
            self._sleep(delay)
            return _error(422, "validation error", problems)

        event_id = fields.get("id") or str(uuid.uuid4())
        event = dict(received)
        event.update(fields)
        event["id"] = event_id
        with self._lock:
            matched = self._tenants.match(fields["tenant_id"], topic, fields.get("destination_id") or "")

        if not matched:  # no deduplication without a matching destination
            self._sleep(delay)
            with self._lock:
                self._store(event)
            return self._accepted(event, matched, duplicate=False)

        with self._cond:
            state = self._ids.get(event_id)
            if state is None:
                self._ids[event_id] = _PROCESSING
        if state == _PROCESSED:
            self._sleep(delay)
            return self._accepted(event, matched, duplicate=True)
        if state == _PROCESSING:  # Outpost sleeps a fixed while, then looks once more
            self._sleep(self._processing_wait)
            with self._lock:
                done = self._ids.get(event_id) == _PROCESSED
            self._sleep(delay)
            return self._accepted(event, matched, duplicate=True) if done else _empty(409)

        stored = False
        try:
            self._sleep(delay)
            with self._cond:
                self._store(event)
                self._ids[event_id] = _PROCESSED
                stored = True
        finally:
            with self._cond:
                if not stored:
                    self._ids.pop(event_id, None)
                self._cond.notify_all()
        return self._accepted(event, matched, duplicate=False)

    def _store(self, event: dict[str, Any]) -> None:
        """Append an event once per id; caller holds the lock."""
        if event["id"] not in self._stored_ids:
            self._stored_ids.add(event["id"])
            self._events.append(event)

    def _accepted(self, event: dict[str, Any], matched: list[str], *, duplicate: bool) -> _Result:
        if self._verbose:
            stream = self._stream if self._stream is not None else sys.stdout
            line = (
                f"accepted id={_printable(event['id'])} tenant={_printable(event.get('tenant_id'))}"
                f" topic={_printable(event.get('topic') or '-')}"
                f" destinations={_printable(','.join(matched) or '-')}"
                f" duplicate={'true' if duplicate else 'false'}"
            )
            with self._print_lock:  # one whole line at a time from concurrent handler threads
                stream.write(line + "\n")
                stream.flush()
        return _json(202, {"id": event["id"], "duplicate": duplicate, "destination_ids": matched})
