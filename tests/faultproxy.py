"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, scripted per connection (for the fault suite).

Between the client and ``OutpostServer``: one thread per client connection reads each request
(with ``minipub.testing.wire``, the reader of every hand-written server), asks the connection's script what to do, and either forwards
it over its own upstream connection or breaks it:

- ``pass``: forward the request and the response.
- ``reset_before``: reset the client connection before forwarding (the server never sees it).
- ``lost_ack``: forward, let the server process it, then reset before the response (a lost ack).
- ``reset_mid_response``: forward, send the head and half the body, then reset.
- ``stall``: hold the request without answering for ``stall_seconds`` (past the client's read
  timeout), then close.

``down()`` makes it act like a server that is down (every connection reset as soon as it is
accepted or used) until ``up()``. It records every request's event id, every upstream status,
every acceptance (``202`` with ``duplicate: false``) per id, and the faults it injected.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from typing import Callable, Dict, List, Optional

from minipub.testing.wire import Message, MessageReader, receive

ACTIONS = ("pass", "reset_before", "lost_ack", "reset_mid_response", "stall")
Script = Callable[[int], Callable[[int], str]]  # connection number -> (request number -> action)


def always_pass(connection: int) -> Callable[[int], str]:
    return lambda request: "pass"


def random_script(seed: int, fault_rate: float, weights: Dict[str, float]) -> Script:
    """Each connection draws its own reproducible sequence: a fault with ``fault_rate``, its kind by ``weights``."""
    kinds = list(weights)
    cumulative = [weights[k] for k in kinds]

    def for_connection(connection: int) -> Callable[[int], str]:
        rng = random.Random(seed * 1_000_003 + connection)

        def action(request: int) -> str:
            if rng.random() >= fault_rate:
                return "pass"
            return rng.choices(kinds, cumulative)[0]

        return action

    return for_connection


def _receive(sock: socket.socket, reader: MessageReader) -> Optional[Message]:
    """One whole message (read with minipub.testing's one reader); None at a clean end of stream."""
    return receive(reader, lambda: sock.recv(65536))


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), not FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """See the module docstring. Use as a context manager; ``url(server.url)`` is the URL to give clients."""

    def __init__(self, upstream_port: int, script: Script = always_pass, *, stall_seconds: float = 1.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.script = script
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._down = False
        self._listener: Optional[socket.socket] = None
        self._accepter: Optional[threading.Thread] = None
        self._threads: List[threading.Thread] = []
        self._sockets: List[socket.socket] = []
        self.connections = 0
        self.requests = 0
        self.down_attempts = 0  # connections or requests met while down
        self.faults: Counter[str] = Counter()  # injected by the proxy, by kind
        self.statuses: Counter[int] = Counter()  # upstream response statuses
        self.attempts_by_id: Counter[str] = Counter()
        self.accepted_by_id: Counter[str] = Counter()  # 202 with duplicate false
        self.duplicate_acks = 0  # 202 with duplicate true

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._accepter.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._accepter is not None:
            self._accepter.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, server_url: str) -> str:
        """The server's URL with the proxy's port."""
        scheme, rest = server_url.split("://", 1)
        path = rest[rest.index("/"):] if "/" in rest else ""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def down(self) -> None:
        with self._lock:
            self._down = True

    def up(self) -> None:
        with self._lock:
            self._down = False

    # -- figures ---------------------------------------------------------------------------

    def faulted_attempts(self) -> int:
        """Requests that did not get a clean 202: proxy faults plus upstream 409/429/5XX."""
        with self._lock:
            server_faults = sum(n for status, n in self.statuses.items() if status != 202)
            return sum(self.faults.values()) + server_faults + self.down_attempts

    def fault_mix(self) -> Dict[str, int]:
        with self._lock:
            mix = {f"proxy:{kind}": n for kind, n in sorted(self.faults.items())}
            mix.update({f"server:{status}": n for status, n in sorted(self.statuses.items()) if status != 202})
            if self.down_attempts:
                mix["down"] = self.down_attempts
            return mix

    # -- serving ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                if self._down:
                    self.down_attempts += 1
                    _reset(client)
                    continue
                self._sockets.append(client)
                thread = threading.Thread(target=self._serve, args=(client, number), daemon=True,
                                          name=f"faultproxy-{number}")
                self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket, number: int) -> None:
        plan = self.script(number)
        upstream: Optional[socket.socket] = None
        client.settimeout(30)
        requests, responses = MessageReader(), MessageReader(responses=True)
        handled = 0
        try:
            while not self._stop.is_set():
                request = _receive(client, requests)
                if request is None:
                    return
                handled += 1
                action = self._action(plan(handled), _event_id(request.body))
                if action in ("down", "reset_before"):
                    _reset(client)
                    return
                if action == "stall":
                    self._stop.wait(self.stall_seconds)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=30)
                    with self._lock:
                        self._sockets.append(upstream)
                upstream.sendall(request.wire())
                response = _receive(upstream, responses)
                if response is None:
                    _reset(client)
                    return
                self._record_response(_event_id(request.body), response.status, response.body)
                if not self._answer(client, response, action):
                    return
        except (OSError, ValueError):
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            with self._lock:
                self._sockets = [s for s in self._sockets if s is not client and s is not upstream]

    def _action(self, planned: str, event_id: str) -> str:
        """Count the request; what to do with it ("down" while the proxy is down)."""
        with self._lock:
            self.requests += 1
            self.attempts_by_id[event_id] += 1
            if self._down:
                self.down_attempts += 1
                return "down"
            if planned != "pass":
                self.faults[planned] += 1
            return planned

    def _answer(self, client: socket.socket, response: Message, action: str) -> bool:
        """Pass the response on, or break it; whether the connection goes on."""
        if action == "lost_ack":
            _reset(client)
            return False
        if action == "reset_mid_response":
            client.sendall(response.head + response.body[: len(response.body) // 2])
            time.sleep(0.02)  # let the client read the head before the reset
            _reset(client)
            return False
        client.sendall(response.wire())
        return b"connection: close" not in response.head.lower()

    def _record_response(self, event_id: str, status: int, body: bytes) -> None:
        duplicate = None
        if status == 202:
            try:
                duplicate = json.loads(body).get("duplicate")
            except ValueError:
                duplicate = None
        with self._lock:
            self.statuses[status] += 1
            if duplicate is False:
                self.accepted_by_id[event_id] += 1
            elif duplicate is True:
                self.duplicate_acks += 1


def _event_id(body: bytes) -> str:
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return "?"
    return value if isinstance(value, str) else "?"
