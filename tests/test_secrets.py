"""The key never leaks, whole or in part: redaction before every cut, every echo encoding, frame locals.

Keys are any printable latin-1 text (quotes, backslash, non-ASCII included); echoes come as is,
JSON-escaped, percent-encoded, base64 (std and urlsafe, padded or not, alone or inside a longer
base64 text), at any position, also straddling the 8 KiB body cap, the 1,000-character message
cap and the transport's body cap.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any, Iterator, List
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minipub import SDK, Publisher
from minipub.auth import check_key
from minipub.errors import APIError, ConfigurationError
from minipub.response import MAX_ERROR_TEXT, MAX_MESSAGE, parse_publish_response
from minipub.secret import MIN_FRAGMENT, Secret, redact
from minipub.testing.rawserver import ContractRequest, Peer, RawServer
from minipub.transports import HTTPResponse

from .cli_support import run_cli, wait_for
from .conftest import API_KEY, NO_RETRY


def _valid(key: str) -> bool:
    try:
        check_key(key, "admin_api_key")
    except ConfigurationError:
        return False
    return True


#: Any key minipub accepts: printable latin-1 without whitespace (quotes, backslash, non-ASCII included).
keys = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=8, max_size=40).filter(_valid)


def b64_piece(prefix: bytes, key: str, encode: Any) -> str:
    """The characters of base64(prefix + key + ...) made of key bits only."""
    raw = key.encode()
    text = encode(prefix + raw + b"\0\0").decode()
    return text[-(-8 * len(prefix) // 6): (8 * len(prefix) + 8 * len(raw)) // 6]


#: name -> (the echo as the server writes it, the part of it made of the key only)
ENCODINGS = {
    "raw": lambda k: (k, k),
    "json": lambda k: (json.dumps(k)[1:-1],) * 2,
    "json-unicode": lambda k: (json.dumps(k, ensure_ascii=False)[1:-1],) * 2,
    "go-json": lambda k: (json.dumps(k)[1:-1].replace("<", "\\u003c").replace(">", "\\u003e")
                          .replace("&", "\\u0026"),) * 2,
    "percent": lambda k: (quote(k, safe=""),) * 2,
    "percent-lower": lambda k: (re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(k, safe="")),) * 2,
    "percent-path": lambda k: (quote(k, safe="/:@!$&'()*+,;="),) * 2,
    "b64": lambda k: (base64.b64encode(k.encode()).decode(),) * 2,
    "b64-nopad": lambda k: (base64.b64encode(k.encode()).decode().rstrip("="),) * 2,
    "b64url": lambda k: (base64.urlsafe_b64encode(k.encode()).decode(),) * 2,
    "b64url-nopad": lambda k: (base64.urlsafe_b64encode(k.encode()).decode().rstrip("="),) * 2,
    "b64-bearer": lambda k: (base64.b64encode(b"Bearer " + k.encode()).decode(),
                             b64_piece(b"Bearer ", k, base64.b64encode)),
    "b64-basic": lambda k: (base64.b64encode(b"u:" + k.encode()).decode(), b64_piece(b"u:", k, base64.b64encode)),
    "b64url-basic": lambda k: (base64.urlsafe_b64encode(b"ab:" + k.encode()).decode(),
                               b64_piece(b"ab:", k, base64.urlsafe_b64encode)),
}


def fragments(text: str, size: int = MIN_FRAGMENT) -> List[str]:
    return [text[i:i + size] for i in range(len(text) - size + 1)]


def assert_no_fragment(part: str, *texts: str) -> None:
    """No ``MIN_FRAGMENT`` characters in a row of ``part`` (the key, or its encoded form) in any text."""
    for text in texts:
        for piece in fragments(part):
            assert piece not in text, (piece, text[-80:])


def error_for(status: int, body: bytes, headers: Any = None, truncated: bool = False, key: Any = API_KEY) -> APIError:
    response = HTTPResponse(status, headers or {}, body, truncated)
    with pytest.raises(APIError) as info:
        parse_publish_response(response, "evt_1", key)
    return info.value


def error_texts(error: APIError) -> List[str]:
    return [error.body, error.message, str(error), repr(error), *error.headers, *error.headers.values(),
            pickle.dumps(error).decode("latin-1")]


# -- redaction before truncation, every encoding ------------------------------------------------------

near_the_cap = st.integers(MAX_ERROR_TEXT - 130, MAX_ERROR_TEXT + 2)


@settings(max_examples=300)
@given(key=keys, encoding=st.sampled_from(sorted(ENCODINGS)), at=near_the_cap | st.integers(0, 9000),
       transport_cap=st.none() | st.integers(1, 9000))
@example(key=API_KEY, encoding="raw", at=MAX_ERROR_TEXT - len(API_KEY) + 1, transport_cap=None)  # 33 of 34 kept
@example(key='a"b\\c\xe9d<&>' * 2, encoding="go-json", at=MAX_ERROR_TEXT - 5, transport_cap=None)
@example(key="000000!\xa1", encoding="percent-path", at=0, transport_cap=8)  # a cut inside a %XX escape
def test_an_echo_in_the_body_is_redacted_before_any_cut(
    key: str, encoding: str, at: int, transport_cap: Any
) -> None:
    echo, part = ENCODINGS[encoding](key)
    body = (" " * at + echo + " " * 50).encode()
    truncated = transport_cap is not None and transport_cap < len(body)
    if truncated:
        body = body[:transport_cap]  # what a transport keeps of a body over its cap
    error = error_for(500, body, {"content-type": "text/plain", "x-echo": echo}, truncated, key)
    assert len(error.body) <= MAX_ERROR_TEXT
    assert_no_fragment(part, error.body, error.headers["x-echo"])  # texts made of the echo and filler only
    # Texts with words of their own (class names, pickle opcodes): no more of the key than without an echo.
    baseline = error_for(500, b" " * len(body), {"content-type": "text/plain", "x-echo": " "}, truncated, key)
    for text, plain in zip(error_texts(error), error_texts(baseline)):
        assert text.count(part) <= plain.count(part) and text.count(key) <= plain.count(key)


@settings(max_examples=200)
@given(key=keys, at=st.integers(MAX_MESSAGE - 60, MAX_MESSAGE + 2) | st.integers(0, 1200),
       details=st.booleans())
@example(key=API_KEY, at=MAX_MESSAGE - len(API_KEY) + 1, details=False)
def test_an_echo_in_the_message_is_redacted_before_the_message_cap(key: str, at: int, details: bool) -> None:
    payload = {"message": " " * at + key + " " * 20, "data": [f"the key {key} is not valid"] if details else None,
               key: {"nested": [[key]]}}
    error = error_for(401, json.dumps(payload).encode(), {"content-type": "application/json"}, key=key)
    assert len(error.message) <= MAX_MESSAGE
    echoed = error.message.rsplit(": the key", 1)[0] if details else error.message  # the echo's part
    assert_no_fragment(key, echoed)
    assert key not in error.body and json.dumps(key)[1:-1] not in error.body  # not cut: whole forms only
    baseline = error_for(401, json.dumps({"message": "m"}).encode(), {"content-type": "application/json"}, key=key)
    for text in [error.body, error.message, *error.headers.values()]:
        assert key not in text
    for text, plain in zip([str(error), repr(error)], [str(baseline), repr(baseline)]):
        assert text.count(key) <= plain.count(key)
    strings: List[str] = []
    stack = [error.data]
    while stack:  # every str in the decoded structure, keys too (but the template's own words)
        node = stack.pop()
        if isinstance(node, dict):
            strings += [name for name in node if name not in ("message", "data", "nested")]
            stack += list(node.values())
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str):
            strings.append(node)
    assert_no_fragment(key, *(text.replace("the key ", "").replace(" is not valid", "") for text in strings))
    assert error.data["data"] == (["the key *** is not valid"] if details else None) or "*" in key


def test_redaction_keeps_the_rest_of_the_text() -> None:
    assert redact(f"a {API_KEY} b", API_KEY) == "a *** b"
    assert redact("x" * 10 + API_KEY, API_KEY, 20) == "x" * 10 + "***"  # redacted, then cut
    assert redact("x" * 10 + API_KEY[:10], API_KEY, cut=True) == "x" * 10 + "***"  # a fragment at a cut edge
    assert redact("x" * 10 + API_KEY[:3], API_KEY, cut=True) == "x" * 10 + API_KEY[:3]  # under MIN_FRAGMENT
    assert redact("x" * 10 + API_KEY[:10], API_KEY) == "x" * 10 + API_KEY[:10]  # not cut: not an edge
    assert redact("nothing here", API_KEY, 5) == "nothi"
    assert redact("star * key", "k*y*") == "star * key" and redact("a k*y* b", "k*y*") == "a !!! b"


# -- Secret ------------------------------------------------------------------------------------------


def test_a_secret_shows_nothing_and_does_not_pickle_its_value() -> None:
    import copy

    secret = Secret(API_KEY)
    assert repr(secret) == "'***'" and str(secret) == "***" and f"{secret}" == "***"
    assert secret.reveal() == API_KEY and secret.reveal_bytes() == API_KEY.encode()
    head = b"Authorization: Bearer " + API_KEY.encode() + b"\r\n\x00"
    assert Secret(head).reveal_bytes() == head and Secret(b"").reveal_bytes() == b""  # request bytes, sealed
    assert copy.copy(secret) is secret and copy.deepcopy([secret])[0] is secret
    for name in Secret.__slots__:
        assert API_KEY not in repr(getattr(secret, name))
    dumped = pickle.dumps(secret)
    assert API_KEY.encode() not in dumped
    with pytest.raises(ConfigurationError, match="does not survive pickling"):
        pickle.loads(dumped).reveal()


# -- the same guarantee end to end: CLI stderr, the "failed for good" log, outbox rows ----------------------


#: A key like a real one (random characters): no fragment of it occurs in paths, class names or words.
RANDOM_KEY = "Zq9xKv2mWp7rTn4bLc8dHf3jYs6gQ1"


def echo_straddling(peer: Peer) -> None:
    """Answer 500 with valid JSON echoing the bearer key across the message cap and the 8 KiB body cap."""

    def reply(request: ContractRequest, peer: Peer) -> None:
        key = (request.header("authorization") or "")[len("Bearer "):]
        start = '{"message": "' + " " * (MAX_MESSAGE - 10) + key + '", "pad": "'
        pad = " " * (MAX_ERROR_TEXT - 10 - len(start) - len('", "k": "'))
        body = (start + pad + '", "k": "' + key + '"}').encode()
        assert body.index(key.encode(), len(start)) == MAX_ERROR_TEXT - 10
        status = 422 if b'"tenant_id":"dead"' in request.body else 500  # 422: never retried, a dead letter
        peer.respond(status, body, [("Content-Type", "application/json")])

    peer.serve(reply)


@pytest.fixture
def echo_server() -> Iterator[RawServer]:
    with RawServer(echo_straddling) as server:
        yield server


def test_an_echo_straddling_the_caps_never_reaches_stderr_logs_or_the_outbox(
    echo_server: RawServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = echo_server.url("")
    result = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", "--max-attempts", "1"],
                     OUTPOST_API_KEY=RANDOM_KEY, OUTPOST_API_BASE_URL=url)
    assert result.returncode != 0 and "InternalServerError" in result.stderr
    assert_no_fragment(RANDOM_KEY, result.stdout, result.stderr)

    caplog.set_level(logging.WARNING, logger="minipub")
    with SDK(RANDOM_KEY, server_url=url, retry_config=NO_RETRY, timeout_ms=5000) as sdk:
        with Publisher(sdk, workers=1) as background:  # no outbox: the "failed for good" warning
            background.submit("t", {}, tenant_id="a")
            assert background.flush(10)
        durable = Publisher(sdk, workers=1, outbox=tmp_path / "outbox.db")
        try:
            durable.submit("t", {}, tenant_id="dead")  # a dead-letter row
            durable.submit("t", {}, tenant_id="later")  # a pending row with its last_error
            outbox = durable.outbox
            assert outbox is not None
            wait_for(lambda: outbox.dead_letter_count() == 1 and any(e.last_error for e in outbox.pending()))
            letters = durable.dead_letters()
            pending = outbox.pending()
        finally:
            durable.close(timeout=0.2)  # the pending row stays on disk (500s are retried later)
    assert "failed for good" in caplog.text
    assert_no_fragment(RANDOM_KEY, caplog.text, *(letter.error for letter in letters),
                       *(entry.last_error or "" for entry in pending))
    listing = run_cli(["outbox", str(tmp_path / "outbox.db")])
    assert_no_fragment(RANDOM_KEY, listing.stdout, listing.stderr)
    database = (tmp_path / "outbox.db").read_bytes().decode("latin-1")
    assert_no_fragment(RANDOM_KEY, database)


# -- frame locals: what an error reporter records -------------------------------------------------------

#: Every 4 characters in a row include a rare one: no fragment occurs by chance in source lines or paths.
LOCALS_KEY = "Zq~9x#Kv^2m!Wp|7r@Tn;4b]Lc"
TRANSPORTS = ["lean", "http.client", "urllib"]


def _answer_500_echoing(peer: Peer) -> None:
    def reply(request: ContractRequest, peer: Peer) -> None:
        auth = request.header("authorization") or ""
        peer.respond(500, f'{{"message":"bad {auth}","key":"{auth[7:]}"}}'.encode(),
                     [("Content-Type", "application/json"), ("X-Echo", auth)])

    peer.serve(reply)


def _reset(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.reset()


def _close(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.sock.shutdown(2)


def _garbage(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.send(b"NOT HTTP AT ALL\r\n\r\n")


def _silent(peer: Peer) -> None:
    if peer.read_request() is not None:
        peer.wait(3)


BEHAVIOURS = {"500": _answer_500_echoing, "reset": _reset, "close": _close, "garbage": _garbage,
              "timeout": _silent}


def _values(value: Any, depth: int, seen: set, out: List[str]) -> None:
    """repr of a value and, a few levels down, of what it holds (containers, __dict__, __slots__)."""
    import types

    if id(value) in seen or len(seen) > 50_000 or isinstance(value, (types.ModuleType, type, types.FunctionType,
                                                                      types.BuiltinFunctionType)):
        return
    seen.add(id(value))
    try:
        out.append(repr(value))
    except Exception as exc:  # a broken repr is the reporter's problem, not a leak
        out.append(type(exc).__name__)
    if depth == 0 or isinstance(value, (str, bytes, bytearray, int, float)):
        return
    children: List[Any] = []
    if isinstance(value, dict):
        children += [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        children += list(value)
    if isinstance(getattr(value, "__dict__", None), dict):
        children += list(vars(value).values())
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(value, name) and name not in ("__dict__", "__weakref__"):
                children.append(getattr(value, name))
    for child in children:
        _values(child, depth - 1, seen, out)


def recorded_locals(error: BaseException) -> List[str]:
    """What a reporter records: TracebackException(capture_locals=True), and the locals walked 4 levels deep."""
    import traceback

    out: List[str] = []
    report: Any = traceback.TracebackException.from_exception(error, capture_locals=True)
    while report is not None:  # as printed: minipub's frames (the test's own hold the key it passed)
        out += [f"{name} = {value}" for frame in report.stack if "/minipub/" in frame.filename
                for name, value in (frame.locals or {}).items()]
        out += list(report.format_exception_only())
        report = report.__cause__ or report.__context__
    seen: set = set()
    chained: Any = error
    while chained is not None:  # the chain a report shows: causes and unsuppressed contexts
        tb = chained.__traceback__
        while tb is not None:
            if "/minipub/" in tb.tb_frame.f_code.co_filename:  # minipub's frames (the test's own hold the server)
                for value in tb.tb_frame.f_locals.values():
                    _values(value, 4, seen, out)
            tb = tb.tb_next
        chained = chained.__cause__ or (None if chained.__suppress_context__ else chained.__context__)
    return out


class Tracing:
    """An observability plugin: the publish goes through observe.py's wrappers (their frames too)."""

    from minipub.hookspecs import hookimpl

    @hookimpl(wrapper=True)
    def minipub_attempt(self, request: Any, attempt: Any, publish: Any) -> Any:
        request.headers["traceparent"] = f"00-{'1' * 32}-{'2' * 16}-01"
        return (yield)


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("transport", [*TRANSPORTS, "lean+plugin", "http.client+async"])
def test_no_frame_local_holds_the_key(transport: str, behaviour: str) -> None:
    from minipub.errors import MinipubError

    name, _, plugin = transport.partition("+")
    with RawServer(BEHAVIOURS[behaviour]) as server, \
            SDK(LOCALS_KEY, server_url=server.url(""), retry_config=NO_RETRY, transport=name, timeout_ms=1000,
                plugins=[Tracing()] if plugin == "plugin" else None) as sdk:
        with pytest.raises(MinipubError) as info:
            if plugin == "async":
                import asyncio

                asyncio.run(sdk.publish.event_async(tenant_id="t", topic="x", data={"k": 1}))
            else:
                sdk.publish.event(tenant_id="t", topic="x", data={"k": 1})
        assert server.requests and server.requests[0].header("authorization") == "Bearer " + LOCALS_KEY
        assert bool(server.requests[0].header("traceparent")) == (plugin == "plugin")
        texts = recorded_locals(info.value)
    assert any("'***'" in text for text in texts)  # the key was there, as a Secret
    assert_no_fragment(LOCALS_KEY, *texts)


