"""A sans-IO, incremental HTTP/1.1 response parser: feed it bytes, get the response.

``ResponseParser(max_body).feed(data)`` returns an :class:`HTTPResponse` once one is complete,
else ``None``; ``eof()`` is called when the connection closed. Malformed input raises
:class:`ProtocolError`, a response cut short by the close :class:`ConnectionLostError`:
either the right response or a clear error, whatever the split of the bytes across reads.

Handled: ``Content-Length``, chunked and read-until-close bodies, 1XX interim responses
(skipped; an unsolicited ``101`` is final and ends the connection), 204/304/HEAD without a body,
keep-alive and ``Connection: close``, obsolete line folding, bare-LF line ends, a head-size
limit, and a body cap (``truncated`` set, the connection not reused).
"""

from __future__ import annotations

from .. import _charsets
from ..errors import ConnectionLostError, ProtocolError
from .base import HTTPResponse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

__all__ = ["ResponseParser", "parse_whole", "parse_head", "framing", "is_token", "MAX_HEAD"]

#: The largest response head (status line and headers) accepted, in bytes.
MAX_HEAD = 65536
#: The largest chunk-size line (with extensions) accepted, in bytes.
MAX_CHUNK_LINE = 4096

#: True for an HTTP token (a header name): the one rule, for what is sent and what is read.
is_token = _TOKEN = _charsets.is_token
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")

# Parser states (and _INTERIM: a 1XX head was read, the next head follows).
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE, _INTERIM = range(9)


def _fail(problem: str) -> ProtocolError:
    return ProtocolError(f"invalid HTTP response: {problem}")


