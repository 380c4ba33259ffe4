"""Request bodies decoded as Outpost decodes them: Go's ``encoding/json`` into a struct, through gin.

Only what a client can observe is reproduced: which bodies are accepted, and the error each one
gets. The rules (read from Outpost's handler and checked against a running server):

- the first JSON value is decoded and anything after it is ignored; whitespace alone is ``invalid JSON``;
- object keys match struct fields exactly, else case-insensitively (Go's simple case folding);
  unknown keys are ignored; a repeated key overwrites, except that ``null`` leaves a string as it was;
- a value of the wrong type is ``invalid JSON`` (the decoder carries on and reports it at the end), while a
  bad ``time`` stops the decoder with Go's time-parse message (so it wins over an earlier type error),
  and a syntax error anywhere wins over both.

Standard library only.
"""

from __future__ import annotations

import calendar
import json
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, cast

__all__ = ["GoDecodeError", "decode_struct", "dumps", "STRING", "BOOL", "TIME", "STRING_MAP", "RAW", "STRING_LIST"]

INVALID_JSON = "invalid JSON"
NOT_A_STRING = "Time.UnmarshalJSON: input is not a JSON string"
RFC3339 = "2006-01-02T15:04:05Z07:00"

# Field kinds, as Go types: string, *bool, time.Time, map[string]string, json.RawMessage, []string.
STRING, BOOL, TIME, STRING_MAP, RAW, STRING_LIST = "string", "bool", "time", "map", "raw", "list"

