"""Delivery exactly once, end to end on the real Outpost: minipub → fault proxy → Outpost → webhook.

Every event is counted where it lands, at a webhook receiver behind a real tenant and destination
(by ``x-outpost-event-id``, and by the ``n`` in its data). Three adversaries: the fault proxy on
a third of the attempts under the ``Publisher``; ``minipub bulk`` killed with SIGKILL halfway and
run again with the same outbox; Outpost itself killed with SIGKILL mid-stream and restarted. Each
prints its figures (``pytest -s``) and keeps them in ``<state folder>/figures/``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

from minipub import Publisher, PublisherStats
from minipub.outbox import Outbox

from ..cli_support import cli_env, minipub_command
from ..faultproxy import FaultProxy, always_pass, random_script
from .conftest import RealOutpost, Receiving
from .faults import PROXY_FAULTS, api_port, fast_sdk, figures_out, restart_outpost


def _by_n(receiving: Receiving) -> Counter[int]:
    """How many deliveries carried each ``data.n`` (the webhook body is the event's data)."""
    counts: Counter[int] = Counter()
    deliveries = receiving.deliveries
    with deliveries.lock:
        for event_id, body in deliveries.bodies.items():
            counts[json.loads(body)["n"]] += deliveries.by_id[event_id]
    return counts


def _stats(stats: PublisherStats) -> Dict[str, int]:
    return {name: getattr(stats, name) for name in stats.__slots__}


def _settle(receiving: Receiving, ids: set[str], timeout: float = 60.0) -> set[str]:
    """Wait for every id, then a little longer so that a late second delivery would be seen too."""
    missing = receiving.deliveries.wait_for(ids, timeout)
    time.sleep(1.5)
    return missing


def test_publisher_delivers_every_event_once_through_a_third_of_attempts_faulted(
        real_outpost: RealOutpost, receiving: Receiving, tmp_path: Path) -> None:
    events, threads, workers = 1200, 4, 8
    script = random_script(seed=17, fault_rate=0.32, weights=PROXY_FAULTS)
    expected: Dict[int, str] = {}
    started = time.perf_counter()
    with FaultProxy(api_port(real_outpost), script, stall_seconds=1.2) as proxy, \
            fast_sdk(real_outpost, proxy.url(real_outpost.base_url), timeout_ms=800) as sdk:
        with Publisher(sdk, workers=workers, backoff_initial=0.02, backoff_cap=0.25) as publisher:

            def produce(first: int) -> None:
                for n in range(first, events, threads):
                    expected[n] = publisher.submit("soak", {"n": n}, tenant_id=receiving.tenant_id)

            producers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
            for thread in producers:
                thread.start()
            for thread in producers:
                thread.join(60)
            settled = publisher.flush(timeout=120)
            stats = publisher.stats()
        published = time.perf_counter() - started
        missing = _settle(receiving, set(expected.values()))
        attempts, faulted = proxy.requests, proxy.faulted_attempts()
        figures = {
            "events": events, "workers": workers, "attempts": attempts, "faulted_attempts": faulted,
            "faulted_share": round(faulted / attempts, 3), "faults_by_kind": proxy.fault_mix(),
            "accepted_by_outpost": len(proxy.accepted_by_id), "duplicate_acks": proxy.duplicate_acks,
            "max_acceptances_of_one_id": max(proxy.accepted_by_id.values()),
            "deliveries": receiving.deliveries.count(), "missing": len(missing),
            "duplicated": len(receiving.deliveries.duplicates()), "publisher": _stats(stats),
            "seconds_to_publish": round(published, 2), "seconds": round(time.perf_counter() - started, 2),
        }
    figures_out(real_outpost, tmp_path, "publisher-soak", figures)
    assert settled and stats.failed == 0 and stats.delivered == events, figures
    assert len(set(expected.values())) == events
    assert not missing and not receiving.deliveries.duplicates(), figures
    assert receiving.deliveries.count() == events and _by_n(receiving) == Counter(range(events))
    assert figures["max_acceptances_of_one_id"] == 1  # Outpost stored each event once
    assert faulted / attempts >= 0.25, figures
    for kind in PROXY_FAULTS:
        assert figures["faults_by_kind"].get(f"proxy:{kind}", 0) > 0, (kind, figures)


def test_bulk_killed_with_sigkill_halfway_then_resumed_delivers_every_line_once(
        real_outpost: RealOutpost, receiving: Receiving, tmp_path: Path) -> None:
    count = 1000
    lines = [json.dumps({"tenant_id": receiving.tenant_id, "topic": "bulk.kill", "data": {"n": n}})
             for n in range(count)]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    weights = {k: v for k, v in PROXY_FAULTS.items() if k != "stall"}
    started = time.perf_counter()
    with FaultProxy(api_port(real_outpost), random_script(seed=29, fault_rate=0.15, weights=weights)) as proxy:
        env = cli_env(OUTPOST_API_KEY=real_outpost.api_key, OUTPOST_API_BASE_URL=proxy.url(real_outpost.base_url))
        args = [*minipub_command(), "bulk", "in.ndjson", "--outbox", "out.db", "--concurrency", "8",
                "--progress", "none", "--timeout", "2", "--backoff", "0.05", "--backoff-max", "0.5"]
        first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        try:
            deadline = time.monotonic() + 60
            while len(proxy.accepted_by_id) < count // 2 and first.poll() is None:
                assert time.monotonic() < deadline, "the first run did not get halfway in 60 s"
                time.sleep(0.002)
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
        accepted_at_kill = len(proxy.accepted_by_id)
        with Outbox(tmp_path / "out.db") as outbox:
            in_outbox_at_kill = outbox.pending_count()
        [read_through] = json.loads((tmp_path / "out.db.bulk.json").read_text())["submitted_through"].values()
        resumed_at = time.perf_counter()
        second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        resume_seconds = time.perf_counter() - resumed_at
        ids = {event_id for event_id in proxy.attempts_by_id if event_id != "?"}
        missing = _settle(receiving, ids)
        by_n = _by_n(receiving)
        figures = {
            "events": count, "accepted_before_kill": accepted_at_kill, "in_outbox_at_kill": in_outbox_at_kill,
            "lines_read_before_kill": read_through, "attempts": proxy.requests,
            "faulted_attempts": proxy.faulted_attempts(), "faults_by_kind": proxy.fault_mix(),
            "accepted_by_outpost": len(proxy.accepted_by_id), "duplicate_acks": proxy.duplicate_acks,
            "max_acceptances_of_one_id": max(proxy.accepted_by_id.values()),
            "deliveries": receiving.deliveries.count(), "missing": len(missing),
            "duplicated": len(receiving.deliveries.duplicates()), "resume_seconds": round(resume_seconds, 2),
            "seconds": round(time.perf_counter() - started, 2),
        }
    figures_out(real_outpost, tmp_path, "bulk-sigkill", figures)
    assert first.returncode == -signal.SIGKILL
    assert 0 < accepted_at_kill < count and in_outbox_at_kill + (count - read_through) > 0, "not killed halfway"
    assert second.returncode == 0, second.stderr
    assert f"resuming after line {read_through}" in second.stderr
    assert len(ids) == count and not missing, figures  # one id per line, every one delivered
    assert by_n == Counter(range(count)) and not receiving.deliveries.duplicates(), figures
    assert figures["max_acceptances_of_one_id"] == 1
    assert not (tmp_path / "out.db.bulk.json").exists()


def test_outpost_killed_with_sigkill_mid_stream_and_restarted_loses_nothing_and_repeats_nothing(
        real_outpost: RealOutpost, receiving: Receiving, tmp_path: Path) -> None:
    count, kill_at = 1500, 300
    ids: List[str] = []
    done = threading.Event()
    started = time.perf_counter()
    # The proxy only counts (every request passes): what Outpost accepted, per id.
    with FaultProxy(api_port(real_outpost), always_pass) as proxy, \
            fast_sdk(real_outpost, proxy.url(real_outpost.base_url), timeout_ms=2000, max_attempts=3) as sdk:
        with Publisher(sdk, workers=8, outbox=tmp_path / "out.db", synchronous="NORMAL", lease_seconds=30,
                       backoff_initial=0.05, backoff_cap=0.5, poll_interval=0.1) as publisher:

            def produce() -> None:
                try:
                    for n in range(count):
                        ids.append(publisher.submit("outpost.kill", {"n": n}, tenant_id=receiving.tenant_id))
                        time.sleep(0.001)
                finally:
                    done.set()

            producer = threading.Thread(target=produce)
            producer.start()
            deadline = time.monotonic() + 60
            # mid-stream: once Outpost has delivered some, while the producer is still submitting
            while receiving.deliveries.count() < kill_at and len(ids) < 2 * count // 3:
                assert time.monotonic() < deadline and not done.is_set(), "the stream ended before the kill"
                time.sleep(0.002)
            delivered_before_kill = receiving.deliveries.count()
            # Deliveries that arrive from now on wait unanswered: at the kill, none is between the
            # webhook's 200 and Outpost marking it delivered (Outpost would deliver such one again).
            receiving.receiver.hold()
            time.sleep(0.3)
            submitted_at_kill = len(ids)
            restart_seconds = restart_outpost(real_outpost)
            receiving.receiver.release()
            producer.join(60)
            settled = publisher.flush(timeout=90)
            stats = publisher.stats()
            pending = publisher.outbox.pending_count() if publisher.outbox else -1
        missing = _settle(receiving, set(ids))
        figures = {
            "events": count, "submitted_at_kill": submitted_at_kill, "delivered_before_kill": delivered_before_kill, "restart_seconds": round(restart_seconds, 2),
            "attempts": proxy.requests, "upstream_statuses": {str(k): v for k, v in proxy.statuses.items()},
            "accepted_by_outpost": len(proxy.accepted_by_id), "duplicate_acks": proxy.duplicate_acks,
            "max_acceptances_of_one_id": max(proxy.accepted_by_id.values()),
            "held_deliveries_abandoned_by_the_killed_outpost": receiving.receiver.abandoned,
            "deliveries": receiving.deliveries.count(), "missing": len(missing),
            "duplicated": len(receiving.deliveries.duplicates()), "publisher": _stats(stats),
            "left_in_outbox": pending, "seconds": round(time.perf_counter() - started, 2),
        }
    figures_out(real_outpost, tmp_path, "outpost-sigkill", figures)
    assert 0 < submitted_at_kill < count and delivered_before_kill > 0, "the kill must land mid-stream"
    assert settled and pending == 0 and stats.failed == 0 and len(set(ids)) == count, figures
    assert not missing and not receiving.deliveries.duplicates(), figures
    assert _by_n(receiving) == Counter(range(count))
    assert figures["max_acceptances_of_one_id"] == 1
