"""The in-memory queue on its own, with a real tracker: order, room, outcomes, stop and close (no network)."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

import pytest

from minipub import Event
from minipub.background.jobs import DEAD, DELIVERED, Outcome
from minipub.background.memory import MemoryQueue
from minipub.background.tracker import Tracker
from minipub.errors import InternalServerError, PublisherClosedError, QueueFullError
from minipub.request import build_publish_request


class Told:
    """A recording on_error that also notes whether the event was already settled when told."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Event, BaseException]] = []
        self.settled_when_told: List[bool] = []
        self.tracker: Tracker

    def __call__(self, event: Event, error: BaseException) -> None:
        self.calls.append((event, error))
        self.settled_when_told.append(self.tracker.flush(0, lambda: True))


def make(max_queue: int = 10) -> Tuple[MemoryQueue, Tracker, Told]:
    told = Told()
    tracker = told.tracker = Tracker(told)
    return MemoryQueue(tracker, max_queue), tracker, told


def add(queue: MemoryQueue, n: int, block: bool = True, timeout: float = 5.0) -> str:
    request = build_publish_request(tenant_id="acme", topic="t", data={"n": n})
    queue.add(request, None, None, block, timeout)
    return request.event_id


def test_jobs_come_out_in_order_and_settle_when_reported() -> None:
    queue, tracker, told = make()
    ids = [add(queue, n) for n in range(3)]
    jobs = [queue.take() for _ in range(3)]
    assert [job.request.event_id for job in jobs if job] == ids
    assert tracker.flush(0, queue.alive) is False
    for job in jobs:
        assert job is not None
        queue.report(job, Outcome(DELIVERED, duplicate=job is jobs[0], retried=1))
    assert tracker.flush(0, queue.alive)
    stats = tracker.stats()
    assert (stats.submitted, stats.delivered, stats.duplicates, stats.retried, stats.queued) == (3, 3, 1, 3, 0)
    assert told.calls == []


def test_a_failed_event_is_told_to_on_error_before_it_counts_as_settled() -> None:
    queue, tracker, told = make()
    add(queue, 1)
    job = queue.take()
    assert job is not None
    error = InternalServerError("503", status_code=503)
    queue.report(job, Outcome(DEAD, error))
    assert [e for _, e in told.calls] == [error] and told.settled_when_told == [False]
    assert tracker.flush(0, queue.alive) and tracker.stats().failed == 1


def test_max_queue_bounds_unsettled_events() -> None:
    queue, tracker, _ = make(max_queue=2)
    add(queue, 0)
    add(queue, 1)
    with pytest.raises(QueueFullError):
        add(queue, 2, block=False)
    with pytest.raises(QueueFullError, match=r"after 0\.01 s"):
        add(queue, 2, timeout=0.01)
    job = queue.take()  # taken is not settled: still no room
    with pytest.raises(QueueFullError):
        add(queue, 2, block=False)
    assert job is not None

    def deliver_later() -> None:
        time.sleep(0.05)
        queue.report(job, Outcome(DELIVERED))

    threading.Thread(target=deliver_later).start()
    add(queue, 2)  # waits for the room the delivery makes
    assert tracker.stats().submitted == 3


def test_stop_gives_unsent_events_to_on_error_and_close_the_ones_in_flight() -> None:
    queue, tracker, told = make()
    ids = [add(queue, n) for n in range(3)]
    in_flight = queue.take()
    assert in_flight is not None
    queue.stop()
    assert queue.take() is None  # the workers stop
    assert [event.id for event, _ in told.calls] == ids[1:]
    assert all(isinstance(e, PublisherClosedError) and "before this event was sent" in str(e) for _, e in told.calls)
    queue.close(time.monotonic())
    event, error = told.calls[-1]
    assert event.id == ids[0] and "may or may not have been delivered" in str(error)
    queue.report(in_flight, Outcome(DELIVERED))  # the send ended after all: not counted twice
    stats = tracker.stats()
    assert (stats.failed, stats.delivered, stats.queued) == (3, 0, 0)
    assert len(told.calls) == 3
