"""Test tooling: an embedded Outpost-compatible server and the transport contract suite.

``TransportContract`` needs pytest; it is imported only when asked for.
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
