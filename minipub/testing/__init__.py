"""Test tooling: an embedded Outpost-compatible server and the transport contract suite.

Organised by job: ``server.py`` (``OutpostServer``, putting together the fake Outpost's behaviour in
``_outpost.py``/``_publish.py``/``_tenants.py``, its fault injection in ``_faults.py`` and its HTTP
front in ``_http.py``/``_routes.py``), ``wire.py`` (the one HTTP/1.1 message reader of every
hand-written server), ``rawserver.py`` (the raw servers, the recording proxy, certificates), the
``contract`` package and ``pytest_plugin.py``. ``TransportContract`` needs pytest; it is imported
only when asked for.
"""

from typing import TYPE_CHECKING, Any

from .server import OutpostServer, ReceivedRequest

if TYPE_CHECKING:
    from .contract import TransportContract

__all__ = ["OutpostServer", "ReceivedRequest", "TransportContract"]


def __getattr__(name: str) -> Any:
    if name == "TransportContract":
        import pytest

        pytest.register_assert_rewrite(__name__ + ".contract")  # plain asserts, detailed failures
        from .contract import TransportContract

        return TransportContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
