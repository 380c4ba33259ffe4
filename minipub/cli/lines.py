"""``bulk``'s input: NDJSON lines, each one publish request object, numbered and given a stable id.

The fields a line may carry, and which it must, are ``minipub.fields``' (``LINE_FIELDS``,
``REQUIRED_FIELDS``): the event's own. Fields starting with ``_`` are ignored, so a fixed
rejects file (``_line``, ``_error``) can be fed back in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..errors import ValidationError
from ..fields import LINE_FIELDS, REQUIRED_FIELDS
from .common import json_object, read_source

__all__ = ["FIELDS", "LineError", "derived_id", "parse_line", "read_lines", "default_rejects_path"]

#: The fields a line may carry (``publish``'s event fields).
FIELDS = LINE_FIELDS


class LineError(ValidationError):
    """A line that cannot become a publish request."""


def derived_id(number: int, text: str) -> str:
    """A stable event id for a line without one: from its line number and its text."""
    digest = hashlib.sha256(f"{number}\n{text}".encode()).hexdigest()
    return f"bulk-{digest[:32]}"


def parse_line(number: int, text: str) -> Dict[str, Any]:
    """The ``Publisher.submit`` keywords for one line (validated later, by ``submit``)."""
    value = json_object(text, LineError, "not valid JSON", "a line must be a JSON object (a publish request)")
    fields = {k: v for k, v in value.items() if not k.startswith("_")}
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise LineError(f"unknown field(s) {', '.join(unknown)}; a line may have {', '.join(FIELDS)}")
    for required in REQUIRED_FIELDS:
        if required not in fields:
            raise LineError(f"{required} is required")
    if not fields.get("id"):
        fields["id"] = derived_id(number, text)
    return fields


def read_lines(source: str) -> Tuple[str, List[Tuple[int, str]]]:
    """The input's text (``-``: stdin), and its lines that are not blank, numbered from 1."""
    text = read_source(source, "input")
    return text, [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def default_rejects_path(source: str) -> Path:
    """``events.ndjson`` → ``events.rejects.ndjson`` beside it; stdin → ``stdin.rejects.ndjson``."""
    if source == "-":
        return Path("stdin.rejects.ndjson")
    path = Path(source)
    return path.with_name(f"{path.stem}.rejects{path.suffix or '.ndjson'}")
