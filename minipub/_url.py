"""``urlsplit`` for the URLs minipub sends to, without importing urllib.parse for the plain ones.

Importing urllib.parse (with ipaddress) costs a fresh process about 1.6 ms before its first event.
A plain ``http://`` or ``https://`` URL (printable ASCII, a host of letters, digits, dots and dashes,
an optional port of digits, no user info) is split here, with the very attributes
``urllib.parse.urlsplit`` gives it (tests/test_url.py compares them); any other URL goes to
``urllib.parse.urlsplit`` itself.
"""

from __future__ import annotations

from ._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from typing import ClassVar, Optional, Union
    from urllib.parse import SplitResult

__all__ = ["urlsplit", "PlainURL"]

_HOST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_PRINTABLE = frozenset(map(chr, range(0x21, 0x7F)))


class PlainURL(Record):
    """A plain URL split: ``SplitResult``'s attributes (a plain URL has no user info)."""

    scheme: str
    netloc: str
    path: str
    query: str
    fragment: str
    hostname: str
    port: Optional[int]
    username: ClassVar[None] = None
    password: ClassVar[None] = None


def urlsplit(url: str) -> Union[PlainURL, SplitResult]:
    """``urllib.parse.urlsplit(url)``: the same attributes (scheme, netloc, path, query, fragment,
    hostname, port, username, password); a plain URL without importing urllib.parse."""
    plain = _plain(url) if isinstance(url, str) else None
    if plain is not None:
        return plain
    from urllib.parse import urlsplit as split

    return split(url)


def _plain(url: str) -> Optional[PlainURL]:
    if url.startswith("http://"):
        scheme, rest = "http", url[7:]
    elif url.startswith("https://"):
        scheme, rest = "https", url[8:]
    else:
        return None
    if not _PRINTABLE.issuperset(url):  # no blank, control or non-ASCII character (urlsplit strips some)
        return None
    end = len(rest)
    for separator in "/?#":
        found = rest.find(separator)
        if 0 <= found < end:
            end = found
    netloc, rest = rest[:end], rest[end:]
    rest, _, fragment = rest.partition("#")
    path, _, query = rest.partition("?")
    host, colon, digits = netloc.partition(":")
    if not host or not _HOST.issuperset(host):
        return None
    port = None
    if colon:
        if not (digits.isdigit() and len(digits) <= 5 and int(digits) <= 65535):
            return None  # an empty, odd or out-of-range port: urlsplit's own answer (or error)
        port = int(digits)
    return PlainURL(scheme, netloc, path, query, fragment, host.lower(), port)
