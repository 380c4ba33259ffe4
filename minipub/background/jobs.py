"""The one interface between the Publisher's workers and where their jobs come from.

A worker takes a :class:`Job` from a :class:`JobQueue`, sends it, and reports an :class:`Outcome`
back. The in-memory queue (``memory.py``) and the outbox pump (``pump.py``) implement it;
:class:`Handout` is the part they share: jobs ready for the workers, and those in flight.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Callable, Deque, Dict, List, Optional, Protocol

from ..models import Event

if TYPE_CHECKING:
    from ..request import PublishRequest
    from ..retry import RetryConfig

__all__ = ["Job", "Outcome", "JobQueue", "Handout", "DELIVERED", "DEFERRED", "POSTPONED", "DEAD"]

#: Outcome kinds: a 202 (the event is settled); failed, due again later (only a queue that ``defers``);
#: not sent, due again later (the key was refused: ``gate.py``; only a queue that ``defers``);
#: failed for good (``on_error``, and the dead letters with an outbox).
DELIVERED, DEFERRED, POSTPONED, DEAD = "delivered", "deferred", "postponed", "dead"


class Job:
    """One event on its way: its sequence number (the tracker's), its request and, from an outbox, its row."""

    __slots__ = ("done", "request", "retry_config", "rounds", "row_id", "seq", "timeout_ms")

    def __init__(self, seq: int, request: PublishRequest, retry_config: Optional[RetryConfig],
                 timeout_ms: Optional[float], row_id: Optional[int] = None, rounds: int = 0) -> None:
        self.seq, self.request, self.retry_config, self.timeout_ms = seq, request, retry_config, timeout_ms
        self.row_id, self.rounds = row_id, rounds  # from an outbox: the row, and how many rounds failed
        self.done = False  # its outcome is being settled (memory queue: by a worker, or by close())

    def event(self) -> Event:
        r = self.request
        return Event(r.event_id, r.tenant_id, r.topic, r.body)


class Outcome:
    """What a worker reports for a job: its kind, the error (if any), when it is due again, the 202's
    ``duplicate``, and how many retries the send made."""

    __slots__ = ("duplicate", "error", "kind", "retried", "when")

    def __init__(self, kind: str, error: Optional[BaseException] = None, when: float = 0.0,
                 duplicate: bool = False, retried: int = 0) -> None:
        self.kind = kind
        self.error = error
        self.when = when
        self.duplicate = duplicate
        self.retried = retried


class JobQueue(Protocol):
    """Where a Publisher's events wait. ``defers``: a failure that may pass later is due again later
    (the outbox) rather than final. The tracker's lock is the queue's too."""

    defers: bool
    handout: Handout

    def start(self) -> None:
        """With the lock held: start what the queue runs, and take over what earlier processes left."""

    def add(self, request: PublishRequest, retry_config: Optional[RetryConfig], timeout_ms: Optional[float],
            block: bool, block_timeout: Optional[float]) -> None:
        """Track and queue one event; returns once it is accepted (in memory, or committed to disk)."""

    def take(self) -> Optional[Job]:
        """The next job for a worker (waits for one); None once the workers must stop."""

    def report(self, job: Job, outcome: Outcome) -> None:
        """A worker's outcome for a job it took."""

    def alive(self) -> bool:
        """Whether the queue can still settle events (``flush`` gives up when it cannot)."""

    def stop(self) -> None:
        """No more jobs for the workers (``take`` answers None)."""

    def close(self, deadline: float) -> None:
        """After the workers stopped (or ``deadline``, a monotonic time, passed): settle what is left."""


class Handout:
    """Jobs ready for the workers, and the jobs in flight; ``lock`` is the tracker's.

    Worker threads wait on ``work``. Workers on an event loop (``loop.py``) set ``waker`` and, with
    the lock held, ``wanted`` when they wait: the next ``put`` or ``halt`` calls ``waker`` once (the
    lock held), so a busy loop costs the submitting threads no wake-up each.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self.ready: Deque[Job] = deque()
        self.in_flight: Dict[int, Job] = {}
        self.work = threading.Condition(lock)
        self.stopping = False
        self.waker: Optional[Callable[[], None]] = None
        self.wanted = False

    def _wake(self) -> None:
        if self.wanted and self.waker is not None:
            self.wanted = False
            self.waker()

    def put(self, job: Job) -> None:
        """With the lock held: one more job for the workers."""
        self.ready.append(job)
        self.work.notify()
        self._wake()

    def pop(self) -> Job:
        """With the lock held and a job ready: the next one, now in flight."""
        job = self.ready.popleft()
        self.in_flight[job.seq] = job
        return job

    def take(self) -> Optional[Job]:
        with self.work:
            while True:
                if self.stopping:
                    return None
                if self.ready:
                    return self.pop()
                self.work.wait()

    def halt(self) -> List[Job]:
        """With the lock held: no more jobs for the workers; those not taken yet."""
        self.stopping = True
        self.work.notify_all()
        self._wake()
        waiting = list(self.ready)
        self.ready.clear()
        return waiting
