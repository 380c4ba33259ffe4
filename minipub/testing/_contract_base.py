"""What every mixin of the contracts shares: the key, requests to send, servers started for one
test (closed after it), the certificates of the session, and the two bases (``TransportUnderTest``
for both contracts, ``ContractBase`` for ``TransportContract``'s mixins)."""

from __future__ import annotations

import json
import ssl
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import pytest

from ..client import SDK
from ..retry import RetryConfig
from ..transports.base import HTTPRequest, Transport
from .certificates import Certificates, make_certificates
from .proxyserver import ContractProxy
from .rawserver import ContractRequest, Handler, Peer, RawServer
from .server import OutpostServer

__all__ = ["API_KEY", "AUTHORIZATION", "NO_RETRY", "TRANSPORT_HEADERS", "MakeTransport", "Servers",
           "TransportUnderTest", "ContractBase", "make_request", "echo", "read_one", "publish_body",
           "assert_no_secret", "in_threads"]

#: The admin key the contract's servers accept; it must never show in a repr.
API_KEY = "sk_contract_" + "k3y_" * 6
AUTHORIZATION = "Bearer " + API_KEY
NO_RETRY = RetryConfig("none")
#: Headers a transport may add on its own (framing, connection management, Host).
TRANSPORT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                               "accept-encoding", "te"})
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")

MakeTransport = Callable[..., Transport]


def make_request(url: str, body: bytes = b"{}", *, method: str = "POST", timeout: float = 5.0,
                 headers: Optional[Mapping[str, str]] = None) -> HTTPRequest:
    """A request as the SDK sends a publish, with the contract's key."""
    base = {"Authorization": AUTHORIZATION, "Content-Type": "application/json", "Accept": "application/json"}
    return HTTPRequest(method, url, {**base, **(headers or {})}, body, timeout)


def echo(request: ContractRequest, peer: Peer) -> None:
    """Reply 200 naming the connection and echoing the body: ``<connection>:<body>``."""
    peer.respond(200, b"%d:%s" % (peer.index, request.body), [("Content-Type", "text/plain")])


def read_one(peer: Peer) -> None:
    """Read one request, then close without answering."""
    peer.read_request()


def publish_body(event_id: str) -> bytes:
    return json.dumps({"id": event_id, "tenant_id": "acme", "topic": "contract", "data": {"n": 1}}).encode()


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        assert API_KEY not in str(text), "the admin key leaked"
        assert API_KEY not in repr(text), "the admin key leaked"


def in_threads(work: Callable[[int], None], count: int, timeout: float = 30.0) -> List[BaseException]:
    """Run ``work(0)`` ... ``work(count - 1)`` each in a thread of its own; what they raised (a hung
    thread fails the test)."""
    failures: List[BaseException] = []
    lock = threading.Lock()

    def run(number: int) -> None:
        try:
            work(number)
        except BaseException as exc:  # reported to the test's thread
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return failures


class Servers:
    """Starts raw servers and proxies for one test; closes them after it."""

    def __init__(self) -> None:
        self.started: List[RawServer] = []

    def __call__(self, handler: Handler, *, tls: Optional[ssl.SSLContext] = None) -> RawServer:
        server = RawServer(handler, tls=tls)
        self.started.append(server)
        return server.start()

    def proxy(self, *, refuse_connect: int = 0) -> ContractProxy:
        proxy = ContractProxy(refuse_connect=refuse_connect)
        self.started.append(proxy)
        proxy.start()
        return proxy


_certificates: Dict[str, Certificates] = {}
_certificates_lock = threading.Lock()


def _shared_certificates(factory: pytest.TempPathFactory) -> Certificates:
    """One set of certificates per test session (making RSA keys takes a while)."""
    with _certificates_lock:
        key = str(factory.getbasetemp())
        if key not in _certificates:
            _certificates[key] = make_certificates(factory.mktemp("contract-tls"))
        return _certificates[key]


class TransportUnderTest:
    """What both contracts share: ``make_transport`` to define, no proxy variables, and the
    ``transports`` fixture (each transport made in a test is closed after it)."""

    def make_transport(self, **options: Any) -> Transport:
        """Build the transport under test with these options."""
        raise NotImplementedError("define make_transport(self, **options) returning your transport")

    @pytest.fixture(autouse=True)
    def _no_proxy_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in _PROXY_ENV:
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)

    @pytest.fixture
    def transports(self) -> Iterator[MakeTransport]:
        made: List[Transport] = []

        def make(**options: Any) -> Transport:
            transport = self.make_transport(**options)
            made.append(transport)
            return transport

        yield make
        for transport in made:
            transport.close()


class ContractBase(TransportUnderTest):
    """The fixtures and helpers of ``TransportContract``'s mixins."""

    @pytest.fixture
    def outpost(self) -> Iterator[OutpostServer]:
        with OutpostServer(api_key=API_KEY, processing_wait=0.5) as server:
            yield server

    @pytest.fixture
    def servers(self) -> Iterator[Servers]:
        servers = Servers()
        yield servers
        for server in servers.started:
            server.close()
        errors = [error for server in servers.started for error in server.errors]
        assert not errors, f"the contract's servers failed: {errors}"

    @pytest.fixture
    def certificates(self, tmp_path_factory: pytest.TempPathFactory) -> Certificates:
        return _shared_certificates(tmp_path_factory)

    @staticmethod
    def _keepalive(transport: Transport) -> bool:
        return bool(getattr(transport, "supports_keepalive", True))

    @staticmethod
    def _proxies(transport: Transport) -> bool:
        return bool(getattr(transport, "supports_proxy", True))

    def _sdk(self, url: str, transport: Transport, **options: Any) -> SDK:
        options.setdefault("retry_config", NO_RETRY)
        return SDK(API_KEY, server_url=url, transport=transport, timeout_ms=5000, **options)
