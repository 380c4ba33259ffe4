"""``minipub bulk`` on a file of N lines against the local server, with and without ``--outbox``.

Each run is a fresh ``python -m minipub bulk FILE`` (default ``--concurrency``); events/s is lines over
the command's wall time (interpreter start included, small against 100,000 lines), CPU per event the
child's user+sys time (``RUSAGE_CHILDREN``) over the lines.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from cases import KEY, TENANT, TOPIC, event_data

MODES: Dict[str, List[str]] = {
    "minipub bulk": [],
    "minipub bulk --outbox (FULL)": ["--outbox", "{tmp}/bulk.outbox.db"],
    "minipub bulk --outbox --outbox-sync NORMAL": ["--outbox", "{tmp}/bulk.outbox.db", "--outbox-sync", "NORMAL"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(url: str, lines: Path, extra: List[str], env: Dict[str, str]) -> Tuple[float, float]:
    count = sum(1 for _ in lines.open())
    with tempfile.TemporaryDirectory(prefix="minipub-bench-bulk-") as tmp:
        command = [sys.executable, "-m", "minipub", "bulk", str(lines), "--base-url", url, "--progress", "none",
                   "--rejects", f"{tmp}/rejects.ndjson", *(part.format(tmp=tmp) for part in extra)]
        cpu, wall = children_cpu(), time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env, cwd=tmp)
        wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    if result.returncode != 0:
        raise RuntimeError(f"minipub bulk exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return count / wall, cpu / count * 1e6


def run_bulk(url: str, n_lines: int, rounds: int, env: Dict[str, str],
             modes: Optional[Dict[str, List[str]]] = None) -> Dict[str, Any]:
    modes = modes or MODES
    env = {**env, "OUTPOST_API_KEY": KEY}
    samples: Dict[str, List[Tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="minipub-bench-bulk-input-") as tmp:
        path = Path(tmp) / "events.ndjson"
        with path.open("w") as out:
            for i in range(n_lines):
                out.write(json.dumps({"tenant_id": TENANT, "topic": TOPIC, "data": event_data(i)}) + "\n")
        names = list(modes)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples.setdefault(name, []).append(one_run(url, path, modes[name], env))
            print(f"  bulk round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    rows = {name: {"events_per_s": statistics.median(e for e, _ in runs),
                   "cpu_us": statistics.median(c for _, c in runs)} for name, runs in samples.items()}
    return {"lines": n_lines, "rounds": rounds, "cpus": os.cpu_count(), "rows": rows}
