"""The lean transport's response parser: the right response or a clear error, whatever the split."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minipub.errors import ConnectionLostError, ProtocolError
from minipub.transports import HTTPResponse
from minipub.transports.h11parse import MAX_HEAD, ResponseParser, parse_whole

Outcome = Union[HTTPResponse, ProtocolError, ConnectionLostError]

token = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~"),
                min_size=1, max_size=12)
# Values: visible latin-1 text with inner spaces (leading/trailing whitespace is not part of a value).
value = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20).flatmap(
    lambda v: st.just(v) if len(v) < 2 else st.sampled_from([v, v[0] + " " + v[1:]]))
framing_headers = {"content-length", "transfer-encoding", "connection"}
extra_headers = st.lists(st.tuples(token, value), max_size=6).map(
    lambda pairs: [(n, v) for n, v in pairs if n.lower() not in framing_headers])


def splits(data: bytes) -> st.SearchStrategy[List[bytes]]:
    """``data`` cut into pieces at arbitrary points (empty pieces included)."""
    return st.lists(st.integers(0, len(data)), max_size=8).map(
        lambda cuts: [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])])


def run(pieces: Sequence[bytes], max_body: int = 1 << 20, *, close: bool = True, head_request: bool = False
        ) -> Tuple[Outcome, ResponseParser]:
    """Feed the pieces, then (if nothing came out) the connection's close."""
    parser = ResponseParser(max_body, head_request=head_request)
    try:
        for piece in pieces:
            response = parser.feed(piece)
            if response is not None:
                return response, parser
        if not close:
            raise AssertionError("the parser waits for more input")
        return parser.eof(), parser
    except (ProtocolError, ConnectionLostError) as error:
        return error, parser


