"""The one HTTP/1.1 message reader of the test tooling's hand-written servers.

Sans-IO, fed bytes in any split: :class:`BodyReader` de-frames one body (``Content-Length`` or
chunked) and says how many of the bytes it was given were its own; :class:`MessageReader` splits a
byte stream into whole messages (head and body). The embedded server reads bodies with the first
(its heads are ``http.server``'s), the raw servers, the fault proxy of the fault suite and the
benchmark's responder read whole requests (and the proxy responses) with the second.

One framing rule: a ``Transfer-Encoding`` other than ``chunked`` is 501; ``Content-Length`` values
are digits and agree (else 400); a body over ``max_body`` is 413; a chunk size is 1 to 16 hex digits
(no sign, no ``0x``) on a line of at most 1 KiB; at most 64 trailer lines. A :class:`FramingError`
carries the status a server answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, List, Optional, Sequence, Tuple

__all__ = ["CHUNKED", "FramingError", "Message", "BodyReader", "MessageReader", "body_length", "receive"]

#: ``body_length`` of a chunked body.
CHUNKED = -1
#: The largest head (request or status line and headers) read, in bytes.
MAX_HEAD = 65536
_MAX_SIZE_LINE = 1024
_MAX_TRAILER_LINE = 8192
_MAX_TRAILER_LINES = 64
_HEX = frozenset(b"0123456789abcdefABCDEF")
_NO_BODY = (204, 304)

Headers = Tuple[Tuple[str, str], ...]


class FramingError(ValueError):
    """The body cannot be read; ``status`` is what a server answers (400, 413 or 501)."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(f"HTTP {status}: {problem}")
        self.status = status


def body_length(transfer_encoding: Optional[str], lengths: Sequence[str], max_body: Optional[int] = None) -> int:
    """The length a request's headers announce (0 when none), or ``CHUNKED``."""
    if transfer_encoding is not None:
        if transfer_encoding.strip().lower() != "chunked":
            raise FramingError(501, f"unsupported Transfer-Encoding {transfer_encoding[:40]!r}")
        return CHUNKED
    if not lengths:
        return 0
    values = {v.strip() for v in lengths}
    first = values.pop()
    if values or not first.isdigit() or not first.isascii():
        raise FramingError(400, "bad or conflicting Content-Length")
    length = int(first)
    if max_body is not None and length > max_body:
        raise FramingError(413, f"a body of {length} bytes is over the limit of {max_body}")
    return length


class BodyReader:
    """One body, ``length`` bytes or chunked (``CHUNKED``), from bytes fed in any split."""

    def __init__(self, length: int, max_body: Optional[int] = None) -> None:
        self.max_body = max_body
        self.done = length == 0
        self._chunked = length == CHUNKED
        self._remaining = 0 if self._chunked else length
        self._line = b""  # a partial size or trailer line
        self._state = "size" if self._chunked else "data"
        self._trailers = 0
        self._parts: List[bytes] = []
        self._total = 0

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)

    def feed(self, data: bytes) -> int:
        """Take bytes; how many of them belong to the body (the rest is what follows it)."""
        used = 0
        while not self.done and used < len(data):
            if self._state == "data":
                used += self._data(data, used)
            else:
                used += self._lines(data, used)
        return used

    def _data(self, data: bytes, start: int) -> int:
        piece = data[start : start + self._remaining]
        self._parts.append(piece)
        self._remaining -= len(piece)
        if not self._remaining:
            if self._chunked:
                self._state = "end"
            else:
                self.done = True
        return len(piece)

    def _lines(self, data: bytes, start: int) -> int:
        """Take one line (size, chunk end or trailer) or what there is of it."""
        end = data.find(b"\n", start)
        if end < 0:
            self._line += data[start:]
            self._check_partial()
            return len(data) - start
        line, self._line = self._line + data[start:end], b""
        self._line_done(line[:-1] if line.endswith(b"\r") else line)
        return end + 1 - start

    def _check_partial(self) -> None:
        if self._state == "end" and self._line != b"\r":
            raise FramingError(400, "chunk data is not followed by CRLF")
        if len(self._line) > (_MAX_SIZE_LINE if self._state == "size" else _MAX_TRAILER_LINE):
            raise FramingError(400, f"a chunk {self._state} line is too long")

    def _line_done(self, line: bytes) -> None:
        state = self._state
        if state == "end":
            if line:
                raise FramingError(400, "chunk data is not followed by CRLF")
            self._state = "size"
        elif state == "size":
            self._size(line)
        else:
            self._trailers += 1
            if not line:
                self.done = True
            elif self._trailers >= _MAX_TRAILER_LINES:
                raise FramingError(400, "too many trailer lines")

    def _size(self, line: bytes) -> None:
        digits = line.split(b";", 1)[0].strip()
        # strictly hex digits: int(x, 16) alone takes "-1", "+5", "0x5" and "1_0"
        if not digits or len(digits) > 16 or not _HEX.issuperset(digits) or len(line) > _MAX_SIZE_LINE:
            raise FramingError(400, f"bad chunk size {line[:40]!r}")
        size = int(digits, 16)
        if not size:
            self._state = "trailer"
            return
        self._total += size
        if self.max_body is not None and self._total > self.max_body:
            raise FramingError(413, f"a chunked body over the limit of {self.max_body} bytes")
        self._remaining = size
        self._state = "data"

    def eof(self) -> bool:
        """The stream ended: whether the body was whole (a chunked body may end inside its trailers)."""
        return self.done or (self._state == "trailer" and not self._line)


