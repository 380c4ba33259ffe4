"""Background publishing: ``Publisher.submit`` returns an event id at once; worker threads deliver.

submit (validate, assign the id) → [outbox: a durable row, group-committed] → queue → worker →
``SDK._publish`` (the one retry loop; an empty retry budget makes a worker wait for a token, up to
the event's deadline, never fails the event) → settled: delivered, or failed for good (``on_error``,
dead letters). With an outbox, a failure that may pass later (a retryable status, a network failure,
retries or the deadline spent) is not final: the row is due again later (capped backoff) and the
worker pauses, so an outage costs about one attempt per worker per pause.
"""

from __future__ import annotations

import atexit
import heapq
import os
import random
import threading
import time as _time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

from . import _fork, _log
from ._record import Record
from .client import SDK
from .errors import APIError, ConfigurationError, MinipubError, OutboxError, PublisherClosedError, QueueFullError
from .fields import build
from .models import Event, PublishResponse
from .request import PublishRequest, new_event_id
from .retry import BackoffStrategy, RetryConfig, backoff_ceiling, is_final

if TYPE_CHECKING:
    from .outbox import DeadLetter, Outbox, Outcome

__all__ = ["Publisher", "PublisherStats", "ErrorHandler", "DEDUP_WINDOW_SECONDS"]

#: ``on_error(event, error)``: called once for each event that failed for good.
ErrorHandler = Callable[[Event, BaseException], None]

_COUNTERS = ("submitted", "delivered", "duplicates", "retried", "failed")
#: Outpost's default deduplication window: a resend later than this after the first send may be
#: accepted as a new event (logged as a WARNING when the outbox sends such a row again).
DEDUP_WINDOW_SECONDS = 3600.0
#: After close()'s flush: how long the workers and the outbox thread get to stop (seconds).
_STOP_GRACE = 1.0


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



class _Job:
    """One event on its way: the built request and, with an outbox, its row."""

    __slots__ = ("done", "request", "retries", "rounds", "row_id", "seq", "timeout_ms")

    def __init__(self, seq: int, request: PublishRequest, retries: Optional[RetryConfig],
                 timeout_ms: Optional[float], row_id: Optional[int] = None, rounds: int = 0) -> None:
        self.seq = seq
        self.request = request
        self.retries = retries
        self.timeout_ms = timeout_ms
        self.row_id = row_id
        self.rounds = rounds
        self.done = False  # without an outbox: its outcome is being settled (by a worker, or by close())

    def event(self) -> Event:
        r = self.request
        return Event(r.event_id, r.tenant_id, r.topic, r.body)


class _Insert:
    """A submit waiting for its row to be committed."""

    __slots__ = ("done", "error", "job")

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class _Result:
    """A worker's outcome for an outbox row, applied by the outbox thread."""

    __slots__ = ("duplicate", "error", "job", "kind", "when")

    def __init__(self, job: _Job, kind: str, error: Optional[BaseException] = None, when: float = 0.0,
                 duplicate: bool = False) -> None:
        self.job = job
        self.kind = kind
        self.error = error
        self.when = when
        self.duplicate = duplicate

    def outcome(self) -> Outcome:
        assert self.job.row_id is not None
        status = self.error.status_code if isinstance(self.error, APIError) else None
        text = _describe(self.error) if self.error is not None else None
        return (self.kind, self.job.row_id, text, status, self.when)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not (value >= 0 if zero else value > 0):
        wanted = "an int" if integer else "a number"
        raise ConfigurationError(f"Publisher {name} must be {wanted} {'>= 0' if zero else '> 0'}, got {value!r}")


