"""Event ids: random UUID4 strings, made in batches (one ``os.urandom`` call for many), and never
shared with a forked child: it starts without the ids its parent had made but not handed out."""

from __future__ import annotations

import os

from . import _fork

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from typing import List

__all__ = ["new_event_id", "BATCH"]

#: Ids made per ``os.urandom`` call.
BATCH = 128
#: Each id's byte 6 gets version 4 (0100xxxx), its byte 8 the RFC 4122 variant (10xxxxxx): 122 random bits.
_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
#: Where each of an id's 32 hex digits goes in its 36 characters (dashes after digits 8, 12, 16 and 20).
_PLACES = [(digit, digit + (digit >= 8) + (digit >= 12) + (digit >= 16) + (digit >= 20)) for digit in range(32)]


class _Ready:
    """The ids made and not handed out yet (list pops and extends are atomic: thread-safe, lock-free)."""

    __slots__ = ("__weakref__", "ids")

    def __init__(self) -> None:
        self.ids: List[str] = []

    def _after_fork_in_child(self) -> None:
        self.ids = []  # the parent hands these out: the child makes its own


_ready = _Ready()
_fork.register(_ready)


def _batch(count: int) -> List[str]:
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = raw.hex().encode()
    # Every id laid out at once, 37 bytes each ("8-4-4-4-12" and a space): one strided copy per digit
    # position, where formatting id by id costs four times as much.
    text = bytearray(b"-" * (37 * count))
    for digit, place in _PLACES:
        text[place::37] = digits[digit::32]
    text[36::37] = b" " * count
    return text.decode().split()


def new_event_id() -> str:
    """A random UUID4 string (as ``str(uuid.uuid4())``), made without importing ``uuid``."""
    ready = _ready.ids
    try:
        return ready.pop()
    except IndexError:
        made = _batch(BATCH)
        ready.extend(made[1:])
        return made[0]
