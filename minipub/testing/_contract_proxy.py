"""The contract's proxies: forwarding with credentials, ``CONNECT`` tunnels, ``NO_PROXY``, and
the check that a transport which never uses a proxy goes direct."""

from __future__ import annotations

import base64
import functools
import inspect
from typing import Any, Callable

import pytest

from ..errors import ConnectError, TLSError
from ._contract_base import AUTHORIZATION, ContractBase, MakeTransport, Servers, assert_no_secret, make_request
from .certificates import Certificates
from .rawserver import outpost_like
from .server import OutpostServer

#: What the direct-instead check takes (``ProxyContract._assert_environment_proxy_unused``).
_DIRECT_CHECK = ("outpost", "servers", "transports", "monkeypatch")

Case = Callable[..., None]


def proxy_case(test: Case) -> Case:
    """A proxy case: run as written for a transport that uses proxies; for one declaring
    ``supports_proxy = False``, the check that it goes direct although the environment names a
    proxy runs instead. The case asks for the fixtures it uses; the check's are added."""
    signature = inspect.signature(test)
    taken = list(signature.parameters)[1:]

    @functools.wraps(test)
    def case(self: ProxyContract, **fixtures: Any) -> None:
        if self._proxies(fixtures["transports"]()):
            test(self, **{name: fixtures[name] for name in taken})
        else:
            self._assert_environment_proxy_unused(*(fixtures[name] for name in _DIRECT_CHECK))

    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in _DIRECT_CHECK
             if name not in signature.parameters]
    case.__signature__ = signature.replace(  # type: ignore[attr-defined]  # what pytest reads for fixtures
        parameters=[*signature.parameters.values(), *extra])
    return case


class ProxyContract(ContractBase):
    """Proxies named by URL or by the environment, with credentials, for http:// and (``CONNECT``)
    https:// origins, and ``NO_PROXY``; a transport declaring ``supports_proxy = False`` is checked
    to go direct instead (``_assert_environment_proxy_unused``, which a subclass may redefine)."""

    def _assert_environment_proxy_unused(
        self, outpost: OutpostServer, servers: Servers, transports: MakeTransport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``supports_proxy = False``: the transport goes direct even when the environment names a proxy."""
        proxy = servers.proxy()
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.setenv("HTTPS_PROXY", proxy.url())
        with self._sdk(outpost.url, transports()) as sdk:
            sdk.publish.event(tenant_id="acme", topic="contract", data={})
        assert proxy.accepted == 0 and len(outpost.requests) == 1

    @proxy_case
    def test_proxy_for_http_origin_with_credentials(
        self, outpost: OutpostServer, servers: Servers, transports: MakeTransport
    ) -> None:
        proxy = servers.proxy()
        transport = transports(proxy=f"http://us%20er:p%40ss@127.0.0.1:{proxy.port}")
        with self._sdk(outpost.url, transport) as sdk:
            response = sdk.publish.event(tenant_id="acme", topic="contract", data={}, id="evt_proxied")
        assert response.id == "evt_proxied" and outpost.event_count("evt_proxied") == 1
        (seen,) = proxy.requests
        assert (seen.method, seen.target) == ("POST", outpost.url + "/publish")
        assert seen.header("proxy-authorization") == "Basic " + base64.b64encode(b"us er:p@ss").decode()

    @proxy_case
    def test_proxy_for_https_origin_via_connect(
        self, servers: Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        origin = servers(outpost_like, tls=certificates.server_context())
        proxy = servers.proxy()
        transport = transports(proxy=f"http://user:pw@127.0.0.1:{proxy.port}",
                               ssl_context=certificates.client_context())
        for _ in range(2):
            assert transport.send(make_request(origin.url("/api/v1/publish"))).status == 202
        tunnels = proxy.requests
        assert len(tunnels) == (1 if self._keepalive(transport) else 2)
        for seen in tunnels:
            assert (seen.method, seen.target) == ("CONNECT", f"127.0.0.1:{origin.port}")
            assert seen.header("proxy-authorization") == "Basic " + base64.b64encode(b"user:pw").decode()
            assert seen.header("authorization") is None, "the key went to the proxy"
        for got in origin.requests:
            assert got.header("proxy-authorization") is None, "the proxy credentials went to the origin"
            assert got.header("authorization") == AUTHORIZATION

    @proxy_case
    def test_proxy_refusing_the_tunnel_is_connect_error(
        self, servers: Servers, transports: MakeTransport, certificates: Certificates
    ) -> None:
        origin = servers(outpost_like, tls=certificates.server_context())
        proxy = servers.proxy(refuse_connect=407)
        transport = transports(proxy=f"http://127.0.0.1:{proxy.port}", ssl_context=certificates.client_context())
        with pytest.raises(ConnectError) as caught:
            transport.send(make_request(origin.url("/publish")))
        assert not isinstance(caught.value, TLSError)
        assert origin.accepted == 0 and len(proxy.requests) == 1
        assert_no_secret(caught.value)

    @pytest.mark.parametrize(
        ("no_proxy", "bypassed"),
        [("", False), ("example.com", False), ("127.0.0.1:1", False), ("127.0.0.1", True),
         ("localhost, 127.0.0.1", True), ("127.0.0.1:{port}", True), ("*", True)],
    )
    @proxy_case
    def test_proxy_from_the_environment_and_no_proxy(
        self,
        outpost: OutpostServer,
        servers: Servers,
        transports: MakeTransport,
        monkeypatch: pytest.MonkeyPatch,
        no_proxy: str,
        bypassed: bool,
    ) -> None:
        proxy = servers.proxy()
        monkeypatch.setenv("HTTP_PROXY", f"http://env:pw@127.0.0.1:{proxy.port}")
        if no_proxy:
            monkeypatch.setenv("NO_PROXY", no_proxy.format(port=outpost.port))
        with self._sdk(outpost.url, transports(proxy="env")) as sdk:
            sdk.publish.event(tenant_id="acme", topic="contract", data={})
        assert len(outpost.requests) == 1
        if bypassed:
            assert proxy.accepted == 0, f"NO_PROXY={no_proxy!r} was not respected"
        else:
            (seen,) = proxy.requests
            assert seen.target == outpost.url + "/publish"
            assert seen.header("proxy-authorization") == "Basic " + base64.b64encode(b"env:pw").decode()
