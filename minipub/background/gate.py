"""The key gate: after the server refused the key (401/403, once the auth provider's refresh did not
help), the Publisher's workers stop sending. One send per pause probes the key; meanwhile the jobs
taken are not sent. An accepted probe (any answer but a refusal) opens the gate again.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple, Union

from ..errors import APIError, UnauthorizedError

__all__ = ["KeyGate", "PROBING"]

#: ``admit(wait=False)``'s answer while a probe is out: ask again later (a coroutine must not block).
PROBING = "probing"


class KeyGate:
    """Shared by one Publisher's workers; ``pause(n)`` is the wait after the ``n``-th refusal in a row."""

    def __init__(self, pause: Callable[[int], float]) -> None:
        self._pause = pause
        self._changed = threading.Condition()
        self._refusal: Optional[UnauthorizedError] = None
        self._until = 0.0  # time.time(): when the next probe may go
        self._refusals = 0
        self._probing = False

    def admit(self, wait: bool = True) -> Union[str, Tuple[UnauthorizedError, float], None]:
        """None: send this job (the key is not known to be refused, or this is the probe); else the
        refusal and when the next probe may go (the caller keeps the job, or fails it, unsent).
        While a probe is out its answer decides: waited for, or (``wait=False``) ``PROBING``."""
        if self._refusal is None:  # the common case, without the lock
            return None
        with self._changed:
            while self._probing and self._refusal is not None:
                if not wait:
                    return PROBING
                self._changed.wait()
            if self._refusal is None:
                return None
            if time.time() >= self._until:
                self._probing = True
                return None
            return self._refusal, self._until

    def sent(self, error: Optional[BaseException]) -> None:
        """What a send ended with: a refusal closes the gate (a longer pause each time in a row); an
        answer that is not one (a 202, or any other status) opens it."""
        refused = isinstance(error, UnauthorizedError)
        if not refused and self._refusal is None and not self._probing:
            return
        with self._changed:
            if isinstance(error, UnauthorizedError):
                if self._refusal is None or self._probing:
                    self._refusals += 1
                self._refusal = error
                self._until = time.time() + self._pause(self._refusals)
            elif error is None or isinstance(error, APIError):  # the server took the key
                self._refusal, self._refusals = None, 0
            self._probing = False  # no answer (a network failure): the next send probes again
            self._changed.notify_all()
