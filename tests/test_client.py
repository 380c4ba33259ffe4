"""The client end to end against the embedded server: retries, ids, validation, secrets."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import traceback
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List

import pytest

import minipub
from minipub import SDK, BackoffStrategy, PublishResponse, RetryConfig
from minipub.errors import (
    APIError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    InternalServerError,
    RateLimitedError,
    TransportTimeout,
    UnauthorizedError,
    ValidationError,
)
from minipub.testing import OutpostServer

from .conftest import API_KEY, NO_RETRY, Sleeps


def publish(sdk: SDK, **overrides: Any) -> PublishResponse:
    args: Dict[str, Any] = {"tenant_id": "acme", "topic": "user.created", "data": {"user_id": "u1"}}
    args.update(overrides)
    return sdk.publish.event(**args)


def test_publish_returns_the_servers_answer(sdk: SDK, server: OutpostServer) -> None:
    response = publish(sdk, metadata={"source": "crm"}, destination_id="des_embedded", eligible_for_retry=False,
                       time=datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc))
    assert response == PublishResponse(response.id, False, ("des_embedded",))
    (event,) = server.events
    assert event["id"] == response.id
    assert event["tenant_id"] == "acme" and event["topic"] == "user.created"
    assert event["metadata"] == {"source": "crm"} and event["eligible_for_retry"] is False
    assert event["time"] == "2024-01-15T10:30:00+00:00"
    with pytest.raises(AttributeError):
        response.id = "x"  # type: ignore[misc]


def test_headers_sent(sdk: SDK, server: OutpostServer) -> None:
    publish(sdk, http_headers={"X-Trace": "abc"})
    (request,) = server.requests
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith(f"minipub/{minipub.__version__}")
    assert request.headers["x-trace"] == "abc"
    assert request.headers["authorization"] == "Bearer ***"  # the server keeps it redacted


def test_503_then_429_then_lost_ack_succeeds_once_with_one_id(server: OutpostServer, sleeps: Sleeps) -> None:
    server.fail_next(503)
    server.fail_next(429, headers={"Retry-After": "2"})
    server.drop_next(accepted=True)
    config = RetryConfig("backoff", BackoffStrategy(10, 100, 2.0, 30_000), True, max_attempts=5)
    with SDK(API_KEY, server_url=server.url, retry_config=config, sleep=sleeps) as sdk:
        response = publish(sdk)
    ids = {r.json["id"] for r in server.requests}
    assert len(server.requests) == 4 and ids == {response.id}
    assert len(server.events) == 1 and server.event_count(response.id) == 1
    assert response.duplicate is True  # the lost acknowledgement: Outpost had it already
    # The drop hit a reused keep-alive connection: the transport sent it again once on a
    # fresh one (safe: same id), so the loop slept only twice.
    assert len(sleeps.calls) == 2 and 0 <= sleeps.calls[0] <= 0.01
    assert sleeps.calls[1] == 2.0  # Retry-After honoured


def test_given_id_is_kept_and_deduplicated(sdk: SDK, server: OutpostServer) -> None:
    first = publish(sdk, id="evt_fixed")
    second = publish(sdk, id="evt_fixed")
    assert (first.id, first.duplicate, second.id, second.duplicate) == ("evt_fixed", False, "evt_fixed", True)
    assert server.event_count("evt_fixed") == 1


def test_409_while_processing_is_retried_to_a_duplicate(server: OutpostServer) -> None:
    server.delay_next(1.5)
    with SDK(API_KEY, server_url=server.url) as slow, SDK(API_KEY, server_url=server.url) as fast:
        thread = threading.Thread(target=publish, args=(slow,), kwargs={"id": "evt_busy"})
        thread.start()
        while not server.requests:
            threading.Event().wait(0.01)
        response = publish(fast, id="evt_busy")  # 409 after 0.5 s, retried until the first finished
        thread.join(10)
    assert response.duplicate is True
    assert server.event_count("evt_busy") == 1


def test_retries_exhausted_raise_the_last_error(sdk: SDK, server: OutpostServer, sleeps: Sleeps) -> None:
    server.fail_next(503, times=2)
    server.fail_next(429)
    with pytest.raises(RateLimitedError):
        publish(sdk)
    assert len(server.requests) == 3 and len(sleeps.calls) == 2 and server.events == []


def test_non_retryable_status_is_not_retried(sdk: SDK, server: OutpostServer) -> None:
    server.fail_next(422, body=b'{"status":422,"message":"validation error","data":["topic is required"]}',
                     headers={"Content-Type": "application/json"})
    with pytest.raises(BadRequestError) as info:
        publish(sdk)
    assert info.value.data["data"] == ["topic is required"]
    assert len(server.requests) == 1


def test_per_call_retries_beat_the_clients(server: OutpostServer, sleeps: Sleeps) -> None:
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, retry_config=NO_RETRY) as sdk:
        server.fail_next(503)
        with pytest.raises(InternalServerError):
            publish(sdk)
        server.fail_next(503)
        assert publish(sdk, retries=RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 1000), True, 3)).id


def test_wrong_key_is_unauthorized_and_not_retried(server: OutpostServer, sleeps: Sleeps) -> None:
    with SDK("wrong-key", server_url=server.url, sleep=sleeps) as sdk, pytest.raises(UnauthorizedError) as info:
        publish(sdk)
    assert info.value.status_code == 401 and sleeps.calls == []


class RotatingKey:
    def __init__(self, keys: List[str]) -> None:
        self.keys = keys
        self.refreshes = 0

    def api_key(self) -> str:
        return self.keys[0]

    def refresh(self) -> bool:
        self.refreshes += 1
        if len(self.keys) > 1:
            self.keys.pop(0)
            return True
        return False


def test_auth_provider_refreshes_once_on_401(server: OutpostServer) -> None:
    provider = RotatingKey(["old-key", API_KEY])
    with SDK(server_url=server.url, auth=provider, retry_config=NO_RETRY) as sdk:
        assert publish(sdk).id
    assert provider.refreshes == 1 and len(server.requests) == 2
    stuck = RotatingKey(["old-key"])
    with SDK(server_url=server.url, auth=stuck) as sdk, pytest.raises(UnauthorizedError):
        publish(sdk)
    assert stuck.refreshes == 1


def test_connection_reuse(sdk: SDK, server: OutpostServer) -> None:
    for _ in range(5):
        publish(sdk)
    assert len({r.client_port for r in server.requests}) == 1


def test_stale_keepalive_connection_is_sent_again_on_a_fresh_one() -> None:
    """A raw server answers one request per connection with keep-alive, then closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: List[int] = []

    def serve() -> None:
        listener.settimeout(10)
        for _ in range(2):  # the first connection goes stale; the second serves the re-send
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(1)
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
                while len(body) < length:
                    body += conn.recv(65536)
                event_id = json.loads(body)["id"]
                payload = json.dumps({"id": event_id, "duplicate": False, "destination_ids": []}).encode()
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                conn.shutdown(socket.SHUT_RDWR)  # closed while the client keeps it idle

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with SDK(API_KEY, server_url=f"http://127.0.0.1:{port}/api/v1", retry_config=NO_RETRY) as sdk:
            publish(sdk)
            threading.Event().wait(0.1)
            publish(sdk)  # the pooled connection is dead: sent again on a fresh one, no error
    finally:
        listener.close()
        thread.join(5)
    assert len(connections) == 2


