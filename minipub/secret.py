"""The admin key out of sight: a :class:`Secret` holder, and redaction of the key's echoes.

A ``Secret`` is not a str (error reporters serialise str subclasses by value): its repr and str
are ``'***'``, it does not pickle its value, and it keeps the value masked (XOR with a random pad),
so walking an object graph (``__dict__``, ``__slots__``) finds no copy of the key. ``reveal()`` is
called only inside the expression that writes the request.

:func:`redact` replaces every echo of the key in a text, first on the whole text, then cuts it:
the key as is, JSON-escaped, HTML-escaped, percent-encoded, hex, base64 (std and urlsafe, with or
without padding, also inside a longer base64 text), and any mix of per-character escapes
(``%XX``, ``\\uXXXX``, ``\\"``, ``&...;``). At a cut edge a trailing fragment of
:data:`MIN_FRAGMENT` or more characters of any of those forms is replaced too.
"""

from __future__ import annotations

import json
import os

from ._charsets import LazyPattern
from .errors import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple, Union

__all__ = ["Secret", "redact", "redact_data", "redact_bytes", "MIN_FRAGMENT", "reveal"]

#: At a cut edge, a trailing piece of the key (or of an encoded form) this long or longer is replaced.
MIN_FRAGMENT = 4
#: Base64 pieces of a key embedded in a longer base64 text are replaced when at least this long.
_MIN_CORE = 6


class Secret:
    """A credential: ``repr``/``str`` show ``'***'``; pickling keeps no value; ``reveal()`` gives it back."""

    __slots__ = ("_masked", "_pad", "_printable", "_size")

    def __init__(self, value: Union[str, bytes]) -> None:
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        self._size = len(raw)
        self._pad = int.from_bytes(os.urandom(len(raw)), "little")
        self._masked = int.from_bytes(raw, "little") ^ self._pad
        self._printable: Optional[bool] = None

    def reveal(self) -> str:
        """The value. Call it only inside the expression that writes it (no local keeps it)."""
        return self.reveal_bytes().decode("utf-8", "surrogatepass")

    def reveal_bytes(self) -> bytes:
        """The value as bytes (UTF-8 for a str), e.g. request bytes sealed with ``Secret(data)``."""
        if self._size < 0:
            raise ConfigurationError("a key does not survive pickling or copying across processes; pass it again")
        return (self._masked ^ self._pad).to_bytes(self._size, "little")

    def printable_ascii(self) -> bool:
        """Whether the value is printable ASCII only (0x20 to 0x7E), as a header line's value must be
        to go out as is: checked once (the value never changes), so each request skips the check."""
        printable = self._printable
        if printable is None:
            printable = self._printable = not self.reveal_bytes().translate(None, _PRINTABLE_ASCII)
        return printable

    def __repr__(self) -> str:
        return "'***'"

    def __str__(self) -> str:
        return "***"

    def __reduce__(self) -> Tuple[Any, ...]:
        return _unpickled, ()

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> Secret:
        return self


def _unpickled() -> Secret:
    """What a pickled Secret becomes: one that refuses to reveal anything."""
    secret = Secret.__new__(Secret)
    secret._size, secret._pad, secret._masked, secret._printable = -1, 0, 0, None
    return secret


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


if TYPE_CHECKING:
    SecretLike = Union[Secret, str, None]


def reveal(secret: SecretLike) -> str:
    """The value of a Secret (or a plain str), "" for None."""
    if secret is None:
        return ""
    return secret if isinstance(secret, str) else secret.reveal()


# -- the forms an echo takes -------------------------------------------------------------------

#: Marker characters: never produced by percent-encoding, base64 or hex; the first one absent from the
#: key is used, so a marker can never join with the text around it into the key.
_MARKERS = "*!?^|`$'(),;@[]{}<>\u2022\u2023\u25aa"


def _marker(key: str) -> str:
    char = next((c for c in _MARKERS if c not in key), "\u2022")
    return char * 3


