"""The retry loop's schedule, driven by hypothesis with a fake clock and sleep."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub import SDK, Publisher
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
    RetryState,
    backoff_ceiling,
    call_with_retries,
    retry_after_seconds,
)
from minipub.testing.rawserver import ContractRequest, Peer, RawServer
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


# -- Retry-After: any header value is a delay or ignored ---------------------------------------

header_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255)),  # what a latin-1 decode yields
    st.from_regex(r"\A\s*[0-9]{1,80}(\.[0-9]{0,80})?\s*\Z"),
    st.builds(lambda day, hour, rest: f"Wed, {day} Oct 2015 {hour}:{rest} GMT", st.integers(-10**30, 10**30),
              st.integers(-10**30, 10**30), st.text(max_size=8)),
    st.sampled_from(["\u00b2", "\u0663", "\uff11", "1e400", "inf", "nan", "-1", "1_000", " 5 ", "+3",
                     "Wed, 21 Oct 2015 99999999999:28:00 GMT", "Wed, 21 Oct 99999 07:28:00 GMT",
                     "Wed, 21 Oct 2015 07:28:00 +9999", "\xff\xfe", ""]),
)


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms"]), header_text),
       st.floats(min_value=0, max_value=2e9), st.floats(min_value=0, max_value=3600))
def test_retry_after_never_raises_and_stays_within_the_cap(headers: Dict[str, str], now: float, cap: float) -> None:
    wait = retry_after_seconds(headers, now=now, cap=cap)
    assert wait is None or (isinstance(wait, float) and 0.0 <= wait <= cap)
    default = retry_after_seconds(headers, now=now)
    assert default is None or (isinstance(default, float) and 0.0 <= default <= RETRY_AFTER_CAP)


def test_retry_after_non_ascii_and_huge_values_are_ignored_or_capped() -> None:
    assert retry_after_seconds({"retry-after": "\u00b2"}) is None  # isdigit() is True, float() raised
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 99999999999:28:00 GMT"}) is None
    assert retry_after_seconds({"retry-after-ms": "inf"}) is None
    assert retry_after_seconds({"retry-after": "9" * 40}) == RETRY_AFTER_CAP
    assert retry_after_seconds({"retry-after-ms": "1500.5"}) == 1.5005
    assert retry_after_seconds({"retry-after": "\u0663"}) is None  # an Arabic-Indic 3 is not HTTP


# -- an empty budget: a blocking caller may wait for a token -------------------------------------


def test_waiting_for_the_budget_delays_retries_at_the_paced_rate() -> None:
    budget = RetryBudget(0, 0, wait_rate=20)
    config = RetryConfig("backoff", BackoffStrategy(1, 1, 2.0, 30_000), True, 10)
    calls: List[float] = []

    def flaky(number: int) -> str:
        calls.append(time.monotonic())
        if number < 5:
            raise api_error(503)
        return "ok"

    with pytest.raises(InternalServerError):  # the default: an empty budget ends the retries
        call_with_retries(flaky, config, budget=budget)
    calls.clear()
    assert call_with_retries(flaky, config, budget=budget, wait_for_budget=True) == "ok"
    assert len(calls) == 5
    # four retries, the first paced token at once, then one per 1/20 s
    assert calls[-1] - calls[0] >= 3 / 20 - 0.01


def test_waiting_for_the_budget_ends_at_the_deadline() -> None:
    budget = RetryBudget(0, 0, wait_rate=0)  # no token will ever come
    config = RetryConfig("backoff", BackoffStrategy(1, 1, 2.0, 300), True, 10)
    calls: List[int] = []

    def failing(number: int) -> str:
        calls.append(number)
        raise api_error(503)

    start = time.monotonic()
    with pytest.raises(InternalServerError):
        call_with_retries(failing, config, budget=budget, wait_for_budget=True)
    assert calls == [1]
    assert 0.25 <= time.monotonic() - start <= 0.3 + 2.0


def test_a_success_wakes_a_waiting_retry() -> None:
    budget = RetryBudget(1, 1, wait_rate=0)
    assert budget.spend()
    got: List[Optional[float]] = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(10)))
    waiter.start()
    time.sleep(0.05)
    budget.deposit()
    waiter.join(5)
    assert got and got[0] is not None and got[0] < 5


# -- end to end: a server sending such headers ---------------------------------------------------

HOSTILE_HINTS = [b"Retry-After: \xb2", b"Retry-After: Wed, 21 Oct 2015 99999999999:28:00 GMT",
                 b"retry-after-ms: \xff\xfe1", b"Retry-After: \xd9\xa3"]


def _hinting_server(hints: List[bytes]) -> RawServer:
    """Answers each hint's turn with a 503 carrying it, then 202s (Outpost's body, the event's id)."""
    remaining = list(hints)
    lock = threading.Lock()

    def reply(request: ContractRequest, peer: Peer) -> None:
        with lock:
            hint = remaining.pop(0) if remaining else None
        if hint is not None:
            peer.send(b"HTTP/1.1 503 Unavailable\r\n" + hint + b"\r\nContent-Length: 0\r\n\r\n")
            return
        event_id = json.loads(request.body)["id"]
        body = json.dumps({"id": event_id, "duplicate": False, "destination_ids": ["d"]}).encode()
        peer.respond(202, body, [("Content-Type", "application/json")])

    return RawServer(lambda peer: peer.serve(reply))


