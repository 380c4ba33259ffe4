"""minipub: a small, dependency-free client for publishing events to Hookdeck Outpost.

    import minipub
    minipub.publish("user.created", {"id": 1}, tenant_id="acme")
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Mapping, Optional

from . import errors
from ._version import __version__
from .client import SDK, Publish
from .errors import (
    APIError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    MinipubError,
    NotFoundError,
    OutboxError,
    PublisherClosedError,
    QueueFullError,
    RateLimitedError,
    TimeoutErrorT,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from .models import Event, PublishResponse
from .retry import BackoffStrategy, RetryBudget, RetryConfig

if TYPE_CHECKING:  # loaded on first use (threads, sqlite3): see __getattr__
    from .outbox import DeadLetter, Outbox, OutboxEntry
    from .publisher import Publisher, PublisherStats

__all__ = [
    "__version__",
    "publish",
    "publish_async",
    "default_client",
    "reset_default_client",
    "SDK",
    "Publish",
    "PublishResponse",
    "Publisher",
    "PublisherStats",
    "Event",
    "Outbox",
    "OutboxEntry",
    "DeadLetter",
    "RetryConfig",
    "BackoffStrategy",
    "RetryBudget",
    "errors",
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
    "QueueFullError",
    "PublisherClosedError",
    "OutboxError",
]

#: Names loaded on first access, so ``import minipub`` stays cheap (no threads, sqlite3 or asyncio).
_LAZY = {
    "Publisher": "publisher",
    "PublisherStats": "publisher",
    "Outbox": "outbox",
    "OutboxEntry": "outbox",
    "DeadLetter": "outbox",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

_default: Optional[SDK] = None
_default_lock = threading.Lock()


def default_client() -> SDK:
    """The shared client behind :func:`publish`, made on first use from the environment."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            client = _default
            if client is None:
                client = _default = SDK()
    return client


def reset_default_client() -> None:
    """Close the shared client; the next :func:`publish` reads the environment again."""
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def publish(
    topic: str,
    data: Mapping[str, Any],
    *,
    tenant_id: str,
    eligible_for_retry: bool = True,
    destination_id: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
    id: Optional[str] = None,
    time: Any = None,
    retries: Optional[RetryConfig] = None,
    timeout_ms: Optional[float] = None,
) -> PublishResponse:
    """Publish one event with the shared client (``OUTPOST_API_KEY``, ``OUTPOST_API_BASE_URL``)."""
    return default_client().publish.event(
        tenant_id=tenant_id, topic=topic, data=data, eligible_for_retry=eligible_for_retry,
        destination_id=destination_id, metadata=metadata, id=id, time=time, retries=retries,
        timeout_ms=timeout_ms,
    )


async def publish_async(
    topic: str,
    data: Mapping[str, Any],
    *,
    tenant_id: str,
    eligible_for_retry: bool = True,
    destination_id: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
    id: Optional[str] = None,
    time: Any = None,
    retries: Optional[RetryConfig] = None,
    timeout_ms: Optional[float] = None,
) -> PublishResponse:
    """:func:`publish`, awaitable: the same arguments, retries and errors, without blocking the event loop."""
    return await default_client().publish.event_async(
        tenant_id=tenant_id, topic=topic, data=data, eligible_for_retry=eligible_for_retry,
        destination_id=destination_id, metadata=metadata, id=id, time=time, retries=retries,
        timeout_ms=timeout_ms,
    )
