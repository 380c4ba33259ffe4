"""What a publish returns."""

from __future__ import annotations

from typing import Iterable, Tuple

from ._record import Record

__all__ = ["PublishResponse"]


class PublishResponse(Record):
    """Outpost's 202 answer: the event id, whether it was a duplicate, the matched destinations."""

    __slots__ = ("destination_ids", "duplicate", "id")
    id: str
    duplicate: bool
    destination_ids: Tuple[str, ...]

    def __init__(self, id: str, duplicate: bool = False, destination_ids: Iterable[str] = ()) -> None:
        self._init(id=id, duplicate=duplicate, destination_ids=tuple(destination_ids))
