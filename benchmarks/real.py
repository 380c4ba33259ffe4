"""The real-server benchmark: every client publishes the same events to a real Outpost.

The server is the one ``bash tests/real/outpost.sh start`` runs: found from ``OUTPOST_API_BASE_URL`` and
``OUTPOST_API_KEY`` when both are set, else from ``$REAL_OUTPOST_DIR/env`` (default ``.real-outpost/env``).
A fresh tenant gets one webhook destination (topics ``*``) whose receiver (``receiver.py``) runs in its
own process on 127.0.0.1 and counts deliveries by ``x-outpost-event-id``. The raw-socket client sends
minipub's body (a client-side id, ``eligible_for_retry``); outpost-sdk is called as its users call it
(no id: the server makes one). Per case: accepted events/s
(the client's timed loop), the client's CPU per event and its share of the machine's cores, then the
end-to-end delivery rate (events delivered / time from the loop's start to the last delivery; the
next case starts once every event arrived, or ``drain_timeout`` ran out), and the server side's CPU
per event (Outpost, Redis, RabbitMQ and PostgreSQL, from ``/proc``, when the state folder names their
PIDs). Cases are interleaved round by round; ratios are taken within each round.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from cases import (
    THREADS,
    TOPIC,
    WARMUP,
    event_data,
    have,
    minipub_case,
    outpost_sdk_case,
    publisher_available,
    publisher_timed,
    raw_socket_limit,
    timed,
)
from servers import free_port, process_cpu_seconds, stop, wait_until_listening

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOW_TO_START = 'start one with: eval "$(bash tests/real/outpost.sh start)" (stop: bash tests/real/outpost.sh stop)'

RAW_SEQ, RAW_PAR = "raw-socket, sequential", f"raw-socket, {THREADS} connections"
MINIPUB_SEQ, PUBLISHER = "minipub publish, sequential", f"minipub Publisher, {THREADS} workers"
PUBLISHER_THREADS = PUBLISHER + ", engine=threads"
PUBLISHER_ASYNCIO = PUBLISHER + ", asyncio loop"
SDK_SEQ, SDK_ASYNC = "outpost-sdk, sequential", f"outpost-sdk async, {THREADS} in flight"
CONCURRENCY = {RAW_SEQ: 1, RAW_PAR: THREADS, MINIPUB_SEQ: 1, PUBLISHER: THREADS, PUBLISHER_THREADS: THREADS,
               PUBLISHER_ASYNCIO: THREADS, SDK_SEQ: 1, SDK_ASYNC: THREADS}
# Where each server component writes its PID under the state folder (outpost.sh start).
PID_FILES = {"outpost": ["outpost/outpost.pid"], "redis": ["redis/redis.pid"],
             "rabbitmq": ["rabbitmq/rabbitmq.pid", "rabbitmq/epmd.pid"], "postgresql": ["postgres/data/postmaster.pid"]}


class NoRealServer(RuntimeError):
    pass


class RealServer:
    """The real Outpost: its URL and key (kept out of reprs), admin calls, its processes' CPU."""

    def __init__(self, base_url: str, api_key: str, state: Optional[Path]) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.state = state

    def __repr__(self) -> str:
        return f"RealServer({self.base_url!r})"

    @property
    def key(self) -> str:
        return self._key

    def request(self, method: str, path: str, body: Any = None, timeout: float = 15.0) -> Tuple[int, bytes]:
        url = self.base_url.rsplit("/api/", 1)[0] + path[1:] if path.startswith("//") else self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self._key, **({"Content-Type": "application/json"} if data else {})}
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(urllib.request.Request(url, data=data, method=method, headers=headers),
                             timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def healthy(self) -> str:
        """'' when /healthz answers healthy, else why not."""
        try:
            status, body = self.request("GET", "//healthz", timeout=5)
        except OSError as error:
            return f"{self.base_url}: {error}"
        return "" if status == 200 and b"healthy" in body else f"/healthz answered {status}"

    def cpu_seconds(self) -> Dict[str, float]:
        """CPU seconds so far of each server component's process tree (empty without a state folder)."""
        if self.state is None:
            return {}
        children: Dict[int, List[int]] = {}
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        totals: Dict[str, float] = {}
        for component, files in PID_FILES.items():
            roots = []
            for name in files:
                try:
                    roots.append(int((self.state / name).read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
            seen, todo = set(), list(roots)
            while todo:
                pid = todo.pop()
                if pid not in seen:
                    seen.add(pid)
                    todo.extend(children.get(pid, []))
            if seen:
                totals[component] = sum(process_cpu_seconds(pid) for pid in seen)
        return totals


def find_real_server() -> RealServer:
    """The running real Outpost, or ``NoRealServer`` saying how to start one."""
    state = Path(os.environ.get("REAL_OUTPOST_DIR") or ROOT / ".real-outpost")
    env = {name: os.environ.get(name, "") for name in ("OUTPOST_API_BASE_URL", "OUTPOST_API_KEY")}
    if not (env["OUTPOST_API_BASE_URL"] and env["OUTPOST_API_KEY"]):
        path = state / "env"
        if not path.is_file():
            raise NoRealServer(f"no real Outpost configured (no OUTPOST_API_BASE_URL/KEY, no {path}); {HOW_TO_START}")
        for line in path.read_text().splitlines():
            name, _, value = line.strip().removeprefix("export ").partition("=")
            env[name.strip()] = value.strip()
    server = RealServer(env["OUTPOST_API_BASE_URL"], env["OUTPOST_API_KEY"], state if state.is_dir() else None)
    problem = server.healthy()
    if problem:
        raise NoRealServer(f"the real Outpost is not healthy ({problem}); {HOW_TO_START}")
    return server


class Receiver:
    """``receiver.py`` in its own process: the webhook URL, its counts, a reset."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(HERE / "receiver.py"), str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         data=b"" if method == "POST" else None)
        with self._opener.open(request, timeout=10) as response:
            return bytes(response.read())

    def stats(self) -> Dict[str, Any]:
        return dict(json.loads(self._call("GET", "/stats")))

    def reset(self) -> None:
        self._call("POST", "/reset")

    def wait_for(self, count: int, timeout: float) -> Dict[str, Any]:
        """Poll until ``count`` distinct events arrived or ``timeout`` ran out; the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["unique"] >= count or time.monotonic() >= deadline:
                return stats
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def close(self) -> None:
        stop(self.proc)


CaseRun = Callable[[Callable[[int], None]], Tuple[float, float]]  # (after_warmup) -> (events/s, CPU us)


def outpost_sdk_async(url: str, n: int, concurrency: int, key: str, tenant: str,
                      after_warmup: Callable[[int], None]) -> Tuple[float, float]:
    """outpost-sdk's ``publish_async``: ``concurrency`` tasks share one client and take events in turn."""
    import asyncio

    from outpost_sdk import Outpost

    def request(i: int) -> Dict[str, Any]:
        return {"tenant_id": tenant, "topic": TOPIC, "data": event_data(i)}

    async def main() -> Tuple[float, float]:
        async with Outpost(api_key=key, server_url=url) as client:
            warm = concurrency * WARMUP
            await asyncio.gather(*(client.publish_async(request=request(i)) for i in range(warm)))
            after_warmup(warm)  # blocks the loop on purpose: nothing else runs yet
            events = iter(range(n))

            async def worker() -> None:
                for i in events:
                    await client.publish_async(request=request(i))

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return n / wall, cpu / n * 1e6

    return asyncio.run(main())


def real_cases(url: str, n: int, key: str, tenant: str, with_outpost_sdk: bool) -> Dict[str, CaseRun]:
    common = {"key": key, "tenant": tenant}
    # minipub's body, so the server does the same work; a stalled server fails the run instead of hanging it
    raw = functools.partial(raw_socket_limit, same_event=True, timeout=30.0)
    cases: Dict[str, CaseRun] = {
        RAW_SEQ: lambda aw: timed(raw, url, n, 1, after_warmup=aw, **common),
        RAW_PAR: lambda aw: timed(raw, url, n, THREADS, after_warmup=aw, **common),
        MINIPUB_SEQ: lambda aw: timed(minipub_case(), url, n, 1, after_warmup=aw, **common),
    }
    if publisher_available():
        cases[PUBLISHER] = lambda aw: publisher_timed(url, n, workers=THREADS, submitters=1, after_warmup=aw,
                                                      key=key, tenant=tenant)
        cases[PUBLISHER_THREADS] = lambda aw: publisher_timed(
            url, n, workers=THREADS, submitters=1, after_warmup=aw, key=key, tenant=tenant, engine="threads")
        cases[PUBLISHER_ASYNCIO] = lambda aw: publisher_timed(
            url, n, workers=THREADS, submitters=1, after_warmup=aw, key=key, tenant=tenant, engine="asyncio")
    if with_outpost_sdk and have("outpost_sdk"):
        cases[SDK_SEQ] = lambda aw: timed(outpost_sdk_case, url, n, 1, after_warmup=aw, **common)
        cases[SDK_ASYNC] = lambda aw: outpost_sdk_async(url, n, THREADS, key, tenant, aw)
    return cases


def measure(run: CaseRun, n: int, server: RealServer, receiver: Receiver, drain_timeout: float) -> Dict[str, Any]:
    """One case: accepted events/s and CPU, then the deliveries, the server's and the receiver's CPU."""
    marks: Dict[str, Any] = {}

    def after_warmup(warm: int) -> None:
        receiver.wait_for(warm, timeout=min(30.0, drain_timeout))
        receiver.reset()
        marks.update(server=server.cpu_seconds(), receiver=receiver.cpu_seconds(), t0=time.time())

    receiver.reset()
    eps, cpu_us = run(after_warmup)
    accepted_at = time.time()
    stats = receiver.wait_for(n, timeout=drain_timeout)
    server_after, receiver_after = server.cpu_seconds(), receiver.cpu_seconds()
    window = (stats["last"] or accepted_at) - marks["t0"]
    cores = os.cpu_count() or 1
    server_cpu = {k: server_after[k] - marks["server"].get(k, server_after[k]) for k in server_after}
    return {
        "events_per_s": eps, "cpu_us": cpu_us, "client_cpu_share": cpu_us * eps / 1e6 / cores,
        "delivered": stats["unique"], "duplicates": stats["duplicates"],
        "delivered_per_s": stats["unique"] / window if window > 0 else 0.0,
        "delivery_lag_s": max(0.0, (stats["last"] or accepted_at) - accepted_at),
        "server_cpu_us": sum(server_cpu.values()) / n * 1e6 if server_cpu else None,
        "server_cpu_us_by": {k: v / n * 1e6 for k, v in server_cpu.items()},
        "server_cpu_share": sum(server_cpu.values()) / window / cores if server_cpu and window > 0 else None,
        "receiver_cpu_us": (receiver_after - marks["receiver"]) / n * 1e6,
    }


def run_real(n: int, rounds: int, *, with_outpost_sdk: bool = True, drain_timeout: float = 120.0,
             cases_filter: Optional[List[str]] = None) -> Dict[str, Any]:
    """The real-server rounds: per case the medians of ``measure``'s figures and same-round ratios."""
    server = find_real_server()
    receiver = Receiver()
    tenant = "bench-" + uuid.uuid4().hex[:12]
    try:
        status, body = server.request("PUT", f"/tenants/{tenant}")
        if status not in (200, 201):
            raise RuntimeError(f"PUT /tenants/{tenant} answered {status}: {body[:200]!r}")
        status, body = server.request("POST", f"/tenants/{tenant}/destinations", {
            "type": "webhook", "topics": ["*"], "config": {"url": receiver.url}})
        if status != 201:
            raise RuntimeError(f"POST /tenants/{tenant}/destinations answered {status}: {body[:200]!r}")
        cases = real_cases(server.base_url, n, server.key, tenant, with_outpost_sdk)
        if cases_filter:
            cases = {k: v for k, v in cases.items() if k.startswith("raw-socket") or any(w in k for w in cases_filter)}
        print(f"real Outpost at {server.base_url}; tenant {tenant}; N={n}, rounds={rounds}", file=sys.stderr)
        samples: Dict[str, List[Dict[str, Any]]] = {}
        names = list(cases)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples.setdefault(name, []).append(measure(cases[name], n, server, receiver, drain_timeout))
            print(f"  real round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        receiver.close()
        try:
            server.request("DELETE", f"/tenants/{tenant}")
        except OSError:
            pass
    return {"server": server.base_url, "n": n, "rounds": rounds, "concurrency": THREADS,
            "cores": os.cpu_count(), "rows": summarize(samples, n)}


def summarize(samples: Dict[str, List[Dict[str, Any]]], n: int) -> Dict[str, Dict[str, Any]]:
    def med(values: List[float]) -> Optional[float]:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    rows: Dict[str, Dict[str, Any]] = {}
    for name, runs in samples.items():
        row: Dict[str, Any] = {"in_flight": CONCURRENCY[name]}
        for key in runs[0]:
            if key == "server_cpu_us_by":
                row[key] = {c: med([r[key].get(c) for r in runs]) for c in runs[0][key]}
            else:
                row[key] = med([r[key] for r in runs])
        row["all_delivered"] = all(r["delivered"] >= n for r in runs)
        row["duplicates"] = sum(r["duplicates"] for r in runs)
        raw = samples.get(RAW_SEQ if CONCURRENCY[name] == 1 else RAW_PAR)
        if raw:
            row["eps_x_raw"] = med([a["events_per_s"] / b["events_per_s"] for a, b in zip(runs, raw)])
            row["cpu_x_raw"] = med([a["cpu_us"] / b["cpu_us"] for a, b in zip(runs, raw)])
        sdk = [samples[k] for k in (SDK_SEQ, SDK_ASYNC) if k in samples]
        if sdk:
            best = [max(s[i]["events_per_s"] for s in sdk) for i in range(len(runs))]
            row["eps_x_sdk_best"] = med([a["events_per_s"] / b for a, b in zip(runs, best)])
        rows[name] = row
    return rows


def real_table(report: Dict[str, Any]) -> str:
    def num(value: Any, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    header = (f"{'case':<36} {'in flight':>9} {'acc ev/s':>8} {'x raw':>6} {'x sdk best':>10} {'CPU us/ev':>9}"
              f" {'CPU share':>9} {'deliv ev/s':>10} {'delivered':>9} {'server us/ev':>12}")
    lines = [f"real Outpost ({report['server']}, {report['cores']} cores shared with Outpost, Redis, RabbitMQ,"
             " PostgreSQL and the receiver):", header, "-" * len(header)]
    for name, row in report["rows"].items():
        share = row.get("client_cpu_share")
        lines.append(
            f"{name:<36} {row['in_flight']:>9} {num(row['events_per_s']):>8} {num(row.get('eps_x_raw'), 2):>6}"
            f" {num(row.get('eps_x_sdk_best'), 2):>10} {num(row['cpu_us'], 1):>9}"
            f" {'-' if share is None else f'{share:.0%}':>9} {num(row['delivered_per_s']):>10}"
            f" {num(row['delivered']):>9} {num(row.get('server_cpu_us')):>12}")
    by = {name: row.get("server_cpu_us_by") or {} for name, row in report["rows"].items()}
    if any(by.values()):
        lines.append("server CPU us/event by component: " + "; ".join(
            f"{name}: " + ", ".join(f"{c} {num(v)}" for c, v in parts.items()) for name, parts in by.items()))
    lines.append(f"(x raw: against the raw-socket client with the same number in flight; delivered: distinct event"
                 f" ids at the receiver, of N={report['n']} per round, median)")
    return "\n".join(lines)
