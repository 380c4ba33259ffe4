"""Retry policy as values, and the one retry loop.

The loop retries 408, 409, 429, 500, 502, 503, 504 and (when allowed) connection failures,
with full-jitter exponential backoff, ``Retry-After`` honoured, an overall deadline and a
per-client retry budget. Clock, sleep and randomness are injectable for tests.
"""

from __future__ import annotations

import re
import time as _time

from . import _log
from ._record import Record
from ._sync import ready, run_sync
from .budget import PER_CLIENT_BUDGET, RetryBudget
from .errors import (
    APIError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    MinipubError,
    TLSError,
    TransportTimeout,
    ValidationError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Awaitable, Callable, Mapping, Optional, TypeVar

__all__ = [
    "BackoffStrategy",
    "RetryConfig",
    "RetryBudget",
    "PER_CLIENT_BUDGET",
    "DEFAULT_RETRY_CONFIG",
    "RETRY_STATUSES",
    "RETRY_AFTER_CAP",
    "retry_after_seconds",
    "backoff_ceiling",
    "RetryState",
    "retrying",
    "call_with_retries",
    "call_with_retries_async",
    "is_final",
]

if TYPE_CHECKING:
    T = TypeVar("T")

#: Statuses worth another attempt. 409: Outpost is still processing the same event id.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
#: The longest ``Retry-After`` the loop will wait, in seconds.
RETRY_AFTER_CAP = 60.0
_CONNECTION_ERRORS = (ConnectError, TransportTimeout, ConnectionLostError)


class BackoffStrategy(Record):
    """Exponential backoff, in milliseconds (the Outpost SDK's positional order).

    ``max_elapsed_time``: no retry starts later than this after the first attempt; None: no deadline.
    """

    initial_interval: int
    max_interval: int
    exponent: float
    max_elapsed_time: Optional[int]

    def _check(self) -> None:
        for name in ("initial_interval", "max_interval", "exponent", "max_elapsed_time"):
            value = getattr(self, name)
            if value is None and name == "max_elapsed_time":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                hint = " (or None: no deadline)" if name == "max_elapsed_time" else ""
                raise ValidationError(f"BackoffStrategy.{name} must be a number >= 0{hint}, got {value!r}")
        if self.exponent < 1:
            raise ValidationError(f"BackoffStrategy.exponent must be >= 1, got {self.exponent!r}")


#: 0.5 s doubling to 8 s at most (full jitter), no retry may start after 30 s.
DEFAULT_BACKOFF = BackoffStrategy(500, 8000, 2.0, 30000)


class RetryConfig(Record):
    """``strategy`` is ``"backoff"`` or ``"none"``; ``max_attempts`` counts the first attempt too."""

    strategy: str
    backoff: BackoffStrategy = DEFAULT_BACKOFF
    retry_connection_errors: bool = True
    max_attempts: Optional[int] = None

    def _check(self) -> None:
        if self.strategy not in ("backoff", "none"):
            raise ValidationError(f"RetryConfig.strategy must be 'backoff' or 'none', got {self.strategy!r}")
        if self.backoff is None:  # the default, as the Outpost SDK spells it
            object.__setattr__(self, "backoff", DEFAULT_BACKOFF)
        if not isinstance(self.backoff, BackoffStrategy):
            raise ValidationError("RetryConfig.backoff must be a BackoffStrategy (or None for the default)")
        if type(self.retry_connection_errors) is not bool:
            raise ValidationError("RetryConfig.retry_connection_errors must be True or False")
        attempts = self.max_attempts
        if attempts is not None and (type(attempts) is not int or attempts < 1):
            raise ValidationError(f"RetryConfig.max_attempts must be an int >= 1 or None, got {attempts!r}")

    @property
    def deadline(self) -> Optional[float]:
        """Seconds from the first attempt after which no retry starts (None: no deadline, or no retries)."""
        elapsed = self.backoff.max_elapsed_time
        return None if elapsed is None or self.strategy == "none" else elapsed / 1000


#: On by default and bounded: 3 attempts in all.
DEFAULT_RETRY_CONFIG = RetryConfig("backoff", DEFAULT_BACKOFF, True, max_attempts=3)


#: ``retry-after-ms``: ASCII milliseconds, maybe with a fraction; ``Retry-After``: ASCII whole seconds.
_MILLISECONDS = r"[0-9]{1,64}(?:\.[0-9]{1,64})?"
_SECONDS = r"[0-9]{1,64}"
#: An HTTP-date is short printable ASCII (``Sun, 06 Nov 1994 08:49:37 GMT`` is 29 characters).
_HTTP_DATE = r"[ -~]{1,64}"  # compiled on first use (re's cache): most answers carry no such header


def retry_after_seconds(headers: Mapping[str, str], now: Optional[float] = None,
                        cap: float = RETRY_AFTER_CAP) -> Optional[float]:
    """The wait a response asks for (``retry-after-ms``, ``Retry-After`` seconds or HTTP-date), in
    seconds within ``[0, cap]``; None when absent or not understood. Never raises: any header
    value from a server is either a delay or ignored."""
    value = headers.get("retry-after-ms")
    if isinstance(value, str) and re.fullmatch(_MILLISECONDS, value.strip()):
        return min(float(value.strip()) / 1000, cap)
    value = headers.get("retry-after")
    if not isinstance(value, str):
        return None
    value = value.strip()
    if re.fullmatch(_SECONDS, value):
        return min(float(value), cap)
    if not re.fullmatch(_HTTP_DATE, value):
        return None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
        if when is None or when.tzinfo is None:
            return None
        wait = when.timestamp() - (_time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):  # what the stdlib parser raises on nonsense
        return None
    return min(max(0.0, wait), cap)


def backoff_ceiling(backoff: BackoffStrategy, retry_number: int) -> float:
    """The largest wait (seconds) before retry ``retry_number`` (1 for the first retry)."""
    try:
        grown = backoff.initial_interval * backoff.exponent ** (retry_number - 1)
    except OverflowError:
        grown = float("inf")
    return min(backoff.max_interval, grown) / 1000


def _retryable(error: MinipubError, config: RetryConfig) -> bool:
    if isinstance(error, APIError):
        return error.status_code in RETRY_STATUSES
    return config.retry_connection_errors and isinstance(error, _CONNECTION_ERRORS) and not isinstance(error, TLSError)


def _reason(error: MinipubError) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status_code}"
    return f"{type(error).__name__}: {error}"


