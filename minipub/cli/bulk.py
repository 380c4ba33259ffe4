"""``minipub bulk FILE|-``: publish NDJSON (one publish request object per line) through a ``Publisher``.

Each line is ``{"tenant_id", "topic", "data", ...}`` (``publish``'s fields). A line without an
``id`` gets one derived from its line number and text, so a rerun sends the same ids and Outpost
deduplicates. With ``--outbox``, an interrupted run resumes where it stopped: what was submitted
waits in the outbox, and a small checkpoint beside it records how far the input was read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any, Dict, List, Optional, Set, Tuple

from ..errors import ConnectionLostError, PublisherClosedError, TransportTimeout, ValidationError
from ..retry import RetryBudget, is_final
from .common import (
    EXIT_OK,
    EXIT_REJECTED,
    UsageError,
    add_connection_flags,
    add_retry_flags,
    add_transport_flag,
    command_parser,
    configuration_wrong,
    describe,
    exit_code_for,
    make_sdk,
    positive,
    printable,
    read_source,
    undelivered_exit_code,
)
from .gate import Gate, Stopped, keep_pending
from .progress import Progress, format_duration

EXAMPLE = """\
  # events.ndjson: {"tenant_id": "acme", "topic": "user.created", "data": {"user_id": "usr_1"}}
  minipub bulk events.ndjson --outbox events.outbox.db      # Ctrl-C, then the same command resumes
  zcat events.ndjson.gz | minipub bulk - --concurrency 16 --max-time 600"""

#: The fields a line may carry (``publish``'s); fields starting with ``_`` are ignored, so a fixed
#: rejects file (``_line``, ``_error``) can be fed back in.
FIELDS = ("tenant_id", "topic", "data", "id", "destination_id", "eligible_for_retry", "metadata", "time")
#: At most this many rejected lines are listed on stderr; all of them go to the rejects file.
SHOWN_REJECTS = 20
#: An outbox row in flight when a run was killed waits this long (seconds) before a resumed run
#: may send it (so two live runs never send it at once).
LEASE = 60.0
#: How often (seconds) the checkpoint is saved while submitting.
CHECKPOINT_EVERY = 0.25


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = command_parser(
        commands, "bulk",
        "Publish NDJSON, one publish request object per line, concurrently; retry until delivered.",
        EXAMPLE, run,
    )
    parser.add_argument("file", metavar="FILE|-", help="NDJSON input, or - for stdin")
    parser.add_argument("--concurrency", type=positive(int), default=8, metavar="N",
                        help="events in flight (default: 8)")
    parser.add_argument("--outbox", metavar="PATH",
                        help="a SQLite outbox: an interrupted run (Ctrl-C, crash) resumes without re-sending "
                             "what was delivered; rerun the same command")
    parser.add_argument("--outbox-sync", choices=("FULL", "NORMAL", "OFF"), default="FULL",
                        help="FULL (default) survives a power loss; NORMAL is faster and survives a crash of "
                             "the process, not of the machine")
    parser.add_argument("--rejects", metavar="PATH",
                        help="where lines that failed for good are written with their error "
                             "(default: beside the input, NAME.rejects.ndjson)")
    parser.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                        help="auto (default): a bar when stderr is a terminal, else a few plain lines")
    add_connection_flags(parser)
    add_transport_flag(parser)
    add_retry_flags(parser, max_time=None, attempts=None,
                    max_time_help="stop after this long; what is not delivered by then is reported")


# -- input -------------------------------------------------------------------------------


class LineError(ValidationError):
    """A line that cannot become a publish request."""


def derived_id(number: int, text: str) -> str:
    """A stable event id for a line without one: from its line number and its text."""
    digest = hashlib.sha256(f"{number}\n{text}".encode()).hexdigest()
    return f"bulk-{digest[:32]}"


def parse_line(number: int, text: str) -> Dict[str, Any]:
    """The ``Publisher.submit`` keywords for one line (validated later, by ``submit``)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LineError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise LineError(f"a line must be a JSON object (a publish request), got {type(value).__name__}")
    fields = {k: v for k, v in value.items() if not k.startswith("_")}
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise LineError(f"unknown field(s) {', '.join(unknown)}; a line may have {', '.join(FIELDS)}")
    for required in ("tenant_id", "topic", "data"):
        if required not in fields:
            raise LineError(f"{required} is required")
    if not fields.get("id"):
        fields["id"] = derived_id(number, text)
    return fields


