"""Tests for minipub.testing.OutpostServer, over real sockets with http.client."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
import time
import uuid
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
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    reply = json.loads(body)
    assert str(uuid.UUID(reply["id"], version=4)) == reply["id"]  # Outpost's ids: UUIDv4 text
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
    assert (status, body) == (401, b"")  # Outpost's 401 has no body
    assert "Content-Type" not in hdrs
    assert server.events == []
    assert server.requests[-1].body == b""  # answered before the body was read


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
    # The exact answers (Outpost's messages) are in tests/real/test_conformance.py; here: nothing is kept.
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, headers, reply = publish(server, raw=raw)
    assert status == 422, case
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    error = json.loads(reply)
    assert error["status"] == 422 and error["message"]
    assert all(isinstance(m, str) for m in error.get("data", []))
    assert server.events == []


def test_topics_configured() -> None:
    with OutpostServer(KEY, topics=["user.created", "order.shipped"]) as srv:
        no_topic = {"tenant_id": "t", "data": {}}
        status, _, body = publish(srv, no_topic)
        assert status == 422 and "topic is required" in json.loads(body)["data"]
        status, _, body = publish(srv, dict(no_topic, topic=""))
        assert status == 422 and "topic is required" in json.loads(body)["data"]
        status, _, body = publish(srv, dict(no_topic, topic="nope"))
        assert status == 422 and json.loads(body)["data"] == ["topic is invalid"]
        assert publish(srv, dict(no_topic, topic="order.shipped"))[0] == 202
        assert publish(srv, dict(no_topic, topic="*"))[0] == 202  # "*" is always a valid topic
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
    with OutpostServer(KEY, processing_wait=0.8) as srv:
        srv.delay_next(0.1)
        event = dict(EVENT, id="slow")
        first: list[Reply] = []
        thread = _publish_in_thread(srv, event, first)
        wait_for(lambda: len(srv.requests) == 1)
        started = time.monotonic()
        status, _, body = publish(srv, event)
        # Outpost's waiter sleeps its whole wait, however soon the first request finishes
        assert time.monotonic() - started >= 0.75
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
        assert headers["Content-Type"] == "application/json; charset=utf-8"
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
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", health["timestamp"])
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert call(server, "GET", "/topics")[0] == 401
    status, _, body = call(server, "GET", "/topics", headers=AUTH)
    assert (status, json.loads(body)) == (200, None)  # Outpost without TOPICS: null


def test_not_found_as_outpost(server: OutpostServer) -> None:
    # Outpost has no 405: a wrong method is a 404, JSON under /api/, gin's text elsewhere
    not_found = {"message": "not found", "status": 404}
    for method, path in (("GET", "/nope"), ("GET", "/publish"), ("POST", "/healthz"), ("HEAD", "/publish")):
        status, headers, body = call(server, method, path, headers=AUTH, body=b"{}" if method == "POST" else None)
        assert status == 404 and headers["Content-Type"] == "application/json; charset=utf-8", (method, path)
        assert method == "HEAD" or json.loads(body) == not_found
    c = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        c.request("POST", "/publish", body=json.dumps(EVENT), headers=AUTH)  # no prefix
        response = c.getresponse()
        assert (response.status, response.read()) == (404, b"404 page not found\n")
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


def test_processing_wait_defaults_to_outposts_five_seconds() -> None:
    from minipub.testing import server as module

    assert module.PROCESSING_WAIT == 5.0
    assert OutpostServer(KEY)._processing_wait == 5.0


# -- tenants and destinations (Outpost's model) --------------------------------------


def test_tenant_model_matching_and_dedup_only_when_matched() -> None:
    with OutpostServer(KEY, destinations=()) as srv:
        # an unknown tenant: accepted, nothing matched, never deduplicated
        for _ in range(2):
            assert publish_json(srv, {"id": "u1", "tenant_id": "nobody", "data": {}})[1] == {
                "id": "u1", "duplicate": False, "destination_ids": []}
        everything = srv.add_destination("acme")
        orders = srv.add_destination("acme", ["order.created", "order.paid"])
        off = srv.add_destination("acme", ["*"], disabled=True)
        other = srv.add_destination("globex")

        def matched(**fields: Any) -> list[str]:
            status, reply = publish_json(srv, dict({"tenant_id": "acme", "data": {}}, **fields))
            assert status == 202
            return list(reply["destination_ids"])

        assert matched(topic="user.created") == [everything]
        assert matched(topic="order.paid") == [everything, orders]
        assert matched(topic="*") == [everything, orders] == matched()  # "*" and no topic match every subscription
        assert matched(destination_id=orders, topic="order.created") == [orders]
        assert matched(destination_id=orders, topic="user.created") == []
        assert matched(destination_id=off) == [] and matched(destination_id=other) == []
        srv.set_destination_disabled("acme", off, False)
        assert matched(destination_id=off) == [off]
        # matched: the repeat is a duplicate, with the matched list
        first = publish_json(srv, {"id": "m1", "tenant_id": "acme", "topic": "order.paid", "data": {}})[1]
        again = publish_json(srv, {"id": "m1", "tenant_id": "acme", "topic": "order.paid", "data": {}})[1]
        assert (first["duplicate"], again["duplicate"]) == (False, True)
        assert again["destination_ids"] == first["destination_ids"]
        srv.clear()  # tenants go too
        assert publish_json(srv, {"tenant_id": "acme", "data": {}})[1]["destination_ids"] == []


def test_tenant_endpoints_and_tenant_token() -> None:
    with OutpostServer(KEY, destinations=()) as srv:
        assert call(srv, "PUT", "/tenants/t9", headers=AUTH)[0] == 201
        assert call(srv, "PUT", "/tenants/t9", headers=AUTH)[0] == 200
        spec = json.dumps({"type": "webhook", "topics": ["*"], "config": {"url": "http://127.0.0.1:9/h"}}).encode()
        status, _, body = call(srv, "POST", "/tenants/t9/destinations", spec, AUTH)
        assert status == 201
        destination = json.loads(body)["id"]
        assert call(srv, "POST", "/tenants/nobody/destinations", spec, AUTH)[0] == 404
        assert publish_json(srv, {"tenant_id": "t9", "data": {}})[1]["destination_ids"] == [destination]
        assert call(srv, "PUT", f"/tenants/t9/destinations/{destination}/disable", headers=AUTH)[0] == 200
        assert publish_json(srv, {"tenant_id": "t9", "data": {}})[1]["destination_ids"] == []
        token = json.loads(call(srv, "GET", "/tenants/t9/token", headers=AUTH)[2])["token"]
        tenant_auth = {"Authorization": f"Bearer {token}"}
        assert publish(srv, headers=tenant_auth)[0] == 403  # publishing takes the admin key
        assert call(srv, "GET", "/tenants/t9", headers=tenant_auth)[0] == 200
        assert call(srv, "GET", "/topics", headers=tenant_auth)[0] == 200
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert call(srv, "GET", "/topics", headers={"Authorization": f"Bearer {forged}"})[0] == 401


def test_default_destination_is_tenant_agnostic(server: OutpostServer) -> None:
    for tenant in ("a", "b"):
        assert publish_json(server, {"tenant_id": tenant, "topic": "any", "data": {}})[1]["destination_ids"] == [
            "des_embedded"]


# -- survival: bodies, auth before the body, connections, idle time ----------------------------


def _raw(srv: OutpostServer, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection, then read until the server closes (bounded)."""
    with socket.create_connection((srv.host, srv.port), timeout=read_timeout) as sock:
        sock.sendall(data)
        return _read_to_close(sock, read_timeout)


