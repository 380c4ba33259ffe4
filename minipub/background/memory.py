"""The in-memory queue: at most ``max_queue`` events wait; what ``close`` cannot send goes to ``on_error``."""

from __future__ import annotations

from typing import List, Optional

from .. import _log
from ..errors import PublisherClosedError
from ..request import PublishRequest
from ..retry import RetryConfig
from .jobs import DEAD, Handout, Job, Outcome
from .tracker import Tracker

__all__ = ["MemoryQueue"]


class MemoryQueue:
    """A :class:`~minipub.background.jobs.JobQueue` in memory: every failure is final."""

    defers = False

    def __init__(self, tracker: Tracker, max_queue: int) -> None:
        self._tracker = tracker
        self._max_queue = max_queue
        self.handout = Handout(tracker.lock)

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def add(self, request: PublishRequest, retry_config: Optional[RetryConfig], timeout_ms: Optional[float],
            block: bool, block_timeout: Optional[float]) -> None:
        tracker = self._tracker
        with tracker.lock:
            tracker.admit()
            tracker.wait_for_room(self._max_queue, block, block_timeout)
            self.handout.put(Job(tracker.track(True), request, retry_config, timeout_ms))

    def take(self) -> Optional[Job]:
        return self.handout.take()

    def report(self, job: Job, outcome: Outcome) -> None:
        """Settle the job; ``on_error`` runs before a failed event counts as settled (flush waits for it)."""
        with self._tracker.lock:
            if job.done:  # close() gave it up already and told on_error
                _log.log("WARNING", "event %s finished (%s) after close() had given it up", job.request.event_id,
                         outcome.kind)
                return
            job.done = True
            if outcome.kind != DEAD:
                self._settle(job, outcome)
                return
        assert outcome.error is not None
        self._tracker.report(job.event(), outcome.error)
        with self._tracker.lock:
            self._settle(job, outcome)

    def _settle(self, job: Job, outcome: Outcome) -> None:
        self.handout.in_flight.pop(job.seq, None)
        self._tracker.count(outcome)
        self._tracker.settle(job.seq)

    def stop(self) -> None:
        """No more jobs for the workers: the unsent ones go to ``on_error``."""
        with self._tracker.lock:
            unsent = self._abandon(self.handout.halt())
        self._tell(unsent, "the Publisher was closed before this event was sent")

    def close(self, deadline: float) -> None:
        """After the workers stopped: a send still in hand is given up too."""
        with self._tracker.lock:
            unknown = self._abandon(list(self.handout.in_flight.values()))
        self._tell(unknown, "the Publisher was closed while this event was being sent; it may or may not have "
                            "been delivered")

    def _abandon(self, jobs: List[Job]) -> List[Job]:
        """With the lock held: give these events up, counted as failed."""
        jobs = [job for job in jobs if not job.done]
        for job in jobs:
            job.done = True
            self._settle(job, Outcome(DEAD))
        return jobs

    def _tell(self, jobs: List[Job], message: str) -> None:
        for job in jobs:
            self._tracker.report(job.event(), PublisherClosedError(message))
