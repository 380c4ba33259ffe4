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
import random
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO, cast, final

from . import _jwt
from ._faults import _check_header, _Fault, _fault_name, _random_faults
from ._gojson import BOOL, RAW, STRING, STRING_LIST, STRING_MAP, TIME, GoDecodeError, decode_struct
from ._http import (
    _HTML_CT,
    _NOT_FOUND_JSON,
    _NOT_FOUND_TEXT,
    _ROUTES,
    _Body,
    _Conn,
    _empty,
    _error,
    _json,
    _match,
    _Params,
    _Result,
    _Route,
    _Server,
)
from ._tenants import TenantStore, now_text

__all__ = ["OutpostServer", "ReceivedRequest"]

_PROCESSING = "processing"
_PROCESSED = "processed"
#: Outpost's waiter: a repeat of an id still being processed sleeps this long, then looks again.
PROCESSING_WAIT = 5.0
#: The embedded server's own bounds (Outpost has none of them; see OutpostServer's docstring).
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0

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


def _health() -> dict[str, Any]:
    """Outpost's ``GET /healthz`` answer when every worker is healthy."""
    return {"status": "healthy", "timestamp": now_text(),
            "workers": {name: {"status": "healthy"} for name in _WORKERS}}


def _redact(value: str) -> str:
    parts = value.split(None, 1)
    if len(parts) == 2:
        return f"{parts[0]} ***"
    return "***"


def _printable(value: Any) -> str:
    """Untrusted text for one output line: control and other unprintable characters escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


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
    connections are served at once (a new one beyond that closes the longest-idle connection, one
    between requests or still sending its head, or is itself closed when none is idle); a
    connection silent for ``idle_timeout`` seconds (default 30), or whose body takes longer than
    that in all, is closed. A request without a valid key is answered (401/403) before its body
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