def _b64_forms(raw: bytes) -> Tuple[List[str], List[str]]:
    """(whole forms, pieces of the key inside a longer base64 text at each of the 3 alignments)."""
    import base64

    whole: List[str] = []
    pieces: List[str] = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(raw).decode()
        whole += [padded, padded.rstrip("=")]
        for shift in range(3):
            text = encode(b"\0" * shift + raw + b"\0\0").decode()
            first = -(-8 * shift // 6)  # the first character made of key bits only
            last = (8 * shift + 8 * len(raw)) // 6
            if last - first >= _MIN_CORE:
                pieces.append(text[first:last])
    return whole, pieces


def _forms(key: str) -> List[str]:
    """Every fixed form of the key, longest first (a longer form is replaced before its pieces)."""
    import re
    from urllib.parse import quote

    raw = key.encode("utf-8", "surrogatepass")
    percent = quote(key, safe="")
    whole, pieces = _b64_forms(raw)
    html = key.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    found = {key, json.dumps(key)[1:-1], json.dumps(key, ensure_ascii=False)[1:-1], html,
             html.replace("'", "&#x27;"), percent, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), percent),
             raw.hex(), raw.hex().upper(), *whole, *pieces}
    return sorted(found, key=len, reverse=True)


# -- replacing echoes ----------------------------------------------------------------------------

_ESCAPE = LazyPattern(
    r"(?:%[0-9A-Fa-f]{2})+"
    r"|\\u[dD][89abAB][0-9A-Fa-f]{2}\\u[dD][c-fC-F][0-9A-Fa-f]{2}"
    r"|\\u[0-9A-Fa-f]{4}"
    r"|\\[\"\\/bfnrt]"
    r"|&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[a-zA-Z]{2,6});"
)
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ENTITIES = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'", "nbsp": "\xa0"}


def _unescape(token: str) -> str:
    """What one escape token stands for (itself when it stands for nothing known)."""
    head = token[0]
    if head == "%":
        return bytes.fromhex(token.replace("%", "")).decode("utf-8", "surrogateescape")
    if head == "\\":
        if token[1] != "u":
            return _SIMPLE[token[1]]
        if len(token) == 12:
            high, low = int(token[2:6], 16), int(token[8:12], 16)
            return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        return chr(int(token[2:], 16))
    name = token[1:-1]
    if name[0] == "#":
        number = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
        return chr(number) if number <= 0x10FFFF else token
    return _ENTITIES.get(name, token)


if TYPE_CHECKING:
    _Pieces = List[Tuple[str, int, int, bool]]  # (decoded, start, end, literal)
#: An escape cut short by the end of a text: ``%``, ``%C``, ``\\``, ``\\u00``, ``&#x2``, ``&am``.
_PARTIAL = LazyPattern(r"%[0-9A-Fa-f]?\Z|\\(?:u[0-9A-Fa-f]{0,3})?\Z|&#?[xX]?[0-9A-Za-z]{0,7}\Z")


def _pieces(text: str) -> Tuple[_Pieces, str, List[int]]:
    """The text as literal runs (mapped character by character) and escape tokens (mapped whole):
    the pieces, the decoded text, and where each piece starts in it."""
    pieces: _Pieces = []
    pos = 0
    for match in _ESCAPE.finditer(text):
        if match.start() > pos:
            pieces.append((text[pos:match.start()], pos, match.start(), True))
        pieces.append((_unescape(match.group()), match.start(), match.end(), False))
        pos = match.end()
    if pos < len(text):
        pieces.append((text[pos:], pos, len(text), True))
    offsets: List[int] = []
    total = 0
    for piece in pieces:
        offsets.append(total)
        total += len(piece[0])
    return pieces, "".join(piece[0] for piece in pieces), offsets


def _original(pieces: _Pieces, offsets: List[int], at: int, end: bool) -> int:
    """Where decoded index ``at`` (as a match's start, or its end) is in the original text."""
    from bisect import bisect_right

    index = bisect_right(offsets, at - 1 if end else at) - 1
    _, start, stop, literal = pieces[index]
    if literal:
        return start + (at - offsets[index])
    return stop if end else start


