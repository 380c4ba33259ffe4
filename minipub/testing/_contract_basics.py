"""The contract's round trips: statuses, headers and bodies exactly, the request exactly as given,
no redirect followed, the body cap."""

from __future__ import annotations

import pytest

from ..errors import APIError
from ..transports.base import HTTPRequest, HTTPResponse
from ._contract_base import (
    API_KEY,
    AUTHORIZATION,
    TRANSPORT_HEADERS,
    ContractBase,
    MakeTransport,
    Servers,
    assert_no_secret,
    echo,
    make_request,
)
from .rawserver import ContractRequest, Peer
from .server import OutpostServer


class RoundTripContract(ContractBase):
    """A publish through the SDK; responses and requests byte for byte; redirects returned."""

    def test_publish_round_trip_through_the_sdk(self, outpost: OutpostServer, transports: MakeTransport) -> None:
        with self._sdk(outpost.url, transports()) as sdk:
            response = sdk.publish.event(tenant_id="acme", topic="contract", data={"n": 1}, id="evt_round_trip")
        assert (response.id, response.duplicate) == ("evt_round_trip", False)
        assert response.destination_ids == ("des_embedded",)
        (request,) = outpost.requests
        assert request.method == "POST" and request.path.endswith("/publish")
        assert request.headers["authorization"] == "Bearer ***"  # arrived (the server redacts it)
        assert request.json["id"] == "evt_round_trip" and len(outpost.events) == 1

    @pytest.mark.parametrize("framing", ["content-length", "chunked", "close"])
    def test_status_lower_case_headers_and_exact_body(
        self, servers: Servers, transports: MakeTransport, framing: str
    ) -> None:
        body = bytes(range(256)) * 7 + b"\r\n0\r\n\r\n"  # binary, with chunk-like bytes inside

        def reply(request: ContractRequest, peer: Peer) -> None:
            peer.respond(202, body, [("X-Contract-Case", "MiXeD"), ("Content-Type", "application/octet-stream")],
                         framing=framing)

        server = servers(lambda peer: peer.serve(reply))
        transport = transports()
        for _ in range(2):
            response = transport.send(make_request(server.url("/publish")))
            assert isinstance(response, HTTPResponse)
            assert (response.status, response.body, response.truncated) == (202, body, False)
            assert response.headers["x-contract-case"] == "MiXeD"
            assert all(name == name.lower() for name in response.headers)
        reused = self._keepalive(transport) and framing != "close"
        assert server.accepted == (1 if reused else 2)

    def test_no_content_response(self, servers: Servers, transports: MakeTransport) -> None:
        server = servers(lambda peer: peer.serve(lambda request, peer: peer.respond(204)))
        transport = transports()
        for _ in range(2):
            response = transport.send(make_request(server.url()))
            assert (response.status, response.body, response.truncated) == (204, b"", False)
        assert server.accepted == (1 if self._keepalive(transport) else 2)

    def test_interim_100_continue_is_skipped(self, servers: Servers, transports: MakeTransport) -> None:
        def reply(request: ContractRequest, peer: Peer) -> None:
            peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            peer.respond(202, b"{}")

        server = servers(lambda peer: peer.serve(reply))
        response = transports().send(make_request(server.url()))
        assert (response.status, response.body) == (202, b"{}")

    # -- the request as given -----------------------------------------------------------------

    @pytest.mark.parametrize("method", ["POST", "PUT"])
    def test_request_is_sent_exactly_as_given(self, servers: Servers, transports: MakeTransport, method: str) -> None:
        server = servers(lambda peer: peer.serve(echo))
        given = {"Authorization": AUTHORIZATION, "Content-Type": "application/json", "Accept": "application/json",
                 "User-Agent": "contract/1.0", "Idempotency-Key": "evt_1", "X-Trace": 'a b,c;d="e"'}
        body = bytes(range(256)) * 3
        response = transports().send(HTTPRequest(method, server.url("/api/v1/publish?x=1&y=%20z"), given, body, 5))
        assert response.status == 200
        (seen,) = server.requests
        assert (seen.method, seen.target, seen.body) == (method, "/api/v1/publish?x=1&y=%20z", body)
        names = [name.lower() for name, _ in seen.headers]
        assert len(names) == len(set(names)), f"a header was sent twice: {names}"
        for name, value in given.items():
            assert seen.header(name) == value, name
        extra = set(names) - {name.lower() for name in given}
        assert extra <= TRANSPORT_HEADERS, f"headers nobody asked for: {sorted(extra - TRANSPORT_HEADERS)}"
        assert seen.header("host") == f"127.0.0.1:{server.port}"
        assert seen.header("content-length") in (str(len(body)), None)

    def test_repr_never_shows_the_key(self, servers: Servers, transports: MakeTransport) -> None:
        server = servers(lambda peer: peer.serve(echo))
        transport = transports()
        transport.send(make_request(server.url()))
        assert_no_secret(transport)
        if self._proxies(transport):
            with_proxy = transports(proxy=f"http://user:{API_KEY}@127.0.0.1:{server.port}")
            assert_no_secret(with_proxy)


    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    def test_redirects_are_returned_not_followed(
        self, servers: Servers, transports: MakeTransport, status: int
    ) -> None:
        elsewhere = servers(lambda peer: peer.serve(echo))
        location = elsewhere.url("/publish")
        origin = servers(lambda peer: peer.serve(lambda r, p: p.respond(status, b"moved", [("Location", location)])))
        transport = transports()
        response = transport.send(make_request(origin.url("/publish")))
        assert (response.status, response.headers["location"], response.body) == (status, location, b"moved")
        with self._sdk(origin.url(), transport) as sdk, pytest.raises(APIError) as caught:
            sdk.publish.event(tenant_id="acme", topic="contract", data={})
        assert caught.value.status_code == status
        assert elsewhere.accepted == 0, "the key went to the redirect target"


class BodyCapContract(ContractBase):
    """``max_body``: a longer body is truncated and its connection dropped; one at the cap is whole."""


    @pytest.mark.parametrize("framing", ["content-length", "chunked", "close"])
    def test_body_over_the_cap_is_truncated_and_the_connection_dropped(
        self, servers: Servers, transports: MakeTransport, framing: str
    ) -> None:
        big = bytes(range(256)) * 20

        def reply(request: ContractRequest, peer: Peer) -> None:
            if request.body == b"big":
                peer.respond(200, big, framing=framing)
            else:
                peer.respond(200, b"small")

        server = servers(lambda peer: peer.serve(reply))
        transport = transports(max_body=1000)
        first = transport.send(make_request(server.url(), b"big"))
        assert (first.status, first.truncated, first.body) == (200, True, big[:1000])
        second = transport.send(make_request(server.url(), b"small"))
        assert (second.status, second.truncated, second.body) == (200, False, b"small")
        assert server.accepted == 2, "a connection with an unread body was reused"

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    def test_body_at_the_cap_is_whole(self, servers: Servers, transports: MakeTransport, framing: str) -> None:
        body = b"x" * 1000
        server = servers(lambda peer: peer.serve(lambda r, p: p.respond(200, body, framing=framing)))
        transport = transports(max_body=1000)
        for _ in range(2):
            response = transport.send(make_request(server.url()))
            assert (response.truncated, response.body) == (False, body)
        assert server.accepted == (1 if self._keepalive(transport) else 2)
