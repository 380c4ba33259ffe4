"""minipub's transport contract, for a transport that speaks AMQP instead of HTTP.

The class inherits ``TransportContract``: each of its cases is either run here in its AMQP form
(same name, same guarantee: against the real RabbitMQ, through ``AmqpFaultProxy`` for faults and
TLS), inherited as it is (the proxy cases: this transport declares ``supports_proxy = False``, and
the contract's own fallback checks that an environment proxy is not used), or declared not to apply
in ``NOT_APPLICABLE``, with the reason. A case added to the contract later fails here until it is
placed in one of the three (``test_every_contract_case_is_placed``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Dict, List

import pytest
from amqp_proxy import AmqpFaultProxy
from conftest import Broker
from minipub_rabbitmq import RabbitMQTransport

from minipub import SDK
from minipub.errors import ConnectError, ConnectionLostError, ProtocolError, TLSError, TransportError, TransportTimeout
from minipub.retry import RetryConfig
from minipub.testing import TransportContract
from minipub.testing.contract import MakeTransport, _Servers
from minipub.testing.rawserver import Certificates, Peer
from minipub.testing.server import OutpostServer
from minipub.transports.base import HTTPRequest, Transport

PASSWORD = "c0ntract-amqp-" + "pw_" * 4
NOT_APPLICABLE: Dict[str, str] = {
    "test_status_lower_case_headers_and_exact_body": "no HTTP response: the answer is the broker's confirm, "
                                                     "returned as a fixed 202 marked x-minipub-queued",
    "test_no_content_response": "no HTTP response (see above)",
    "test_interim_100_continue_is_skipped": "no HTTP: there are no interim responses in AMQP",
    "test_redirects_are_returned_not_followed": "no HTTP: AMQP has no redirects",
    "test_body_over_the_cap_is_truncated_and_the_connection_dropped": "no response body is read: a confirm has "
                                                                      "none (max_body is accepted and ignored)",
    "test_body_at_the_cap_is_whole": "no response body (see above)",
    "test_close_mid_body_is_connection_lost": "no response body; its AMQP form, a connection cut before the "
                                              "confirm arrives, is test_reset_mid_response_is_connection_lost",
}
INHERITED = ("test_proxy_for_http_origin_with_credentials", "test_proxy_for_https_origin_via_connect",
             "test_proxy_refusing_the_tunnel_is_connect_error", "test_proxy_from_the_environment_and_no_proxy")


def _publish_request(event_id: str = "evt_contract", timeout: float = 5.0) -> HTTPRequest:
    body = json.dumps({"id": event_id, "tenant_id": "acme", "topic": "contract", "data": {"n": 1}}).encode()
    return HTTPRequest("POST", "http://ignored.invalid/publish", {"Content-Type": "application/json"}, body, timeout)


class TestRabbitMQContract(TransportContract):
    url: str
    queue: str
    broker: Broker

    for _name in NOT_APPLICABLE:
        locals()[_name] = None  # not collected: declared above, with the reason
    del _name

    @pytest.fixture(autouse=True)
    def _amqp(self, broker: Broker, test_queue: str) -> None:
        self.broker, self.url, self.queue = broker, broker.url, test_queue

    def make_transport(self, **options: Any) -> Transport:
        url = options.pop("url", self.url)
        return RabbitMQTransport(url, self.queue, **options)

    def queued(self, count: int) -> List[bytes]:
        channel = self.broker.channel()
        bodies: List[bytes] = []
        try:
            for _ in range(count + 1):
                method, _, body = channel.basic_get(self.queue, auto_ack=True)
                if method is None:
                    break
                bodies.append(body)
        finally:
            channel.connection.close()
        return bodies

    def _assert_environment_proxy_unused(self, outpost: OutpostServer, servers: _Servers, transports: MakeTransport,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        proxy = servers.proxy()
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.setenv("HTTPS_PROXY", proxy.url())
        monkeypatch.setenv("ALL_PROXY", proxy.url())
        with SDK(transport=transports()) as sdk:
            sdk.publish.event(tenant_id="acme", topic="contract", data={})
        assert proxy.accepted == 0 and len(self.queued(1)) == 1

    # -- the contract's cases in their AMQP form ----------------------------------------------

    def test_publish_round_trip_through_the_sdk(self, outpost: OutpostServer, transports: MakeTransport) -> None:
        with SDK(transport=transports(), retry_config=RetryConfig("none")) as sdk:
            response = sdk.publish.event(tenant_id="acme", topic="contract", data={"n": 1}, id="evt_round_trip")
        assert (response.id, response.duplicate, response.destination_ids) == ("evt_round_trip", None, None)
        (body,) = self.queued(1)
        assert json.loads(body)["id"] == "evt_round_trip" and outpost.requests == []

    def test_request_is_sent_exactly_as_given(self, servers: _Servers, transports: MakeTransport) -> None:
        given = _publish_request()
        given.body = given.body.replace(b"{", b"{ ", 1) + b"\n"  # any valid JSON, queued byte for byte
        assert transports().send(given).status == 202
        assert self.queued(1) == [given.body]

    def test_repr_never_shows_the_key(self, servers: _Servers, transports: MakeTransport) -> None:
        transport = transports(url=self.url.replace("guest:guest@", f"guest:{PASSWORD}@"))
        for text in (repr(transport), str(transport), transport.url):  # type: ignore[attr-defined]
            assert PASSWORD not in text and "***" in text

    def test_stalled_server_times_out(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port) as proxy:
            transport = transports(url=proxy.url())
            assert transport.send(_publish_request("evt_slow", timeout=30)).status == 202
            proxy.stall = True
            started = time.monotonic()
            with pytest.raises(TransportTimeout):
                transport.send(_publish_request("evt_stall", timeout=0.5))
            assert time.monotonic() - started < 0.5 + 5

    def test_refused_connection_is_connect_error(self, transports: MakeTransport) -> None:
        with socket.socket() as bound:
            bound.bind(("127.0.0.1", 0))
            port = bound.getsockname()[1]
            with pytest.raises(ConnectError) as caught:
                transports(url=f"amqp://guest:{PASSWORD}@127.0.0.1:{port}/").send(_publish_request())
        assert not isinstance(caught.value, TLSError) and PASSWORD not in str(caught.value)

    def test_sequential_sends_share_one_connection(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port) as proxy:
            transport = transports(url=proxy.url())
            for i in range(5):
                transport.send(_publish_request(f"evt_{i}"))
            assert proxy.accepted == 1
        assert [json.loads(b)["id"] for b in self.queued(5)] == [f"evt_{i}" for i in range(5)]

    def test_stale_idle_connection_is_replaced(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port) as proxy:
            transport = transports(url=proxy.url())
            transport.send(_publish_request("evt_a"))
            proxy.kill_all()
            transport.send(_publish_request("evt_b"))
            assert proxy.accepted == 2
        assert [json.loads(b)["id"] for b in self.queued(2)] == ["evt_a", "evt_b"]

    def test_close_releases_connections(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port) as proxy:
            transport = transports(url=proxy.url())
            transport.send(_publish_request())
            transport.close()
            deadline = time.monotonic() + 5
            while any(not c.dead.is_set() for c in proxy.connections) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert all(c.dead.is_set() for c in proxy.connections), "a connection stayed open after close()"

    def test_close_is_idempotent_and_final(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port) as proxy:
            transport = transports(url=proxy.url())
            transport.send(_publish_request())
            transport.close()
            transport.close()
            with pytest.raises(TransportError):
                transport.send(_publish_request())
            assert proxy.accepted == 1

    def test_closed_without_an_answer_is_connection_lost(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port, before=1.0) as proxy:
            with pytest.raises(ConnectionLostError):
                transports(url=proxy.url()).send(_publish_request())
            assert proxy.publishes == 1  # a fresh connection: not sent again
        assert self.queued(1) == []

    def test_closed_without_an_answer_on_a_reused_connection(self, servers: _Servers,
                                                             transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port) as proxy:
            transport = transports(url=proxy.url())
            transport.send(_publish_request("evt_first"))
            proxy.before = 1.0
            with pytest.raises(ConnectionLostError):
                transport.send(_publish_request("evt_second"))
            # Taken for a stale connection: sent once more, on a fresh one.
            assert (proxy.publishes, proxy.accepted) == (3, 2)

    def test_reset_mid_response_is_connection_lost(self, servers: _Servers, transports: MakeTransport) -> None:
        with AmqpFaultProxy(self.broker.port, after=1.0) as proxy, pytest.raises(ConnectionLostError):
            transports(url=proxy.url()).send(_publish_request("evt_unconfirmed"))
        assert [json.loads(b)["id"] for b in self.queued(1)] == ["evt_unconfirmed"]  # queued; the retry is safe

    def test_garbage_is_protocol_error(self, servers: _Servers, transports: MakeTransport) -> None:
        def handler(peer: Peer) -> None:
            peer.sock.recv(8)
            peer.send(b"SSH-2.0-OpenSSH_9.6 this is not AMQP\r\n\r\n")

        server = servers(handler)
        with pytest.raises(ProtocolError):
            transports(url=f"amqp://guest:guest@127.0.0.1:{server.port}/").send(_publish_request())

    def test_untrusted_certificate_is_tls_error_never_retried(
        self, servers: _Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        with AmqpFaultProxy(self.broker.port, tls=certificates.server_context()) as proxy:
            transport = transports(url=f"amqps://guest:guest@127.0.0.1:{proxy.port}/")
            retries = RetryConfig("backoff", retry_connection_errors=True, max_attempts=3)
            with SDK(transport=transport, retry_config=retries, sleep=lambda s: None) as sdk, \
                    pytest.raises(TLSError):
                sdk.publish.event(tenant_id="acme", topic="contract", data={})
            time.sleep(0.2)
            assert len(proxy.tls_errors) == 1 and proxy.accepted == 0

    def test_trusted_certificate_through_ssl_context(
        self, servers: _Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        with AmqpFaultProxy(self.broker.port, tls=certificates.server_context()) as proxy:
            transport = transports(url=f"amqps://guest:guest@127.0.0.1:{proxy.port}/",
                                   ssl_context=certificates.client_context())
            with SDK(transport=transport) as sdk:
                assert sdk.publish.event(tenant_id="acme", topic="contract", data={}, id="evt_tls").id == "evt_tls"
        assert [json.loads(b)["id"] for b in self.queued(1)] == ["evt_tls"]

    def test_client_certificate(self, servers: _Servers, transports: MakeTransport,
                                certificates: Certificates) -> None:
        with AmqpFaultProxy(self.broker.port, tls=certificates.server_context(require_client_cert=True)) as proxy:
            url = f"amqps://guest:guest@127.0.0.1:{proxy.port}/"
            with_cert = transports(url=url, ssl_context=certificates.client_context(with_client_cert=True))
            assert with_cert.send(_publish_request()).status == 202
            assert proxy.peer_certs == [certificates.client_name]
            without = transports(url=url, ssl_context=certificates.client_context())
            with pytest.raises((TLSError, ConnectionLostError)):  # TLS 1.3: an alert, or a reset
                without.send(_publish_request())
        assert len(self.queued(2)) == 1

    def test_eight_threads_share_one_transport(self, outpost: OutpostServer, transports: MakeTransport) -> None:
        transport = transports()
        barrier = threading.Barrier(8, timeout=10)
        failures: List[BaseException] = []

        def work(thread: int) -> None:
            try:
                barrier.wait()
                for i in range(20):
                    assert transport.send(_publish_request(f"evt_t{thread}_{i}")).status == 202
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads) and failures == []
        assert len({json.loads(b)["id"] for b in self.queued(160)}) == 160
        assert len(transport.connections()) <= 8  # type: ignore[attr-defined]


def test_every_contract_case_is_placed() -> None:
    cases = {name for name in dir(TransportContract) if name.startswith("test_")}
    mine = {name for name, value in vars(TestRabbitMQContract).items() if name.startswith("test_") and value}
    assert cases == mine | set(NOT_APPLICABLE) | set(INHERITED)
    assert not mine & set(NOT_APPLICABLE) and all(NOT_APPLICABLE.values())
    for name in NOT_APPLICABLE:
        assert getattr(TestRabbitMQContract, name) is None
