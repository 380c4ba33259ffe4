"""The benchmark script runs end to end (tiny N, one round, its own responders): smoke tests, no timing.

Also the benchmark's own servers: the latency responder holds every answer for its delay on many
connections at once, and the webhook receiver counts deliveries by ``x-outpost-event-id``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from servers import free_port, start_latency_responder, stop, wait_until_listening  # noqa: E402


def test_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    result = subprocess.run(
        [sys.executable, str(RUN), "--n", "20", "--rounds", "1", "--startup-runs", "1", "--server", "responder",
         "--no-outpost-sdk", "--bulk-lines", "30", "--latency-levels", "2,8", "--json", str(out)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["server"].startswith("python responder")
    cases = report["cases"]
    for name in ("raw-socket limit", "http.client floor", "minipub lean"):
        row = cases[next(k for k in cases if k.startswith(name))]
        assert row["seq"]["events_per_s"] > 0 and row["4 threads"]["cpu_us"] > 0
    assert cases["raw-socket limit"]["seq"]["cpu_x_limit"] == 1.0
    assert cases["Publisher, 4 workers"]["async"]["cpu_x_seq"] > 0
    for sync in ("FULL", "NORMAL", "OFF"):  # each outbox run's group commits: how many, their cost, their load
        commits = cases[f"Publisher + outbox synchronous={sync}"]["async"]["group_commits"]
        assert commits["commits"] >= 1 and commits["ms_per_commit"] > 0
        assert commits["inserts_per_commit"] * commits["commits"] == pytest.approx(20, abs=0.5)  # 20 submits
    assert report["import_ms"]["import minipub"] > 0 and report["first_event_ms"]["minipub"] > 0
    assert report["peak_rss_mib"]["http.client floor"] > 0
    assert set(report["bulk"]["rows"]) == {"minipub bulk", "minipub bulk --outbox (FULL)",
                                           "minipub bulk --outbox --outbox-sync NORMAL"}
    latency = report["latency"]
    assert latency["latency_ms"] == 2.0 and latency["levels"] == [2, 8]
    for k in (2, 8):
        row = latency["rows"][f"Publisher, {k} workers"]
        assert row["in_flight"] == k and 0 < row["bound"] <= k / 0.002 and row["eps_x_bound"] > 0
        # 2 ms per answer: no more than k answers per 2 ms can come back
        for raw in (f"raw-socket, {k} connections (threads)", f"raw-socket, {k} connections (1 thread, selectors)"):
            assert latency["rows"][raw]["events_per_s"] <= k / 0.002
    status = {t["target"]: t["status"] for t in report["targets"]}
    assert len(status) == 13 + 2  # one latency target per level
    measured = [t for t, s in status.items() if s in ("met", "MISSED")]
    assert "python -c 'import minipub' <= 1.1x python -c pass" in measured
    assert any(t.startswith("Publisher, 8 workers, 2 ms responder") for t in measured)
    assert [s for t, s in status.items() if t.startswith("real Outpost")] == ["not measured"] * 3
    assert "raw-socket limit" in result.stdout and "latency responder" in result.stdout and "JSON:" in result.stdout
    assert "not measured (run --target real)" in result.stdout


def test_real_target_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env["REAL_OUTPOST_DIR"] = str(tmp_path / "nothing-here")
    result = subprocess.run([sys.executable, str(RUN), "--real", "--n", "5", "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "no real Outpost configured" in result.stderr and "tests/real/outpost.sh start" in result.stderr
    assert not (tmp_path / "r.json").exists()


def _request(path: str = "/api/v1/publish", headers: str = "") -> bytes:
    body = b'{"tenant_id":"acme","topic":"t","data":{}}'
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body


def _read_responses(sock: socket.socket, count: int = 1) -> List[bytes]:
    """The heads of the next ``count`` responses (Content-Length framed) on ``sock``."""
    heads, buf = [], b""
    while len(heads) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(buf) < length:
            buf += sock.recv(65536)
        heads.append(head)
        buf = buf[length:]
    return heads


def test_latency_responder_holds_every_answer_for_its_delay_on_many_connections() -> None:
    delay = 0.05  # large against the scheduler's jitter: the lower bound is exact, the upper one generous
    with start_latency_responder(delay * 1000) as (url, _, _):
        port = int(url.split(":")[2].split("/")[0])
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        try:
            sent = time.monotonic()
            for sock in socks:
                sock.sendall(_request())
            heads = [_read_responses(sock)[0] for sock in socks]
            elapsed = time.monotonic() - sent
            assert all(h.startswith(b"HTTP/1.1 202") for h in heads)
            assert delay <= elapsed < 5.0  # all 40 in flight at once: one delay, not 40 of them
            # two pipelined requests on one connection: two answers, each after the delay
            sent = time.monotonic()
            socks[0].sendall(_request() + _request())
            assert len(_read_responses(socks[0], 2)) == 2
            assert time.monotonic() - sent >= delay
        finally:
            for sock in socks:
                sock.close()


@pytest.fixture
def receiver() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "receiver.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, proc)
        yield port
    finally:
        stop(proc)


def test_receiver_counts_deliveries_by_event_id(receiver: int) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def stats() -> dict:  # type: ignore[type-arg]
        with opener.open(f"http://127.0.0.1:{receiver}/stats", timeout=10) as response:
            return dict(json.loads(response.read()))

    with socket.create_connection(("127.0.0.1", receiver), timeout=10) as sock:
        ids: List[str] = ["evt_1", "evt_2", "evt_1", ""]  # a repeat, and one without the header
        for event_id in ids:
            header = f"x-outpost-event-id: {event_id}\r\n" if event_id else ""
            sock.sendall(_request("/hook", header))  # one keep-alive connection, as Outpost delivers
            assert _read_responses(sock)[0].startswith(b"HTTP/1.1 200")
    counts = stats()
    assert (counts["deliveries"], counts["unique"], counts["duplicates"]) == (3, 2, 1)
    assert counts["first"] <= counts["last"]
    opener.open(urllib.request.Request(f"http://127.0.0.1:{receiver}/reset", data=b"", method="POST"), timeout=10)
    assert stats() == {"deliveries": 0, "unique": 0, "duplicates": 0, "first": None, "last": None}