def default_rejects_path(source: str) -> Path:
    """``events.ndjson`` → ``events.rejects.ndjson`` beside it; stdin → ``stdin.rejects.ndjson``."""
    if source == "-":
        return Path("stdin.rejects.ndjson")
    path = Path(source)
    return path.with_name(f"{path.stem}.rejects{path.suffix or '.ndjson'}")


# -- checkpoint --------------------------------------------------------------------------


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


# -- the run -----------------------------------------------------------------------------

Failure = Tuple[int, str, str]  # line number, line text, error

#: How the Publisher tells of an event that was on the wire when it was closed.
IN_FLIGHT = "may or may not have been delivered"


class _Failures:
    """Events that failed for good, as the workers report them (``on_error``); the main thread
    drains them into the rejects file. Undelivered events (retries or time ran out) are counted
    apart: they decide the exit code (5 or 6) rather than 1.

    A status that says the configuration is wrong (``configuration_wrong``: 401, 403, 404, 407,
    511) stops the run: the gate closes before this worker can take another event, and neither that
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
        self.stopped_by: Optional[BaseException] = None
        self.held: Set[str] = set()  # event ids not settled because the configuration is wrong
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

    def on_error(self, event: Any, error: BaseException) -> None:
        number, text = self.lines.get(event.id, (0, json.dumps(event.payload)))
        with self.lock:
            if configuration_wrong(error):
                self.gate.close()  # before this worker returns to take another event
                if self.stopped_by is None:
                    self.stopped_by = error
            if self.stopped_by is not None and (
                    configuration_wrong(error) or isinstance(error, (Stopped, PublisherClosedError))):
                self.held.add(event.id)
                return
            if not is_final(error):
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


class _Rejects:
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


class _Interrupt:
    """Ctrl-C (SIGINT) as a flag the loops check between two events, so a submit is never cut in
    half and the checkpoint stays exact; a second Ctrl-C raises KeyboardInterrupt at once."""

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

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _pending_ids(path: str) -> Set[str]:
    """Event ids waiting in an existing outbox (a crashed run may have recorded more than its checkpoint)."""
    from ..outbox import Outbox

    if not os.path.exists(path):
        return set()
    with Outbox(path) as outbox:
        return {entry.event.id for entry in outbox.pending(limit=None)}


class _Bulk:
    """One run: read and number the lines, submit them, follow the publisher, report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        text = read_source(args.file, "input")
        self.lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        self.stream = sys.stderr
        tty = {"auto": None, "bar": True, "plain": False, "none": False}[args.progress]
        self.progress = Progress(len(self.lines), self.stream, tty=tty, quiet=args.progress == "none")
        rejects = Path(args.rejects) if args.rejects else default_rejects_path(args.file)
        if not rejects.parent.is_dir():
            raise UsageError(f"cannot write the rejects file {str(rejects)!r}: no such directory")
        self.rejects = _Rejects(rejects, self.stream, self.progress)
        self.checkpoint: Optional[Checkpoint] = None
        self.skip: Set[str] = set()
        if args.outbox:
            self.checkpoint = Checkpoint(args.outbox, hashlib.sha256(text.encode()).hexdigest())
            self.skip = _pending_ids(args.outbox)
        self.ids: Dict[str, Tuple[int, str]] = {}
        self.gate = Gate()
        self.failures = _Failures(self.ids, self.gate)
        self.invalid = 0  # lines refused before sending
        self.earlier = 0  # lines an earlier run settled
        self.unsubmitted = 0  # lines not reached (Ctrl-C or --max-time)
        self.interrupt = _Interrupt()

    def run(self) -> int:
        from ..publisher import Publisher

        args = self.args
        # Each event is retried until delivered (or --max-time): --concurrency bounds the load and
        # the backoff the rate, so the per-client retry budget (made for a service's traffic) is off.
        sdk = make_sdk(args, retry_budget=RetryBudget(capacity=float("inf")), wrap_auth=self.gate.wrap,
                       sleep=self.gate.sleep)
        self.failures.server_url = args.server_url
        deadline = None if args.max_time is None else time.monotonic() + args.max_time
        resumed = self.checkpoint.start if self.checkpoint else 0
        try:
            publisher = Publisher(sdk, workers=args.concurrency, max_queue=max(64, 4 * args.concurrency),
                                  outbox=args.outbox, on_error=self.failures.on_error,
                                  synchronous=args.outbox_sync, exit_timeout=1.0,
                                  lease_seconds=max(LEASE, 6 * args.timeout))
        except BaseException:
            sdk.close()
            raise
        replayed = publisher.stats().queued
        submitted_before = sum(1 for n, _ in self.lines if n <= resumed)
        self.earlier = max(0, submitted_before - replayed)
        if resumed:
            self.stream.write(f"minipub bulk: resuming after line {resumed}: {submitted_before:,} line(s) "
                              f"submitted earlier, {replayed:,} event(s) still in the outbox\n")
        settled = False
        try:
            with _Interrupt() as self.interrupt:
                self._submit_all(publisher, resumed, deadline)
                while not (settled or self._stopping(deadline)):
                    settled = publisher.flush(timeout=0.1)
                    self._refresh(publisher)
        except KeyboardInterrupt:  # a second Ctrl-C, or one that came from elsewhere
            self.interrupt.set()
        finally:
            interrupted = self.interrupt.is_set()
            # Ctrl-C, --max-time or a wrong configuration: stop now. No attempt starts after this and
            # no retry waits on; what is on the wire gets the publisher's grace (1 s). With an outbox
            # the rest stays there; without one it reaches on_error (and the rejects file): never dropped.
            if not settled:
                self.gate.close()
            publisher.close(timeout=30.0 if settled else 0.0)
            sdk.close()
            self._refresh(publisher)
            self.progress.finish(*self._done(publisher))
            self.rejects.close()
        stats = publisher.stats()
        pending = stats.queued if args.outbox else 0
        stopped_by = self.failures.stopped_by
        if stopped_by is not None and args.outbox:
            pending = keep_pending(args.outbox, self.failures.held)
        if self.checkpoint is not None:
            if settled and not (interrupted or pending or self.unsubmitted):
                self.checkpoint.finished()
            else:
                self.checkpoint.save(force=True)
        if stopped_by is not None:
            self._stopped_summary(stats, stopped_by, pending)
            code = exit_code_for(stopped_by)
            assert code is not None
            return code
        self._summary(stats, pending)
        if interrupted:
            raise KeyboardInterrupt
        if self.failures.undelivered or pending or self.unsubmitted:
            return self.failures.exit_code()
        return EXIT_REJECTED if self.rejects.count else EXIT_OK

    def _stopping(self, deadline: Optional[float]) -> bool:
        return (self.interrupt.is_set() or self.failures.stopped_by is not None
                or (deadline is not None and time.monotonic() > deadline))

    def _submit_all(self, publisher: Any, resumed: int, deadline: Optional[float]) -> None:
        refreshed = time.monotonic()
        self.unsubmitted = sum(1 for n, _ in self.lines if n > resumed)
        for number, line in self.lines:
            if number <= resumed:  # submitted by an earlier run: known, to name it if it fails now
                try:
                    self.ids[str(parse_line(number, line)["id"])] = (number, line)
                except ValidationError:
                    pass
                continue
            if self._stopping(deadline):
                return
            try:
                fields = parse_line(number, line)
                event_id = str(fields["id"])
                self.ids[event_id] = (number, line)
                if event_id not in self.skip and not self._submit(publisher, fields, deadline):
                    return
            except ValidationError as error:
                self.invalid += 1
                self.failures.add(number, line, error)
            self.unsubmitted -= 1
            if self.checkpoint is not None:
                self.checkpoint.line = number  # saved only once submit() returned: the event is recorded
            now = time.monotonic()
            if now - refreshed >= 0.05:
                refreshed = now
                self._refresh(publisher)

    def _submit(self, publisher: Any, fields: Dict[str, Any], deadline: Optional[float]) -> bool:
        """Submit one event, waiting for room in the queue; False when told to stop first."""
        from ..errors import QueueFullError

        topic, data = fields.pop("topic"), fields.pop("data")
        while True:
            try:
                publisher.submit(topic, data, block_timeout=0.1, **fields)
                return True
            except QueueFullError:
                self._refresh(publisher)
                if self._stopping(deadline):
                    return False

    def _done(self, publisher: Any) -> Tuple[int, int]:
        stats = publisher.stats()
        failed = stats.failed + self.invalid - len(self.failures.held)  # held: not failed, not settled
        return self.earlier + stats.delivered + failed, failed

    def _refresh(self, publisher: Any) -> None:
        for failure in self.failures.drain():
            self.rejects.write(failure)
        self.progress.update(*self._done(publisher))
        if self.checkpoint is not None:
            self.checkpoint.save()

    def _summary(self, stats: Any, pending: int) -> None:
        elapsed = format_duration(time.monotonic() - self.progress.started)
        out = self.stream
        failures = self.failures
        undelivered, uncertain, unsent = failures.undelivered, failures.uncertain, failures.unsent
        tried = undelivered - uncertain - unsent
        out.write(f"minipub bulk: {stats.delivered:,} delivered ({stats.duplicates:,} already known to Outpost), "
                  f"{self.rejects.count - undelivered:,} failed for good, "
                  + (f"{tried:,} not delivered (retries or time ran out), " if tried else "")
                  + (f"{unsent:,} not sent (queued when the run stopped), " if unsent else "")
                  + (f"{uncertain:,} may or may not have been delivered (sent, no answer came), "
                     if uncertain else "")
                  + f"{stats.retried:,} retries, in {elapsed}")
        out.write(f"; {self.earlier:,} settled by an earlier run\n" if self.earlier else "\n")
        if self.rejects.count:
            out.write(f"minipub bulk: failed lines (with their errors) are in {printable(str(self.rejects.path))}\n")
        if self.unsubmitted:
            out.write(f"minipub bulk: {self.unsubmitted:,} line(s) not submitted (interrupted or --max-time)\n")
        if pending or (self.unsubmitted and self.args.outbox):
            out.write(f"minipub bulk: {pending:,} event(s) wait in the outbox {printable(self.args.outbox)}; "
                      "run the same command again to resume\n")
        elif self.unsubmitted or self.failures.undelivered:
            out.write("minipub bulk: run it again to send the rest (the same ids: Outpost deduplicates what "
                      "it already has), or use --outbox to resume where it stopped\n")
        out.flush()

    def _stopped_summary(self, stats: Any, error: BaseException, pending: int) -> None:
        out = self.stream
        out.write(f"minipub bulk: stopped at the first answer that every line would get: "
                  f"{describe(error, self.args.server_url)}\n")
        out.write(f"minipub bulk: {stats.delivered:,} delivered before it; no line was written as a reject for it "
                  f"({len(self.failures.held):,} event(s) sent or queued, {self.unsubmitted:,} line(s) not read); "
                  "fix the configuration and run the same command again"
                  + (f": {pending:,} event(s) wait in the outbox {printable(self.args.outbox)}\n"
                     if self.args.outbox else " (the same ids: Outpost deduplicates)\n"))
        if self.rejects.count:
            out.write(f"minipub bulk: {self.rejects.count:,} line(s) failed for good on their own; they are in "
                      f"{printable(str(self.rejects.path))}\n")
        out.flush()


def run(args: argparse.Namespace) -> int:
    return _Bulk(args).run()
