"""Tests for minipub.testing.OutpostServer, over real sockets with http.client."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from minipub.testing import OutpostServer

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
EVENT: dict[str, Any] = {"tenant_id": "t1", "topic": "user.created", "data": {"a": 1}}

Reply = tuple[int, http.client.HTTPMessage, bytes]


@pytest.fixture
def server() -> Iterator[OutpostServer]:
    with OutpostServer(KEY) as srv:
        yield srv


def connect(srv: OutpostServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(srv.host, srv.port, timeout=5)


def call(
    srv: OutpostServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    own = conn is None
    c = connect(srv) if conn is None else conn
    try:
        c.request(method, "/api/v1" + path, body=body, headers=dict(headers or {}))
        resp = c.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        if own:
            c.close()


def publish(
    srv: OutpostServer,
    event: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    raw: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    body = raw if raw is not None else json.dumps(EVENT if event is None else event)
    hdrs = dict(AUTH if headers is None else headers)
    hdrs.setdefault("Content-Type", "application/json")
    data = body.encode() if isinstance(body, str) else body
    return call(srv, "POST", "/publish", data, hdrs, conn)


def publish_json(srv: OutpostServer, event: Any = None) -> tuple[int, Any]:
    status, _, body = publish(srv, event)
    return status, json.loads(body) if body else None


def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# -- accepted / idempotency ---------------------------------------------------


def test_accepted_shape_and_generated_id(server: OutpostServer) -> None:
    status, headers, body = publish(server)
    assert status == 202
    assert headers["Content-Type"] == "application/json"
    reply = json.loads(body)
    assert set(reply) == {"id", "duplicate", "destination_ids"}
    assert isinstance(reply["id"], str) and reply["id"]
    assert reply["duplicate"] is False
    assert reply["destination_ids"] == ["des_embedded"]
    assert server.events == [dict(EVENT, id=reply["id"])]
    assert server.event_count(reply["id"]) == 1
    # an empty id is replaced too, and generated ids differ
    _, second = publish_json(server, dict(EVENT, id=""))
    assert second["id"] and second["id"] != reply["id"]


def test_url_and_repr(server: OutpostServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/api/v1"
    assert server.host == "127.0.0.1"
    assert KEY not in repr(server)


def test_duplicate_detection(server: OutpostServer) -> None:
    event = dict(EVENT, id="evt_1")
    assert publish_json(server, event) == (
        202,
        {"id": "evt_1", "duplicate": False, "destination_ids": ["des_embedded"]},
    )
    assert publish_json(server, event)[1]["duplicate"] is True
    assert server.event_count("evt_1") == 1
    assert len(server.events) == 1
    server.clear()
    assert server.events == [] and server.requests == []
    assert publish_json(server, event)[1]["duplicate"] is False


def test_destination_routing() -> None:
    with OutpostServer(KEY, destinations=("des_a", "des_b")) as srv:
        assert publish_json(srv)[1]["destination_ids"] == ["des_a", "des_b"]
        routed = dict(EVENT, id="e1", destination_id="des_b")
        assert publish_json(srv, routed)[1]["destination_ids"] == ["des_b"]
        # unknown destination: no match, so no deduplication either
        unknown = dict(EVENT, id="e2", destination_id="des_zzz")
        for _ in range(2):
            status, reply = publish_json(srv, unknown)
            assert status == 202
            assert reply == {"id": "e2", "duplicate": False, "destination_ids": []}
        assert srv.event_count("e2") == 1


def test_optional_fields_accepted(server: OutpostServer) -> None:
    event = dict(
        EVENT,
        id=None,
        eligible_for_retry=False,
        time="2024-01-15T10:30:00.123+02:00",
        metadata={"source": "crm"},
    )
    assert publish_json(server, event)[0] == 202
    assert publish_json(server, dict(EVENT, time="2024-01-15T10:30:00Z"))[0] == 202


def test_keep_alive_and_chunked_body(server: OutpostServer) -> None:
    conn = connect(server)
    try:
        for i in range(3):
            assert publish(server, dict(EVENT, id=f"k{i}"), conn=conn)[0] == 202
        conn.putrequest("POST", "/api/v1/publish")
        conn.putheader("Authorization", AUTH["Authorization"])
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        payload = json.dumps(dict(EVENT, id="chunky")).encode()
        for part in (payload[:5], payload[5:]):
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 202 and json.loads(resp.read())["id"] == "chunky"
    finally:
        conn.close()
    assert server.event_count("chunky") == 1


# -- auth -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}],
)
def test_unauthorized(server: OutpostServer, headers: dict[str, str]) -> None:
    status, hdrs, body = publish(server, headers=headers)
    assert status == 401
    assert hdrs["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": 401, "message": "unauthorized"}
    assert server.events == []


def test_key_rotation(server: OutpostServer) -> None:
    server.api_key = "rotated"
    assert server.api_key == "rotated"
    assert publish(server)[0] == 401
    assert publish(server, headers={"Authorization": "Bearer rotated"})[0] == 202


def test_requests_are_recorded_redacted(server: OutpostServer) -> None:
    publish(server, dict(EVENT, id="r1"))
    publish(server, raw=b"not json")
    first, second = server.requests
    assert first.method == "POST" and first.path == "/api/v1/publish"
    assert first.headers["authorization"] == "Bearer ***"
    assert first.headers["content-type"] == "application/json"
    assert first.json == dict(EVENT, id="r1")
    assert json.loads(first.body) == first.json
    assert second.body == b"not json" and second.json is None
    assert KEY not in repr(server.requests)


# -- validation ------------------------------------------------------------------

INVALID: list[tuple[str, Any]] = [
    ("empty body", b""),
    ("invalid json", b"{nope"),
    ("nan", b'{"tenant_id":"t","data":{"x":NaN}}'),
    ("array body", []),
    ("string body", "hello"),
    ("missing tenant", {"data": {}}),
    ("empty tenant", {"tenant_id": "", "data": {}}),
    ("numeric tenant", {"tenant_id": 5, "data": {}}),
    ("missing data", {"tenant_id": "t"}),
    ("null data", {"tenant_id": "t", "data": None}),
    ("string data", {"tenant_id": "t", "data": "x"}),
    ("array data", {"tenant_id": "t", "data": [1]}),
    ("number data", {"tenant_id": "t", "data": 1}),
    ("metadata list", {"tenant_id": "t", "data": {}, "metadata": ["a"]}),
    ("metadata value", {"tenant_id": "t", "data": {}, "metadata": {"n": 1}}),
    ("id type", {"tenant_id": "t", "data": {}, "id": 1}),
    ("topic type", {"tenant_id": "t", "data": {}, "topic": ["a"]}),
    ("destination type", {"tenant_id": "t", "data": {}, "destination_id": 1}),
    ("retry type", {"tenant_id": "t", "data": {}, "eligible_for_retry": "yes"}),
    ("time text", {"tenant_id": "t", "data": {}, "time": "yesterday"}),
    ("time no zone", {"tenant_id": "t", "data": {}, "time": "2024-01-15T10:30:00"}),
    ("time bad date", {"tenant_id": "t", "data": {}, "time": "2024-02-30T10:30:00Z"}),
    ("time number", {"tenant_id": "t", "data": {}, "time": 1700000000}),
]


@pytest.mark.parametrize(("case", "body"), INVALID, ids=[c for c, _ in INVALID])
def test_validation_errors(server: OutpostServer, case: str, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, headers, reply = publish(server, raw=raw)
    assert status == 422, case
    assert headers["Content-Type"] == "application/json"
    error = json.loads(reply)
    assert error["status"] == 422 and error["message"] == "validation error"
    assert isinstance(error["data"], list) and error["data"]
    assert all(isinstance(m, str) for m in error["data"])
    assert server.events == []


def test_topics_configured() -> None:
    with OutpostServer(KEY, topics=["user.created", "order.shipped"]) as srv:
        no_topic = {"tenant_id": "t", "data": {}}
        status, _, body = publish(srv, no_topic)
        assert status == 422 and "topic is required" in json.loads(body)["data"]
        status, _, body = publish(srv, dict(no_topic, topic=""))
        assert status == 422 and "topic is required" in json.loads(body)["data"]
        status, _, body = publish(srv, dict(no_topic, topic="nope"))
        assert status == 422 and any("nope" in m for m in json.loads(body)["data"])
        assert publish(srv, dict(no_topic, topic="order.shipped"))[0] == 202
        status, _, body = call(srv, "GET", "/topics", headers=AUTH)
        assert status == 200 and json.loads(body) == ["user.created", "order.shipped"]


def test_topics_not_configured_accepts_any(server: OutpostServer) -> None:
    assert publish(server, {"tenant_id": "t", "data": {}})[0] == 202
    assert publish(server, dict(EVENT, topic="anything"))[0] == 202


# -- concurrency: 409 --------------------------------------------------------------


def _publish_in_thread(srv: OutpostServer, event: Any, out: list[Reply]) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.append(publish(srv, event)))
    thread.start()
    return thread


def test_conflict_while_processing() -> None:
    with OutpostServer(KEY, processing_wait=0.2) as srv:
        srv.delay_next(0.8)
        event = dict(EVENT, id="busy")
        first: list[Reply] = []
        thread = _publish_in_thread(srv, event, first)
        wait_for(lambda: len(srv.requests) == 1)
        started = time.monotonic()
        status, _, body = publish(srv, event)
        assert status == 409 and body == b""
        assert 0.15 < time.monotonic() - started < 0.7
        thread.join(5)
        assert first[0][0] == 202 and json.loads(first[0][2])["duplicate"] is False
        assert publish_json(srv, event)[1]["duplicate"] is True
        assert srv.event_count("busy") == 1


def test_waiter_gets_duplicate_when_first_finishes() -> None:
    with OutpostServer(KEY, processing_wait=3.0) as srv:
        srv.delay_next(0.3)
        event = dict(EVENT, id="slow")
        first: list[Reply] = []
        thread = _publish_in_thread(srv, event, first)
        wait_for(lambda: len(srv.requests) == 1)
        status, _, body = publish(srv, event)
        thread.join(5)
        assert status == 202 and json.loads(body)["duplicate"] is True
        assert json.loads(first[0][2])["duplicate"] is False
        assert srv.event_count("slow") == 1


# -- faults ----------------------------------------------------------------------


def test_fail_next_default_json_and_retry_after(server: OutpostServer) -> None:
    server.fail_next(503, times=2, headers={"Retry-After": "7"})
    for _ in range(2):
        # faults apply before auth, as a proxy in front would
        status, headers, body = publish(server, headers={})
        assert status == 503
        assert headers["Retry-After"] == "7"
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"status": 503, "message": "injected failure"}
    assert publish(server)[0] == 202


def test_fail_next_custom_body_and_redirect(server: OutpostServer) -> None:
    server.fail_next(418, body="short and stout")
    server.fail_next(502, body=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"})
    server.fail_next(302, headers={"Location": "http://example.invalid/x"})
    conn = connect(server)
    try:
        status, headers, body = publish(server, conn=conn)
        assert (status, body) == (418, b"short and stout")
        assert headers["Content-Type"].startswith("text/plain")
        status, headers, body = publish(server, conn=conn)
        assert (status, headers["Content-Type"]) == (502, "text/html")
        status, headers, _ = publish(server, conn=conn)
        assert (status, headers["Location"]) == (302, "http://example.invalid/x")
        assert publish(server, conn=conn)[0] == 202  # same keep-alive connection
    finally:
        conn.close()


@pytest.mark.parametrize("status", [400, 429, 500, 504, 599])
def test_fail_next_error_statuses(server: OutpostServer, status: int) -> None:
    server.fail_next(status)
    got, _, body = publish(server)
    assert (got, json.loads(body)) == (status, {"status": status, "message": "injected failure"})
    assert server.events == []


@pytest.mark.parametrize("status", [204, 304])
def test_fail_next_bodiless(server: OutpostServer, status: int) -> None:
    server.fail_next(status)
    conn = connect(server)
    try:
        got, headers, body = publish(server, conn=conn)
        assert (got, body) == (status, b"")
        assert "Content-Type" not in headers
        assert publish(server, conn=conn)[0] == 202
    finally:
        conn.close()


def _raw_exchange(srv: OutpostServer, payload: bytes) -> bytes:
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        head = (
            "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.mark.parametrize("status", [100, 101, 103])
def test_fail_next_informational_closes(server: OutpostServer, status: int) -> None:
    server.fail_next(status, headers={"Upgrade": "websocket"})
    data = _raw_exchange(server, json.dumps(EVENT).encode())  # reads until EOF
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert "Connection: close" in lines and "Upgrade: websocket" in lines
    assert not any(line.lower().startswith("content-length") for line in lines)
    assert rest == b""
    assert server.events == []
    assert publish(server)[0] == 202


def test_fail_next_101_with_http_client(server: OutpostServer) -> None:
    server.fail_next(101)
    status, headers, body = publish(server)
    assert (status, body, headers["Connection"]) == (101, b"", "close")


def test_fail_next_rejects_bad_arguments(server: OutpostServer) -> None:
    with pytest.raises(ValueError, match="status"):
        server.fail_next(600)
    with pytest.raises(ValueError, match="CR or LF"):
        server.fail_next(500, headers={"X": "a\r\nb"})


def test_reset_faults(server: OutpostServer) -> None:
    server.fail_next(500, times=3)
    server.drop_next()
    server.reset_faults()
    assert publish(server)[0] == 202


def test_drop_next_not_accepted(server: OutpostServer) -> None:
    server.drop_next()
    event = dict(EVENT, id="lost")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        publish(server, event)
    assert server.events == []
    assert len(server.requests) == 1  # the request was read in full
    assert publish_json(server, event)[1]["duplicate"] is False


def test_drop_next_accepted_then_retry_is_duplicate(server: OutpostServer) -> None:
    server.drop_next(accepted=True)
    event = dict(EVENT, id="ack-lost")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        publish(server, event)
    assert server.event_count("ack-lost") == 1
    status, reply = publish_json(server, event)
    assert status == 202 and reply["duplicate"] is True
    assert server.event_count("ack-lost") == 1


# -- other endpoints ---------------------------------------------------------------


def test_healthz_and_topics(server: OutpostServer) -> None:
    status, headers, body = call(server, "GET", "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "healthy" and health["workers"]["http-server"] == {"status": "healthy"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", health["timestamp"])
    assert headers["Content-Type"] == "application/json"
    assert call(server, "GET", "/topics")[0] == 401
    status, _, body = call(server, "GET", "/topics", headers=AUTH)
    assert (status, json.loads(body)) == (200, [])


def test_not_found_and_method_not_allowed(server: OutpostServer) -> None:
    status, _, body = call(server, "GET", "/nope")
    assert status == 404 and json.loads(body)["status"] == 404
    status, headers, _ = call(server, "GET", "/publish", headers=AUTH)
    assert status == 405 and headers["Allow"] == "POST"
    assert call(server, "POST", "/healthz", body=b"{}")[0] == 405
    c = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        c.request("POST", "/publish", body=json.dumps(EVENT), headers=AUTH)  # no prefix
        assert c.getresponse().status == 404
    finally:
        c.close()


def test_custom_prefix() -> None:
    with OutpostServer(KEY, prefix="2025-07-01/") as srv:
        assert srv.url.endswith("/2025-07-01")
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        try:
            c.request("GET", "/2025-07-01/healthz")
            assert c.getresponse().status == 200
        finally:
            c.close()


def test_verbose_prints_one_line_per_accepted_event() -> None:
    out = io.StringIO()
    with OutpostServer(KEY, verbose=True, stream=out) as srv:
        publish(srv, dict(EVENT, id="v1"))
        publish(srv, {"tenant_id": "t"})  # rejected: not printed
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "id=v1" in lines[0] and "tenant=t1" in lines[0]


def test_ipv6_url() -> None:
    try:
        srv = OutpostServer(KEY, host="::1").start()
    except OSError:
        pytest.skip("IPv6 loopback not available")
    try:
        assert srv.url == f"http://[::1]:{srv.port}/api/v1"
        c = http.client.HTTPConnection("::1", srv.port, timeout=5)
        c.request("GET", "/api/v1/healthz")
        assert c.getresponse().status == 200
        c.close()
    finally:
        srv.close()


# -- lifecycle ---------------------------------------------------------------------


def test_close_is_prompt_with_open_keep_alive_connection() -> None:
    srv = OutpostServer(KEY).start()
    before = set(threading.enumerate())
    conn = connect(srv)
    assert publish(srv, conn=conn)[0] == 202  # connection now idle, kept alive
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 1.0
    lingering = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert lingering == []
    with pytest.raises((http.client.HTTPException, OSError)):
        publish(srv, conn=conn)
    conn.close()
    srv.close()  # idempotent
    with pytest.raises(RuntimeError):
        _ = srv.port


def test_close_interrupts_delay() -> None:
    srv = OutpostServer(KEY).start()
    srv.delay_next(30)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            publish(srv)
        except (http.client.HTTPException, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: len(srv.requests) == 1)
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 2.0
    thread.join(2)
    assert not thread.is_alive()


# -- random faults (fail_rate) -----------------------------------------------------


def _outcome(srv: OutpostServer, event_id: str) -> str:
    try:
        status, headers, _ = publish(srv, dict(EVENT, id=event_id))
    except (http.client.HTTPException, OSError):
        return "dropped"
    if status == 429:
        assert headers["Retry-After"] == "1" and headers["retry-after-ms"] == "250"
    return str(status)


def test_fail_rate_draws_the_retryable_mix_repeatably() -> None:
    runs = []
    for _ in range(2):
        with OutpostServer(KEY, fail_rate=0.5, retry_after=0.25, seed=7) as srv:
            outcomes = [_outcome(srv, f"e{i}") for i in range(200)]
            runs.append((outcomes, srv.injected_faults, {e["id"] for e in srv.events}))
    outcomes, injected, stored = runs[0]
    assert runs[1] == runs[0]  # same seed, same draws
    assert set(outcomes) == {"202", "503", "429", "dropped"}
    assert set(injected) == {"503", "429", "drop", "drop-after-accept"}
    assert sum(injected.values()) == outcomes.count("503") + outcomes.count("429") + outcomes.count("dropped")
    assert 60 < sum(injected.values()) < 140
    # accepted: the 202s and the lost acknowledgements, nothing else
    assert len(stored) == outcomes.count("202") + injected["drop-after-accept"]


def test_fail_rate_spares_queued_faults_and_other_endpoints() -> None:
    with OutpostServer(KEY, fail_rate=1.0) as srv:
        assert call(srv, "GET", "/healthz")[0] == 200
        assert call(srv, "GET", "/topics", headers=AUTH)[0] == 200
        srv.fail_next(418)
        assert publish(srv)[0] == 418
        srv.fail_rate = 0.0
        assert publish(srv)[0] == 202
        assert sum(srv.injected_faults.values()) == 0
    with pytest.raises(ValueError):
        OutpostServer(KEY, fail_rate=1.5)
