"""The tracker on its own: sequence numbers, flush, room, the counters and on_error (no queue, no network)."""

from __future__ import annotations

import logging
import threading
import time
from typing import List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub import Event
from minipub.background.jobs import DEAD, DEFERRED, DELIVERED, Outcome
from minipub.background.tracker import PublisherStats, Tracker
from minipub.errors import PublisherClosedError, QueueFullError

EVENT = Event("evt_1", "acme", "t", b'{"a":1}')


def always() -> bool:
    return True


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=60))
def test_flush_answers_whether_everything_tracked_before_it_is_settled(steps: List[Tuple[bool, int]]) -> None:
    """Any interleaving of tracking and settling: flush(0) is True exactly when no tracked seq is unsettled."""
    tracker = Tracker(None)
    tracked: List[int] = []
    settled = set()
    for new, pick in steps:
        with tracker.lock:
            if new or not tracked:
                tracked.append(tracker.track(True))
            else:
                seq = tracked[pick % len(tracked)]
                tracker.settle(seq)  # settling twice is harmless
                settled.add(seq)
        assert tracker.flush(0, always) is (set(tracked) <= settled)
    stats = tracker.stats()
    assert stats.submitted == len(tracked) and stats.queued == len(set(tracked) - settled)
    assert tracker.queued_here == stats.queued


def test_flush_waits_for_what_was_tracked_before_not_after() -> None:
    tracker = Tracker(None)
    with tracker.lock:
        first = tracker.track(True)
    done: List[bool] = []
    waiter = threading.Thread(target=lambda: done.append(tracker.flush(10, always)))
    waiter.start()
    time.sleep(0.05)
    with tracker.lock:
        tracker.track(False)  # after the flush began: not its business
        tracker.settle(first)
    waiter.join(10)
    assert done == [True]
    assert tracker.flush(0.01, always) is False  # the later one is still unsettled


def test_flush_gives_up_when_nothing_can_settle_any_more() -> None:
    tracker = Tracker(None)
    with tracker.lock:
        tracker.track(True)
    start = time.monotonic()
    assert tracker.flush(30, lambda: False) is False
    assert time.monotonic() - start < 5


def test_room_blocks_raises_or_times_out() -> None:
    tracker = Tracker(None)
    with tracker.lock:
        seq = tracker.track(True)
        with pytest.raises(QueueFullError, match="max_queue=1"):
            tracker.wait_for_room(1, False, None)
        with pytest.raises(QueueFullError, match=r"after 0\.01 s"):
            tracker.wait_for_room(1, True, 0.01)
        tracker.wait_for_room(2, False, None)  # room left: returns at once
        tracker.track(False)  # replayed events do not take room
        tracker.wait_for_room(2, False, None)

    def settle_later() -> None:
        time.sleep(0.05)
        with tracker.lock:
            tracker.settle(seq)

    threading.Thread(target=settle_later).start()
    with tracker.lock:
        tracker.wait_for_room(1, True, 10)  # woken by the settle
        tracker.track(True)
        tracker.closing = True
        with pytest.raises(PublisherClosedError, match="waited for room"):
            tracker.wait_for_room(1, True, 10)
        with pytest.raises(PublisherClosedError, match="closed"):
            tracker.admit()


def test_counters_and_withdraw() -> None:
    tracker = Tracker(None)
    with tracker.lock:
        seqs = [tracker.track(True) for _ in range(4)]
        tracker.count(Outcome(DELIVERED, duplicate=True, retried=2))
        tracker.count(Outcome(DELIVERED))
        tracker.count(Outcome(DEFERRED, retried=1))
        tracker.count(Outcome(DEAD))
        for seq in seqs[:3]:
            tracker.settle(seq)
        tracker.withdraw(seqs[3])  # a submit that raised: never happened
    assert tracker.stats() == PublisherStats(submitted=3, delivered=2, duplicates=1, retried=3, failed=1, queued=0)


def test_report_calls_on_error_and_survives_its_exception(caplog: pytest.LogCaptureFixture) -> None:
    calls: List[Tuple[Event, BaseException]] = []
    error = RuntimeError("boom")
    Tracker(lambda event, exc: calls.append((event, exc))).report(EVENT, error)
    assert calls == [(EVENT, error)]
    caplog.set_level(logging.WARNING, logger="minipub")

    def raising(event: Event, exc: BaseException) -> None:
        raise ValueError("handler bug")

    Tracker(raising).report(EVENT, error)  # logged, not raised
    Tracker(None).report(EVENT, error)  # no handler: a WARNING naming the event
    messages = [r.getMessage() for r in caplog.records]
    assert any("on_error raised ValueError: handler bug" in m for m in messages)
    assert any("evt_1" in m and "failed for good: RuntimeError: boom" in m for m in messages)