@pytest.mark.parametrize("key", ["caf\u20ac" + LOCALS_KEY, LOCALS_KEY + "\udc80", "\u0100" + LOCALS_KEY,
                                 LOCALS_KEY + "\x85", LOCALS_KEY + " tail", LOCALS_KEY + "\x7f"])
def test_a_key_no_header_can_carry_is_a_configuration_error_that_does_not_echo_it(key: str) -> None:
    with pytest.raises(ConfigurationError, match="admin_api_key") as info:
        SDK(key, server_url="http://127.0.0.1:9")
    assert_no_fragment(LOCALS_KEY, str(info.value), *recorded_locals(info.value))


def test_a_key_from_a_provider_that_no_header_can_carry_is_a_configuration_error(tmp_path: Path) -> None:
    class Provider:
        def api_key(self) -> str:
            return "\u20ac" + LOCALS_KEY

        def refresh(self) -> bool:
            return False

    with RawServer(_answer_500_echoing) as server, SDK(auth=Provider(), server_url=server.url(""),
                                                       retry_config=NO_RETRY) as sdk:
        with pytest.raises(ConfigurationError, match="auth provider") as info:
            sdk.publish.event(tenant_id="t", topic="x", data={})
        assert not server.requests  # refused before anything was sent
    assert_no_fragment(LOCALS_KEY, *recorded_locals(info.value))
