"""The hostile-server contract, run by every built-in transport and by the httpx plugin when it is installed."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from typing import Any

import pytest

from minipub import SDK
from minipub.errors import ProtocolError
from minipub.testing.contract import API_KEY, ContractRequest, HostileServerContract, Peer, RawServer
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


# -- no lazy import may race ------------------------------------------------------------------

_RACE = r"""
import sys, threading
import minipub
from minipub.transports import HTTPRequest, create_transport

url, name = sys.argv[1], sys.argv[2]
transport = create_transport(name, proxy=None)
started = threading.Event()
failures = []

def publish():
    for n in range(400):
        try:
            transport.send(HTTPRequest("POST", url, {"Content-Type": "application/json"}, b"{}", 5.0))
        except minipub.errors.MinipubError:
            pass
        except BaseException as exc:
            failures.append(repr(exc))
        started.set()

worker = threading.Thread(target=publish)
worker.start()
started.wait(5)
import ssl  # noqa: E402 - while the worker publishes
worker.join(30)
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def _close_after_each(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.respond(202, b"{}", close=True)  # a new connection for every request


@pytest.mark.parametrize("name", ["lean", "http.client", "urllib"])
def test_importing_ssl_while_publishing_raises_nothing(name: str) -> None:
    with RawServer(_close_after_each) as server:
        for _ in range(4):
            run = subprocess.run([sys.executable, "-c", _RACE, server.url("/publish"), name],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


# -- the answer belongs to this request ---------------------------------------------------------


def _answers_for_another_event(peer: Peer) -> None:
    def reply(request: ContractRequest, peer: Peer) -> None:
        peer.respond(202, b'{"id": "evt_someone_else", "duplicate": false, "destination_ids": []}',
                     [("Content-Type", "application/json")])

    peer.serve(reply)


@pytest.mark.parametrize("name", ["lean", "http.client", "urllib"])
def test_an_answer_for_another_event_id_is_a_protocol_error_never_retried(name: str) -> None:
    with RawServer(_answers_for_another_event) as server:
        with SDK(API_KEY, server_url=server.url(""), transport=name, timeout_ms=2000) as sdk, \
                pytest.raises(ProtocolError, match="evt_someone_else"):
            sdk.publish.event(tenant_id="acme", topic="t", data={"n": 1}, id="evt_mine")
        assert len(server.requests) == 1


if find_spec("minipub_httpx") is not None and find_spec("httpx") is not None:  # the plugin, when installed

    class TestHostileHttpx(HostileServerContract):
        def make_transport(self, **options: Any) -> Transport:
            from minipub_httpx import HttpxTransport

            return HttpxTransport(http2=False, **options)