def _head_end(buf: bytes, start: int = 0) -> int:
    """The index of the blank line's first byte after the last header line's LF, or -1.

    ``start``: where to look from (bytes before it were searched already), so a head that
    trickles in one byte at a time costs linear, not quadratic, time.
    """
    crlf = buf.find(b"\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if crlf < 0:
        return lf
    if lf < 0:
        return crlf
    return min(crlf, lf)


def _fields(lines: List[str]) -> Optional[Dict[str, str]]:
    """The header fields of the common case (no folding, no repeated name), else None."""
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = name.lower()
        if not sep or key in headers:
            return None
        headers[key] = value.strip(" \t")
    # Token characters are closed under concatenation: one match checks every name at once.
    if "" in headers or (headers and not _TOKEN("".join(headers))):
        return None
    return headers


def _fields_strict(lines: List[str]) -> Dict[str, str]:
    """Header fields line by line: folded values joined, repeated names joined with ", ", errors named."""
    headers: Dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # obsolete line folding: part of the previous value
            if not name:
                raise _fail("a continuation line before any header")
            headers[name] = (headers[name] + " " + line.strip(" \t")).strip(" ")
            continue
        raw_name, sep, value = line.partition(":")
        if not sep or not _TOKEN(raw_name):
            raise _fail(f"bad header line {line[:40]!r}")
        name = raw_name.lower()
        value = value.strip(" \t")
        old = headers.get(name)
        headers[name] = value if old is None else old + ", " + value
    return headers


def parse_head(text: str) -> Tuple[int, str, bool, Dict[str, str]]:
    """Status line and fields of a head (latin-1 text up to and with its last line's LF).

    Returns (status, reason, is HTTP/1.0, lower-case headers); raises ProtocolError.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise _fail("a bare CR in the head")
    if "\0" in text:
        raise _fail("a NUL byte in the head")
    lines = text[:-1].split("\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") and not (
        len(version) == 8 and version[:7] == "HTTP/1." and version[7] in _DIGITS
    ):
        raise _fail(f"unsupported version or bad status line {lines[0][:40]!r}")
    if len(code) != 3 or not _DIGITS.issuperset(code) or code[0] == "0":
        raise _fail(f"bad status code in {lines[0][:40]!r}")
    headers = _fields(lines)
    if headers is None:
        headers = _fields_strict(lines)
    return int(code), reason, version == "HTTP/1.0", headers


def framing(status: int, http10: bool, headers: Dict[str, str], head_request: bool) -> Tuple[int, int, bool]:
    """How the body is delimited: (state, Content-Length or 0, whether the connection must close)."""
    connection = headers.get("connection")
    if connection is None:
        will_close = http10
    elif connection == "keep-alive":
        will_close = False
    else:
        tokens = {t.strip().lower() for t in connection.split(",")}
        will_close = "close" in tokens or (http10 and "keep-alive" not in tokens)
    if status < 200:
        if status == 101:  # switching protocols that were never asked for: final, and the end
            return _DONE, 0, True
        return _INTERIM, 0, will_close
    if head_request or status in (204, 304):
        return _DONE, 0, will_close
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None:
        # With both framings chunked wins, and the connection is never reused.
        if coding.rpartition(",")[2].strip().lower() == "chunked":
            return _CHUNK_SIZE, 0, will_close or length is not None
        return _UNTIL_CLOSE, 0, True
    if length is None:
        return _UNTIL_CLOSE, 0, True
    if not (length.isdigit() and length.isascii()):
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1:
            raise _fail(f"conflicting Content-Length values {length[:40]!r}")
        length = values.pop()
        if not length or not _DIGITS.issuperset(length):
            raise _fail(f"bad Content-Length {headers['content-length'][:40]!r}")
    if len(length) > 18:
        raise _fail(f"bad Content-Length {length[:40]!r}")
    return _LENGTH, int(length), will_close


# The last final head parse_whole read, with what it said: (head bytes, head_request, status,
# headers, state, length, will_close). A head byte for byte the same (a server answering alike, as
# most do but for the Date line once a second) is not parsed again: a prefix compare instead.
if TYPE_CHECKING:
    _Known = Tuple[bytes, bool, int, Dict[str, str], int, int, bool]
_last: _Known = (b"", False, 0, {}, _DONE, 0, True)


def parse_whole(data: bytes, max_body: int, head_request: bool = False) -> Optional[Tuple[HTTPResponse, bool]]:
    """The common case in one call: ``data`` is exactly one final response, head and whole body.

    Returns (response, whether the connection must close), or None when ``data`` is anything
    else (a part, interim responses, chunked, more bytes): then feed a :class:`ResponseParser`.
    """
    global _last
    known = _last  # one read: another thread may replace it
    if known[0] and known[1] == head_request and data.startswith(known[0]):
        # The same bytes up to and with the blank line: that blank line ends this head too.
        head, _, status, headers, state, size, will_close = known
        after = len(head)
    else:
        end = _head_end(data)
        if end < 0 or end >= MAX_HEAD or data[:5] != b"HTTP/":
            return None
        after = end + (3 if data[end + 1] == 13 else 2)
        status, _, http10, headers = parse_head(data[: end + 1].decode("latin-1"))
        state, size, will_close = framing(status, http10, headers, head_request)
        if state != _LENGTH and state != _DONE:
            return None
        _last = (data[:after], head_request, status, headers, state, size, will_close)
    if state == _LENGTH and len(data) == after + size and size <= max_body:
        return HTTPResponse.lowered(status, dict(headers), data[after:], False), will_close
    if state == _DONE and len(data) == after:
        return HTTPResponse.lowered(status, dict(headers), b"", False), will_close
    return None


class ResponseParser:
    """Parses one HTTP/1.x response (after any 1XX interim ones) from bytes fed in any split.

    After a response is returned: ``will_close`` says the connection must not be reused,
    ``interim`` lists the skipped 1XX statuses. ``received`` counts every byte fed.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_remaining",
        "_scanned",
        "_spent",
        "_state",
        "head_request",
        "headers",
        "interim",
        "max_body",
        "max_head",
        "reason",
        "received",
        "status",
        "truncated",
        "will_close",
    )

    def __init__(self, max_body: int, *, head_request: bool = False, max_head: int = MAX_HEAD) -> None:
        self.max_body = max_body
        self.max_head = max_head
        self.head_request = head_request
        self.received = 0
        self.status = 0
        self.reason = ""
        self.headers: Dict[str, str] = {}
        self.interim: List[int] = []
        self.will_close = False
        self.truncated = False
        self._buf = b""
        self._body = bytearray()
        self._remaining = 0
        self._spent = 0  # head bytes of interim responses and trailers so far: bounded by max_head
        self._scanned = 0  # how much of the buffered head was searched for its end already
        self._state = _HEAD

    # -- input -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> Optional[HTTPResponse]:
        """Take the next bytes read; the response when it is complete, else None."""
        if self._state == _DONE:
            raise RuntimeError("the response is already complete")
        self.received += len(data)
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while True:
            state, size = self._state, len(buf)
            if state == _HEAD:
                buf = self._head(buf)
            elif state == _LENGTH:
                buf = self._length(buf)
            elif state == _UNTIL_CLOSE:
                buf = self._until_close(buf)
            elif state == _CHUNK_DATA:
                buf = self._chunk_data(buf)
            elif state == _CHUNK_SIZE:
                buf = self._chunk_size(buf)
            elif state == _CHUNK_END:
                buf = self._chunk_end(buf)
            else:  # _TRAILER
                buf = self._trailer(buf)
            if self._state == _DONE:
                if buf:
                    self.will_close = True  # bytes after the response: never reuse this connection
                return self._response()
            if self._state == state and len(buf) == size:
                self._buf = buf  # no progress: waiting for more input
                return None

    def eof(self) -> HTTPResponse:
        """The connection closed: the response if its body runs until the close, else raise."""
        state = self._state
        if state == _UNTIL_CLOSE:
            self._state = _DONE
            self.will_close = True
            return self._response()
        if state == _DONE:
            raise RuntimeError("the response is already complete")
        if state == _HEAD and self.interim:
            raise ConnectionLostError(
                f"connection closed after an interim HTTP {self.interim[-1]} response, before the final response"
            )
        if state == _HEAD:
            where = "before any response" if not self.received else "in the middle of the response head"
            raise ConnectionLostError(f"connection closed {where}")
        raise ConnectionLostError(f"connection closed in the middle of the HTTP {self.status} response body")

    # -- the head ----------------------------------------------------------------------------

    def _head(self, buf: bytes) -> bytes:
        if buf[:5] != b"HTTP/":
            if len(buf) >= 5 or not b"HTTP/".startswith(buf):
                raise _fail("it does not start with 'HTTP/' (is this an HTTP server?)")
            return buf
        end = _head_end(buf, max(0, self._scanned - 2))
        if end < 0:
            if len(buf) > self.max_head:
                raise _fail(f"the response head is larger than {self.max_head} bytes")
            self._scanned = len(buf)
            return buf
        self._scanned = 0
        after = end + (3 if buf[end + 1] == 13 else 2)
        self._spent += after
        if self._spent > self.max_head:
            raise _fail(f"the response head is larger than {self.max_head} bytes (interim responses included)")
        self._parse_head(buf[: end + 1].decode("latin-1"))
        return buf[after:]

    def _parse_head(self, text: str) -> None:
        status, reason, http10, headers = parse_head(text)
        self.status = status
        self.reason = reason
        self.headers = headers
        state, size, self.will_close = framing(status, http10, headers, self.head_request)
        if state == _INTERIM:
            self.interim.append(status)  # the final response follows
            return
        if size > self.max_body:
            self.truncated = self.will_close = True
            size = self.max_body
        self._remaining = size
        self._state = _DONE if state == _LENGTH and not size else state

    # -- bodies ------------------------------------------------------------------------------

    def _length(self, buf: bytes) -> bytes:
        take = self._remaining
        if len(buf) < take:
            self._body += buf
            self._remaining -= len(buf)
            return b""
        self._body += buf[:take]
        self._remaining = 0
        self._state = _DONE
        return buf[take:]

    def _cap(self) -> bool:
        """Cut the body at ``max_body``; True when that ended the response."""
        if len(self._body) <= self.max_body:
            return False
        del self._body[self.max_body:]
        self.truncated = self.will_close = True
        self._state = _DONE
        return True

    def _until_close(self, buf: bytes) -> bytes:
        self._body += buf
        self._cap()
        return b""

    def _chunk_size(self, buf: bytes) -> bytes:
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_CHUNK_LINE:
                raise _fail("a chunk-size line is too long")
            return buf
        line = buf[:end].decode("latin-1")
        if line[-1:] == "\r":
            line = line[:-1]
        digits = line.partition(";")[0].strip(" \t")
        if not digits or not _HEX.issuperset(digits) or len(digits) > 15:
            raise _fail(f"bad chunk size {line[:40]!r}")
        size = int(digits, 16)
        if size:
            self._remaining = size
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILER
        return buf[end + 1:]

    def _chunk_data(self, buf: bytes) -> bytes:
        take = self._remaining
        if len(buf) < take:
            self._body += buf
            self._remaining -= len(buf)
            self._cap()
            return b""
        self._body += buf[:take]
        self._remaining = 0
        if not self._cap():
            self._state = _CHUNK_END
        return buf[take:]

    def _chunk_end(self, buf: bytes) -> bytes:
        if buf[:2] == b"\r\n":
            self._state = _CHUNK_SIZE
            return buf[2:]
        if buf[:1] == b"\n":
            self._state = _CHUNK_SIZE
            return buf[1:]
        if buf in (b"", b"\r"):
            return buf
        raise _fail("chunk data is not followed by CRLF")

    def _trailer(self, buf: bytes) -> bytes:
        # Trailer fields are read and dropped; the section ends with an empty line.
        while True:
            end = buf.find(b"\n")
            if self._spent + (len(buf) if end < 0 else end) > self.max_head:
                raise _fail(f"the trailer section is larger than {self.max_head} bytes")
            if end < 0:
                return buf
            line, buf = buf[:end], buf[end + 1:]
            self._spent += end + 1
            if line in (b"", b"\r"):
                self._state = _DONE
                return buf

    # -- output ------------------------------------------------------------------------------

    def _response(self) -> HTTPResponse:
        return HTTPResponse.lowered(self.status, self.headers, bytes(self._body), self.truncated)
