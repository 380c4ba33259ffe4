"""A process killed with SIGKILL: its claimed rows are sent again at once, never while their owner lives.

Real child processes (``tests/outbox_child.py``) share one outbox file with this process; the
embedded server counts the requests for each event id.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

import minipub.background.store
import minipub.outbox
from minipub import SDK, Publisher, RetryBudget
from minipub.outbox import Outbox
from minipub.request import build_publish_request
from minipub.testing import OutpostServer
from minipub.testing.rawserver import RawServer

from .children import killed_at_exit, outbox_child, reports
from .conftest import API_KEY

ROOT = Path(__file__).resolve().parents[1]
FAST = {"backoff_initial": 0.01, "backoff_cap": 0.05, "poll_interval": 0.05}


@pytest.fixture
def stalling() -> Iterator[RawServer]:
    """A server that reads nothing and answers nothing: a sender's rows stay claimed, in flight."""
    with RawServer(lambda peer: peer.wait(30)) as server:
        yield server


def _claimed_then_killed(url: str, path: Path, count: int, **env: str) -> Dict[str, Optional[float]]:
    """Run a producer until it holds leases on rows it is sending, SIGKILL it; its event ids -> lease expiry."""
    with killed_at_exit([outbox_child("produce", url, path, count, **env)]) as (child,):
        assert child.stdout is not None
        ids = []
        for _ in range(count):
            line = child.stdout.readline()
            assert line.startswith("ok "), (line, child.stderr.read() if child.stderr else "")
            ids.append(line.split()[2])
        deadline = time.monotonic() + 10
        with Outbox(path) as outbox:
            while time.monotonic() < deadline:
                leased = [e for e in outbox.pending(None) if e.lease_owner]
                if len(leased) >= 4:  # one row in flight per worker
                    break
                time.sleep(0.02)
            assert len(leased) >= 4
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            leases = {e.event.id: e for e in outbox.pending(None)}
            lease_until = {row[0]: row[1] for row in outbox._read(
                "SELECT event_id, lease_until FROM outbox")}
        assert sorted(leases) == sorted(ids)  # all still pending, some leased by the dead process
        return lease_until


