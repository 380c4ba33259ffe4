"""The transport contract: a pytest base class whose tests every transport must pass.

A transport's test module subclasses it and says how to build the transport::

    from minipub.testing import TransportContract

    class TestMyTransport(TransportContract):
        def make_transport(self, **options):
            return MyTransport(**options)

``options`` may hold ``max_body=``, ``ssl_context=`` and, for transports that support proxies,
``proxy=`` (``None``, ``"env"`` or a URL). What a transport does not do it declares as a class
attribute on the transport, read by the suite (both default to True):

- ``supports_keepalive = False``: one connection per request; the suite checks exactly that.
- ``supports_proxy = False``: never uses a proxy, not even one named by ``HTTP(S)_PROXY``.

The errors the contract requires: a refused connection is ``ConnectError``; a failed certificate
check ``TLSError``; a server that stalls past ``request.timeout`` ``TransportTimeout``; a
connection that closes or resets before the whole response arrived ``ConnectionLostError``;
bytes that are not HTTP ``ProtocolError`` (never retried: the URL is not an HTTP server).

The servers are real sockets on 127.0.0.1, served by threads, every wait bounded:
``OutpostServer`` for publishes, :class:`RawServer` for exact bytes and misbehaviour (with TLS
from a self-signed certificate made by the ``openssl`` command line), :class:`ContractProxy` for
absolute-URI forwarding and ``CONNECT`` tunnels.

``TransportContract`` is made of one mixin per concern (``_contract_basics.py``: round trips and
the body cap; ``_contract_connections.py``: reuse, close, threads; ``_contract_failures.py``:
timeouts and lost connections; ``_contract_tls.py``; ``_contract_proxy.py``), on the fixtures of
``_contract_base.py``; ``HostileServerContract`` (``_contract_hostile.py``) of three.
"""

from __future__ import annotations

from ._contract_base import API_KEY, AUTHORIZATION, NO_RETRY, TRANSPORT_HEADERS, ContractBase, MakeTransport, Servers
from ._contract_basics import BodyCapContract, RoundTripContract
from ._contract_connections import ConnectionContract, ThreadsContract
from ._contract_failures import LostConnectionContract, TimeoutContract
from ._contract_hostile import HostileAnswerContract, HostileSecretsContract, HostileServerContract, HostileTimeContract
from ._contract_proxy import ProxyContract, proxy_case
from ._contract_tls import TLSContract
from .certificates import Certificates, make_certificates
from .proxyserver import ContractProxy
from .rawserver import ContractRequest, Peer, RawServer, outpost_like

__all__ = [
    "TransportContract",
    "HostileServerContract",
    "RawServer",
    "Peer",
    "ContractRequest",
    "ContractProxy",
    "Certificates",
    "make_certificates",
    "outpost_like",
    "API_KEY",
    "AUTHORIZATION",
    "NO_RETRY",
    "TRANSPORT_HEADERS",
    "MakeTransport",
    "Servers",
    "ContractBase",
    "RoundTripContract",
    "BodyCapContract",
    "ConnectionContract",
    "ThreadsContract",
    "TimeoutContract",
    "LostConnectionContract",
    "TLSContract",
    "ProxyContract",
    "proxy_case",
    "HostileTimeContract",
    "HostileAnswerContract",
    "HostileSecretsContract",
]

#: The name the plugin suites imported before the contract was split (``Servers``).
_Servers = Servers


class TransportContract(RoundTripContract, BodyCapContract, ConnectionContract, ThreadsContract, TimeoutContract,
                        LostConnectionContract, TLSContract, ProxyContract):
    """Inherit it and define ``make_transport(**options)``: every ``test_*`` is the contract."""
