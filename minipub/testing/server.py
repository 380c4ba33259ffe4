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

The parts: ``_outpost.py`` and ``_publish.py`` (what Outpost answers), ``_tenants.py``,
``_gojson.py`` and ``_jwt.py`` (its model, its JSON decoding, its tokens), ``_faults.py`` (fault
injection), ``_http.py`` and ``_routes.py`` (the HTTP front and the router); this module puts them
together behind one object. Standard library only; imports nothing from the rest of the package.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, TextIO, TypeVar, final

from ._faults import Fault, FaultInjector
from ._http import Connections, Front, HTTPFront
from ._outpost import Outpost, ReceivedRequest
from ._publish import PublishRules

__all__ = ["OutpostServer", "ReceivedRequest"]

#: Outpost's waiter: a repeat of an id still being processed sleeps this long, then looks again.
PROCESSING_WAIT = 5.0
#: The embedded server's own bounds (Outpost has none of them; see OutpostServer's docstring).
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0

_T = TypeVar("_T")


def _normal_prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip("/")
    return "/" + prefix if prefix and not prefix.startswith("/") else prefix


def _url_host(host: str) -> str:
    """The host as a URL names it: a wildcard bind as loopback, IPv6 in brackets."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


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
        self._faults = FaultInjector(fail_rate, retry_after, seed)
        if max_body_bytes < 0 or max_connections < 1 or not idle_timeout > 0:
            raise ValueError("max_body_bytes must be >= 0, max_connections >= 1 and idle_timeout > 0")
        self._host = host
        self._requested_port = port
        self._prefix = _normal_prefix(prefix)
        self._processing_wait = float(processing_wait)
        self._max_body = int(max_body_bytes)
        self._max_connections = int(max_connections)
        self._idle_timeout = float(idle_timeout)
        rules = PublishRules(None if topics is None else tuple(topics), self._processing_wait, verbose, stream)
        self._outpost = Outpost(api_key, list(destinations), rules)
        self._connections = Connections(self._max_connections)
        self._front = Front(self._outpost, self._faults, self._connections, self._prefix, self._max_body,
                            self._idle_timeout)
        self._server: HTTPFront | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> OutpostServer:
        """Bind and start serving in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._outpost.stopping.clear()
        self._connections.open()
        server = HTTPFront(self._front, self._host, self._requested_port)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                  name=f"OutpostServer:{server.server_port}", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections and join threads (bounded)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        deadline = time.monotonic() + timeout
        self._outpost.stopping.set()
        server.shutdown()
        with self._outpost.cond:
            self._outpost.cond.notify_all()
        threads = self._connections.close_all()
        server.server_close()
        for each in ([thread] if thread is not None else []) + threads:
            each.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> OutpostServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OutpostServer {self.url if self._server is not None else 'not started'}>"

    # -- where it listens ---------------------------------------------------

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
        return f"http://{_url_host(self._host)}:{self.port}{self._prefix}"

    @property
    def topics(self) -> list[str] | None:
        """The topics a publish must name (None: any); settable, as an operator changes Outpost's ``TOPICS``."""
        topics = self._outpost.topics
        return None if topics is None else list(topics)

    @topics.setter
    def topics(self, value: Iterable[str] | None) -> None:
        self._outpost.set_topics(None if value is None else tuple(value))

    _topics = topics  # the name the suites used before the public one

    @property
    def connection_count(self) -> int:
        """How many client connections are open now."""
        return self._connections.count

    # -- what it received ---------------------------------------------------

    def _locked(self, read: Callable[[], _T]) -> _T:
        with self._outpost.cond:
            return read()

    @property
    def api_key(self) -> str:
        """The admin API key the server accepts (settable for rotation tests; "" turns auth off, as on Outpost)."""
        return self._locked(lambda: self._outpost.api_key)

    @api_key.setter
    def api_key(self, value: str) -> None:
        with self._outpost.cond:
            self._outpost.api_key = value

    @property
    def events(self) -> list[dict[str, Any]]:
        """Accepted events (once per id), as received with their final id."""
        return self._locked(lambda: [dict(e) for e in self._outpost.publishes.events])

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received on the publish path, authorization redacted."""
        return self._locked(lambda: list(self._outpost.requests))

    def event_count(self, event_id: str) -> int:
        """How many accepted events carry this id (0 or 1)."""
        return self._locked(lambda: sum(1 for e in self._outpost.publishes.events if e.get("id") == event_id))

    def clear(self) -> None:
        """Forget events, requests, processed ids, tenants and their destinations (queued faults are kept)."""
        self._outpost.clear()

    # -- tenants and destinations -----------------------------------------

    def add_tenant(self, tenant_id: str) -> None:
        """Create a tenant (no-op when it exists), as ``PUT {base}/tenants/{id}`` does."""
        with self._outpost.cond:
            self._outpost.tenants.upsert(tenant_id)

    def add_destination(self, tenant_id: str, topics: Sequence[str] = ("*",), *, url: str = "",
                        destination_id: str | None = None, disabled: bool = False) -> str:
        """Give ``tenant_id`` (created if missing) a webhook destination subscribed to ``topics``; its id."""
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of strings, not a string")
        with self._outpost.cond:
            self._outpost.tenants.upsert(tenant_id)
            return self._outpost.tenants.add_destination(tenant_id, topics, url, destination_id, disabled).id

    def set_destination_disabled(self, tenant_id: str, destination_id: str, disabled: bool = True) -> None:
        """Disable (or enable) a destination: a disabled one matches nothing."""
        with self._outpost.cond:
            self._outpost.tenants.tenants[tenant_id].destinations[destination_id].disabled = disabled

    # -- fault programming ------------------------------------------------

    @property
    def fail_rate(self) -> float:
        """The share of publish requests answered by a random fault (settable)."""
        return self._faults.fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        self._faults.fail_rate = value

    @property
    def injected_faults(self) -> dict[str, int]:
        """How many random faults (``fail_rate``) were injected, by kind: "503", "429", "drop", ..."""
        return self._faults.injected

    def fail_next(self, status: int, *, times: int = 1, headers: Mapping[str, str] | None = None,
                  body: bytes | str | None = None) -> None:
        """Answer the next ``times`` publish requests with ``status`` (before auth, as a proxy would).

        Default body: JSON ``{"status": S, "message": "injected failure"}``;
        a given ``body`` is sent as-is (text/plain unless ``headers`` say
        otherwise).  1XX, 204 and 304 are sent without a body; 1XX closes the
        connection.
        """
        self._faults.fail(status, times, headers, body)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` in the next ``times`` publish requests.

        The event id is claimed ("processing") before the sleep, so concurrent
        requests with the same id wait and may get 409.
        """
        self._faults.delay(seconds, times)

    def drop_next(self, *, accepted: bool = False, times: int = 1) -> None:
        """Read the next ``times`` publish requests, then close without answering.

        With ``accepted=True`` the event is processed and stored first (a lost
        acknowledgement), so a retry with the same id gets ``duplicate: true``.
        """
        self._faults.queue(Fault("drop", accepted=accepted), times)

    def reset_faults(self) -> None:
        """Discard all queued faults."""
        self._faults.reset()
