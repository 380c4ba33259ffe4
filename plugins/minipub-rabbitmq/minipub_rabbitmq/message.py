"""What Outpost's publish-queue consumer would drop or loop on, refused before anything is queued.

Outpost validates an HTTP publish in its handler (422 before anything happens) but not a queue
message: one without ``tenant_id`` matches nothing and is acked and dropped; one it cannot decode
(a type mismatch, a bad ``time``, non-object ``data``, a topic error) is nacked with requeue and
loops. minipub's request building already applies the handler's rules to ``sdk.publish.event``;
this module checks the final body again (anything can be handed to ``send``), with Go's decoding
in mind: keys match case-insensitively, ``null`` leaves a field unset, a type mismatch fails.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Collection, Dict, List, Optional, Tuple

from minipub.errors import ValidationError

__all__ = ["InvalidQueueMessage", "check_message", "FIELDS"]

#: Outpost's publish fields and the JSON type each must have when present and not null.
FIELDS: Dict[str, Tuple[type, ...]] = {
    "id": (str,),
    "tenant_id": (str,),
    "topic": (str,),
    "destination_id": (str,),
    "eligible_for_retry": (bool,),
    "time": (str,),
    "metadata": (dict,),
    "data": (dict,),
}
_FOLDED = {name.lower(): name for name in FIELDS}
# Go's strict RFC 3339 (encoding/json into time.Time): upper-case T and Z, seconds 00-59.
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-](\d\d):(\d\d))\Z")


class InvalidQueueMessage(ValidationError):
    """A body Outpost's queue consumer would drop or requeue forever; nothing was queued."""


class _Object(dict):  # type: ignore[type-arg]
    """A decoded JSON object that remembers its keys as written (duplicates included)."""

    written: List[str]


def _pairs(pairs: List[Tuple[str, Any]]) -> _Object:
    out = _Object(pairs)
    out.written = [key for key, _ in pairs]
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python reads NaN and Infinity; Go does not


def _check_spelling(written: List[str]) -> None:
    seen: Dict[str, str] = {}
    for key in written:
        folded = key.casefold()  # Go matches keys case-insensitively (Unicode folding) and keeps the last
        if folded in _FOLDED and (folded in seen or key != _FOLDED[folded]):
            raise InvalidQueueMessage(f"the message has the field {key!r} besides or instead of "
                                      f"{_FOLDED[folded]!r}: spell each Outpost field once, in lower case")
        seen[folded] = key


def _time_ok(text: str) -> bool:
    match = _TIME.match(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if second > 59 or (match.group(9) is not None and (int(match.group(9)) > 23 or int(match.group(10)) > 59)):
        return False
    try:
        datetime(max(year, 1), month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _field(body: Dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, FIELDS[name]):
        kinds = " or ".join(t.__name__ for t in FIELDS[name]).replace("dict", "object").replace("str", "string")
        raise InvalidQueueMessage(f"{name} must be a JSON {kinds}, got {type(value).__name__}: Outpost's queue "
                                  f"consumer cannot decode it and would requeue the message forever")
    if isinstance(value, bool) and FIELDS[name] != (bool,):
        raise InvalidQueueMessage(f"{name} must not be a boolean")
    return value


def check_message(body: bytes, topics: Optional[Collection[str]] = None) -> str:
    """The event id of a body Outpost's consumer will handle; else :class:`InvalidQueueMessage`.

    ``topics``: the Outpost server's ``TOPICS`` when it has some (then a topic must be one of them
    or ``"*"``); None when it has none (any topic, or none, is accepted).
    """
    try:
        decoded = json.loads(body.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidQueueMessage("the message is not a JSON document (Outpost would requeue it forever)") from None
    if not isinstance(decoded, dict):
        raise InvalidQueueMessage(f"the message must be a JSON object, got {type(decoded).__name__}")
    _check_spelling(getattr(decoded, "written", []))
    values = {name: _field(decoded, name) for name in FIELDS}
    event_id, tenant = values["id"], values["tenant_id"]
    if not event_id or not event_id.strip():
        raise InvalidQueueMessage("id is required on the queue path: without it a retried publish is a new "
                                  "event (Outpost deduplicates by id)")
    if not tenant or not tenant.strip():
        raise InvalidQueueMessage("tenant_id is required: Outpost would ack the message and drop it")
    if values["data"] is None:
        raise InvalidQueueMessage("data is required and must be a JSON object (Outpost would requeue it forever)")
    metadata = values["metadata"]
    if metadata is not None and not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidQueueMessage("metadata values must be strings (Outpost would requeue the message forever)")
    when = values["time"]
    if when is not None and not _time_ok(when):
        raise InvalidQueueMessage(f"time {when!r} is not an RFC 3339 date-time Go parses (upper-case T and Z, "
                                  "seconds 00-59): Outpost would requeue the message forever")
    topic = values["topic"]
    if topics is not None:
        if not topic:
            raise InvalidQueueMessage("topic is required: the Outpost server has TOPICS configured")
        if topic != "*" and topic not in topics:
            raise InvalidQueueMessage(f"topic {topic!r} is not one of the server's TOPICS "
                                      f"({', '.join(sorted(topics))}) or '*'")
    return str(event_id)
