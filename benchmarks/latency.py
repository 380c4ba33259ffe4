"""The latency responder benchmark: the ``Publisher`` against a server that takes 2 ms per answer.

For each number of connections in flight ``k`` (the Publisher's ``workers``; the raw-socket client's
threads, one socket each; or one thread multiplexing ``k`` sockets with ``selectors``), ``n`` events
are published and timed; ``minipub`` sequential ``publish`` gives the client's CPU per event.
The target (issue 14): the Publisher's events/s >= 0.8x the bound,
where the bound is ``min(k / latency, 1e6 / CPU µs per sequential publish)``: the server's capacity
for ``k`` requests in flight, or one core's worth of the sequential publish's CPU (the GIL's limit),
whichever is lower. Rounds interleave the cases; ratios are taken within each round.
"""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from cases import (
    KEY,
    TENANT,
    TOPIC,
    event_data,
    minipub_case,
    publisher_available,
    publisher_timed,
    raw_socket_limit,
    timed,
)
from servers import process_cpu_seconds, start_latency_responder

SEQUENTIAL = "minipub publish, sequential"


def raw_label(k: int) -> str:
    return f"raw-socket, {k} connections (threads)"


def mux_label(k: int) -> str:
    return f"raw-socket, {k} connections (1 thread, selectors)"


def raw_multiplexed(url: str, n: int, k: int) -> Tuple[float, float]:
    """(events/s, CPU us per event): one thread keeps ``k`` requests in flight on ``k`` sockets with
    ``selectors`` (the design issue 14 names as an option), the raw-socket client's request and parse."""
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3] + "/publish"
    prefix = (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {KEY}\r\n"
              "Content-Type: application/json\r\nContent-Length: ").encode()
    dumps, loads = json.dumps, json.loads

    def request(i: int) -> bytes:
        body = dumps({"tenant_id": TENANT, "topic": TOPIC, "data": event_data(i)}).encode()
        return prefix + str(len(body)).encode() + b"\r\n\r\n" + body

    selector = selectors.DefaultSelector()
    socks = [socket.create_connection((host, int(port)), timeout=30) for _ in range(k)]
    buffers: Dict[socket.socket, bytes] = {}
    try:
        for sock in socks:  # warm up: one request each, blocking
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request(0))
            buf = b""
            while b"}" not in buf:
                buf += sock.recv(65536)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            buffers[sock] = b""
        cpu, wall = time.process_time(), time.perf_counter()
        sent = done = 0
        for sock in socks[:n]:
            sock.sendall(request(sent))
            sent += 1
        deadline = time.monotonic() + 600
        while done < n and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                sock = key.fileobj  # type: ignore[assignment]
                buf = buffers[sock] + sock.recv(65536)
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buf[:end]
                    at = head.lower().index(b"content-length:") + 15
                    stop_at = head.find(b"\r", at)
                    length = int(head[at:stop_at if stop_at > 0 else len(head)])
                    if len(buf) < end + 4 + length:
                        break
                    if head[9:12] != b"202":
                        raise RuntimeError(head[:40])
                    loads(buf[end + 4:end + 4 + length])
                    buf = buf[end + 4 + length:]
                    done += 1
                    if sent < n:
                        sock.sendall(request(sent))
                        sent += 1
                buffers[sock] = buf
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if done < n:
            raise RuntimeError(f"only {done} of {n} answers within 600 s")
        return n / wall, cpu / n * 1e6
    finally:
        selector.close()
        for sock in socks:
            sock.close()


def publisher_label(k: int) -> str:
    return f"Publisher, {k} workers"


def run_latency(n: int, rounds: int, levels: Sequence[int], latency_ms: float = 2.0) -> Dict[str, Any]:
    """Rows (medians over rounds) and the per-level ratio to the bound; see the module's docstring."""
    latency = latency_ms / 1000
    seq_n = max(20, min(n, 1000))  # sequential at 2 ms per event: keep its share of the run small
    cases: Dict[str, Callable[[str], Tuple[float, float]]] = {
        SEQUENTIAL: lambda url: timed(minipub_case(), url, seq_n, 1)}
    for k in levels:
        cases[raw_label(k)] = lambda url, k=k: timed(raw_socket_limit, url, n, k)  # type: ignore[misc]
        cases[mux_label(k)] = lambda url, k=k: raw_multiplexed(url, n, k)  # type: ignore[misc]
        if publisher_available():
            cases[publisher_label(k)] = lambda url, k=k: publisher_timed(url, n, workers=k, submitters=1)  # type: ignore[misc]
            for suffix, engine in ((", engine=threads", "threads"), (", asyncio loop", "asyncio")):
                cases[publisher_label(k) + suffix] = lambda url, k=k, engine=engine: publisher_timed(  # type: ignore[misc]
                    url, n, workers=k, submitters=1, engine=engine)
    samples: Dict[str, List[Tuple[float, float, float]]] = {}
    with start_latency_responder(latency_ms) as (url, served_by, pid):
        print(f"latency responder: {served_by} at {url}; N={n}, rounds={rounds}, levels={list(levels)}",
              file=sys.stderr)
        names = list(cases)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                before = process_cpu_seconds(pid)
                eps, cpu_us = cases[name](url)
                count = seq_n if name == SEQUENTIAL else n
                server_us = (process_cpu_seconds(pid) - before) / count * 1e6
                samples.setdefault(name, []).append((eps, cpu_us, server_us))
            print(f"  latency round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    rows: Dict[str, Dict[str, Any]] = {}
    for name, runs in samples.items():
        rows[name] = {"events_per_s": statistics.median(e for e, _, _ in runs),
                      "cpu_us": statistics.median(c for _, c, _ in runs),
                      "server_cpu_us": statistics.median(s for _, _, s in runs)}
    seq_runs = samples[SEQUENTIAL]
    rows[SEQUENTIAL]["in_flight"] = 1
    for k in levels:
        for label in (raw_label(k), mux_label(k), publisher_label(k), publisher_label(k) + ", engine=threads",
                      publisher_label(k) + ", asyncio loop"):
            if label not in samples:
                continue
            bounds = [min(k / latency, 1e6 / seq_cpu) for _, seq_cpu, _ in seq_runs]
            rows[label].update(
                in_flight=k, bound=statistics.median(bounds), server_bound=k / latency,
                eps_x_bound=statistics.median(e / b for (e, _, _), b in zip(samples[label], bounds)))
    return {"server": served_by, "latency_ms": latency_ms, "n": n, "rounds": rounds, "levels": list(levels),
            "rows": rows}


def latency_table(report: Dict[str, Any]) -> str:
    def num(value: Any, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    header = (f"{'case':<48} {'in flight':>9} {'ev/s':>8} {'CPU us/ev':>9} {'server us/ev':>12}"
              f" {'bound ev/s':>10} {'x bound':>7}")
    lines = [f"latency responder ({report['server']}):", header, "-" * len(header)]
    for name, row in report["rows"].items():
        lines.append(f"{name:<48} {num(row.get('in_flight')):>9} {num(row['events_per_s']):>8}"
                     f" {num(row['cpu_us'], 1):>9} {num(row['server_cpu_us'], 1):>12}"
                     f" {num(row.get('bound')):>10} {num(row.get('eps_x_bound'), 2):>7}")
    lines.append("(bound: min(in flight / latency, 1e6 / CPU us of a sequential publish); Publisher rows:"
                 " submit from 1 thread, then flush)")
    return "\n".join(lines)
