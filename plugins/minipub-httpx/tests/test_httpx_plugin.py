"""What is particular to the httpx plugin: selection, HTTP/2 over TLS, a caller's client, configuration."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, Iterator, List

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from conftest import API_KEY

from minipub import SDK
from minipub.errors import ConfigurationError
from minipub.plugins import reset_autoload
from minipub.testing import OutpostServer
from minipub.testing.rawserver import Certificates, make_certificates
from minipub.transports import create_transport
from minipub.transports.httpclient import HTTPClientTransport
from minipub_httpx import HttpxTransport


def publish(sdk: SDK) -> Any:
    return sdk.publish.event(tenant_id="acme", topic="via.httpx", data={"n": 1})


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD")
    reset_autoload()
    yield
    reset_autoload()


def test_installed_it_is_every_clients_transport(autoload: None, server: OutpostServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with SDK(API_KEY, server_url=server.url) as sdk:
        assert isinstance(sdk.transport, HttpxTransport) and "httpx" in sdk.plugins.names  # type: ignore[union-attr]
        publish(sdk)
        publish(sdk)
    assert len(server.events) == 2 and len({r.client_port for r in server.requests}) == 1  # kept alive
    with SDK(API_KEY, server_url=server.url, transport="http.client") as sdk:
        assert isinstance(sdk.transport, HTTPClientTransport)
    monkeypatch.setenv("MINIPUB_HTTPX_DEFAULT", "0")
    with SDK(API_KEY, server_url=server.url) as sdk:  # the built-in default again
        assert type(sdk.transport) is type(create_transport())
    with SDK(API_KEY, server_url=server.url, transport="httpx", max_response_bytes=1234, proxy=None) as sdk:
        assert isinstance(sdk.transport, HttpxTransport) and sdk.transport.max_body == 1234
        publish(sdk)


def test_a_callers_client_is_used_and_left_open(server: OutpostServer) -> None:
    seen: List[str] = []
    client = httpx.Client(event_hooks={"request": [lambda request: seen.append(str(request.url))]})
    with SDK(API_KEY, server_url=server.url, transport=HttpxTransport(client)) as sdk:
        publish(sdk)
    assert seen == [server.url + "/publish"] and not client.is_closed
    client.close()
    with pytest.raises(ConfigurationError, match=r"configure TLS and proxies on your httpx\.Client"):
        HttpxTransport(httpx.Client(), ca_file="/etc/ssl/ca.pem")
    with pytest.raises(ConfigurationError, match="not an AsyncClient"):
        HttpxTransport(httpx.AsyncClient())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="proxy URL"):
        HttpxTransport(proxy="socks5://127.0.0.1:1080")


class H2Server:
    """A minimal HTTP/2 server over TLS (ALPN h2 only), built on the ``h2`` library, answering 202."""

    def __init__(self, certificates: Certificates) -> None:
        self.context = certificates.server_context()
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.requests: List[dict] = []
        self.protocols: List[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        with self.context.wrap_socket(raw, server_side=True) as sock:
            sock.settimeout(10)
            self.protocols.append(sock.selected_alpn_protocol() or "")
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            bodies: dict = {}
            headers: dict = {}
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = {k.decode() if isinstance(k, bytes) else k:
                                                    v.decode() if isinstance(v, bytes) else v
                                                    for k, v in event.headers}
                        bodies[event.stream_id] = b""
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        event_id = json.loads(bodies[event.stream_id])["id"]
                        self.requests.append({**headers[event.stream_id], "id": event_id})
                        payload = json.dumps({"id": event_id, "duplicate": False, "destination_ids": []}).encode()
                        conn.send_headers(event.stream_id, [(":status", "202"), ("content-type", "application/json"),
                                                            ("content-length", str(len(payload)))])
                        conn.send_data(event.stream_id, payload, end_stream=True)
                sock.sendall(conn.data_to_send())

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(Path(tmp_path_factory.mktemp("h2-tls")))


def test_http2_over_tls_when_h2_is_installed(certificates: Certificates) -> None:
    server = H2Server(certificates)
    try:
        with SDK(API_KEY, server_url=f"https://127.0.0.1:{server.port}/api/v1",
                 transport=HttpxTransport(ssl_context=certificates.client_context())) as sdk:
            first, second = publish(sdk), publish(sdk)
    finally:
        server.close()
    assert server.protocols == ["h2"]  # one connection, HTTP/2, two streams
    assert [r["id"] for r in server.requests] == [first.id, second.id]
    assert server.requests[0][":method"] == "POST" and server.requests[0][":path"] == "/api/v1/publish"
    assert server.requests[0]["authorization"] == "Bearer " + API_KEY
