"""``minipub publish TOPIC --tenant T --data JSON|@file|-``: publish one event, print its id."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable, List, Optional, Tuple

from .common import (
    EXIT_OK,
    UsageError,
    add_connection_flags,
    add_retry_flags,
    add_transport_flag,
    command_parser,
    make_sdk,
    printable,
    read_source,
)

EXAMPLE = """\
  export OUTPOST_API_KEY=...   OUTPOST_API_BASE_URL=http://localhost:3333/api/v1
  minipub publish user.created --tenant acme --data '{"user_id": "usr_123"}' --metadata source=crm
  minipub publish order.shipped --tenant acme --data @order.json --id order-42 --json
  jq -c .payload event.json | minipub publish order.shipped --tenant acme --data -"""


def metadata_pair(text: str) -> Tuple[str, str]:
    """``KEY=VALUE``, split at the first ``=`` (the value may hold more)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def parse_data(source: str) -> Any:
    """The event's data from JSON text, ``@file.json`` or ``-`` (stdin)."""
    if source == "-":
        where, text = "--data from stdin", read_source("-", "--data from stdin")
    elif source.startswith("@"):
        where, text = f"--data file {source[1:]!r}", read_source(source[1:], "--data file")
    else:
        where, text = "--data", source
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where} must be a JSON object ({{...}}), got {type(data).__name__}")
    return data


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = command_parser(commands, "publish", "Publish one event and print its id.", EXAMPLE, run)
    parser.add_argument("topic", metavar="TOPIC")
    parser.add_argument("--tenant", required=True, metavar="TENANT_ID", help="the tenant to publish to")
    parser.add_argument("--data", required=True, metavar="JSON|@FILE|-",
                        help="the event's data, a JSON object: inline, @path to a file, or - for stdin")
    parser.add_argument("--metadata", action="append", type=metadata_pair, default=[], metavar="KEY=VALUE",
                        help="a metadata entry (repeatable; split at the first =)")
    parser.add_argument("--id", metavar="ID", help="the event id (default: a new UUID, kept across retries)")
    parser.add_argument("--destination", metavar="ID", help="publish to this destination only")
    parser.add_argument("--time", metavar="RFC3339", help="the event time, e.g. 2024-01-15T10:30:00Z")
    parser.add_argument("--no-retry-eligible", dest="eligible_for_retry", action="store_false",
                        help="ask Outpost not to retry deliveries of this event")
    parser.add_argument("--json", action="store_true", help="print Outpost's whole answer as JSON")
    add_connection_flags(parser)
    add_transport_flag(parser)
    add_retry_flags(parser, max_time=30.0, attempts=3)


def _listed(ids: Optional[Iterable[str]]) -> Optional[List[str]]:
    """The matched destinations as a JSON list; null when a queue transport cannot know them."""
    return None if ids is None else list(ids)


def run(args: argparse.Namespace) -> int:
    data = parse_data(args.data)
    with make_sdk(args) as sdk:
        response = sdk.publish.event(
            tenant_id=args.tenant, topic=args.topic, data=data, eligible_for_retry=args.eligible_for_retry,
            destination_id=args.destination, metadata=dict(args.metadata) or None, id=args.id, time=args.time,
        )
    if args.json:
        print(json.dumps({"id": response.id, "duplicate": response.duplicate,
                          "destination_ids": _listed(response.destination_ids)}))
    else:
        print(printable(response.id))  # the server's text: escaped
        if response.duplicate:
            print("minipub: duplicate: Outpost had already accepted this event id", file=sys.stderr)
    return EXIT_OK
