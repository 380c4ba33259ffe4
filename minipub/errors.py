"""Every exception minipub raises, and the one table from HTTP status to exception class."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Tuple, Type


__all__ = [
    "MinipubError",
    "ValidationError",
    "ConfigurationError",
    "APIError",
    "NotFoundError",
    "UnauthorizedError",
    "TimeoutErrorT",
    "RateLimitedError",
    "BadRequestError",
    "InternalServerError",
    "TransportError",
    "ConnectError",
    "TLSError",
    "TransportTimeout",
    "ConnectionLostError",
    "ProtocolError",
    "PluginError",
    "PluginWarning",
    "PublisherError",
    "QueueFullError",
    "PublisherClosedError",
    "OutboxError",
    "STATUS_CLASSES",
    "CONFIGURATION_HINTS",
    "CONNECT_HINT",
    "error_class_for",
]


class MinipubError(Exception):
    """Base of everything minipub raises. Every one pickles, with its attributes, whatever its ``__init__``."""

    def __reduce__(self) -> Tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, which fails for keyword-only arguments.
        return _restore, (type(self), self.args), dict(vars(self))


def _restore(cls: Type[BaseException], args: Tuple[Any, ...]) -> BaseException:
    """An exception of ``cls`` with ``args``, without calling its ``__init__`` (pickle sets the rest)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class ValidationError(MinipubError, ValueError):
    """Bad input, found before any network call. The message names the field and the fix."""


class ConfigurationError(ValidationError):
    """Missing or invalid configuration (API key, base URL, TLS files)."""


class APIError(MinipubError):
    """The server answered with a status that is not a success."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Optional[Mapping[str, str]] = None,
        body: str = "",
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.headers: Dict[str, str] = dict(headers or {})
        self.body = body
        self.data = data

    def __str__(self) -> str:
        hint = CONFIGURATION_HINTS.get(self.status_code)
        return f"{self.message} (HTTP {self.status_code})" + (f"; {hint}" if hint else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, message={self.message!r})"


class NotFoundError(APIError):
    """404, 501, 505: wrong base URL or an endpoint the server does not have."""


class UnauthorizedError(APIError):
    """401, 403, 407, 511: the key is missing, wrong, or not an admin key."""


class TimeoutErrorT(APIError):
    """408, 504: the server or a gateway timed out."""


class RateLimitedError(APIError):
    """429: slow down; ``Retry-After`` is honoured by the retry loop."""


class BadRequestError(APIError):
    """413, 414, 415, 422, 431, 510: the server rejected the request as invalid."""


class InternalServerError(APIError):
    """500, 502, 503, 506, 507, 508: the server or a gateway failed."""


class TransportError(MinipubError):
    """No HTTP response was received: the common base of network failures."""


class ConnectError(TransportError):
    """The connection could not be opened (DNS, refused, unreachable, proxy)."""


class TLSError(ConnectError):
    """The TLS handshake failed (certificate verification, protocol). Never retried."""


class TransportTimeout(TransportError):
    """Connecting or reading the response took longer than the timeout."""


class ConnectionLostError(TransportError):
    """The connection closed or reset after the request was (perhaps) sent."""


class ProtocolError(TransportError):
    """The server's answer was not valid HTTP. Never retried."""


class PluginError(MinipubError):
    """A plugin failed to load, or raised in a hook; ``plugin`` and ``hook`` name the culprit."""

    def __init__(self, message: str, *, plugin: str, hook: str) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.hook = hook


class PluginWarning(UserWarning):
    """An observability hook raised: the publish went on unchanged; the message names plugin and hook."""


class PublisherError(MinipubError):
    """A background ``Publisher`` could not take or finish an event."""


class QueueFullError(PublisherError):
    """``submit`` found the queue full: non-blocking mode, or the wait for room timed out."""


class PublisherClosedError(PublisherError):
    """The publisher was closed: before ``submit``, or before the event could be sent."""


class OutboxError(PublisherError):
    """The outbox (SQLite) could not record or update an event; the message says why."""


def _table(*rows: Tuple[Type[APIError], Tuple[int, ...]]) -> Dict[int, Type[APIError]]:
    return {status: cls for cls, statuses in rows for status in statuses}


#: The one status → exception table. Any other non-2XX status raises plain ``APIError``.
STATUS_CLASSES: Mapping[int, Type[APIError]] = _table(
    (NotFoundError, (404, 501, 505)),
    (UnauthorizedError, (401, 403, 407, 511)),
    (TimeoutErrorT, (408, 504)),
    (RateLimitedError, (429,)),
    (BadRequestError, (413, 414, 415, 422, 431, 510)),
    (InternalServerError, (500, 502, 503, 506, 507, 508)),
)


#: Statuses that say the configuration is wrong, not the event (every request would fail the same
#: way), with the fix; ``str(error)`` ends with it. ``minipub bulk`` stops at the first of these.
CONFIGURATION_HINTS: Mapping[int, str] = {
    401: "the key was rejected: set OUTPOST_API_KEY (or admin_api_key=, --api-key, an auth plugin's key file) "
         "to the Outpost admin API key",
    403: "the key may not publish: use the Outpost admin API key, not a tenant JWT",
    404: "no Outpost API at this base URL: it must include the version path, e.g. http://localhost:3333/api/v1 "
         "(OUTPOST_API_BASE_URL, server_url=, --base-url)",
    407: "the proxy wants credentials: put them in the proxy URL (HTTPS_PROXY=http://user:password@host:port)",
    511: "the network wants a sign-in (a captive portal) before Outpost can be reached",
}

#: What to check when no connection could be opened (``ConnectError``, not ``TLSError``).
CONNECT_HINT = "check the host and port of the base URL (OUTPOST_API_BASE_URL) and that Outpost is running there"


def error_class_for(status: int) -> Type[APIError]:
    """The exception class for a non-success status: the table's, else ``APIError``."""
    return STATUS_CLASSES.get(status, APIError)
