"""The outbox pump: one thread owns the outbox file and feeds the Publisher's workers from it.

Submits wait for their row's commit; the thread commits inserts and the workers' outcomes in
groups (one transaction, one sync, for everything waiting) and claims rows (a lease) for the
workers, at most two per worker at a time: rows already due first, then the new rows themselves,
as they are written. A failure that may pass later leaves the row due again
later; rows this process waits for but does not hold (another process's) are checked while a
``flush`` waits, so a row another process delivered stops being waited for.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, Iterable, List, Optional, Set, Tuple, Union

from .. import _log
from ..errors import APIError, OutboxError
from ..models import Event
from ..request import PublishRequest
from ..retry import RetryConfig
from .jobs import DEAD, DELIVERED, Handout, Job, Outcome
from .tracker import Tracker, describe

if TYPE_CHECKING:
    from .rows import ClaimedRow, RowOutcome
    from .store import Outbox

__all__ = ["OutboxPump", "DEDUP_WINDOW_SECONDS"]

#: Outpost's default deduplication window: a resend later than this after the first send may be
#: accepted as a new event (logged as a WARNING when the outbox sends such a row again).
DEDUP_WINDOW_SECONDS = 3600.0


class _Insert:
    """A submit waiting for its row to be committed (``signal`` is released then)."""

    __slots__ = ("error", "job", "signal")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.error: Optional[BaseException] = None
        self.signal = threading.Lock()
        self.signal.acquire()


class _Result:
    """A worker's outcome for a claimed row, to commit."""

    __slots__ = ("job", "outcome")

    def __init__(self, job: Job, outcome: Outcome) -> None:
        self.job = job
        self.outcome = outcome

    def row_outcome(self) -> RowOutcome:
        assert self.job.row_id is not None
        error = self.outcome.error
        status = error.status_code if isinstance(error, APIError) else None
        return (self.outcome.kind, self.job.row_id, describe(error) if error is not None else None, status,
                self.outcome.when)


def _warn_if_past_the_window(row: ClaimedRow, now: float) -> None:
    if row.first_sent_at is not None and now - row.first_sent_at > DEDUP_WINDOW_SECONDS:
        _log.log("WARNING", "event %s was first sent %.0f s ago, past Outpost's default deduplication "
                 "window: if it was accepted then, it may be delivered twice", row.request.event_id,
                 now - row.first_sent_at)


def _next_due(outbox: Outbox, latest: float) -> float:
    """When the outbox's earliest unleased row is due, but no later than ``latest``."""
    try:
        next_due = outbox.next_due()
    except OutboxError:
        next_due = None
    return min(next_due, latest) if next_due is not None else latest


