"""A TCP proxy in front of RabbitMQ that reads AMQP frames and cuts connections around publishes.

For each ``basic.publish`` the client sends, with probability ``before`` the connection is reset
before the publish reaches the broker (nothing queued), with probability ``after`` the publish goes
through and the broker's confirm (``basic.ack``) is swallowed and the connection reset instead
(queued, but the client never learns it: its retry queues the event twice). ``stall`` holds every
byte from the broker (a broker that stopped answering). Threads, 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import struct
import threading
from typing import List, Optional, Tuple

PROTOCOL_HEADER = 8
BASIC_PUBLISH = (60, 40)
BASIC_ACK = (60, 80)


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # wakes a thread blocked in recv on it (close alone would not)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def exact(self, n: int) -> Optional[bytes]:
        while len(self.buffer) < n:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> Optional[Tuple[bytes, Optional[Tuple[int, int]]]]:
        """One whole frame, and (class, method) when it is a method frame."""
        head = self.exact(7)
        if head is None:
            return None
        kind, _channel, size = struct.unpack("!BHI", head)
        rest = self.exact(size + 1)
        if rest is None:
            return None
        method = struct.unpack("!HH", rest[:4]) if kind == 1 and size >= 4 else None
        return head + rest, method


class _Connection:
    def __init__(self, proxy: AmqpFaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.armed = 0  # confirms to swallow (then reset)
        self.dead = threading.Event()

    def kill(self) -> None:
        if not self.dead.is_set():
            self.dead.set()
            _reset(self.client)
            _reset(self.upstream)

    def client_to_broker(self) -> None:
        reader = _Reader(self.client)
        header = reader.exact(PROTOCOL_HEADER)
        if header is None:
            return self.kill()
        try:
            self.upstream.sendall(header)
            while not self.dead.is_set():
                got = reader.frame()
                if got is None:
                    return self.kill()
                frame, method = got
                if method == BASIC_PUBLISH:
                    fate = self.proxy.decide()
                    if fate == "before":
                        return self.kill()
                    if fate == "after":
                        self.armed += 1
                self.upstream.sendall(frame)
        except OSError:
            self.kill()

    def broker_to_client(self) -> None:
        reader = _Reader(self.upstream)
        try:
            while not self.dead.is_set():
                got = reader.frame()
                if got is None:
                    return self.kill()
                frame, method = got
                while self.proxy.stall and not self.dead.is_set():
                    self.dead.wait(0.05)
                if method == BASIC_ACK and self.armed:
                    with self.proxy.lock:
                        self.proxy.faults_after += 1
                    return self.kill()
                self.client.sendall(frame)
        except OSError:
            self.kill()


class AmqpFaultProxy:
    """``with AmqpFaultProxy(broker_port, before=0.15, after=0.15) as proxy: ... proxy.url(user, pw)``."""

    def __init__(self, upstream_port: int, *, before: float = 0.0, after: float = 0.0, seed: int = 0,
                 tls: Optional[ssl.SSLContext] = None) -> None:
        self.upstream_port = upstream_port
        self.tls = tls  # terminate TLS (amqps) in front of the plain broker; no faults then
        self.peer_certs: List[str] = []
        self.tls_errors: List[str] = []
        self.before = before
        self.after = after
        self.stall = False
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.publishes = 0
        self.faults_before = 0
        self.faults_after = 0
        self.accepted = 0
        self.connections: List[_Connection] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    @property
    def faults(self) -> int:
        return self.faults_before + self.faults_after

    def decide(self) -> str:
        with self.lock:
            self.publishes += 1
            r = self.random.random()
            if r < self.before:
                self.faults_before += 1
                return "before"
            return "after" if r < self.before + self.after else "pass"

    def kill_all(self) -> None:
        """Reset every open connection (a network blip)."""
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            connection.kill()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            if self.tls is not None:
                threading.Thread(target=self._tls_pipe, args=(client, upstream), daemon=True).start()
                continue
            connection = _Connection(self, client, upstream)
            with self.lock:
                self.accepted += 1
                self.connections = [c for c in self.connections if not c.dead.is_set()] + [connection]
            for target in (connection.client_to_broker, connection.broker_to_client):
                threading.Thread(target=target, daemon=True).start()

    def _tls_pipe(self, raw: socket.socket, upstream: socket.socket) -> None:
        """One thread per TLS connection (an SSL socket must not be read and written at once)."""
        assert self.tls is not None
        try:
            raw.settimeout(10)
            client = self.tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as error:
            self.tls_errors.append(type(error).__name__)
            _reset(raw)
            _reset(upstream)
            return
        with self.lock:
            self.accepted += 1
        cert = client.getpeercert()
        if cert:
            subject = dict(item for part in cert.get("subject", ()) for item in part)
            self.peer_certs.append(str(subject.get("commonName", "")))
        try:
            while not self.closed.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                if client in readable or client.pending():
                    data = client.recv(65536)
                    if not data:
                        break
                    upstream.sendall(data)
                if upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            _reset(client)
            _reset(upstream)

    def __enter__(self) -> AmqpFaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        self.thread.join(5)
        self.kill_all()
