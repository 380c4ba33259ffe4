"""The durable outbox (``minipub.background.store`` and ``.rows``): the public names, where they always were."""

from __future__ import annotations

from .background.rows import SCHEMA_VERSION, BadRowHandler, ClaimedRow, DeadLetter, OutboxEntry, RowOutcome
from .background.store import SWEEP_INTERVAL, SYNCHRONOUS_MODES, Outbox

#: The old name of :data:`RowOutcome`.
Outcome = RowOutcome

__all__ = ["Outbox", "OutboxEntry", "DeadLetter", "ClaimedRow", "Outcome", "RowOutcome", "BadRowHandler",
           "SYNCHRONOUS_MODES", "SWEEP_INTERVAL", "SCHEMA_VERSION"]
