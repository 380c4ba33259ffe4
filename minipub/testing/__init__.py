"""Test tooling: an embedded Outpost-compatible server and the transport contract suite.

Organised by job: ``server.py`` (``OutpostServer``, putting together the fake Outpost's behaviour in
``_outpost.py``/``_publish.py``/``_tenants.py``, its fault injection in ``_faults.py`` and its HTTP
front in ``_http.py``/``_routes.py``), ``wire.py`` (the one HTTP/1.1 message reader of every
hand-written server), ``rawserver.py`` (the raw servers, the recording proxy, certificates),
``contract.py`` (the contracts, composed of the mixins in ``_contract_*.py``) and
``pytest_plugin.py``. ``TransportContract`` needs pytest; it is imported only when asked for.
"""

from typing import TYPE_CHECKING, Any

from .server import OutpostServer, ReceivedRequest

if TYPE_CHECKING:
    from .contract import TransportContract

__all__ = ["OutpostServer", "ReceivedRequest", "TransportContract"]

_CONTRACT_MODULES = ("contract", "_contract_base", "_contract_basics", "_contract_connections", "_contract_failures",
                     "_contract_tls", "_contract_proxy", "_contract_hostile")


def __getattr__(name: str) -> Any:
    if name == "TransportContract":
        import pytest

        # plain asserts, detailed failures: the contract and its mixins' modules
        pytest.register_assert_rewrite(*(f"{__name__}.{name}" for name in _CONTRACT_MODULES))
        from .contract import TransportContract

        return TransportContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
