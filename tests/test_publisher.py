"""Publisher and outbox behaviour against the embedded server (real sockets, real SQLite files)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import minipub
from minipub import SDK, BackoffStrategy, Event, Publisher, RetryBudget, RetryConfig
from minipub.errors import (
    BadRequestError,
    ConfigurationError,
    ConnectError,
    InternalServerError,
    PublisherClosedError,
    QueueFullError,
    ValidationError,
)
from minipub.hookspecs import hookimpl
from minipub.outbox import Outbox
from minipub.testing import OutpostServer

from .children import exit_code_of_fork, killed_at_exit, outbox_child, reports
from .conftest import API_KEY, Sleeps
from .engines import engine  # noqa: F401  (each test runs on each engine and loop)

ROOT = Path(__file__).resolve().parents[1]
FAST = {"backoff_initial": 0.01, "backoff_cap": 0.05, "poll_interval": 0.05}


class Errors:
    """A recording on_error."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Event, BaseException]] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event, error: BaseException) -> None:
        with self.lock:
            self.calls.append((event, error))


@pytest.fixture
def errors() -> Errors:
    return Errors()


def dead_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url() -> str:
    return f"http://127.0.0.1:{dead_port()}/api/v1"


def retries(attempts: int) -> RetryConfig:
    return RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 5_000), True, max_attempts=attempts)


@pytest.fixture
def sdk(server: OutpostServer, sleeps: Sleeps) -> Iterator[SDK]:
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, timeout_ms=5000, retry_budget=RetryBudget(100, 1)) as client:
        yield client


# -- submit, flush, stats -------------------------------------------------------------------


def test_submit_returns_the_id_and_workers_deliver(sdk: SDK, server: OutpostServer) -> None:
    with Publisher(sdk, workers=3) as publisher:
        ids = [publisher.submit("user.created", {"n": n}, tenant_id="acme", metadata={"k": "v"}) for n in range(30)]
        given = publisher.submit(tenant_id="acme", topic="user.created", data={"n": 30}, id="evt_given")
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
    assert given == "evt_given"
    assert sorted(e["id"] for e in server.events) == sorted([*ids, given])
    assert all(e["metadata"] == {"k": "v"} for e in server.events if e["id"] != given)
    assert stats == minipub.PublisherStats(submitted=31, delivered=31, duplicates=0, retried=0, failed=0, queued=0)
    with pytest.raises(AttributeError):
        stats.delivered = 0  # type: ignore[misc]


def test_submit_never_touches_the_network(errors: Errors) -> None:
    with SDK(API_KEY, server_url=dead_url(), retry_config=RetryConfig("none")) as sdk, \
            Publisher(sdk, workers=1, on_error=errors, **FAST) as publisher:
        event_id = publisher.submit("t", {"a": 1}, tenant_id="acme")  # nothing listens: still an id at once
        assert publisher.flush(timeout=10)
    ((event, error),) = errors.calls
    assert event.id == event_id and event.tenant_id == "acme" and event.topic == "t" and event.data == {"a": 1}
    assert isinstance(error, ConnectError)


def test_bad_input_fails_in_submit_before_enqueueing(sdk: SDK, server: OutpostServer, tmp_path: Path) -> None:
    for outbox in (None, tmp_path / "o.db"):
        with Publisher(sdk, outbox=outbox) as publisher:
            with pytest.raises(ValidationError, match="data must be a mapping"):
                publisher.submit("t", [1, 2], tenant_id="acme")  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="tenant_id"):
                publisher.submit("t", {}, tenant_id="")
            with pytest.raises(ValidationError, match="timeout_ms"):
                publisher.submit("t", {}, tenant_id="acme", timeout_ms=-1)
            with pytest.raises(ValidationError, match="retries"):
                publisher.submit("t", {}, tenant_id="acme", retries=3)  # type: ignore[arg-type]
            assert publisher.stats().submitted == 0
            if publisher.outbox is not None:
                assert publisher.outbox.pending_count() == 0
    assert server.requests == []


def test_flush_reports_a_timeout(sdk: SDK, server: OutpostServer) -> None:
    server.delay_next(0.5)
    with Publisher(sdk, workers=1) as publisher:
        publisher.submit("t", {}, tenant_id="acme")
        assert publisher.flush(timeout=0.05) is False
        assert publisher.stats().queued == 1
        assert publisher.flush(timeout=10) is True


def test_flush_waits_only_for_what_was_submitted_before(sdk: SDK, server: OutpostServer) -> None:
    with Publisher(sdk, workers=2) as publisher:
        publisher.submit("t", {"n": 1}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        server.delay_next(1.0)
        publisher.submit("t", {"n": 2}, tenant_id="acme")  # after the flush: not its business
        assert publisher.flush(timeout=0) is False
        assert publisher.flush(timeout=10)


def test_eight_threads_submit_at_once(sdk: SDK, server: OutpostServer, tmp_path: Path) -> None:
    for outbox in (None, tmp_path / "threads.db"):
        server.clear()
        ids: List[str] = []
        lock = threading.Lock()
        with Publisher(sdk, workers=4, outbox=outbox, synchronous="NORMAL") as publisher:
            barrier = threading.Barrier(8)

            def produce(k: int) -> None:
                barrier.wait(10)
                for n in range(100):
                    event_id = publisher.submit("t", {"k": k, "n": n}, tenant_id="acme")
                    with lock:
                        ids.append(event_id)

            threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert publisher.flush(timeout=30)
            stats = publisher.stats()
        assert len(ids) == len(set(ids)) == 800
        assert sorted(e["id"] for e in server.events) == sorted(ids)
        assert {(e["data"]["k"], e["data"]["n"]) for e in server.events} == {(k, n) for k in range(8)
                                                                             for n in range(100)}
        assert stats.submitted == stats.delivered == 800 and stats.queued == 0


def test_retries_go_through_the_sdk_loop_and_are_counted(server: OutpostServer, sleeps: Sleeps) -> None:
    server.fail_next(503, times=2)
    server.drop_next(accepted=True)  # a lost acknowledgement: the resend is a duplicate
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, retry_config=retries(5)) as sdk, \
            Publisher(sdk, workers=1) as publisher:
        event_id = publisher.submit("t", {}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
    assert {r.json["id"] for r in server.requests} == {event_id}
    assert server.event_count(event_id) == 1
    assert stats.delivered == 1 and stats.duplicates == 1 and stats.retried >= 2
    assert len(sleeps.calls) >= 2  # the SDK's own loop slept (its injected sleep)


# -- failures ---------------------------------------------------------------------------------


def test_non_retryable_goes_to_on_error(sdk: SDK, server: OutpostServer, errors: Errors) -> None:
    server.fail_next(422, body='{"message":"validation error","data":["bad"]}',
                     headers={"Content-Type": "application/json"})
    with Publisher(sdk, workers=1, on_error=errors) as publisher:
        event_id = publisher.submit("t", {"x": 1}, tenant_id="acme")
        ok_id = publisher.submit("t", {"x": 2}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
    ((event, error),) = errors.calls
    assert event.id == event_id and event.data == {"x": 1}
    assert isinstance(error, BadRequestError) and error.status_code == 422
    assert [e["id"] for e in server.events] == [ok_id]
    assert stats.failed == 1 and stats.delivered == 1 and stats.queued == 0


def test_without_outbox_exhausted_retries_are_final(server: OutpostServer, sleeps: Sleeps, errors: Errors) -> None:
    server.fail_next(503, times=2)
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, retry_config=retries(2)) as sdk, \
            Publisher(sdk, workers=1, on_error=errors, **FAST) as publisher:
        publisher.submit("t", {}, tenant_id="acme")
        assert publisher.flush(timeout=10)
    ((_, error),) = errors.calls
    assert isinstance(error, InternalServerError) and error.status_code == 503
    assert server.events == [] and len(server.requests) == 2


def test_with_outbox_exhausted_retries_are_tried_again_later(server: OutpostServer, sleeps: Sleeps,
                                                             errors: Errors, tmp_path: Path) -> None:
    server.fail_next(503, times=5)  # more than two rounds of two attempts
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, retry_config=retries(2)) as sdk, \
            Publisher(sdk, workers=1, on_error=errors, outbox=tmp_path / "o.db", **FAST) as publisher:
        event_id = publisher.submit("t", {}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
        assert publisher.outbox is not None and publisher.outbox.pending_count() == 0
    assert errors.calls == []
    assert server.event_count(event_id) == 1 and len(server.requests) == 6
    assert stats.delivered == 1 and stats.failed == 0 and stats.retried == 5


def test_outbox_dead_letters_inspect_replay_purge(server: OutpostServer, sdk: SDK, errors: Errors,
                                                  tmp_path: Path) -> None:
    server.fail_next(422, times=2)
    with Publisher(sdk, workers=1, on_error=errors, outbox=tmp_path / "o.db", **FAST) as publisher:
        first = publisher.submit("t", {"n": 1}, tenant_id="acme")
        second = publisher.submit("t", {"n": 2}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        letters = publisher.dead_letters()
        assert [d.event.id for d in letters] == [first, second]
        assert letters[0].status == 422 and "BadRequestError" in letters[0].error and letters[0].rounds == 1
        assert letters[0].event.data == {"n": 1} and letters[0].first_sent_at is not None
        assert len(errors.calls) == 2 and publisher.stats().failed == 2
        assert publisher.replay_dead_letters([letters[0].id]) == 1
        deadline = time.monotonic() + 10
        while server.event_count(first) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.event_count(first) == 1  # same id again
        assert publisher.purge_dead_letters() == 1
        assert publisher.dead_letters() == []
    assert server.event_count(second) == 0


def test_purge_before_and_replay_all(tmp_path: Path, server: OutpostServer, sdk: SDK) -> None:
    server.fail_next(422, times=3)
    with Publisher(sdk, workers=1, outbox=tmp_path / "o.db", on_error=Errors()) as publisher:
        for n in range(3):
            publisher.submit("t", {"n": n}, tenant_id="acme")
        assert publisher.flush(timeout=10)
    with Outbox(tmp_path / "o.db") as outbox:
        assert outbox.dead_letter_count() == 3
        assert outbox.purge_dead_letters(before=0) == 0
        assert outbox.purge_dead_letters([outbox.dead_letters()[0].id]) == 1
        assert outbox.replay_dead_letters() == 2
        assert outbox.dead_letter_count() == 0 and outbox.pending_count() == 2
        assert all(entry.rounds == 0 and entry.first_sent_at is not None for entry in outbox.pending())
    with Publisher(sdk, outbox=tmp_path / "o.db") as publisher:
        assert publisher.flush(timeout=10)
    assert sorted(e["data"]["n"] for e in server.events) == [1, 2]


# -- backpressure and closing ------------------------------------------------------------------


def test_full_queue_blocks_or_raises(sdk: SDK, server: OutpostServer) -> None:
    server.delay_next(0.3, times=2)
    with Publisher(sdk, workers=1, max_queue=2) as publisher:
        publisher.submit("t", {"n": 0}, tenant_id="acme")
        publisher.submit("t", {"n": 1}, tenant_id="acme")
        with pytest.raises(QueueFullError, match="max_queue=2"):
            publisher.submit("t", {"n": 2}, tenant_id="acme", block=False)
        with pytest.raises(QueueFullError, match=r"after 0\.01 s"):
            publisher.submit("t", {"n": 2}, tenant_id="acme", block_timeout=0.01)
        publisher.submit("t", {"n": 2}, tenant_id="acme")  # blocks until the first is delivered
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
    assert sorted(e["data"]["n"] for e in server.events) == [0, 1, 2]
    assert stats.submitted == 3


def test_non_blocking_publisher_raises_when_full(sdk: SDK, server: OutpostServer) -> None:
    server.delay_next(0.3)
    with Publisher(sdk, workers=1, max_queue=1, block=False) as publisher:
        publisher.submit("t", {}, tenant_id="acme")
        with pytest.raises(QueueFullError):
            publisher.submit("t", {}, tenant_id="acme")


def test_close_hands_unsent_events_to_on_error(errors: Errors) -> None:
    slow = RetryConfig("backoff", BackoffStrategy(5_000, 5_000, 2.0, 60_000), True, max_attempts=10)
    with SDK(API_KEY, server_url=dead_url(), retry_config=slow) as sdk:
        publisher = Publisher(sdk, workers=1, on_error=errors)
        ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(5)]
        assert publisher.close(timeout=0.2) is False
        stats = publisher.stats()
        with pytest.raises(PublisherClosedError, match="closed"):
            publisher.submit("t", {}, tenant_id="acme")
    assert sorted(event.id for event, _ in errors.calls) == sorted(ids)
    assert all(isinstance(error, PublisherClosedError) for _, error in errors.calls)
    assert stats.failed == 5 and stats.queued == 0 and stats.submitted == 5
    assert publisher.close() is False  # idempotent: the same answer


def test_close_with_outbox_keeps_events_for_the_next_publisher(server: OutpostServer, sdk: SDK,
                                                               tmp_path: Path, errors: Errors) -> None:
    path = tmp_path / "o.db"
    with SDK(API_KEY, server_url=dead_url(), retry_config=RetryConfig("none")) as down:
        publisher = Publisher(down, workers=2, outbox=path, on_error=errors, **FAST)
        ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(20)]
        assert publisher.close(timeout=0.3) is False
    assert errors.calls == []
    with Outbox(path) as outbox:
        entries = outbox.pending()
        assert sorted(e.event.id for e in entries) == sorted(ids)
        assert all(e.lease_owner is None for e in entries)  # released at close: no lease to wait out
        tried = [e for e in entries if e.rounds]
        assert tried and all(e.first_sent_at is not None and "ConnectError" in (e.last_error or "") for e in tried)
    with Publisher(sdk, outbox=path) as publisher:  # a new publisher replays what was left
        assert publisher.flush(timeout=10)
        assert publisher.stats().delivered == 20 and publisher.stats().submitted == 0
    assert sorted(e["id"] for e in server.events) == sorted(ids)