class OutboxPump:
    """A :class:`~minipub.background.jobs.JobQueue` on an outbox file: failures that may pass are deferred."""

    defers = True

    def __init__(self, tracker: Tracker, outbox: Outbox, owner: str, *, workers: int, lease_seconds: float,
                 poll_interval: float) -> None:
        self._tracker = tracker
        self._lock = tracker.lock
        self._outbox = outbox
        self._owner = owner
        self._capacity = 2 * workers  # rows held at once: one in flight and one waiting per worker
        self._lease = lease_seconds
        self._poll = poll_interval
        self.handout = Handout(self._lock)
        self._wake = threading.Condition(self._lock)  # an op is queued: the outbox thread
        self._ops: Deque[Union[_Insert, _Result]] = deque()
        self._row_seq: Dict[int, int] = {}  # outbox row id -> seq, for rows this process waits for
        self._claimed: Set[int] = set()  # rows this process holds a lease on (queued or in flight)
        self._unstarted: List[Job] = []  # claimed, never taken by a worker: released at shutdown
        self._more_due = True
        self._stop = False
        self._alive = False
        self._thread: Optional[threading.Thread] = None

    # -- the JobQueue side ---------------------------------------------------------------------

    def start(self) -> None:
        """With the lock held: wait for what earlier processes left, and start the thread."""
        for row_id in self._outbox.row_ids():
            self._row_seq[row_id] = self._tracker.track(False)
        self._alive = True
        self._thread = threading.Thread(target=self._run, name="minipub-outbox", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._alive

    def add(self, request: PublishRequest, retry_config: Optional[RetryConfig], timeout_ms: Optional[float],
            block: bool, block_timeout: Optional[float]) -> None:
        """Returns once the row is committed (the queue is on disk: never full)."""
        tracker = self._tracker
        with self._lock:
            tracker.admit()
            insert = _Insert(Job(tracker.track(True), request, retry_config, timeout_ms))
            self._ops.append(insert)
            self._wake.notify()
        while not insert.signal.acquire(timeout=0.5):
            if not self._alive:
                insert.error = OutboxError("the outbox thread has stopped; the event was not recorded")
                break
        if insert.error is not None:
            with self._lock:
                tracker.withdraw(insert.job.seq)
            raise insert.error

    def take(self) -> Optional[Job]:
        return self.handout.take()

    def report(self, job: Job, outcome: Outcome) -> None:
        """``on_error`` runs before a failed event counts as settled (flush waits for it)."""
        if outcome.kind == DEAD:
            assert outcome.error is not None
            self._tracker.report(job.event(), outcome.error)
        with self._lock:
            self._ops.append(_Result(job, outcome))
            self._wake.notify()

    def stop(self) -> None:
        """No more jobs for the workers: rows claimed but not started are released at shutdown."""
        with self._lock:
            self._unstarted.extend(self.handout.halt())

    def close(self, deadline: float) -> None:
        """Stop the thread (after its last commit); rows still in flight stay leased until expiry."""
        with self._lock:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(max(0.2, deadline - time.monotonic()))
            if self._thread.is_alive():
                _log.log("WARNING", "the outbox thread did not stop in time; its rows stay leased until expiry")
        with self._lock:
            in_flight = len(self.handout.in_flight)
        if in_flight:
            _log.log("WARNING", "%d event(s) still in flight at close; their outbox rows stay leased for %.0f s",
                     in_flight, self._lease)

    def replay(self, ids: Optional[Iterable[int]]) -> int:
        """Dead letters back to the outbox; ``flush`` waits for them."""
        with self._lock:  # held until tracked, so the thread's claim finds the rows ours to wait for
            row_ids = self._outbox.replay(ids)
            for row_id in row_ids:
                if row_id not in self._row_seq:
                    self._row_seq[row_id] = self._tracker.track(False)
            self._more_due = True
            self._wake.notify()
        return len(row_ids)

    # -- the outbox thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug; submit() and flush() see the thread gone
            _log.log("ERROR", "the outbox thread stopped: %s", describe(exc))
            raise
        finally:
            with self._lock:
                self._alive = False
                self._tracker.changed.notify_all()

    def _loop(self) -> None:
        """Commit inserts and outcomes in groups, claim due rows for the workers."""
        due_at = 0.0
        check_at = time.monotonic() + self._poll
        while True:
            ops, room, stop, flushing = self._next_batch(due_at, check_at)
            now = time.time()
            if not self._commit(ops, room, now):
                if stop:
                    break
                time.sleep(0.2)
                continue
            if stop:
                break
            if not self._more_due:
                due_at = _next_due(self._outbox, now + self._poll)
            if flushing and check_at <= time.monotonic():
                self._settle_vanished()
                check_at = time.monotonic() + self._poll
        self._shutdown()

    def _next_batch(self, due_at: float, check_at: float) -> Tuple[List[Union[_Insert, _Result]], int, bool, bool]:
        """Wait for something to do: (the ops queued, how many rows to claim, stopping, a flush waits)."""
        with self._lock:
            while not (self._ops or self._stop):
                room = self._capacity - len(self._claimed)
                now = time.time()
                if room > 0 and not self.handout.stopping and (self._more_due or due_at <= now):
                    break
                flushing = self._tracker.flushing
                if flushing and check_at <= time.monotonic():
                    break
                wait = self._poll if room <= 0 else min(self._poll, due_at - now)
                if flushing:
                    wait = min(wait, check_at - time.monotonic())
                if not self._wake.wait(max(wait, 0.001)):
                    break
            ops = list(self._ops)
            self._ops.clear()
            results = sum(1 for op in ops if isinstance(op, _Result))
            stop = self._stop or self.handout.stopping
            room = 0 if stop else self._capacity - len(self._claimed) + results
            return ops, room, self._stop, self._tracker.flushing

    def _commit(self, ops: List[Union[_Insert, _Result]], room: int, now: float) -> bool:
        """One transaction for the batch; False when it failed (its submits raise)."""
        inserts = [op for op in ops if isinstance(op, _Insert)]
        results = [op for op in ops if isinstance(op, _Result)]
        bad: List[Tuple[int, Event, str]] = []
        try:
            row_ids, claimed = self._outbox.transact(
                [(op.job.request, op.job.retry_config, op.job.timeout_ms) for op in inserts],
                [op.row_outcome() for op in results], owner=self._owner, claim=room, claim_inserts=True,
                lease_seconds=self._lease, now=now, on_bad_row=lambda *row: bad.append(row))
        except Exception as exc:  # OutboxError, or a row that no longer decodes
            self._failed(inserts, results, exc if isinstance(exc, OutboxError) else OutboxError(
                f"outbox: {describe(exc)}"))
            return False
        with self._lock:
            for op, row_id in zip(inserts, row_ids):
                self._row_seq[row_id] = op.job.seq
            for result in results:
                self._applied(result)
            for row in claimed:
                self._hand_out(row, now)
            self._more_due = room <= 0 or len(claimed) + len(bad) >= room
        for op in inserts:
            op.signal.release()
        self._bad_rows(bad)
        return True

    def _hand_out(self, row: ClaimedRow, now: float) -> None:
        """With the lock held: a claimed row becomes a job for the workers."""
        _warn_if_past_the_window(row, now)
        seq = self._row_seq.get(row.row_id)
        if seq is None or not self._tracker.is_unsettled(seq):
            seq = self._row_seq[row.row_id] = self._tracker.track(False)
        self._claimed.add(row.row_id)
        self.handout.put(Job(seq, row.request, row.retries, row.timeout_ms, row.row_id, row.rounds))

    def _applied(self, result: _Result) -> None:
        """With the lock held: a worker's outcome is committed."""
        job = result.job
        assert job.row_id is not None
        self.handout.in_flight.pop(job.seq, None)
        self._claimed.discard(job.row_id)
        self._tracker.count(result.outcome)
        if result.outcome.kind in (DELIVERED, DEAD):
            self._row_seq.pop(job.row_id, None)
            self._tracker.settle(job.seq)

    def _failed(self, inserts: List[_Insert], results: List[_Result], error: OutboxError) -> None:
        """A transaction failed: its submits raise; its rows stay leased and are claimed again later."""
        _log.log("ERROR", "%s", error)
        with self._lock:
            for result in results:
                self.handout.in_flight.pop(result.job.seq, None)
                assert result.job.row_id is not None
                self._claimed.discard(result.job.row_id)
        for op in inserts:
            op.error = error
            op.signal.release()

    def _bad_rows(self, bad: List[Tuple[int, Event, str]]) -> None:
        """Rows the outbox could not decode went to the dead letters: failed for good, told to on_error."""
        for row_id, event, reason in bad:
            self._tracker.report(event, OutboxError(reason))
            with self._lock:
                self._tracker.count(Outcome(DEAD))
                seq = self._row_seq.pop(row_id, None)
                if seq is not None:
                    self._tracker.settle(seq)

    def _settle_vanished(self) -> None:
        """Rows we wait for but do not hold may have been delivered by another process: stop waiting."""
        with self._lock:
            idle = [row_id for row_id in self._row_seq if row_id not in self._claimed]
        if not idle:
            return
        try:
            present = self._outbox.existing(idle)
        except OutboxError as error:
            _log.log("WARNING", "%s", error)
            return
        with self._lock:
            for row_id in idle:
                if row_id not in present and row_id not in self._claimed:
                    seq = self._row_seq.pop(row_id, None)
                    if seq is not None:
                        self._tracker.settle(seq)

    def _shutdown(self) -> None:
        """Release the rows claimed but not started, then close the connection."""
        with self._lock:
            waiting = [job.row_id for job in [*self._unstarted, *self.handout.ready] if job.row_id is not None]
            self._unstarted.clear()
            self.handout.ready.clear()
        if waiting:
            try:
                self._outbox.transact([], [("release", row_id, None, None, 0.0) for row_id in waiting],
                                      owner=self._owner)
            except OutboxError as error:
                _log.log("WARNING", "%s", error)
        self._outbox.close()