def _redact_escaped(text: str, key: str, marker: str) -> str:
    """Replace the key where it appears with some (or all) of its characters escaped; a match in
    the decoded text is replaced in the original text."""
    pieces, decoded, offsets = _pieces(text)
    found = decoded.find(key)
    if found < 0:
        return text
    spans: List[Tuple[int, int]] = []
    while found >= 0:
        start, stop = _original(pieces, offsets, found, False), _original(pieces, offsets, found + len(key), True)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(stop, spans[-1][1]))
        else:
            spans.append((start, stop))
        found = decoded.find(key, found + len(key))
    out: List[str] = []
    pos = 0
    for start, stop in spans:
        out += [text[pos:start], marker]
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def _escaped_edge(text: str, key: str) -> int:
    """Where a trailing fragment of the key written with escapes starts (the last escape maybe cut
    short, a character's UTF-8 bytes maybe incomplete), or -1."""
    partial = _PARTIAL.search(text)
    pieces, decoded, offsets = _pieces(text if partial is None else text[:partial.start()])
    # percent-escaped bytes of a character whose last bytes were cut decode to surrogate escapes
    kept = decoded.rstrip("".join(chr(0xDC80 + b) for b in range(128)))
    for size in range(min(len(key) - 1, len(kept)), MIN_FRAGMENT - 1, -1):
        if key.startswith(kept[-size:]):
            return _original(pieces, offsets, len(kept) - size, False)
    return -1


class _Redactor:
    """The forms of one key, made once per redaction call and dropped after (never cached)."""

    __slots__ = ("forms", "key", "marker")

    def __init__(self, key: str) -> None:
        self.key = key
        self.forms = _forms(key)
        self.marker = _marker(key)

    def whole(self, text: str) -> str:
        marker = self.marker
        for form in self.forms:
            if form in text:
                text = text.replace(form, marker)
        if ("%" in text or "\\" in text or "&" in text) and _ESCAPE.search(text):
            text = _redact_escaped(text, self.key, marker)
        return text

    def edge(self, text: str) -> str:
        """Replace a trailing fragment (``MIN_FRAGMENT`` chars or more) of any form at a cut edge."""
        longest = 0
        for form in self.forms:
            for size in range(min(len(form) - 1, len(text)), MIN_FRAGMENT - 1, -1):
                if size <= longest:
                    break
                if form.startswith(text[-size:]):
                    longest = size
                    break
        if ("%" in text or "\\" in text or "&" in text) and len(text) - longest > 0:
            start = _escaped_edge(text[-self.margin():], self.key)
            if start >= 0:
                longest = max(longest, min(len(text), self.margin()) - start)
        return text[:-longest] + self.marker if longest else text

    def margin(self) -> int:
        """How far past a cut an echo can reach: the longest form, escaped character by character."""
        return 12 * len(self.key) + 16


def redact(text: str, secret: SecretLike, limit: Optional[int] = None, *, cut: bool = False) -> str:
    """``text`` without the key, cut to ``limit`` characters: redacted first, then cut.

    ``cut``: the text was already cut before it came here (a capped body), so its end is an edge too.
    """
    key = reveal(secret)
    if not key:
        return text if limit is None else text[:limit]
    redactor = _Redactor(key)
    window = text if limit is None else text[: limit + redactor.margin()]
    edge = cut or len(window) < len(text)
    clean = redactor.whole(window)
    if limit is not None and len(clean) > limit:
        clean, edge = clean[:limit], True
    return redactor.edge(clean) if edge else clean


def redact_bytes(body: bytes, secret: SecretLike, *, cut: bool = False) -> bytes:
    """:func:`redact` for a body as bytes (undecodable bytes kept as they were)."""
    if not reveal(secret):
        return body
    return redact(body.decode("utf-8", "surrogateescape"), secret, cut=cut).encode("utf-8", "surrogateescape")


def redact_data(data: Any, secret: SecretLike) -> Any:
    """A decoded JSON structure with the key redacted from every str (keys too), in any nesting.

    Redacts the decoded text, so a key with ``"``, ``\\`` or non-ASCII characters is found whatever
    escaping the server used. The structure is changed in place (it is the caller's own copy).
    """
    key = reveal(secret)
    if not key:
        return data
    redactor = _Redactor(key)
    if isinstance(data, str):
        return redactor.whole(data)
    stack = [data]
    while stack:  # iterative: decoded JSON may be nested as deep as the decoder allows
        node = stack.pop()
        if isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = redactor.whole(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
        elif isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for name, item in items:
                if isinstance(item, str):
                    item = redactor.whole(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
                node[redactor.whole(name)] = item
    return data


def __getattr__(name: str) -> object:
    """``SecretLike`` for code that imports it at run time (``typing`` loads then: the first
    publish never imports it)."""
    if name == "SecretLike":
        from typing import Union

        return Union[Secret, str, None]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