@st.composite
def responses(draw: st.DrawFn) -> Tuple[bytes, int, List[Tuple[str, str]], bytes, str]:
    """A valid response: (wire bytes, status, headers, body, framing)."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    headers = draw(extra_headers)
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    interim = draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2))
    wire = "".join(f"HTTP/1.1 {code} Info{eol}X-Hint: {code}{eol}{eol}" for code in interim)
    version = "HTTP/1.0" if framing == "close" and draw(st.booleans()) else "HTTP/1.1"
    lines = [f"{version} {status} {draw(st.sampled_from(['OK', '', 'Some Reason']))}".rstrip(" ")
             if draw(st.booleans()) else f"{version} {status} "]
    lines += [f"{n}:{draw(st.sampled_from(['', ' ', chr(9)]))}{v}" for n, v in headers]
    payload = body
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        ext = draw(st.sampled_from(["", ";x=1", ";name"]))
        payload = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext.encode(), p) for p in pieces)
        payload += b"0\r\n" + (b"Trailer-Field: 1\r\n" if draw(st.booleans()) else b"") + b"\r\n"
    wire += eol.join(lines) + eol + eol
    return wire.encode("latin-1") + payload, status, headers, body, framing


@given(data=st.data(), case=responses())
def test_any_split_of_a_valid_response_gives_that_response(data: st.DataObject, case: Tuple) -> None:
    wire, status, headers, body, framing = case
    pieces = data.draw(splits(wire))
    outcome, parser = run(pieces, close=framing == "close")
    assert isinstance(outcome, HTTPResponse), outcome
    assert outcome.status == status and outcome.body == body and not outcome.truncated
    for name, val in headers:
        assert val.strip(" \t") in outcome.headers[name.lower()]
    assert parser.will_close == (framing == "close")


@given(data=st.data(), case=responses(), cap=st.integers(0, 40))
def test_the_body_cap_truncates_and_ends_the_connection(data: st.DataObject, case: Tuple, cap: int) -> None:
    wire, status, _, body, framing = case
    outcome, parser = run(data.draw(splits(wire)), max_body=cap, close=framing == "close" or len(body) > cap)
    assert isinstance(outcome, HTTPResponse), outcome
    assert outcome.status == status and outcome.body == body[:cap]
    assert outcome.truncated == (len(body) > cap)
    if outcome.truncated:
        assert parser.will_close


@given(data=st.data(), case=responses(), cut=st.integers(1, 10_000))
def test_a_response_cut_short_by_the_close_is_a_lost_connection(data: st.DataObject, case: Tuple, cut: int) -> None:
    wire, _, _, _, framing = case
    assume(framing != "close")  # the close ends such a body wherever it comes: a shorter body, not an error
    short = wire[: len(wire) - 1 - cut % len(wire)]
    outcome, _ = run(data.draw(splits(short)))
    assert isinstance(outcome, ConnectionLostError), outcome


@given(data=st.data(), garbage=st.binary(max_size=200))
def test_arbitrary_bytes_never_hang_and_give_a_response_or_a_clear_error(data: st.DataObject, garbage: bytes) -> None:
    for wire in (garbage, b"HTTP/1.1 " + garbage, b"HTTP/1.1 200 OK\r\n" + garbage):
        outcome, _ = run(data.draw(splits(wire)))
        assert isinstance(outcome, (HTTPResponse, ProtocolError, ConnectionLostError))


MALFORMED = [
    b"SSH-2.0-OpenSSH_9.0\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n continuation first\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 16 + b"\r\n",  # over 15 hex digits
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\n",
]


@pytest.mark.parametrize("wire", MALFORMED)
def test_malformed_heads_and_framing_are_protocol_errors(wire: bytes) -> None:
    for pieces in ([wire], [wire[i:i + 1] for i in range(len(wire))]):
        outcome, _ = run(pieces)
        assert isinstance(outcome, ProtocolError), (wire, outcome)
        assert str(outcome).startswith("invalid HTTP response: ")


@given(size=st.integers(MAX_HEAD - 100, MAX_HEAD + 1000), piece=st.integers(1, 9000))
def test_an_oversize_head_is_refused_as_it_arrives(size: int, piece: int) -> None:
    wire = b"HTTP/1.1 200 OK\r\nX: " + b"a" * size + b"\r\nContent-Length: 0\r\n\r\n"
    parser = ResponseParser(100)
    outcome: Optional[object] = None
    fed = 0
    try:
        for start in range(0, len(wire), piece):
            fed += piece
            outcome = parser.feed(wire[start:start + piece])
            if outcome is not None:
                break
    except ProtocolError as error:
        assert "larger than" in str(error)
        assert fed <= MAX_HEAD + 2 * piece
    else:
        assert len(wire) <= MAX_HEAD and isinstance(outcome, HTTPResponse)


def test_endless_interim_responses_and_trailers_are_bounded() -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
    with pytest.raises(ProtocolError):
        ResponseParser(100).feed(interim * (MAX_HEAD // len(interim) + 1))
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"T: 1\r\n" * (MAX_HEAD // 6)
    with pytest.raises(ProtocolError):
        ResponseParser(100).feed(chunked)


@pytest.mark.parametrize(("wire", "status", "body", "will_close"), [
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, b"", False),
    (b"HTTP/1.1 304 Not Modified\r\n\r\n", 304, b"", False),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 101, b"", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 200, b"ok", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", 200, b"ok", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200, b"ok",
     True),
    (b"HTTP/1.1 200 OK\r\nX: folded\r\n  value\r\nContent-Length: 0\r\n\r\n", 200, b"", False),
])
def test_framing_rules(wire: bytes, status: int, body: bytes, will_close: bool) -> None:
    outcome, parser = run([wire], close=False)
    assert isinstance(outcome, HTTPResponse)
    assert (outcome.status, outcome.body, parser.will_close) == (status, body, will_close)


def test_head_request_has_no_body_and_folded_values_join() -> None:
    outcome, _ = run([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nX: a\r\n\tb\r\n\r\n"], head_request=True, close=False)
    assert isinstance(outcome, HTTPResponse) and outcome.body == b"" and outcome.headers["x"] == "a b"


def test_interim_then_close_names_the_interim_status() -> None:
    outcome, parser = run([b"HTTP/1.1 102 Processing\r\n\r\n"])
    assert isinstance(outcome, ConnectionLostError) and "interim HTTP 102" in str(outcome)
    assert parser.interim == [102]
    outcome, _ = run([])
    assert isinstance(outcome, ConnectionLostError) and "before any response" in str(outcome)


def assert_fast_path_agrees(wire: bytes, cap: int, head_request: bool) -> bool:
    """parse_whole gives what the parser gives, or None; True when it gave a response."""
    try:
        whole = parse_whole(wire, cap, head_request)
    except ProtocolError:
        whole = None  # only if the parser finds the same head invalid
        with pytest.raises(ProtocolError):
            run([wire], cap, head_request=head_request)
    if whole is None:
        return False
    response, will_close = whole
    outcome, parser = run([wire], cap, head_request=head_request, close=False)
    assert isinstance(outcome, HTTPResponse)
    assert (response.status, response.headers, response.body, response.truncated, will_close) == (
        outcome.status, outcome.headers, outcome.body, outcome.truncated, parser.will_close)
    return True


@given(case=responses(), cap=st.integers(0, 400), extra=st.sampled_from([b"", b"H", b"HTTP/1.1 200 OK\r\n"]),
       head_request=st.booleans())
def test_the_one_read_fast_path_agrees_with_the_parser(case: Tuple, cap: int, extra: bytes, head_request: bool) -> None:
    if assert_fast_path_agrees(case[0] + extra, cap, head_request):
        assert case[4] == "length" or head_request


@given(first=responses(), second=responses(), tail=st.binary(max_size=40), cap=st.integers(0, 400),
       head_requests=st.tuples(st.booleans(), st.booleans()))
def test_a_head_like_the_last_one_read_parses_as_if_it_were_new(
    first: Tuple, second: Tuple, tail: bytes, cap: int, head_requests: Tuple[bool, bool]
) -> None:
    # parse_whole remembers the last head it read: whatever follows (the same head with another
    # body or more bytes, another head), the answer is the parser's.
    wire = first[0]
    cut = min(i for i in (wire.find(b"\n\r\n") + 3, wire.find(b"\n\n") + 2) if i > 1)
    for follower in (wire, wire + tail, wire[:cut] + tail, wire[:cut] + second[0], second[0], wire[:cut - 1]):
        assert_fast_path_agrees(wire, cap, head_requests[0])
        assert_fast_path_agrees(follower, cap, head_requests[1])


def test_a_remembered_head_is_not_shared_between_responses() -> None:
    wire = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n{}"
    first = parse_whole(wire, 100)
    assert first is not None
    first[0].headers["x-a"] = "changed"
    second = parse_whole(wire, 100)
    assert second is not None and second[0].headers == {"content-length": "2", "x-a": "1"}
