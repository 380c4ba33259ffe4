"""The transport seam: a request in, a response out, ``close()`` at the end.

A transport sends exactly what it is given, follows no redirects, caps the response body,
and maps every network failure to a :class:`~minipub.errors.TransportError` subclass.
"""

from __future__ import annotations

from .._charsets import is_field_value
from ..errors import ValidationError
from ..secret import Secret

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Protocol, Union, runtime_checkable
else:
    from .._runtime_typing import Protocol, runtime_checkable

__all__ = ["HTTPRequest", "HTTPResponse", "Transport", "AsyncTransport", "DEFAULT_MAX_BODY"]

#: Default cap on the response body read (bytes); more is cut off and the connection dropped.
DEFAULT_MAX_BODY = 1 << 20


class HTTPRequest:
    """One HTTP request. ``timeout`` is in seconds.

    Credentials (``Authorization``, ``Proxy-Authorization``, ``Cookie``, and any value given as a
    :class:`~minipub.secret.Secret`) are held as Secrets in ``secret_headers``, the rest in
    ``public_headers``: the repr, a pickle, or a walk over the attributes never shows them. The
    built-in transports write ``public_headers`` and reveal the credentials only in the expression
    that writes them (:meth:`secret_head`, :meth:`reveal_headers`). ``headers`` is every header with
    the credentials revealed, for transports that take one dict; setting a header in it is kept.
    """

    __slots__ = ("body", "method", "public_headers", "secret_headers", "timeout", "url")

    def __init__(self, method: str, url: str, headers: Mapping[str, Union[str, Secret]], body: bytes,
                 timeout: float) -> None:
        self.method = method
        self.url = url
        self.public_headers: Dict[str, str] = {}
        self.secret_headers: Dict[str, Secret] = {}
        for name, value in headers.items():
            self.set_header(name, value)
        self.body = body
        self.timeout = timeout

    @classmethod
    def split(cls, method: str, url: str, public: Dict[str, str], secret: Dict[str, Secret], body: bytes,
              timeout: float) -> HTTPRequest:
        """A request from headers already split (kept as given, not copied: the client's hot path)."""
        request = cls.__new__(cls)
        request.method = method
        request.url = url
        request.public_headers = public
        request.secret_headers = secret
        request.body = body
        request.timeout = timeout
        return request

    def set_header(self, name: str, value: Union[str, Secret]) -> None:
        """Set (or replace, whatever its case) one header; a credential is kept as a Secret."""
        lowered = name.lower()
        if any(k.lower() == lowered for k in (*self.public_headers, *self.secret_headers)):
            self.remove_header(name)
        if isinstance(value, Secret):
            self.secret_headers = {**self.secret_headers, name: value}
        elif lowered in _SECRET_HEADERS:
            if not isinstance(value, str) or not is_field_value(value):
                del value  # the error must not hold it
                raise ValidationError(f"the {name} header must be latin-1 text without control characters")
            self.secret_headers = {**self.secret_headers, name: Secret(value)}
        else:  # copied on write: the dict may be shared with the client that made the request
            self.public_headers = {**self.public_headers, name: value}

    def remove_header(self, name: str) -> None:
        lowered = name.lower()
        self.public_headers = {k: v for k, v in self.public_headers.items() if k.lower() != lowered}
        self.secret_headers = {k: v for k, v in self.secret_headers.items() if k.lower() != lowered}

    @property
    def headers(self) -> Dict[str, str]:
        """Every header, credentials revealed (a fresh dict; setting or deleting in it changes the request)."""
        return _HeaderView(self)

    def reveal_headers(self, headers: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """``headers`` (default: ``public_headers``) plus the credentials, revealed: call it only inside
        the expression that writes them, so that no frame local holds the result."""
        revealed = dict(self.public_headers if headers is None else headers)
        for name, secret in self.secret_headers.items():
            revealed[name] = secret.reveal()
        return revealed

    def secret_head(self) -> bytes:
        """The credential header lines (``Name: value\r\n``, latin-1), for a transport writing its own head."""
        if not self.secret_headers:
            return b""
        if len(self.secret_headers) == 1:  # the common case, printable ASCII (the value's check made once)
            for name, secret in self.secret_headers.items():
                line_name = _printable_name(name)
                if line_name is not None and secret.printable_ascii():
                    return b"%s: %s\r\n" % (line_name, secret.reveal_bytes())
        lines = "".join([f"{name}: {secret.reveal()}\r\n" for name, secret in self.secret_headers.items()])
        if lines.count("\r") != len(self.secret_headers) or not is_field_value(lines.replace("\r\n", "")):
            del lines
            raise ValidationError("a credential header must be latin-1 text without control characters")
        return lines.encode("latin-1")

    def redacted_headers(self) -> Dict[str, str]:
        """The headers with credentials replaced by ``***``."""
        redacted = dict(self.public_headers)
        for name in self.secret_headers:
            redacted[name] = "***"
        return redacted

    def __repr__(self) -> str:
        return (
            f"HTTPRequest(method={self.method!r}, url={self.url!r}, headers={self.redacted_headers()!r}, "
            f"body=<{len(self.body)} bytes>, timeout={self.timeout!r})"
        )


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))
#: Credential header names seen, as written (latin-1, "?" for what it cannot carry) when that is printable ASCII.
_NAMES: Dict[str, Optional[bytes]] = {}


def _printable_name(name: str) -> Optional[bytes]:
    """``name`` as a head line writes it, or None when that is not printable ASCII (remembered per name)."""
    try:
        return _NAMES[name]
    except KeyError:
        pass
    encoded = name.encode("latin-1", "replace")
    found = None if encoded.translate(None, _PRINTABLE_ASCII) else encoded
    if len(_NAMES) >= 64:  # names are few (Authorization, Proxy-Authorization, a plugin's): bounded all the same
        _NAMES.clear()
    _NAMES[name] = found
    return found


class _HeaderView(dict[str, str]):  # a builtin generic: no typing at run time
    """``HTTPRequest.headers``: a dict of every header, credentials revealed, writing changes through."""

    __slots__ = ("_request",)

    def __init__(self, request: HTTPRequest) -> None:
        super().__init__(request.reveal_headers())
        self._request = request

    def __setitem__(self, name: str, value: str) -> None:
        dict.__setitem__(self, name, value)
        self._request.set_header(name, value)

    def __delitem__(self, name: str) -> None:
        dict.__delitem__(self, name)
        self._request.remove_header(name)

    def update(self, *args: Any, **kwargs: str) -> None:
        for name, value in dict(*args, **kwargs).items():
            self[name] = value

    def setdefault(self, name: str, default: str = "") -> str:
        if name not in self:
            self[name] = default
        return self[name]

    def pop(self, name: str, *default: Any) -> Any:
        if name in self:
            self._request.remove_header(name)
        return dict.pop(self, name, *default)


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