def test_rows_of_a_sigkilled_process_are_sent_again_within_two_seconds(stalling: RawServer,
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    lease_until = _claimed_then_killed(stalling.url("/api/v1"), path, 12, CHILD_LEASE="120",
                                       CHILD_TIMEOUT_MS="30000")
    killed_at = time.time()
    assert sum(1 for until in lease_until.values() if until and until > killed_at + 100) >= 4  # 120 s leases
    with OutpostServer(api_key=API_KEY) as server, \
            SDK(API_KEY, server_url=server.url, retry_budget=RetryBudget(100, 1)) as sdk:
        start = time.monotonic()
        with Publisher(sdk, outbox=path, **FAST) as publisher:  # the next process
            assert publisher.flush(timeout=10)
            recovery = time.monotonic() - start
        sent = Counter(r.json["id"] for r in server.requests)
    print(f"\nrecovered {len(sent)} events ({sum(1 for u in lease_until.values() if u)} leased by the killed "
          f"process for 120 s) in {recovery:.3f} s")
    assert sorted(sent) == sorted(lease_until) and set(sent.values()) == {1}
    assert recovery < 2.0
    assert not list(tmp_path.glob("*.lock*"))  # the dead owner's lock file went with its rows


def test_the_lock_file_of_a_process_killed_while_idle_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with OutpostServer(api_key=API_KEY) as server:
        with killed_at_exit([outbox_child("produce", server.url, path, 1, CHILD_HOLD="1")]) as (child,):
            assert child.stdout is not None
            assert child.stdout.readline().startswith("ok ") and child.stdout.readline() == "done\n"
            assert len(list(tmp_path.glob("*.lock"))) == 1  # alive, idle, holding no row
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        with SDK(API_KEY, server_url=server.url) as sdk, Publisher(sdk, outbox=path, **FAST) as publisher:
            publisher.submit("t", {}, tenant_id="acme")
            assert publisher.flush(timeout=10)
            (mine,) = tmp_path.glob("*.lock")  # only this publisher's own
            assert publisher._owner in mine.name
    assert not list(tmp_path.glob("*.lock*"))


def test_a_live_publisher_takes_over_a_killed_processes_rows(stalling: RawServer, tmp_path: Path) -> None:
    """A publisher already running on the shared file notices the death at its next poll and sweep."""
    path = tmp_path / "o.db"
    with OutpostServer(api_key=API_KEY) as server, \
            SDK(API_KEY, server_url=server.url, retry_budget=RetryBudget(100, 1)) as sdk, \
            Publisher(sdk, outbox=path, poll_interval=0.2, backoff_initial=0.01, backoff_cap=0.05) as publisher:
        lease_until = _claimed_then_killed(stalling.url("/api/v1"), path, 8, CHILD_LEASE="120",
                                           CHILD_TIMEOUT_MS="30000")
        start = time.monotonic()
        deadline = start + 10
        while len(server.events) < len(lease_until) and time.monotonic() < deadline:
            time.sleep(0.02)
        takeover = time.monotonic() - start
        assert publisher.flush(timeout=5)
    print(f"\na running publisher sent the killed process's {len(lease_until)} events {takeover:.3f} s after the kill")
    assert sorted(e["id"] for e in server.events) == sorted(lease_until)
    assert takeover < minipub.outbox.SWEEP_INTERVAL + 0.2 + 1.5  # one sweep interval, one poll, slack


def test_without_fcntl_a_killed_processes_rows_wait_for_their_lease(stalling: RawServer, tmp_path: Path) -> None:
    """The fallback where liveness is unknown (no ``fcntl``): the lease decides, as before."""
    path = tmp_path / "o.db"
    lease_until = _claimed_then_killed(stalling.url("/api/v1"), path, 6, CHILD_LEASE="1.5",
                                       CHILD_TIMEOUT_MS="1000", CHILD_NO_FCNTL="1")
    assert not list(tmp_path.glob("*.lock"))  # the child could not show liveness
    expiry = max(until for until in lease_until.values() if until)
    with OutpostServer(api_key=API_KEY) as server, \
            SDK(API_KEY, server_url=server.url, retry_budget=RetryBudget(100, 1)) as sdk, \
            Publisher(sdk, outbox=path, **FAST) as publisher:
        assert publisher.flush(timeout=10)
        done = time.time()
    print(f"\nwithout fcntl: re-sent {done - expiry:+.3f} s after the 1.5 s lease ran out")
    assert sorted(e["id"] for e in server.events) == sorted(lease_until)
    assert done >= expiry - 0.05  # not before the lease ran out
    assert done <= expiry + 5


def test_live_processes_and_publishers_never_send_one_event_twice(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two child processes and two publishers in this process drain one outbox together, all sweeping for
    dead owners every 50 ms with 120 s leases: only liveness could free a row, and no live owner's is."""
    monkeypatch.setattr(minipub.background.store, "SWEEP_INTERVAL", 0.05)
    path = tmp_path / "shared.db"
    requests = [build_publish_request(tenant_id="acme", topic="t", data={"n": n}) for n in range(400)]
    with Outbox(path) as outbox:
        outbox.transact([(r, None, None) for r in requests], [], owner="writer")
    with OutpostServer(api_key=API_KEY) as server:
        server.delay_next(0.01, times=len(requests))  # draining lasts long enough for many sweeps
        with killed_at_exit([outbox_child("drain", server.url, path, CHILD_LEASE="120", CHILD_SWEEP="0.05")
                             for _ in range(2)]) as children:
            with SDK(API_KEY, server_url=server.url, retry_budget=RetryBudget(100, 1)) as sdk, \
                    Publisher(sdk, workers=2, outbox=path, lease_seconds=120, **FAST) as first, \
                    Publisher(sdk, workers=2, outbox=path, lease_seconds=120, **FAST) as second:
                assert first.flush(timeout=60) and second.flush(timeout=60)
                mine = [first.stats().delivered, second.stats().delivered]
            drained = reports(children)
        sent = Counter(r.json["id"] for r in server.requests)
    shares = mine + [r["delivered"] for r in drained]
    print(f"\n400 events drained by 4 owners in 3 processes: {shares}; most requests for one id: {max(sent.values())}")
    assert sorted(sent) == sorted(r.event_id for r in requests) and set(sent.values()) == {1}
    assert sum(shares) == 400
    assert sum(1 for share in shares if share) >= 3  # they really drained it together
    with Outbox(path) as outbox:
        assert outbox.pending_count() == 0
    assert not list(tmp_path.glob("*.lock"))  # every owner gave its lock file up at close