if TYPE_CHECKING:
    RetryObserver = Callable[[int, MinipubError, Optional[float]], None]


_NO_DEADLINE = float("inf")


class RetryState:
    """The retry policy of one call, fed one failure at a time (shared by the sync and async loops).

    ``number`` is the attempt about to run (1 first). ``failed(error)`` answers the wait before
    the next attempt, or None to stop and raise; ``succeeded()`` credits the budget. With
    ``wait_for_budget``, an empty budget delays the retry (up to the deadline) instead of ending
    it: :meth:`failed` waits for a token blocking the thread (:meth:`RetryBudget.acquire`),
    :meth:`failed_async` awaiting ``token_sleep`` between looks (:meth:`RetryBudget.acquire_async`).
    """

    __slots__ = ("_budget", "_clock", "_config", "_deadline", "_observer", "_random", "_token_sleep", "_wait", "number")

    def __init__(
        self,
        config: RetryConfig,
        *,
        budget: Optional[RetryBudget] = None,
        clock: Callable[[], float] = _time.monotonic,
        random: Optional[Callable[[], float]] = None,
        on_retry_decision: Optional[RetryObserver] = None,
        wait_for_budget: bool = False,
        token_sleep: Optional[Callable[[float], Awaitable[None]]] = None,
    ) -> None:
        self._config = config
        self._wait = wait_for_budget
        self._token_sleep = token_sleep
        self._budget = budget
        self._clock = clock
        self._random = random
        self._observer = on_retry_decision
        deadline = config.deadline
        self._deadline = _NO_DEADLINE if deadline is None else clock() + deadline
        self.number = 1

    def attempt_timeout(self, timeout: float) -> float:
        """The attempt's timeout cut to what is left of the deadline, so the deadline bounds the whole call."""
        if self._deadline is _NO_DEADLINE:
            return timeout
        return max(0.001, min(timeout, self._deadline - self._clock()))

    def failed(self, error: MinipubError) -> Optional[float]:
        """Seconds to wait before the next attempt, or None: raise ``error``. A wait for a budget
        token blocks the thread."""
        return run_sync(self._failed(error, None))

    async def failed_async(self, error: MinipubError) -> Optional[float]:
        """:meth:`failed`, awaiting a budget token with ``token_sleep`` (the one retry loop calls this)."""
        return await self._failed(error, self._token_sleep)

    async def _failed(self, error: MinipubError, token_sleep: Optional[Callable[[float], Awaitable[None]]],
                      ) -> Optional[float]:
        remaining = self._deadline - self._clock()
        delay = _next_delay(error, self.number, self._config, remaining, self._random)
        if delay is not None and self._budget is not None:
            delay = await self._spend(self._budget, delay, remaining, error, token_sleep)
        if self._observer is not None:
            self._observer(self.number, error, delay)
        if delay is not None:
            if _log.enabled("INFO"):
                _log.log("INFO", "publish attempt %d failed (%s); retrying in %.3f s", self.number, _reason(error),
                         delay)
            self.number += 1
        return delay

    async def _spend(self, budget: RetryBudget, delay: float, remaining: float, error: MinipubError,
                     token_sleep: Optional[Callable[[float], Awaitable[None]]]) -> Optional[float]:
        """The wait once a budget token is taken (waiting overlaps the backoff), or None: no token."""
        if budget.spend():
            return delay
        if self._wait:
            waited = budget.acquire(remaining) if token_sleep is None else await budget.acquire_async(
                remaining, token_sleep)
            if waited is not None:
                return max(0.0, delay - waited)
            if _log.enabled("WARNING"):
                _log.log("WARNING", "retry budget stayed empty until the deadline; not retrying (%s)", _reason(error))
            return None
        if _log.enabled("WARNING"):
            _log.log("WARNING", "retry budget exhausted; not retrying (%s)", _reason(error))
        return None

    def succeeded(self) -> None:
        """Credit the budget for a success."""
        if self._budget is not None:
            self._budget.deposit()


