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
        set_ = object.__setattr__  # on the path of every publish: no keyword dict, no loop
        set_(self, "id", id)
        set_(self, "duplicate", duplicate)
        set_(self, "destination_ids", tuple(destination_ids))
