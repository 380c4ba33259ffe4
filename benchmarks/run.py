"""minipub side by side with outpost-sdk, the http.client floor and the raw-socket limit.

    python benchmarks/run.py [--target local,latency|real|all] [--n 3000] [--rounds 5] [--cases a,b] [--json PATH]
    python benchmarks/run.py --real        # the real Outpost only (bash tests/real/outpost.sh start)
    (or: tox -e bench [-- ARGS])

Targets (``--target``, default ``local,latency``):
- ``local``: every case publishes the same N events to a local server in another process (nginx when
  installed, else a small responder), sequentially and with 4 threads; the background ``Publisher``
  with and without an outbox; ``minipub bulk`` on ``--bulk-lines`` lines; then import time, interpreter
  start to the first published event and peak RSS, each in fresh subprocesses.
- ``latency``: the ``Publisher`` against a responder that answers 2 ms after each request
  (``latency.py``), at several numbers of connections in flight.
- ``real``: a real Outpost with a webhook receiver (``real.py``): accepted events/s, client CPU, the
  end-to-end delivery rate and the server side's CPU.
Figures: events/s and the client's CPU per event (process user+sys over the timed loop), medians
over rounds; the cases are interleaved round by round and ratios are taken within each round
(absolute times drift on a noisy machine, same-round ratios hold). A table goes to stdout, everything
to ``--json`` (``benchmarks/results/latest.json``). Nothing here is asserted: every target of issue 14
is printed met, MISSED or not measured (``targets.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from bulk import run_bulk  # noqa: E402
from cases import (  # noqa: E402
    FLOOR,
    KEY,
    LIMIT,
    THREADS,
    CommitLog,
    OpenSession,
    all_cases,
    default_loop,
    have,
    publisher_available,
    publisher_timed,
    timed,
)
from latency import latency_table, run_latency  # noqa: E402
from real import NoRealServer, find_real_server, real_table, run_real  # noqa: E402
from servers import sdk_url, start_server  # noqa: E402
from targets import evaluate, info_lines, target_lines  # noqa: E402

AUTOLOAD_OFF = "minipub, plugin autoload off"
PUBLISHER = f"Publisher, {THREADS} workers"
PUBLISHER_THREADS = f"Publisher, {THREADS} workers, engine=threads"
PUBLISHER_ASYNCIO = f"Publisher, {THREADS} workers, asyncio loop"
ENGINE_OF = {PUBLISHER_THREADS: "threads", PUBLISHER_ASYNCIO: "asyncio"}


def publisher_rows(url: str, n: int, commit_logs: Dict[str, List[CommitLog]]
                   ) -> Dict[str, Callable[[], Tuple[float, float]]]:
    """HOOK "publisher"/"outbox": the background Publisher with 4 workers, with and without an outbox;
    each outbox run's group commits go to ``commit_logs[row]``."""
    if not publisher_available():
        return {}

    def run(name: str, synchronous: Optional[str] = None) -> Tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="minipub-bench-outbox-") as tmp:
            if synchronous is None:
                return publisher_timed(url, n, engine=ENGINE_OF.get(name, "auto"))
            log = CommitLog()
            commit_logs.setdefault(name, []).append(log)
            return publisher_timed(url, n, outbox=os.path.join(tmp, "outbox.db"), synchronous=synchronous,
                                   commit_log=log)

    rows: Dict[str, Callable[[], Tuple[float, float]]] = {PUBLISHER: lambda: run(PUBLISHER),
                                                          PUBLISHER_THREADS: lambda: run(PUBLISHER_THREADS),
                                                          PUBLISHER_ASYNCIO: lambda: run(PUBLISHER_ASYNCIO)}
    for sync in ("FULL", "NORMAL", "OFF"):
        name = f"Publisher + outbox synchronous={sync}"
        rows[name] = lambda name=name, sync=sync: run(name, sync)  # type: ignore[misc]
    return rows


