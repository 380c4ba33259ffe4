"""The README's examples, and each plugin README's, run as written (against the embedded server)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from minipub.testing import OutpostServer

from .cli_support import cli_env, secretfile_env
from .conftest import API_KEY

README = Path(__file__).resolve().parents[1] / "README.md"


def example(heading: str) -> str:
    """The first python code block after a heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_the_custom_transport_example_runs(server: OutpostServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", server.url)
    code = example("### A custom transport")
    assert 20 <= len(code.strip().splitlines()) <= 45  # about 30 lines
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    (request,) = server.requests
    expected = hmac.new(b"gateway-secret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-body-signature"] == expected
    assert [e["topic"] for e in server.events] == ["user.created"]


def test_the_hook_reference_lists_every_hookspec() -> None:
    import inspect

    from minipub import hookspecs

    specs = {name: inspect.signature(fn) for name, fn in vars(hookspecs).items() if name.startswith("minipub_")}
    text = README.read_text(encoding="utf-8")
    table = text[text.index("### Hook reference"):text.index("### A custom transport")]
    listed = dict(re.findall(r"^\| `(minipub_\w+)\(([^)]*)\)`", table, re.M))
    assert set(listed) == set(specs) == set(hookspecs.__all__) - {"PROJECT", "hookspec", "hookimpl"}
    for name, signature in specs.items():
        assert listed[name] == ", ".join(signature.parameters), name
        assert len(vars(hookspecs)[name].__doc__ or "") > 200, f"{name} is not documented"


# -- every example of README.md and of each plugin README runs as written -----------------------
#
# Python blocks run in a subprocess, in a fresh directory, with OUTPOST_API_KEY and
# OUTPOST_API_BASE_URL pointing at an embedded server (whose key is the README's placeholder,
# "<ADMIN_API_KEY>"), and the plugins' sources importable; a block defining ``test_`` functions is
# run by pytest. Shell blocks (no language, or sh/bash/console) of a file run in order in one
# directory holding a copy of ``minipub/``, with ``python`` and ``minipub`` on PATH and the
# secretfile plugin installed; the port 3333 the README uses for ``minipub serve`` is replaced by a
# free one. A block that cannot run here follows a marker saying why:
# ``<!-- readme-test: not run: REASON -->``.

ROOT = README.parent
READMES = [README, *sorted((ROOT / "plugins").glob("*/README.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
MARKER = re.compile(r"<!-- readme-test: not run: (.+?) -->\s*\Z")
SHELL = ("", "sh", "bash", "console")
PLACEHOLDER_KEY = "<ADMIN_API_KEY>"


@dataclass
class Block:
    path: Path
    line: int
    language: str
    code: str
    not_run: Optional[str]

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> List[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        marker = MARKER.search(text[:match.start()].rstrip() + "\n")
        found.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2),
                           marker.group(1) if marker else None))
    return found


ALL = [block for path in READMES for block in blocks(path)]
PYTHON = [block for block in ALL if block.language == "python" and block.not_run is None]


def test_every_example_runs_or_says_why_not() -> None:
    kinds = {block.language for block in ALL}
    assert kinds <= {"python", "toml", "text", *SHELL}, kinds  # a new kind of block needs a runner here
    not_run = [block for block in ALL if block.not_run]
    assert all(block.language in ("python", *SHELL) for block in not_run)
    assert len(not_run) <= 15, [str(b) for b in not_run]  # the few that cannot run here
    markers = sum(path.read_text(encoding="utf-8").count("<!-- readme-test:") for path in READMES)
    assert markers == len(not_run)  # every marker stands right before a block
    # Every README has Python that runs here, but the queue plugin's: each of its examples needs a broker.
    needs_a_broker = {path for path in READMES if path.parent.name == "minipub-rabbitmq"}
    assert len(PYTHON) >= 12 and {b.path for b in PYTHON} == set(READMES) - needs_a_broker


@pytest.fixture
def example_env(tmp_path: Path) -> Iterator[Dict[str, str]]:
    """The environment the README's text describes, pointed at an embedded server."""
    with OutpostServer(PLACEHOLDER_KEY) as srv:
        plugins = [str(p) for p in sorted((ROOT / "plugins").glob("minipub-*"))]
        env = cli_env(OUTPOST_API_KEY=PLACEHOLDER_KEY, OUTPOST_API_BASE_URL=srv.url)
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *plugins])
        env["MINIPUB_EXAMPLE_SERVER"] = srv.url
        yield env


def undefined_names(code: str) -> List[str]:
    """Global names a block uses but never binds (imports, assignments, defs) and Python does not
    define: caught even where the line never runs (an ``on_error`` that is not called)."""
    import builtins
    import symtable

    top = symtable.symtable(code, "<example>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    used = set()
    tables = [top]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (table is top or symbol.is_global()):
                used.add(symbol.get_name())
    return sorted(used - bound - set(dir(builtins)))


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_example_runs(block: Block, example_env: Dict[str, str], tmp_path: Path) -> None:
    assert undefined_names(block.code) == [], block
    script = tmp_path / ("test_example.py" if re.search(r"^def test_", block.code, re.M) else "example.py")
    script.write_text(block.code, encoding="utf-8")
    command = [sys.executable, str(script)]
    if script.name.startswith("test_"):  # the pytest plugin's example: its tests must pass
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                   "minipub.testing.pytest_plugin", "--rootdir", str(tmp_path), str(script)]
    result = subprocess.run(command, cwd=tmp_path, env=example_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{block}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_run_in_order(path: Path, example_env: Dict[str, str], tmp_path: Path) -> None:
    shell = [block for block in blocks(path) if block.language in SHELL and block.not_run is None]
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    shutil.copytree(ROOT / "minipub", work / "minipub", ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "minipub").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m minipub "$@"\n')
    (bin_dir / "minipub").chmod(0o755)
    env = {**example_env, **secretfile_env(tmp_path)}  # autoload on: only the secretfile plugin on the path
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    for block in shell:
        code = block.code.replace("3333", str(_free_port()))
        process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = process.communicate(timeout=60)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # a server it left in the background
            except ProcessLookupError:
                pass
            process.wait(10)
        assert process.returncode == 0, f"{block}\n{code}\n{out[-3000:]}\n{err[-3000:]}"
        assert "Traceback" not in err, f"{block}\n{err[-3000:]}"
