"""The hostile-server contract, run by every built-in transport (and by the httpx plugin's tests)."""

from __future__ import annotations

from typing import Any

from minipub.testing.contract import HostileServerContract
from minipub.transports import Transport
from minipub.transports.httpclient import HTTPClientTransport
from minipub.transports.lean import LeanTransport
from minipub.transports.urllib import UrllibTransport


class TestHostileLean(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return LeanTransport(**options)


class TestHostileHTTPClient(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return HTTPClientTransport(**options)


class TestHostileUrllib(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return UrllibTransport(**options)
