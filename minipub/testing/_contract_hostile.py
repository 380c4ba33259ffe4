"""The hostile-server contract: what every transport keeps against servers that trickle, stall,
forge, misframe or hang up, in three mixins (time, the right answer, secrets) composed into
``HostileServerContract``."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import traceback
from types import FrameType
from typing import Any, Iterator, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..client import SDK
from ..errors import ConnectionLostError, ProtocolError, TransportError, TransportTimeout, ValidationError
from ..retry import BackoffStrategy, RetryConfig
from ..transports.base import HTTPRequest, Transport
from ._contract_base import API_KEY, MakeTransport, Servers, TransportUnderTest, make_request, publish_body
from .rawserver import IO_TIMEOUT, ContractRequest, Handler, Peer, RawServer, outpost_like

#: How far past its bound a call may end on a loaded machine (seconds).
SLACK = 1.0
_HERE = os.path.dirname(os.path.abspath(__file__))


def response_bytes(status: int = 200, body: bytes = b"ok", *extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Hostile", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer_id(request: ContractRequest) -> bytes:
    """A 202 as Outpost gives it, for the event id the request carried."""
    event = json.loads(request.body or b"{}").get("id", "")
    return json.dumps({"id": event, "duplicate": False, "destination_ids": []}).encode()


def _trickling(body: bytes, part: str, interval: float) -> Handler:
    """A handler answering one request with a 200 whose ``part`` ("head" or "body") comes a byte every ``interval``."""
    response = response_bytes(200, body)
    split = 0 if part == "head" else response.index(b"\r\n\r\n") + 4

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(response[:split])
            peer.trickle(response[split:], interval)

    return handler


def _ours(frame: FrameType) -> bool:
    """A frame of the contract itself (the test's own), not of the code under test."""
    path = os.path.abspath(frame.f_code.co_filename)
    return os.path.dirname(path) == _HERE and os.path.basename(path).startswith(("_contract_", "contract."))


def locals_text(error: BaseException) -> str:
    """Every frame local of ``error``'s traceback and of the exceptions chained to it, as reprs,
    the way error reporters record them (Sentry's ``include_local_variables``); the test's own
    frames (the contract's) are left out."""
    seen: List[str] = []
    pending: List[Optional[BaseException]] = [error]
    visited = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in visited:
            continue
        visited.add(id(current))
        seen.append(repr(current.args))
        seen.append(repr(getattr(current, "object", "")))
        tb = current.__traceback__
        while tb is not None:
            if not _ours(tb.tb_frame):
                for name, value in tb.tb_frame.f_locals.items():
                    try:
                        seen.append(f"{name}={value!r}")
                    except Exception:  # a repr that fails is not a leak
                        pass
            tb = tb.tb_next
        pending.extend([current.__cause__, current.__context__])
    top = error.__traceback__
    while top is not None and _ours(top.tb_frame):
        top = top.tb_next
    seen.append("".join(traceback.TracebackException(type(error), error, top, capture_locals=True).format()))
    return "\n".join(seen)


class HostileBase(TransportUnderTest):
    """The servers of the hostile cases (closed after each test; their handlers may fail), and
    the one way a case expects a failure."""

    @pytest.fixture
    def servers(self) -> Iterator[Servers]:
        servers = Servers()
        yield servers
        for server in servers.started:
            server.close(timeout=2.0)

    def _timed_failure(self, transport: Transport, request: HTTPRequest) -> Any:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            transport.send(request)
        return caught.value, time.monotonic() - started

    def _failure_for(self, servers: Servers, transports: MakeTransport, answer: bytes) -> Any:
        """The error of a send whose request the server answers with ``answer``, then a half-close."""

        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                peer.send(answer)
                peer.sock.shutdown(socket.SHUT_WR)

        server = servers(handler)
        return self._timed_failure(transports(), make_request(server.url(), timeout=3.0))[0]


class HostileTimeContract(HostileBase):
    """``request.timeout`` bounds the whole attempt (connect, send, wait, read), whatever the
    server's pace: trickling heads and bodies, stalls, servers that never (or slowly) read; the
    publish deadline bounds the whole publish."""

    @pytest.mark.parametrize("part", ["head", "body"])
    def test_a_trickling_server_cannot_stretch_the_attempt(
        self, servers: Servers, transports: MakeTransport, part: str
    ) -> None:
        server = servers(_trickling(b"x" * 40, part, 0.1))  # 6 s in all, each byte well within the timeout
        error, elapsed = self._timed_failure(transports(), make_request(server.url(), timeout=0.5))
        assert isinstance(error, TransportTimeout), repr(error)
        assert elapsed < 0.5 + SLACK

    @pytest.mark.parametrize("reader", ["never", "slowly"])
    def test_a_server_that_does_not_read_cannot_stretch_the_upload(
        self, servers: Servers, transports: MakeTransport, reader: str
    ) -> None:
        def handler(peer: Peer) -> None:
            if reader == "never":
                peer.wait(IO_TIMEOUT)
            else:
                peer.read_slowly(65536, 0.05)

        server = servers(handler)
        body = b"x" * (24 << 20)  # more than the socket buffers hold
        error, elapsed = self._timed_failure(transports(), make_request(server.url(), body, timeout=0.5))
        assert isinstance(error, TransportTimeout), repr(error)
        assert elapsed < 0.5 + SLACK

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(interval=st.floats(0.02, 0.3), timeout=st.floats(0.2, 0.6), part=st.sampled_from(["head", "body"]))
    def test_the_attempt_ends_within_its_timeout_whatever_the_pace(
        self, transports: MakeTransport, interval: float, timeout: float, part: str
    ) -> None:
        with RawServer(_trickling(b"y" * 200, part, interval)) as server:
            started = time.monotonic()
            try:
                transports().send(make_request(server.url(), timeout=timeout))
            except TransportTimeout:
                pass
            assert time.monotonic() - started < timeout + SLACK
            server.stopping.set()

    @pytest.mark.parametrize(("timeout_ms", "deadline_ms"), [(3000, 1000), (1000, 1200)])
    def test_the_publish_deadline_bounds_the_whole_publish(
        self, servers: Servers, transports: MakeTransport, timeout_ms: int, deadline_ms: int
    ) -> None:
        server = servers(lambda peer: peer.serve(lambda request, peer: peer.wait(IO_TIMEOUT)))
        retries = RetryConfig("backoff", BackoffStrategy(1, 5, 1.5, deadline_ms), True)
        with SDK(API_KEY, server_url=server.url(""), transport=transports(), timeout_ms=timeout_ms,
                 retry_config=retries) as sdk:
            started = time.monotonic()
            with pytest.raises(TransportTimeout):
                sdk.publish.event(tenant_id="acme", topic="contract", data={"n": 1})
            elapsed = time.monotonic() - started
        # The deadline itself bounds it (the last attempt's timeout is cut to what is left), not
        # the deadline plus one more attempt's timeout.
        assert elapsed < deadline_ms / 1000 + 0.6

class HostileAnswerContract(HostileBase):
    """The right answer or an error: bytes on an idle pooled connection are never the next answer;
    one framing rule (chunk sizes, ``Content-Length``, head and body caps); a server that answers
    before the upload ended is heard."""

    def test_bytes_on_an_idle_connection_are_never_the_next_answer(
        self, servers: Servers, transports: MakeTransport
    ) -> None:
        forged = response_bytes(202, b'{"id": "FORGED", "duplicate": false, "destination_ids": []}')
        sent = threading.Event()

        def handler(peer: Peer) -> None:
            first = peer.index == 0  # on the first connection only, once
            while True:
                request = peer.read_request()
                if request is None:
                    return
                peer.respond(202, answer_id(request), [("Content-Type", "application/json")])
                if first:
                    peer.wait(0.05)
                    peer.send(forged)  # unsolicited, while the connection is idle: an answer to nothing
                    sent.set()
                    first = False

        server = servers(handler)
        transport = transports()
        for event in ("evt_1", "evt_2", "evt_3"):
            response = transport.send(make_request(server.url(), publish_body(event)))
            assert json.loads(response.body)["id"] == event
            sent.wait(IO_TIMEOUT)  # the forged answer lands while the connection is idle
            time.sleep(0.05)

    def test_a_late_answer_after_a_timeout_is_never_the_next_answer(
        self, servers: Servers, transports: MakeTransport
    ) -> None:
        def reply(request: ContractRequest, peer: Peer) -> None:
            if b"slow" in request.body:
                peer.wait(0.6)
            peer.respond(202, answer_id(request), [("Content-Type", "application/json")])

        server = servers(lambda peer: peer.serve(reply))
        transport = transports()
        with pytest.raises(TransportTimeout):
            transport.send(make_request(server.url(), publish_body("evt_slow"), timeout=0.3))
        time.sleep(0.5)
        response = transport.send(make_request(server.url(), publish_body("evt_next")))
        assert json.loads(response.body)["id"] == "evt_next"

    @pytest.mark.parametrize("size_line", ["-1", "-0", "0x10", "1g", "", " ", "+5", "5 5", "1;" + "x" * 70000])
    def test_a_bad_chunk_size_is_a_protocol_error(
        self, servers: Servers, transports: MakeTransport, size_line: str
    ) -> None:
        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line.encode() + b"\r\n"
                          + b"z" * 4096 + b"\r\n0\r\n\r\n")
                peer.wait(2.0)

        server = servers(handler)
        error, _ = self._timed_failure(transports(), make_request(server.url(), timeout=3.0))
        assert isinstance(error, ProtocolError), repr(error)

    @pytest.mark.parametrize("value", ["-5", "abc", "5, 6", "5 6", "+5", "0x5", "5.0", "\uff11"])
    def test_a_bad_content_length_is_a_protocol_error(
        self, servers: Servers, transports: MakeTransport, value: str
    ) -> None:
        wire = f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\nhello".encode()
        error = self._failure_for(servers, transports, wire)
        assert isinstance(error, ProtocolError), repr(error)

    def test_conflicting_content_lengths_are_a_protocol_error(
        self, servers: Servers, transports: MakeTransport
    ) -> None:
        wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
        error = self._failure_for(servers, transports, wire)
        assert isinstance(error, ProtocolError), repr(error)

    def test_endless_interim_responses_hit_the_head_cap(self, servers: Servers, transports: MakeTransport) -> None:
        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                ends = time.monotonic() + 5.0
                while time.monotonic() < ends and not peer.server.stopping.is_set():
                    peer.send(b"HTTP/1.1 100 Continue\r\n\r\n" * 64)

        server = servers(handler)
        error, elapsed = self._timed_failure(transports(), make_request(server.url(), timeout=4.0))
        assert isinstance(error, ProtocolError), repr(error)
        assert elapsed < 3.0

    def test_one_byte_chunks_cost_bounded_memory(self, servers: Servers, transports: MakeTransport) -> None:
        size = 1 << 16
        wire = b"1\r\nq\r\n" * size + b"0\r\n\r\n"

        def handler(peer: Peer) -> None:
            if peer.read_request() is not None:
                peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)

        server = servers(handler)
        transport = transports(max_body=size)
        import tracemalloc

        tracemalloc.start()
        try:
            response = transport.send(make_request(server.url(), timeout=20.0))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert response.body == b"q" * size
        assert peak < 40 * size, f"{peak} bytes at peak for a {size}-byte body"

    def test_a_status_line_cut_off_by_a_close_is_connection_lost(
        self, servers: Servers, transports: MakeTransport
    ) -> None:
        error = self._failure_for(servers, transports, b"HTTP/1.1 20")
        assert type(error) is ConnectionLostError, repr(error)

    def test_a_close_while_uploading_is_connection_lost(self, servers: Servers, transports: MakeTransport) -> None:
        def handler(peer: Peer) -> None:
            if peer.read_head() is not None:
                peer.reset()

        server = servers(handler)
        error, _ = self._timed_failure(transports(), make_request(server.url(), b"u" * (16 << 20), timeout=5.0))
        assert type(error) is ConnectionLostError, repr(error)

    @pytest.mark.parametrize("then", ["waits", "closes"])
    def test_an_answer_before_the_upload_ended_is_returned(
        self, servers: Servers, transports: MakeTransport, then: str
    ) -> None:
        def handler(peer: Peer) -> None:
            if peer.read_head() is not None:
                peer.send(response_bytes(413, b"too large", "Connection: close"))
                if then == "waits":
                    peer.wait(IO_TIMEOUT)  # and never reads the body

        server = servers(handler)
        started = time.monotonic()
        response = transports().send(make_request(server.url(), b"u" * (24 << 20), timeout=4.0))
        assert (response.status, response.body) == (413, b"too large")
        assert time.monotonic() - started < 4.0