async def retrying(attempt: Callable[[int], Awaitable[T]], state: RetryState,
                   sleep: Callable[[float], Awaitable[None]]) -> T:
    """The one retry loop: ``await attempt(n)`` for n = 1, 2, ... until it returns or ``state`` says stop.

    Raises the last error when it is not retryable, attempts or budget run out, or the next wait
    would end after the deadline. Written once: the sync path runs it with :func:`minipub._sync.run_sync`.
    """
    while True:
        try:
            result = await attempt(state.number)
        except MinipubError as error:
            delay = await state.failed_async(error)
            if delay is None:
                raise
            await sleep(delay)
        else:
            state.succeeded()
            return result


def call_with_retries(
    attempt: Callable[[int], T],
    config: RetryConfig,
    *,
    budget: Optional[RetryBudget] = None,
    clock: Callable[[], float] = _time.monotonic,
    sleep: Callable[[float], None] = _time.sleep,
    random: Optional[Callable[[], float]] = None,
    on_retry_decision: Optional[RetryObserver] = None,
    wait_for_budget: bool = False,
) -> T:
    """Call ``attempt(n)`` for n = 1, 2, ... until it returns or the policy says stop (:func:`retrying`).

    ``on_retry_decision(attempt, error, delay_or_None)`` sees every decision. With
    ``wait_for_budget``, an empty budget blocks until a token comes (:meth:`RetryBudget.acquire`,
    bounded by the deadline) instead of ending the retries: for background workers.
    """
    state = RetryState(config, budget=budget, clock=clock, random=random, on_retry_decision=on_retry_decision,
                       wait_for_budget=wait_for_budget)
    return run_sync(retrying(ready(attempt), state, ready(sleep)))


async def call_with_retries_async(
    attempt: Callable[[int], Awaitable[T]],
    config: RetryConfig,
    *,
    budget: Optional[RetryBudget] = None,
    clock: Callable[[], float] = _time.monotonic,
    sleep: Optional[Callable[[float], Awaitable[None]]] = None,
    random: Optional[Callable[[], float]] = None,
    on_retry_decision: Optional[RetryObserver] = None,
) -> T:
    """:func:`call_with_retries` for coroutines: awaited sleeps (``asyncio.sleep`` by default), so
    backoff never blocks the event loop."""
    if sleep is None:
        import asyncio

        sleep = asyncio.sleep
    state = RetryState(config, budget=budget, clock=clock, random=random, on_retry_decision=on_retry_decision)
    return await retrying(attempt, state, sleep)


def is_final(error: BaseException) -> bool:
    """True when a later attempt cannot help: an HTTP status the loop never retries (422, 401, ...),
    or bad input (a ``ValidationError`` that is not a ``ConfigurationError``: a transport may refuse a
    body at send time, as the RabbitMQ plugin does with what Outpost's queue consumer would loop on).

    Transport failures, retryable statuses and configuration (a key file being replaced) are not
    final: they may pass later (an outbox keeps such events and tries again)."""
    if isinstance(error, ValidationError):
        return not isinstance(error, ConfigurationError)
    return isinstance(error, APIError) and error.status_code not in RETRY_STATUSES


def _next_delay(
    error: MinipubError,
    number: int,
    config: RetryConfig,
    remaining: float,
    random: Optional[Callable[[], float]],
) -> Optional[float]:
    """Seconds to wait before attempt ``number + 1`` (the budget aside), or None to stop and raise."""
    if config.strategy == "none" or not _retryable(error, config):
        return None
    if config.max_attempts is not None and number >= config.max_attempts:
        return None
    hinted = retry_after_seconds(error.headers) if isinstance(error, APIError) else None
    if hinted is not None:
        delay = min(hinted, RETRY_AFTER_CAP)
    else:
        if random is None:
            import random as _random

            random = _random.random
        delay = backoff_ceiling(config.backoff, number) * random()
    if delay > remaining + 1e-9:  # a wait ending on the deadline itself is allowed, float rounding aside
        return None
    return delay


def __getattr__(name: str) -> object:
    """``RetryObserver`` for code that imports it at run time (``typing`` loads then: the first
    publish never imports it)."""
    if name == "RetryObserver":
        from typing import Callable, Optional

        return Callable[[int, MinipubError, Optional[float]], None]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
