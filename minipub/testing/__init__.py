"""Test tooling: an embedded Outpost-compatible server (and, for transports, a contract suite)."""

from .server import OutpostServer, ReceivedRequest

__all__ = ["OutpostServer", "ReceivedRequest"]