class HostileSecretsContract(HostileBase):
    """Only minipub's errors, and the key in no frame local of any of them."""

    @pytest.mark.parametrize("where", ["value", "name"])
    def test_non_latin_1_headers_are_a_validation_error_that_holds_no_key(
        self, servers: Servers, transports: MakeTransport, where: str
    ) -> None:
        server = servers(outpost_like)
        headers = {"Authorization": "Bearer " + API_KEY + "\u20ac"} if where == "value" else {"X-\u20ac": "1"}
        transport = transports()
        try:
            request = make_request(server.url(), headers=headers)
        except ValidationError:  # a request type that checks credentials itself refused it: nothing to send
            return
        del headers
        with pytest.raises(ValidationError) as caught:
            transport.send(request)
        assert API_KEY not in locals_text(caught.value)
        assert server.accepted == 0

    @pytest.mark.parametrize("failure", ["timeout", "garbage", "close", "reset-upload"])
    def test_the_key_is_in_no_frame_local_of_an_error(
        self, servers: Servers, transports: MakeTransport, failure: str
    ) -> None:
        def handler(peer: Peer) -> None:
            if failure == "reset-upload":
                if peer.read_head() is not None:
                    peer.reset()
                return
            if peer.read_request() is None:
                return
            if failure == "timeout":
                peer.wait(IO_TIMEOUT)
            elif failure == "garbage":
                peer.send(b"SSH-2.0-OpenSSH\r\n\r\n")
            else:
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")

        server = servers(handler)
        body = b"u" * (8 << 20) if failure == "reset-upload" else b"{}"
        error, _ = self._timed_failure(transports(), make_request(server.url(), body, timeout=0.5))
        assert API_KEY not in locals_text(error)


class HostileServerContract(HostileTimeContract, HostileAnswerContract, HostileSecretsContract):
    """What every transport keeps against hostile servers: inherit it and define ``make_transport``.

    - Time: ``request.timeout`` bounds the whole attempt (connect, send, wait, read), whatever the
      server's pace: trickling heads and bodies, stalls, servers that never (or slowly) read.
    - The right answer: bytes that arrive on an idle pooled connection are never taken as the next
      request's answer; one framing rule (chunk sizes, ``Content-Length``, head and body caps);
      a server that answers before the upload ended is heard.
    - The same failure is the same class everywhere; the key is in no frame local of any error.
    """
