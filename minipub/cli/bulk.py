"""``minipub bulk FILE|-``: publish NDJSON (one publish request object per line) through a ``Publisher``.

Each line is ``{"tenant_id", "topic", "data", ...}`` (``publish``'s fields). A line without an
``id`` gets one derived from its line number and text, so a rerun sends the same ids and Outpost
deduplicates. With ``--outbox``, an interrupted run resumes where it stopped: what was submitted
waits in the outbox, and a small checkpoint beside it records how far the input was read.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Set, Tuple

from ..errors import ValidationError
from .checkpoint import Checkpoint, pending_ids
from .common import EXIT_OK, EXIT_REJECTED, UsageError, add_sending_flags, describe, make_sdk, positive, printable
from .failures import Failures, Rejects
from .gate import Gate, Interrupt, keep_pending
from .lines import FIELDS, LineError, default_rejects_path, derived_id, parse_line, read_lines
from .progress import Progress, format_duration

if TYPE_CHECKING:
    from .. import Publisher, PublisherStats

__all__ = ["NAME", "SUMMARY", "EXAMPLE", "add_arguments", "run", "FIELDS", "LineError", "derived_id", "parse_line",
           "default_rejects_path"]

NAME = "bulk"
SUMMARY = "Publish NDJSON, one publish request object per line, concurrently; retry until delivered."
EXAMPLE = """\
  # events.ndjson: {"tenant_id": "acme", "topic": "user.created", "data": {"user_id": "usr_1"}}
  minipub bulk events.ndjson --outbox events.outbox.db      # Ctrl-C, then the same command resumes
  zcat events.ndjson.gz | minipub bulk - --concurrency 16 --max-time 600"""

#: An outbox row in flight when a run was killed waits this long (seconds) before a resumed run
#: may send it (so two live runs never send it at once).
LEASE = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_sending_flags(parser, max_time=None, attempts=None,
                      max_time_help="stop after this long; what is not delivered by then is reported")


class _Bulk:
    """One run: read and number the lines, submit them, follow the publisher, report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        text, self.lines = read_lines(args.file)
        self.stream = sys.stderr
        tty = {"auto": None, "bar": True, "plain": False, "none": False}[args.progress]
        self.progress = Progress(len(self.lines), self.stream, tty=tty, quiet=args.progress == "none")
        rejects = Path(args.rejects) if args.rejects else default_rejects_path(args.file)
        if not rejects.parent.is_dir():
            raise UsageError(f"cannot write the rejects file {str(rejects)!r}: no such directory")
        self.rejects = Rejects(rejects, self.stream, self.progress)
        self.checkpoint: Optional[Checkpoint] = None
        self.skip: Set[str] = set()
        if args.outbox:
            self.checkpoint = Checkpoint(args.outbox, hashlib.sha256(text.encode()).hexdigest())
            self.skip = pending_ids(args.outbox)
        self.ids: Dict[str, Tuple[int, str]] = {}
        self.gate = Gate()
        self.failures = Failures(self.ids, self.gate)
        self.invalid = 0  # lines refused before sending
        self.earlier = 0  # lines an earlier run settled
        self.unsubmitted = 0  # lines not reached (Ctrl-C or --max-time)
        self.interrupt = Interrupt()

    def run(self) -> int:
        from .. import Publisher

        args = self.args
        # Each event is retried until delivered (or --max-time): --concurrency bounds the load and
        # the backoff the rate, so the per-client retry budget (made for a service's traffic) is off.
        sdk = make_sdk(args, retry_budget=None, wrap_auth=self.gate.wrap, sleep=self.gate.sleep)
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
            with Interrupt() as self.interrupt:
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
        stopped_by = self.gate.stopped_by
        if stopped_by is not None and args.outbox:
            pending = keep_pending(args.outbox, self.gate.held)
        if self.checkpoint is not None:
            if settled and not (interrupted or pending or self.unsubmitted):
                self.checkpoint.finished()
            else:
                self.checkpoint.save(force=True)
        if stopped_by is not None:
            self._stopped_summary(stats, stopped_by, pending)
            return self.gate.exit_code()
        self._summary(stats, pending)
        if interrupted:
            raise KeyboardInterrupt
        if self.failures.undelivered or pending or self.unsubmitted:
            return self.failures.exit_code()
        return EXIT_REJECTED if self.rejects.count else EXIT_OK

    def _stopping(self, deadline: Optional[float]) -> bool:
        return (self.interrupt.is_set() or self.gate.stopped_by is not None
                or (deadline is not None and time.monotonic() > deadline))

    def _submit_all(self, publisher: Publisher, resumed: int, deadline: Optional[float]) -> None:
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

    def _submit(self, publisher: Publisher, fields: Dict[str, Any], deadline: Optional[float]) -> bool:
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

    def _done(self, publisher: Publisher) -> Tuple[int, int]:
        stats = publisher.stats()
        failed = stats.failed + self.invalid - len(self.gate.held)  # held: not failed, not settled
        return self.earlier + stats.delivered + failed, failed

    def _refresh(self, publisher: Publisher) -> None:
        for failure in self.failures.drain():
            self.rejects.write(failure)
        self.progress.update(*self._done(publisher))
        if self.checkpoint is not None:
            self.checkpoint.save()

    def _summary(self, stats: PublisherStats, pending: int) -> None:
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

    def _stopped_summary(self, stats: PublisherStats, error: BaseException, pending: int) -> None:
        out = self.stream
        out.write(f"minipub bulk: stopped at the first answer that every line would get: "
                  f"{describe(error, self.args.server_url)}\n")
        out.write(f"minipub bulk: {stats.delivered:,} delivered before it; no line was written as a reject for it "
                  f"({len(self.gate.held):,} event(s) sent or queued, {self.unsubmitted:,} line(s) not read); "
                  "fix the configuration and run the same command again"
                  + (f": {pending:,} event(s) wait in the outbox {printable(self.args.outbox)}\n"
                     if self.args.outbox else " (the same ids: Outpost deduplicates)\n"))
        if self.rejects.count:
            out.write(f"minipub bulk: {self.rejects.count:,} line(s) failed for good on their own; they are in "
                      f"{printable(str(self.rejects.path))}\n")
        out.flush()


def run(args: argparse.Namespace) -> int:
    return _Bulk(args).run()
