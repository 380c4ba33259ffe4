"""What a publish returns, and an event as a background publisher holds it."""

from __future__ import annotations

from ._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

__all__ = ["PublishResponse", "Event"]


class PublishResponse(Record):
    """Outpost's 202 answer: the event id, whether it was a duplicate, the matched destinations.

    ``duplicate`` and ``destination_ids`` are None when they are unknown: a transport that hands
    the event to Outpost's publish queue (``queued`` is True) gets the queue's confirm, not
    Outpost's answer, so it cannot say whether Outpost deduplicated the event or where it went.
    """

    id: str
    duplicate: Optional[bool] = False
    destination_ids: Optional[Tuple[str, ...]] = ()

    def _check(self) -> None:
        ids = self.destination_ids
        if ids is not None and type(ids) is not tuple:  # any iterable of ids is accepted, kept as a tuple
            object.__setattr__(self, "destination_ids", tuple(ids))

    @property
    def queued(self) -> bool:
        """True when the event was only queued for Outpost (duplicate and destinations unknown)."""
        return self.duplicate is None


class Event(Record):
    """An event as submitted: its id, tenant, topic and the encoded request body (``data`` decodes it)."""

    id: str
    tenant_id: str
    topic: str
    body: bytes

    @property
    def payload(self) -> Dict[str, Any]:
        """The whole request body as sent to Outpost (id, tenant_id, topic, data, ...)."""
        import json

        decoded: Dict[str, Any] = json.loads(self.body)
        return decoded

    @property
    def data(self) -> Dict[str, Any]:
        """The event's ``data`` object."""
        data: Dict[str, Any] = self.payload["data"]
        return data

    def __repr__(self) -> str:
        size = len(self.body)
        return f"Event(id={self.id!r}, tenant_id={self.tenant_id!r}, topic={self.topic!r}, body=<{size} bytes>)"
