"""``bulk``'s failures: what the workers report (``on_error``), and the rejects file they go to."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Dict, List, Optional, Tuple

from ..errors import ConnectionLostError, PublisherClosedError, TransportTimeout
from ..retry import is_final
from .common import describe, printable, undelivered_exit_code
from .gate import Gate, Stopped
from .lines import LineError
from .progress import Progress

if TYPE_CHECKING:
    from .. import Event

__all__ = ["Failure", "Failures", "Rejects", "SHOWN_REJECTS", "IN_FLIGHT"]

Failure = Tuple[int, str, str]  # line number, line text, error
#: At most this many rejected lines are listed on stderr; all of them go to the rejects file.
SHOWN_REJECTS = 20
#: How the Publisher tells of an event that was on the wire when it was closed.
IN_FLIGHT = "may or may not have been delivered"


class Failures:
    """Events that failed for good, as the workers report them (``on_error``); the main thread
    drains them into the rejects file. Undelivered events (retries or time ran out) are counted
    apart: they decide the exit code (5 or 6) rather than 1.

    A status that says the configuration is wrong stops the run (``Gate.holds``): neither that
    event nor any other left is a reject (with an outbox they stay pending)."""

    def __init__(self, lines: Dict[str, Tuple[int, str]], gate: Gate) -> None:
        self.lines = lines
        self.gate = gate
        self.lock = threading.Lock()
        self.new: List[Failure] = []
        self.undelivered = 0
        self.uncertain = 0  # of those, sent with no answer (a timeout, a lost connection, the run stopped)
        self.unsent = 0  # of those, never sent: queued when the run stopped
        self.last_errors: List[BaseException] = []  # of undelivered events, for the exit code
        self.server_url: Optional[str] = None  # named in connection errors

    def add(self, number: int, text: str, error: BaseException) -> None:
        if isinstance(error, LineError):
            message = str(error)
        elif isinstance(error, Stopped) and error.__context__ is not None:
            message = f"{describe(error.__context__, self.server_url)} (then the run stopped before its next retry)"
        else:
            message = describe(error, self.server_url)
        with self.lock:
            self.new.append((number, text, message))

    def on_error(self, event: Event, error: BaseException) -> None:
        if self.gate.holds(event.id, error):
            return
        number, text = self.lines.get(event.id, (0, json.dumps(event.payload)))
        if not is_final(error):
            with self.lock:
                self.undelivered += 1
                last = error.__context__ if isinstance(error, Stopped) else error
                if (isinstance(error, PublisherClosedError) and IN_FLIGHT in str(error)) or isinstance(
                        last, (TransportTimeout, ConnectionLostError)):  # sent, and no answer came
                    self.uncertain += 1
                elif last is None or isinstance(error, PublisherClosedError):
                    self.unsent += 1
                if last is not None and not isinstance(last, (PublisherClosedError, Stopped)):
                    self.last_errors.append(last)
        self.add(number, text, error)

    def drain(self) -> List[Failure]:
        with self.lock:
            new, self.new = self.new, []
        return new

    def exit_code(self) -> int:
        with self.lock:
            return undelivered_exit_code(self.last_errors)


class Rejects:
    """The rejects file (created on the first failure) and the listing on stderr.

    Each record is the line's request with ``_line`` and ``_error`` added (``_input`` holds a
    line that was not a JSON object), so a corrected file can be fed back to ``bulk``."""

    def __init__(self, path: Path, stream: IO[str], progress: Progress) -> None:
        self.path = path
        self.stream = stream
        self.progress = progress
        self.file: Optional[IO[str]] = None
        self.count = 0

    def write(self, failure: Failure) -> None:
        number, text, error = failure
        self.count += 1
        if self.file is None:
            self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - open until close()
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {"_input": text}
        self.file.write(json.dumps({**record, "_line": number, "_error": error}) + "\n")
        self.file.flush()
        if self.count <= SHOWN_REJECTS:
            self.progress.clear()
            self.stream.write(f"minipub bulk: line {number}: {printable(error)}\n")
        elif self.count == SHOWN_REJECTS + 1:
            self.progress.clear()
            self.stream.write(f"minipub bulk: more lines failed; all are in {printable(str(self.path))}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