def commit_summary(logs: List[CommitLog]) -> Dict[str, float]:
    """Medians over rounds of each run's group-commit figures."""
    runs = [log.summary() for log in logs if log.commits]
    return {key: median([r[key] for r in runs]) for key in runs[0]} if runs else {}


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def throughput_rounds(url: str, cases: Dict[str, OpenSession], n: int, rounds: int,
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
        if mode == "async" and (PUBLISHER, "async") in samples:
            base_runs = samples[(PUBLISHER, "async")]
            row["eps_x_publisher"] = median([e / be for (e, _), (be, _) in zip(runs, base_runs)])
        default = next((k for k, m in samples if k.endswith("(default)") and m == "seq"), None)
        if mode == "async" and default:  # the Publisher's CPU per event against a sequential publish's
            row["cpu_x_seq"] = median([c / bc for (_, c), (_, bc) in zip(runs, samples[(default, "seq")])])
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
    "outpost-sdk": ("from outpost_sdk import Outpost\nc = Outpost(api_key={key!r}, server_url={sdk_url!r})\n",
                    "c.publish(request={{'tenant_id': 'acme', 'topic': 'user.created', 'data': {{'n': i}}}})"),
}


# As if pluggy were not installed: the child forgets site-packages (minipub comes from PYTHONPATH).
HIDE_SITE = "import sys\nsys.path[:] = [p for p in sys.path if not p.endswith(('site-packages', 'dist-packages'))]\n"
NO_PLUGGY = "minipub, pluggy not importable"


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
    # A deployed program runs from cached bytecode: without this, every child compiles minipub anew.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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
    fill = {"key": KEY, "url": url, "sdk_url": sdk_url(url), "hostport": hostport,
             "path": "/" + url.split("/", 3)[3] + "/publish", "n": n}
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
            samples.setdefault("first:" + NO_PLUGGY, []).append(first_event_seconds(HIDE_SITE + first["minipub"]))
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

def fmt(value: Optional[float], digits: int = 0) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def table(results: Dict[str, Dict[str, Any]], figures: Dict[str, Any]) -> str:
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
        lines.append("(Publisher rows: submit from 4 threads + flush, 4 workers (engine: the event loop, "
                     f"{default_loop()}'s, unless engine=threads or asyncio loop); xlimit against the 4-thread limit)")
    for name, modes in results.items():
        commits = modes.get("async", {}).get("group_commits")
        if commits:
            lines.append(f"  {name}: {commits['commits']:,.0f} group commits, {commits['ms_per_commit']:.2f} ms each,"
                         f" {commits['inserts_per_commit']:.1f} submits + {commits['outcomes_per_commit']:.1f}"
                         f" outcomes + {commits['claims_per_commit']:.1f} claims per commit")
    lines.append("")
    for title, key, unit in (("import", "import_ms", "ms"), ("start → first event", "first_event_ms", "ms"),
                             ("peak RSS", "peak_rss_mib", "MiB")):
        values = figures.get(key, {})
        base = values.get("python -c pass") or values.get(FLOOR)
        cells = [f"{label} {fmt(v, 1)} {unit}" + (f" ({v / base:.2f}x)" if base else "") for label, v in values.items()]
        lines.append(f"{title}: " + "; ".join(cells))
    return "\n".join(lines)


TARGET_KINDS = ("local", "latency", "real")


def parse_targets(text: str) -> List[str]:
    kinds = list(TARGET_KINDS) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [k for k in kinds if k not in TARGET_KINDS]
    if unknown:
        raise SystemExit(f"--target: unknown {', '.join(unknown)} (choose from {', '.join(TARGET_KINDS)} or all)")
    return kinds


