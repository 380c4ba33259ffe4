"""What a publish returns, and an event as a background publisher holds it."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

from ._record import Record

__all__ = ["PublishResponse", "Event"]


class PublishResponse(Record):
    """Outpost's 202 answer: the event id, whether it was a duplicate, the matched destinations.

    ``duplicate`` and ``destination_ids`` are None when they are unknown: a transport that hands
    the event to Outpost's publish queue (``queued`` is True) gets the queue's confirm, not
    Outpost's answer, so it cannot say whether Outpost deduplicated the event or where it went.
    """

    __slots__ = ("destination_ids", "duplicate", "id")
    id: str
    duplicate: Optional[bool]
    destination_ids: Optional[Tuple[str, ...]]

    def __init__(self, id: str, duplicate: Optional[bool] = False,
                 destination_ids: Optional[Iterable[str]] = ()) -> None:
        set_ = object.__setattr__  # on the path of every publish: no keyword dict, no loop
        set_(self, "id", id)
        set_(self, "duplicate", duplicate)
        set_(self, "destination_ids", None if destination_ids is None else tuple(destination_ids))

    @property
    def queued(self) -> bool:
        """True when the event was only queued for Outpost (duplicate and destinations unknown)."""
        return self.duplicate is None


class Event(Record):
    """An event as submitted: its id, tenant, topic and the encoded request body (``data`` decodes it)."""

    __slots__ = ("body", "id", "tenant_id", "topic")
    id: str
    tenant_id: str
    topic: str
    body: bytes

    def __init__(self, id: str, tenant_id: str, topic: str, body: bytes) -> None:
        self._init(id=id, tenant_id=tenant_id, topic=topic, body=body)

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
