"""Any input and any server behaviour: a publish returns, or raises a MinipubError; nothing else escapes.

Every publish argument is drawn from any Python value hypothesis can build (nested data, lone
surrogates, nan/inf, huge ints, bytes, sets, objects whose methods raise, odd tzinfos), most of the
time close to valid so that the request reaches the server; the server (raw sockets, 127.0.0.1)
plays a hostile behaviour per example: random statuses, bodies and headers, garbage, resets,
closes, stalls. Run through ``minipub.publish``, ``SDK.publish.event``, ``event_async`` and
``Publisher.submit`` on every built-in transport. Bounded: few examples, 300 ms timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import threading
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minipub
from minipub import SDK, BackoffStrategy, Publisher, RetryConfig
from minipub.errors import MinipubError
from minipub.testing.rawserver import ContractRequest, Peer, RawServer

from .conftest import API_KEY, NO_RETRY

TRANSPORTS = ["lean", "http.client", "urllib"]
FAST = RetryConfig("backoff", BackoffStrategy(1, 2, 1.5, 200), max_attempts=3)


# -- hostile objects ---------------------------------------------------------------------------------


class Raises:
    """An object whose every method raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __bool__(self) -> bool:
        raise RuntimeError("bool")

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("iter")


class RaisingMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise KeyError("items")

    def __iter__(self) -> Iterator[Any]:
        raise KeyError("iter")


class OddStr(str):
    def __str__(self) -> Any:
        return 42

    def strip(self, *args: Any) -> Any:
        raise ValueError("strip")


class BadTz(tzinfo):
    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def utcoffset(self, dt: Optional[datetime]) -> Any:
        return self.offset

    def dst(self, dt: Optional[datetime]) -> None:
        return None


class Colour(enum.Enum):
    RED = "red"
    SELF = [1, 2]


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = 1


@dataclasses.dataclass
class Broken:
    x: int = 1

    def __getattribute__(self, name: str) -> Any:
        if name == "x":
            raise AttributeError("x")
        return object.__getattribute__(self, name)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def _cycle() -> Any:
    value: Dict[str, Any] = {}
    value["self"] = value
    return value


