"""Every ``minipub.errors`` class the real Outpost can produce, through every way of publishing.

One table of cases (how the failure is made, the class, the status, the message, the CLI's exit
code) is run through the SDK, the one-liner, both async forms, the ``Publisher`` (its ``on_error``)
and ``minipub publish``. Each publish makes exactly one attempt (retries off), so the class is the
first answer's, and a fault proxy in front of Outpost counts the attempts that left the client.
Then the successes that look like failures (a 202 duplicate), 409 (the same id still processing),
and the other commands: ``bulk``, ``outbox``, ``ping``, ``demo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Type

import pytest

import minipub
from minipub import SDK, Publisher, RetryConfig
from minipub.errors import (
    APIError,
    BadRequestError,
    ConnectError,
    ConnectionLostError,
    InternalServerError,
    MinipubError,
    NotFoundError,
    TLSError,
    TransportTimeout,
    UnauthorizedError,
    ValidationError,
)

from ..cli_support import run_cli
from ..faultproxy import FaultProxy
from .conftest import RealOutpost, Receiving, WebhookReceiver
from .faults import api_port, claim_as_processing, redis_refusing_writes, tenant_jwt

NO_RETRY = RetryConfig("none")
LEAP_SECOND = "2016-12-31T23:59:60Z"  # RFC 3339 allows it; Go's time parser does not


@dataclass(frozen=True)
class Case:
    """One way to fail and what each path must report."""

    expected: Type[MinipubError]
    status: Optional[int]
    message: str  # in str(error), and in the CLI's stderr
    exit_code: int
    route: str = "pass"  # the proxy's action, or "root" (no version path), "closed", "https" (no proxy)
    key: str = "admin"  # "admin", "wrong", "jwt"
    fields: Dict[str, Any] = field(default_factory=dict)
    redis_oom: bool = False
    timeout: float = 5.0
    sent: bool = True  # False: nothing may leave the client


CASES = {
    "wrong key: 401": Case(UnauthorizedError, 401, "the server answered HTTP 401 (no content type)", 3, key="wrong"),
    "tenant JWT: 403": Case(UnauthorizedError, 403, "the server answered HTTP 403 (no content type)", 3, key="jwt"),
    # Outpost's Go parser answers a second 60 with 422 "second out of range": minipub refuses it before sending,
    # so no server-side 422 is left that minipub lets through (Outpost runs here without TOPICS).
    "leap second, refused before sending as Go's parser would": Case(
        ValidationError, None, "has second 60, which Outpost rejects", 2, fields={"time": LEAP_SECOND}, sent=False),
    "base URL without /api/v1: 404": Case(NotFoundError, 404, "the server answered HTTP 404 (text/plain)", 4,
                                          route="root"),
    "Redis refusing writes: 500": Case(InternalServerError, 500, "internal server error", 5, redis_oom=True),
    "connection refused": Case(ConnectError, None, "refused", 6, route="closed"),
    "https to the plain HTTP port": Case(TLSError, None, "TLS", 6, route="https"),
    "acknowledgement lost": Case(ConnectionLostError, None, "", 6, route="lost_ack"),
    "no answer within the timeout": Case(TransportTimeout, None, "", 6, route="stall", timeout=0.4),
    "bad time, refused before sending": Case(ValidationError, None, "time: 'yesterday' is not an RFC 3339 date-time",
                                             2, fields={"time": "yesterday"}, sent=False),
}


@dataclass
class Target:
    url: str
    key: str
    tenant_id: str
    timeout: float
    fields: Dict[str, Any]


@dataclass
class Outcome:
    error: Optional[BaseException] = None
    response: Any = None
    exit_code: Optional[int] = None
    output: str = ""


# -- the paths ------------------------------------------------------------------------------


def _event(target: Target) -> Dict[str, Any]:
    return {"tenant_id": target.tenant_id, "topic": "errors.real", "data": {"n": 1}, **target.fields}


def via_sdk(target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    with SDK(target.key, server_url=target.url, timeout_ms=target.timeout * 1000) as sdk:
        return Outcome(response=sdk.publish.event(**_event(target), retries=NO_RETRY))


def via_event_async(target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    async def main() -> Any:
        with SDK(target.key, server_url=target.url, timeout_ms=target.timeout * 1000) as sdk:
            return await sdk.publish.event_async(**_event(target), retries=NO_RETRY)

    return Outcome(response=asyncio.run(main()))


def _environment(target: Target, monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
    monkeypatch.setenv("OUTPOST_API_KEY", target.key)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", target.url)
    minipub.reset_default_client()
    event = _event(target)
    return {"topic": event.pop("topic"), "data": event.pop("data"), "retries": NO_RETRY,
            "timeout_ms": target.timeout * 1000, **event}


def via_one_liner(target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    arguments = _environment(target, monkeypatch)
    try:
        return Outcome(response=minipub.publish(arguments.pop("topic"), arguments.pop("data"), **arguments))
    finally:
        minipub.reset_default_client()


def via_one_liner_async(target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    arguments = _environment(target, monkeypatch)
    try:
        return Outcome(response=asyncio.run(
            minipub.publish_async(arguments.pop("topic"), arguments.pop("data"), **arguments)))
    finally:
        minipub.reset_default_client()


def via_publisher(target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """The error reaches ``on_error`` (no outbox: one failed attempt with retries off is final)."""
    failures: List[BaseException] = []
    with SDK(target.key, server_url=target.url, timeout_ms=target.timeout * 1000) as sdk, \
            Publisher(sdk, workers=1, on_error=lambda event, error: failures.append(error)) as publisher:
        publisher.submit(**_event(target), retries=NO_RETRY)
        assert publisher.flush(timeout=30)
        stats = publisher.stats()
    if failures:
        [error] = failures
        assert stats.failed == 1 and stats.delivered == 0
        return Outcome(error=error)
    assert stats.delivered == 1
    return Outcome(response=stats)


def via_cli(target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    event = _event(target)
    args = ["publish", event["topic"], "--tenant", event["tenant_id"], "--data", json.dumps(event["data"]),
            "--max-attempts", "1", "--timeout", str(target.timeout)]
    if "time" in event:
        args += ["--time", event["time"]]
    if "id" in event:
        args += ["--id", event["id"], "--json"]
    result = run_cli(args, OUTPOST_API_KEY=target.key, OUTPOST_API_BASE_URL=target.url)
    return Outcome(exit_code=result.returncode, output=result.stdout + result.stderr,
                   response=result.stdout if result.returncode == 0 else None)


PATHS: Dict[str, Callable[[Target, pytest.MonkeyPatch], Outcome]] = {
    "sdk": via_sdk, "event_async": via_event_async, "one-liner": via_one_liner,
    "one-liner async": via_one_liner_async, "Publisher": via_publisher, "cli publish": via_cli,
}


def run_path(path: str, target: Target, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    try:
        return PATHS[path](target, monkeypatch)
    except MinipubError as error:
        return Outcome(error=error)


# -- the table ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _route(server: RealOutpost, case: Case) -> Iterator[Optional[FaultProxy]]:
    """The base URL for the case (through a counting fault proxy where one fits) and the proxy."""
    if case.route == "closed":
        yield None
        return
    if case.route == "https":
        yield None
        return
    action = case.route if case.route in ("lost_ack", "stall") else "pass"
    with FaultProxy(api_port(server), lambda connection: lambda request: action, stall_seconds=3) as proxy:
        yield proxy


def _url(server: RealOutpost, case: Case, proxy: Optional[FaultProxy]) -> str:
    if case.route == "closed":
        return f"http://127.0.0.1:{_closed_port()}/api/v1"
    if case.route == "https":
        return server.base_url.replace("http://", "https://")
    assert proxy is not None
    url = proxy.url(server.base_url)
    return url.rsplit("/api/", 1)[0] if case.route == "root" else url


def _key(server: RealOutpost, case: Case, tenant_id: str) -> str:
    return {"admin": server.api_key, "wrong": "wrong-" + uuid.uuid4().hex,
            "jwt": tenant_jwt(server, tenant_id) if case.key == "jwt" else ""}[case.key]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", list(CASES))
def test_each_error_through_each_path(real_outpost: RealOutpost, receiving: Receiving, name: str, path: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    with _route(real_outpost, case) as proxy:
        target = Target(_url(real_outpost, case, proxy), _key(real_outpost, case, receiving.tenant_id),
                        receiving.tenant_id, case.timeout, dict(case.fields))
        with redis_refusing_writes(real_outpost) if case.redis_oom else contextlib.nullcontext():
            outcome = run_path(path, target, monkeypatch)
        attempts = proxy.requests if proxy else None
    if proxy is not None:
        assert attempts == (1 if case.sent else 0), f"{attempts} attempt(s) reached the proxy"
    secrets = [real_outpost.api_key, target.key]
    if path == "cli publish":
        assert outcome.exit_code == case.exit_code, outcome.output
        assert f"{case.expected.__name__}: " in outcome.output and case.message in outcome.output, outcome.output
        assert not any(secret in outcome.output for secret in secrets)
        return
    error = outcome.error
    assert type(error) is case.expected, f"{path} gave {error!r} (response {outcome.response!r})"
    assert case.message in str(error), str(error)
    assert not any(secret in text for secret in secrets for text in (str(error), repr(error)))
    if case.status is not None:
        assert isinstance(error, APIError) and error.status_code == case.status
        if case.status in (401, 403):
            assert error.body == "" and error.data is None  # the real server answers with an empty body
        if case.status == 404:
            assert error.body == "404 page not found\n"  # Outpost's text/plain answer, newline included
        if case.status in (422, 500):
            assert isinstance(error.data, dict) and error.data["status"] == case.status


def test_the_table_covers_every_error_class_the_real_server_can_produce() -> None:
    # Not produced by Outpost itself: 429 (RateLimitedError) and 408/504 (TimeoutErrorT) come from
    # gateways; ProtocolError needs a server that is not HTTP. Everything else is in the table.
    # BadRequestError: every 422 this Outpost can give is refused by minipub before sending (below, the
    # real 422 answers are classified as BadRequestError all the same).
    produced = {case.expected for case in CASES.values()} | {APIError}  # APIError: 409, below
    assert produced == {UnauthorizedError, NotFoundError, InternalServerError, ConnectError,
                        TLSError, ConnectionLostError, TransportTimeout, ValidationError, APIError}


@pytest.mark.parametrize("body", [
    b'{"tenant_id":"t","data":{},"time":"2024-01-15T10:30:60Z"}',  # Go: second out of range
    b'{"data":{}}',  # validation error: tenant_id is required
    b'{"tenant_id":1,"data":{}}',  # invalid JSON (a type mismatch)
    b'{"tenant_id":"t","data":[1]}',  # data must be a valid JSON object
], ids=["leap second", "no tenant", "type mismatch", "data not an object"])
def test_the_real_servers_422_answers_are_bad_request_errors(real_outpost: RealOutpost, body: bytes) -> None:
    """minipub never sends these (its validation refuses them first); their answers still classify right."""
    from minipub.response import error_from_response
    from minipub.transports.base import HTTPResponse

    status, headers, answer = real_outpost.request("POST", "/publish", raw=body)
    assert status == 422
    error = error_from_response(HTTPResponse(status, headers, answer))
    assert isinstance(error, BadRequestError) and error.status_code == 422
    assert isinstance(error.data, dict) and error.data["status"] == 422 and error.data["message"] in str(error)


# -- what is not an error: a 202 duplicate --------------------------------------------------


@pytest.mark.parametrize("path", list(PATHS))
def test_the_same_id_twice_is_a_202_duplicate_and_delivered_once(real_outpost: RealOutpost, receiving: Receiving,
                                                                path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    event_id = f"dup-{uuid.uuid4()}"
    target = Target(real_outpost.base_url, real_outpost.api_key, receiving.tenant_id, 5.0, {"id": event_id})
    first, second = run_path(path, target, monkeypatch), run_path(path, target, monkeypatch)
    assert first.error is None and second.error is None, (first, second)
    if path == "cli publish":
        assert first.exit_code == second.exit_code == 0
        assert json.loads(first.response)["duplicate"] is False and json.loads(second.response)["duplicate"] is True
        plain = run_cli(["publish", "errors.real", "--tenant", receiving.tenant_id, "--data", "{}", "--id", event_id],
                        OUTPOST_API_KEY=real_outpost.api_key, OUTPOST_API_BASE_URL=real_outpost.base_url)
        assert plain.returncode == 0 and plain.stdout.strip() == event_id, plain.stderr
        assert "duplicate: Outpost had already accepted this event id" in plain.stderr
    elif path == "Publisher":
        assert first.response.duplicates == 0 and second.response.duplicates == 1
    else:
        assert (first.response.id, first.response.duplicate) == (event_id, False)
        assert (second.response.id, second.response.duplicate) == (event_id, True)
        assert list(second.response.destination_ids) == [receiving.destination_id]
    assert receiving.deliveries.wait_for({event_id}, timeout=20) == set()
    assert receiving.deliveries.by_id[event_id] == 1


# -- 409: the same id still being processed ---------------------------------------------------


def test_an_id_still_processing_is_409_through_every_path_then_accepted_once(
        real_outpost: RealOutpost, receiving: Receiving, monkeypatch: pytest.MonkeyPatch) -> None:
    # A first request that is still running holds the id as "processing" in Redis: a second one
    # waits Outpost's fixed 5 s, finds it still processing and answers 409. The paths run at once
    # (each with its own id), so the test waits those 5 s once.
    ids = {path: f"busy-{uuid.uuid4()}" for path in PATHS}
    claimed_at = time.monotonic()
    for event_id in ids.values():
        claim_as_processing(real_outpost, event_id, seconds=6)
    outcomes: Dict[str, Outcome] = {}
    monkeypatch.setenv("OUTPOST_API_KEY", real_outpost.api_key)  # the one-liners share this environment
    monkeypatch.setenv("OUTPOST_API_BASE_URL", real_outpost.base_url)

    def run(path: str) -> None:
        target = Target(real_outpost.base_url, real_outpost.api_key, receiving.tenant_id, 10.0, {"id": ids[path]})
        outcomes[path] = run_path(path, target, monkeypatch) if "one-liner" not in path else _one_liner(path, target)

    threads = [threading.Thread(target=run, args=(path,)) for path in PATHS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    minipub.reset_default_client()
    for path, outcome in outcomes.items():
        if path == "cli publish":
            assert outcome.exit_code == 4, outcome.output
            assert "APIError: the server answered HTTP 409 (no content type)" in outcome.output
            continue
        assert type(outcome.error) is APIError, (path, outcome)
        assert outcome.error.status_code == 409 and outcome.error.body == ""
    assert len(outcomes) == len(PATHS)
    assert receiving.deliveries.wait_for(set(ids.values()), timeout=0.1) == set(ids.values())  # none delivered
    # Once the claim has expired (the first request "failed"), the same ids are accepted, each once.
    time.sleep(max(0.0, claimed_at + 6.2 - time.monotonic()))
    with SDK(real_outpost.api_key, server_url=real_outpost.base_url) as sdk:
        for event_id in ids.values():
            response = sdk.publish.event(tenant_id=receiving.tenant_id, topic="busy", data={"n": 1}, id=event_id)
            assert not response.duplicate
    assert receiving.deliveries.wait_for(set(ids.values()), timeout=20) == set()
    assert all(receiving.deliveries.by_id[event_id] == 1 for event_id in ids.values())


def _one_liner(path: str, target: Target) -> Outcome:
    """The one-liners from a thread: the environment is already set (monkeypatch is not thread-safe)."""
    event = _event(target)
    try:
        if path == "one-liner":
            return Outcome(response=minipub.publish(event.pop("topic"), event.pop("data"), retries=NO_RETRY, **event))
        return Outcome(response=asyncio.run(
            minipub.publish_async(event.pop("topic"), event.pop("data"), retries=NO_RETRY, **event)))
    except MinipubError as error:
        return Outcome(error=error)


# -- client-side: bad input never reaches the network, and only minipub's errors escape ------------


def _nested(depth: int) -> Dict[str, Any]:
    data: Dict[str, Any] = {}
    for _ in range(depth):
        data = {"a": data}
    return data


UNENCODABLE = {
    "data nested 2,000 deep": {"data": _nested(2000)},
    "an int of 5,000 digits": {"data": {"n": 10 ** 5000}},
    "a lone surrogate in data": {"data": {"s": "\ud800"}},
    "a lone surrogate in a metadata value": {"metadata": {"k": "\udc00"}},
    "a lone surrogate in the tenant id": {"tenant_id": "t\ud800"},
}


@pytest.mark.parametrize("name", list(UNENCODABLE))
def test_input_python_cannot_encode_is_a_validation_error_before_sending(real_outpost: RealOutpost,
                                                                         name: str) -> None:
    fields = {"tenant_id": "t", "topic": "errors.real", "data": {}, **UNENCODABLE[name]}
    with FaultProxy(api_port(real_outpost)) as proxy:
        with SDK(real_outpost.api_key, server_url=proxy.url(real_outpost.base_url)) as sdk:
            with pytest.raises(ValidationError):
                sdk.publish.event(**fields)
            with Publisher(sdk, workers=1) as publisher, pytest.raises(ValidationError):
                publisher.submit(**fields)
        assert proxy.connections == 0


# -- the other commands ---------------------------------------------------------------------------


def test_cli_bulk_rejects_what_outpost_would_refuse_before_sending(
        real_outpost: RealOutpost, receiving: Receiving, tmp_path: Path) -> None:
    good = {"tenant_id": receiving.tenant_id, "topic": "bulk.errors", "data": {"n": 1}, "id": f"ok-{uuid.uuid4()}"}
    leap = {"tenant_id": receiving.tenant_id, "topic": "bulk.errors", "data": {"n": 2}, "time": LEAP_SECOND}
    lines = [json.dumps(good), json.dumps(leap), "not json", json.dumps({**good, "id": None, "data": [1]})]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    env = {"OUTPOST_API_KEY": real_outpost.api_key, "OUTPOST_API_BASE_URL": real_outpost.base_url}
    bulk = run_cli(["bulk", "in.ndjson", "--outbox", "out.db", "--progress", "none"], cwd=tmp_path, **env)
    assert bulk.returncode == 1, bulk.stderr
    # Outpost answers a second 60 with 422 "second out of range": minipub refuses the line before sending.
    assert "line 2: ValidationError: time:" in bulk.stderr and "has second 60" in bulk.stderr
    rejects = [json.loads(line) for line in (tmp_path / "in.rejects.ndjson").read_text().splitlines()]
    assert sorted(r["_line"] for r in rejects) == [2, 3, 4]
    assert receiving.deliveries.wait_for({good["id"]}, timeout=20) == set()
    assert receiving.deliveries.count() == 1  # nothing else reached Outpost
    listing = run_cli(["outbox", "out.db"], cwd=tmp_path)
    assert listing.returncode == 0 and "0 pending" in listing.stdout, listing.stdout
    wrong = run_cli(["bulk", "in.ndjson", "--progress", "none"], cwd=tmp_path, OUTPOST_API_KEY="wrong-key",
                    OUTPOST_API_BASE_URL=real_outpost.base_url)
    assert "UnauthorizedError: the server answered HTTP 401" in wrong.stderr and "wrong-key" not in wrong.stderr
    # A wrong key is the configuration's fault, not the lines': the run stops at once with exit 3 and
    # nothing is written as a reject for it.
    assert wrong.returncode == 3, wrong.stderr
    unreachable = run_cli(["bulk", "in.ndjson", "--progress", "none", "--max-time", "0.5"], cwd=tmp_path,
                          OUTPOST_API_KEY=real_outpost.api_key,
                          OUTPOST_API_BASE_URL=f"http://127.0.0.1:{_closed_port()}/api/v1")
    assert unreachable.returncode == 6, unreachable.stderr


PING = {
    # name: (base URL maker, key maker, exit code, text in the output)
    "reachable, key accepted": (lambda s: s.base_url, lambda s: s.api_key, 0, "ok: reachable and the key is accepted"),
    "wrong key": (lambda s: s.base_url, lambda s: "wrong-key", 3, "the key was rejected"),
    "no version path": (lambda s: s.root_url, lambda s: s.api_key, 4, "no Outpost API at this base URL"),
    "nothing listening": (lambda s: f"http://127.0.0.1:{_closed_port()}/api/v1", lambda s: s.api_key, 6, "refused"),
}


@pytest.mark.parametrize("name", list(PING))
def test_cli_ping(real_outpost: RealOutpost, name: str) -> None:
    url, key, code, text = PING[name]
    result = run_cli(["ping"], OUTPOST_API_KEY=key(real_outpost), OUTPOST_API_BASE_URL=url(real_outpost))
    assert result.returncode == code, result.stdout + result.stderr
    assert text in result.stdout + result.stderr
    assert real_outpost.api_key not in result.stdout + result.stderr


def test_cli_demo_with_a_key_publishes_to_the_real_server(real_outpost: RealOutpost) -> None:
    receiver = WebhookReceiver()
    tenant = real_outpost.create_tenant("demo-tenant")  # the tenant the demo publishes to
    destination = real_outpost.create_webhook(tenant, receiver.url)
    try:
        env = {"OUTPOST_API_KEY": real_outpost.api_key, "OUTPOST_API_BASE_URL": real_outpost.base_url}
        demo = run_cli(["demo"], **env)
        assert demo.returncode == 0, demo.stderr
        answer = json.loads(demo.stdout)
        assert answer["duplicate"] is False and destination in answer["destination_ids"]
        assert receiver.deliveries.wait_for({answer["id"]}, timeout=20) == set()
        assert receiver.deliveries.by_id[answer["id"]] == 1
        assert json.loads(receiver.deliveries.bodies[answer["id"]]) == {"user_id": "usr_123", "plan": "pro"}
        refused = run_cli(["demo"], OUTPOST_API_KEY="wrong-key", OUTPOST_API_BASE_URL=real_outpost.base_url)
        assert refused.returncode == 3 and "UnauthorizedError" in refused.stderr, refused.stderr
    finally:
        status, _, body = real_outpost.request("DELETE", f"/tenants/{tenant}/destinations/{destination}")
        receiver.close()
        assert status == 200, (status, body)