def test_timeout_and_connect_errors(sleeps: Sleeps) -> None:
    # Its own server: the delayed request finishes after the client gave up, and must not land elsewhere.
    with OutpostServer(api_key=API_KEY) as slow:
        slow.delay_next(1.0)
        with SDK(API_KEY, server_url=slow.url, retry_config=NO_RETRY, timeout_ms=200) as sdk, \
                pytest.raises(TransportTimeout):
            publish(sdk)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with SDK(API_KEY, server_url=f"http://127.0.0.1:{port}", sleep=sleeps) as sdk, pytest.raises(ConnectError):
        publish(sdk)
    assert len(sleeps.calls) == 2  # connection errors are retried by default


def test_redirect_is_not_followed(sdk: SDK, server: OutpostServer) -> None:
    server.fail_next(307, headers={"Location": "http://127.0.0.1:9/steal"})
    with pytest.raises(APIError) as info:
        publish(sdk)
    assert info.value.status_code == 307 and len(server.requests) == 1


# -- validation before any network call -------------------------------------------------

BAD_INPUTS = [
    ({"tenant_id": ""}, "tenant_id"),
    ({"tenant_id": 5}, "tenant_id"),
    ({"topic": None}, "topic"),
    ({"topic": "  "}, "topic"),
    ({"eligible_for_retry": 1}, "eligible_for_retry"),
    ({"eligible_for_retry": "yes"}, "eligible_for_retry"),
    ({"destination_id": ""}, "destination_id"),
    ({"destination_id": 3}, "destination_id"),
    ({"id": ""}, "id"),
    ({"id": 42}, "id"),
    ({"metadata": {"n": 1}}, "metadata"),
    ({"metadata": {1: "x"}}, "metadata"),
    ({"metadata": ["a"]}, "metadata"),
    ({"time": "yesterday"}, "time"),
    ({"time": "2024-13-01T00:00:00Z"}, "time"),
    ({"time": "2024-01-15T10:30:00"}, "time"),
    ({"time": datetime(2024, 1, 1)}, "time"),
    ({"time": 1700000000}, "time"),
    ({"data": None}, "data"),
    ({"data": [1, 2]}, "data"),
    ({"data": "text"}, "data"),
    ({"data": {"x": float("nan")}}, 'data["x"]'),
    ({"data": {"x": object()}}, 'data["x"]'),
    ({"data": {"x": {2: 1}}}, 'data["x"]'),
    ({"http_headers": {"X-Bad": "a\r\nInjected: 1"}}, "http_headers"),
    ({"http_headers": {"Bad Name": "x"}}, "http_headers"),
    ({"http_headers": {"Authorization": "Bearer other"}}, "http_headers"),
    ({"retries": "none"}, "retries"),
    ({"timeout_ms": 0}, "timeout_ms"),
    ({"timeout_ms": "fast"}, "timeout_ms"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_INPUTS)
def test_bad_input_fails_before_any_request(sdk: SDK, server: OutpostServer, overrides: Dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        publish(sdk, **overrides)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)
    assert server.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [{"admin_api_key": ""}, {"admin_api_key": "two words"}, {"server_url": "ftp://host"},
     {"server_url": "https://user:pw@host"}, {"server_url": "not a url"}, {"timeout_ms": -1},
     {"transport": "carrier-pigeon"}, {"retry_config": {"strategy": "none"}}],
)
def test_bad_configuration(kwargs: Dict[str, Any]) -> None:
    kwargs.setdefault("admin_api_key", API_KEY)
    with pytest.raises(ConfigurationError if "retry_config" not in kwargs and "timeout_ms" not in kwargs
                       else ValidationError):
        SDK(**kwargs)


