"""Servers for transport tests: exact bytes and misbehaviour on demand, a recording proxy, certificates.

:class:`RawServer` serves each accepted connection with a handler (threads, 127.0.0.1, every wait
bounded); :class:`ContractProxy` forwards absolute-URI requests and ``CONNECT`` tunnels and records
what it saw; :func:`make_certificates` makes a self-signed CA, server and client certificate with
the ``openssl`` command line.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

__all__ = ["RawServer", "Peer", "ContractRequest", "ContractProxy", "Certificates", "make_certificates",
           "outpost_like", "IO_TIMEOUT", "Handler", "Reply"]

#: Every socket wait in these servers (seconds).
IO_TIMEOUT = 10.0
#: The only hosts the proxy will connect to: test traffic stays on this machine.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Handler = Callable[["Peer"], None]
Reply = Callable[["ContractRequest", "Peer"], None]


# -- raw servers ------------------------------------------------------------------------------


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
        self.buffer = bytearray()

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        self.buffer += data
        return bool(data)

    def _read_until(self, marker: bytes, limit: int = 65536) -> Optional[bytes]:
        while True:
            found = self.buffer.find(marker)
            if found >= 0:
                data = bytes(self.buffer[:found])
                del self.buffer[: found + len(marker)]
                return data
            if len(self.buffer) > limit or not self._fill():
                return None

    def _read_exact(self, size: int) -> Optional[bytes]:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _read_chunked(self) -> Optional[bytes]:
        parts: List[bytes] = []
        while True:
            line = self._read_until(b"\r\n")
            if line is None:
                return None
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._read_until(b"\r\n") not in (b"", None):
                    pass
                return b"".join(parts)
            chunk = self._read_exact(size + 2)
            if chunk is None:
                return None
            parts.append(chunk[:-2])

    def read_request(self) -> Optional[ContractRequest]:
        """The next request, recorded on the server; None when the client closed first."""
        head = self._read_until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = tuple((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
        lowered = {k.lower(): v for k, v in headers}
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        else:
            body = self._read_exact(int(lowered.get("content-length", "0")))
        if body is None:
            return None
        request = ContractRequest(method, target, headers, body, self.index)
        self.server._record(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> Optional[bytes]:
        """The next request's head only (the body stays unread), or None when the client closed first."""
        return self._read_until(b"\r\n\r\n")

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


def _pipe(peer: Peer, upstream: socket.socket) -> None:
    """Relay bytes both ways until either side closes (bounded)."""
    if peer.buffer:
        upstream.sendall(bytes(peer.buffer))
        peer.buffer.clear()
    pair = {peer.sock: upstream, upstream: peer.sock}
    deadline = time.monotonic() + IO_TIMEOUT
    while not peer.server.stopping.is_set() and time.monotonic() < deadline:
        readable, _, _ = select.select(list(pair), [], [], 0.5)  # close() wakes it
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            pair[sock].sendall(data)


class ContractProxy(RawServer):
    """An HTTP proxy: absolute-URI forwarding and ``CONNECT`` tunnels, to 127.0.0.1 only.

    ``requests`` are what it was asked (``CONNECT host:port`` or ``POST http://...``) with their
    headers, ``Proxy-Authorization`` included. ``refuse_connect`` answers CONNECT with that status.
    """

    def __init__(self, *, refuse_connect: int = 0) -> None:
        super().__init__(self._handle)
        self.refuse_connect = refuse_connect

    def _open(self, peer: Peer, host: str, port: int) -> Optional[socket.socket]:
        if host.strip("[]") not in _LOCAL_HOSTS:
            peer.respond(403, b"the contract proxy only reaches 127.0.0.1", close=True)
            return None
        try:
            upstream = socket.create_connection((host.strip("[]"), port), timeout=IO_TIMEOUT)
        except OSError:
            peer.respond(502, b"upstream refused", close=True)
            return None
        self.track(upstream)
        return upstream

    def _handle(self, peer: Peer) -> None:
        request = peer.read_request()
        if request is None:
            return
        if request.method == "CONNECT":
            if self.refuse_connect:
                peer.respond(self.refuse_connect, b"no tunnel for you", close=True)
                return
            host, _, port = request.target.rpartition(":")
            upstream = self._open(peer, host, int(port))
            if upstream is None:
                return
            peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            parts = urlsplit(request.target)
            if parts.scheme != "http" or not parts.hostname:
                peer.respond(400, b"absolute http:// URI expected", close=True)
                return
            upstream = self._open(peer, parts.hostname, parts.port or 80)
            if upstream is None:
                return
            hop = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "transfer-encoding",
                   "content-length"}
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            lines = [f"{request.method} {target} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in hop]
            lines += [f"Content-Length: {len(request.body)}", "Connection: close"]
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body)
        try:
            _pipe(peer, upstream)
        finally:
            upstream.close()


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A self-signed server certificate (127.0.0.1, localhost) and a self-signed client one."""

    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    client_name: str = "minipub-contract-client"

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_cert)
        return context

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        """A verifying client context that trusts the server certificate."""
        context = ssl.create_default_context(cafile=self.server_cert)
        if with_client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def make_certificates(directory: Path) -> Certificates:
    """Make the certificates with the ``openssl`` command line (RSA 2048, valid 2 days)."""
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    files: Dict[str, str] = {}
    for role, name, san in (
        ("server", "localhost", "IP:127.0.0.1,DNS:localhost"),
        ("client", "minipub-contract-client", "DNS:minipub-contract-client"),
    ):
        cert, key = str(directory / f"{role}.pem"), str(directory / f"{role}.key")
        command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                   "-addext", f"subjectAltName={san}", "-days", "2", "-keyout", key, "-out", cert]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"the TLS tests make certificates with the openssl command line: {exc}") from exc
        files[f"{role}_cert"], files[f"{role}_key"] = cert, key
    return Certificates(**files)
