"""The Publisher's event-loop engine: many sends in flight on one thread, and nothing that blocks it.

Every behaviour test of ``test_publisher.py`` and ``test_publisher_key.py`` runs on both engines
(``engines.py``); here are the loop's own guarantees, each played against the loop: a server that
answers only once K requests are open at once, a retry budget that stays empty, a key probe the
server holds, and the connections left when the loop ends. Each runs on the default loop (uvloop's,
installed with the test extras) and on asyncio's own (``engines.each_event_loop``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, List, Optional, Set

import pytest

from minipub import SDK, BackoffStrategy, Publisher, RetryBudget, RetryConfig
from minipub.errors import ConfigurationError
from minipub.hookspecs import hookimpl
from minipub.testing import OutpostServer
from minipub.testing.rawserver import ContractRequest, Peer, RawServer, outpost_like

from .conftest import API_KEY
from .engines import each_event_loop  # noqa: F401  (each test runs on each event loop)
from .test_publisher import Errors

try:
    import uvloop
except ImportError:  # pragma: no cover - installed with the test extras
    uvloop = None


def accept(request: ContractRequest, peer: Peer) -> None:
    """Outpost's 202 for the event sent."""
    body = {"id": json.loads(request.body)["id"], "duplicate": False, "destination_ids": []}
    peer.respond(202, json.dumps(body).encode(), [("Content-Type", "application/json")])


def _publisher_threads(before: Set[threading.Thread]) -> List[str]:
    """The names of the publisher threads started since ``before`` (other tests may leave theirs)."""
    return sorted(t.name for t in set(threading.enumerate()) - before if t.name.startswith("minipub-publisher"))


class _Observer:
    @hookimpl
    def minipub_retry_decision(self, publish: Any, error: Any, delay: Optional[float]) -> None:
        pass


def test_the_engine_follows_the_transport(server: OutpostServer) -> None:
    with SDK(API_KEY, server_url=server.url) as lean, SDK(API_KEY, server_url=server.url, transport="http.client") \
            as plain, SDK(API_KEY, server_url=server.url, plugins=[_Observer()]) as observed:
        assert lean.sends_natively_async() and not plain.sends_natively_async()
        assert not observed.sends_natively_async()  # observability hooks wrap a blocking call
        for sdk, engine in ((lean, "loop"), (plain, "threads"), (observed, "threads")):
            before = set(threading.enumerate())
            with Publisher(sdk, workers=3) as publisher:
                assert publisher.engine == engine and f"engine={engine!r}" in repr(publisher)
                publisher.submit("t", {}, tenant_id="acme")
                assert publisher.flush(timeout=10)
                assert _publisher_threads(before) == (["minipub-publisher-loop"] if engine == "loop" else
                                                      [f"minipub-publisher-{n}" for n in (1, 2, 3)])
            assert _publisher_threads(before) == []  # a closed publisher leaves no thread behind
        with pytest.raises(ConfigurationError, match="engine='loop' needs a transport with send_async"):
            Publisher(plain, engine="loop")
        with pytest.raises(ConfigurationError, match="engine must be one of 'auto', 'threads', 'loop'"):
            Publisher(lean, engine="asyncio")


def test_the_event_loop_is_uvloops_when_installed_and_loop_factory_chooses(server: OutpostServer,
                                                                         event_loop_kind: str) -> None:
    default = "uvloop" if uvloop is not None else "asyncio"
    with SDK(API_KEY, server_url=server.url) as sdk, \
            SDK(API_KEY, server_url=server.url, transport="http.client") as plain:
        with Publisher(sdk, workers=2) as publisher:
            expected = default if event_loop_kind == "default" else "asyncio"
            assert publisher.event_loop == expected and f"event_loop={expected!r}" in repr(publisher)
            publisher.submit("t", {}, tenant_id="acme")
            assert publisher.flush(timeout=10) and publisher.stats().delivered == 1
        if uvloop is not None:
            with Publisher(sdk, loop_factory=uvloop.new_event_loop) as publisher:
                assert publisher.event_loop == "uvloop"
        with Publisher(sdk, loop_factory=asyncio.new_event_loop) as publisher:
            assert publisher.event_loop == "asyncio"
        with Publisher(plain) as publisher:
            assert publisher.engine == "threads" and publisher.event_loop is None


