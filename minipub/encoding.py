"""The one JSON encoder: compact UTF-8, strict, and exact about what it accepts.

Plain JSON values go through the C encoder; the walk before it checks keys, finite floats
and cycles, and converts datetimes, dates, UUIDs, Decimals, Enums and dataclasses.
Errors name the path of the bad value, e.g. ``data["items"][3]["price"]``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from .errors import ValidationError

__all__ = ["encode_json", "encode_envelope", "format_datetime"]

# A path is built only when an error needs it: (parent path, key) pairs.
_Path = Optional[Tuple[Any, Union[str, int]]]

_dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


class _Number(str):
    """A JSON number to be written with exactly these characters (from a Decimal)."""


def _render_path(root: str, path: _Path) -> str:
    keys: List[Union[str, int]] = []
    while path is not None:
        path, key = path
        keys.append(key)
    return root + "".join(f"[{json.dumps(k, ensure_ascii=False)}]" for k in reversed(keys))


class _Walk:
    """One walk over a value: returns a plain JSON structure or raises ValidationError."""

    __slots__ = ("active", "has_numbers", "root")

    def __init__(self, root: str) -> None:
        self.root = root
        self.active: Set[int] = set()
        self.has_numbers = False

    def fail(self, path: _Path, problem: str) -> ValidationError:
        return ValidationError(f"{_render_path(self.root, path)}: {problem}")

    def value(self, obj: Any, path: _Path) -> Any:
        kind = type(obj)
        if kind is str or kind is int or kind is bool or obj is None:
            return obj
        if kind is float:
            if math.isfinite(obj):
                return obj
            raise self.fail(path, f"{obj!r} is not valid JSON; send a finite number or null")
        if kind is dict or (isinstance(obj, Mapping) and not isinstance(obj, Enum)):
            return self.mapping(obj, path)
        if kind is list or kind is tuple:
            return self.sequence(obj, path)
        return self.other(obj, path)

    def enter(self, obj: Any, path: _Path) -> int:
        key = id(obj)
        if key in self.active:
            raise self.fail(path, "contains itself (a reference cycle); JSON cannot encode cycles")
        self.active.add(key)
        return key

    def mapping(self, obj: Any, path: _Path) -> Dict[str, Any]:
        marker = self.enter(obj, path)
        out: Dict[str, Any] = {}
        changed = type(obj) is not dict
        for key, item in obj.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise self.fail(
                        path, f"key {key!r} is a {type(key).__name__}; JSON object keys must be str"
                    )
                key = str(key)
                changed = True
            plain = self.value(item, (path, key))
            changed = changed or plain is not item
            out[key] = plain
        self.active.discard(marker)
        return out if changed else obj

    def sequence(self, obj: Any, path: _Path) -> List[Any]:
        marker = self.enter(obj, path)
        out = [self.value(item, (path, index)) for index, item in enumerate(obj)]
        self.active.discard(marker)
        if type(obj) is list and all(a is b for a, b in zip(out, obj)):
            return obj
        return out

    def other(self, obj: Any, path: _Path) -> Any:
        if isinstance(obj, Enum):
            return self.value(obj.value, path)
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return self.value(float(obj), path)
        if isinstance(obj, datetime):
            if obj.tzinfo is None or obj.utcoffset() is None:
                raise self.fail(path, "naive datetime; attach a timezone (e.g. tzinfo=timezone.utc)")
            return obj.isoformat()
        if isinstance(obj, date):
            return obj.isoformat()
        # Modules below are looked up, not imported: an instance implies its module is loaded.
        uuid = sys.modules.get("uuid")
        if uuid is not None and isinstance(obj, uuid.UUID):
            return str(obj)
        decimal = sys.modules.get("decimal")
        if decimal is not None and isinstance(obj, decimal.Decimal):
            if not obj.is_finite():
                raise self.fail(path, f"{obj!r} is not valid JSON; send a finite number or null")
            self.has_numbers = True
            return _Number(obj)
        if hasattr(type(obj), "__dataclass_fields__") and not isinstance(obj, type):
            dataclasses = sys.modules["dataclasses"]
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            marker = self.enter(obj, path)
            out = self.mapping(fields, path)
            self.active.discard(marker)
            return out
        if isinstance(obj, (list, tuple)):
            return self.sequence(obj, path)
        hints: Dict[type, str] = {
            bytes: "decode it to str (or base64-encode it) first",
            bytearray: "decode it to str (or base64-encode it) first",
            set: "convert it to a list",
            frozenset: "convert it to a list",
        }
        hint = hints.get(type(obj), "convert it to a str, number, bool, None, list or dict")
        raise self.fail(path, f"cannot encode a {type(obj).__name__} as JSON; {hint}")


def _emit(obj: Any, out: List[str]) -> None:
    """Write a plain structure holding Decimal numbers (the rare, slower path)."""
    if isinstance(obj, _Number):
        out.append(str.__str__(obj))
    elif isinstance(obj, dict):
        out.append("{")
        for index, (key, item) in enumerate(obj.items()):
            out.append(("," if index else "") + _dumps(key) + ":")
            _emit(item, out)
        out.append("}")
    elif isinstance(obj, list):
        out.append("[")
        for index, item in enumerate(obj):
            if index:
                out.append(",")
            _emit(item, out)
        out.append("]")
    else:
        out.append(_dumps(obj))


def encode_json(value: Any, *, root: str = "data") -> bytes:
    """Encode ``value`` as compact UTF-8 JSON; ``root`` names it in error messages."""
    walk = _Walk(root)
    plain = walk.value(value, None)
    if not walk.has_numbers:
        return _dumps(plain).encode()
    out: List[str] = []
    _emit(plain, out)
    return "".join(out).encode()


def _flat_plain(envelope: Dict[str, Any]) -> bool:
    """Whether every value is an exact str or bool, or a dict of exact str to exact str."""
    for value in envelope.values():
        kind = type(value)
        if kind is dict:
            if not all(type(k) is str and type(v) is str for k, v in value.items()):
                return False
        elif kind is not str and kind is not bool:
            return False
    return True


_SCALARS = frozenset({str, int, bool, type(None)})


def _flat_scalars(value: Dict[Any, Any]) -> bool:
    """Whether a dict has only exact str keys and exact str, int, bool or None values."""
    scalars = _SCALARS
    return all(type(key) is str and type(item) in scalars for key, item in value.items())


def encode_envelope(envelope: Dict[str, Any], key: str, value: Any, *, root: str = "data",
                    envelope_root: str = "request") -> bytes:
    """Encode ``{**envelope, key: value}`` in one pass; ``root`` names ``value`` in error messages.

    The same bytes as encoding the envelope and the value apart and splicing them, for less work.
    """
    outer = None if _flat_plain(envelope) else _Walk(envelope_root)
    plain_envelope = envelope if outer is None else outer.value(envelope, None)
    if type(value) is dict and _flat_scalars(value):  # nothing to check or convert
        whole = {**plain_envelope, key: value}
        if outer is None or not outer.has_numbers:
            return _dumps(whole).encode()
    inner = _Walk(root)
    whole = {**plain_envelope, key: inner.value(value, None)}
    if not (inner.has_numbers or (outer is not None and outer.has_numbers)):
        return _dumps(whole).encode()
    out: List[str] = []
    _emit(whole, out)
    return "".join(out).encode()


def format_datetime(value: datetime, *, field: str) -> str:
    """An aware datetime as RFC 3339; a naive one is rejected."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{field}: naive datetime; attach a timezone (e.g. tzinfo=timezone.utc)")
    return value.isoformat()
