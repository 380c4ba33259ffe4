"""minipub's transport contract, passed by the httpx transport: its own clients, HTTP/1.1 only, and a caller's client."""

from __future__ import annotations

from typing import Any

import httpx

from minipub.testing import TransportContract
from minipub.transports.base import Transport
from minipub_httpx import HttpxTransport


class TestHttpxTransport(TransportContract):
    """The plugin's default: its own clients, HTTP/2 offered (``h2`` is installed here)."""

    def make_transport(self, **options: Any) -> Transport:
        transport = HttpxTransport(**options)
        assert transport.http2
        return transport


class TestHttpxTransportHTTP1(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return HttpxTransport(http2=False, **options)


class CallersClient(HttpxTransport):
    """A caller's ``httpx.Client``: TLS is the client's; it goes direct (no proxy), as configured."""

    supports_proxy = False

    def __init__(self, **options: Any) -> None:
        verify = options.pop("ssl_context", None) or True
        self.client = httpx.Client(verify=verify, trust_env=False, http2=True)
        super().__init__(self.client, **options)

    def close(self) -> None:
        super().close()
        self.client.close()  # the caller's to close, as the caller would


class TestHttpxTransportWithACallersClient(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return CallersClient(**options)
