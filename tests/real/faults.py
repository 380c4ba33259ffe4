"""Faults for the real-server suite: the fault proxy in front of the real Outpost, killing and
restarting Outpost, and where the figures go.

The proxy is ``tests/faultproxy.py`` unchanged (resets before forwarding, lost acknowledgements,
resets mid-response, stalls); here it is pointed at the real server's API port.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator
from urllib.parse import urlsplit

from minipub import SDK, BackoffStrategy, RetryBudget, RetryConfig

from .conftest import SCRIPT, RealOutpost, _healthy

#: The proxy's fault kinds and their weights (a fault's kind is drawn by weight).
PROXY_FAULTS = {"reset_before": 3.0, "lost_ack": 3.0, "reset_mid_response": 2.0, "stall": 0.4}


def api_port(server: RealOutpost) -> int:
    port = urlsplit(server.base_url).port
    assert port is not None, server.base_url
    return port


def fast_sdk(server: RealOutpost, url: str, *, timeout_ms: int, max_attempts: Any = None,
             max_elapsed_ms: int = 30_000) -> SDK:
    """A client with short waits between attempts and no retry budget (the test bounds the load)."""
    retry = RetryConfig("backoff", BackoffStrategy(5, 100, 2.0, max_elapsed_ms), True, max_attempts=max_attempts)
    return SDK(server.api_key, server_url=url, timeout_ms=timeout_ms, retry_config=retry,
               retry_budget=RetryBudget(capacity=float("inf")))


def restart_outpost(server: RealOutpost) -> float:
    """SIGKILL outpost-server and start it again (``outpost.sh restart-outpost``), healthy on return.

    Redis, RabbitMQ and PostgreSQL keep running, so what Outpost had queued survives; the seconds
    the restart took are returned.
    """
    started = time.perf_counter()
    env = {**os.environ, "REAL_OUTPOST_DIR": str(server.state)}
    result = subprocess.run(["bash", str(SCRIPT), "restart-outpost"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"outpost.sh restart-outpost failed: {result.stderr[-2000:]}"
    deadline = time.monotonic() + 30
    while _healthy(server):
        assert time.monotonic() < deadline, f"Outpost not healthy after the restart: {_healthy(server)}"
        time.sleep(0.1)
    return time.perf_counter() - started


def figures_out(server: RealOutpost, tmp_path: Path, name: str, figures: Dict[str, Any]) -> None:
    """Print the figures (``pytest -s`` shows them) and keep them as JSON beside the server's state."""
    text = json.dumps(figures, indent=2, sort_keys=True)
    (tmp_path / f"real-{name}.json").write_text(text)
    keep = server.state / "figures"
    try:
        keep.mkdir(exist_ok=True)
        (keep / f"{name}.json").write_text(text)
    except OSError:  # a server found from the environment may have no state folder here
        pass
    print(f"\n[real {name}] " + json.dumps(figures, sort_keys=True))


# -- the server's own state: its secrets, its Redis ------------------------------------------


def state_value(server: RealOutpost, name: str) -> str:
    """A value from the state folder's ``ports`` file (ports and secrets chosen at the first start)."""
    path = server.state / "ports"
    assert path.is_file(), f"{path} is missing: this test needs the server started by {SCRIPT}"
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{name} is not in {path}")


def tenant_jwt(server: RealOutpost, tenant_id: str) -> str:
    """A valid tenant token, as Outpost mints them: HS256 over API_JWT_SECRET, issuer ``outpost``."""
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    now = int(time.time())
    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = part(json.dumps({"iss": "outpost", "sub": tenant_id, "iat": now, "exp": now + 3600}).encode())
    secret = state_value(server, "JWT_SECRET").encode()
    signature = part(hmac.new(secret, f"{head}.{claims}".encode(), hashlib.sha256).digest())
    return f"{head}.{claims}.{signature}"


def redis(server: RealOutpost, *args: str) -> bytes:
    """One command to the server's Redis (RESP over a socket); the first line of the reply."""
    command = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", int(state_value(server, "REDIS_PORT"))), timeout=5) as sock:
        sock.sendall(command)
        reply = sock.makefile("rb").readline()
    assert not reply.startswith(b"-"), reply
    return reply.strip()


def claim_as_processing(server: RealOutpost, event_id: str, seconds: float) -> None:
    """What a first request for ``event_id`` leaves in Redis while Outpost is still processing it."""
    redis(server, "SET", f"idempotency:publishmq:{event_id}", "processing", "PX", str(int(seconds * 1000)))


@contextlib.contextmanager
def redis_refusing_writes(server: RealOutpost) -> Iterator[None]:
    """Redis out of memory (``maxmemory`` 1 byte, no eviction): Outpost's writes fail, it answers 500."""
    redis(server, "CONFIG", "SET", "maxmemory", "1")
    try:
        yield
    finally:
        redis(server, "CONFIG", "SET", "maxmemory", "0")