def _read_to_close(sock: socket.socket, read_timeout: float) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + read_timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _head(extra: str, auth: bool = True) -> bytes:
    key = f"Authorization: Bearer {KEY}\r\n" if auth else ""
    return f"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\n{key}{extra}\r\n".encode()


@pytest.mark.parametrize("size", [b"-1", b"+5", b"0x5", b"1_0", b" ", b"g", b"-0", b"1" * 17])
def test_chunk_sizes_are_strict_hex(server: OutpostServer, size: bytes) -> None:
    # int(x, 16) takes "-1": read(-1) then read the stream to its end, past every limit
    reply = _raw(server, _head("Transfer-Encoding: chunked\r\n") + size + b"\r\n" + b"x" * 4096)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
    assert server.events == []


def test_chunked_body_over_the_cap_is_413_and_closed() -> None:
    with OutpostServer(KEY, max_body_bytes=1000) as srv:
        chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"x" * 300) for _ in range(4)) + b"0\r\n\r\n"
        reply = _raw(srv, _head("Transfer-Encoding: chunked\r\n") + chunks)
        assert reply.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in reply
        assert srv.events == [] and srv.requests[-1].body == b""
        assert publish(srv)[0] == 202  # a body within the cap still goes through


def test_content_length_over_the_cap_is_answered_before_the_body() -> None:
    with OutpostServer(KEY, max_body_bytes=1000) as srv, \
            socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(_head("Content-Length: 300000000\r\n"))  # 300 MB announced, none sent
        reply = _read_to_close(sock, 5.0)
        assert reply.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in reply