surrogates = st.sampled_from(["\ud800", "a\udfffb", "x\udc80"])
weird_text = st.one_of(st.text(max_size=8), surrogates, st.sampled_from(["", " ", "\x00", "\r\n", "\u20ac\u2028"]),
                       st.text(max_size=3).map(OddStr))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(0, 9).map(lambda d: 10 ** 4400 + d), st.floats(),
    weird_text, st.binary(max_size=4), st.decimals(), st.sampled_from([float("nan"), float("inf"), Decimal("NaN")]),
    st.datetimes(), st.datetimes(timezones=st.just(timezone.utc)), st.dates(),
    st.builds(lambda s: datetime(2024, 1, 1, tzinfo=BadTz(timedelta(seconds=s))), st.integers(-200_000, 200_000)),
    st.sampled_from([Colour.RED, Colour.SELF, object, type, len, ...]), st.builds(object), st.builds(Raises),
    st.builds(Broken), st.builds(Point, st.integers()),
    st.integers(400, 3000).map(_nested), st.just(0).map(lambda _: _cycle()),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner), st.sets(st.integers(), max_size=2),
        st.dictionaries(weird_text, inner, max_size=3), st.dictionaries(st.integers(), inner, max_size=2),
        st.builds(Point, inner), st.builds(lambda d: RaisingMapping(d), st.dictionaries(st.text(max_size=2), inner)),
    ),
    max_leaves=6,
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value (the request reaches the server), sometimes anything at all."""
    return st.one_of(valid, valid, valid, anything)


json_data = st.dictionaries(st.text(max_size=5), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8), max_size=4)
arguments = st.fixed_dictionaries({
    "tenant_id": mostly(st.text(min_size=1, max_size=8).filter(str.strip)),
    "topic": mostly(st.sampled_from(["user.created", "a"])),
    "data": mostly(json_data),
    "eligible_for_retry": mostly(st.booleans()),
    "destination_id": mostly(st.none() | st.just("des_1")),
    "metadata": mostly(st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)),
    "id": mostly(st.none() | st.uuids().map(str)),
    "time": mostly(st.none() | st.datetimes(timezones=st.just(timezone.utc)) | st.just("2024-01-15T10:30:00Z")),
    "timeout_ms": mostly(st.none() | st.integers(50, 300)),
    "http_headers": mostly(st.none() | st.dictionaries(st.sampled_from(["X-Trace", "X-A"]), st.text(max_size=5),
                                                        max_size=2)),
})


# -- the hostile server --------------------------------------------------------------------------------

header_values = st.one_of(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=12),
                          st.sampled_from(["\u00b2", "99999999999999999999", "-1", "Fri, 31 Dec 99999 23:59:59 GMT",
                                           "Mon, 01 Jan 2024 99:00:00 GMT", "nan", "1e309", "\u0663"]))
behaviours = st.one_of(
    st.tuples(st.just("respond"), st.integers(100, 599) | st.sampled_from([200, 202, 401, 409, 429, 500, 503]),
              st.lists(st.tuples(st.sampled_from(["Retry-After", "Retry-After-Ms", "Content-Type", "X-Echo",
                                                  "Location"]), header_values), max_size=3),
              st.binary(max_size=64) | st.sampled_from([b'{"id":"x","duplicate":true,"destination_ids":[1]}',
                                                        b'{"message":"' + API_KEY.encode() + b'"}', b"[" * 3000,
                                                        b'{"id":"' + b"\xff" * 3 + b'"}'])),
    st.tuples(st.sampled_from(["reset", "close", "stall", "garbage", "early"]), st.just(0), st.just([]),
              st.binary(min_size=1, max_size=40)),
)


class Hostile:
    """What the server does with the next request (set per example)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.behaviour: Any = ("respond", 202, [], b"{}")

    def handle(self, peer: Peer) -> None:
        while True:
            request = peer.read_request()
            if request is None:
                return
            with self.lock:
                kind, status, headers, body = self.behaviour
            if not self.play(peer, request, kind, status, headers, body):
                return

    def play(self, peer: Peer, request: ContractRequest, kind: str, status: int, headers: List[Any],
             body: bytes) -> bool:
        if kind == "reset":
            peer.reset()
            return False
        if kind == "close":
            return False
        if kind == "stall":
            peer.wait(0.35)
            return False
        if kind == "garbage":
            peer.send(body)
            return False
        if kind == "early":  # an answer, then a second unsolicited one on the same connection
            peer.respond(202, b'{"id":"FORGED"}')
            peer.send(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n")
            return True
        head = [f"HTTP/1.1 {status} Hostile", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
        peer.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return True


@pytest.fixture(scope="module")
def hostile() -> Iterator[Any]:
    script = Hostile()
    with RawServer(script.handle) as server:
        yield script, server


def _only_minipub_errors(call: Any) -> None:
    try:
        call()
    except MinipubError:
        pass


SETTINGS = settings(max_examples=100, deadline=None)


@pytest.fixture(scope="module")
def clients(hostile: Any) -> Iterator[Dict[str, SDK]]:
    _, server = hostile
    made = {name: SDK(API_KEY, server_url=server.url(""), transport=name, timeout_ms=300, retry_config=FAST,
                      sleep=lambda seconds: None) for name in TRANSPORTS}
    yield made
    for sdk in made.values():
        sdk.close()


retries = st.one_of(st.none(), st.just(NO_RETRY), st.just(FAST), anything)


@SETTINGS
@given(args=arguments, behaviour=behaviours, transport=st.sampled_from(TRANSPORTS), retry=retries)
def test_sdk_publish_raises_only_minipub_errors(hostile: Any, clients: Dict[str, SDK], args: Dict[str, Any],
                                                behaviour: Any, transport: str, retry: Any) -> None:
    script, _ = hostile
    script.behaviour = behaviour
    _only_minipub_errors(lambda: clients[transport].publish.event(**args, retries=retry))


@SETTINGS
@given(args=arguments, behaviour=behaviours, transport=st.sampled_from(TRANSPORTS), retry=retries)
def test_event_async_raises_only_minipub_errors(hostile: Any, clients: Dict[str, SDK], args: Dict[str, Any],
                                                behaviour: Any, transport: str, retry: Any) -> None:
    script, _ = hostile
    script.behaviour = behaviour

    async def publish() -> None:
        await clients[transport].publish.event_async(**args, retries=retry)

    _only_minipub_errors(lambda: asyncio.run(publish()))


@SETTINGS
@given(args=arguments, behaviour=behaviours, retry=st.just(NO_RETRY) | anything)
def test_module_publish_raises_only_minipub_errors(hostile: Any, monkeypatch: pytest.MonkeyPatch,
                                                   args: Dict[str, Any], behaviour: Any, retry: Any) -> None:
    script, server = hostile
    script.behaviour = behaviour
    args = {k: v for k, v in args.items() if k != "http_headers"}  # not a minipub.publish argument
    if args["timeout_ms"] is None:  # the default client's is 10 s: a stalling server would cost that
        args["timeout_ms"] = 300
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", server.url(""))
    try:
        _only_minipub_errors(lambda: minipub.publish(args.pop("topic"), args.pop("data"), **args, retries=retry))
    finally:
        minipub.reset_default_client()


@pytest.mark.parametrize("durable", [False, True])
def test_publisher_submit_raises_only_minipub_errors(hostile: Any, tmp_path: Path, durable: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    script, server = hostile
    # The outbox's backoff jitter draws in worker threads: from its own generator, not the one hypothesis watches.
    monkeypatch.setattr("minipub.background.publisher.random", random.Random(0))
    failures: List[BaseException] = []
    # No retries in the background: their jitter would draw from ``random`` while hypothesis generates.
    sdk = SDK(API_KEY, server_url=server.url(""), timeout_ms=300, retry_config=NO_RETRY)
    publisher = Publisher(sdk, workers=2, outbox=tmp_path / "o.db" if durable else None,
                          on_error=lambda event, error: failures.append(error))

    @SETTINGS
    @given(args=arguments, behaviour=behaviours, retry=st.none() | st.just(NO_RETRY) | anything)
    def submit(args: Dict[str, Any], behaviour: Any, retry: Any) -> None:
        script.behaviour = behaviour
        args = {k: v for k, v in args.items()}
        _only_minipub_errors(lambda: publisher.submit(args.pop("topic"), args.pop("data"), **args, retries=retry))

    try:
        submit()
        script.behaviour = ("respond", 422, [], b"{}")  # what is left fails for good, fast
        publisher.flush(10)
    finally:
        publisher.close()
        sdk.close()
    assert all(isinstance(error, MinipubError) for error in failures), failures
