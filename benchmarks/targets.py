"""Issue 14's targets, each read from the benchmark's report: met, MISSED, or not measured (and how to).

Nothing here is asserted by a test: the benchmark prints the list. Each target is one row of ``TARGETS``:
its text, where its measured value comes from in the report, the limit and the direction.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from cases import FLOOR, THREADS

AUTOLOAD_ON = "minipub"
NO_PLUGGY = "minipub, pluggy not importable"

Report = Dict[str, Any]
Getter = Callable[[Report], Optional[float]]


def dig(report: Report, *path: Any) -> Optional[float]:
    value: Any = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and value == value else None


def default_case(cases: Dict[str, Any]) -> Optional[str]:
    return next((name for name in cases if name.endswith("(default)")), None)


def ratio(report: Report, section: str, key: str, base: str) -> Optional[float]:
    values = report.get(section) or {}
    if key in values and base in values and values[base]:
        return float(values[key]) / float(values[base])
    return None


def path(*keys: Any) -> Getter:
    return lambda report: dig(report, *keys)


def local(*keys: Any) -> Getter:
    return path("cases", *keys)


def default_seq(key: str) -> Getter:
    return lambda report: dig(report, "cases", default_case(report.get("cases") or {}) or "", "seq", key)


PUB = f"Publisher, {THREADS} workers"
LOCAL, LATENCY, REAL = "--target local", "--target latency", "--target real"

# (target, value, limit, ">=" or "<=", how to measure it)
TARGETS: List[Tuple[str, Getter, float, str, str]] = [
    ("sequential publish (default transport): CPU per event <= 1.5x the raw-socket limit's",
     default_seq("cpu_x_limit"), 1.5, "<=", LOCAL),
    ("sequential publish (default transport): events/s >= 0.65x the raw-socket limit's",
     default_seq("eps_x_limit"), 0.65, ">=", LOCAL),
    (f"{PUB}: CPU per event <= 1.2x a sequential publish's", local(PUB, "async", "cpu_x_seq"), 1.2, "<=", LOCAL),
    (f"{PUB}: events/s >= 0.8x the {THREADS}-thread raw-socket limit (nginx)",
     local(PUB, "async", "eps_x_limit"), 0.8, ">=", LOCAL),
    ("Publisher + outbox FULL: events/s >= 0.6x the Publisher without an outbox",
     local("Publisher + outbox synchronous=FULL", "async", "eps_x_publisher"), 0.6, ">=", LOCAL),
    ("Publisher + outbox NORMAL: events/s >= 0.8x the Publisher without an outbox",
     local("Publisher + outbox synchronous=NORMAL", "async", "eps_x_publisher"), 0.8, ">=", LOCAL),
    ("python -c 'import minipub' <= 1.1x python -c pass",
     lambda r: ratio(r, "import_ms", "import minipub", "python -c pass"), 1.1, "<=", LOCAL),
    ("interpreter start -> first event, pluggy not installed: <= 0.9x the http.client floor's",
     lambda r: ratio(r, "first_event_ms", NO_PLUGGY, FLOOR), 0.9, "<=", LOCAL + " with pluggy installed"),
    ("interpreter start -> first event, pluggy installed: <= 1.2x the http.client floor's",
     lambda r: ratio(r, "first_event_ms", AUTOLOAD_ON, FLOOR) if NO_PLUGGY in (r.get("first_event_ms") or {})
     else None, 1.2, "<=", LOCAL + " with pluggy installed"),
    ("peak RSS (minipub, default transport) <= 0.8x the http.client floor's",
     lambda r: ratio(r, "peak_rss_mib", f"minipub {r.get('default_transport')}", FLOOR), 0.8, "<=", LOCAL),
    (f"real Outpost: minipub Publisher ({THREADS} workers) accepted events/s >= 0.95x the raw-socket client's"
     f" ({THREADS} connections)", lambda r: dig(r, "real", "rows", f"minipub Publisher, {THREADS} workers",
                                                "eps_x_raw"), 0.95, ">=", REAL),
    ("real Outpost: minipub sequential publish accepted events/s >= 0.95x the raw-socket client's (sequential)",
     lambda r: dig(r, "real", "rows", "minipub publish, sequential", "eps_x_raw"), 0.95, ">=", REAL),
    ("real Outpost: minipub Publisher accepted events/s >= 3x outpost-sdk's best (sync or async)",
     lambda r: dig(r, "real", "rows", f"minipub Publisher, {THREADS} workers", "eps_x_sdk_best"), 3.0, ">=", REAL),
]


def latency_targets(report: Report) -> List[Tuple[str, Getter, float, str, str]]:
    """One target per level of the latency run (or one placeholder when it did not run)."""
    levels = (report.get("latency") or {}).get("levels") or [THREADS, 16, 64]
    latency_ms = (report.get("latency") or {}).get("latency_ms", 2.0)
    found: List[Tuple[str, Getter, float, str, str]] = []
    for k in levels:
        found.append((f"Publisher, {k} workers, {latency_ms:g} ms responder: events/s >= 0.8x"
                      f" min({k} / latency, the client's CPU bound)",
                      path("latency", "rows", f"Publisher, {k} workers", "eps_x_bound"),
                      0.8, ">=", LATENCY))
    return found


def evaluate(report: Report) -> List[Dict[str, Any]]:
    """Every target with its measured value and status ("met", "MISSED", "not measured")."""
    found = []
    for text, get, limit, direction, how in TARGETS[:6] + latency_targets(report) + TARGETS[6:]:
        value = get(report)
        if value is None:
            status = "not measured"
        else:
            status = "met" if (value >= limit if direction == ">=" else value <= limit) else "MISSED"
        found.append({"target": text, "measured": None if value is None else round(value, 3), "limit": limit,
                      "met": status == "met", "status": status, **({"how": how} if value is None else {})})
    return found


def info_lines(report: Report) -> List[str]:
    """Figures the issue asks for, without a limit: the outbox's group commits, bulk, the client's CPU share
    on the real server."""
    lines = []
    for name, modes in (report.get("cases") or {}).items():
        commits = (modes.get("async") or {}).get("group_commits")
        if commits:
            lines.append(f"[info  ] {name}: one group commit costs {commits['ms_per_commit']:.2f} ms and carries"
                         f" {commits['inserts_per_commit']:.1f} submits, {commits['outcomes_per_commit']:.1f}"
                         f" outcomes, {commits['claims_per_commit']:.1f} claims ({commits['commits']:,.0f} commits,"
                         f" {THREADS} submitting threads)")
    for name, row in ((report.get("bulk") or {}).get("rows") or {}).items():
        lines.append(f"[info  ] {name}: {row['events_per_s']:,.0f} events/s, {row['cpu_us']:,.1f} CPU us/event")
    for name, row in ((report.get("real") or {}).get("rows") or {}).items():
        share = row.get("client_cpu_share")
        if share is not None:
            lines.append(f"[info  ] real Outpost, {name}: the client's CPU share of the {report['real']['cores']}"
                         f" cores {share:.0%}, delivered {row['delivered_per_s']:,.0f} events/s end to end")
    return lines


def target_lines(found: List[Dict[str, Any]]) -> List[str]:
    lines = []
    for target in found:
        if target["status"] == "not measured":
            lines.append(f"[------] {target['target']}: not measured (run {target['how']})")
        else:
            lines.append(f"[{'met   ' if target['met'] else 'MISSED'}] {target['target']}: {target['measured']}")
    return lines
