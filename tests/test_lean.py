"""The lean transport over real sockets: framing, keep-alive, the stale-connection rule, errors."""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any, Callable, Iterator, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub import SDK
from minipub.errors import ConnectError, ConnectionLostError, ProtocolError, TransportTimeout, ValidationError
from minipub.secret import Secret
from minipub.testing import OutpostServer, TransportContract
from minipub.testing.rawserver import RawServer as SharedRawServer
from minipub.transports import BUILTIN_TRANSPORTS, HTTPRequest, Transport, create_transport
from minipub.transports.lean import LeanTransport

from .conftest import API_KEY, NO_RETRY


class TestLeanTransport(TransportContract):
    """The transport contract suite, for the lean transport."""

    def make_transport(self, **options: Any) -> Transport:
        return LeanTransport(**options)


# One connection's script: called with (socket, index of the connection), it reads and answers.
Script = Callable[[socket.socket, int], None]


def read_request(sock: socket.socket) -> bytes:
    """Read one request (head and Content-Length body); b'' when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


class RawServer:
    """minipub.testing's raw server, driven by a script of (socket, connection index)."""

    def __init__(self, script: Script) -> None:
        self._server = SharedRawServer(lambda peer: script(peer.sock, peer.index)).start()

    @property
    def url(self) -> str:
        return self._server.url("/api/v1/publish")

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def connections(self) -> int:
        return self._server.accepted

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Script], RawServer]]:
    servers: List[RawServer] = []

    def start(script: Script) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer_each(*responses: bytes) -> Script:
    """Answer successive requests, over whatever connections they come on, with these bytes in turn."""
    queue = list(responses)
    lock = threading.Lock()

    def script(sock: socket.socket, index: int) -> None:
        while read_request(sock):
            with lock:
                if not queue:
                    return
                response = queue.pop(0)
            sock.sendall(response)

    return script


def one_per_connection(response: bytes) -> Script:
    """Answer one request per connection, then close it (as a server with a short idle timeout)."""

    def script(sock: socket.socket, index: int) -> None:
        if read_request(sock):
            sock.sendall(response)

    return script


def post(transport: LeanTransport, url: str, timeout: float = 5.0) -> Tuple[int, bytes, bool]:
    response = transport.send(HTTPRequest("POST", url, {"Content-Type": "application/json"}, b"{}", timeout))
    return response.status, response.body, response.truncated


OK = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def test_registered_as_a_builtin() -> None:
    assert "lean" in BUILTIN_TRANSPORTS
    transport = create_transport("lean", proxy=None)
    assert isinstance(transport, LeanTransport) and "LeanTransport" in repr(transport)
    transport.close()


def test_keep_alive_reuses_one_connection(raw: Callable[[Script], RawServer]) -> None:
    server = raw(answer_each(OK, OK, OK))
    with_transport = LeanTransport(proxy=None)
    assert [post(with_transport, server.url) for _ in range(3)] == [(202, b"{}", False)] * 3
    with_transport.close()
    assert server.connections == 1


def test_request_head_is_complete(raw: Callable[[Script], RawServer]) -> None:
    seen: List[bytes] = []

    def script(sock: socket.socket, index: int) -> None:
        seen.append(read_request(sock))
        sock.sendall(OK)

    server = raw(script)
    transport = LeanTransport(proxy=None)
    post(transport, server.url + "?q=1")
    transport.close()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    port = server.url.split(":")[2].split("/")[0]
    assert lines[0] == b"POST /api/v1/publish?q=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert b"Content-Length: 2" in lines and b"Content-Type: application/json" in lines
    assert body == b"{}"


def test_a_shared_header_dict_changed_in_place_is_sent_and_checked_as_it_is_now(
    raw: Callable[[Script], RawServer]
) -> None:
    # A client passes the same dict with every request: the prebuilt lines follow what it holds.
    seen: List[bytes] = []

    def script(sock: socket.socket, index: int) -> None:
        while True:
            request = read_request(sock)
            if not request:
                return
            seen.append(request)
            sock.sendall(OK)

    server = raw(script)
    transport = LeanTransport(proxy=None)
    shared = {"Content-Type": "application/json", "X-Step": "1"}
    for step in ("1", "2"):
        shared["X-Step"] = step
        transport.send(HTTPRequest.split("POST", server.url, shared, {}, b"{}", 5.0))
    shared["X-Step"] = "3\r\nInjected: 1"
    with pytest.raises(ValidationError):
        transport.send(HTTPRequest.split("POST", server.url, shared, {}, b"{}", 5.0))
    transport.close()
    assert [b"X-Step: 1" in r for r in seen] == [True, False] and b"X-Step: 2" in seen[1]


