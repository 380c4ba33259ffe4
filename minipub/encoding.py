"""The one JSON encoder: compact UTF-8, strict, and exact about what it accepts.

Plain JSON values go through the C encoder; the walk before it checks keys, finite floats
and cycles, and converts datetimes, dates, UUIDs, Decimals, Enums and dataclasses.
Errors name the path of the bad value, e.g. ``data["items"][3]["price"]``. Nothing but a
``ValidationError`` leaves it: data nested past the recursion limit, lone surrogates, ints too long
to write, and exceptions raised by the caller's own objects are all reported that way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from enum import Enum

from ._modules import loaded_module
from .errors import ValidationError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from datetime import datetime
    from types import ModuleType
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

__all__ = ["encode_json", "encode_envelope", "encode_event", "format_datetime", "loaded_datetime", "show"]

# A path is built only when an error needs it: (parent path, key) pairs.
if TYPE_CHECKING:
    _Path = Optional[Tuple[Any, Union[str, int]]]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)
_dumps: Callable[[Any], str] = _encoder.encode


def _direct_dumps() -> Callable[[Any], str]:
    """``_dumps`` without the per-call setup of ``JSONEncoder.encode`` (it builds a C encoder each
    time): the C encoder made once, for plain values only (no cycle check: callers pass flat data).
    Where the C encoder is missing or its signature differs, ``_dumps`` itself."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the _json accelerator
        return _dumps
    try:
        encode = make(None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        sample = {"a": [1, 2.5, "\u20ac\n", None, True]}
        if "".join(encode(sample, 0)) != _dumps(sample):  # pragma: no cover - another json version
            return _dumps
    except Exception:  # pragma: no cover - another json version
        return _dumps
    return lambda value: "".join(encode(value, 0))


#: ``_dumps`` for flat plain values: the same text, for less work.
_dumps_flat = _direct_dumps()
#: A str as JSON text: the C encoder's own string writer (what ``_dumps`` writes for an exact str).
_string: Callable[[str], str] = json.encoder.encode_basestring


class _Number(str):
    """A JSON number to be written with exactly these characters (from a Decimal)."""


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message: capped, and never raising (the value may be anyone's object)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render_keys(root: str, keys: List[Union[str, int]]) -> str:
    """``root["a"][0]``; with an empty ``root`` the first key is a bare field name (``metadata["k"]``)."""
    if not root and keys:
        root, keys = str(keys[0]), keys[1:]
    if len(keys) > 12:  # a path hundreds of levels deep: its start and end say enough
        keys = [*keys[:6], "...", *keys[-6:]]
    return root + "".join("..." if k == "..." else f"[{_key_text(k)}]" for k in keys)


def _key_text(key: Union[str, int]) -> str:
    """A key as in JSON source; a lone surrogate escaped (a message must be printable)."""
    return json.dumps(key, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()


def _render_path(root: str, path: _Path) -> str:
    keys: List[Union[str, int]] = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    return _render_keys(root, keys)


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
            raise self.fail(path, f"{show(obj)} is not valid JSON; send a finite number or null")
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
                        path, f"key {show(key)} is a {type(key).__name__}; JSON object keys must be str"
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
        dates = loaded_datetime()
        if dates is not None and isinstance(obj, dates.datetime):
            text, problem = _rfc3339(obj)
            if problem:
                raise self.fail(path, problem)
            return text
        if dates is not None and isinstance(obj, dates.date):
            return obj.isoformat()
        # Modules here are looked up, not imported: an instance implies its module is loaded
        # (loaded_module waits for one that another thread is still importing).
        uuid = loaded_module("uuid")
        if uuid is not None and isinstance(obj, uuid.UUID):
            return str(obj)
        decimal = loaded_module("decimal")
        if decimal is not None and isinstance(obj, decimal.Decimal):
            if not obj.is_finite():
                raise self.fail(path, f"{show(obj)} is not valid JSON; send a finite number or null")
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


def _walk(walk: _Walk, value: Any) -> Any:
    """``walk.value(value)``, with whatever else goes wrong as a ValidationError naming ``walk.root``."""
    try:
        return walk.value(value, None)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(_too_deep(walk.root)) from None
    except Exception as exc:  # the caller's own Mapping, dataclass, str or tzinfo raised
        name = walk.root or "request"
        raise ValidationError(f"{name}: reading it raised {type(exc).__name__}: {show(exc, 200)}") from exc


def _too_deep(name: str) -> str:
    return (f"{name or 'request'}: nested too deeply to encode (past Python's recursion limit, "
            f"{sys.getrecursionlimit()}); flatten it")


def _write(plain: Any, numbers: bool, root: str) -> bytes:
    """The plain structure as compact UTF-8 JSON; what cannot be written is named by its path."""
    try:
        if not numbers:
            return _dumps(plain).encode()
        out: List[str] = []
        _emit(plain, out)
        return "".join(out).encode()
    except RecursionError:
        raise ValidationError(_too_deep(_deepest(plain, root))) from None
    except ValueError:  # a lone surrogate (UnicodeEncodeError), an int past Python's digit limit
        found = _unwritable(plain, root)
        if found is None:  # pragma: no cover - every ValueError above comes from one value
            raise ValidationError(f"{root or 'request'}: cannot be encoded as UTF-8 JSON") from None
        raise ValidationError(found) from None


def _children(value: Any) -> Any:
    if isinstance(value, dict):
        return value.items()
    if isinstance(value, list):
        return enumerate(value)
    return ()


def _deepest(plain: Any, root: str) -> str:
    """The top-level field holding the deepest nesting (the one that ran out of stack)."""
    if root or not isinstance(plain, dict):
        return root
    return max(plain, key=lambda k: _depth(plain[k]), default=root)


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        level = [child for item in level for _, child in _children(item)]
        depth += 1
    return depth


def _problem(value: Any) -> Optional[str]:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            return (f"contains a lone surrogate ({value[exc.start]!r} at index {exc.start}), which is not "
                    "valid Unicode text (often bytes decoded with errors='surrogateescape'); decode with "
                    "errors='replace', or send the bytes base64-encoded")
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            str(value)
        except ValueError:
            return "an int too long to write as a number; send it as a str"
    return None


def _unwritable(plain: Any, root: str) -> Optional[str]:
    """The first value (or key) that cannot be written, as "path: problem"; iterative (any depth)."""
    stack: List[Tuple[Any, List[Union[str, int]]]] = [(plain, [])]
    while stack:
        value, keys = stack.pop()
        problem = _problem(value)
        if problem is not None:
            return f"{_render_keys(root, keys)}: {problem}"
        for key, child in _children(value):
            if isinstance(key, str):
                problem = _problem(key)
                if problem is not None:
                    where = _render_keys(root, keys) or root or "request"
                    return f"{where}: a key {problem}"
            stack.append((child, [*keys, key]))
    return None


def encode_json(value: Any, *, root: str = "data") -> bytes:
    """Encode ``value`` as compact UTF-8 JSON; ``root`` names it in error messages."""
    walk = _Walk(root)
    plain = _walk(walk, value)
    return _write(plain, walk.has_numbers, root)


_STR = frozenset({str})
_TEXT_OR_BOOL = frozenset({str, bool})
#: Values the C encoder writes exactly as the walk would (a float that is not finite makes it raise).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat_plain(envelope: Dict[str, Any]) -> bool:
    """Whether every value is an exact str or bool, or a dict of exact str to exact str."""
    if _TEXT_OR_BOOL.issuperset(map(type, envelope.values())):  # C-level loops: the common case
        return True
    for value in envelope.values():
        kind = type(value)
        if kind is dict:
            if not (_STR.issuperset(map(type, value)) and _STR.issuperset(map(type, value.values()))):
                return False
        elif kind is not str and kind is not bool:
            return False
    return True


def _flat_scalars(value: Dict[Any, Any]) -> bool:
    """Whether a dict has only exact str keys and exact str, int, float, bool or None values."""
    return _STR.issuperset(map(type, value)) and _SCALARS.issuperset(map(type, value.values()))


def encode_event(event_id: str, tenant_id: str, topic: str, eligible_for_retry: bool, data: Any) -> Optional[bytes]:
    """The common body, ``encode_envelope`` of exactly these four fields (in this order) and ``data``,
    written with one template: the same bytes for less work (tests/test_encoding.py), or None when
    anything needs ``encode_envelope`` (a str subclass, data that is not a flat dict, a value JSON
    cannot carry: that path names it)."""
    if not (type(event_id) is str and type(tenant_id) is str and type(topic) is str and type(data) is dict
            and _flat_scalars(data)):
        return None
    try:
        return (f'{{"id":{_string(event_id)},"tenant_id":{_string(tenant_id)},"topic":{_string(topic)},'
                f'"eligible_for_retry":{"true" if eligible_for_retry else "false"},"data":{_dumps_flat(data)}}}'
                ).encode()
    except ValueError:  # a float that is not finite, a lone surrogate, an int too long
        return None


def encode_envelope(envelope: Dict[str, Any], key: str, value: Any, *, root: str = "data",
                    envelope_root: str = "request") -> bytes:
    """Encode ``{**envelope, key: value}`` in one pass; ``root`` names ``value`` in error messages.

    The same bytes as encoding the envelope and the value apart and splicing them, for less work.
    Errors in the written JSON name top-level fields bare: ``tenant_id``, ``metadata["k"]``, ``data["x"]``.
    """
    flat = _flat_plain(envelope)
    if flat and type(value) is dict and _flat_scalars(value):  # nothing to convert
        try:
            return _dumps_flat({**envelope, key: value}).encode()
        except ValueError:  # a float that is not finite, a lone surrogate, an int too long: named below
            pass
    outer = None if flat else _Walk(envelope_root)
    plain_envelope = envelope if outer is None else _walk(outer, envelope)
    numbers = outer is not None and outer.has_numbers
    inner = _Walk(root)
    whole = {**plain_envelope, key: _walk(inner, value)}
    return _write(whole, inner.has_numbers or numbers, "")


def loaded_datetime() -> Optional[ModuleType]:
    """The datetime module once anything that makes dates is loaded, else None (a date or datetime
    instance implies it is): minipub imports datetime only for such a value."""
    if "datetime" in sys.modules or "_datetime" in sys.modules or "_pydatetime" in sys.modules:
        import datetime

        return datetime
    return None


def _rfc3339(value: datetime) -> Tuple[str, str]:
    """(text, "") for an aware datetime, or ("", the problem). An offset with seconds is sent as UTC."""
    from datetime import timedelta, timezone

    try:
        offset = value.utcoffset()
        if value.tzinfo is None or offset is None:
            return "", "naive datetime; attach a timezone (e.g. tzinfo=timezone.utc)"
        # RFC 3339 (and Outpost, parsing it with Go) allows offsets of whole minutes only.
        if offset % timedelta(minutes=1):  # e.g. a historical local mean time (+00:19:32): the same instant in UTC
            value = value.astimezone(timezone.utc)
        return value.isoformat(), ""
    except OverflowError:
        return "", "out of range once converted to UTC; use a date between years 1 and 9999 in UTC"
    except Exception as exc:  # a tzinfo with an offset of a day or more, or one that raises
        return "", (f"its tzinfo failed ({type(exc).__name__}: {show(exc, 120)}); use datetime.timezone "
                    "or zoneinfo")


def format_datetime(value: datetime, *, field: str) -> str:
    """An aware datetime as RFC 3339 (``±hh:mm`` offsets; others as UTC); a naive one is rejected."""
    text, problem = _rfc3339(value)
    if problem:
        raise ValidationError(f"{field}: {problem}")
    return text
