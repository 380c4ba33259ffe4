"""What tracks and settles submitted events: sequence numbers, ``flush``, the counters, ``on_error``.

Every event a Publisher must settle (submitted here, or replayed from an outbox) gets a sequence
number; it is settled once delivered, failed for good, or found not ours to wait for. ``flush``
waits until no sequence number up to its own target is unsettled. One lock guards the tracker and
the queue a Publisher uses with it (``lock``), so tracking and queueing an event is one step.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable, Dict, List, Optional

from .. import _log
from .._record import Record
from ..errors import PublisherClosedError, QueueFullError
from ..models import Event
from .jobs import DEAD, DELIVERED, Outcome

__all__ = ["Tracker", "PublisherStats", "ErrorHandler", "describe"]

#: ``on_error(event, error)``: called once for each event that failed for good.
ErrorHandler = Callable[[Event, BaseException], None]


class PublisherStats(Record):
    """Counters since the publisher started (in this process).

    ``retried``: attempts after an event's first; ``failed``: failed for good (``on_error``);
    ``queued``: events not settled yet (waiting, in flight, or due again later in the outbox).
    """

    submitted: int
    delivered: int
    duplicates: int
    retried: int
    failed: int
    queued: int


def describe(error: BaseException) -> str:
    """An error as one bounded line (for logs and the dead letters)."""
    return f"{type(error).__name__}: {error}"[:2000]


class Tracker:
    """Sequence numbers of unsettled events, the counters, and ``on_error``."""

    def __init__(self, on_error: Optional[ErrorHandler]) -> None:
        self.on_error = on_error
        self.lock = threading.Lock()
        # Each wakes only the waiters it may satisfy: a woken thread costs a GIL hand-off per event.
        self.changed = threading.Condition(self.lock)  # the oldest unsettled event passed a flush's target
        self._room = threading.Condition(self.lock)  # an event submitted here settled, and submit() waits
        self._room_waiters = 0
        self._targets: List[int] = []  # the targets of the flush() calls waiting
        self.closing = False  # no new submits (set by close())
        self._unsettled: Dict[int, bool] = {}  # seq -> submitted here (not replayed)
        self._heap: List[int] = []
        self._next_seq = 1
        self.queued_here = 0  # unsettled events submitted here (what max_queue bounds)
        self.submitted = self.delivered = self.duplicates = self.retried = self.failed = 0

    # -- with the lock held --------------------------------------------------------------------

    def admit(self) -> None:
        """Refuse a submit once close() has begun."""
        if self.closing:
            raise PublisherClosedError("this Publisher is closed; submit before close(), or make a new one")

    def track(self, submitted_here: bool) -> int:
        """A new sequence number for an event to settle."""
        seq = self._next_seq
        self._next_seq += 1
        self._unsettled[seq] = submitted_here
        if len(self._heap) > 2 * len(self._unsettled) + 1024:  # drop settled entries now and then
            self._heap = sorted(self._unsettled)
        heapq.heappush(self._heap, seq)
        if submitted_here:
            self.queued_here += 1
            self.submitted += 1
        return seq

    def is_unsettled(self, seq: int) -> bool:
        return seq in self._unsettled

    def settle(self, seq: int) -> None:
        """This event is done (delivered, failed for good, or not ours to wait for)."""
        here = self._unsettled.pop(seq, None)
        if here is None:
            return
        if here:
            self.queued_here -= 1
            if self._room_waiters:
                self._room.notify()
        if self._targets and self._oldest() > min(self._targets):
            self.changed.notify_all()

    def _oldest(self) -> float:
        """The oldest unsettled sequence number (inf when none)."""
        heap = self._heap
        while heap and heap[0] not in self._unsettled:
            heapq.heappop(heap)
        return heap[0] if heap else float("inf")

    @property
    def flushing(self) -> bool:
        """Whether a flush() waits."""
        return bool(self._targets)

    def withdraw(self, seq: int) -> None:
        """A submit that raised: as if it never happened."""
        if self._unsettled.get(seq):
            self.submitted -= 1
        self.settle(seq)

    def count(self, outcome: Outcome) -> None:
        """Count a settled outcome (and the retries its send made)."""
        self.retried += outcome.retried
        if outcome.kind == DELIVERED:
            self.delivered += 1
            self.duplicates += outcome.duplicate
        elif outcome.kind == DEAD:
            self.failed += 1

    def wait_for_room(self, max_queue: int, block: bool, timeout: Optional[float]) -> None:
        """Wait until fewer than ``max_queue`` events submitted here are unsettled."""
        if self.queued_here < max_queue:
            return
        full = f"the Publisher already holds max_queue={max_queue} unsettled events"
        if not block:
            raise QueueFullError(f"{full}; submit(block=True) waits for room, or raise max_queue")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._room_waiters += 1
        try:
            while self.queued_here >= max_queue:
                if self.closing:
                    raise PublisherClosedError("this Publisher was closed while submit() waited for room")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFullError(f"{full}, still after {timeout} s; raise block_timeout or max_queue")
                self._room.wait(remaining)
        finally:
            self._room_waiters -= 1
            if self.queued_here < max_queue and self._room_waiters:
                self._room.notify()  # room for more than this one: pass the wake-up on

    # -- from any thread -----------------------------------------------------------------------

    def flush(self, timeout: Optional[float], alive: Callable[[], bool]) -> bool:
        """Wait until every event tracked before this call is settled; False on timeout, or when
        ``alive()`` says nothing will settle them any more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            target = self._next_seq - 1
            self._targets.append(target)
            try:
                while True:
                    if self._oldest() > target:
                        return True
                    if not alive():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self.changed.wait(remaining)
            finally:
                self._targets.remove(target)

    def stats(self) -> PublisherStats:
        with self.lock:
            return PublisherStats(self.submitted, self.delivered, self.duplicates, self.retried, self.failed,
                                  len(self._unsettled))

    def report(self, event: Event, error: BaseException) -> None:
        """Tell ``on_error`` (default: a WARNING) of an event that failed for good; without the lock."""
        handler = self.on_error
        if handler is None:
            _log.log("WARNING", "event %s (tenant %s, topic %s) failed for good: %s", event.id, event.tenant_id,
                     event.topic, describe(error))
            return
        try:
            handler(event, error)
        except Exception as exc:
            _log.log("ERROR", "on_error raised %s for event %s", describe(exc), event.id)
