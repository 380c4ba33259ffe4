"""The transport contract for the built-in transports, and what is particular to each."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minipub.errors import ConfigurationError, ProtocolError
from minipub.testing import TransportContract
from minipub.testing.contract import (
    AUTHORIZATION,
    Certificates,
    ContractRequest,
    Peer,
    RawServer,
    make_certificates,
    outpost_like,
)
from minipub.transports import HTTPRequest, HTTPResponse, Transport
from minipub.transports.httpclient import HTTPClientTransport
from minipub.transports.proxy import Proxy, bypassed, parse_proxy, proxy_for
from minipub.transports.urllib import UrllibTransport

ROOT = Path(__file__).resolve().parents[1]


class TestHTTPClientTransport(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return HTTPClientTransport(**options)


class TestUrllibTransport(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return UrllibTransport(**options)


class _DirectTransport:
    """A transport as a third party would write one: no minipub base class, and no proxies."""

    supports_proxy = False

    def __init__(self, **options: Any) -> None:
        self._inner = HTTPClientTransport(proxy=None, **options)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return self._inner.send(request)

    def close(self) -> None:
        self._inner.close()


class TestDirectTransport(TransportContract):
    """``supports_proxy = False``: only the proxy tests run again; they check the proxy is never used."""

    def make_transport(self, **options: Any) -> Transport:
        return _DirectTransport(**options)


for _name in dir(TransportContract):
    if _name.startswith("test_") and "proxy" not in _name:
        setattr(TestDirectTransport, _name, None)  # pytest collects only callables


# -- minipub.testing --------------------------------------------------------------------------


def test_importing_minipub_testing_does_not_import_pytest() -> None:
    script = (
        "import sys, minipub.testing as t\n"
        "assert 'pytest' not in sys.modules and 'minipub.testing.contract' not in sys.modules\n"
        "assert t.TransportContract.__name__ == 'TransportContract' and 'pytest' in sys.modules\n"
        "try:\n    t.Nope\nexcept AttributeError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "has no attribute 'Nope'" in done.stdout


# -- proxy selection --------------------------------------------------------------------------

labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
hostnames = st.lists(labels, min_size=1, max_size=4).map(lambda parts: ".".join([*parts, "example"]))
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
hosts = st.one_of(hostnames, ipv4)
ports = st.integers(1, 65535)
# Entries that can never match a host above (another top-level name).
unrelated = st.lists(st.lists(labels, min_size=1, max_size=3).map(lambda p: ".".join([*p, "invalid"])), max_size=3)


def _listed(entry: str, others: list, where: int) -> str:
    entries = list(others)
    entries.insert(where % (len(entries) + 1), entry)
    return " , ".join(entries)


@given(host=hosts, port=ports, others=unrelated, where=st.integers(0, 3))
def test_no_proxy_star_bypasses_everything(host: str, port: int, others: list, where: int) -> None:
    assert bypassed(host, port, _listed("*", others, where))


@given(host=hostnames, port=ports, sub=labels, others=unrelated, where=st.integers(0, 3),
       form=st.sampled_from(["{h}", ".{h}", "*.{h}", "{h}:{p}", ".{h}:{p}"]), upper=st.booleans())
def test_no_proxy_entry_matches_the_host_and_its_subdomains(
    host: str, port: int, sub: str, others: list, where: int, form: str, upper: bool
) -> None:
    entry = form.format(h=host, p=port)
    no_proxy = _listed(entry.upper() if upper else entry, others, where)
    assert bypassed(host, port, no_proxy)
    assert bypassed(f"{sub}.{host}".upper(), port, no_proxy)


@given(host=hosts, port=ports, other=ports, others=unrelated)
def test_no_proxy_entry_for_another_port_does_not_match(host: str, port: int, other: int, others: list) -> None:
    assume(other != port)
    assert not bypassed(host, port, ",".join([f"{host}:{other}", *others]))


@given(prefix=labels, host=hostnames, port=ports)
def test_no_proxy_matches_on_name_boundaries_only(prefix: str, host: str, port: int) -> None:
    assert not bypassed(prefix + host, port, host)  # evilexample.com is not example.com
    assert not bypassed(host, port, f"{prefix}.{host}")  # a subdomain entry does not cover its parent


@given(host=hosts, port=ports, others=unrelated)
def test_no_proxy_without_a_matching_entry_does_not_bypass(host: str, port: int, others: list) -> None:
    assert not bypassed(host, port, ",".join(others))
    assert not bypassed(host, port, " , ,")


@pytest.mark.parametrize(
    ("host", "no_proxy", "expected"),
    [("::1", "::1", True), ("[::1]", "::1", True), ("::1", "[::1]", True), ("::1", "[::1]:8080", True),
     ("::1", "[::1]:9090", False), ("::1", "::2", False), ("fe80::1", "[fe80::1]:8080", True)],
)
def test_no_proxy_ipv6(host: str, no_proxy: str, expected: bool) -> None:
    assert bypassed(host, 8080, no_proxy) is expected


def test_parse_proxy_credentials_and_ports() -> None:
    expected = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert parse_proxy("http://us%40er:p%3Ass@proxy.test:3128") == Proxy("proxy.test", 3128, expected)
    assert parse_proxy("proxy.test:3128") == Proxy("proxy.test", 3128, None)  # scheme optional
    assert parse_proxy("http://proxy.test") == Proxy("proxy.test", 80, None)
    assert parse_proxy("http://user@proxy.test").authorization == "Basic " + base64.b64encode(b"user:").decode()
    assert parse_proxy("http://[::1]:3128") == Proxy("::1", 3128, None)


@pytest.mark.parametrize(
    "url", ["socks5://proxy.test:1080", "http://", "http://user:pw@proxy.test:99999", "https://user:pw@proxy.test:443"]
)
def test_parse_proxy_rejects_what_it_cannot_use(url: str) -> None:
    with pytest.raises(ConfigurationError, match="proxy URL") as caught:
        parse_proxy(url)
    assert "pw" not in str(caught.value)


def test_proxy_repr_hides_credentials() -> None:
    proxy = parse_proxy("http://user:hunter2@proxy.test:3128")
    assert "hunter2" not in repr(proxy) and "dXNlcjpodW50ZXIy" not in repr(proxy)
    assert repr(proxy) == "Proxy(host='proxy.test', port=3128, authorization='***')"


def test_proxy_for_reads_the_environment_like_curl() -> None:
    env = {"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2", "HTTPS_PROXY": "http://secure:3",
           "ALL_PROXY": "http://all:4", "NO_PROXY": "skip.test"}
    assert proxy_for("http", "a.test", 80, env) == Proxy("lower", 1, None)  # lower case first
    assert proxy_for("https", "a.test", 443, env) == Proxy("secure", 3, None)
    assert proxy_for("https", "a.test", 443, {"ALL_PROXY": "http://all:4"}) == Proxy("all", 4, None)
    assert proxy_for("http", "www.skip.test", 80, env) is None
    assert proxy_for("http", "a.test", 80, {}) is None


def test_proxy_for_ignores_http_proxy_under_cgi() -> None:
    cgi = {"REQUEST_METHOD": "POST", "HTTP_PROXY": "http://from-a-request-header:1"}  # httpoxy
    assert proxy_for("http", "a.test", 80, cgi) is None
    assert proxy_for("http", "a.test", 80, {**cgi, "http_proxy": "http://mine:2"}) == Proxy("mine", 2, None)
    assert proxy_for("https", "a.test", 443, {**cgi, "HTTPS_PROXY": "http://mine:3"}) == Proxy("mine", 3, None)


@pytest.mark.parametrize("make", [HTTPClientTransport, UrllibTransport])
def test_a_bad_proxy_url_fails_when_the_transport_is_made(make: Callable[..., Transport]) -> None:
    with pytest.raises(ConfigurationError, match="proxy URL"):
        make(proxy="ftp://proxy.test")


# -- TLS options ------------------------------------------------------------------------------

BUILTINS: Dict[str, Callable[..., Transport]] = {"http.client": HTTPClientTransport, "urllib": UrllibTransport}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _publish(transport: Transport, server: RawServer) -> HTTPResponse:
    request = HTTPRequest("POST", server.url("/publish"), {"Authorization": AUTHORIZATION}, b"{}", 5)
    try:
        return transport.send(request)
    finally:
        transport.close()


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_ca_file_option(certificates: Certificates, name: str) -> None:
    with RawServer(outpost_like, tls=certificates.server_context()) as server:
        assert _publish(BUILTINS[name](ca_file=certificates.server_cert), server).status == 202


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_client_cert_options(certificates: Certificates, name: str) -> None:
    with RawServer(outpost_like, tls=certificates.server_context(require_client_cert=True)) as server:
        transport = BUILTINS[name](ca_file=certificates.server_cert, client_cert=certificates.client_cert,
                                   client_key=certificates.client_key)
        assert _publish(transport, server).status == 202
    assert server.peer_certs == [certificates.client_name]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_unreadable_tls_files_are_a_configuration_error(certificates: Certificates, name: str) -> None:
    server = RawServer(outpost_like, tls=certificates.server_context())
    with server, pytest.raises(ConfigurationError, match="ca_file/client_cert/client_key"):
        _publish(BUILTINS[name](ca_file=str(ROOT / "no-such-ca.pem")), server)
    assert server.accepted == 0


def test_urllib_uses_the_given_opener_as_is() -> None:
    def reply(request: ContractRequest, peer: Peer) -> None:
        peer.respond(200, (request.header("x-opener") or "").encode(), [("Content-Type", "text/plain")])

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.addheaders = [("X-Opener", "mine")]
    with RawServer(lambda peer: peer.serve(reply)) as server:
        assert _publish(UrllibTransport(opener=opener), server).body == b"mine"


@pytest.mark.parametrize("length", ["-5", "5, 6", "abc"])
def test_urllib_with_the_callers_opener_still_keeps_the_content_length_rule(length: str) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nhello".encode())
            peer.sock.shutdown(socket.SHUT_WR)

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # stdlib handlers read the response
    with RawServer(handler) as server, pytest.raises(ProtocolError):
        _publish(UrllibTransport(opener=opener), server)


@pytest.mark.parametrize("name", ["lean", "http.client", "urllib"])
def test_a_refused_connection_names_the_host_and_port(name: str) -> None:
    from minipub import SDK, RetryConfig
    from minipub.errors import ConnectError

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with SDK("sk_test_refused", server_url=f"http://127.0.0.1:{port}/api/v1", transport=name, proxy=None,
             retry_config=RetryConfig("none")) as sdk, pytest.raises(ConnectError) as caught:
        sdk.publish.event(tenant_id="t", topic="x", data={})
    assert f"could not connect to 127.0.0.1:{port}" in str(caught.value)
