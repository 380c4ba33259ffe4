"""The real-server suite: fixtures for a real Outpost started by ``bash tests/real/outpost.sh start``.

The server is found from ``OUTPOST_API_BASE_URL``/``OUTPOST_API_KEY`` when both are set (as the script's
``export`` lines set them), else from the script's state folder (``REAL_OUTPOST_DIR`` or ``.real-outpost``).
Without one the tests skip, saying how to start it; with ``MINIPUB_REQUIRE_REAL_OUTPOST=1`` (CI) they fail.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "real" / "outpost.sh"
HOW_TO_START = 'start one with: eval "$(bash tests/real/outpost.sh start)" (stop: bash tests/real/outpost.sh stop)'
# Read at import, before the core suite's autouse fixture clears these names for each test.
_ENV = {name: os.environ.get(name, "") for name in (
    "OUTPOST_API_BASE_URL", "OUTPOST_API_KEY", "OUTPOST_PUBLISH_RABBITMQ_URL", "OUTPOST_PUBLISH_RABBITMQ_QUEUE")}


def state_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("REAL_OUTPOST_DIR") or ROOT / ".real-outpost")


@dataclass(frozen=True)
class RealOutpost:
    """Where the real server is, and small admin calls to set up tenants and destinations."""

    base_url: str  # e.g. http://127.0.0.1:PORT/api/v1
    api_key: str
    amqp_url: str
    publish_queue: str
    state: pathlib.Path

    def __repr__(self) -> str:  # the key stays out of pytest's output
        return f"RealOutpost(base_url={self.base_url!r})"

    @property
    def root_url(self) -> str:
        return self.base_url.rsplit("/api/", 1)[0]

    def request(self, method: str, path: str, body: Any = None, *, headers: Optional[Dict[str, str]] = None,
                raw: Optional[bytes] = None, auth: bool = True, timeout: float = 15.0
                ) -> Tuple[int, Dict[str, str], bytes]:
        """One request to ``base_url + path`` (or the root when ``path`` starts with ``//``)."""
        url = self.root_url + path[1:] if path.startswith("//") else self.base_url + path
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json"} if data is not None else {}
        if auth:
            sent["Authorization"] = "Bearer " + self.api_key
        sent.update(headers or {})
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def create_tenant(self, tenant_id: Optional[str] = None) -> str:
        tenant_id = tenant_id or "t-" + uuid.uuid4().hex[:12]
        status, _, body = self.request("PUT", f"/tenants/{tenant_id}")
        assert status in (200, 201), (status, body)
        return tenant_id

    def create_webhook(self, tenant_id: str, url: str, topics: Optional[List[str]] = None) -> str:
        status, _, body = self.request("POST", f"/tenants/{tenant_id}/destinations", {
            "type": "webhook", "topics": topics or ["*"], "config": {"url": url}})
        assert status == 201, (status, body)
        return str(json.loads(body)["id"])


def _find() -> Optional[RealOutpost]:
    env = dict(_ENV)
    if not (env["OUTPOST_API_BASE_URL"] and env["OUTPOST_API_KEY"]):
        path = state_dir() / "env"
        if not path.is_file():
            return None
        for line in path.read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name.strip()] = value.strip()
    return RealOutpost(env["OUTPOST_API_BASE_URL"].rstrip("/"), env["OUTPOST_API_KEY"],
                       env.get("OUTPOST_PUBLISH_RABBITMQ_URL", ""), env.get("OUTPOST_PUBLISH_RABBITMQ_QUEUE", ""),
                       state_dir())


def _healthy(server: RealOutpost) -> str:
    """'' when /healthz says healthy, else why not."""
    try:
        status, _, body = server.request("GET", "//healthz", auth=False, timeout=5)
    except OSError as error:
        return f"{server.root_url}/healthz: {error}"
    return "" if status == 200 and b'"healthy"' in body else f"{server.root_url}/healthz answered {status}"


@pytest.fixture(scope="session")
def real_outpost() -> RealOutpost:
    required = os.environ.get("MINIPUB_REQUIRE_REAL_OUTPOST") == "1"
    server = _find()
    problem = "no real Outpost configured" if server is None else _healthy(server)
    if problem:
        if required:
            pytest.fail(f"MINIPUB_REQUIRE_REAL_OUTPOST=1 but {problem}; {HOW_TO_START}", pytrace=False)
        pytest.skip(f"{problem}; {HOW_TO_START}")
    assert server is not None
    return server


class Deliveries:
    """What a webhook receiver got: deliveries counted by ``x-outpost-event-id``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: Dict[str, int] = {}
        self.bodies: Dict[str, bytes] = {}
        self.headers: Dict[str, Dict[str, str]] = {}
        self.arrived = threading.Condition(self.lock)

    def record(self, event_id: str, headers: Dict[str, str], body: bytes) -> None:
        with self.lock:
            self.by_id[event_id] = self.by_id.get(event_id, 0) + 1
            self.bodies[event_id] = body
            self.headers[event_id] = headers
            self.arrived.notify_all()

    def wait_for(self, ids: set[str], timeout: float) -> set[str]:
        """Wait until every id arrived (or the time is up); the ids still missing."""
        import time

        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                missing = ids - self.by_id.keys()
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self.arrived.wait(min(left, 0.5))

    def duplicates(self) -> Dict[str, int]:
        with self.lock:
            return {k: v for k, v in self.by_id.items() if v > 1}

    def count(self) -> int:
        with self.lock:
            return sum(self.by_id.values())


def _peer_closed(sock: socket.socket) -> bool:
    """True when the other end closed or reset the connection (nothing left to answer)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 that answers 200 and counts deliveries.

    ``hold()`` makes it keep arriving deliveries unanswered until ``release()``; a held delivery whose
    sender hung up meanwhile (an Outpost killed while waiting for the answer) is not counted
    (``abandoned`` counts them): its sender never saw a 200, and Outpost delivers it again.
    """

    def __init__(self) -> None:
        self.deliveries = Deliveries()
        self.released = threading.Event()
        self.released.set()
        self.abandoned = 0
        deliveries = self.deliveries
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server names it
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                event_id = headers.get("x-outpost-event-id", "")
                if not receiver.released.is_set():
                    receiver.released.wait(30)
                    if _peer_closed(self.connection):
                        with deliveries.lock:
                            receiver.abandoned += 1
                        self.close_connection = True
                        return
                if event_id:
                    deliveries.record(event_id, headers, body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Receiving:
    """A fresh tenant with one webhook destination (topics ``*``) pointing at a receiver."""

    tenant_id: str
    destination_id: str
    receiver: WebhookReceiver

    @property
    def deliveries(self) -> Deliveries:
        return self.receiver.deliveries


@pytest.fixture
def receiving(real_outpost: RealOutpost) -> Iterator[Receiving]:
    receiver = WebhookReceiver()
    try:
        tenant = real_outpost.create_tenant()
        destination = real_outpost.create_webhook(tenant, receiver.url)
        yield Receiving(tenant, destination, receiver)
    finally:
        receiver.close()
