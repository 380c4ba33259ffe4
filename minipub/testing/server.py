"""In-process fake of Hookdeck Outpost's publish API, for tests and demos.

``OutpostServer`` is a real threaded HTTP/1.1 server (keep-alive, always a
``Content-Length``) that behaves like Outpost's ``POST {base}/publish`` handler:
bearer-key auth (401), validation (422), idempotency by event id (202 with
``duplicate``, 409 while the same id is still being processed), plus
``GET {base}/healthz`` and ``GET {base}/topics``.  Faults (injected statuses,
delays, dropped connections) can be queued to exercise client retry logic, or
drawn at random for a share of publish requests (``fail_rate``).

Standard library only; imports nothing from the rest of the package.
"""

from __future__ import annotations

import hmac
import json
import math
import random
import re
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TextIO, cast, final
from urllib.parse import urlsplit

__all__ = ["OutpostServer", "ReceivedRequest"]

_Headers = list[tuple[str, str]]
_Result = tuple[int, bytes, _Headers]

_PROCESSING = "processing"
_PROCESSED = "processed"
_MAX_BODY = 10 * 1024 * 1024
_JSON_CT: tuple[str, str] = ("Content-Type", "application/json")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))$"
)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request received on the publish path (authorization redacted)."""

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
    """A live client connection and the thread serving it."""

    sock: socket.socket
    thread: threading.Thread = field(default_factory=threading.current_thread)


class _BadRequest(Exception):
    """The request framing could not be read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _error_body(status: int, message: str, data: Any = None) -> bytes:
    payload: dict[str, Any] = {"status": status, "message": message}
    if data is not None:
        payload["data"] = data
    return _json_bytes(payload)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _is_rfc3339(value: str) -> bool:
    m = _RFC3339.match(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    if m.group(8) is not None:
        return int(m.group(9)) < 24 and int(m.group(10)) < 60
    return True


def _health() -> dict[str, Any]:
    """Outpost's ``GET /healthz`` answer when every worker is healthy."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": "healthy", "timestamp": now, "workers": {"http-server": {"status": "healthy"}}}


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


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer bound to its owner, quiet and IPv6-aware."""

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors (e.g. sockets shut down by close())."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; state lives in the OutpostServer."""

    protocol_version = "HTTP/1.1"
    server_version = "minipub-testing"
    sys_version = ""

    @property
    def _owner(self) -> OutpostServer:
        return cast(_Server, self.server).owner

    def setup(self) -> None:
        super().setup()
        self._owner._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._owner._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no per-request logging."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # -- plumbing ---------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw.strip())
        except ValueError:
            raise _BadRequest(400, "invalid content-length") from None
        if length < 0:
            raise _BadRequest(400, "invalid content-length")
        if length > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest(400, "incomplete request body")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "invalid chunked encoding") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise _BadRequest(413, "request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BadRequest(400, "incomplete request body")
            parts.append(chunk)
            self.rfile.readline(65537)

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
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}"]
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

    def _drop(self) -> None:
        """Close the connection without sending anything."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routing ----------------------------------------------------------

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BadRequest as exc:
            self._respond(exc.status, _error_body(exc.status, exc.message), [_JSON_CT], close=True)
            return
        owner = self._owner
        path = urlsplit(self.path).path
        if path == owner._prefix + "/publish":
            self._publish(body)
        elif path == owner._prefix + "/healthz":
            if self._allow("GET", "HEAD"):
                self._respond(200, _json_bytes(_health()), [_JSON_CT])
        elif path == owner._prefix + "/topics":
            if self._allow("GET", "HEAD"):
                if owner._authorized(self.headers.get("Authorization")):
                    topics = list(owner._topics or [])
                    self._respond(200, _json_bytes(topics), [_JSON_CT])
                else:
                    self._respond(401, _error_body(401, "unauthorized"), [_JSON_CT])
        else:
            self._respond(404, _error_body(404, "not found"), [_JSON_CT])

    def _allow(self, *methods: str) -> bool:
        if self.command in methods:
            return True
        self._respond(
            405,
            _error_body(405, "method not allowed"),
            [_JSON_CT, ("Allow", ", ".join(methods))],
        )
        return False

    def _publish(self, body: bytes) -> None:
        owner = self._owner
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        fault = owner._record_and_pop_fault(self.command, self.path, headers, body, self.client_address[1])
        auth = self.headers.get("Authorization")
        if fault is None:
            self._respond(*owner._publish(self.command, auth, body))
        elif fault.kind == "fail":
            self._respond_fault(fault)
        elif fault.kind == "delay":
            self._respond(*owner._publish(self.command, auth, body, fault.seconds))
        else:  # drop
            if fault.accepted:
                owner._publish(self.command, auth, body)
            self._drop()

    def _respond_fault(self, fault: _Fault) -> None:
        status = fault.status
        headers = list(fault.headers)
        if fault.body is None:
            body = _error_body(status, "injected failure")
            if not any(n.lower() == "content-type" for n, _ in headers):
                headers.append(_JSON_CT)
        else:
            body = fault.body
            if not any(n.lower() == "content-type" for n, _ in headers):
                headers.append(("Content-Type", "text/plain; charset=utf-8"))
        if 100 <= status < 200 or status in (204, 304):
            headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
        self._respond(status, body, headers)


@final
class OutpostServer:
    """A fake Outpost API server on a real socket, for tests.

    Use as a context manager (or call ``start()``/``close()``); ``url`` is the
    base URL including the version prefix, e.g. ``http://127.0.0.1:PORT/api/v1``.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        topics: Iterable[str] | None = None,
        destinations: Sequence[str] = ("des_embedded",),
        processing_wait: float = 5.0,
        prefix: str = "/api/v1",
        verbose: bool = False,
        stream: TextIO | None = None,
        fail_rate: float = 0.0,
        retry_after: float = 1.0,
        seed: int | None = None,
    ) -> None:
        """``fail_rate``: the share of publish requests (when no fault is queued) answered by a
        random retryable fault: 503, 429 asking to wait ``retry_after`` seconds (``Retry-After``,
        rounded up, and ``retry-after-ms``), a dropped connection, or a dropped connection after
        the event was accepted (a lost acknowledgement). ``seed`` makes the draws repeatable."""
        if isinstance(destinations, str):
            raise TypeError("destinations must be a sequence of strings, not a string")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if not 0.0 <= retry_after <= 3600.0:
            raise ValueError("retry_after must be between 0 and 3600 seconds")
        prefix = prefix.strip().rstrip("/")
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        self._api_key = api_key
        self._host = host
        self._requested_port = port
        self._topics: list[str] | None = None if topics is None else list(topics)
        self._destinations: list[str] = list(destinations)
        self._processing_wait = float(processing_wait)
        self._prefix = prefix
        self._verbose = verbose
        self._stream = stream

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
            if conn.thread is not threading.current_thread():
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
        """The admin API key the server accepts (settable for rotation tests)."""
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

    def event_count(self, event_id: str) -> int:
        """How many accepted events carry this id (0 or 1)."""
        with self._lock:
            return sum(1 for e in self._events if e.get("id") == event_id)

    def clear(self) -> None:
        """Forget events, requests and processed ids (queued faults are kept)."""
        with self._lock:
            self._events.clear()
            self._stored_ids.clear()
            self._requests.clear()
            for key in [k for k, v in self._ids.items() if v == _PROCESSED]:
                del self._ids[key]

    # -- fault programming ------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> None:
        """Answer the next ``times`` publish requests with ``status``.

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

    # -- internals used by the handler ------------------------------------

    def _register(self, sock: socket.socket) -> None:
        with self._lock:
            closing = self._closing
            if not closing:
                self._conns[id(sock)] = _Conn(sock)
        if closing:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(id(sock), None)

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        parts = header.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return False
        with self._lock:
            key = self._api_key
        return hmac.compare_digest(parts[1].strip().encode(), key.encode())

    def _record_and_pop_fault(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, client_port: int = 0
    ) -> _Fault | None:
        stored = dict(headers)
        if "authorization" in stored:
            stored["authorization"] = _redact(stored["authorization"])
        try:
            parsed: Any = json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        request = ReceivedRequest(method, path, stored, body, parsed, client_port)
        with self._lock:
            self._requests.append(request)
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

    def _validate(self, body: bytes) -> tuple[dict[str, Any], list[str]]:
        if not body.strip():
            return {}, ["request body is required"]
        try:
            parsed = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            return {}, [f"invalid JSON: {exc}"]
        if not isinstance(parsed, dict):
            return {}, ["request body must be a JSON object"]
        errors: list[str] = []
        tenant = parsed.get("tenant_id")
        if tenant is None or tenant == "":
            errors.append("tenant_id is required")
        elif not isinstance(tenant, str):
            errors.append("tenant_id must be a string")
        for name in ("id", "topic", "destination_id"):
            value = parsed.get(name)
            if value is not None and not isinstance(value, str):
                errors.append(f"{name} must be a string")
        retry = parsed.get("eligible_for_retry")
        if retry is not None and not isinstance(retry, bool):
            errors.append("eligible_for_retry must be a boolean")
        when = parsed.get("time")
        if when is not None and not (isinstance(when, str) and _is_rfc3339(when)):
            errors.append("time must be an RFC 3339 date-time string")
        metadata = parsed.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                errors.append("metadata must be an object")
            else:
                for key, value in metadata.items():
                    if not isinstance(value, str):
                        errors.append(f"metadata.{key} must be a string")
        data = parsed.get("data")
        if data is None:
            errors.append("data is required")
        elif not isinstance(data, dict):
            errors.append("data must be an object")
        topic = parsed.get("topic")
        if self._topics is not None and (topic is None or isinstance(topic, str)):
            if not topic:
                errors.append("topic is required")
            elif topic not in self._topics:
                errors.append(f"topic {topic!r} is invalid")
        return parsed, errors

    def _publish(self, method: str, authorization: str | None, body: bytes, delay: float = 0.0) -> _Result:
        """Outpost's publish logic; returns (status, body, headers)."""
        if method != "POST":
            self._sleep(delay)
            return 405, _error_body(405, "method not allowed"), [_JSON_CT, ("Allow", "POST")]
        if not self._authorized(authorization):
            self._sleep(delay)
            return 401, _error_body(401, "unauthorized"), [_JSON_CT]
        payload, errors = self._validate(body)
        if errors:
            self._sleep(delay)
            return 422, _error_body(422, "validation error", errors), [_JSON_CT]

        event_id = payload.get("id") or uuid.uuid4().hex
        event = dict(payload)
        event["id"] = event_id
        wanted = payload.get("destination_id")
        # a named destination matches only if it exists; otherwise all of them
        matched = ([wanted] if wanted in self._destinations else []) if wanted else list(self._destinations)

        if not matched:  # no deduplication without a matching destination
            self._sleep(delay)
            with self._lock:
                self._store(event)
            return self._accepted(event, matched, duplicate=False)

        duplicate = conflict = False
        with self._cond:
            deadline: float | None = None
            while True:
                state = self._ids.get(event_id)
                if state is None:
                    self._ids[event_id] = _PROCESSING
                    break
                if state == _PROCESSED:
                    duplicate = True
                    break
                if deadline is None:
                    deadline = time.monotonic() + self._processing_wait
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    conflict = True
                    break
                self._cond.wait(remaining)
        if conflict:
            self._sleep(delay)
            return 409, b"", []
        if duplicate:
            self._sleep(delay)
            return self._accepted(event, matched, duplicate=True)

        done = False
        try:
            self._sleep(delay)
            with self._cond:
                self._store(event)
                self._ids[event_id] = _PROCESSED
                done = True
        finally:
            with self._cond:
                if not done:
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
                f"accepted id={event['id']} tenant={event.get('tenant_id')}"
                f" topic={event.get('topic') or '-'}"
                f" destinations={','.join(matched) or '-'}"
                f" duplicate={'true' if duplicate else 'false'}"
            )
            with self._print_lock:  # one whole line at a time from concurrent handler threads
                stream.write(line + "\n")
                stream.flush()
        body = {"id": event["id"], "duplicate": duplicate, "destination_ids": matched}
        return 202, _json_bytes(body), [_JSON_CT]
