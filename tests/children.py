"""Child processes for the outbox tests: ``tests/outbox_child.py`` runs, their JSON reports, forked children."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from .conftest import API_KEY

ROOT = Path(__file__).resolve().parents[1]


def outbox_child(mode: str, url: str, path: Path, count: int = 0, **env: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.outbox_child MODE URL KEY PATH COUNT`` (``env``: its ``CHILD_*`` settings)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen([sys.executable, "-m", "tests.outbox_child", mode, url, API_KEY, str(path), str(count)],
                            cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def killed_at_exit(children: List[subprocess.Popen[str]]) -> Iterator[List[subprocess.Popen[str]]]:
    """The children, killed if still running when the block ends (a failed test leaves none behind)."""
    try:
        yield children
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)


def reports(children: List[subprocess.Popen[str]], timeout: float = 60) -> List[Dict[str, Any]]:
    """Each ``drain`` child's last line (its stats as JSON), once it exited 0."""
    found = []
    for child in children:
        out, err = child.communicate(timeout=timeout)
        assert child.returncode == 0, err
        found.append(json.loads(out.strip().splitlines()[-1]))
    return found


def exit_code_of_fork(pid: int, timeout: float = 30) -> Optional[int]:
    """Wait for a forked child; its exit code, or None when it was still running at ``timeout`` (then killed)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)