@dataclass(frozen=True)
class Message:
    """One whole message: its head as received (through the blank line) and its body de-framed.

    ``start`` (the request or status line) and ``headers`` (names as sent) are parsed when asked for.
    """

    head: bytes
    body: bytes

    @cached_property
    def start(self) -> str:
        return self.head[: self.head.find(b"\n")].rstrip(b"\r").decode("latin-1")

    @cached_property
    def headers(self) -> Headers:
        lines = self.head.decode("latin-1").replace("\r\n", "\n").rstrip("\n").split("\n")
        return tuple((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))

    def header(self, name: str) -> Optional[str]:
        """The first value of a header (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def status(self) -> int:
        """A response's status (0 for a request)."""
        return _status(self.start)

    def wire(self) -> bytes:
        """The message framed as received (a chunked body as one chunk, trailers dropped)."""
        if self.header("transfer-encoding") is None:
            return self.head + self.body
        return self.head + (b"%x\r\n%s\r\n" % (len(self.body), self.body) if self.body else b"") + b"0\r\n\r\n"


def _status(start: str) -> int:
    parts = start.split(" ", 2)
    return int(parts[1]) if start.startswith("HTTP/") and len(parts) > 1 and parts[1].isdigit() else 0


def _values(head: bytes, lowered: bytes, name: bytes) -> List[str]:
    """Every value of one header, found without parsing the others (the common head costs one scan)."""
    values: List[str] = []
    at = lowered.find(name)
    while at >= 0:
        end = lowered.find(b"\n", at + 1)
        values.append(head[at + len(name) : end].decode("latin-1").strip())
        at = lowered.find(name, end)
    return values


def _head_end(buf: bytes, start: int) -> int:
    """The index just past the head's blank line, or -1."""
    crlf, lf = buf.find(b"\r\n\r\n", start), buf.find(b"\n\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    return lf + 2 if lf >= 0 else -1


class MessageReader:
    """Whole messages from a byte stream: ``feed`` what arrives, ``next()`` each complete message.

    ``responses=True`` reads responses (1XX, 204 and 304 have no body; nor has any without
    framing, which the servers here never send); else requests. Bytes after a message stay for
    the next; ``pending`` holds them.
    """

    def __init__(self, *, responses: bool = False, max_body: Optional[int] = None, max_head: int = MAX_HEAD) -> None:
        self.responses = responses
        self.max_body = max_body
        self.max_head = max_head
        self.pending = b""
        self._scanned = 0
        self._head: Optional[bytes] = None
        self._body: Optional[BodyReader] = None

    def feed(self, data: bytes) -> None:
        self.pending += data

    def next(self) -> Optional[Message]:
        """The next complete message, or None until more bytes arrive."""
        if self._head is None:
            whole = self._take_head()
            if whole is not None or self._head is None:
                return whole
        assert self._body is not None
        if self.pending and not self._body.done:
            used = self._body.feed(self.pending)
            self.pending = self.pending[used:]
        if not self._body.done:
            return None
        message = Message(self._head, self._body.body)
        self._head = self._body = None
        return message

    def head(self) -> Optional[bytes]:
        """The next message's head alone (``next()`` then reads its body), or None until it is whole."""
        if self._head is None:
            self._take_head(body=False)
        return self._head

    def eof(self) -> bool:
        """The stream ended: True when it ended between messages, False inside one."""
        if self._head is None:
            return not self.pending
        assert self._body is not None
        return self._body.eof()

    def _take_head(self, body: bool = True) -> Optional[Message]:
        """Take a head when one is whole; with ``body``, the message when its body is there too (the
        common case, in one step). Else None: the head taken, or not there yet (``_head`` None)."""
        pending = self.pending
        end = _head_end(pending, max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(pending)
            if len(pending) > self.max_head:
                raise FramingError(431, f"a head over {self.max_head} bytes")
            return None
        head, self._scanned = pending[:end], 0
        length = self._length(head)
        if body and 0 <= length <= len(pending) - end:
            self.pending = pending[end + length :]
            return Message(head, pending[end : end + length])
        self.pending, self._head = pending[end:], head
        self._body = BodyReader(length, self.max_body)
        return None

    def _length(self, head: bytes) -> int:
        if self.responses:
            status = _status(head[: head.find(b"\n")].decode("latin-1"))
            if status < 200 or status in _NO_BODY:
                return 0
        lowered = head.lower()
        codings = _values(head, lowered, b"\ntransfer-encoding:")
        return body_length(codings[0] if codings else None, _values(head, lowered, b"\ncontent-length:"),
                           self.max_body)


def receive(reader: MessageReader, recv: Callable[[], bytes]) -> Optional[Message]:
    """The next message, calling ``recv`` (``b""`` at the end of the stream) until it is whole.

    None when the stream ended between messages; ``ConnectionError`` when it ended inside one.
    """
    message = reader.next()
    while message is None:
        data = recv()
        if not data:
            if reader.eof():
                return None
            raise ConnectionError("the stream ended inside a message")
        reader.feed(data)
        message = reader.next()
    return message
