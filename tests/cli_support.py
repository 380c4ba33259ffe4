"""Running the installed ``minipub`` command in subprocesses, and ``minipub serve`` in the background."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "minipub"


def minipub_command() -> List[str]:
    """The console script beside this Python when minipub is installed (CI: ``pip install -e .``).

    From a plain checkout (not installed) there is no console script; ``python -m minipub`` runs
    the same ``minipub.cli.main`` (PYTHONPATH points at the checkout, see ``cli_env``).
    """
    if _SCRIPT.exists():
        return [str(_SCRIPT)]
    return [sys.executable, "-m", "minipub"]


def cli_env(**extra: str) -> Dict[str, str]:
    """The test process's environment without Outpost or proxy settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OUTPOST_") and not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def secretfile_env(tmp: Path) -> Dict[str, str]:
    """Environment for a ``minipub`` subprocess in which the minipub-secretfile plugin is installed
    (its ``minipub`` entry point, from a dist-info under ``tmp``, and its source on the path) and
    plugin autoloading is on: whether or not the plugin is installed in this environment."""
    site = tmp / "site-secretfile"
    dist = site / "minipub_secretfile-0.1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: minipub-secretfile\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[minipub]\nsecretfile = minipub_secretfile.plugin\n")
    path = [str(ROOT), str(site), str(ROOT / "plugins" / "minipub-secretfile"), os.environ.get("PYTHONPATH")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path)), "MINIPUB_DISABLE_PLUGIN_AUTOLOAD": "0"}


def run_cli(
    args: Sequence[str], *, input: Optional[str] = None, timeout: float = 60, cwd: Optional[Path] = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``minipub ARGS`` to completion (bounded) and capture its output."""
    return subprocess.run([*minipub_command(), *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=cli_env(**env), cwd=cwd)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll ``predicate()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


class ServeProcess:
    """``minipub serve --port 0 ...`` in the background; stdout and stderr go to files."""

    def __init__(self, tmp: Path, *args: str, key: str = "serve-key", env: Optional[Dict[str, str]] = None) -> None:
        """``env``: the environment instead of ``OUTPOST_API_KEY=key``."""
        self.key = key
        self.out_path, self.err_path = tmp / "serve.out", tmp / "serve.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.process = subprocess.Popen([*minipub_command(), "serve", "--port", "0", *args], stdout=out,
                                            stderr=err, env=cli_env(**(env or {"OUTPOST_API_KEY": key})))
        self.url = ""
        try:
            wait_for(self._started, timeout=15)
        except BaseException:
            self.stop()
            raise

    def _started(self) -> bool:
        found = re.search(r"listening on (\S+)", self.err_path.read_text())
        if found:
            self.url = found.group(1)
        assert self.process.poll() is None, self.err_path.read_text()
        return bool(found)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def accepted(self) -> List[str]:
        """The event ids the server printed as newly accepted (duplicates excluded)."""
        return re.findall(r"^accepted id=(\S+) .* duplicate=false$", self.stdout, re.M)

    def stop(self) -> int:
        """SIGINT, then wait (bounded); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)
