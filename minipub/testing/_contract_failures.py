"""The contract's failures, each the same class on every transport: refused (``ConnectError``),
stalled (``TransportTimeout``), lost (``ConnectionLostError``), not HTTP (``ProtocolError``)."""

from __future__ import annotations

import socket
import time

import pytest

from ..errors import ConnectError, ConnectionLostError, ProtocolError, TLSError, TransportTimeout
from ._contract_base import ContractBase, MakeTransport, Servers, assert_no_secret, echo, make_request, read_one
from .rawserver import IO_TIMEOUT, ContractRequest, Peer


class TimeoutContract(ContractBase):
    """A stalled server is ``TransportTimeout``; a refused connection ``ConnectError``."""


    def test_stalled_server_times_out(self, servers: Servers, transports: MakeTransport) -> None:
        def reply(request: ContractRequest, peer: Peer) -> None:
            peer.wait(0.3 if request.body == b"slow" else IO_TIMEOUT)
            peer.respond(200, b"late but in time")

        server = servers(lambda peer: peer.serve(reply))
        transport = transports()
        # A long timeout first: a pooled connection must not keep it for the next request.
        assert transport.send(make_request(server.url(), b"slow", timeout=30)).body == b"late but in time"
        started = time.monotonic()
        with pytest.raises(TransportTimeout) as caught:
            transport.send(make_request(server.url(), b"stall", timeout=0.5))
        assert time.monotonic() - started < 0.5 + 5
        assert_no_secret(caught.value)

    def test_refused_connection_is_connect_error(self, transports: MakeTransport) -> None:
        with socket.socket() as bound:  # bound, not listening: connections are refused
            bound.bind(("127.0.0.1", 0))
            port = bound.getsockname()[1]
            with pytest.raises(ConnectError) as caught:
                transports().send(make_request(f"http://127.0.0.1:{port}/publish"))
        assert not isinstance(caught.value, TLSError)
        assert_no_secret(caught.value)


class LostConnectionContract(ContractBase):
    """Closes and resets before the whole answer are ``ConnectionLostError``; garbage
    ``ProtocolError``."""


    def test_closed_without_an_answer_is_connection_lost(self, servers: Servers, transports: MakeTransport) -> None:
        server = servers(read_one)
        with pytest.raises(ConnectionLostError) as caught:
            transports().send(make_request(server.url(), b"once"))
        assert [r.body for r in server.requests] == [b"once"]  # a fresh connection: not sent again
        assert_no_secret(caught.value)

    def test_closed_without_an_answer_on_a_reused_connection(
        self, servers: Servers, transports: MakeTransport
    ) -> None:
        def handler(peer: Peer) -> None:
            if peer.index == 0:
                request = peer.read_request()
                if request is not None:
                    echo(request, peer)
            peer.read_request()  # then read one more and close without answering

        server = servers(handler)
        transport = transports()
        assert transport.send(make_request(server.url(), b"first")).body == b"0:first"
        with pytest.raises(ConnectionLostError):
            transport.send(make_request(server.url(), b"second"))
        # A keep-alive transport takes the close for a stale connection and sends once more, fresh.
        resent = [b"second", b"second"] if self._keepalive(transport) else [b"second"]
        assert [r.body for r in server.requests] == [b"first", *resent]
        assert server.accepted == 2

    def test_reset_mid_response_is_connection_lost(self, servers: Servers, transports: MakeTransport) -> None:
        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                peer.wait(0.05)
                peer.reset()

        server = servers(handler)
        with pytest.raises(ConnectionLostError):
            transports().send(make_request(server.url()))
        assert len(server.requests) == 1

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    def test_close_mid_body_is_connection_lost(
        self, servers: Servers, transports: MakeTransport, framing: str
    ) -> None:
        head = b"Content-Length: 1000" if framing == "content-length" else b"Transfer-Encoding: chunked"
        part = b"0123456789" if framing == "content-length" else b"3e8\r\n0123456789"

        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                peer.send(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n" + part)  # then a clean close

        server = servers(handler)
        with pytest.raises(ConnectionLostError):
            transports().send(make_request(server.url()))
        assert len(server.requests) == 1

    def test_garbage_is_protocol_error(self, servers: Servers, transports: MakeTransport) -> None:
        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                peer.send(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")

        server = servers(handler)
        with pytest.raises(ProtocolError) as caught:
            transports().send(make_request(server.url()))
        assert_no_secret(caught.value)
