"""Stopping a run of many publishes at once: no attempt starts, and no retry waits, after the stop.

``bulk`` and ``outbox replay`` send through a ``Publisher``; a status that says the configuration
is wrong (``configuration_wrong``), Ctrl-C (:class:`Interrupt`) or ``--max-time`` closes the gate,
which stands between the client and the key provider the SDK resolved (asked before every attempt)
and replaces the retry loop's sleep. What a wrong configuration turned into dead letters goes back
to the outbox (:func:`keep_pending`).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Iterable, Optional, Set

from ..auth import AuthProvider
from ..errors import MinipubError, PublisherClosedError
from .common import configuration_wrong, exit_code_for

__all__ = ["Gate", "Stopped", "Interrupt", "keep_pending"]


class Stopped(MinipubError):
    """Raised instead of an attempt (or of the wait before a retry) once the run is stopping.
    Its ``__context__`` is the event's last error, if it had one."""


class Gate:
    """An auth provider around the resolved one (``wrap``), and the retry loop's ``sleep``.

    ``holds(event_id, error)`` is an ``on_error``'s first question: the first answer that says the
    configuration is wrong closes the gate (before its worker can take another event) and becomes
    ``stopped_by``; the events it, or the stop, failed are ``held`` (not failures: the lines are fine).
    """

    def __init__(self) -> None:
        self._provider: Optional[AuthProvider] = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.stopped_by: Optional[BaseException] = None
        self.held: Set[str] = set()

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

    def holds(self, event_id: str, error: BaseException) -> bool:
        """True when this event's failure is held: the configuration is wrong, or the run stopped for it."""
        wrong = configuration_wrong(error)
        with self._lock:
            if wrong:
                self.close()
                if self.stopped_by is None:
                    self.stopped_by = error
            if self.stopped_by is not None and (wrong or isinstance(error, (Stopped, PublisherClosedError))):
                self.held.add(event_id)
                return True
        return False

    def exit_code(self) -> int:
        """The exit code of the answer that stopped the run (``stopped_by`` must be set)."""
        code = None if self.stopped_by is None else exit_code_for(self.stopped_by)
        assert code is not None
        return code

    def __repr__(self) -> str:
        return f"Gate({self._provider!r})"


class Interrupt:
    """Ctrl-C (SIGINT) as a flag the loops check between two events, so a submit is never cut in
    half and a checkpoint stays exact; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: Any = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt
        self._event.set()

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def keep_pending(path: str, event_ids: Iterable[str]) -> int:
    """Dead letters of these events back to the outbox, pending (a wrong configuration failed them,
    not their content): the next run, configured right, sends them. Returns how many are pending."""
    from .. import Outbox

    wanted = set(event_ids)
    with Outbox(path) as outbox:
        rows = [letter.id for letter in outbox.dead_letters(limit=None) if letter.event.id in wanted]
        if rows:
            outbox.replay_dead_letters(rows)
        pending: int = outbox.pending_count()
        return pending
