"""Character rules as sets (one place each), and patterns compiled on first use.

A fresh interpreter compiles every ``re.compile`` at import (about 0.1 ms each): a rule that is a
character class is a set test instead, and a real pattern waits until a value needs it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from re import Match, Pattern
    from typing import Iterator, Optional

__all__ = ["TOKEN_CHARS", "FIELD_VALUE_CHARS", "is_token", "is_field_value", "LazyPattern"]

#: RFC 9110 ``tchar``: what a header name (a token) is made of.
TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: A header value as it goes on the wire: latin-1 text, no control characters but tab (RFC 9110).
FIELD_VALUE_CHARS = frozenset("\t" + "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0x80, 0x100))))


def is_token(text: str) -> bool:
    """True for an HTTP token (a header name): one or more ``tchar``."""
    return bool(text) and TOKEN_CHARS.issuperset(text)


def is_field_value(text: str) -> bool:
    """True for latin-1 text without control characters but tab (empty included)."""
    return FIELD_VALUE_CHARS.issuperset(text)


class LazyPattern:
    """``re.compile(pattern)``, compiled (and ``re`` imported) the first time it is used."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: Optional[Pattern[str]] = None

    def compiled(self) -> Pattern[str]:
        compiled = self._compiled
        if compiled is None:  # two threads may both compile: the same pattern either way
            import re

            compiled = self._compiled = re.compile(self.pattern)
        return compiled

    def match(self, text: str) -> Optional[Match[str]]:
        return self.compiled().match(text)

    def search(self, text: str) -> Optional[Match[str]]:
        return self.compiled().search(text)

    def finditer(self, text: str) -> Iterator[Match[str]]:
        return self.compiled().finditer(text)