def test_rfc3339_strings_are_accepted(sdk: SDK, server: OutpostServer) -> None:
    publish(sdk, time="2024-01-15t10:30:00.123z")
    publish(sdk, time="2024-01-15T10:30:00+05:30")
    assert [e["time"] for e in server.events] == ["2024-01-15T10:30:00.123Z", "2024-01-15T10:30:00+05:30"]


# -- the environment and the one-liner ---------------------------------------------------


@pytest.fixture
def env_server(server: OutpostServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OutpostServer]:
    minipub.reset_default_client()
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", server.url + "/")
    yield server
    minipub.reset_default_client()


def test_one_liner_reads_the_environment(env_server: OutpostServer) -> None:
    response = minipub.publish("user.created", {"user_id": 1}, tenant_id="acme", metadata={"a": "b"})
    assert env_server.events[0]["id"] == response.id
    assert minipub.default_client() is minipub.default_client()


def test_default_client_is_created_once_across_threads(env_server: OutpostServer) -> None:
    seen: List[int] = []
    threads = [threading.Thread(target=lambda: seen.append(id(minipub.default_client()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1


def test_missing_key_names_the_variable() -> None:
    minipub.reset_default_client()
    with pytest.raises(ConfigurationError, match="OUTPOST_API_KEY"):
        minipub.publish("t", {}, tenant_id="acme")


def test_default_base_url_is_the_managed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    with SDK() as sdk:
        assert sdk.server_url == "https://api.outpost.hookdeck.com/2025-07-01"


# -- secrets ------------------------------------------------------------------------------


def test_key_never_shows(server: OutpostServer, sleeps: Sleeps, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="minipub")
    server.fail_next(503, body=f"upstream said {API_KEY}")
    server.fail_next(401, headers={"Content-Type": "application/json"},
                     body=json.dumps({"message": f"key {API_KEY} is wrong"}))
    texts: List[str] = []
    with SDK(API_KEY, server_url=server.url, sleep=sleeps) as sdk:
        texts += [repr(sdk), str(sdk), repr(sdk.publish), repr(sdk.auth)]
        try:
            publish(sdk)
        except UnauthorizedError as error:
            texts += [str(error), repr(error), error.body, error.message, str(error.data), str(error.headers)]
            texts.append("".join(traceback.format_exception(type(error), error, error.__traceback__)))
            buffer = io.StringIO()
            traceback.print_exc(file=buffer)
            texts.append(buffer.getvalue())
        else:
            pytest.fail("expected a 401")
    texts.append(caplog.text)
    assert "sending" in caplog.text and "retrying" in caplog.text  # DEBUG and INFO lines were written
    for text in texts:
        assert API_KEY not in text


@pytest.mark.parametrize("transport", ["http.client", "urllib"])
def test_explicit_proxy_reaches_every_builtin_transport(
    transport: str, server: OutpostServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SDK(proxy=None) means direct even when the environment names a (dead) proxy."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with SDK(API_KEY, server_url=server.url, transport=transport, proxy=None, retry_config=NO_RETRY) as sdk:
        assert publish(sdk).id


@pytest.mark.parametrize("transport", ["lean", "http.client", "urllib"])
@pytest.mark.parametrize("field, value", [("http_headers", {"X-Trace": "\u20ac"}), ("http_headers", {"X-T": "a\x1b"}),
                                          ("tenant_id", "t\udc80"), ("data", {"k": [{"deep": "\ud800"}]}),
                                          ("time", datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=86399))))])
def test_bad_input_fails_naming_the_field_before_any_request(server: OutpostServer, transport: str, field: str,
                                                             value: Any) -> None:
    with SDK(API_KEY, server_url=server.url, retry_config=NO_RETRY, transport=transport) as sdk:
        try:
            publish(sdk, **{field: value})
        except ValidationError as error:
            assert str(error).startswith(field)
        else:  # a sub-minute offset is not an error: the same instant, sent in UTC
            assert field == "time" and server.events[0]["time"] == "2023-12-31T00:00:01+00:00"
            return
    assert server.requests == []


# -- "off" is None: no retry budget, no deadline ---------------------------------------------------


def test_no_budget_lets_every_retry_the_policy_allows(server: OutpostServer, sleeps: Sleeps) -> None:
    """With the default budget (10 tokens) a storm of 503s stops early; with ``retry_budget=None`` only
    ``max_attempts`` stops it."""
    config = RetryConfig("backoff", BackoffStrategy(1, 1, 1.0, 60_000), True, max_attempts=15)
    for budget, attempts in ((minipub.retry.PER_CLIENT_BUDGET, 11), (None, 15)):
        server.clear()
        server.fail_next(503, times=15)
        with SDK(API_KEY, server_url=server.url, retry_config=config, retry_budget=budget, sleep=sleeps) as sdk:
            assert (sdk.retry_budget is None) is (budget is None)
            with pytest.raises(minipub.InternalServerError):
                publish(sdk)
        assert len(server.requests) == attempts


def test_no_deadline_retries_past_the_default_thirty_seconds(server: OutpostServer) -> None:
    """``max_elapsed_time=None``: a clock 40 s on between attempts still retries (30 s would stop it)."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += 40.0

    for elapsed, succeeds in ((30_000, False), (None, True)):
        server.clear()
        server.fail_next(503, times=2)
        config = RetryConfig("backoff", BackoffStrategy(1, 1, 1.0, elapsed), True, max_attempts=3)
        with SDK(API_KEY, server_url=server.url, retry_config=config, clock=lambda: now[0], sleep=sleep) as sdk:
            if succeeds:
                assert publish(sdk).id
            else:
                with pytest.raises(minipub.InternalServerError):
                    publish(sdk)