def _closed_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.close()
    return loop


def _failing_loop() -> asyncio.AbstractEventLoop:
    raise OSError("no more file descriptors")


@pytest.mark.parametrize(("factory", "engine", "message"), [
    ("asyncio", "auto", "must be a callable returning a new event loop"),
    (asyncio.new_event_loop, "threads", "needs the event-loop engine (this publisher's is 'threads')"),
    (_failing_loop, "auto", "loop_factory raised OSError: no more file descriptors"),
    (_closed_loop, "auto", "must return a new event loop, got"),
    (lambda: "a loop", "auto", "must return a new event loop, got 'a loop'"),
])
def test_a_bad_loop_factory_is_refused_before_anything_starts(server: OutpostServer, tmp_path: Path, factory: Any,
                                                              engine: str, message: str) -> None:
    before = set(threading.enumerate())
    refusals = []  # kept: their tracebacks hold the refused publishers, so only close() frees the file
    for outbox in (None, tmp_path / "outbox.db"):
        with SDK(API_KEY, server_url=server.url) as sdk, pytest.raises(ConfigurationError, match=re.escape(message)) \
                as refused:
            Publisher(sdk, engine=engine, loop_factory=factory, outbox=outbox)
        refusals.append(refused)
    assert _publisher_threads(before) == []
    assert _open_files_under(tmp_path) == []  # the refused publisher closed its outbox


