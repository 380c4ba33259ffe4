"""The request head the lean transports write, sync and asyncio alike: one builder, one cache rule."""

from __future__ import annotations

from ..errors import ValidationError
from .base import HTTPRequest
from .common import Sealed, header_block

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Protocol, Tuple

__all__ = ["FIELDS_CACHE", "HeaderLines", "host_line", "request_head"]

#: How many distinct header sets (per transport) and request lines (per connection) stay prebuilt.
FIELDS_CACHE = 64
# Methods sent without a Content-Length when they have no body.
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


if TYPE_CHECKING:
    class HeadConnection(Protocol):
        """What a connection tells the head builder: its Host line, proxy lines, and the lines it cached."""

        absolute: bool  # plain HTTP through a proxy: the request target is the full URL
        host_line: str
        proxy_auth: str
        lines: Dict[Tuple[str, str], bytes]  # (method, URL): request line, Host, proxy lines


class HeaderLines:
    """A transport's prebuilt, checked header lines, per header set (at most ``FIELDS_CACHE`` sets),
    shared by its sync and async sends. Bad headers raise here, before any connection."""

    def __init__(self) -> None:
        self._sets: Dict[Tuple[Tuple[str, str], ...], Sealed] = {}
        self._last: Tuple[Optional[Dict[str, str]], Dict[str, str], Sealed] = (None, {}, Sealed(b""))

    def get(self, request: HTTPRequest) -> Sealed:
        # No local names the header values: frame-local capture (error reporters) sees no key.
        headers = request.public_headers
        last = self._last  # the same dict as last time (the client's own), unchanged: its lines
        if last[0] is headers and last[1] == headers:
            return last[2]
        fields = self._sets.get(tuple(headers.items()))
        if fields is None:
            fields = header_block(request)
            if len(self._sets) >= FIELDS_CACHE:
                self._sets.clear()
            self._sets[tuple(headers.items())] = fields
        self._last = (headers, dict(headers), fields)
        return fields


def host_line(host: str, port: int, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return f"Host: {name}\r\n" if port == default else f"Host: {name}:{port}\r\n"


def _request_line(request: HTTPRequest, conn: HeadConnection, target: str) -> bytes:
    """The request line and the connection's own header lines (Host, a proxy's credentials)."""
    if len(conn.lines) >= FIELDS_CACHE:
        conn.lines.clear()
    try:
        return f"{request.method} {request.url if conn.absolute else target} HTTP/1.1\r\n{conn.host_line}" \
               f"{conn.proxy_auth}".encode("latin-1")
    except UnicodeEncodeError:
        raise ValidationError("the request URL and method must be ASCII (percent-encode the path)") from None


def request_head(request: HTTPRequest, conn: HeadConnection, target: str, fields: Sealed) -> Sealed:
    """Request line, header fields and body, in one piece (sent in one call)."""
    line = conn.lines.get((request.method, request.url))
    if line is None:
        line = conn.lines[(request.method, request.url)] = _request_line(request, conn, target)
    body = request.body
    length = b"Content-Length: %d\r\n\r\n" % len(body) if body or request.method not in _NO_BODY else b"\r\n"
    return Sealed(b"".join((line, fields.data, request.secret_head(), length, body)))
