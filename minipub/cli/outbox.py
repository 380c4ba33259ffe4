"""``minipub outbox PATH [list|replay|purge-dead]``: inspect an outbox, retry its dead letters, purge them."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..retry import is_final
from .common import (
    EXIT_OK,
    EXIT_REJECTED,
    UsageError,
    add_sending_flags,
    describe,
    make_sdk,
    positive,
    printable,
    undelivered_exit_code,
)
from .gate import Gate, keep_pending

if TYPE_CHECKING:
    from .. import Event, Outbox

NAME = "outbox"
SUMMARY = "Inspect an outbox, retry its dead letters, or purge them."
EXAMPLE = """\
  minipub outbox events.outbox.db                  # pending events and dead letters
  minipub outbox events.outbox.db replay           # send the dead letters (and anything pending) again
  minipub outbox events.outbox.db purge-dead --id 3 --id 4"""

ACTIONS = ("list", "replay", "purge-dead")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the outbox file (a Publisher's or bulk's --outbox)")
    parser.add_argument("action", nargs="?", choices=ACTIONS, default="list",
                        help="list (default): pending events and dead letters; replay: send the dead letters "
                             "(these --id, or all) and whatever is pending; purge-dead: delete dead letters")
    parser.add_argument("--id", dest="ids", action="append", type=int, metavar="N",
                        help="a dead letter's number, as listed (repeatable; default: all)")
    parser.add_argument("--limit", type=positive(int), default=20, metavar="N",
                        help="list at most N of each (default: 20)")
    parser.add_argument("--json", action="store_true", help="list as JSON lines")
    parser.add_argument("--concurrency", type=positive(int), default=4, metavar="N", help="replay: events in flight")
    add_sending_flags(parser, max_time=60.0, attempts=None,
                      max_time_help="replay: stop after this long; what is not delivered stays pending")


def _when(timestamp: Optional[float]) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(outbox: Outbox, limit: int, as_json: bool) -> int:
    pending, dead = outbox.pending(limit), outbox.dead_letters(limit)
    counts = (outbox.pending_count(), outbox.dead_letter_count())
    if as_json:
        for entry in pending:
            print(json.dumps({"kind": "pending", "row": entry.id, "id": entry.event.id,
                              "tenant_id": entry.event.tenant_id, "topic": entry.event.topic,
                              "rounds": entry.rounds, "first_sent_at": _when(entry.first_sent_at),
                              "last_error": entry.last_error}))
        for letter in dead:
            print(json.dumps({"kind": "dead", "row": letter.id, "id": letter.event.id,
                              "tenant_id": letter.event.tenant_id, "topic": letter.event.topic,
                              "status": letter.status, "error": letter.error, "failed_at": _when(letter.failed_at)}))
        return EXIT_OK
    # ids, tenants, topics and errors came from an input file or a server: escaped (printable)
    print(printable(f"{outbox.path}: {counts[0]:,} pending, {counts[1]:,} dead letter(s)"))
    if pending:
        print(f"pending (oldest first{', first ' + str(limit) if counts[0] > limit else ''}):")
        for entry in pending:
            print(printable(f"  {entry.event.id}  tenant={entry.event.tenant_id} topic={entry.event.topic}  "
                            f"failed rounds={entry.rounds}  first sent {_when(entry.first_sent_at)}"
                            + (f"  last error: {entry.last_error}" if entry.last_error else "")))
    if dead:
        print(f"dead letters (oldest first{', first ' + str(limit) if counts[1] > limit else ''}):")
        for letter in dead:
            print(printable(f"  #{letter.id}  {letter.event.id}  tenant={letter.event.tenant_id} "
                            f"topic={letter.event.topic}  failed {_when(letter.failed_at)}: {letter.error}"))
        print("replay them with: minipub outbox PATH replay [--id N ...]; delete them with: purge-dead [--id N ...]")
    return EXIT_OK


def _replay(args: argparse.Namespace, outbox: Outbox) -> int:
    from .. import Publisher

    failures: List[Tuple[str, BaseException]] = []
    lock = threading.Lock()
    gate = Gate()

    def on_error(event: Event, error: BaseException) -> None:
        if not gate.holds(event.id, error):  # held: a wrong configuration failed it, pending again afterwards
            with lock:
                failures.append((event.id, error))

    with make_sdk(args, wrap_auth=gate.wrap, sleep=gate.sleep) as sdk:
        # Moved before the publisher starts: a starting publisher replays (and flush waits for)
        # everything pending in its outbox.
        moved = outbox.replay_dead_letters(args.ids)
        outbox.close()
        print(f"minipub outbox: {moved:,} dead letter(s) back in the outbox; sending", file=sys.stderr)
        started = time.monotonic()
        deadline = started + args.max_time
        publisher = Publisher(sdk, workers=args.concurrency, outbox=args.path, on_error=on_error, exit_timeout=1.0)
        settled = False
        try:
            while not (settled or gate.stopped_by is not None or time.monotonic() > deadline):
                settled = publisher.flush(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
        finally:
            if not settled:
                gate.close()  # --max-time or a wrong configuration: no attempt starts after this
            publisher.close(timeout=30.0 if settled else 0.0)
        stats = publisher.stats()
    if gate.stopped_by is not None:
        pending = keep_pending(args.path, gate.held)
        print(f"minipub outbox: stopped at the first answer that every event would get: "
              f"{describe(gate.stopped_by, args.server_url)}", file=sys.stderr)
        print(f"minipub outbox: {stats.delivered:,} delivered before it; {pending:,} event(s) stay pending "
              "(none became a dead letter for it); fix the configuration and replay again", file=sys.stderr)
        return gate.exit_code()
    for event_id, error in failures:
        print(f"minipub outbox: {printable(event_id)}: {describe(error, args.server_url)}", file=sys.stderr)
    print(f"minipub outbox: {stats.delivered:,} delivered ({stats.duplicates:,} already known to Outpost), "
          f"{len(failures):,} failed again, {stats.queued:,} still pending, in {time.monotonic() - started:.1f}s",
          file=sys.stderr)
    if not settled or stats.queued:
        return undelivered_exit_code(error for _, error in failures if not is_final(error))
    return EXIT_REJECTED if failures else EXIT_OK


def run(args: argparse.Namespace) -> int:
    from .. import Outbox

    if not os.path.isfile(args.path):
        raise UsageError(f"no outbox at {args.path!r}")
    with Outbox(args.path) as outbox:
        if args.action == "replay":
            return _replay(args, outbox)
        if args.action == "purge-dead":
            removed = outbox.purge_dead_letters(args.ids)
            print(f"minipub outbox: {removed:,} dead letter(s) deleted", file=sys.stderr)
            return EXIT_OK
        return _list(outbox, args.limit, args.json)