def _open_files_under(folder: Path) -> List[str]:
    """This process's open files in ``folder`` (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def test_workers_sends_are_in_flight_at_once_on_one_thread() -> None:
    """The server answers nobody until ``k`` requests are open at once: only ``k`` concurrent sends pass."""
    k = 8
    arrived = threading.Barrier(k, timeout=10)

    def handler(peer: Peer) -> None:
        request = peer.read_request()
        if request is None:
            return
        arrived.wait()  # a BrokenBarrierError (fewer than k at once) leaves the request unanswered
        accept(request, peer)

    with RawServer(handler) as raw, SDK(API_KEY, server_url=raw.url("").rstrip("/"), proxy=None,
                                        retry_config=RetryConfig("none"), timeout_ms=10_000) as sdk:
        errors = Errors()
        before = set(threading.enumerate())
        with Publisher(sdk, workers=k, on_error=errors) as publisher:
            for n in range(k):
                publisher.submit("t", {"n": n}, tenant_id="acme")
            assert publisher.flush(timeout=15)
            assert _publisher_threads(before) == ["minipub-publisher-loop"]
            stats = publisher.stats()
    assert errors.calls == [] and stats.delivered == k and raw.accepted == k


def test_a_retry_waiting_for_a_budget_token_never_holds_up_the_other_sends(server: OutpostServer) -> None:
    """An empty budget that never refills: the first event's retry waits (awaited) until its deadline
    and fails; meanwhile every later event is delivered. A blocking wait would stall them all."""
    server.fail_next(503)
    retries = RetryConfig("backoff", BackoffStrategy(10, 10, 1.0, 2_000), True)
    errors = Errors()
    with SDK(API_KEY, server_url=server.url, retry_budget=RetryBudget(0, 0, 0), retry_config=retries) as sdk, \
            Publisher(sdk, workers=2, on_error=errors) as publisher:
        assert publisher.engine == "loop"
        waiting = publisher.submit("t", {"n": 0}, tenant_id="acme")
        while not server.requests:
            time.sleep(0.01)
        started = time.monotonic()
        later = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(1, 21)]
        deadline = started + 1.5  # well before the waiting retry's 2 s deadline
        while time.monotonic() < deadline and not all(server.event_count(i) for i in later):
            time.sleep(0.02)
        assert all(server.event_count(i) == 1 for i in later)
        assert errors.calls == []  # the first one is still waiting for a token
        assert publisher.flush(timeout=10)
    assert [event.id for event, _ in errors.calls] == [waiting]  # no token came: failed for good, not retried
    assert server.event_count(waiting) == 0


def test_a_success_refills_the_budget_and_wakes_the_waiting_retry(server: OutpostServer) -> None:
    server.fail_next(503)
    retries = RetryConfig("backoff", BackoffStrategy(10, 10, 1.0, 5_000), True)
    budget = RetryBudget(1, 1.0, 0)
    assert budget.spend()  # empty now; a success refills one token
    with SDK(API_KEY, server_url=server.url, retry_budget=budget, retry_config=retries) as sdk, \
            Publisher(sdk, workers=2) as publisher:
        waiting = publisher.submit("t", {"n": 0}, tenant_id="acme")
        while not server.requests:
            time.sleep(0.01)
        started = time.monotonic()
        publisher.submit("t", {"n": 1}, tenant_id="acme")  # its 202 deposits one token
        assert publisher.flush(timeout=10)
        took = time.monotonic() - started
        stats = publisher.stats()
    assert server.event_count(waiting) == 1 and stats.delivered == 2 and stats.failed == 0
    assert took < 3.0  # woken by the refill (looked at every 50 ms), not by the 5 s deadline


def test_a_held_key_probe_leaves_the_loop_free_and_its_answer_decides() -> None:
    """The first send gets a 401; the next is the probe and the server holds it for 0.5 s; the
    other events wait for its answer without blocking the loop (their sends are not made), then go."""
    held = threading.Event()
    seen: List[int] = []

    def handler(peer: Peer) -> None:
        def reply(request: ContractRequest, peer: Peer) -> None:
            seen.append(peer.index)
            if len(seen) == 1:
                peer.respond(401, b'{"message": "unauthorized"}')
                return
            if len(seen) == 2:
                held.set()
                peer.wait(0.5)
            accept(request, peer)

        peer.serve(reply)

    with RawServer(handler) as raw, SDK(API_KEY, server_url=raw.url("").rstrip("/"), proxy=None,
                                        retry_config=RetryConfig("none")) as sdk:
        errors = Errors()
        with Publisher(sdk, workers=4, on_error=errors, backoff_initial=0.05, backoff_cap=0.05) as publisher:
            publisher.submit("t", {"n": 0}, tenant_id="acme")
            assert publisher.flush(timeout=5)
            time.sleep(0.1)  # the pause after the refusal: the next send is the probe
            ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(1, 9)]
            assert held.wait(5)
            time.sleep(0.2)
            assert len(seen) == 2  # while the probe is out, nothing else is sent
            assert publisher.flush(timeout=5)
            stats = publisher.stats()
    assert len(errors.calls) == 1 and stats.delivered == len(ids)  # the probe's 202 opened the gate for all


def test_connections_end_with_their_event_loop() -> None:
    """No idle connection outlives its loop: closing the Publisher, or ``asyncio.run`` ending, closes them."""
    with RawServer(outpost_like) as raw, SDK(API_KEY, server_url=raw.url("").rstrip("/"), proxy=None) as sdk:
        with Publisher(sdk, workers=3) as publisher:
            for n in range(6):
                publisher.submit("t", {"n": n}, tenant_id="acme")
            assert publisher.flush(timeout=10)
        opened = raw.accepted
        assert 1 <= opened <= 3 and raw.wait_finished(opened, timeout=5)

        async def three_at_once() -> None:
            await asyncio.gather(*(sdk.publish.event_async(tenant_id="acme", topic="t", data={}) for _ in range(3)))

        asyncio.run(three_at_once())
        assert raw.accepted > opened and raw.wait_finished(raw.accepted, timeout=5)


def test_budget_acquire_async_takes_a_token_paced_or_gives_up_at_the_timeout() -> None:
    budget = RetryBudget(capacity=1, refill=0, wait_rate=0)
    naps: List[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        await asyncio.sleep(seconds)

    assert asyncio.run(budget.acquire_async(1.0, nap)) == pytest.approx(0, abs=0.05)  # the one token
    assert asyncio.run(budget.acquire_async(0.2, nap)) is None and 0 < sum(naps) <= 0.3  # none came
    assert all(n <= 0.05 + 1e-9 for n in naps)  # it looks again often: a refill is not notified
    paced = RetryBudget(capacity=0, refill=0, wait_rate=5)
    assert asyncio.run(paced.acquire_async(1.0, nap)) is not None  # the first paced token at once
    waited = asyncio.run(paced.acquire_async(1.0, nap))
    assert waited is not None and 0.15 <= waited <= 0.5  # the next one 1/5 s later