@pytest.mark.parametrize("framing", ["Content-Length: 300000000\r\n", "Transfer-Encoding: chunked\r\n"])
def test_unauthenticated_body_is_never_read(server: OutpostServer, framing: str) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(_head(framing, auth=False) + b"f" * 100_000)  # the rest of 300 MB never needs sending
        started = time.monotonic()
        reply = _read_to_close(sock, 5.0)
    assert reply.startswith(b"HTTP/1.1 401 ") and reply.endswith(b"\r\n\r\n")  # empty body
    assert b"Connection: close" in reply
    assert time.monotonic() - started < 3.0
    assert [r.body for r in server.requests] == [b""]


def test_unauthenticated_small_publish_still_gets_its_401(server: OutpostServer) -> None:
    # the answer is not lost to a reset although the body stays unread
    for _ in range(20):
        body = json.dumps(EVENT).encode() * 50
        reply = _raw(server, _head(f"Content-Length: {len(body)}\r\n", auth=False) + body)
        assert reply.startswith(b"HTTP/1.1 401 ")


def test_idle_connections_are_bounded_and_time_out() -> None:
    before = threading.active_count()
    with OutpostServer(KEY, max_connections=8, idle_timeout=0.5) as srv:
        socks = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(40)]
        try:
            wait_for(lambda: srv.connection_count <= 8, timeout=5)
            assert srv.connection_count <= 8
            assert threading.active_count() - before <= 8 + 2  # the accept loop, and slack
            wait_for(lambda: srv.connection_count == 0, timeout=5)  # silent ones are let go
            assert publish(srv)[0] == 202  # and the server still serves
        finally:
            for sock in socks:
                sock.close()


def test_full_server_closes_the_longest_idle_connection() -> None:
    with OutpostServer(KEY, max_connections=2, idle_timeout=30) as srv:
        first, second = connect(srv), connect(srv)
        try:
            assert publish(srv, conn=first)[0] == 202
            time.sleep(0.05)
            assert publish(srv, conn=second)[0] == 202
            assert publish(srv)[0] == 202  # a third connection gets in: the first, idle longest, goes
            with pytest.raises((http.client.HTTPException, OSError)):
                publish(srv, conn=first)
            assert publish(srv, conn=second)[0] == 202
        finally:
            first.close()
            second.close()


def test_expect_100_continue_only_when_the_body_is_wanted(server: OutpostServer) -> None:
    body = json.dumps(EVENT).encode()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(_head(f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert b" 202 " in sock.recv(4096)
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(_head(f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n", auth=False))
        assert sock.recv(100).startswith(b"HTTP/1.1 401 ")  # no 100: the body is not wanted


def test_verbose_line_escapes_untrusted_text() -> None:
    out = io.StringIO()
    with OutpostServer(KEY, verbose=True, stream=out) as srv:
        publish(srv, {"id": "e\nforged", "tenant_id": "t\x1b[31m", "topic": "a\rb", "data": {}})
    [line] = out.getvalue().splitlines()
    assert "\x1b" not in line and "\r" not in line and "e\\nforged" in line


def test_bounds_default_to_the_documented_values() -> None:
    # minipub serve runs OutpostServer with these defaults (README: "The embedded server")
    srv = OutpostServer(KEY)
    assert (srv._max_body, srv._max_connections, srv._idle_timeout) == (10 * 1024 * 1024, 256, 30.0)
    with pytest.raises(ValueError):
        OutpostServer(KEY, max_connections=0)


def test_a_trickled_body_is_let_go_within_the_idle_timeout() -> None:
    with OutpostServer(KEY, idle_timeout=0.6) as srv, \
            socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(_head("Content-Length: 1000\r\n"))
        started = time.monotonic()
        closed = False
        for _ in range(40):  # a byte every 0.1 s: never idle for the timeout, but too slow in all
            try:
                sock.sendall(b"x")
                sock.settimeout(0.1)
                closed = sock.recv(1) == b""
            except socket.timeout:
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed and time.monotonic() - started < 2.5
        assert srv.events == []


def test_heads_still_arriving_count_as_idle_on_a_full_server() -> None:
    with OutpostServer(KEY, max_connections=2, idle_timeout=30) as srv:
        slow = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(2)]
        try:
            for sock in slow:
                sock.sendall(b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never more
            time.sleep(0.1)
            assert publish(srv)[0] == 202  # a full server of half-sent heads still serves
        finally:
            for sock in slow:
                sock.close()


def test_empty_key_turns_auth_off_as_on_outpost() -> None:
    with OutpostServer("", destinations=()) as srv:
        assert publish(srv, headers={})[0] == 202
        assert publish(srv, headers={"Authorization": "Bearer anything"})[0] == 202
        status, _, body = call(srv, "GET", "/tenants/nobody")
        assert (status, json.loads(body)) == (404, {"status": 404, "message": "tenant not found"})
