"""The contract's TLS: an untrusted certificate is ``TLSError`` (never retried), a trusted one
through ``ssl_context``, client certificates."""

from __future__ import annotations

import json

import pytest

from ..errors import ConnectError, ConnectionLostError, TLSError
from ..retry import RetryConfig
from ._contract_base import AUTHORIZATION, ContractBase, MakeTransport, Servers, assert_no_secret, make_request
from .certificates import Certificates
from .rawserver import outpost_like


class TLSContract(ContractBase):
    """Certificates made with the ``openssl`` command line, shared by the session."""


    def test_untrusted_certificate_is_tls_error_never_retried(
        self, servers: Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        server = servers(outpost_like, tls=certificates.server_context())
        retries = RetryConfig("backoff", retry_connection_errors=True, max_attempts=3)
        sdk = self._sdk(server.url("/api/v1"), transports(), retry_config=retries, sleep=lambda s: None)
        with sdk, pytest.raises(TLSError) as caught:
            sdk.publish.event(tenant_id="acme", topic="contract", data={})
        assert isinstance(caught.value, ConnectError)
        assert server.wait_finished(1) and server.accepted == 1 and server.requests == []
        assert_no_secret(caught.value)

    def test_trusted_certificate_through_ssl_context(
        self, servers: Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        server = servers(outpost_like, tls=certificates.server_context())
        transport = transports(ssl_context=certificates.client_context())
        with self._sdk(server.url("/api/v1"), transport) as sdk:
            response = sdk.publish.event(tenant_id="acme", topic="contract", data={}, id="evt_tls")
        assert response.id == "evt_tls"
        (seen,) = server.requests
        assert seen.header("authorization") == AUTHORIZATION and json.loads(seen.body)["id"] == "evt_tls"

    def test_client_certificate(
        self, servers: Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        server = servers(outpost_like, tls=certificates.server_context(require_client_cert=True))
        with_cert = transports(ssl_context=certificates.client_context(with_client_cert=True))
        assert with_cert.send(make_request(server.url("/publish"))).status == 202
        assert server.peer_certs == [certificates.client_name]
        without = transports(ssl_context=certificates.client_context())
        # Under TLS 1.3 the server's refusal can arrive as an alert or as a reset.
        with pytest.raises((TLSError, ConnectionLostError)):
            without.send(make_request(server.url("/publish")))
        assert len(server.requests) == 1
