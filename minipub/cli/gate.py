"""Stopping a run of many publishes at once: no attempt starts, and no retry waits, after the stop.

``bulk`` and ``outbox replay`` send through a ``Publisher``; a status that says the configuration
is wrong (``configuration_wrong``), Ctrl-C or ``--max-time`` closes the gate, which stands between
the client and the key provider the SDK resolved (asked before every attempt) and replaces the
retry loop's sleep. What a wrong configuration turned into dead letters goes back to the outbox.
"""

from __future__ import annotations

import threading
from typing import Iterable, Optional

from ..auth import AuthProvider
from ..errors import MinipubError

__all__ = ["Gate", "Stopped", "keep_pending"]


class Stopped(MinipubError):
    """Raised instead of an attempt (or of the wait before a retry) once the run is stopping.
    Its ``__context__`` is the event's last error, if it had one."""


class Gate:
    """An auth provider around the resolved one (``wrap``), and the retry loop's ``sleep``."""

    def __init__(self) -> None:
        self._provider: Optional[AuthProvider] = None
        self._closed = threading.Event()

    def wrap(self, provider: AuthProvider) -> AuthProvider:
        self._provider = provider
        return self

    def close(self) -> None:
        self._closed.set()

    def api_key(self) -> str:
        if self._closed.is_set():
            raise Stopped("not sent: the run was stopping")
        assert self._provider is not None
        return self._provider.api_key()

    def refresh(self) -> bool:
        return not self._closed.is_set() and self._provider is not None and self._provider.refresh()

    def sleep(self, seconds: float) -> None:
        if self._closed.wait(seconds):
            raise Stopped("no retry: the run was stopping")

    def __repr__(self) -> str:
        return f"Gate({self._provider!r})"


def keep_pending(path: str, event_ids: Iterable[str]) -> int:
    """Dead letters of these events back to the outbox, pending (a wrong configuration failed them,
    not their content): the next run, configured right, sends them. Returns how many are pending."""
    from ..outbox import Outbox

    wanted = set(event_ids)
    with Outbox(path) as outbox:
        rows = [letter.id for letter in outbox.dead_letters(limit=None) if letter.event.id in wanted]
        if rows:
            outbox.replay_dead_letters(rows)
        pending: int = outbox.pending_count()
        return pending
