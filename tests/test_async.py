"""The async API passes the sync API's behaviour tests: sync, async in a worker thread, async native."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, Iterator, List, Tuple
from urllib.parse import urlsplit

import pytest

import minipub
from minipub import SDK, BackoffStrategy, PublishResponse, RetryConfig
from minipub.errors import (
    APIError,
    BadRequestError,
    ConnectError,
    ConnectionLostError,
    InternalServerError,
    TransportTimeout,
    UnauthorizedError,
    ValidationError,
)
from minipub.testing import OutpostServer
from minipub.transports.base import AsyncTransport, HTTPRequest, HTTPResponse, Transport
from minipub.transports.httpclient import HTTPClientTransport

from .conftest import API_KEY

FAST = RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 5_000), True, max_attempts=5)


class StreamsTransport:
    """A minimal native async transport (asyncio streams, one connection per request), as a plugin could
    provide; ``send`` stays available for sync calls."""

    def __init__(self) -> None:
        self._sync = HTTPClientTransport(proxy=None)
        self.async_sends = 0
        self.loop_threads: List[int] = []

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return self._sync.send(request)

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        self._sync.close()

    async def send_async(self, request: HTTPRequest) -> HTTPResponse:
        self.async_sends += 1
        self.loop_threads.append(threading.get_ident())
        parts = urlsplit(request.url)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port),
                                                    request.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectError(f"could not connect: {exc}") from None
        try:
            lines = [f"{request.method} {parts.path} HTTP/1.1", f"Host: {parts.netloc}",
                     f"Content-Length: {len(request.body)}", "Connection: close",
                     *(f"{k}: {v}" for k, v in request.headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), request.timeout)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
            length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
            body = await asyncio.wait_for(reader.readexactly(length), request.timeout)
        except asyncio.TimeoutError:
            raise TransportTimeout("timed out waiting for the response") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise ConnectionLostError(f"connection lost: {type(exc).__name__}") from None
        finally:
            writer.close()
        return HTTPResponse(int(status_line.split()[1]), headers, body)


Publish = Callable[..., PublishResponse]


@pytest.fixture(params=["sync", "async-thread", "async-native"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(mode: str, server: OutpostServer) -> Iterator[Callable[..., Tuple[SDK, Publish]]]:
    """make(**sdk_options) -> (sdk, publish(**event)), publishing the way ``mode`` says."""
    made: List[SDK] = []

    def factory(**options: Any) -> Tuple[SDK, Publish]:
        options.setdefault("server_url", server.url)
        options.setdefault("retry_config", FAST)
        if mode == "async-native":
            options["transport"] = StreamsTransport()
        sdk = SDK(options.pop("key", API_KEY), **options)
        made.append(sdk)

        def publish(**event: Any) -> PublishResponse:
            args: Dict[str, Any] = {"tenant_id": "acme", "topic": "user.created", "data": {"user_id": "u1"}}
            args.update(event)
            if mode == "sync":
                return sdk.publish.event(**args)
            return asyncio.run(sdk.publish.event_async(**args))

        return sdk, publish

    yield factory
    for sdk in made:
        sdk.close()


def test_publish_returns_the_servers_answer(make: Any, server: OutpostServer, mode: str) -> None:
    sdk, publish = make()
    response = publish(id="evt_1", metadata={"source": "crm"})
    assert response == PublishResponse("evt_1", False, ("des_embedded",))
    (event,) = server.events
    assert event["id"] == "evt_1" and event["metadata"] == {"source": "crm"}
    if mode == "async-native":
        assert sdk.transport.async_sends == 1


def test_bad_input_raises_before_the_network(make: Any, server: OutpostServer) -> None:
    _, publish = make()
    with pytest.raises(ValidationError, match="data must be a mapping"):
        publish(data=[1])
    with pytest.raises(ValidationError, match="retries"):
        publish(retries=3)
    with pytest.raises(ValidationError, match="timeout_ms"):
        publish(timeout_ms=0)
    assert server.requests == []


def test_faults_are_retried_with_one_id(make: Any, server: OutpostServer) -> None:
    server.fail_next(503)
    server.fail_next(429, headers={"Retry-After": "0"})
    server.fail_next(409)
    server.drop_next(accepted=True)
    _, publish = make()
    response = publish()
    assert {r.json["id"] for r in server.requests} == {response.id}
    assert server.event_count(response.id) == 1 and response.duplicate is True


def test_errors_are_the_same(make: Any, server: OutpostServer) -> None:
    _, publish = make()
    server.fail_next(422, body='{"message":"validation error","data":["tenant_id is required"]}',
                     headers={"Content-Type": "application/json"})
    with pytest.raises(BadRequestError, match="tenant_id is required") as bad:
        publish()
    assert bad.value.status_code == 422 and len(server.requests) == 1
    server.fail_next(503, times=5)
    with pytest.raises(InternalServerError):
        publish()
    server.fail_next(418)
    with pytest.raises(APIError) as teapot:
        publish()
    assert type(teapot.value) is APIError and teapot.value.status_code == 418


def test_wrong_key_is_unauthorized_and_never_shown(make: Any) -> None:
    secret = "sk_wrong_" + "x" * 20
    _, publish = make(key=secret)
    with pytest.raises(UnauthorizedError) as info:
        publish()
    assert secret not in str(info.value) and secret not in repr(info.value)


def test_connection_refused(make: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, publish = make(server_url=f"http://127.0.0.1:{port}/api/v1", retry_config=RetryConfig("none"))
    with pytest.raises(ConnectError):
        publish()


def test_timeout(make: Any, server: OutpostServer) -> None:
    server.delay_next(1.0)
    _, publish = make(timeout_ms=200, retry_config=RetryConfig("none"))
    with pytest.raises(TransportTimeout):
        publish()


def test_the_loop_keeps_running_during_a_slow_publish(server: OutpostServer) -> None:
    for transport in (None, StreamsTransport()):
        server.fail_next(503, headers={"retry-after-ms": "300"})
        with SDK(API_KEY, server_url=server.url, transport=transport) as sdk:

            async def main() -> int:
                ticks = 0
                publishing = asyncio.ensure_future(sdk.publish.event_async(tenant_id="acme", topic="t", data={}))
                while not publishing.done():
                    ticks += 1
                    await asyncio.sleep(0.01)
                await publishing
                return ticks

            assert asyncio.run(main()) >= 10  # ~30 expected in 300 ms; a blocked loop gives 1


def test_many_concurrent_async_publishes(server: OutpostServer) -> None:
    with SDK(API_KEY, server_url=server.url) as sdk:

        async def main() -> List[PublishResponse]:
            return list(await asyncio.gather(*(sdk.publish.event_async(tenant_id="acme", topic="t", data={"n": n})
                                               for n in range(20))))

        responses = asyncio.run(main())
    assert sorted(r.id for r in responses) == sorted(e["id"] for e in server.events)
    assert len(server.events) == 20


def test_publish_async_uses_the_default_client(server: OutpostServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", server.url)
    minipub.reset_default_client()
    try:
        response = asyncio.run(minipub.publish_async("user.created", {"a": 1}, tenant_id="acme", id="evt_async"))
    finally:
        minipub.reset_default_client()
    assert response.id == "evt_async" and server.event_count("evt_async") == 1


def test_native_transport_is_recognised() -> None:
    native = StreamsTransport()
    assert isinstance(native, AsyncTransport) and isinstance(native, Transport)
    assert not isinstance(HTTPClientTransport(), AsyncTransport)
    native.close()


def test_observability_plugins_see_async_publishes(server: OutpostServer) -> None:
    from minipub.hookspecs import hookimpl

    class Seen:
        def __init__(self) -> None:
            self.ids: List[str] = []

        @hookimpl(wrapper=True)
        def minipub_publish(self, publish: Any) -> Any:
            self.ids.append(publish.event_id)
            return (yield)

    seen = Seen()
    native = StreamsTransport()
    with SDK(API_KEY, server_url=server.url, transport=native, plugins=[seen]) as sdk:
        response = asyncio.run(sdk.publish.event_async(tenant_id="acme", topic="t", data={}))
    assert seen.ids == [response.id]  # hooks wrap the sync path: the worker thread is used
    assert native.async_sends == 0 and server.event_count(response.id) == 1


def test_send_async_reports_each_retry_decision(server: OutpostServer) -> None:
    """``on_retry`` sees the async path's decisions as it sees the sync path's (both transports' paths)."""
    from minipub.request import build_publish_request

    for transport in ("lean", "lean-async"):
        server.clear()
        server.fail_next(503, times=2)
        decisions: List[Tuple[int, int, bool]] = []
        with SDK(server.api_key, server_url=server.url, retry_config=FAST, transport=transport) as sdk:
            request = build_publish_request(tenant_id="acme", topic="user.created", data={})
            response = asyncio.run(sdk.send_async(request, on_retry=lambda n, error, delay: decisions.append(
                (n, getattr(error, "status_code", 0), delay is not None))))
        assert response.id == request.event_id
        assert decisions == [(1, 503, True), (2, 503, True)], transport
