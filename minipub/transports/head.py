"""The request head the lean transports write, sync and asyncio alike: one builder, one cache rule."""

from __future__ import annotations

from typing import Dict, Protocol, Tuple

from ..errors import ValidationError
from .base import HTTPRequest
from .common import Sealed

__all__ = ["FIELDS_CACHE", "HeadConnection", "host_line", "request_head"]

#: How many distinct header sets (per transport) and request lines (per connection) stay prebuilt.
FIELDS_CACHE = 64
# Methods sent without a Content-Length when they have no body.
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class HeadConnection(Protocol):
    """What a connection tells the head builder: its Host line, proxy lines, and the lines it cached."""

    absolute: bool  # plain HTTP through a proxy: the request target is the full URL
    host_line: str
    proxy_auth: str
    lines: Dict[Tuple[str, str], bytes]  # (method, URL): request line, Host, proxy lines


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