@pytest.mark.parametrize("transport", ["lean", "http.client", "urllib"])
def test_hostile_retry_after_headers_are_ignored_end_to_end(transport: str, tmp_path: Path) -> None:
    config = RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 10_000), True, max_attempts=len(HOSTILE_HINTS) + 1)
    with _hinting_server(HOSTILE_HINTS) as server, \
            SDK("k", server_url=server.url("/api/v1"), transport=transport, retry_config=config,
                retry_budget=RetryBudget(100, 1)) as sdk:
        response = sdk.publish.event(topic="t", data={"x": 1}, tenant_id="acme")  # only MinipubError may escape
        assert len(server.requests) == len(HOSTILE_HINTS) + 1 and response.id
    # a Publisher with an outbox: a transient 503 with such a hint is never a dead letter
    config = RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 10_000), True, max_attempts=1)
    with _hinting_server(HOSTILE_HINTS) as server, \
            SDK("k", server_url=server.url("/api/v1"), transport=transport, retry_config=config) as sdk, \
            Publisher(sdk, workers=1, outbox=tmp_path / "o.db", backoff_initial=0.01, backoff_cap=0.02,
                      poll_interval=0.05) as publisher:
        publisher.submit("t", {"x": 2}, tenant_id="acme")
        assert publisher.flush(timeout=20)
        assert publisher.dead_letters() == []
        assert publisher.stats().delivered == 1


def test_retry_state_answers_a_sync_caller_directly_and_an_async_one_awaiting() -> None:
    """``failed`` stays a plain call (a delay or None) for code driving its own loop; the one retry
    loop awaits ``failed_async``, whose wait for a budget token awaits instead of blocking."""
    import asyncio

    config = RetryConfig("backoff", BackoffStrategy(10, 10, 1.0, 2_000), True, max_attempts=3)
    state = RetryState(config)
    first = state.failed(InternalServerError("busy", status_code=503))
    assert isinstance(first, float) and 0 < first <= 0.010
    assert state.failed(InternalServerError("busy", status_code=503)) is not None
    assert state.failed(InternalServerError("busy", status_code=503)) is None  # the third attempt was the last
    naps: List[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        await asyncio.sleep(seconds)

    empty = RetryBudget(capacity=0, refill=0, wait_rate=0)
    waiting = RetryState(config, budget=empty, wait_for_budget=True, token_sleep=nap)
    started = time.monotonic()
    assert asyncio.run(waiting.failed_async(InternalServerError("busy", status_code=503))) is None  # no token by the deadline
    assert 1.9 <= time.monotonic() - started <= 5 and len(naps) >= 20  # it looked every 50 ms, awaiting