def test_configuration_errors(sdk: SDK, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="workers"):
        Publisher(sdk, workers=0)
    with pytest.raises(ConfigurationError, match="max_queue"):
        Publisher(sdk, max_queue=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lease_seconds"):
        Publisher(sdk, outbox=tmp_path / "o.db", lease_seconds=1)
    with pytest.raises(ConfigurationError, match="synchronous"):
        Publisher(sdk, outbox=tmp_path / "o.db", synchronous="SOMETIMES")
    with pytest.raises(ConfigurationError, match="on_error"):
        Publisher(sdk, on_error="log")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="sdk"):
        Publisher("sdk")  # type: ignore[arg-type]
    with Publisher(sdk) as publisher, pytest.raises(ConfigurationError, match="no outbox"):
        publisher.dead_letters()


def test_default_sdk_from_the_environment(server: OutpostServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", server.url)
    minipub.reset_default_client()
    try:
        with Publisher() as publisher:
            event_id = publisher.submit("t", {}, tenant_id="acme")
        assert server.event_count(event_id) == 1
    finally:
        minipub.reset_default_client()


# -- sharing and crashing -----------------------------------------------------------------------


def _fill(path: Path, count: int) -> List[str]:
    """Rows written straight to the outbox, as a process that died before sending would leave them."""
    from minipub.request import build_publish_request

    requests = [build_publish_request(tenant_id="acme", topic="t", data={"n": n}) for n in range(count)]
    with Outbox(path) as outbox:
        outbox.transact([(r, None, None) for r in requests], [], owner="writer")
    return [r.event_id for r in requests]


def test_several_processes_share_one_outbox_without_sending_twice(server: OutpostServer, sdk: SDK,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    ids = _fill(path, 300)
    with killed_at_exit([outbox_child("drain", server.url, path) for _ in range(2)]) as children:
        with Publisher(sdk, workers=2, outbox=path, **FAST) as publisher:
            assert publisher.flush(timeout=30)
            mine = publisher.stats().delivered
        drained = reports(children)
    sent = [r.json["id"] for r in server.requests]
    assert sorted(sent) == sorted(ids)  # every event requested exactly once, across three processes
    assert mine + sum(r["delivered"] for r in drained) == 300
    with Outbox(path) as outbox:
        assert outbox.pending_count() == 0


def test_an_expired_lease_is_claimed_again(server: OutpostServer, sdk: SDK, tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ids = _fill(path, 5)
    with Outbox(path) as outbox:  # a process claims them, then dies
        _, claimed = outbox.transact([], [], owner="dead-process", claim=5, lease_seconds=0.5)
        assert len(claimed) == 5
        assert {e.lease_owner for e in outbox.pending()} == {"dead-process"}
    start = time.monotonic()
    with Publisher(sdk, outbox=path, **FAST) as publisher:
        assert publisher.flush(timeout=10)
    assert time.monotonic() - start >= 0.4  # not before the lease ran out
    assert sorted(e["id"] for e in server.events) == sorted(ids)


def test_fork_child_starts_fresh(server: OutpostServer, sdk: SDK, tmp_path: Path) -> None:
    with Publisher(sdk, workers=2, outbox=tmp_path / "o.db") as publisher:
        publisher.submit("t", {"who": "parent"}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        parent_ports = {r.client_port for r in server.requests}
        parent_threads = list(publisher._threads)
        assert publisher.outbox is not None
        parent_conn = publisher.outbox._conn
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            code = 1
            import faulthandler

            hang = (tmp_path / "child-hang.txt").open("w")
            faulthandler.dump_traceback_later(20, exit=True, file=hang)  # a hung child says where
            try:
                # no SQLite connection crossed the fork: the outbox closed it first, and reopens on use
                assert publisher.outbox._conn is None and publisher._threads == []
                publisher.submit("t", {"who": "child"}, tenant_id="acme")
                assert publisher.flush(timeout=10)
                assert publisher.outbox._conn is not None and publisher.outbox._conn is not parent_conn
                assert not set(publisher._threads) & set(parent_threads)
                assert publisher.stats().submitted == 1 and publisher.stats().delivered == 1
                publisher.close(5)
                code = 0
            except BaseException:
                import traceback

                (tmp_path / "child-error.txt").write_text(traceback.format_exc())
            finally:
                os._exit(code)
        code = exit_code_of_fork(pid)
        notes = [tmp_path / "child-error.txt", tmp_path / "child-hang.txt"]
        assert code == 0, "".join(p.read_text() for p in notes if p.exists())
        child_request = [r for r in server.requests if r.json["data"]["who"] == "child"][0]
        assert child_request.client_port not in parent_ports  # its own connection, not the parent's socket
        publisher.submit("t", {"who": "parent again"}, tenant_id="acme")  # the parent is unaffected
        assert publisher.flush(timeout=10)
        assert publisher.stats().submitted == 2
    assert len(server.events) == 3


def test_fork_parent_closing_its_outbox_does_not_harm_the_childs(server: OutpostServer, sdk: SDK,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Publisher(sdk, outbox=path) as publisher:
        publisher.submit("t", {"who": "parent"}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child keeps events in the same file while the parent closes it
            code = 1
            try:
                with SDK(API_KEY, server_url=dead_url(), retry_config=RetryConfig("none")) as down:
                    child = Publisher(down, outbox=path, on_error=Errors())
                    for n in range(10):
                        child.submit("t", {"n": n}, tenant_id="acme")
                    os.write(ready_w, b"x")
                    os.read(go_r, 1)  # the parent has closed its connection (last one out checkpoints)
                    for n in range(10, 30):
                        child.submit("t", {"n": n}, tenant_id="acme")
                    child.close(timeout=0.2)
                code = 0
            finally:
                os._exit(code)
        assert os.read(ready_r, 1) == b"x"
    os.write(go_w, b"x")  # the parent's publisher and outbox are closed now
    code = exit_code_of_fork(pid)
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)
    assert code == 0
    with Outbox(path) as outbox:  # all 30 of the child's events are in the file, none lost to a checkpoint
        assert sorted(e.event.data["n"] for e in outbox.pending(None)) == list(range(30))


EXIT_SCRIPT = r"""
import sys
from minipub import SDK, Publisher, RetryConfig
url, key, mode = sys.argv[1:4]
sdk = SDK(key, server_url=url, retry_config=RetryConfig("none"))
def on_error(event, error):
    print("on_error", event.id, type(error).__name__, flush=True)
publisher = Publisher(sdk, workers=1, on_error=on_error, exit_timeout=0.5 if mode == "down" else 10)
for n in range(20):
    publisher.submit("t", {"n": n}, tenant_id="acme")
print("submitted", flush=True)
"""


@pytest.mark.parametrize("mode", ["up", "by name", "down"])
def test_exit_flushes_open_publishers(server: OutpostServer, mode: str) -> None:
    url = server.url
    if mode == "by name":  # "localhost": resolved in the exit hook, after the interpreter stopped its thread pools
        url = url.replace("127.0.0.1", "localhost")
    if mode == "down":  # a server that accepts the connection and never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1"
    try:
        result = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, url, API_KEY, mode], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                                timeout=60)
    finally:
        if mode == "down":
            listener.close()
    assert result.returncode == 0, result.stderr
    reported = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("on_error")]
    if mode != "down":
        assert len(server.events) == 20 and reported == [], result.stdout
    else:  # the exit flush gave up: every unsent event was handed to on_error, none silently dropped
        assert len(reported) == len(set(reported)) == 20
        assert all("PublisherClosedError" in line for line in result.stdout.splitlines() if "on_error" in line)


def test_import_stays_cheap() -> None:
    script = ("import sys; sys.path.insert(0, '.'); import minipub; "
              "print(sorted(m for m in ('sqlite3', 'asyncio', 'queue', 'minipub.publisher', 'minipub.outbox') "
              "if m in sys.modules)); minipub.Publisher; print('minipub.publisher' in sys.modules, "
              "'sqlite3' in sys.modules)")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "True False"]


def test_outbox_file_never_holds_the_key(server: OutpostServer, sdk: SDK, tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Publisher(sdk, outbox=path, on_error=Errors()) as publisher:
        server.fail_next(401)
        publisher.submit("t", {"secret": "no"}, tenant_id="acme", http_headers={"X-Trace": "1"})
        assert publisher.flush(timeout=10)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert API_KEY.encode() not in data
    with Outbox(path) as outbox:
        (letter,) = outbox.dead_letters()
        assert letter.status == 401



def test_a_resend_past_the_dedup_window_is_logged(server: OutpostServer, sdk: SDK, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    path = tmp_path / "o.db"
    (event_id,) = _fill(path, 1)
    with sqlite3.connect(path) as db:  # as if it was first sent two hours ago and its ack was lost
        db.execute("UPDATE outbox SET first_sent_at = ?, rounds = 1", (time.time() - 7200,))
    caplog.set_level("WARNING", logger="minipub")
    with Publisher(sdk, outbox=path) as publisher:
        assert publisher.flush(timeout=10)
    assert server.event_count(event_id) == 1
    assert any(event_id in r.getMessage() and "deduplication window" in r.getMessage() for r in caplog.records)


class RetryRecorder:
    """An observability plugin: sees each publish and retry decision."""

    def __init__(self) -> None:
        self.publishes: List[str] = []
        self.retries = 0
        self.lock = threading.Lock()

    @hookimpl(wrapper=True)
    def minipub_publish(self, publish: Any) -> Any:
        with self.lock:
            self.publishes.append(publish.event_id)
        return (yield)

    @hookimpl
    def minipub_retry_decision(self, publish: Any, error: Any, delay: Optional[float]) -> None:
        if delay is not None:
            with self.lock:
                self.retries += 1


def test_background_publishes_are_observed_by_plugins(server: OutpostServer, sleeps: Sleeps) -> None:
    recorder = RetryRecorder()
    server.fail_next(503, times=3)
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, retry_config=retries(5), plugins=[recorder]) as sdk, \
            Publisher(sdk, workers=2) as publisher:
        ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(10)]
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
    assert sorted(recorder.publishes) == sorted(ids)  # the workers send through the SDK's one path
    assert recorder.retries == stats.retried == 3  # the plugin and the publisher both saw each retry


# -- a shared retry budget delays background retries, never drops an event ----------------------


@pytest.mark.parametrize("with_outbox", [False, True], ids=["queue", "outbox"])
def test_an_empty_retry_budget_delays_background_retries_never_drops(errors: Errors, tmp_path: Path,
                                                                     with_outbox: bool) -> None:
    """1,500 events, about 25% of attempts faulted (503, 429, drops, lost acks), a budget far too small
    for them: every event is delivered, none goes to on_error, and the retries stay within the budget's
    bound (its tokens, plus its refills, plus ``wait_rate`` per second)."""
    count, wait_rate = 1500, 300.0
    outbox: Dict[str, Any] = {"outbox": tmp_path / "o.db", "synchronous": "NORMAL"} if with_outbox else {}
    budget = RetryBudget(10, 0.1, wait_rate=wait_rate)
    config = RetryConfig("backoff", BackoffStrategy(1, 10, 2.0, 30_000), True, max_attempts=30)
    with OutpostServer(api_key=API_KEY, fail_rate=0.25, retry_after=0.0, seed=7, processing_wait=0.5) as server, \
            SDK(API_KEY, server_url=server.url, retry_config=config, retry_budget=budget, timeout_ms=5000) as sdk, \
            Publisher(sdk, workers=4, on_error=errors, max_queue=count, **outbox, **FAST) as publisher:
        start = time.monotonic()
        ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(count)]
        assert publisher.flush(timeout=120)
        elapsed = time.monotonic() - start
        stats = publisher.stats()
        faults = sum(server.injected_faults.values())
        attempts = len(server.requests)
        accepted = sorted(e["id"] for e in server.events)
    print(f"\n{count} events, {attempts} attempts, {faults} faulted ({faults / attempts:.0%}), "
          f"{stats.retried} retries in {elapsed:.2f} s; delivered {stats.delivered}, failed {stats.failed}")
    assert errors.calls == [] and stats.failed == 0
    assert stats.delivered == count and accepted == sorted(ids)
    if with_outbox:
        with Outbox(tmp_path / "o.db") as box:
            assert box.pending_count() == 0 and box.dead_letter_count() == 0
    assert faults >= 0.2 * attempts
    assert stats.retried > budget.capacity + budget.refill * count  # the budget alone was too small
    assert stats.retried <= budget.capacity + budget.refill * count + wait_rate * elapsed + 4


def test_flush_covers_replayed_dead_letters(server: OutpostServer, sdk: SDK, tmp_path: Path) -> None:
    server.fail_next(422)
    with Publisher(sdk, workers=1, outbox=tmp_path / "o.db", on_error=Errors(), **FAST) as publisher:
        event_id = publisher.submit("t", {"n": 1}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        assert publisher.outbox is not None and publisher.outbox.dead_letter_count() == 1
        server.delay_next(0.3)  # the replayed send takes a while: flush must wait for it
        assert publisher.replay_dead_letters() == 1
        assert publisher.flush(timeout=10)
        assert publisher.outbox.pending_count() == 0
        assert server.event_count(event_id) == 1
        assert publisher.stats().delivered == 1
