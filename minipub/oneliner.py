"""The one-liner: ``minipub.publish(...)`` with one shared client made from the environment."""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional

    from typing_extensions import Unpack

    from .client import SDK
    from .fields import PublishOptions
    from .models import PublishResponse

__all__ = ["default_client", "reset_default_client", "publish", "publish_async"]

_default: Optional[SDK] = None
_default_lock = _thread.allocate_lock()


def default_client() -> SDK:
    """The shared client behind :func:`publish`, made on first use from the environment."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            client = _default
            if client is None:
                from .client import SDK

                client = _default = SDK()
    return client


def reset_default_client() -> None:
    """Close the shared client; the next :func:`publish` reads the environment again."""
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def publish(topic: str, data: Mapping[str, Any], **fields: Unpack[PublishOptions]) -> PublishResponse:
    """Publish one event with the shared client (``OUTPOST_API_KEY``, ``OUTPOST_API_BASE_URL``).

    The keyword arguments are ``SDK.publish.event``'s (``minipub/fields.py``): ``tenant_id`` (required),
    ``eligible_for_retry``, ``destination_id``, ``metadata``, ``id``, ``time``, ``retries``, ``timeout_ms``,
    ``http_headers``.
    """
    return default_client().publish.event(topic=topic, data=data, **fields)


async def publish_async(topic: str, data: Mapping[str, Any], **fields: Unpack[PublishOptions]) -> PublishResponse:
    """:func:`publish`, awaitable: the same arguments, retries and errors, without blocking the event loop."""
    return await default_client().publish.event_async(topic=topic, data=data, **fields)
