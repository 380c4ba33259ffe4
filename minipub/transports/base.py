"""The transport seam: a request in, a response out, ``close()`` at the end.

A transport sends exactly what it is given, follows no redirects, caps the response body,
and maps every network failure to a :class:`~minipub.errors.TransportError` subclass.
"""

from __future__ import annotations

from typing import Dict, Mapping, Protocol, runtime_checkable

__all__ = ["HTTPRequest", "HTTPResponse", "Transport", "AsyncTransport", "DEFAULT_MAX_BODY"]

#: Default cap on the response body read (bytes); more is cut off and the connection dropped.
DEFAULT_MAX_BODY = 1 << 20


class HTTPRequest:
    """One HTTP request. ``timeout`` is in seconds; its repr never shows credentials."""

    __slots__ = ("body", "headers", "method", "timeout", "url")

    def __init__(self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> None:
        self.method = method
        self.url = url
        self.headers: Dict[str, str] = dict(headers)
        self.body = body
        self.timeout = timeout

    def redacted_headers(self) -> Dict[str, str]:
        """The headers with credentials replaced by ``***``."""
        return {k: ("***" if k.lower() in _SECRET_HEADERS else v) for k, v in self.headers.items()}

    def __repr__(self) -> str:
        return (
            f"HTTPRequest(method={self.method!r}, url={self.url!r}, headers={self.redacted_headers()!r}, "
            f"body=<{len(self.body)} bytes>, timeout={self.timeout!r})"
        )


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class HTTPResponse:
    """One HTTP response: status, headers (lower-case names), body (capped), ``truncated``."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, truncated: bool = False) -> None:
        self.status = status
        self.headers: Dict[str, str] = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.truncated = truncated

    @classmethod
    def lowered(cls, status: int, headers: Dict[str, str], body: bytes, truncated: bool = False) -> HTTPResponse:
        """A response from a dict whose names are already lower-case (kept as is, not copied)."""
        response = cls.__new__(cls)
        response.status = status
        response.headers = headers
        response.body = body
        response.truncated = truncated
        return response

    def __repr__(self) -> str:
        return f"HTTPResponse(status={self.status}, body=<{len(self.body)} bytes>, truncated={self.truncated})"


@runtime_checkable
class Transport(Protocol):
    """What the client needs from a transport."""

    def send(self, request: HTTPRequest) -> HTTPResponse:
        """Send one request and return its response; raise ``TransportError`` subclasses on failure."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """A native async transport, which a plugin may provide beside ``send``/``close``.

    When the SDK's transport also has ``send_async``, ``sdk.publish.event_async`` awaits it through
    the same retry policy (``asyncio.sleep`` between attempts) instead of using a worker thread.
    ``send_async`` follows ``send``'s contract: the request as given, no redirects, capped body,
    failures as ``TransportError`` subclasses. ``aclose`` releases its connections.
    """

    async def send_async(self, request: HTTPRequest) -> HTTPResponse:
        """Send one request on the running event loop and return its response."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...
