"""minipub.testing.wire, the one HTTP/1.1 message reader of the hand-written test servers: any split of
the bytes gives the same messages; the framing rule (strict chunk sizes, agreeing Content-Lengths,
the body cap) is one rule, with the status a server answers."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub.testing.wire import CHUNKED, BodyReader, FramingError, Message, MessageReader, body_length, receive


def _request(body: bytes, chunks: Optional[List[int]], target: str = "/api/v1/publish") -> bytes:
    """A request with ``body``, framed by Content-Length, or chunked at the sizes in ``chunks``."""
    if chunks is None:
        return f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    wire, at = b"", 0
    for size in chunks:
        piece, at = body[at : at + size], at + size
        if piece:
            wire += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    if at < len(body):
        wire += b"%X\r\n%s\r\n" % (len(body) - at, body[at:])
    return (f"POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + wire
            + b"0\r\nX-Trailer: t\r\n\r\n")


_messages = st.lists(
    st.tuples(st.binary(max_size=300), st.one_of(st.none(), st.lists(st.integers(1, 64), max_size=8))),
    min_size=1, max_size=4,
)


@given(messages=_messages, cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_any_split_of_valid_requests_gives_those_requests(
    messages: List[Tuple[bytes, Optional[List[int]]]], cuts: List[int]
) -> None:
    wire = b"".join(_request(body, chunks, f"/p{n}") for n, (body, chunks) in enumerate(messages))
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    pieces = [wire[a:b] for a, b in zip(points, points[1:])]
    reader = MessageReader()
    got: List[Message] = []
    for piece in pieces:
        reader.feed(piece)
        message = reader.next()
        while message is not None:
            got.append(message)
            message = reader.next()
    assert [(m.start, m.body) for m in got] == [(f"POST /p{n} HTTP/1.1", body)
                                                 for n, (body, _) in enumerate(messages)]
    assert reader.eof() and reader.pending == b""
    assert all(m.header("HOST") == "x" for m in got)


@given(body=st.binary(max_size=200), chunks=st.one_of(st.none(), st.lists(st.integers(1, 40), max_size=6)))
def test_wire_frames_the_message_again(body: bytes, chunks: Optional[List[int]]) -> None:
    reader = MessageReader()
    reader.feed(_request(body, chunks))
    message = reader.next()
    assert message is not None
    again = MessageReader()
    again.feed(message.wire())
    assert again.next() == message


@pytest.mark.parametrize("size", [b"-1", b"+5", b"0x5", b"1_0", b" ", b"g", b"-0", b"1" * 17, b"1;" + b"x" * 1100])
def test_a_bad_chunk_size_is_400(size: bytes) -> None:
    reader = BodyReader(CHUNKED)
    with pytest.raises(FramingError) as caught:
        reader.feed(size + b"\r\n" + b"x" * 64)
    assert caught.value.status == 400 and not reader.done


def test_a_size_line_that_never_ends_is_400_without_waiting_for_more() -> None:
    reader = BodyReader(CHUNKED)
    with pytest.raises(FramingError):
        for _ in range(10):
            reader.feed(b"1" * 200)


def test_chunk_data_must_end_with_a_line_end() -> None:
    with pytest.raises(FramingError):
        BodyReader(CHUNKED).feed(b"3\r\nabcX\r\n")


@pytest.mark.parametrize(("coding", "lengths", "status"), [
    ("gzip", [], 501), ("gzip, chunked", [], 501), (None, ["5", "6"], 400), (None, ["-5"], 400),
    (None, ["0x5"], 400), (None, ["\uff15"], 400), (None, ["1001"], 413),
])
def test_framing_headers(coding: Optional[str], lengths: List[str], status: int) -> None:
    with pytest.raises(FramingError) as caught:
        body_length(coding, lengths, 1000)
    assert caught.value.status == status


def test_agreeing_lengths_and_chunked() -> None:
    assert body_length(None, ["5", " 5 "], 1000) == 5
    assert body_length(" Chunked ", [], 1000) == CHUNKED
    assert body_length(None, [], 1000) == 0


def test_a_chunked_body_over_the_cap_is_413_before_its_data() -> None:
    reader = BodyReader(CHUNKED, max_body=1000)
    assert reader.feed(b"300\r\n" + b"x" * 0x300 + b"\r\n") == 5 + 0x300 + 2
    with pytest.raises(FramingError) as caught:
        reader.feed(b"300\r\n")
    assert caught.value.status == 413


def test_too_many_trailer_lines_are_400() -> None:
    reader = BodyReader(CHUNKED)
    with pytest.raises(FramingError):
        reader.feed(b"0\r\n" + b"X-T: 1\r\n" * 70 + b"\r\n")


def test_the_body_takes_only_its_own_bytes() -> None:
    reader = BodyReader(5)
    assert reader.feed(b"helloGET / HTTP/1.1\r\n") == 5 and reader.done and reader.body == b"hello"


def test_responses_without_a_body() -> None:
    reader = MessageReader(responses=True)
    reader.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
    statuses = []
    message = reader.next()
    while message is not None:
        statuses.append((message.status, message.body))
        message = reader.next()
    assert statuses == [(100, b""), (204, b""), (202, b"{}")]


def test_receive_tells_a_clean_end_from_a_cut() -> None:
    whole = _request(b"abc", None)
    pieces = [whole, b""]
    assert receive(MessageReader(), lambda: pieces.pop(0)) is not None
    assert receive(MessageReader(), lambda: b"") is None
    cut = [whole[:-1], b""]
    with pytest.raises(ConnectionError):
        receive(MessageReader(), lambda: cut.pop(0))


def test_a_head_over_the_bound_is_an_error_not_a_wait() -> None:
    reader = MessageReader(max_head=1000)
    reader.feed(b"POST / HTTP/1.1\r\n" + b"X-Long: " + b"y" * 2000)
    with pytest.raises(FramingError) as caught:
        reader.next()
    assert caught.value.status == 431
