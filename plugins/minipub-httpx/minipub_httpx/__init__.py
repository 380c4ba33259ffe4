"""minipub-httpx: a minipub transport on httpx (HTTP/2 with ``h2``, or your own ``httpx.Client``).

Installed, it is found through the ``minipub`` entry point and becomes every ``SDK()``'s
transport; ``SDK(transport="httpx")`` names it, ``SDK(transport=HttpxTransport(client=...))``
uses a client you configured.
"""

from .transport import HttpxTransport, map_httpx_error

__all__ = ["HttpxTransport", "map_httpx_error"]
__version__ = "0.1.0"
