"""minipub side by side with outpost-sdk, the http.client floor and the raw-socket limit.

    python benchmarks/run.py [--n 3000] [--rounds 5] [--cases a,b] [--json PATH]   (or: tox -e bench)

Every case publishes the same N events to a local server in another process (nginx when installed,
else a small responder), sequentially and with 4 threads. Figures: events/s and the client's CPU
per event (process user+sys over the timed loop), medians over rounds; the cases are interleaved
round by round and ratios are taken within each round (absolute times drift on a noisy machine,
same-round ratios hold). Then import time, interpreter start to the first published event and peak
RSS, each in fresh subprocesses. A table goes to stdout, everything to ``--json``
(``benchmarks/results/latest.json``). Nothing here is asserted: the targets are reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from servers import start_server  # noqa: E402

KEY = "sk_bench_" + "k" * 24
AUTOLOAD_OFF = "minipub, plugin autoload off"
THREADS = 4
LIMIT, FLOOR = "raw-socket limit", "http.client floor"

Publish = Callable[[int], Any]


def event_data(i: int) -> Dict[str, Any]:
    return {"user_id": "usr_123", "plan": "pro", "n": i}


# -- the cases: each opens a session; a session hands each thread its publish function ----------

class Session:
    """What a case opened: ``publisher()`` once per thread, ``close()`` at the end."""

    def __init__(self, publisher: Callable[[], Publish], close: Callable[[], None] = lambda: None) -> None:
        self.publisher = publisher
        self.close = close


def raw_socket_limit(url: str) -> Session:
    """One socket per thread, a prebuilt request head, a minimal Content-Length response parse."""
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3] + "/publish"
    prefix = (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nAuthorization: Bearer {KEY}\r\n"
              "Content-Type: application/json\r\nContent-Length: ").encode()
    sockets: List[socket.socket] = []

    def publisher() -> Publish:
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sockets.append(sock)
        dumps, loads, recv, sendall = json.dumps, json.loads, sock.recv, sock.sendall

        def publish(i: int) -> Any:
            body = dumps({"tenant_id": "acme", "topic": "user.created", "data": event_data(i)}).encode()
            sendall(prefix + str(len(body)).encode() + b"\r\n\r\n" + body)
            buf = recv(65536)
            while b"\r\n\r\n" not in buf:
                buf += recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            at = head.lower().index(b"content-length:") + 15
            length = int(head[at:head.find(b"\r", at) if head.find(b"\r", at) > 0 else len(head)])
            while len(rest) < length:
                rest += recv(65536)
            if head[9:12] != b"202":
                raise RuntimeError(head[:40])
            return loads(rest)

        return publish

    return Session(publisher, lambda: [s.close() for s in sockets] and None)


def http_client_floor(url: str) -> Session:
    """One persistent ``http.client.HTTPConnection`` per thread, ``json.dumps``/``json.loads``."""
    import http.client

    host_port = url.split("/")[2]
    path = "/" + url.split("/", 3)[3] + "/publish"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    conns: List[Any] = []

    def publisher() -> Publish:
        conn = http.client.HTTPConnection(host_port)
        conns.append(conn)

        def publish(i: int) -> Any:
            body = json.dumps({"tenant_id": "acme", "topic": "user.created", "data": event_data(i)})
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            data = json.loads(response.read())
            if response.status != 202:
                raise RuntimeError(response.status)
            return data

        return publish

    return Session(publisher, lambda: [c.close() for c in conns] and None)


def minipub_case(transport: str) -> Callable[[str], Session]:
    def open_session(url: str) -> Session:
        import minipub

        sdk = minipub.SDK(KEY, server_url=url, transport=transport, proxy=None)
        event = sdk.publish.event

        def publisher() -> Publish:
            return lambda i: event(tenant_id="acme", topic="user.created", data=event_data(i))

        return Session(publisher, sdk.close)

    open_session.__doc__ = f"minipub.SDK(transport={transport!r}).publish.event"
    return open_session


def outpost_sdk_case(url: str) -> Session:
    """The official generated SDK (httpx + pydantic), one client shared by the threads."""
    from outpost_sdk import Outpost

    client = Outpost(api_key=KEY, server_url=url)

    def publisher() -> Publish:
        return lambda i: client.publish(request={"tenant_id": "acme", "topic": "user.created", "data": event_data(i)})

    return Session(publisher, lambda: client.__exit__(None, None, None))


def plugin_case(url: str) -> Session:
    """HOOK "plugins": minipub with one (no-op) observability plugin registered through pluggy."""
    import minipub
    from minipub.hookspecs import hookimpl

    class Observer:
        @hookimpl(wrapper=True)
        def minipub_publish(self) -> Any:
            return (yield)

        @hookimpl(wrapper=True)
        def minipub_attempt(self) -> Any:
            return (yield)

    sdk = minipub.SDK(KEY, server_url=url, proxy=None, plugins=[Observer()])  # type: ignore[call-arg]
    event = sdk.publish.event
    return Session(lambda: lambda i: event(tenant_id="acme", topic="user.created", data=event_data(i)), sdk.close)


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def publisher_available() -> bool:
    """HOOK: the background Publisher (another branch) lights up the publisher/outbox rows once merged."""
    try:
        import minipub

        return getattr(minipub, "Publisher", None) is not None
    except ImportError:  # pragma: no cover
        return False


def all_cases(with_outpost: bool) -> Dict[str, Callable[[str], Session]]:
    from minipub.transports import BUILTIN_TRANSPORTS, DEFAULT_TRANSPORT

    cases: Dict[str, Callable[[str], Session]] = {LIMIT: raw_socket_limit, FLOOR: http_client_floor}
    for name in sorted(BUILTIN_TRANSPORTS, key=lambda n: n != DEFAULT_TRANSPORT):
        label = f"minipub {name}" + (" (default)" if name == DEFAULT_TRANSPORT else "")
        cases[label] = minipub_case(name)
    if have("minipub.hookspecs") and have("pluggy"):
        cases["minipub + 1 observability plugin"] = plugin_case
    if with_outpost and have("outpost_sdk"):
        cases["outpost-sdk"] = outpost_sdk_case
    return cases


# -- timing ------------------------------------------------------------------------------------

def timed(open_session: Callable[[str], Session], url: str, n: int, threads: int) -> Tuple[float, float]:
    """(events/s, client CPU us per event) for ``n`` publishes over ``threads`` threads."""
    session = open_session(url)
    try:
        publishers = [session.publisher() for _ in range(threads)]
        for publish in publishers:  # connect and warm up outside the timed loop
            for i in range(3):
                publish(i)
        errors: List[BaseException] = []

        def work(publish: Publish, count: int) -> None:
            try:
                for i in range(count):
                    publish(i)
            except BaseException as exc:  # reported after the loop
                errors.append(exc)

        cpu, wall = time.process_time(), time.perf_counter()
        if threads == 1:
            work(publishers[0], n)
        else:
            workers = [threading.Thread(target=work, args=(p, n // threads)) for p in publishers]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(600)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if errors:
            raise errors[0]
        done = n if threads == 1 else n // threads * threads
        return done / wall, cpu / done * 1e6
    finally:
        session.close()


def publisher_rows(url: str, n: int) -> Dict[str, Callable[[], Tuple[float, float]]]:
    """HOOK "publisher"/"outbox": the background Publisher with 4 workers, with and without an outbox."""
    if not publisher_available():
        return {}
    import minipub

    def run(outbox: Optional[str], synchronous: str = "FULL") -> Tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="minipub-bench-outbox-") as tmp:
            sdk = minipub.SDK(KEY, server_url=url, proxy=None)
            options: Dict[str, Any] = {"workers": THREADS}
            if outbox is not None:
                options.update(outbox=os.path.join(tmp, outbox), synchronous=synchronous)
            publisher = minipub.Publisher(sdk, **options)  # type: ignore[attr-defined]
            cpu, wall = time.process_time(), time.perf_counter()

            def submit(count: int) -> None:
                for i in range(count):
                    publisher.submit("user.created", event_data(i), tenant_id="acme")

            submitters = [threading.Thread(target=submit, args=(n // THREADS,)) for _ in range(THREADS)]
            for thread in submitters:
                thread.start()
            for thread in submitters:
                thread.join(600)
            publisher.flush(timeout=600)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            publisher.close()
            sdk.close()
            done = n // THREADS * THREADS
            return done / wall, cpu / done * 1e6

    rows: Dict[str, Callable[[], Tuple[float, float]]] = {"Publisher, 4 workers": lambda: run(None)}
    for sync in ("FULL", "NORMAL", "OFF"):
        rows[f"Publisher + outbox synchronous={sync}"] = lambda sync=sync: run("outbox.db", sync)  # type: ignore[misc]
    return rows


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def throughput_rounds(url: str, cases: Dict[str, Callable[[str], Session]], n: int, rounds: int,
                      extra: Dict[str, Callable[[], Tuple[float, float]]]) -> Dict[str, Dict[str, Any]]:
    """Per case and mode: medians of events/s, CPU us/event and same-round ratios to the limit and floor."""
    modes = {"seq": 1, f"{THREADS} threads": THREADS}
    samples: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
    names = list(cases)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # a different case goes first each round
        for name in order:
            for mode, threads in modes.items():
                samples.setdefault((name, mode), []).append(timed(cases[name], url, n, threads))
        for name, run in extra.items():
            samples.setdefault((name, "async"), []).append(run())
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    results: Dict[str, Dict[str, Any]] = {}
    for (name, mode), runs in samples.items():
        ref_mode = mode if mode != "async" else f"{THREADS} threads"
        row: Dict[str, Any] = {"events_per_s": median([e for e, _ in runs]), "cpu_us": median([c for _, c in runs])}
        for ref, key in ((LIMIT, "limit"), (FLOOR, "floor")):
            base = samples.get((ref, ref_mode))
            if base:
                row[f"cpu_x_{key}"] = median([c / bc for (_, c), (_, bc) in zip(runs, base)])
                row[f"eps_x_{key}"] = median([e / be for (e, _), (be, _) in zip(runs, base)])
        if mode == "async" and ("Publisher, 4 workers", "async") in samples:
            base_runs = samples[("Publisher, 4 workers", "async")]
            row["eps_x_publisher"] = median([e / be for (e, _), (be, _) in zip(runs, base_runs)])
        results.setdefault(name, {})[mode] = row
    return results


# -- subprocess figures: import, start to first event, peak RSS -----------------------------------

# Child scripts: the setup and one publish of event ``i``, per case (filled in with str.format).
CHILD = {
    "minipub": ("import minipub\n"
                "sdk = minipub.SDK({key!r}, server_url={url!r}, proxy=None, transport={transport!r})\n",
                "sdk.publish.event(tenant_id='acme', topic='user.created', data={{'n': i}})"),
    FLOOR: ("import http.client, json\nc = http.client.HTTPConnection({hostport!r})\n"
            "h = {{'Authorization': 'Bearer {key}', 'Content-Type': 'application/json'}}\n",
            "c.request('POST', {path!r}, json.dumps({{'tenant_id': 'acme', 'topic': 'user.created', "
            "'data': {{'n': i}}}}), h); json.loads(c.getresponse().read())"),
    "outpost-sdk": ("from outpost_sdk import Outpost\nc = Outpost(api_key={key!r}, server_url={url!r})\n",
                    "c.publish(request={{'tenant_id': 'acme', 'topic': 'user.created', 'data': {{'n': i}}}})"),
}


def first_event_script(case: str, fill: Dict[str, Any]) -> str:
    setup, publish = CHILD[case]
    return (setup + "i = 1\n" + publish + "\n").format(**fill)


# Peak RSS in MiB. ru_maxrss keeps the parent's high-water mark across fork and exec on Linux (every
# child would report the benchmark's own size), so /proc's VmHWM, which exec resets, comes first.
PEAK_RSS = """
try:
    with open('/proc/self/status') as status:
        print(int(next(line for line in status if line.startswith('VmHWM:')).split()[1]) / 1024)
