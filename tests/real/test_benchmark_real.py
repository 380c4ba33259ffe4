"""The real-server benchmark runs end to end against the real Outpost (tiny N, one round): no timing.

Every case publishes, every event reaches the webhook receiver exactly once, the real-server targets
are measured, and the admin key appears nowhere in the output or the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, RealOutpost

CASES = ("raw-socket, sequential", "raw-socket, 4 connections", "minipub publish, sequential",
         "minipub Publisher, 4 workers", "minipub Publisher, 4 workers, engine=threads",
         "minipub Publisher, 4 workers, asyncio loop", "outpost-sdk, sequential", "outpost-sdk async, 4 in flight")


def test_real_benchmark_delivers_every_event_once(real_outpost: RealOutpost, tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env.update(OUTPOST_API_BASE_URL=real_outpost.base_url, OUTPOST_API_KEY=real_outpost.api_key,
               REAL_OUTPOST_DIR=str(real_outpost.state))
    n = 20
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--real", "--n", str(n), "--rounds", "1",
         "--drain-timeout", "60", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    for where in (result.stdout, result.stderr, text):
        assert real_outpost.api_key not in where and real_outpost.api_key[5:20] not in where
    report = json.loads(text)
    rows = report["real"]["rows"]
    have_sdk = any(k.startswith("outpost-sdk") for k in rows)
    assert set(rows) == {case for case in CASES if have_sdk or not case.startswith("outpost-sdk")}
    for name, row in rows.items():
        assert row["events_per_s"] > 0 and row["cpu_us"] > 0, name
        assert row["delivered"] == n and row["all_delivered"] and row["duplicates"] == 0, (name, row)
        assert row["delivered_per_s"] > 0 and 0 < row["client_cpu_share"] <= 1
    assert rows["raw-socket, 4 connections"]["eps_x_raw"] == 1.0
    if (real_outpost.state / "outpost" / "outpost.pid").is_file():  # started here: its processes' CPU is read
        for row in rows.values():
            assert set(row["server_cpu_us_by"]) == {"outpost", "redis", "rabbitmq", "postgresql"}
        # /proc counts in clock ticks (10 ms): summed over the cases, Outpost's share is well above one
        assert sum(row["server_cpu_us_by"]["outpost"] for row in rows.values()) > 0
    status = {t["target"]: t["status"] for t in report["targets"] if t["target"].startswith("real Outpost")}
    assert len(status) == 3
    assert all(s in ("met", "MISSED") for t, s in status.items() if have_sdk or "outpost-sdk" not in t)
    assert "real Outpost (" in result.stdout
