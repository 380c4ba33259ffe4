"""The contract's connections: reuse (or one per request, as declared), stale idle connections,
``close()``, and one transport shared by threads."""

from __future__ import annotations

import threading
from typing import List

import pytest

from ..errors import TransportError
from ._contract_base import ContractBase, MakeTransport, Servers, echo, in_threads, make_request, publish_body
from .rawserver import IO_TIMEOUT, Peer
from .server import OutpostServer


class ConnectionContract(ContractBase):
    """Keep-alive as declared, stale connections replaced, ``close()`` final."""


    def test_sequential_sends_share_one_connection(self, servers: Servers, transports: MakeTransport) -> None:
        server = servers(lambda peer: peer.serve(echo))
        transport = transports()
        bodies = [transport.send(make_request(server.url(), b"%d" % i)).body for i in range(5)]
        if self._keepalive(transport):
            assert server.accepted == 1 and bodies == [b"0:%d" % i for i in range(5)]
        else:  # declared: a connection per request
            assert server.accepted == 5 and bodies == [b"%d:%d" % (i, i) for i in range(5)]

    def test_stale_idle_connection_is_replaced(self, servers: Servers, transports: MakeTransport) -> None:
        def handler(peer: Peer) -> None:
            if peer.index == 0:  # answer once as keep-alive, then close while idle
                request = peer.read_request()
                if request is not None:
                    echo(request, peer)
                return
            peer.serve(echo)

        server = servers(handler)
        transport = transports()
        assert transport.send(make_request(server.url(), b"a")).body == b"0:a"
        assert server.wait_finished(1), "the server did not close its idle connection"
        assert transport.send(make_request(server.url(), b"b")).body == b"1:b"
        assert server.accepted == 2 and [r.body for r in server.requests] == [b"a", b"b"]

    def test_close_releases_connections(self, servers: Servers, transports: MakeTransport) -> None:
        server = servers(lambda peer: peer.serve(echo))
        transport = transports()
        for _ in range(2):
            transport.send(make_request(server.url()))
        transport.close()
        assert server.wait_finished(server.accepted), "a connection stayed open after close()"

    def test_close_is_idempotent_and_final(self, servers: Servers, transports: MakeTransport) -> None:
        server = servers(lambda peer: peer.serve(echo))
        transport = transports()
        transport.send(make_request(server.url()))
        accepted = server.accepted
        transport.close()
        transport.close()
        with pytest.raises(TransportError):
            transport.send(make_request(server.url()))
        assert server.accepted == accepted


class ThreadsContract(ContractBase):
    """Eight threads on one transport."""

    def test_eight_threads_share_one_transport(self, outpost: OutpostServer, transports: MakeTransport) -> None:
        transport = transports()
        barrier = threading.Barrier(8, timeout=IO_TIMEOUT)
        statuses: List[int] = []
        lock = threading.Lock()

        def work(thread: int) -> None:
            barrier.wait()
            for i in range(20):
                response = transport.send(make_request(outpost.url + "/publish", publish_body(f"evt_t{thread}_{i}")))
                with lock:
                    statuses.append(response.status)

        assert in_threads(work, 8) == [] and statuses == [202] * 160
        assert len({request.body for request in outpost.requests}) == 160
        if self._keepalive(transport):
            assert len({request.client_port for request in outpost.requests}) <= 8
