"""minipub's hostile-server contract, kept by the httpx transport (HTTP/1.1 and with HTTP/2 offered)."""

from __future__ import annotations

from typing import Any

from minipub.testing.contract import HostileServerContract
from minipub.transports.base import Transport
from minipub_httpx import HttpxTransport


class TestHostileHttpx(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return HttpxTransport(**options)


class TestHostileHttpxHTTP1(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return HttpxTransport(http2=False, **options)
