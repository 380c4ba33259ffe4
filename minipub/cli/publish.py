"""``minipub publish TOPIC --tenant T --data JSON|@file|-``: publish one event, print its id."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..fields import FIELDS, LINE_FIELDS, REQUIRED
from .common import EXIT_OK, UsageError, add_sending_flags, json_object, make_sdk, printable, read_source

NAME = "publish"
SUMMARY = "Publish one event and print its id."
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


def parse_data(source: str) -> Dict[str, Any]:
    """The event's data from JSON text, ``@file.json`` or ``-`` (stdin)."""
    if source == "-":
        where, text = "--data from stdin", read_source("-", "--data from stdin")
    elif source.startswith("@"):
        where, text = f"--data file {source[1:]!r}", read_source(source[1:], "--data file")
    else:
        where, text = "--data", source
    return json_object(text, UsageError, f"{where} is not valid JSON", f"{where} must be a JSON object ({{...}})")


def _metadata(pairs: List[Tuple[str, str]]) -> Optional[Dict[str, str]]:
    return dict(pairs) or None


#: The command line's words for the event's fields, in ``--help``'s order: argparse's keywords, plus
#: ``flag`` (none: the positional argument) and ``convert`` (from the parsed value to the field's).
#: The fields, which are required and their defaults are ``minipub.fields``' (``LINE_FIELDS``); a field
#: not spelled here gets ``--field-name`` and its doc from there.
SPELLING: Dict[str, Dict[str, Any]] = {
    "topic": {"metavar": "TOPIC"},
    "tenant_id": {"flag": "--tenant", "metavar": "TENANT_ID", "help": "the tenant to publish to"},
    "data": {"flag": "--data", "metavar": "JSON|@FILE|-", "convert": parse_data,
             "help": "the event's data, a JSON object: inline, @path to a file, or - for stdin"},
    "metadata": {"flag": "--metadata", "action": "append", "type": metadata_pair, "default": [],
                 "metavar": "KEY=VALUE", "convert": _metadata,
                 "help": "a metadata entry (repeatable; split at the first =)"},
    "id": {"flag": "--id", "metavar": "ID", "help": "the event id (default: a new UUID, kept across retries)"},
    "destination_id": {"flag": "--destination", "metavar": "ID", "help": "publish to this destination only"},
    "time": {"flag": "--time", "metavar": "RFC3339", "help": "the event time, e.g. 2024-01-15T10:30:00Z"},
    "eligible_for_retry": {"flag": "--no-retry-eligible", "action": "store_false",
                           "help": "ask Outpost not to retry deliveries of this event"},
}


def _spelling(name: str) -> Dict[str, Any]:
    """How a field is given on the command line (its own spelling, or ``--field-name``)."""
    doc = next(field.doc for field in FIELDS if field.name == name)
    return SPELLING.get(name) or {"flag": "--" + name.replace("_", "-"), "metavar": name.upper(), "help": doc}


def add_field_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument per event field: required when the field is, else the field's default."""
    defaults = {field.name: field.default for field in FIELDS}
    order = {name: position for position, name in enumerate(SPELLING)}
    for name in sorted(LINE_FIELDS, key=lambda name: order.get(name, len(order))):
        options = {k: v for k, v in _spelling(name).items() if k not in ("flag", "convert")}
        flag = _spelling(name).get("flag")
        if flag is None:
            parser.add_argument(name, **options)
        elif defaults[name] is REQUIRED:
            parser.add_argument(flag, dest=name, required=True, **options)
        else:
            parser.add_argument(flag, dest=name, **{"default": defaults[name], **options})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_field_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print Outpost's whole answer as JSON")
    add_sending_flags(parser, max_time=30.0, attempts=3)


def event_fields(args: argparse.Namespace) -> Dict[str, Any]:
    """The event's fields from the parsed command line (``--data`` read and parsed here)."""
    same: Callable[[Any], Any] = lambda value: value  # noqa: E731
    return {name: _spelling(name).get("convert", same)(getattr(args, name)) for name in LINE_FIELDS}


def _listed(ids: Optional[Iterable[str]]) -> Optional[List[str]]:
    """The matched destinations as a JSON list; null when a queue transport cannot know them."""
    return None if ids is None else list(ids)


def run(args: argparse.Namespace) -> int:
    fields = event_fields(args)
    with make_sdk(args) as sdk:
        response = sdk.publish.event(**fields)
    if args.json:
        print(json.dumps({"id": response.id, "duplicate": response.duplicate,
                          "destination_ids": _listed(response.destination_ids)}))
    else:
        print(printable(response.id))  # the server's text: escaped
        if response.duplicate:
            print("minipub: duplicate: Outpost had already accepted this event id", file=sys.stderr)
    return EXIT_OK