def test_chunked_interim_and_connection_close(raw: Callable[[Script], RawServer]) -> None:
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    closing = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    server = raw(answer_each(chunked, closing, OK))
    transport = LeanTransport(proxy=None)
    assert post(transport, server.url) == (200, b"{}", False)
    assert post(transport, server.url) == (202, b"{}", False)
    assert post(transport, server.url) == (202, b"{}", False)  # on a new connection: the last said close
    transport.close()
    assert server.connections == 2


def test_body_until_close_and_the_body_cap(raw: Callable[[Script], RawServer]) -> None:
    server = raw(answer_each(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 5000))
    transport = LeanTransport(proxy=None, max_body=100)
    assert post(transport, server.url) == (200, b"x" * 100, True)
    server2 = raw(answer_each(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"y" * 5000, OK))
    assert post(transport, server2.url) == (200, b"y" * 100, True)
    assert post(transport, server2.url) == (202, b"{}", False)
    transport.close()
    assert server2.connections == 2  # a truncated response never leaves its connection for reuse


def test_stale_idle_connection_is_replaced_once(raw: Callable[[Script], RawServer]) -> None:
    server = raw(one_per_connection(OK))
    transport = LeanTransport(proxy=None)
    for _ in range(3):
        assert post(transport, server.url) == (202, b"{}", False)
    transport.close()
    assert server.connections == 3


def test_reset_after_part_of_the_response_is_not_resent(raw: Callable[[Script], RawServer]) -> None:
    def script(sock: socket.socket, index: int) -> None:
        read_request(sock)
        sock.sendall(OK if index == 0 else b"HTTP/1.1 200 OK\r\nContent-Le")
        if index == 0:
            read_request(sock)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")

    server = raw(script)
    transport = LeanTransport(proxy=None)
    post(transport, server.url)
    with pytest.raises(ConnectionLostError, match="middle of the response head"):
        post(transport, server.url)
    transport.close()
    assert server.connections == 1


def test_interim_then_close_and_unsolicited_101(raw: Callable[[Script], RawServer]) -> None:
    server = raw(one_per_connection(b"HTTP/1.1 103 Early Hints\r\n\r\n"))
    transport = LeanTransport(proxy=None)
    with pytest.raises(ConnectionLostError, match="interim HTTP 103"):
        post(transport, server.url)
    server2 = raw(answer_each(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00", OK))
    assert post(transport, server2.url) == (101, b"", False)
    assert post(transport, server2.url) == (202, b"{}", False)
    transport.close()
    assert server2.connections == 2  # after a 101 the connection is never reused


def test_not_http_is_a_protocol_error(raw: Callable[[Script], RawServer]) -> None:
    server = raw(answer_each(b"SSH-2.0-OpenSSH_9.6\r\n"))
    transport = LeanTransport(proxy=None)
    with pytest.raises(ProtocolError, match="does not start with 'HTTP/'"):
        post(transport, server.url)
    transport.close()


def test_read_timeout_and_refused_connection(raw: Callable[[Script], RawServer]) -> None:
    release = threading.Event()

    def silent(sock: socket.socket, index: int) -> None:
        read_request(sock)
        release.wait(5)

    server = raw(silent)
    transport = LeanTransport(proxy=None)
    with pytest.raises(TransportTimeout):
        post(transport, server.url, timeout=0.2)
    release.set()
    port, url = server.port, server.url
    server.close()
    with pytest.raises(ConnectError):
        post(transport, f"http://127.0.0.1:{port}/x")
    transport.close()
    with pytest.raises(ConnectError, match="closed"):
        post(transport, url)


def test_bad_header_values_are_refused_before_sending() -> None:
    transport = LeanTransport(proxy=None)
    for headers in ({"X": "a\r\nInjected: 1"}, {"X": "a\nb"}, {"X": "\u20ac"}):
        with pytest.raises(ValidationError):
            transport.send(HTTPRequest("POST", "http://127.0.0.1:9/x", headers, b"", 1.0))
    transport.close()


def test_plain_http_through_a_proxy_uses_the_absolute_url(raw: Callable[[Script], RawServer]) -> None:
    seen: List[bytes] = []

    def proxy(sock: socket.socket, index: int) -> None:
        seen.append(read_request(sock))
        sock.sendall(OK)

    server = raw(proxy)
    port = server.port
    transport = LeanTransport(proxy=f"http://user:pa%20ss@127.0.0.1:{port}")
    assert post(transport, "http://outpost.invalid/api/v1/publish") == (202, b"{}", False)
    transport.close()
    lines = seen[0].split(b"\r\n")
    assert lines[0] == b"POST http://outpost.invalid/api/v1/publish HTTP/1.1"
    assert b"Host: outpost.invalid" in lines
    assert b"Proxy-Authorization: Basic dXNlcjpwYSBzcw==" in lines


def test_connect_refused_by_the_proxy_is_a_connect_error(raw: Callable[[Script], RawServer]) -> None:
    server = raw(answer_each(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"))
    port = server.port
    transport = LeanTransport(proxy=f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectError, match="CONNECT with HTTP 407"):
        post(transport, "https://outpost.invalid/api/v1/publish")
    transport.close()


def test_threads_share_the_pool(server: OutpostServer) -> None:
    with SDK(API_KEY, server_url=server.url, transport="lean", retry_config=NO_RETRY) as sdk:
        errors: List[BaseException] = []

        def work() -> None:
            try:
                for _ in range(20):
                    sdk.publish.event(tenant_id="t", topic="x", data={"n": 1})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not errors and len(server.events) == 80
    assert len({r.client_port for r in server.requests}) <= 4


_FIELD_TEXT = set("\t") | {chr(c) for c in range(0x20, 0x7F)} | {chr(c) for c in range(0x80, 0x100)}


@given(names=st.lists(st.sampled_from(["Authorization", "Cookie", "X-Token"]), min_size=1, max_size=2, unique=True),
       values=st.lists(st.text(st.characters(max_codepoint=0x130), max_size=12), min_size=2, max_size=2))
def test_credential_lines_are_latin1_text_without_controls(names: List[str], values: List[str]) -> None:
    request = HTTPRequest.split("POST", "http://127.0.0.1/", {}, {n: Secret(v) for n, v in zip(names, values)}, b"", 1)
    for _ in range(2):  # the second time, with each Secret's printable-ASCII verdict already made
        if all(_FIELD_TEXT.issuperset(v) for v in values[:len(names)]):
            assert request.secret_head() == "".join(f"{n}: {v}\r\n" for n, v in zip(names, values)).encode("latin-1")
        else:
            with pytest.raises(ValidationError) as info:
                request.secret_head()
            assert all(v not in str(info.value) for v in values if len(v) > 3)


class _Counted:
    """A pooled connection that counts its closes."""

    def __init__(self) -> None:
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


@pytest.mark.parametrize("size", [1, 3])
def test_the_idle_pool_under_threads_keeps_its_size_and_closes_everything_once(size: int) -> None:
    from minipub.errors import ConnectError as Closed
    from minipub.transports.common import IdlePool

    count, per_thread = 8, 400
    pool: IdlePool[_Counted] = IdlePool(size, lambda conn: conn.close())
    origin = ("http", "127.0.0.1", 1)
    pooled: List[_Counted] = []  # every connection checked in
    start = threading.Barrier(count + 1)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                taken = pool.checkout(origin)
            except Closed:
                return
            fresh = _Counted()
            pooled.append(fresh)
            pool.checkin(origin, fresh)
            if taken is not None:
                pool.checkin(origin, taken)

    def run(close: bool) -> None:
        threads = [threading.Thread(target=work) for _ in range(count)]
        for thread in threads:
            thread.start()
        start.wait()
        if close:
            pool.close()  # while the threads check connections in and out
        for thread in threads:
            thread.join()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # thread switches inside the pool's methods, not only between calls
    try:
        run(close=False)
        assert 1 <= len(pool._idle[origin]) <= size
        run(close=True)
    finally:
        sys.setswitchinterval(interval)
    late = _Counted()
    pooled.append(late)
    pool.checkin(origin, late)  # taken out before the close, given back after it
    assert not pool._idle[origin]
    with pytest.raises(Closed):
        pool.checkout(origin)
    assert [conn.closes for conn in pooled] == [1] * len(pooled)
