"""The outbox pump on its own against a real SQLite file, with a real tracker and no network: what each
outcome does to the row, replay on start, release at stop, and rows another process settled."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from minipub import Event
from minipub.background.jobs import DEAD, DEFERRED, DELIVERED, Job, Outcome
from minipub.background.pump import OutboxPump
from minipub.background.tracker import Tracker
from minipub.errors import BadRequestError, ConnectError
from minipub.outbox import Outbox
from minipub.request import build_publish_request

OWNER = "pump-test"


class Pump:
    """A pump on ``path`` (one worker: it holds at most two rows), started, closed at the end."""

    def __init__(self, path: Path) -> None:
        self.told: List[Tuple[Event, BaseException]] = []
        self.tracker = Tracker(lambda event, error: self.told.append((event, error)))
        self.outbox = Outbox(path, synchronous="NORMAL")
        self.pump = OutboxPump(self.tracker, self.outbox, OWNER, workers=1, lease_seconds=60, poll_interval=0.05)
        with self.tracker.lock:
            self.pump.start()

    def add(self, n: int) -> str:
        request = build_publish_request(tenant_id="acme", topic="t", data={"n": n})
        self.pump.add(request, None, None, True, None)
        return request.event_id

    def take(self) -> Job:
        job = self.pump.take()
        assert job is not None and job.row_id is not None
        return job

    def close(self) -> None:
        self.pump.stop()
        self.pump.close(time.monotonic() + 5)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "o.db"


@pytest.fixture
def pump(path: Path) -> Iterator[Pump]:
    opened = Pump(path)
    yield opened
    opened.close()


def rows(path: Path) -> List[Tuple[str, int, Optional[str], Optional[str]]]:
    """(event_id, rounds, lease_owner, last_error) of each pending row, read through another connection."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT event_id, rounds, lease_owner, last_error FROM outbox ORDER BY id").fetchall()


def test_a_submit_returns_once_its_row_is_in_the_file(pump: Pump, path: Path) -> None:
    event_id = pump.add(1)
    assert [row[0] for row in rows(path)] == [event_id]  # committed: another connection sees it


def test_a_delivered_row_is_deleted_and_settled(pump: Pump, path: Path) -> None:
    event_id = pump.add(1)
    job = pump.take()
    assert job.request.event_id == event_id and rows(path)[0][2] == OWNER  # claimed: leased to us
    pump.pump.report(job, Outcome(DELIVERED, duplicate=True))
    assert pump.tracker.flush(5, pump.pump.alive)
    assert rows(path) == []
    stats = pump.tracker.stats()
    assert (stats.submitted, stats.delivered, stats.duplicates, stats.queued) == (1, 1, 1, 0)


def test_a_deferred_row_stays_due_later_and_comes_back(pump: Pump, path: Path) -> None:
    pump.add(1)
    job = pump.take()
    pump.pump.report(job, Outcome(DEFERRED, ConnectError("refused"), when=time.time() + 0.2, retried=2))
    again = pump.take()  # claimed again once due, as a retry of the same row
    assert again.row_id == job.row_id and again.rounds == 1
    (row,) = rows(path)
    assert row[1] == 1 and "ConnectError: refused" in (row[3] or "")
    assert pump.tracker.flush(0, pump.pump.alive) is False and pump.told == []
    pump.pump.report(again, Outcome(DELIVERED))
    assert pump.tracker.flush(5, pump.pump.alive) and pump.tracker.stats().retried == 2


def test_a_dead_row_moves_to_the_dead_letters_and_on_error(pump: Pump, path: Path) -> None:
    event_id = pump.add(1)
    error = BadRequestError("validation error", status_code=422)
    pump.pump.report(pump.take(), Outcome(DEAD, error, when=time.time()))
    assert pump.tracker.flush(5, pump.pump.alive)
    assert rows(path) == [] and [(e.id, err) for e, err in pump.told] == [(event_id, error)]
    (letter,) = pump.outbox.dead_letters()
    assert letter.event.id == event_id and letter.status == 422 and "BadRequestError" in letter.error
    assert pump.pump.replay(None) == 1  # back, same id, and waited for
    assert pump.take().request.event_id == event_id


def test_start_takes_over_what_an_earlier_process_left(path: Path) -> None:
    with Outbox(path) as box:
        requests = [build_publish_request(tenant_id="acme", topic="t", data={"n": n}) for n in range(3)]
        box.transact([(r, None, None) for r in requests], [], owner="writer")
    pump = Pump(path)
    try:
        assert pump.tracker.stats().queued == 3 and pump.tracker.stats().submitted == 0
        for _ in range(3):
            pump.pump.report(pump.take(), Outcome(DELIVERED))
        assert pump.tracker.flush(5, pump.pump.alive)
    finally:
        pump.close()
    assert rows(path) == []


def test_stop_releases_rows_claimed_but_not_started(pump: Pump, path: Path) -> None:
    for n in range(4):
        pump.add(n)
    in_flight = pump.take()
    deadline = time.monotonic() + 5
    while sum(1 for row in rows(path) if row[2]) < 2 and time.monotonic() < deadline:  # one more waits, claimed
        time.sleep(0.01)
    assert sum(1 for row in rows(path) if row[2] == OWNER) == 2  # one worker holds at most two rows
    pump.close()
    leased = [row[0] for row in rows(path) if row[2]]
    assert leased == [in_flight.request.event_id]  # the one in flight keeps its lease; the others are free


def test_rows_another_process_settled_stop_being_waited_for(path: Path) -> None:
    with Outbox(path) as box:
        (request,) = [build_publish_request(tenant_id="acme", topic="t", data={})]
        box.transact([(request, None, None)], [], owner="writer")
        box.transact([], [], owner="other", claim=1, lease_seconds=60)  # another process holds it
        pump = Pump(path)
        try:
            assert pump.tracker.flush(0.1, pump.pump.alive) is False
            box.transact([], [("delivered", 1, None, None, 0.0)], owner="other")  # and delivers it
            assert pump.tracker.flush(5, pump.pump.alive)
        finally:
            pump.close()
