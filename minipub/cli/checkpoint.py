"""``bulk --outbox``'s checkpoint: how far an input was submitted into the outbox, to resume there."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, Set

__all__ = ["Checkpoint", "pending_ids", "CHECKPOINT_EVERY"]

#: How often (seconds) the checkpoint is saved while submitting.
CHECKPOINT_EVERY = 0.25


class Checkpoint:
    """How far an input (by its SHA-256) was submitted into an outbox: ``OUTBOX.bulk.json``.

    Saved only after the events are in the outbox, so a crash can make a resumed run read a few
    lines again, never skip one: those still pending in the outbox are skipped, those already
    delivered are sent again with the same ids and Outpost answers ``duplicate``.
    """

    def __init__(self, outbox: str, digest: str) -> None:
        self.path = Path(outbox + ".bulk.json")
        self.digest = digest
        self._saved_at = 0.0
        try:
            self._all: Dict[str, int] = dict(json.loads(self.path.read_text()).get("submitted_through", {}))
        except (OSError, ValueError, AttributeError):
            self._all = {}
        self.start = int(self._all.get(digest, 0))
        self.line = self.start

    def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < CHECKPOINT_EVERY:
            return
        self._saved_at = now
        if self.line:
            self._all[self.digest] = self.line
        else:
            self._all.pop(self.digest, None)
        if not self._all:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"submitted_through": self._all}))
        os.replace(temporary, self.path)

    def finished(self) -> None:
        """Every line was submitted and settled: forget this input (a rerun sends it again)."""
        self.line = 0
        self.save(force=True)


def pending_ids(path: str) -> Set[str]:
    """Event ids waiting in an existing outbox (a crashed run may have recorded more than its checkpoint)."""
    from .. import Outbox

    if not os.path.exists(path):
        return set()
    with Outbox(path) as outbox:
        return {entry.event.id for entry in outbox.pending(limit=None)}
