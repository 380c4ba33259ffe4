"""Outpost's publish handler and event handler, as the embedded server imitates them: the body
decoded as Go decodes it, validated with Outpost's messages, matched to destinations, deduplicated
by event id when a destination matched (a repeat of an id still being processed waits, then is a
duplicate or 409), and stored once per id.
"""

from __future__ import annotations

import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, TextIO, Tuple

from ._gojson import BOOL, RAW, STRING, STRING_MAP, TIME, GoDecodeError, decode_struct
from ._routes import Result, empty_result, error_result, json_result
from ._tenants import TenantStore

__all__ = ["Publishes", "PublishRules", "printable"]

_PROCESSING = "processing"
_PROCESSED = "processed"
# The Go struct Outpost decodes a publish into (JSON name -> Go type).
_PUBLISH_FIELDS = {"id": STRING, "tenant_id": STRING, "destination_id": STRING, "topic": STRING,
                   "eligible_for_retry": BOOL, "time": TIME, "metadata": STRING_MAP, "data": RAW}


def printable(value: Any) -> str:
    """Untrusted text for one output line: control and other unprintable characters escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _problems(fields: Dict[str, Any], topics: Optional[Tuple[str, ...]]) -> List[str]:
    """Outpost's validation messages for a decoded publish (the first failing rule's)."""
    missing = [f"{name} is required" for name in ("tenant_id", "data")
               if (not fields.get(name) if name == "tenant_id" else name not in fields)]
    if missing:
        return missing
    if not isinstance(fields["data"], dict):
        return ["data must be a valid JSON object"]
    topic = fields.get("topic") or ""
    if topics:
        if not topic:
            return ["topic is required"]
        if topic != "*" and topic not in topics:
            return ["topic is invalid"]
    return []


@dataclass(frozen=True)
class PublishRules:
    """How publishes are judged and told: the topics configured (None: any), how long a repeat of
    an id still processing waits, and whether each accepted one is printed (to ``stream``, else stdout)."""

    topics: Optional[Tuple[str, ...]]
    processing_wait: float
    verbose: bool = False
    stream: Optional[TextIO] = None


class Publishes:
    """Accepted events (once per id) and the state of each id, under the server's lock (``cond``)."""

    def __init__(self, cond: threading.Condition, tenants: TenantStore, stopping: threading.Event,
                 rules: PublishRules) -> None:
        self._cond, self._tenants, self._stopping, self.rules = cond, tenants, stopping, rules
        self._print_lock = threading.Lock()
        self.events: List[Dict[str, Any]] = []
        self._stored_ids: Set[str] = set()
        self._ids: Dict[str, str] = {}

    def clear(self) -> None:
        """Forget events and processed ids (ids still processing stay claimed); caller holds the lock."""
        self.events.clear()
        self._stored_ids.clear()
        for key in [k for k, v in self._ids.items() if v == _PROCESSED]:
            del self._ids[key]

    def sleep(self, seconds: float) -> None:
        """Wait, but wake when the server closes."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def accept(self, body: bytes, delay: float = 0.0) -> Result:
        """Decode, validate, match and deduplicate one publish; the answer (status, body, headers)."""
        try:
            fields, received = decode_struct(body, _PUBLISH_FIELDS)
        except GoDecodeError as error:
            self.sleep(delay)
            return error_result(422, error.message)
        problems = _problems(fields, self.rules.topics)
        if problems:
            self.sleep(delay)
            return error_result(422, "validation error", problems)
        event = dict(received)
        event.update(fields)
        event["id"] = fields.get("id") or str(uuid.uuid4())
        with self._cond:
            matched = self._tenants.match(fields["tenant_id"], fields.get("topic") or "",
                                          fields.get("destination_id") or "")
        if not matched:  # no deduplication without a matching destination
            self.sleep(delay)
            with self._cond:
                self._store(event)
            return self._accepted(event, matched, duplicate=False)
        return self._deduplicated(event, matched, delay)

    def _deduplicated(self, event: Dict[str, Any], matched: List[str], delay: float) -> Result:
        event_id = event["id"]
        with self._cond:
            state = self._ids.get(event_id)
            if state is None:
                self._ids[event_id] = _PROCESSING
        if state == _PROCESSED:
            self.sleep(delay)
            return self._accepted(event, matched, duplicate=True)
        if state == _PROCESSING:  # Outpost sleeps a fixed while, then looks once more
            self.sleep(self.rules.processing_wait)
            with self._cond:
                done = self._ids.get(event_id) == _PROCESSED
            self.sleep(delay)
            return self._accepted(event, matched, duplicate=True) if done else empty_result(409)
        stored = False
        try:
            self.sleep(delay)
            with self._cond:
                self._store(event)
                self._ids[event_id] = _PROCESSED
                stored = True
        finally:
            with self._cond:
                if not stored:
                    self._ids.pop(event_id, None)
                self._cond.notify_all()
        return self._accepted(event, matched, duplicate=False)

    def _store(self, event: Dict[str, Any]) -> None:
        """Append an event once per id; caller holds the lock."""
        if event["id"] not in self._stored_ids:
            self._stored_ids.add(event["id"])
            self.events.append(event)

    def _accepted(self, event: Dict[str, Any], matched: List[str], *, duplicate: bool) -> Result:
        if self.rules.verbose:
            stream = self.rules.stream if self.rules.stream is not None else sys.stdout
            line = (
                f"accepted id={printable(event['id'])} tenant={printable(event.get('tenant_id'))}"
                f" topic={printable(event.get('topic') or '-')}"
                f" destinations={printable(','.join(matched) or '-')}"
                f" duplicate={'true' if duplicate else 'false'}"
            )
            with self._print_lock:  # one whole line at a time from concurrent handler threads
                stream.write(line + "\n")
                stream.flush()
        return json_result(202, {"id": event["id"], "duplicate": duplicate, "destination_ids": matched})
