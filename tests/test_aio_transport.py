"""The asyncio transport ("lean-async"): the contracts on its async path, and many publishes in flight on one loop.

The transport and hostile-server contracts are run against ``send_async`` itself: ``_OnALoop`` hands
each ``send`` to one event loop running in its own thread (all the contracts' sends share that loop,
its pool and its connection limit), and again to a uvloop loop (the Publisher's default when it is
installed). The rest awaits ``sdk.publish.event_async`` on real sockets.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

import pytest

from minipub import SDK, RetryConfig
from minipub.errors import ConfigurationError, ConnectError, ConnectionLostError, TLSError, TransportTimeout
from minipub.testing import OutpostServer
from minipub.testing.contract import API_KEY, ContractRequest, HostileServerContract, Peer, RawServer, TransportContract
from minipub.transports import HTTPRequest, HTTPResponse, Transport, create_transport
from minipub.transports.lean import LeanTransport

try:
    import uvloop
except ImportError:  # pragma: no cover - installed with the test extras
    uvloop = None

NO_RETRY = RetryConfig("none")
SLACK = 1.0


class _LoopThread:
    """One event loop running in a daemon thread (started on first use, stopped after the module)."""

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop) -> None:
        self.factory = factory
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None

    def get(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = self.factory()
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="aio-contract")
            self.thread.start()
        return self.loop

    def stop(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None and self.thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self.thread.join(10)
            loop.close()


_LOOP = _LoopThread()
# The Publisher's default loop when uvloop is installed (as with the test extras): the same contract.
_UVLOOP = _LoopThread(uvloop.new_event_loop) if uvloop is not None else None


@pytest.fixture(scope="module", autouse=True)
def _loop_thread() -> Iterator[None]:
    yield
    _LOOP.stop()
    if _UVLOOP is not None:
        _UVLOOP.stop()


class _OnALoop:
    """A sync face on ``LeanTransport.send_async``: every ``send`` runs it on the shared loop."""

    supports_keepalive = True
    supports_proxy = True

    def __init__(self, on: _LoopThread = _LOOP, **options: Any) -> None:
        self.inner = LeanTransport(**options)
        self.on = on

    def __repr__(self) -> str:
        return repr(self.inner)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return asyncio.run_coroutine_threadsafe(self.inner.send_async(request), self.on.get()).result(60)

    def close(self) -> None:
        self.inner.close()


class TestAsyncContract(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return _OnALoop(**options)


class TestAsyncHostile(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return _OnALoop(**options)


_NO_UVLOOP = pytest.mark.skipif(uvloop is None, reason="uvloop is not installed (pip install -e '.[test]')")


@_NO_UVLOOP
class TestUvloopContract(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        assert _UVLOOP is not None
        return _OnALoop(_UVLOOP, **options)


@_NO_UVLOOP
class TestUvloopHostile(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        assert _UVLOOP is not None
        return _OnALoop(_UVLOOP, **options)


class TestSyncFace(TransportContract):
    """Its own ``send``/``close`` (the lean transport) keep the contract too."""

    def make_transport(self, **options: Any) -> Transport:
        return LeanTransport(**options)


# -- helpers ------------------------------------------------------------------------------------


def _answer(request: ContractRequest, peer: Peer) -> None:
    event = json.loads(request.body or b"{}").get("id", "")
    body = json.dumps({"id": event, "duplicate": False, "destination_ids": []}).encode()
    peer.respond(202, body, [("Content-Type", "application/json")])


def _publish(sdk: SDK, event_id: str, **options: Any) -> Any:
    return sdk.publish.event_async(tenant_id="acme", topic="aio", data={"n": 1}, id=event_id, **options)


def _sdk(url: str, transport: Any, **options: Any) -> SDK:
    options.setdefault("retry_config", NO_RETRY)
    options.setdefault("timeout_ms", 5000)
    return SDK(API_KEY, server_url=url, transport=transport, **options)


def _request(url: str, event_id: str, timeout: float = 5.0) -> HTTPRequest:
    body = json.dumps({"id": event_id}).encode()
    return HTTPRequest("POST", url, {"Authorization": "Bearer " + API_KEY}, body, timeout)


# -- many in flight on one loop -----------------------------------------------------------------


def test_200_publishes_at_once_are_each_delivered_once_over_at_most_max_connections(server: OutpostServer) -> None:
    transport = LeanTransport(proxy=None, max_connections=8)
    ids = [f"evt_many_{n}" for n in range(200)]

    async def main() -> List[str]:
        with SDK(server.api_key, server_url=server.url, transport=transport, timeout_ms=10000) as sdk:
            responses = await asyncio.gather(*[_publish(sdk, event_id) for event_id in ids])
            return [response.id for response in responses]

    assert asyncio.run(main()) == ids  # each answer went to its own publish
    assert sorted(request.json["id"] for request in server.requests) == sorted(ids)  # each sent once
    ports = {request.client_port for request in server.requests}
    assert 1 < len(ports) <= 8, ports  # in parallel, never more than the limit, reused


def test_a_second_batch_reuses_the_first_batchs_connections(server: OutpostServer) -> None:
    transport = LeanTransport(proxy=None, max_connections=4)

    async def main() -> None:
        with SDK(server.api_key, server_url=server.url, transport=transport) as sdk:
            await asyncio.gather(*[_publish(sdk, f"evt_a{n}") for n in range(40)])
            first = {request.client_port for request in server.requests}
            server.clear()
            await asyncio.gather(*[_publish(sdk, f"evt_b{n}") for n in range(40)])
            assert {request.client_port for request in server.requests} <= first

    asyncio.run(main())


def test_two_loops_never_share_a_connection(server: OutpostServer) -> None:
    transport = LeanTransport(proxy=None)
    sdk = SDK(server.api_key, server_url=server.url, transport=transport)
    ports: Dict[int, Set[int]] = {}
    failures: List[BaseException] = []

    def run(n: int) -> None:
        async def main() -> Set[int]:
            seen = set()
            for i in range(15):
                await _publish(sdk, f"evt_loop{n}_{i}")
                seen.add(server.requests[-1].client_port if server.requests else 0)
            return seen

        try:
            ports[n] = asyncio.run(main())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    run(2)  # a third loop, after the others closed theirs: their connections are not its own
    sdk.close()
    assert failures == []
    by_port: Dict[int, Set[str]] = {}
    for request in server.requests:
        by_port.setdefault(request.client_port, set()).add(request.json["id"].split("_")[1])
    assert len(server.requests) == 45
    assert all(len(loops) == 1 for loops in by_port.values()), by_port  # each connection served one loop


def test_waiting_for_a_free_connection_is_bounded_by_the_deadline() -> None:
    with RawServer(lambda peer: peer.serve(lambda request, peer: peer.wait(5.0))) as server:
        transport = LeanTransport(proxy=None, max_connections=1)

        async def main() -> List[Any]:
            return await asyncio.gather(*[transport.send_async(_request(server.url(), f"evt_{n}", 0.5))
                                          for n in range(3)], return_exceptions=True)

        started = time.monotonic()
        outcomes = asyncio.run(main())
        elapsed = time.monotonic() - started
        transport.close()
        assert [type(outcome) for outcome in outcomes] == [TransportTimeout] * 3
        assert sum("free connection" in str(outcome) for outcome in outcomes) == 2
        assert elapsed < 0.5 + SLACK
        assert server.accepted == 1  # the limit held


def test_a_cancelled_publish_never_leaves_its_answer_to_the_next() -> None:
    def reply(request: ContractRequest, peer: Peer) -> None:
        if b"slow" in request.body:
            peer.wait(0.3)
        _answer(request, peer)

    with RawServer(lambda peer: peer.serve(reply)) as server:
        transport = LeanTransport(proxy=None, max_connections=1)

        async def main() -> HTTPResponse:
            slow = asyncio.ensure_future(transport.send_async(_request(server.url(), "evt_slow")))
            await asyncio.sleep(0.1)
            slow.cancel()
            await asyncio.sleep(0.4)  # the late answer arrives: on a connection that must be gone
            return await transport.send_async(_request(server.url(), "evt_next"))

        response = asyncio.run(main())
        transport.close()
        assert json.loads(response.body)["id"] == "evt_next"
        assert server.accepted == 2


@pytest.mark.parametrize("loop", ["blocked", "reading"])
def test_bytes_on_an_idle_connection_are_never_the_next_answer_and_drop_it(loop: str) -> None:
    forged = b'HTTP/1.1 202 Forged\r\nContent-Length: 40\r\n\r\n{"id": "FORGED", "destination_ids": []}'
    sent = threading.Event()

    def handler(peer: Peer) -> None:
        request = peer.read_request()
        if request is None:
            return
        _answer(request, peer)
        if peer.index == 0:
            peer.wait(0.05)
            peer.send(forged)  # while idle
            sent.set()
        peer.serve(_answer)

    with RawServer(handler) as server:
        transport = LeanTransport(proxy=None)

        async def main() -> List[str]:
            first = await transport.send_async(_request(server.url(), "evt_1"))
            sent.wait(5)
            if loop == "blocked":
                time.sleep(0.1)  # the forged bytes wait in the socket, unseen by the protocol
            else:
                await asyncio.sleep(0.1)  # the protocol reads them while the connection is idle
            second = await transport.send_async(_request(server.url(), "evt_2"))
            return [json.loads(first.body)["id"], json.loads(second.body)["id"]]

        ids = asyncio.run(main())
        transport.close()
        assert ids == ["evt_1", "evt_2"]
        assert server.accepted == 2


def test_an_early_answer_without_close_still_drops_the_connection() -> None:
    def handler(peer: Peer) -> None:
        if peer.index == 0:
            if peer.read_head() is not None:  # the body is never read
                peer.send(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig")
                peer.wait(10.0)
            return
        peer.serve(_answer)

    with RawServer(handler) as server:
        transport = LeanTransport(proxy=None)

        async def main() -> List[HTTPResponse]:
            big = HTTPRequest("POST", server.url(), {}, b"u" * (24 << 20), 4.0)
            return [await transport.send_async(big), await transport.send_async(_request(server.url(), "evt_after", 2.0))]

        early, after = asyncio.run(main())
        transport.close()
    assert (early.status, early.body) == (413, b"big")
    assert json.loads(after.body)["id"] == "evt_after"  # on a new connection: the old one still owes 24 MiB
    assert server.accepted == 2


# -- the hostile cases through sdk.publish.event_async ------------------------------------------


def _stalls(peer: Peer) -> None:
    peer.serve(lambda request, peer: peer.wait(10.0))


def _resets_first(peer: Peer) -> None:
    if peer.index == 0:
        if peer.read_head() is not None:
            peer.reset()  # before any answer: retried
        return
    peer.serve(_answer)


def _trickles(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.trickle(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}", 0.1)


def _garbage(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.send(b"HTTP/1.1 202 OK\r\nContent-Length: -5\r\n\r\n{}")
        peer.wait(2.0)


@pytest.mark.parametrize(("handler", "error"), [(_stalls, TransportTimeout), (_trickles, TransportTimeout),
                                                (_garbage, Exception)])
def test_publish_async_ends_at_its_deadline_or_with_the_error(handler: Any, error: type) -> None:
    from minipub.errors import ProtocolError

    expected = ProtocolError if handler is _garbage else error
    with RawServer(handler) as server:
        sdk = _sdk(server.url(""), create_transport("lean-async", proxy=None), timeout_ms=600)
        started = time.monotonic()
        with pytest.raises(expected):
            asyncio.run(_publish(sdk, "evt_hostile"))
        elapsed = time.monotonic() - started
        sdk.close()
    assert elapsed < 0.6 + SLACK


def test_publish_async_retries_a_reset_before_the_answer_on_a_new_connection() -> None:
    with RawServer(_resets_first) as server:
        retries = RetryConfig("backoff", None, True)
        sdk = _sdk(server.url(""), LeanTransport(proxy=None), retry_config=retries)
        response = asyncio.run(_publish(sdk, "evt_retried"))
        sdk.close()
    assert response.id == "evt_retried"
    assert server.accepted == 2


def test_publish_async_a_reset_without_retries_is_connection_lost() -> None:
    with RawServer(_resets_first) as server:
        sdk = _sdk(server.url(""), LeanTransport(proxy=None))
        with pytest.raises(ConnectionLostError):
            asyncio.run(_publish(sdk, "evt_lost"))
        sdk.close()


def _plain_http(peer: Peer) -> None:
    if peer.sock.recv(4096):  # a TLS ClientHello, answered as a plain HTTP server answers garbage
        peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_publish_async_tls_to_a_plain_server_is_tls_error() -> None:
    with RawServer(_plain_http) as server:
        sdk = _sdk(f"https://127.0.0.1:{server.port}", LeanTransport(proxy=None))
        with pytest.raises(TLSError):
            asyncio.run(_publish(sdk, "evt_tls"))
        sdk.close()


def test_publish_async_refused_is_connect_error_saying_so_as_the_sync_path_does() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        sdk = _sdk(f"http://127.0.0.1:{port}", LeanTransport(proxy=None), retry_config=RetryConfig("none"))
        with pytest.raises(ConnectError) as sync_refusal:
            sdk.publish.event(tenant_id="acme", topic="t", data={}, id="evt_refused")
        with pytest.raises(ConnectError) as async_refusal:  # asyncio says "Connect call failed (...)"
            asyncio.run(_publish(sdk, "evt_refused"))
        sdk.close()
    assert str(async_refusal.value) == str(sync_refusal.value) == \
        f"could not connect to 127.0.0.1:{port}: [Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}"


def test_the_body_cap_on_the_async_path() -> None:
    def handler(peer: Peer) -> None:
        peer.serve(lambda request, peer: peer.respond(200, b"z" * 5000))

    with RawServer(handler) as server:
        transport = LeanTransport(proxy=None, max_body=1000)

        async def main() -> List[HTTPResponse]:
            return [await transport.send_async(_request(server.url(), f"evt_{n}")) for n in range(2)]

        responses = asyncio.run(main())
        transport.close()
    assert [(len(r.body), r.truncated) for r in responses] == [(1000, True)] * 2
    assert server.accepted == 2  # a truncated body: the connection is never reused


def test_bad_max_connections_is_a_configuration_error() -> None:
    for bad in (0, -1, 2.5, "8"):
        with pytest.raises(ConfigurationError, match="max_connections"):
            LeanTransport(max_connections=bad)  # type: ignore[arg-type]


def test_close_from_another_thread_closes_the_loops_connections() -> None:
    with RawServer(lambda peer: peer.serve(_answer)) as server:
        transport = LeanTransport(proxy=None)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            for n in range(3):
                asyncio.run_coroutine_threadsafe(transport.send_async(_request(server.url(), f"e{n}")), loop).result(10)
            transport.close()
            assert server.wait_finished(server.accepted), "a connection stayed open after close()"
            with pytest.raises(ConnectError, match="closed"):
                asyncio.run_coroutine_threadsafe(transport.send_async(_request(server.url(), "late")), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


def test_a_forked_child_keeps_none_of_the_parents_connections_open() -> None:
    with RawServer(lambda peer: peer.serve(_answer)) as server:
        transport = LeanTransport(proxy=None)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(transport.send_async(_request(server.url(), "evt_parent")))
            ready, told = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: its own loop, so its own connection; it lives on while the parent closes
                code = 2
                try:
                    response = asyncio.run(transport.send_async(_request(server.url(), "evt_child")))
                    code = 0 if json.loads(response.body)["id"] == "evt_child" else 3
                    os.write(told, b"x")
                    time.sleep(3.0)
                finally:
                    os._exit(code)
            assert os.read(ready, 1) == b"x"
            response = loop.run_until_complete(transport.send_async(_request(server.url(), "evt_parent_2")))
            assert json.loads(response.body)["id"] == "evt_parent_2"
            assert server.accepted == 2  # the parent's connection is still its own, the child made one
            loop.run_until_complete(transport.aclose())
            loop.run_until_complete(asyncio.sleep(0.05))
            # The server sees the parent's close at once: the child holds no copy of that socket.
            assert server.wait_finished(1, timeout=1.5), "the forked child kept the parent's connection open"
            assert os.waitpid(pid, 0)[1] == 0
        finally:
            loop.close()


def test_async_generators_finalized_with_the_loop_may_still_publish(server: OutpostServer) -> None:
    """``shutdown_asyncgens`` finalizes the pool's keeper and the program's own generators together,
    in any order: a generator whose cleanup publishes still gets its event through."""
    sent: List[str] = []
    held: List[Any] = []
    with SDK(server.api_key, server_url=server.url, proxy=None, timeout_ms=2000) as sdk:
        async def stream(k: int) -> Any:
            try:
                yield
            finally:
                await sdk.publish.event_async(tenant_id="acme", topic="t", data={"k": k})
                sent.append(f"{k}")

        async def main() -> None:
            for k in range(10):  # made before and after the keeper: finalized on both sides of it
                held.append(stream(k))
                await held[-1].__anext__()
            await sdk.publish.event_async(tenant_id="acme", topic="t", data={})
            for k in range(10, 20):
                held.append(stream(k))
                await held[-1].__anext__()

        asyncio.run(main())
    assert sorted(sent, key=int) == [str(k) for k in range(20)] and len(server.events) == 21


def test_a_closed_loop_is_not_kept_by_the_transport(server: OutpostServer) -> None:
    """Pools are per loop; once a loop ends, nothing of the transport keeps it (or its sockets)."""
    import gc
    import weakref

    loops: List[Any] = []
    with SDK(server.api_key, server_url=server.url, proxy=None) as sdk:
        async def one() -> None:
            loops.append(weakref.ref(asyncio.get_running_loop()))
            await sdk.publish.event_async(tenant_id="acme", topic="t", data={})

        for _ in range(5):
            asyncio.run(one())
        gc.collect()
        assert [ref() for ref in loops] == [None] * 5
        sdk.publish.event(tenant_id="acme", topic="t", data={})  # the sync pool is untouched
    assert len(server.events) == 6


def test_closed_before_its_first_async_send_refuses_it_too(server: OutpostServer) -> None:
    transport = LeanTransport(proxy=None)
    sdk = _sdk(server.url, transport)
    sdk.close()
    with pytest.raises(ConnectError, match="closed"):
        sdk.publish.event(tenant_id="acme", topic="t", data={})
    with pytest.raises(ConnectError, match="closed"):
        asyncio.run(_publish(sdk, "evt_after_close"))
    assert server.events == []


_LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop is not installed"))]


@pytest.mark.parametrize("kind", _LOOPS)
def test_a_connection_reset_right_after_the_connect_fails_at_once_as_minipubs_error(server: OutpostServer,
                                                                                  kind: str) -> None:
    """A server that resets each connection as it accepts it: the reset may reach the loop before the
    request is written. Each publish fails at once with minipub's own error: never the answer's
    timeout (asyncio drops a write to a closed transport) nor uvloop's RuntimeError."""
    from .faultproxy import FaultProxy

    async def main(sdk: SDK) -> List[str]:
        outcomes = []
        for n in range(300):
            try:
                await _publish(sdk, f"evt_reset_{n}")
            except (ConnectError, ConnectionLostError) as error:  # a lost write would be TransportTimeout
                outcomes.append(type(error).__name__)
            except BaseException as error:  # the guarantee under test: nothing else escapes
                outcomes.append(f"{type(error).__name__}: {error}")
        return outcomes

    with FaultProxy(server.port) as proxy, _sdk(proxy.url(server.url), "lean", timeout_ms=300) as sdk:
        proxy.down()
        run = asyncio.run if kind == "asyncio" else uvloop.run
        outcomes = run(main(sdk))
    assert set(outcomes) <= {"ConnectError", "ConnectionLostError"}, sorted(set(outcomes))
