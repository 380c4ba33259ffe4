"""The retry budget: a token bucket shared by a client's publishes, so retries cannot multiply load."""

from __future__ import annotations

import threading
import time as _time

from . import _fork
from .errors import ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Awaitable, Callable, Optional

__all__ = ["RetryBudget", "PER_CLIENT_BUDGET"]

#: How often a coroutine waiting for a token looks for a success's refill (seconds): it is not notified.
_REFILL_LOOK = 0.05


class RetryBudget:
    """A token bucket shared by a client's publishes: a retry spends one, a success refills ``refill``.

    When a server keeps failing, retries stop once the bucket is empty, so the client never
    multiplies the load by more than about ``1 + refill`` per success after the first burst.
    A caller that may wait instead (the background ``Publisher``) takes a token with
    :meth:`acquire`: from a success's refill, or else one paced token per ``1 / wait_rate``
    seconds shared by all waiters, so waiting retries add at most ``wait_rate`` per second.
    """

    def __init__(self, capacity: float = 10.0, refill: float = 0.1, wait_rate: float = 10.0) -> None:
        if not (capacity >= 0 and refill >= 0 and wait_rate >= 0):
            raise ValidationError("RetryBudget capacity, refill and wait_rate must be >= 0")
        self.capacity = capacity
        self.refill = refill
        self.wait_rate = wait_rate
        self._tokens = capacity
        self._paced_at = 0.0  # monotonic time from which the next paced token may be taken
        self._waiters = 0
        self._lock = threading.Lock()
        self._refilled = threading.Condition(self._lock)
        _fork.register(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it at fork time
        self._refilled = threading.Condition(self._lock)
        self._waiters = 0

    @property
    def tokens(self) -> float:
        return self._tokens

    def spend(self) -> bool:
        """Take one token for a retry; False when the budget is exhausted."""
        with self._lock:
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def _take(self, now: float) -> Optional[float]:
        """With the lock held: take a token (None), else the monotonic time a paced one may come."""
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        if self.wait_rate > 0 and self._paced_at <= now:
            self._paced_at = now + 1 / self.wait_rate
            return None
        return self._paced_at if self.wait_rate > 0 else float("inf")

    def acquire(self, timeout: float) -> Optional[float]:
        """Take one token, waiting up to ``timeout`` seconds for one; the seconds waited, or None."""
        start = _time.monotonic()
        end = start + max(0.0, timeout)
        with self._lock:
            while True:
                now = _time.monotonic()
                paced = self._take(now)
                if paced is None:
                    return now - start
                if now >= end:
                    return None
                self._waiters += 1
                try:
                    self._refilled.wait(min(end, paced) - now)
                finally:
                    self._waiters -= 1

    async def acquire_async(self, timeout: float, sleep: Callable[[float], Awaitable[None]]) -> Optional[float]:
        """:meth:`acquire` for a coroutine: ``await sleep(...)`` between looks (a success's refill is
        seen within ``_REFILL_LOOK`` seconds), never blocking the thread for more than the lock."""
        start = _time.monotonic()
        end = start + max(0.0, timeout)
        while True:
            now = _time.monotonic()
            with self._lock:
                paced = self._take(now)
            if paced is None:
                return now - start
            if now >= end:
                return None
            await sleep(max(0.0, min(end, paced, now + _REFILL_LOOK) - now))

    def deposit(self) -> None:
        """Credit a success."""
        if self._tokens < self.capacity:
            with self._lock:
                self._tokens = min(self.capacity, self._tokens + self.refill)
                if self._waiters and self._tokens >= 1:
                    self._refilled.notify()

    def __repr__(self) -> str:
        return (f"RetryBudget(capacity={self.capacity}, refill={self.refill}, wait_rate={self.wait_rate}, "
                f"tokens={self._tokens:.1f})")


#: ``SDK(retry_budget=...)``'s default: each client makes a new ``RetryBudget()`` of its own
#: (this instance is only the marker); ``retry_budget=None`` turns the budget off.
PER_CLIENT_BUDGET = RetryBudget()
