"""``await sdk.publish.event_async(...)`` through the httpx plugin's ``send_async`` (``httpx.AsyncClient``).

Against the embedded Outpost server and hostile raw servers: the native path is taken (no sync
client, no worker thread), many publishes are in flight at once on one loop, the errors are
minipub's (refused, stalled, trickled, 401, 5XX retried), a connection that failed is not reused,
and each loop's client is closed with the loop, by ``close()`` or by ``aclose()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, List, Tuple

import httpx
import pytest
from conftest import API_KEY

from minipub import SDK, BackoffStrategy, RetryConfig
from minipub.errors import ConnectError, InternalServerError, TransportTimeout, UnauthorizedError
from minipub.testing import OutpostServer
from minipub.testing.rawserver import ContractRequest, Peer, RawServer, outpost_like
from minipub_httpx import HttpxTransport

NO_RETRY = RetryConfig("none")
FAST_RETRY = RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 10_000), True, max_attempts=4)


def workers() -> List[str]:
    """The threads ``asyncio.to_thread`` would have used (the default executor names them ``asyncio_N``)."""
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("asyncio_")]


def publish(sdk: SDK, **fields: Any) -> Any:
    return sdk.publish.event_async(**{"tenant_id": "acme", "topic": "via.httpx.async", "data": {"n": 1}, **fields})


# -- the native path ------------------------------------------------------------------------


def test_event_async_goes_through_send_async(server: OutpostServer) -> None:
    transport = HttpxTransport()

    async def main() -> Tuple[Any, Any, int, int, List[str]]:
        sdk = SDK(API_KEY, server_url=server.url, transport=transport)
        first, second = await publish(sdk), await publish(sdk)
        return first, second, transport.open_clients, transport.open_async_clients, workers()

    first, second, sync_clients, async_clients, threads = asyncio.run(main())
    assert (sync_clients, async_clients, threads) == (0, 1, [])  # an AsyncClient, no thread
    assert [event["id"] for event in server.events] == [first.id, second.id]
    assert len({request.client_port for request in server.requests}) == 1  # one kept-alive connection
    assert transport.open_async_clients == 0  # closed when asyncio.run finalized the loop
    transport.close()


def test_many_publishes_in_flight_at_once_on_one_loop(server: OutpostServer) -> None:
    server.delay_next(0.5, times=40)

    async def main() -> List[Any]:
        with SDK(API_KEY, server_url=server.url, transport=HttpxTransport()) as sdk:
            return list(await asyncio.gather(*(publish(sdk, data={"n": n}) for n in range(40))))

    responses = asyncio.run(main())
    assert len({response.id for response in responses}) == 40 and len(server.events) == 40
    # all 40 waited at the server together, one connection each (a worker thread pool would have
    # sent a few at a time over a few reused connections)
    assert len({request.client_port for request in server.requests}) == 40


def test_a_callers_client_is_used_from_a_worker_thread(server: OutpostServer) -> None:
    client = httpx.Client()
    transport = HttpxTransport(client)

    async def main() -> Tuple[List[str], int]:
        with SDK(API_KEY, server_url=server.url, transport=transport) as sdk:
            await publish(sdk)
        return workers(), transport.open_async_clients

    threads, async_clients = asyncio.run(main())
    assert threads and async_clients == 0 and len(server.events) == 1
    assert not client.is_closed
    client.close()


# -- errors, as the sync path has them --------------------------------------------------------


def test_a_refused_connection_is_a_connect_error(server: OutpostServer) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with SDK(API_KEY, server_url=f"http://127.0.0.1:{port}/api/v1", transport=HttpxTransport(),
             retry_config=NO_RETRY) as sdk, pytest.raises(ConnectError):
        asyncio.run(publish(sdk))


def _stalls(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.wait(10.0)


def _trickles(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.trickle(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nX-Slow: " + b"z" * 200, 0.05)


@pytest.mark.parametrize("handler", [_stalls, _trickles], ids=["stalls", "trickles"])
def test_the_attempts_timeout_bounds_a_server_that_stalls_or_trickles(handler: Any) -> None:
    with RawServer(handler) as hostile, SDK(API_KEY, server_url=hostile.url("/api/v1"), transport=HttpxTransport(),
                                            retry_config=NO_RETRY, timeout_ms=800) as sdk:
        started = time.monotonic()
        with pytest.raises(TransportTimeout):
            asyncio.run(publish(sdk))
        elapsed = time.monotonic() - started
    assert 0.7 < elapsed < 3.0  # the whole attempt, not each read (a trickle keeps every read short)


def test_a_connection_that_failed_is_not_reused() -> None:
    def first_stalls(peer: Peer) -> None:
        if peer.index == 0:
            _stalls(peer)
        else:
            outpost_like(peer)

    with RawServer(first_stalls) as hostile, SDK(API_KEY, server_url=hostile.url("/api/v1"),
                                                 transport=HttpxTransport(), retry_config=NO_RETRY,
                                                 timeout_ms=500) as sdk:
        async def main() -> Any:
            with pytest.raises(TransportTimeout):
                await publish(sdk, id="evt_1")
            return await publish(sdk, id="evt_2")

        assert asyncio.run(main()).id == "evt_2"
        assert hostile.accepted == 2
        assert [request.connection for request in hostile.requests] == [0, 1]


def test_a_wrong_key_is_unauthorized_and_the_key_stays_hidden() -> None:
    def echoes_the_key(peer: Peer) -> None:
        def reply(request: ContractRequest, peer: Peer) -> None:
            echoed = request.header("authorization") or ""
            peer.respond(401, f'{{"message": "not {echoed}"}}'.encode(),
                         [("Content-Type", "application/json"), ("X-Echo", echoed)])

        peer.serve(reply)

    with RawServer(echoes_the_key) as hostile, SDK(API_KEY, server_url=hostile.url("/api/v1"),
                                                   transport=HttpxTransport(), retry_config=NO_RETRY) as sdk, \
            pytest.raises(UnauthorizedError) as refused:
        asyncio.run(publish(sdk))
    error = refused.value
    assert error.status_code == 401 and "set OUTPOST_API_KEY" in str(error)
    assert API_KEY not in f"{error} {error.body} {error.headers} {error.data}"
    tb = error.__traceback__
    while tb is not None:  # no frame of the async path keeps the key (or the answer echoing it)
        assert API_KEY not in repr(tb.tb_frame.f_locals), tb.tb_frame.f_code.co_name
        tb = tb.tb_next


def test_a_5xx_is_retried_with_the_same_event_id(server: OutpostServer) -> None:
    server.fail_next(503, times=2)
    with SDK(API_KEY, server_url=server.url, transport=HttpxTransport(), retry_config=FAST_RETRY) as sdk:
        response = asyncio.run(publish(sdk))
    assert [request.json["id"] for request in server.requests] == [response.id] * 3
    server.fail_next(500, times=4)
    with SDK(API_KEY, server_url=server.url, transport=HttpxTransport(), retry_config=FAST_RETRY) as sdk, \
            pytest.raises(InternalServerError):
        asyncio.run(publish(sdk))


def test_a_cancelled_publish_closes_its_connection() -> None:
    seen: List[bytes] = []

    def waits_for_the_client(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.sock.settimeout(5.0)
            try:
                seen.append(peer.sock.recv(1))  # b"": the client closed the connection
            except OSError:
                seen.append(b"timeout")

    with RawServer(waits_for_the_client) as hostile, SDK(API_KEY, server_url=hostile.url("/api/v1"),
                                                         transport=HttpxTransport(), retry_config=NO_RETRY) as sdk:
        async def main() -> None:
            task = asyncio.ensure_future(publish(sdk))
            while not hostile.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(200):  # still on the loop (its client open): the cancel closed the connection
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert transport.open_async_clients == 1

        transport = sdk.transport
        assert isinstance(transport, HttpxTransport)
        asyncio.run(main())
    assert seen == [b""]


# -- one client per loop, closed with it ------------------------------------------------------


def test_each_loop_has_its_own_client_closed_when_the_loop_ends(server: OutpostServer) -> None:
    transport = HttpxTransport()
    sdk = SDK(API_KEY, server_url=server.url, transport=transport)

    async def inside() -> int:
        await publish(sdk)
        return transport.open_async_clients

    assert [asyncio.run(inside()) for _ in range(3)] == [1, 1, 1]
    assert transport.open_async_clients == 0
    assert len({request.client_port for request in server.requests}) == 3  # a connection per loop
    sdk.close()


def test_close_inside_the_loop_closes_its_client_and_ends_the_transport(server: OutpostServer) -> None:
    transport = HttpxTransport()

    async def main() -> Tuple[int, int]:
        with SDK(API_KEY, server_url=server.url, transport=transport) as sdk:
            await publish(sdk)
            before = transport.open_async_clients
        await asyncio.sleep(0.05)  # the closing task runs
        with pytest.raises(ConnectError, match="closed"):
            await publish(sdk)
        return before, transport.open_async_clients

    assert asyncio.run(main()) == (1, 0)


def test_close_from_another_thread_and_aclose(server: OutpostServer) -> None:
    transport = HttpxTransport()
    sdk = SDK(API_KEY, server_url=server.url, transport=transport)
    loops = [asyncio.new_event_loop() for _ in range(2)]
    threads = [threading.Thread(target=loop.run_forever, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        for loop in loops:  # two loops in two threads: a client each
            asyncio.run_coroutine_threadsafe(publish(sdk), loop).result(10)
        assert transport.open_async_clients == 2
        asyncio.run_coroutine_threadsafe(transport.aclose(), loops[0]).result(10)
        assert transport.open_async_clients == 0  # aclose: this loop's at once, the other's through it
    finally:
        for loop, thread in zip(loops, threads):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
    assert len(server.events) == 2


def test_close_after_a_loop_run_by_hand_closes_its_client(server: OutpostServer) -> None:
    transport = HttpxTransport()
    loop = asyncio.new_event_loop()
    try:
        with SDK(API_KEY, server_url=server.url, transport=transport) as sdk:
            loop.run_until_complete(publish(sdk))
            assert transport.open_async_clients == 1  # the loop is stopped, not closed: its client waits
        assert transport.open_async_clients == 0  # close() ran the closing on that loop
    finally:
        loop.close()