except (OSError, StopIteration):
    import resource, sys
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(maxrss / 1024 / (1024 if sys.platform == 'darwin' else 1))
"""


def rss_script(case: str, fill: Dict[str, Any]) -> str:
    setup, publish = CHILD[case]
    return (setup + "for i in range({n}):\n    " + publish + "\n").format(**fill) + PEAK_RSS


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    return env


def run_child(code: str, **env: str) -> Tuple[float, str]:
    """Run ``python -c code``; (wall seconds from spawn to exit, stdout)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**child_env(), **env}, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"child failed: {result.stderr.strip()[-500:]}")
    return wall, result.stdout


def first_event_seconds(code: str, **env: str) -> float:
    """From spawning the interpreter to its first published event (the child stamps the moment)."""
    start = time.time()
    _, out = run_child(code + "import time; print(repr(time.time()))\n", **env)
    return float(out.strip().splitlines()[-1]) - start


def subprocess_figures(url: str, n: int, runs: int, with_outpost: bool) -> Dict[str, Any]:
    hostport = url.split("/")[2]
    fill = {"key": KEY, "url": url, "hostport": hostport, "path": "/" + url.split("/", 3)[3] + "/publish", "n": n}
    outpost = with_outpost and have("outpost_sdk")
    imports = {"python -c pass": "pass", "import minipub": "import minipub"}
    if outpost:
        imports["import outpost_sdk"] = "import outpost_sdk"
    from minipub.transports import BUILTIN_TRANSPORTS, DEFAULT_TRANSPORT

    cases = ["minipub", FLOOR] + (["outpost-sdk"] if outpost else [])
    first = {case: first_event_script(case, {**fill, "transport": DEFAULT_TRANSPORT}) for case in cases}
    rss = {f"minipub {t}": rss_script("minipub", {**fill, "transport": t}) for t in sorted(BUILTIN_TRANSPORTS)}
    rss.update({case: rss_script(case, fill) for case in cases if case != "minipub"})
    samples: Dict[str, List[float]] = {}
    for _ in range(runs):  # interleaved
        for label, code in imports.items():
            samples.setdefault("import:" + label, []).append(run_child(code)[0])
        for label, code in first.items():
            samples.setdefault("first:" + label, []).append(first_event_seconds(code))
        if have("pluggy"):  # with pluggy importable, the first SDK() looks up installed plugins' entry points
            samples.setdefault("first:" + AUTOLOAD_OFF, []).append(
                first_event_seconds(first["minipub"], MINIPUB_DISABLE_PLUGIN_AUTOLOAD="1"))
    for _ in range(max(1, min(runs, 3))):
        for label, code in rss.items():
            out = run_child(code)[1]
            samples.setdefault("rss:" + label, []).append(float(out.strip().splitlines()[-1]))
    figures: Dict[str, Any] = {"import_ms": {}, "first_event_ms": {}, "peak_rss_mib": {}}
    for key, values in samples.items():
        kind, label = key.split(":", 1)
        if kind == "rss":
            figures["peak_rss_mib"][label] = median(values)
        else:
            figures["import_ms" if kind == "import" else "first_event_ms"][label] = median(values) * 1000
    return figures


