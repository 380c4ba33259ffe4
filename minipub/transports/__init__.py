"""Transports: how one HTTP request is sent. They never retry; the retry loop does."""

from __future__ import annotations

from .base import HTTPRequest, HTTPResponse, Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict

__all__ = ["HTTPRequest", "HTTPResponse", "Transport", "BUILTIN_TRANSPORTS", "DEFAULT_TRANSPORT", "create_transport"]


def _httpclient(**options: Any) -> Transport:
    from .httpclient import HTTPClientTransport

    return HTTPClientTransport(**options)


def _lean(**options: Any) -> Transport:
    from .lean import LeanTransport

    return LeanTransport(**options)


def _urllib(**options: Any) -> Transport:
    from .urllib import UrllibTransport

    return UrllibTransport(**options)


#: Built-in transports by name; modules load on first use.
BUILTIN_TRANSPORTS: Dict[str, Callable[..., Transport]] = {
    "http.client": _httpclient,
    "lean": _lean,
    "lean-async": _lean,  # the lean transport's own send_async; the name of the time it was apart
    "urllib": _urllib,
}

DEFAULT_TRANSPORT = "lean"


def create_transport(name: str = DEFAULT_TRANSPORT, **options: Any) -> Transport:
    """Build a built-in transport by name (plugin transports come from ``minipub_transport``)."""
    from ..errors import ConfigurationError

    try:
        factory = BUILTIN_TRANSPORTS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_TRANSPORTS))
        raise ConfigurationError(
            f"transport={name!r} is unknown; use one of: {known}, or install the plugin that provides it "
            '(plugins need pluggy: pip install "minipub[plugins]")'
        ) from None
    return factory(**options)
