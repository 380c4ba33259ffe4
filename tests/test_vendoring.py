"""The core copied into another project, imported under another name, with no site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from minipub.testing import OutpostServer

from .conftest import API_KEY

PACKAGE = Path(__file__).resolve().parents[1] / "minipub"

SCRIPT = r"""
import sys
sys.path.insert(0, ".")  # -I leaves the working directory off sys.path: the app puts itself there
import theirapp._vendor.minipub as mp
from theirapp._vendor.minipub.errors import BadRequestError

std = set(sys.stdlib_module_names)
def foreign():
    return sorted({m.split(".")[0] for m in sys.modules} - std - {"theirapp", "__main__"})

assert foreign() == [], foreign()
assert "minipub" not in sys.modules
heavy = {"http.client", "ssl", "urllib.request", "email", "sqlite3", "asyncio", "pluggy", "socket"}
assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))  # they load on first use
with mp.SDK(sys.argv[1], server_url=sys.argv[2]) as sdk:
    response = sdk.publish.event(tenant_id="acme", topic="vendored", data={"ok": True})
assert isinstance(response, mp.PublishResponse)
try:
    with mp.SDK(sys.argv[1], server_url=sys.argv[2], transport="urllib") as sdk:
        sdk.publish.event(tenant_id="acme", topic="vendored", data={"ok": True}, http_headers={"X": "1"},
                          retries=mp.RetryConfig("none"))
except BadRequestError:
    raise
assert foreign() == [], foreign()
print(response.id)
"""


def test_vendored_copy_works_isolated(tmp_path: Path, server: OutpostServer) -> None:
    vendor = tmp_path / "theirapp" / "_vendor"
    vendor.mkdir(parents=True)
    (tmp_path / "theirapp" / "__init__.py").write_text("")
    (vendor / "__init__.py").write_text("")
    shutil.copytree(PACKAGE, vendor / "minipub", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, API_KEY, server.url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    assert [e["id"] for e in server.events][0] == event_id
    assert len(server.events) == 2


def test_core_imports_only_the_stdlib() -> None:
    script = (
        "import sys; sys.path.insert(0, '.'); import minipub; std = set(sys.stdlib_module_names);"
        "print(sorted({m.split('.')[0] for m in sys.modules} - std - {'minipub', '__main__'}))"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=PACKAGE.parent,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