# -- targets and the table ---------------------------------------------------------------------

def targets(results: Dict[str, Dict[str, Any]], figures: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    found: List[Dict[str, Any]] = []

    def add(what: str, value: Optional[float], limit: float) -> None:
        if value is not None and value == value:
            found.append({"target": what, "measured": round(value, 3), "limit": limit,
                          "met": value >= limit if what.startswith(">=") or " >= " in what else value <= limit})

    default = next((n for n in results if n.endswith("(default)")), None)
    if default:
        add(f"{default}: CPU per sequential publish <= 1.6x the raw-socket limit",
            results[default]["seq"].get("cpu_x_limit"), 1.6)
        add(f"{default}: sequential events/s >= 0.6x the raw-socket limit",
            results[default]["seq"].get("eps_x_limit"), 0.6)
        add(f"{default}: {THREADS}-thread events/s >= 0.6x the raw-socket limit with {THREADS} threads",
            results[default][f"{THREADS} threads"].get("eps_x_limit"), 0.6)
    for name, row in results.items():
        if name.startswith("minipub ") and "plugin" not in name:
            add(f"{name}: CPU per sequential publish <= 1.2x the http.client floor", row["seq"].get("cpu_x_floor"), 1.2)
    imports = figures.get("import_ms", {})
    if "import minipub" in imports and "python -c pass" in imports:
        add("python -c 'import minipub' <= 1.5x python -c pass",
            imports["import minipub"] / imports["python -c pass"], 1.5)
    first = figures.get("first_event_ms", {})
    for label in ("minipub", AUTOLOAD_OFF):
        if label in first and FLOOR in first:
            add(f"interpreter start -> first event ({label}) <= 1.3x the http.client floor's",
                first[label] / first[FLOOR], 1.3)
    rss = figures.get("peak_rss_mib", {})
    if FLOOR in rss:
        for label, value in rss.items():
            if label.startswith("minipub"):
                add(f"peak RSS ({label}) <= 1.2x the http.client floor's", value / rss[FLOOR], 1.2)
    for name, row in results.items():
        if "group commit" in name or ("outbox" in name and "eps_x_publisher" in row.get("async", {})):
            add(f"{name}: throughput >= 0.5x the Publisher without outbox", row["async"]["eps_x_publisher"], 0.5)
    return found


def fmt(value: Optional[float], digits: int = 0) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def table(results: Dict[str, Dict[str, Any]], figures: Dict[str, Any], found: List[Dict[str, Any]]) -> str:
    lines = []
    header = (f"{'case':<36} {'ev/s':>8} {'CPU us/ev':>9} {'CPUxlimit':>9} {'CPUxfloor':>9} {'ev/sxlimit':>10}"
              f" {f'{THREADS}thr ev/s':>10} {'xlimit':>7} {'CPU us/ev':>9}")
    lines += [header, "-" * len(header)]
    for name, modes in results.items():
        seq = modes.get("seq") or modes.get("async") or {}
        par = modes.get(f"{THREADS} threads", {})
        lines.append(
            f"{name:<36} {fmt(seq.get('events_per_s')):>8} {fmt(seq.get('cpu_us'), 1):>9}"
            f" {fmt(seq.get('cpu_x_limit'), 2):>9} {fmt(seq.get('cpu_x_floor'), 2):>9}"
            f" {fmt(seq.get('eps_x_limit'), 2):>10}"
            f" {fmt(par.get('events_per_s')):>10} {fmt(par.get('eps_x_limit'), 2):>7} {fmt(par.get('cpu_us'), 1):>9}"
        )
    if any("async" in m for m in results.values()):
        lines.append("(Publisher rows: submit from 4 threads + flush, 4 workers; xlimit against the 4-thread limit)")
    lines.append("")
    for title, key, unit in (("import", "import_ms", "ms"), ("start → first event", "first_event_ms", "ms"),
                             ("peak RSS", "peak_rss_mib", "MiB")):
        values = figures.get(key, {})
        base = values.get("python -c pass") or values.get(FLOOR)
        cells = [f"{label} {fmt(v, 1)} {unit}" + (f" ({v / base:.2f}x)" if base else "") for label, v in values.items()]
        lines.append(f"{title}: " + "; ".join(cells))
    lines.append("")
    for target in found:
        lines.append(f"[{'met   ' if target['met'] else 'MISSED'}] {target['target']}: {target['measured']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="events per case and mode (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, cases interleaved (default 5)")
    parser.add_argument("--startup-runs", type=int, default=15, help="subprocess runs for import/start figures")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names to keep")
    parser.add_argument("--server", choices=("auto", "nginx", "responder"), default="auto")
    parser.add_argument("--no-outpost-sdk", action="store_true", help="skip outpost-sdk even when installed")
    parser.add_argument("--no-subprocess", action="store_true", help="skip the import/start/RSS figures")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"), help="where to write the results")
    args = parser.parse_args(argv)
    with_outpost = not args.no_outpost_sdk
    cases = all_cases(with_outpost)
    if args.cases:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = {k: v for k, v in cases.items() if k in (LIMIT, FLOOR) or any(w in k for w in wanted)}
    with start_server(args.server) as (url, served_by):
        print(f"server: {served_by} at {url}; N={args.n}, rounds={args.rounds}", file=sys.stderr)
        extra = publisher_rows(url, args.n) if not args.cases or "ublisher" in args.cases else {}
        results = throughput_rounds(url, cases, args.n, args.rounds, extra)
        figures = {} if args.no_subprocess else subprocess_figures(url, args.n, args.startup_runs, with_outpost)
    found = targets(results, figures)
    report = {
        "server": served_by, "n": args.n, "rounds": args.rounds, "threads": THREADS,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "outpost_sdk": _version("outpost_sdk") if with_outpost else None,
        "publisher_rows": "run" if extra else "skipped (minipub.Publisher not available)",
        "cases": results, **figures, "targets": found,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"server: {served_by}; N={args.n} events per case and mode, {args.rounds} rounds (medians)")
    print(table(results, figures, found))
    print(f"\nJSON: {path}")
    return 0


def _version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(dist.replace("_", "-"))
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
