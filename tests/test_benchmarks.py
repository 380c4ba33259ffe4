"""The benchmark script runs end to end (tiny N, one round, its own responder): a smoke test, no timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--n", "20", "--rounds", "1", "--startup-runs", "1",
         "--server", "responder", "--no-outpost-sdk", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["server"].startswith("python responder")
    cases = report["cases"]
    for name in ("raw-socket limit", "http.client floor", "minipub lean"):
        row = cases[next(k for k in cases if k.startswith(name))]
        assert row["seq"]["events_per_s"] > 0 and row["4 threads"]["cpu_us"] > 0
    assert cases["raw-socket limit"]["seq"]["cpu_x_limit"] == 1.0
    assert report["import_ms"]["import minipub"] > 0 and report["first_event_ms"]["minipub"] > 0
    assert report["peak_rss_mib"]["http.client floor"] > 0
    assert {t["target"].split(":")[0] for t in report["targets"]} >= {"python -c 'import minipub' <= 1.5x python -c pass"}
    assert "raw-socket limit" in result.stdout and "JSON:" in result.stdout