_WS = " \t\n\r"
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HTML_RE = re.compile("[<>&\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# The only non-ASCII runes whose fold set holds an ASCII letter (Go's unicode.SimpleFold): long s, Kelvin sign.
_FOLD = {"\u017f": "S", "\u212a": "K"}


class GoDecodeError(Exception):
    """The body is refused: ``message`` is the whole 422 message (no ``data`` list)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _TypeMismatch(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scanstring = cast(Callable[[str, int, bool], Tuple[str, int]], getattr(json.decoder, "scanstring"))  # noqa: B009 (not in the stubs)


def dumps(value: Any) -> bytes:
    """JSON as Go's ``encoding/json`` writes it (compact, HTML characters escaped, UTF-8)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = _HTML_RE.sub(lambda m: _HTML[m.group(0)], text)
    return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _fold(name: str) -> str:
    return "".join(_FOLD.get(c, c.upper() if c.isascii() else c) for c in name)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _pairs(text: str) -> Optional[List[Tuple[str, Any, str]]]:
    """The top-level object's (key, value, raw value text), in order; None for a top-level ``null``."""
    i = _skip(text, 0)
    if i >= len(text):
        raise GoDecodeError(INVALID_JSON)  # io.EOF
    if text[i] != "{":
        value, _ = _DECODER.raw_decode(text, i)
        if value is None:
            return None
        raise _TypeMismatch
    pairs: List[Tuple[str, Any, str]] = []
    i = _skip(text, i + 1)
    if text[i] == "}":
        return pairs
    while True:
        if text[i] != '"':
            raise ValueError("expected a key")
        key, i = _scanstring(text, i + 1, True)
        i = _skip(text, i)
        if text[i] != ":":
            raise ValueError("expected ':'")
        i = _skip(text, i + 1)
        value, end = _DECODER.raw_decode(text, i)
        pairs.append((key, value, text[i:end]))
        i = _skip(text, end)
        if text[i] == "}":
            return pairs
        if text[i] != ",":
            raise ValueError("expected ',' or '}'")
        i = _skip(text, i + 1)


def _store(kind: str, current: Any, value: Any, raw: str) -> Any:
    """The field's new value; raises _TypeMismatch or GoDecodeError (time)."""
    if kind == RAW:
        return value
    if kind == TIME:
        if value is None:
            return current
        if not isinstance(value, str):
            raise GoDecodeError(NOT_A_STRING)
        error = time_error(raw[1:-1])  # Go hands the time parser the raw text, escapes and all
        if error:
            raise GoDecodeError(error)
        return value
    if value is None:
        return None if kind in (BOOL, STRING_MAP, STRING_LIST) else current
    if kind == STRING and isinstance(value, str):
        return value
    if kind == BOOL and isinstance(value, bool):
        return value
    if kind == STRING_MAP and isinstance(value, dict):
        merged = dict(current or {})  # Go decodes into the map already there
        for k, v in value.items():
            if v is not None and not isinstance(v, str):
                raise _TypeMismatch
            merged[k] = v or ""
        return merged
    if kind == STRING_LIST and isinstance(value, list):
        if not all(v is None or isinstance(v, str) for v in value):
            raise _TypeMismatch
        return [v or "" for v in value]
    raise _TypeMismatch


def decode_struct(body: bytes, fields: Mapping[str, str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Decode ``body`` into the struct ``fields`` (JSON name -> kind): the fields present (by their
    names), and the object as sent. Raises GoDecodeError with the message Outpost answers."""
    text = body.decode("utf-8", "replace")  # Go replaces invalid UTF-8 instead of failing
    folded = {_fold(name): name for name in fields}
    result: Dict[str, Any] = {}
    mismatch = False
    pending: Optional[GoDecodeError] = None
    try:
        try:
            pairs = _pairs(text)
        except _TypeMismatch:
            raise GoDecodeError(INVALID_JSON) from None
        for key, value, raw in pairs or ():
            name = key if key in fields else folded.get(_fold(key))
            if name is None or pending is not None:
                continue
            try:
                result[name] = _store(fields[name], result.get(name), value, raw)
            except _TypeMismatch:
                mismatch = True
            except GoDecodeError as error:
                pending = error  # the decoder stops here, but the whole value was syntax-checked first
    except (ValueError, IndexError, RecursionError):
        raise GoDecodeError(INVALID_JSON) from None
    if pending is not None:
        raise pending
    if mismatch:
        raise GoDecodeError(INVALID_JSON)
    return result, {key: value for key, value, _ in pairs or ()}


# -- Go's time.Parse(time.RFC3339, value): acceptance and error text -------------------------------


def _quote(value: str) -> str:
    """Go's time.quote: printable ASCII as is (quote and backslash escaped), other bytes as \\xNN."""
    out = ['"']
    for byte in value.encode("utf-8", "surrogatepass"):
        if byte < 0x20 or byte >= 0x80:
            out.append(f"\\x{byte:02x}")
        else:
            c = chr(byte)
            out.append("\\" + c if c in '"\\' else c)
    out.append('"')
    return "".join(out)


def _isdigit(value: str, i: int) -> bool:
    return i < len(value) and "0" <= value[i] <= "9"


def _getnum(value: str, fixed: bool) -> Tuple[int, str]:
    if not _isdigit(value, 0):
        raise ValueError
    if not _isdigit(value, 1):
        if fixed:
            raise ValueError
        return int(value[0]), value[1:]
    return int(value[:2]), value[2:]


def _year(value: str) -> Tuple[int, str]:
    if not all(_isdigit(value, i) for i in range(4)):
        raise ValueError
    return int(value[:4]), value[4:]


def _fixed(value: str) -> Tuple[int, str]:
    return _getnum(value, True)


def _hour(value: str) -> Tuple[int, str]:
    return _getnum(value, False)


def _second(value: str) -> Tuple[int, str]:
    sec, rest = _getnum(value, True)
    if 0 <= sec < 60 and len(rest) >= 2 and rest[0] in ".," and _isdigit(rest, 1):
        n = 2
        while _isdigit(rest, n):
            n += 1
        rest = rest[n:]  # a fraction the layout does not name is still accepted
    return sec, rest


class _Range(Exception):
    """A number out of its range: Go names it in the message."""


def _zone(value: str) -> Tuple[int, str]:
    if value[:1] == "Z":
        return 0, value[1:]
    if len(value) < 6 or value[3] != ":":
        raise ValueError
    bad = False
    try:
        hour, minute = _fixed(value[1:3])[0], _fixed(value[4:6])[0]
    except ValueError:
        hour = minute = 0
        bad = True
    if hour > 24:  # Go allows 24 and 60 here, as some people write them
        raise _Range("time zone offset hour")
    if minute > 60:
        raise _Range("time zone offset minute")
    if bad or value[0] not in "+-":
        raise ValueError
    return 0, value[6:]


_Step = Callable[[str], Tuple[int, str]]
# (literal before the element, the layout element, its parser, the range it must be in, what it is)
_LAYOUT: Tuple[Tuple[str, str, _Step, Optional[Tuple[int, int]], str], ...] = (
    ("", "2006", _year, None, ""),
    ("-", "01", _fixed, (1, 12), "month"),
    ("-", "02", _fixed, None, ""),
    ("T", "15", _hour, (0, 23), "hour"),
    (":", "04", _fixed, (0, 59), "minute"),
    (":", "05", _second, (0, 59), "second"),
    ("", "Z07:00", _zone, None, ""),
)


def time_error(value: str) -> str:
    """'' when Go's ``time.Parse(time.RFC3339, value)`` accepts ``value``, else Go's error text."""
    head = "parsing time " + _quote(value)
    cannot = head + " as " + _quote(RFC3339) + ": cannot parse "
    rest = value
    parsed: List[int] = []
    for literal, element, step, bounds, what in _LAYOUT:
        for i, char in enumerate(literal):
            if rest[:1] != char:
                return cannot + _quote(rest) + " as " + _quote(literal[i:])
            rest = rest[1:]
        try:
            number, after = step(rest)
        except _Range as error:
            return f"{head}: {error} out of range"
        except (ValueError, IndexError):
            return cannot + _quote(rest) + " as " + _quote(element)
        if bounds is not None and not bounds[0] <= number <= bounds[1]:
            return f"{head}: {what} out of range"
        parsed.append(number)
        rest = after
    if rest:
        return f"{head}: extra text: {_quote(rest)}"
    year, month, day = parsed[:3]
    if not 1 <= day <= calendar.monthrange(year or 2000, month)[1]:  # year 0 is a leap year, as 2000
        return f"{head}: day out of range"
    return ""
