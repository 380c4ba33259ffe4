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

import re
from typing import Dict, List, Optional

from ..errors import ConnectionLostError, ProtocolError
from .base import HTTPResponse

__all__ = ["ResponseParser", "MAX_HEAD"]

#: The largest response head (status line and headers) accepted, in bytes.
MAX_HEAD = 65536
#: The largest chunk-size line (with extensions) accepted, in bytes.
MAX_CHUNK_LINE = 4096

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")

# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


def _fail(problem: str) -> ProtocolError:
    return ProtocolError(f"invalid HTTP response: {problem}")


def _head_end(buf: bytes) -> int:
    """The index of the blank line's first byte after the last header line's LF, or -1."""
    crlf = buf.find(b"\n\r\n")
    lf = buf.find(b"\n\n")
    if crlf < 0:
        return lf
    if lf < 0:
        return crlf
    return min(crlf, lf)


class ResponseParser:
    """Parses one HTTP/1.x response (after any 1XX interim ones) from bytes fed in any split.

    After a response is returned: ``will_close`` says the connection must not be reused,
    ``interim`` lists the skipped 1XX statuses. ``received`` counts every byte fed.
    """

    __slots__ = ("_body", "_buf", "_remaining", "_spent", "_state", "head_request", "headers", "interim", "max_body",
                 "max_head", "reason", "received", "status", "truncated", "will_close")

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
        end = _head_end(buf)
        if end < 0:
            if len(buf) > self.max_head:
                raise _fail(f"the response head is larger than {self.max_head} bytes")
            return buf
        after = end + (3 if buf[end + 1] == 13 else 2)
        self._spent += after
        if self._spent > self.max_head:
            raise _fail(f"the response head is larger than {self.max_head} bytes (interim responses included)")
        self._parse_head(buf[: end + 1].decode("latin-1"))
        return buf[after:]

    def _parse_head(self, text: str) -> None:
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
        status = int(code)
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
        self.status = status
        self.reason = reason
        self.headers = headers
        self._frame(status, version == "HTTP/1.0", headers)

    def _frame(self, status: int, http10: bool, headers: Dict[str, str]) -> None:
        """Choose how the body is delimited and whether the connection stays open."""
        connection = headers.get("connection")
        if connection is None:
            self.will_close = http10
        else:
            tokens = {t.strip().lower() for t in connection.split(",")}
            self.will_close = "close" in tokens or (http10 and "keep-alive" not in tokens)
        if status < 200:
            if status == 101:  # switching protocols that were never asked for: final, and the end
                self.will_close = True
                self._state = _DONE
            else:
                self.interim.append(status)  # an interim response: the final one follows
            return
        if self.head_request or status in (204, 304):
            self._state = _DONE
            return
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if coding is not None:
            if length is not None:
                self.will_close = True  # both framings: trust chunked, never reuse the connection
            if coding.rpartition(",")[2].strip().lower() == "chunked":
                self._state = _CHUNK_SIZE
            else:
                self.will_close = True
                self._state = _UNTIL_CLOSE
            return
        if length is None:
            self.will_close = True
            self._state = _UNTIL_CLOSE
            return
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1:
            raise _fail(f"conflicting Content-Length values {length[:40]!r}")
        value = values.pop()
        if not value or not _DIGITS.issuperset(value) or len(value) > 18:
            raise _fail(f"bad Content-Length {length[:40]!r}")
        size = int(value)
        if size > self.max_body:
            self.truncated = self.will_close = True
            size = self.max_body
        self._remaining = size
        self._state = _LENGTH if size else _DONE

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
        return HTTPResponse(self.status, self.headers, bytes(self._body), self.truncated)