class Publisher:
    """Publish in the background: ``submit`` validates, assigns the id and returns it at once.

    ``sdk``: the client to send with (default: ``minipub.default_client()``). ``workers`` threads
    send concurrently over its pooled transport. Without an outbox, at most ``max_queue`` events wait
    (``submit`` blocks for room, up to ``block_timeout``; ``block=False`` raises ``QueueFullError``);
    with ``outbox="path.db"`` events wait on disk and ``submit`` returns once the row is committed.
    ``on_error(event, error)`` hears of each event that failed for good (default: a WARNING log).
    Use as a context manager, or call ``close()``; open publishers are closed at exit (``exit_timeout``).
    """

    def __init__(
        self,
        sdk: Optional[SDK] = None,
        *,
        workers: int = 4,
        max_queue: int = 10_000,
        outbox: Union[str, os.PathLike[str], None] = None,
        on_error: Optional[ErrorHandler] = None,
        block: bool = True,
        block_timeout: Optional[float] = None,
        exit_timeout: float = 5.0,
        synchronous: str = "FULL",
        lease_seconds: float = 120.0,
        backoff_initial: float = 1.0,
        backoff_cap: float = 30.0,
        poll_interval: float = 1.0,
    ) -> None:
        _positive("workers", workers, integer=True)
        _positive("max_queue", max_queue, integer=True)
        for name, value in (("exit_timeout", exit_timeout), ("lease_seconds", lease_seconds),
                            ("backoff_cap", backoff_cap), ("poll_interval", poll_interval)):
            _positive(name, value)
        _positive("backoff_initial", backoff_initial, zero=True)
        if block_timeout is not None:
            _positive("block_timeout", block_timeout, zero=True)
        if on_error is not None and not callable(on_error):
            raise ConfigurationError("on_error must be a callable taking (event, error)")
        if sdk is None:
            from . import default_client

            sdk = default_client()
        elif not isinstance(sdk, SDK):
            raise ConfigurationError("sdk must be a minipub.SDK (or None for minipub.default_client())")
        if outbox is not None and lease_seconds <= sdk.timeout_ms / 1000:
            raise ConfigurationError(
                f"lease_seconds ({lease_seconds}) must exceed the per-attempt timeout ({sdk.timeout_ms / 1000} s); "
                "keep it well above one full publish (all retries)"
            )
        self._sdk = sdk
        self._workers = workers
        self._max_queue = max_queue
        self._on_error = on_error
        self._block = block
        self._block_timeout = block_timeout
        self.exit_timeout = exit_timeout
        self._outbox_path = os.fspath(outbox) if outbox is not None else None
        self._synchronous = synchronous
        self._lease = float(lease_seconds)
        self._backoff = BackoffStrategy(round(backoff_initial * 1000), round(backoff_cap * 1000), 2.0, 0)
        self._poll = float(poll_interval)
        self._closing = False
        self._closed = False
        self._close_result = True
        self._outbox: Optional[Outbox] = None
        self._reset()
        if self._outbox_path is not None:
            from .outbox import Outbox

            self._outbox = Outbox(self._outbox_path, synchronous=synchronous)
        _fork.register(self)
        _OPEN.add(self)
        _register_atexit()
        self._start()

    def _reset(self) -> None:
        """Fresh threads, locks, queues and counters (at start, and in a forked child)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # an event settled: flush() and room waiters
        self._work = threading.Condition(self._lock)  # a job is queued: workers
        self._db_wake = threading.Condition(self._lock)  # an op is queued: the outbox thread
        self._stop = threading.Event()  # wakes workers pausing after a failure
        self._jobs: Deque[_Job] = deque()
        self._ops: Deque[Union[_Insert, _Result]] = deque()
        self._in_flight: Dict[int, _Job] = {}
        self._unsettled: Dict[int, bool] = {}  # seq -> submitted here (not replayed)
        self._heap: List[int] = []
        self._next_seq = 1
        self._queued_here = 0
        self._row_seq: Dict[int, int] = {}  # outbox row id -> seq, for rows this process waits for
        self._claimed: Set[int] = set()  # rows this process holds a lease on (queued or in flight)
        self._more_due = True
        self._flushing = 0
        self._counts: Dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._threads: List[threading.Thread] = []
        self._db_thread: Optional[threading.Thread] = None
        self._started = False
        self._stopping = False
        self._db_stop = False
        self._db_alive = False
        self._owner = f"{os.getpid()}-{new_event_id()[:8]}"

    def _after_fork_in_child(self) -> None:
        """The child shares nothing with the parent: not its threads, locks or queue (the outbox closed
        its SQLite connection before the fork; each side reopens it on first use). The child's publisher
        starts fresh on first use; the parent keeps its own events."""
        self._reset()

    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started or self._closing:
                return
            if self._outbox is not None:
                for row_id in self._outbox.row_ids():  # what earlier processes left: replayed, and waited for
                    self._row_seq[row_id] = self._track(False)
                self._db_alive = True
                self._db_thread = threading.Thread(target=self._db_loop, name="minipub-outbox", daemon=True)
                self._db_thread.start()
            for number in range(self._workers):
                thread = threading.Thread(target=self._worker, name=f"minipub-publisher-{number + 1}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._started = True

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f", outbox={self._outbox_path!r}" if self._outbox_path else ""
        return f"Publisher(workers={self._workers}{where}, closed={self._closed})"

    @property
    def sdk(self) -> SDK:
        """The client the workers send with."""
        return self._sdk

    @property
    def outbox(self) -> Optional[Outbox]:
        """The outbox (inspect pending events and dead letters), or None."""
        return self._outbox

    # -- submitting ------------------------------------------------------------------------

    def submit(
        self,
        topic: str,
        data: Mapping[str, Any],
        *,
        tenant_id: str,
        eligible_for_retry: bool = True,
        destination_id: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        id: Optional[str] = None,
        time: Any = None,
        retries: Optional[RetryConfig] = None,
        timeout_ms: Optional[float] = None,
        http_headers: Optional[Mapping[str, str]] = None,
        block: Optional[bool] = None,
        block_timeout: Optional[float] = None,
    ) -> str:
        """Take one event (``publish``'s arguments) and return its id without touching the network.

        Bad input raises ``ValidationError`` here. With an outbox, returns once the event is
        committed to disk. ``block``/``block_timeout`` override the publisher's settings.
        """
        request, retries, timeout_ms = build({
            "tenant_id": tenant_id, "topic": topic, "data": data, "eligible_for_retry": eligible_for_retry,
            "destination_id": destination_id, "metadata": metadata, "id": id, "time": time, "retries": retries,
            "timeout_ms": timeout_ms, "http_headers": http_headers})
        self._start()
        insert = self._enqueue(request, retries, timeout_ms, block, block_timeout)
        if insert is None:
            return request.event_id
        while not insert.done.wait(0.5):
            if not self._db_alive:
                insert.error = OutboxError("the outbox thread has stopped; the event was not recorded")
                break
        if insert.error is not None:
            with self._lock:
                self._counts["submitted"] -= 1
                self._settle(insert.job.seq)
            raise insert.error
        return request.event_id

    def _enqueue(self, request: PublishRequest, retries: Optional[RetryConfig], timeout_ms: Optional[float],
                 block: Optional[bool], block_timeout: Optional[float]) -> Optional[_Insert]:
        """Track and queue the event in one step (so close() sees it); with an outbox, the pending insert."""
        with self._lock:
            if self._closing:
                raise PublisherClosedError("this Publisher is closed; submit before close(), or make a new one")
            if self._outbox_path is None and self._queued_here >= self._max_queue:
                self._wait_for_room(self._block if block is None else block,
                                    self._block_timeout if block_timeout is None else block_timeout)
            self._counts["submitted"] += 1
            job = _Job(self._track(True), request, retries, timeout_ms)
            if self._outbox_path is None:
                self._jobs.append(job)
                self._work.notify()
                return None
            insert = _Insert(job)
            self._ops.append(insert)
            self._db_wake.notify()
            return insert

    def _wait_for_room(self, block: bool, timeout: Optional[float]) -> None:
        """With the lock held: wait until fewer than ``max_queue`` events are unsettled."""
        full = f"the Publisher already holds max_queue={self._max_queue} unsettled events"
        if not block:
            raise QueueFullError(f"{full}; submit(block=True) waits for room, or raise max_queue")
        deadline = None if timeout is None else _time.monotonic() + timeout
        while self._queued_here >= self._max_queue:
            if self._closing:
                raise PublisherClosedError("this Publisher was closed while submit() waited for room")
            remaining = None if deadline is None else deadline - _time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFullError(f"{full}, still after {timeout} s; raise block_timeout or max_queue")
            self._changed.wait(remaining)

    def _track(self, submitted_here: bool) -> int:
        """With the lock held: a new sequence number for an event this publisher must settle."""
        seq = self._next_seq
        self._next_seq += 1
        self._unsettled[seq] = submitted_here
        if len(self._heap) > 2 * len(self._unsettled) + 1024:  # drop settled entries now and then
            self._heap = sorted(self._unsettled)
        heapq.heappush(self._heap, seq)
        if submitted_here:
            self._queued_here += 1
        return seq

    def _settle(self, seq: int) -> None:
        """With the lock held: this event is done (delivered, failed for good, or not ours to wait for)."""
        here = self._unsettled.pop(seq, None)
        if here is None:
            return
        if here:
            self._queued_here -= 1
        self._changed.notify_all()

    # -- waiting and stopping ----------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything submitted before this call, and everything replayed from the outbox,
        is delivered or failed for good. Returns False if ``timeout`` (seconds) ran out first."""
        self._start()
        deadline = None if timeout is None else _time.monotonic() + timeout
        with self._lock:
            target = self._next_seq - 1
            self._flushing += 1
            try:
                while True:
                    heap = self._heap
                    while heap and heap[0] not in self._unsettled:
                        heapq.heappop(heap)
                    if not heap or heap[0] > target:
                        return True
                    if self._outbox_path is not None and not self._db_alive:
                        return False
                    remaining = None if deadline is None else deadline - _time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
            finally:
                self._flushing -= 1

    def close(self, timeout: Optional[float] = 30.0) -> bool:
        """Flush (up to ``timeout`` seconds), then stop the workers. Returns whether all was settled.

        Without an outbox, events still unsent when the time is up go to ``on_error`` (as
        ``PublisherClosedError``) and count as failed. With an outbox they stay on disk for the
        next publisher: rows this process had claimed but not started are released at once.
        """
        with self._lock:
            if self._closing:
                return self._close_result
            self._closing = True
        settled = self.flush(timeout) if self._started else True
        self._close_result = settled
        deadline = _time.monotonic() + _STOP_GRACE  # then stop: workers finish their current send
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            unsent: List[_Job] = []
            if self._outbox_path is None:
                unsent = self._abandon(list(self._jobs))
                self._jobs.clear()
        self._stop.set()
        for job in unsent:
            self._report(job.event(), PublisherClosedError("the Publisher was closed before this event was sent"))
        for thread in self._threads:
            thread.join(max(0.0, deadline - _time.monotonic()))
        with self._lock:
            unknown = self._abandon(list(self._in_flight.values())) if self._outbox_path is None else []
        for job in unknown:
            self._report(job.event(), PublisherClosedError(
                "the Publisher was closed while this event was being sent; it may or may not have been delivered"))
        if self._db_thread is not None:
            with self._lock:
                self._db_stop = True
                self._db_wake.notify()
            self._db_thread.join(max(0.2, deadline - _time.monotonic()))
            if self._db_thread.is_alive():
                _log.log("WARNING", "the outbox thread did not stop in time; its rows stay leased until expiry")
        with self._lock:
            in_flight = len(self._in_flight)
        if in_flight and self._outbox_path is not None:
            _log.log("WARNING", "%d event(s) still in flight at close; their outbox rows stay leased for %.0f s",
                     in_flight, self._lease)
        self._closed = True
        _OPEN.discard(self)
        return settled

    def _abandon(self, jobs: List[_Job]) -> List[_Job]:
        """With the lock held: give these events up (no outbox): counted as failed, for on_error."""
        jobs = [job for job in jobs if not job.done]
        for job in jobs:
            job.done = True
            self._in_flight.pop(job.seq, None)
            self._counts["failed"] += 1
            self._settle(job.seq)
        return jobs

    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counts
            return PublisherStats(c["submitted"], c["delivered"], c["duplicates"], c["retried"], c["failed"],
                                  len(self._unsettled))

    # -- dead letters (outbox) ---------------------------------------------------------------

    def _require_outbox(self) -> Outbox:
        if self._outbox is None:
            raise ConfigurationError("this Publisher has no outbox; pass Publisher(outbox='path.db')")
        return self._outbox

    def dead_letters(self, limit: Optional[int] = 100) -> List[DeadLetter]:
        """Events that failed for good, oldest first."""
        return self._require_outbox().dead_letters(limit)

    def replay_dead_letters(self, ids: Optional[Iterable[int]] = None) -> int:
        """Send dead letters (these ids, or all) again, with their event ids. Returns how many;
        ``flush`` waits for them too."""
        outbox = self._require_outbox()
        self._start()
        with self._lock:  # held until tracked, so the outbox thread's claim finds the rows ours to wait for
            row_ids = outbox.replay(ids)
            for row_id in row_ids:
                if row_id not in self._row_seq:
                    self._row_seq[row_id] = self._track(False)
            self._more_due = True
            self._db_wake.notify()
        return len(row_ids)

    def purge_dead_letters(self, ids: Optional[Iterable[int]] = None, *, before: Optional[float] = None) -> int:
        """Delete dead letters (these ids, or all; only those failed before ``before``). Returns how many."""
        return self._require_outbox().purge_dead_letters(ids, before=before)

    # -- workers ---------------------------------------------------------------------------

    def _worker(self) -> None:
        streak = 0  # failures in a row that may pass later: this worker pauses longer after each
        while True:
            job = self._take()
            if job is None:
                return
            response, error, retried = self._deliver(job)
            if retried or job.rounds:
                with self._lock:
                    self._counts["retried"] += retried + (1 if job.rounds else 0)
            if error is None:
                streak = 0
                assert response is not None
                self._finish(job, "delivered", duplicate=response.duplicate is True)
                continue
            passing = isinstance(error, MinipubError) and not is_final(error)
            if passing and self._outbox_path is not None:
                self._finish(job, "deferred", error, when=_time.time() + self._pause(job.rounds + 1))
            else:
                self._finish(job, "dead", error, when=_time.time())
            if passing:
                streak += 1
                self._stop.wait(self._pause(streak))

    def _pause(self, number: int) -> float:
        """Capped exponential backoff with equal jitter: in [ceiling/2, ceiling]."""
        return backoff_ceiling(self._backoff, number) * (0.5 + 0.5 * random.random())

    def _take(self) -> Optional[_Job]:
        with self._lock:
            while True:
                if self._stopping:
                    return None
                if self._jobs:
                    job = self._jobs.popleft()
                    self._in_flight[job.seq] = job
                    return job
                self._work.wait()

    def _deliver(self, job: _Job) -> Tuple[Optional[PublishResponse], Optional[Exception], int]:
        retried = 0

        def observe(number: int, error: MinipubError, delay: Optional[float]) -> None:
            nonlocal retried
            if delay is not None:
                retried += 1

        try:
            response: PublishResponse = self._sdk.send(job.request, retry_config=job.retries, timeout_ms=job.timeout_ms,
                                                         on_retry=observe, wait_for_budget=True)
        except Exception as error:
            return None, error, retried
        return response, None, retried

    def _finish(self, job: _Job, kind: str, error: Optional[BaseException] = None, *, when: float = 0.0,
                duplicate: bool = False) -> None:
        """Settle a job's outcome; ``on_error`` runs before the event counts as settled (flush waits for it)."""
        if self._outbox_path is None:
            with self._lock:
                if job.done:  # close() gave it up already and told on_error
                    _log.log("WARNING", "event %s finished (%s) after close() had given it up",
                             job.request.event_id, kind)
                    return
                job.done = True
        if kind == "dead":
            assert error is not None
            self._report(job.event(), error)
        with self._lock:
            if self._outbox_path is not None:
                self._ops.append(_Result(job, kind, error, when, duplicate))
                self._db_wake.notify()
                return
            self._in_flight.pop(job.seq, None)
            self._count(kind, duplicate)
            self._settle(job.seq)

    def _count(self, kind: str, duplicate: bool) -> None:
        if kind == "delivered":
            self._counts["delivered"] += 1
            if duplicate:
                self._counts["duplicates"] += 1
        elif kind == "dead":
            self._counts["failed"] += 1

    def _report(self, event: Event, error: BaseException) -> None:
        handler = self._on_error
        if handler is None:
            _log.log("WARNING", "event %s (tenant %s, topic %s) failed for good: %s", event.id, event.tenant_id,
                     event.topic, _describe(error))
            return
        try:
            handler(event, error)
        except Exception as exc:
            _log.log("ERROR", "on_error raised %s for event %s", _describe(exc), event.id)

    # -- the outbox thread -------------------------------------------------------------------

    def _db_loop(self) -> None:
        try:
            self._db_run()
        except BaseException as exc:  # pragma: no cover - a bug; submit() and flush() see the thread gone
            _log.log("ERROR", "the outbox thread stopped: %s", _describe(exc))
            raise
        finally:
            with self._lock:
                self._db_alive = False
                self._changed.notify_all()

    def _db_run(self) -> None:
        """Own the outbox: commit inserts and outcomes in groups, claim due rows for the workers."""
        outbox = self._outbox
        assert outbox is not None
        capacity = 2 * self._workers  # rows held at once: one in flight and one waiting per worker
        due_at = 0.0
        check_at = _time.monotonic() + self._poll
        while True:
            with self._lock:
                while not (self._ops or self._db_stop):
                    room = capacity - len(self._claimed)
                    now = _time.time()
                    if room > 0 and (self._more_due or due_at <= now):
                        break
                    if self._flushing and check_at <= _time.monotonic():
                        break
                    wait = self._poll if room <= 0 else min(self._poll, due_at - now)
                    if self._flushing:
                        wait = min(wait, check_at - _time.monotonic())
                    if not self._db_wake.wait(max(wait, 0.001)):
                        break
                ops = list(self._ops)
                self._ops.clear()
                stop = self._db_stop
                results = [op for op in ops if isinstance(op, _Result)]
                room = 0 if stop else capacity - len(self._claimed) + len(results)
                flushing = self._flushing > 0
            inserts = [op for op in ops if isinstance(op, _Insert)]
            now = _time.time()
            bad: List[Tuple[int, Event, str]] = []
            try:
                row_ids, claimed = outbox.transact(
                    [(op.job.request, op.job.retries, op.job.timeout_ms) for op in inserts],
                    [op.outcome() for op in results], owner=self._owner, claim=room, lease_seconds=self._lease,
                    now=now, on_bad_row=lambda *row: bad.append(row))  # noqa: B023 - called before the loop goes on
            except Exception as exc:  # OutboxError, or a row that no longer decodes
                error = exc if isinstance(exc, OutboxError) else OutboxError(f"outbox: {_describe(exc)}")
                self._db_failed(inserts, results, error)
                if stop:
                    break
                _time.sleep(0.2)
                continue
            with self._lock:
                for op, row_id in zip(inserts, row_ids):
                    op.job.row_id = row_id
                    self._row_seq[row_id] = op.job.seq
                for result in results:
                    self._apply(result)
                for row in claimed:
                    if row.first_sent_at is not None and now - row.first_sent_at > DEDUP_WINDOW_SECONDS:
                        _log.log("WARNING", "event %s was first sent %.0f s ago, past Outpost's default "
                                 "deduplication window: if it was accepted then, it may be delivered twice",
                                 row.request.event_id, now - row.first_sent_at)
                    seq = self._row_seq.get(row.row_id)
                    if seq is None or seq not in self._unsettled:
                        seq = self._row_seq[row.row_id] = self._track(False)
                    self._claimed.add(row.row_id)
                    self._jobs.append(_Job(seq, row.request, row.retries, row.timeout_ms, row.row_id, row.rounds))
                if claimed:
                    self._work.notify(len(claimed))
                self._more_due = room <= 0 or len(claimed) + len(bad) >= room
            for op in inserts:
                op.done.set()
            self._bad_rows(bad)
            if stop:
                break
            if not self._more_due:
                try:
                    next_due = outbox.next_due()
                except OutboxError:
                    next_due = None
                due_at = min(next_due, now + self._poll) if next_due is not None else now + self._poll
            if flushing and check_at <= _time.monotonic():
                self._settle_vanished(outbox)
                check_at = _time.monotonic() + self._poll
        self._db_shutdown(outbox)

    def _bad_rows(self, bad: List[Tuple[int, Event, str]]) -> None:
        """Rows the outbox could not decode went to the dead letters: failed for good, told to on_error."""
        for row_id, event, reason in bad:
            self._report(event, OutboxError(reason))
            with self._lock:
                self._counts["failed"] += 1
                seq = self._row_seq.pop(row_id, None)
                if seq is not None:
                    self._settle(seq)

    def _apply(self, result: _Result) -> None:
        """With the lock held: a worker's outcome is committed."""
        job = result.job
        assert job.row_id is not None
        self._in_flight.pop(job.seq, None)
        self._claimed.discard(job.row_id)
        if result.kind in ("delivered", "dead"):
            self._count(result.kind, result.duplicate)
            self._row_seq.pop(job.row_id, None)
            self._settle(job.seq)

    def _db_failed(self, inserts: List[_Insert], results: List[_Result], error: OutboxError) -> None:
        """A transaction failed: its submits raise; its rows stay leased and are claimed again later."""
        _log.log("ERROR", "%s", error)
        with self._lock:
            for result in results:
                self._in_flight.pop(result.job.seq, None)
                assert result.job.row_id is not None
                self._claimed.discard(result.job.row_id)
        for op in inserts:
            op.error = error
            op.done.set()

    def _settle_vanished(self, outbox: Outbox) -> None:
        """Rows we wait for but do not hold may have been delivered by another process: stop waiting."""
        with self._lock:
            idle = [row_id for row_id in self._row_seq if row_id not in self._claimed]
        if not idle:
            return
        try:
            present = outbox.existing(idle)
        except OutboxError as error:
            _log.log("WARNING", "%s", error)
            return
        with self._lock:
            for row_id in idle:
                if row_id not in present and row_id not in self._claimed:
                    seq = self._row_seq.pop(row_id, None)
                    if seq is not None:
                        self._settle(seq)

    def _db_shutdown(self, outbox: Outbox) -> None:
        """Release the rows claimed but not started, then close the connection."""
        with self._lock:
            waiting = [job for job in self._jobs if job.row_id is not None]
            self._jobs.clear()
        if waiting:
            try:
                outbox.transact([], [("release", job.row_id, None, None, 0.0) for job in waiting if job.row_id],
                                owner=self._owner)
            except OutboxError as error:
                _log.log("WARNING", "%s", error)
        outbox.close()


#: Publishers not closed yet: closed (bounded by their exit_timeout) when the interpreter exits.
_OPEN: weakref.WeakSet[Publisher] = weakref.WeakSet()
_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_close_open_publishers)


def _close_open_publishers() -> None:
    for publisher in list(_OPEN):
        try:
            publisher.close(timeout=publisher.exit_timeout)
        except Exception as exc:  # pragma: no cover - never let exit fail
            _log.log("ERROR", "closing %r at exit failed: %s", publisher, _describe(exc))
