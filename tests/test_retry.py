"""The retry loop's schedule, driven by hypothesis with a fake clock and sleep."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub.errors import (
    APIError,
    BadRequestError,
    ConnectError,
    ConnectionLostError,
    InternalServerError,
    MinipubError,
    TLSError,
    TransportTimeout,
    error_class_for,
)
from minipub.retry import (
    DEFAULT_RETRY_CONFIG,
    RETRY_AFTER_CAP,
    RETRY_STATUSES,
    BackoffStrategy,
    RetryBudget,
    RetryConfig,
    backoff_ceiling,
    call_with_retries,
    retry_after_seconds,
)
from minipub.utils import BackoffStrategy as UtilsBackoff
from minipub.utils import RetryConfig as UtilsRetryConfig


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def api_error(status: int, headers: Optional[Dict[str, str]] = None) -> APIError:
    return error_class_for(status)("boom", status_code=status, headers=headers or {})


statuses = st.integers(min_value=400, max_value=599)
transport_errors = st.sampled_from([ConnectError("x"), TransportTimeout("x"), ConnectionLostError("x"), TLSError("x")])
failures = st.one_of(statuses.map(api_error), transport_errors)
retry_after_headers = st.one_of(
    st.just({}),
    st.integers(0, 200).map(lambda s: {"retry-after": str(s)}),
    st.integers(0, 5000).map(lambda ms: {"retry-after-ms": str(ms)}),
)
backoffs = st.builds(
    BackoffStrategy,
    st.integers(0, 5000),
    st.integers(0, 20000),
    st.floats(1.0, 4.0),
    st.integers(0, 120_000),
)
configs = st.builds(
    RetryConfig,
    st.sampled_from(["backoff", "none"]),
    backoffs,
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 8)),
)


def retryable(error: MinipubError, config: RetryConfig) -> bool:
    if isinstance(error, APIError):
        return error.status_code in RETRY_STATUSES
    return config.retry_connection_errors and not isinstance(error, TLSError)


@given(
    config=configs,
    script=st.lists(st.tuples(failures, retry_after_headers), max_size=12),
    rand=st.floats(0.0, 1.0),
)
def test_schedule_properties(config: RetryConfig, script: List[Tuple[MinipubError, Dict[str, str]]], rand: float) -> None:
    """Whatever fails, the loop sleeps only within bounds, stops in time, and raises the last error."""
    fake = FakeTime()
    errors: List[MinipubError] = []
    for error, headers in script:
        if isinstance(error, APIError):
            error = api_error(error.status_code, headers)
        errors.append(error)
    calls: List[int] = []

    def attempt(number: int) -> str:
        calls.append(number)
        if number <= len(errors):
            raise errors[number - 1]
        return "ok"

    start = fake.now
    deadline = start + config.backoff.max_elapsed_time / 1000
    try:
        result = call_with_retries(attempt, config, clock=fake.clock, sleep=fake.sleep, random=lambda: rand)
    except MinipubError as raised:
        assert raised is errors[len(calls) - 1]  # the last error, unchanged
        result = None
    else:
        assert result == "ok"
        assert len(calls) == len(errors) + 1
    assert calls == list(range(1, len(calls) + 1))
    assert len(fake.sleeps) == len(calls) - 1
    if config.strategy == "none":
        assert calls == [1]
    if config.max_attempts is not None:
        assert len(calls) <= config.max_attempts
    assert fake.now <= deadline + 1e-9  # never sleeps past max_elapsed_time
    for index, slept in enumerate(fake.sleeps):
        error = errors[index]
        assert retryable(error, config)
        hinted = retry_after_seconds(error.headers) if isinstance(error, APIError) else None
        if hinted is not None:
            assert slept == pytest.approx(min(hinted, RETRY_AFTER_CAP))
        else:
            assert 0 <= slept <= backoff_ceiling(config.backoff, index + 1) + 1e-12
            assert slept == pytest.approx(backoff_ceiling(config.backoff, index + 1) * rand)
    if result is None and len(calls) <= len(errors):
        last = errors[len(calls) - 1]
        stopped_by_rule = (
            not retryable(last, config)
            or config.strategy == "none"
            or (config.max_attempts is not None and len(calls) >= config.max_attempts)
        )
        if not stopped_by_rule:  # then it must have been the deadline
            hinted = retry_after_seconds(last.headers) if isinstance(last, APIError) else None
            wait = min(hinted, RETRY_AFTER_CAP) if hinted is not None else backoff_ceiling(config.backoff, len(calls)) * rand
            assert fake.now + wait > deadline


@given(st.integers(100, 599))
def test_only_listed_statuses_are_retried(status: int) -> None:
    fake = FakeTime()
    calls: List[int] = []

    def attempt(number: int) -> str:
        calls.append(number)
        if number == 1:
            raise api_error(status)
        return "ok"

    try:
        call_with_retries(attempt, DEFAULT_RETRY_CONFIG, clock=fake.clock, sleep=fake.sleep, random=lambda: 0.5)
    except APIError as error:
        assert status not in RETRY_STATUSES
        assert error.status_code == status
    else:
        assert status in RETRY_STATUSES
        assert calls == [1, 2]


def test_default_is_three_attempts_within_thirty_seconds() -> None:
    fake = FakeTime()
    calls: List[int] = []

    def attempt(number: int) -> str:
        calls.append(number)
        raise api_error(503)

    with pytest.raises(InternalServerError):
        call_with_retries(attempt, DEFAULT_RETRY_CONFIG, clock=fake.clock, sleep=fake.sleep, random=lambda: 1.0)
    assert calls == [1, 2, 3]
    assert fake.sleeps == [0.5, 1.0]
    assert DEFAULT_RETRY_CONFIG.backoff == BackoffStrategy(500, 8000, 2.0, 30000)


def test_retry_after_past_deadline_ends_retries() -> None:
    fake = FakeTime()
    config = RetryConfig("backoff", BackoffStrategy(500, 8000, 2.0, 30000), True, 5)
    with pytest.raises(APIError):
        call_with_retries(lambda n: (_ for _ in ()).throw(api_error(429, {"retry-after": "120"})), config,
                          clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == []  # capped to 60 s, which is past the 30 s deadline: raise now


def test_retry_after_is_capped_at_sixty_seconds() -> None:
    fake = FakeTime()
    config = RetryConfig("backoff", BackoffStrategy(500, 8000, 2.0, 300_000), True, 2)
    outcomes = iter([api_error(503, {"retry-after": "3600"})])

    def attempt(number: int) -> str:
        for error in outcomes:
            raise error
        return "ok"

    assert call_with_retries(attempt, config, clock=fake.clock, sleep=fake.sleep) == "ok"
    assert fake.sleeps == [60.0]


def test_connection_errors_follow_the_flag() -> None:
    for flag, expected_calls in ((True, 2), (False, 1)):
        fake = FakeTime()
        calls: List[int] = []

        def attempt(number: int) -> str:
            calls.append(number)
            if number == 1:
                raise ConnectError("refused")
            return "ok"

        config = RetryConfig("backoff", BackoffStrategy(1, 50, 1.1, 100), flag)
        try:
            call_with_retries(attempt, config, clock=fake.clock, sleep=fake.sleep)
        except ConnectError:
            pass
        assert len(calls) == expected_calls


def test_budget_stops_retry_storms_and_refills() -> None:
    budget = RetryBudget(capacity=2, refill=0.5)
    fake = FakeTime()
    calls: List[int] = []

    def failing(number: int) -> str:
        calls.append(number)
        raise api_error(503)

    config = RetryConfig("backoff", BackoffStrategy(1, 10, 2.0, 60_000), True, 10)
    with pytest.raises(InternalServerError):
        call_with_retries(failing, config, budget=budget, clock=fake.clock, sleep=fake.sleep)
    assert len(calls) == 3  # two retries spent the budget
    calls.clear()
    with pytest.raises(InternalServerError):
        call_with_retries(failing, config, budget=budget, clock=fake.clock, sleep=fake.sleep)
    assert len(calls) == 1  # empty: no retry at all
    for _ in range(2):
        call_with_retries(lambda n: "ok", config, budget=budget, clock=fake.clock, sleep=fake.sleep)
    assert budget.tokens == pytest.approx(1.0)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert retry_after_seconds({"retry-after": "garbage"}) is None
    assert retry_after_seconds({}) is None


def test_sdk_compatible_constructors() -> None:
    config = UtilsRetryConfig("backoff", UtilsBackoff(1, 50, 1.1, 100), False)
    assert config.backoff.max_interval == 50 and config.retry_connection_errors is False
    assert config.max_attempts is None
    assert RetryConfig("none").strategy == "none"
    with pytest.raises(AttributeError):
        config.strategy = "none"  # type: ignore[misc]
    for bad in (lambda: RetryConfig("exponential"), lambda: BackoffStrategy(-1, 5, 2, 5),
                lambda: RetryConfig("backoff", max_attempts=0), lambda: BackoffStrategy(1, 5, 0.5, 5)):
        with pytest.raises(ValueError):
            bad()


def test_non_retryable_error_is_raised_at_once() -> None:
    fake = FakeTime()
    with pytest.raises(BadRequestError):
        call_with_retries(lambda n: (_ for _ in ()).throw(api_error(422)), DEFAULT_RETRY_CONFIG,
                          clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == []
