"""The raw server for transport tests: exact bytes and misbehaviour on demand.

:class:`RawServer` serves each accepted connection with a handler (threads, 127.0.0.1, every wait
bounded); the handler gets a :class:`Peer`, which reads requests with the one reader of ``wire.py``
and writes whatever the test wants.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .wire import MessageReader, receive

__all__ = ["RawServer", "Peer", "ContractRequest", "outpost_like", "IO_TIMEOUT", "Handler", "Reply"]

#: Every socket wait in these servers (seconds).
IO_TIMEOUT = 10.0

Handler = Callable[["Peer"], None]
Reply = Callable[["ContractRequest", "Peer"], None]


@dataclass(frozen=True)
class ContractRequest:
    """A request as a raw server read it: header names as sent, body de-chunked."""

    method: str
    target: str
    headers: Tuple[Tuple[str, str], ...]
    body: bytes
    connection: int  # the index of the accepted connection it came on, from 0

    def header(self, name: str) -> Optional[str]:
        """The first value of a header (case-insensitive), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class Peer:
    """One accepted connection, from the server's side."""

    def __init__(self, server: RawServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.reader = MessageReader()

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def read_request(self) -> Optional[ContractRequest]:
        """The next request, recorded on the server; None when the client closed first."""
        try:
            message = receive(self.reader, self._recv)
        except ConnectionError:  # closed inside the request: nothing to answer
            return None
        if message is None:
            return None
        method, target, _ = message.start.split(" ", 2)
        request = ContractRequest(method, target, message.headers, message.body, self.index)
        self.server._record(request)
        return request

    def read_head(self) -> Optional[bytes]:
        """The next request's head only (the body stays unread), or None when the client closed first."""
        head = self.reader.head()
        while head is None:
            data = self._recv()
            if not data:
                return None
            self.reader.feed(data)
            head = self.reader.head()
        return head

    def take_pending(self) -> bytes:
        """The bytes received past the last request read (and forget them)."""
        pending, self.reader.pending = self.reader.pending, b""
        return pending

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, interval: float) -> None:
        """Send ``data`` one byte every ``interval`` seconds (stops early when the server closes)."""
        for index in range(len(data)):
            if self.server.stopping.wait(interval):
                return
            self.send(data[index : index + 1])

    def read_slowly(self, size: int, interval: float, total: float = IO_TIMEOUT) -> None:
        """Read at most ``size`` bytes every ``interval`` seconds for ``total`` seconds (a slow client link)."""
        ends = time.monotonic() + total
        while time.monotonic() < ends and not self.server.stopping.wait(interval):
            try:
                if not self.sock.recv(size):
                    return
            except OSError:
                return

    def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: Sequence[Tuple[str, str]] = (),
        *,
        framing: str = "content-length",
        close: bool = False,
    ) -> None:
        """Send a response framed by ``content-length``, ``chunked`` or ``close`` (then EOF)."""
        lines = [f"HTTP/1.1 {status} Contract", *(f"{k}: {v}" for k, v in headers)]
        payload = body
        if status in (204, 304) or 100 <= status < 200:
            payload = b""
        elif framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
            step = max(1, len(body) // 3)
            pieces = [body[i : i + step] for i in range(0, len(body), step)]
            payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        elif framing == "content-length":
            lines.append(f"Content-Length: {len(body)}")
        if close or framing == "close":
            lines.append("Connection: close")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        if close or framing == "close":
            self.sock.shutdown(socket.SHUT_WR)

    def serve(self, reply: Reply) -> None:
        """Answer requests with ``reply`` until the client closes."""
        while True:
            request = self.read_request()
            if request is None:
                return
            reply(request, self)

    def reset(self) -> None:
        """Abort the connection: the client sees a reset (RST), not a clean close."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socket.socket.close(self.sock)

    def wait(self, seconds: float) -> None:
        """Sleep, but wake when the server closes."""
        self.server.stopping.wait(seconds)


class RawServer:
    """A TCP (or TLS) server on 127.0.0.1; each connection is served by ``handler`` in a thread.

    ``accepted`` counts connections, ``requests`` holds what ``Peer.read_request`` read,
    ``peer_certs`` the subjects of client certificates, ``tls_failures`` failed handshakes.
    """

    def __init__(self, handler: Handler, *, tls: Optional[ssl.SSLContext] = None) -> None:
        self._handler = handler
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self._cond = threading.Condition()
        self.accepted = 0
        self.finished = 0
        self._requests: List[ContractRequest] = []
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self.peer_certs: List[str] = []
        self.tls_failures: List[str] = []
        self.errors: List[str] = []

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str = "/") -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> List[ContractRequest]:
        with self._cond:
            return list(self._requests)

    def _record(self, request: ContractRequest) -> None:
        with self._cond:
            self._requests.append(request)

    def track(self, sock: socket.socket) -> None:
        """Shut this socket down when the server closes."""
        with self._cond:
            self._sockets.append(sock)

    def start(self) -> RawServer:
        self._spawn(self._accept_loop)
        return self

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"contract:{self.port}")
        with self._cond:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self.stopping.is_set():  # close() woke us with a connection of its own
                sock.close()
                return
            with self._cond:
                index = self.accepted
                self.accepted += 1
            self.track(sock)
            self._spawn(self._serve, sock, index)

    def _serve(self, sock: socket.socket, index: int) -> None:
        sock.settimeout(IO_TIMEOUT)
        try:
            if self._tls is not None:
                try:
                    sock = self._tls.wrap_socket(sock, server_side=True)
                except OSError as exc:
                    with self._cond:
                        self.tls_failures.append(f"{type(exc).__name__}: {exc}")
                    return
                self.track(sock)
                subject: Any = (sock.getpeercert() or {}).get("subject", ())
                names = [value for rdn in subject for key, value in rdn if key == "commonName"]
                with self._cond:
                    self.peer_certs.extend(names)
            self._handler(Peer(self, sock, index))
        except OSError:
            pass  # the client went away: nothing to record
        except Exception as exc:  # a broken handler, or a request it could not parse
            with self._cond:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            socket.socket.close(sock)
            with self._cond:
                self.finished += 1
                self._cond.notify_all()

    def wait_finished(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` connections have ended (closed by either side)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.finished < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, shut every connection down, join the threads (bounded)."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        try:  # wake accept()
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._listener.close()
        with self._cond:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw fd, also under TLS
            except OSError:
                pass
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))


def outpost_like(peer: Peer) -> None:
    """A handler answering every request like Outpost's publish: 202 with the event id sent."""

    def reply(request: ContractRequest, peer: Peer) -> None:
        try:
            event_id = json.loads(request.body).get("id") or "evt_contract"
        except (ValueError, AttributeError):
            event_id = "evt_contract"
        body = json.dumps({"id": event_id, "duplicate": False, "destination_ids": ["des_contract"]}).encode()
        peer.respond(202, body, [("Content-Type", "application/json")])

    peer.serve(reply)


