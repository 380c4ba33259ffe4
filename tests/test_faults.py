"""The fault-injection suite: soak, crash (SIGKILL) and outage, through a fault-injecting proxy.

Each scenario prints its figures (``pytest -s`` shows them) and writes them as JSON under the
pytest tmp dir. Every loop and wait is bounded; the three together take well under a minute.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from minipub import SDK, BackoffStrategy, Publisher, RetryBudget, RetryConfig
from minipub.outbox import Outbox
from minipub.testing import OutpostServer

from .conftest import API_KEY
from .faultproxy import FaultProxy, random_script

ROOT = Path(__file__).resolve().parents[1]
PROXY_FAULTS = {"reset_before": 3.0, "lost_ack": 3.0, "reset_mid_response": 2.0, "stall": 0.4}


class ServerChaos:
    """Queues bursts of server-side faults, one burst every ``every`` requests on average (so the share
    of faults does not depend on how fast the machine is): 503s, 429s with Retry-After, and slow
    processing that makes a resent id meet ``409`` (still processing)."""

    def __init__(self, server: OutpostServer, traffic: Callable[[], int], *, seed: int, every: int = 20,
                 slow: bool = True) -> None:
        self.server = server
        self.traffic = traffic
        self.rng = random.Random(seed)
        self.every = every
        self.slow = slow
        self.queued: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def __enter__(self) -> ServerChaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.reset_faults()

    def _gap(self) -> int:
        return self.traffic() + self.rng.randint(1, 2 * self.every - 1)

    def _run(self) -> None:
        next_at = self._gap()
        while not self._stop.wait(0.002):
            if self.traffic() < next_at:
                continue
            next_at = self._gap()
            roll = self.rng.random()
            if roll < 0.5:
                times = self.rng.randint(1, 4)
                self.server.fail_next(503, times=times)
                self.queued["503"] += times
            elif roll < 0.95 or not self.slow:
                times = self.rng.randint(1, 3)
                after = "1" if self.rng.random() < 0.05 else "0"
                self.server.fail_next(429, times=times, headers={"Retry-After": after})
                self.queued["429"] += times
            else:
                self.server.delay_next(0.7)  # the client times out and resends: 409 while this one runs
                self.queued["slow"] += 1


def figures_out(tmp_path: Path, name: str, figures: Dict[str, Any]) -> None:
    path = tmp_path / f"faults-{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(f"\n[{name}] " + json.dumps(figures, sort_keys=True) + f"\n[{name}] written to {path}")


def server_tally(server: OutpostServer, expected: Dict[int, str]) -> Tuple[int, int]:
    """(lost, duplicated) against the events the clients were told were taken (seq -> id)."""
    by_seq: Counter[int] = Counter()
    ids = {}
    for event in server.events:
        seq = event["data"]["seq"]
        by_seq[seq] += 1
        ids[seq] = event["id"]
    lost = sum(1 for seq, event_id in expected.items() if ids.get(seq) != event_id)
    duplicated = sum(n - 1 for n in by_seq.values() if n > 1)
    return lost, duplicated


def fast_sdk(url: str, *, timeout_ms: int, max_attempts: int, budget: RetryBudget) -> SDK:
    retry = RetryConfig("backoff", BackoffStrategy(5, 50, 2.0, 5_000), True, max_attempts=max_attempts)
    return SDK(API_KEY, server_url=url, timeout_ms=timeout_ms, retry_config=retry, retry_budget=budget)


@pytest.fixture
def fault_server() -> Iterator[OutpostServer]:
    with OutpostServer(api_key=API_KEY, processing_wait=0.2) as server:
        yield server


def test_soak_every_event_once_under_faults(fault_server: OutpostServer, tmp_path: Path) -> None:
    events, threads = 2000, 8
    script = random_script(seed=11, fault_rate=0.22, weights=PROXY_FAULTS)
    expected: Dict[int, str] = {}
    started = time.perf_counter()
    with FaultProxy(fault_server.port, script, stall_seconds=0.8) as proxy, \
            fast_sdk(proxy.url(fault_server.url), timeout_ms=400, max_attempts=6,
                     budget=RetryBudget(200, 1.0)) as sdk, \
            ServerChaos(fault_server, lambda: proxy.requests, seed=5, every=20) as chaos:
        with Publisher(sdk, workers=8, outbox=tmp_path / "soak.db", synchronous="NORMAL", lease_seconds=10,
                       backoff_initial=0.02, backoff_cap=0.25, poll_interval=0.1) as publisher:

            def produce(first: int) -> None:
                for seq in range(first, events, threads):
                    expected[seq] = publisher.submit("soak", {"seq": seq}, tenant_id="acme")

            producers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
            for thread in producers:
                thread.start()
            for thread in producers:
                thread.join(60)
            settled = publisher.flush(timeout=60)
            stats = publisher.stats()
            left = publisher.outbox.pending_count() if publisher.outbox else -1
        chaos.stop()
        elapsed = time.perf_counter() - started
        lost, duplicated = server_tally(fault_server, expected)
        attempts = proxy.requests
        faulted = proxy.faulted_attempts()
        figures = {
            "events": events, "submitting_threads": threads, "workers": 8, "attempts": attempts,
            "faulted_attempts": faulted, "faulted_share": round(faulted / attempts, 3),
            "fault_mix": proxy.fault_mix(), "server_faults_queued": dict(chaos.queued),
            "lost": lost, "duplicated": duplicated, "delivered": stats.delivered,
            "duplicate_acks": stats.duplicates, "retried": stats.retried, "failed": stats.failed,
            "attempts_per_event": round(attempts / events, 2), "seconds": round(elapsed, 2),
            "delivered_per_second": round(events / elapsed, 1),
            "max_acceptances_of_one_id": max(proxy.accepted_by_id.values()),
        }
    figures_out(tmp_path, "soak", figures)
    assert settled and left == 0
    assert len(expected) == events and len(set(expected.values())) == events
    assert lost == 0 and duplicated == 0
    assert len(fault_server.events) == events
    assert figures["max_acceptances_of_one_id"] == 1
    assert stats.delivered == events and stats.failed == 0 and stats.submitted == events
    assert faulted / attempts >= 0.20, figures
    kinds = figures["fault_mix"]
    for kind in ("proxy:reset_before", "proxy:lost_ack", "proxy:reset_mid_response", "proxy:stall",
                 "server:503", "server:429", "server:409"):
        assert kinds.get(kind, 0) > 0, (kind, kinds)


def _start_child(mode: str, url: str, path: Path, count: int = 0, **extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    return subprocess.Popen([sys.executable, "-m", "tests.outbox_child", mode, url, API_KEY, str(path), str(count)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_crash_sigkill_mid_stream_then_a_new_process_delivers_the_rest(fault_server: OutpostServer,
                                                                        tmp_path: Path) -> None:
    count, kill_after = 1500, 600
    path = tmp_path / "crash.db"
    script = random_script(seed=23, fault_rate=0.15, weights=PROXY_FAULTS)
    acknowledged: Dict[int, str] = {}
    started = time.perf_counter()
    with FaultProxy(fault_server.port, script, stall_seconds=0.8) as proxy:
        url = proxy.url(fault_server.url)
        with ServerChaos(fault_server, lambda: proxy.requests, seed=3, every=10, slow=False) as chaos:
            # The child kills itself (SIGKILL) right after its kill_after-th submit returned: the
            # delivery may keep pace with the submits, so only a kill at a known point lands mid-stream.
            child = _start_child("produce", url, path, count, CHILD_KILL_AFTER=str(kill_after))
            try:
                child.wait(60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(10)
            # the lines the child printed before it died: submits that had returned
            rest = child.stdout.read() if child.stdout else ""
            for line in rest.splitlines():
                if line.startswith("ok "):
                    _, seq, event_id = line.split()
                    acknowledged[int(seq)] = event_id
            killed_at = time.perf_counter() - started
            delivered_before = len(fault_server.events)
        with Outbox(path) as outbox:
            left_in_outbox = outbox.pending_count()
        assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
        drain = _start_child("drain", url, path)
        try:
            out, err = drain.communicate(timeout=60)
        finally:
            if drain.poll() is None:
                drain.kill()
                drain.wait(10)
        assert drain.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        with Outbox(path) as outbox:
            left_after = outbox.pending_count()
            dead = outbox.dead_letter_count()
        lost, duplicated = server_tally(fault_server, acknowledged)
        figures = {
            "events_acknowledged_before_kill": len(acknowledged), "killed_after_seconds": round(killed_at, 2),
            "delivered_before_kill": delivered_before, "left_in_outbox_at_kill": left_in_outbox,
            "delivered_by_new_process": report["delivered"], "duplicate_acks_in_new_process": report["duplicates"],
            "attempts": proxy.requests, "faulted_attempts": proxy.faulted_attempts(), "fault_mix": proxy.fault_mix(),
            "server_faults_queued": dict(chaos.queued), "lost": lost, "duplicated": duplicated,
            "left_after": left_after, "dead_letters": dead, "server_events": len(fault_server.events),
            "seconds": round(time.perf_counter() - started, 2),
            "max_acceptances_of_one_id": max(proxy.accepted_by_id.values()),
        }
    figures_out(tmp_path, "crash", figures)
    assert len(acknowledged) == kill_after, "the child did not get to its kill point"
    assert 0 < delivered_before < count and left_in_outbox > 0, "the kill must land mid-stream"
    assert lost == 0 and duplicated == 0 and left_after == 0 and dead == 0
    assert figures["max_acceptances_of_one_id"] == 1
    # everything the server has is something the child wrote to the outbox, each once
    assert len(fault_server.events) == len({e["id"] for e in fault_server.events}) <= count


def test_outage_nothing_lost_and_attempts_bounded(fault_server: OutpostServer, tmp_path: Path) -> None:
    workers, before, during, outage = 4, 100, 200, 4.0
    initial, cap = 0.1, 0.5
    budget = RetryBudget(10, 0.1)
    expected: Dict[int, str] = {}
    submit_latency: List[float] = []
    started = time.perf_counter()
    with FaultProxy(fault_server.port) as proxy, \
            fast_sdk(proxy.url(fault_server.url), timeout_ms=500, max_attempts=3, budget=budget) as sdk:
        with Publisher(sdk, workers=workers, outbox=tmp_path / "outage.db", lease_seconds=5,
                       backoff_initial=initial, backoff_cap=cap, poll_interval=0.1) as publisher:
            for seq in range(before):
                expected[seq] = publisher.submit("outage", {"seq": seq}, tenant_id="acme")
            assert publisher.flush(timeout=20)
            requests_before = proxy.requests
            proxy.down()
            down_at = time.monotonic()
            for seq in range(before, before + during):
                t0 = time.perf_counter()
                expected[seq] = publisher.submit("outage", {"seq": seq}, tenant_id="acme")
                submit_latency.append(time.perf_counter() - t0)
            flushed_while_down = publisher.flush(timeout=max(0.0, outage - (time.monotonic() - down_at)))
            down_for = time.monotonic() - down_at
            attempts_down = proxy.down_attempts
            proxy.up()
            up_at = time.monotonic()
            settled = publisher.flush(timeout=30)
            recovery = time.monotonic() - up_at
            stats = publisher.stats()
        lost, duplicated = server_tally(fault_server, expected)
    # Per worker: one round at once, then a pause >= half the capped backoff before each next round;
    # plus at most `capacity` in-call retries from the budget (and one stale-connection resend each).
    min_pauses = [max(initial * 2 ** k, 0.0) for k in range(64)]
    rounds_per_worker, spent = 1, 0.0
    for ceiling in min_pauses:
        spent += min(ceiling, cap) / 2
        if spent > down_for:
            break
        rounds_per_worker += 1
    bound = workers * rounds_per_worker + budget.capacity + 2 * workers
    figures = {
        "events": before + during, "submitted_during_outage": during, "outage_seconds": round(down_for, 2),
        "attempts_during_outage": attempts_down, "attempts_per_second_down": round(attempts_down / down_for, 1),
        "attempt_bound": bound, "workers": workers, "backoff_cap": cap,
        "max_submit_ms_during_outage": round(max(submit_latency) * 1000, 2),
        "recovery_seconds": round(recovery, 2), "lost": lost, "duplicated": duplicated,
        "delivered": stats.delivered, "retried": stats.retried, "failed": stats.failed,
        "requests_total": proxy.requests, "requests_before_outage": requests_before,
        "seconds": round(time.perf_counter() - started, 2),
    }
    figures_out(tmp_path, "outage", figures)
    assert not flushed_while_down
    assert settled and lost == 0 and duplicated == 0 and stats.failed == 0
    assert len(fault_server.events) == before + during
    assert 0 < attempts_down <= bound, figures