def run_local(args: argparse.Namespace, report: Dict[str, Any]) -> None:
    """nginx (or the fallback responder): the cases, the Publisher rows, bulk and the subprocess figures."""
    with_outpost = not args.no_outpost_sdk
    cases = all_cases(with_outpost)
    if args.cases:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = {k: v for k, v in cases.items() if k in (LIMIT, FLOOR) or any(w in k for w in wanted)}
    with start_server(args.server) as (url, served_by):
        print(f"server: {served_by} at {url}; N={args.n}, rounds={args.rounds}", file=sys.stderr)
        commit_logs: Dict[str, List[CommitLog]] = {}
        extra = publisher_rows(url, args.n, commit_logs) if not args.cases or "ublisher" in args.cases else {}
        results = throughput_rounds(url, cases, args.n, args.rounds, extra)
        for name, logs in commit_logs.items():
            results[name]["async"]["group_commits"] = commit_summary(logs)
        figures = {} if args.no_subprocess else subprocess_figures(url, args.n, args.startup_runs, with_outpost)
        if args.bulk_lines > 0:
            report["bulk"] = run_bulk(url, args.bulk_lines, args.bulk_rounds, child_env())
    report.update(server=served_by, cases=results, **figures,
                  publisher_rows="run" if extra else "skipped (minipub.Publisher not available)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="local,latency",
                        help="comma-separated: local (nginx or the responder), latency (the 2 ms responder),"
                             " real (a real Outpost), or all (default local,latency)")
    parser.add_argument("--real", action="store_true", help="the real Outpost only (same as --target real)")
    parser.add_argument("--n", type=int, default=3000, help="events per case and mode (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, cases interleaved (default 5)")
    parser.add_argument("--startup-runs", type=int, default=15, help="subprocess runs for import/start figures")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names to keep")
    parser.add_argument("--server", choices=("auto", "nginx", "responder"), default="auto")
    parser.add_argument("--no-outpost-sdk", action="store_true", help="skip outpost-sdk even when installed")
    parser.add_argument("--no-subprocess", action="store_true", help="skip the import/start/RSS figures")
    parser.add_argument("--bulk-lines", type=int, default=100_000,
                        help="lines for the minipub bulk rows, 0 to skip (default 100000)")
    parser.add_argument("--bulk-rounds", type=int, default=1, help="rounds of the bulk rows (default 1)")
    parser.add_argument("--latency-ms", type=float, default=2.0, help="the latency responder's delay (default 2)")
    parser.add_argument("--latency-levels", default="4,16,64",
                        help="connections in flight for the latency rows (default 4,16,64)")
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="real Outpost: how long to wait for a case's deliveries (default 120 s)")
    parser.add_argument("--pin-cpu", type=int, default=None, metavar="N",
                        help="run on CPU N only, with the servers started (they inherit it): on a small VM,"
                             " a client and a server on different CPUs pay a cross-CPU wake-up per request that"
                             " swings sequential figures by 3-4x from run to run")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"), help="where to write the results")
    args = parser.parse_args(argv)
    if args.pin_cpu is not None:
        os.sched_setaffinity(0, {args.pin_cpu})
    kinds = ["real"] if args.real else parse_targets(args.target)
    from minipub.transports import DEFAULT_TRANSPORT

    report: Dict[str, Any] = {
        "targets_run": kinds, "n": args.n, "rounds": args.rounds, "threads": THREADS,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "outpost_sdk": _version("outpost_sdk") if not args.no_outpost_sdk else None,
        "default_transport": DEFAULT_TRANSPORT, "pinned_cpu": args.pin_cpu,
    }
    if "real" in kinds:  # first: without a server, say so before spending minutes on the rest
        try:
            find_real_server()
        except NoRealServer as problem:
            print(f"--target real: {problem}", file=sys.stderr)
            return 2
    if "local" in kinds:
        run_local(args, report)
    if "latency" in kinds:
        levels = [int(k) for k in args.latency_levels.split(",") if k.strip()]
        report["latency"] = run_latency(args.n, args.rounds, levels, args.latency_ms)
    if "real" in kinds:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()] or None
        report["real"] = run_real(args.n, args.rounds, with_outpost_sdk=not args.no_outpost_sdk,
                                  drain_timeout=args.drain_timeout, cases_filter=wanted)
    report["targets"] = found = evaluate(report)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if "cases" in report:
        pinned = "" if args.pin_cpu is None else f"; client and server pinned to CPU {args.pin_cpu}"
        print(f"server: {report['server']}; N={args.n} events per case and mode, {args.rounds} rounds (medians)"
              f"{pinned}")
        print(table(report["cases"], {k: report[k] for k in ("import_ms", "first_event_ms", "peak_rss_mib")
                                      if k in report}))
        print()
    if "bulk" in report:
        print(f"minipub bulk, {report['bulk']['lines']:,} lines: " + "; ".join(
            f"{name} {row['events_per_s']:,.0f} ev/s, {row['cpu_us']:,.1f} CPU us/ev"
            for name, row in report["bulk"]["rows"].items()))
        print()
    if "latency" in report:
        print(latency_table(report["latency"]))
        print()
    if "real" in report:
        print(real_table(report["real"]))
        print()
    print("\n".join(target_lines(found) + info_lines(report)))
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
