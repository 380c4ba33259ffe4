#!/usr/bin/env bash
# Release check of the five distributions (minipub, minipub-httpx, minipub-secretfile, minipub-otel,
# minipub-rabbitmq):
# build each sdist and wheel (the wheel is built from the sdist, so the sdist is complete), `twine
# check` them, check their contents (the wheel holds exactly the package and py.typed; the sdist no
# test tree; an SPDX license and its file; each plugin bounded to minipub's minor series), then
# install the wheels into a fresh virtual environment and run the demo and plugins/acceptance.py
# from them. Needs network access to PyPI (build, twine, setuptools>=77, the plugins' dependencies).
#   bash .ci/packages.sh            # dists in ./dist; PYTHON=python3.12 to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python}
DIST=${DIST:-$ROOT/dist}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

echo "== tools (build, twine) in a virtual environment of their own"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q build twine

echo "== build: sdist, then the wheel from the sdist (from a clean copy: the clone gets no egg-info)"
"$PYTHON" -c 'import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], ignore=shutil.ignore_patterns(
    ".git", ".real-outpost", "*.egg-info", "build", "dist", ".tox", ".venv", "__pycache__", ".*_cache", ".hypothesis"))' "$ROOT" "$WORK/src"
rm -rf "$DIST" && mkdir -p "$DIST"
for project in . plugins/minipub-httpx plugins/minipub-secretfile plugins/minipub-otel plugins/minipub-rabbitmq; do
    "$WORK/tools/bin/python" -m build -q --outdir "$DIST" "$WORK/src/$project" >/dev/null
done
ls -1 "$DIST"

echo "== twine check"
"$WORK/tools/bin/python" -m twine check --strict "$DIST"/*

echo "== contents"
"$PYTHON" - "$DIST" "$ROOT" <<'PY'
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

dist, root = Path(sys.argv[1]), Path(sys.argv[2])
PROJECTS = {  # distribution -> (package, source directory in the clone)
    "minipub": ("minipub", root),
    "minipub_httpx": ("minipub_httpx", root / "plugins" / "minipub-httpx"),
    "minipub_secretfile": ("minipub_secretfile", root / "plugins" / "minipub-secretfile"),
    "minipub_otel": ("minipub_otel", root / "plugins" / "minipub-otel"),
    "minipub_rabbitmq": ("minipub_rabbitmq", root / "plugins" / "minipub-rabbitmq"),
}
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


wheels = sorted(dist.glob("*.whl"))
sdists = sorted(dist.glob("*.tar.gz"))
check(len(wheels) == 5 and len(sdists) == 5, f"5 wheels and 5 sdists: {[p.name for p in wheels + sdists]}")
for wheel in wheels:
    name = wheel.name.split("-")[0]
    package, source = PROJECTS[name]
    expected = {p.relative_to(source).as_posix() for p in (source / package).rglob("*")
                if p.is_file() and (p.suffix == ".py" or p.name == "py.typed") and "__pycache__" not in p.parts}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
    contents = {n for n in names if ".dist-info/" not in n}
    check(contents == expected, f"{wheel.name}: exactly the package {package}/ and py.typed "
          f"(extra {sorted(contents - expected)}, missing {sorted(expected - contents)})")
    check(any(n.endswith(".dist-info/licenses/LICENSE") for n in names), f"{wheel.name}: LICENSE in the dist-info")
    check(metadata["License-Expression"] == "MIT", f"{wheel.name}: License-Expression: MIT")
    check(not any(c.startswith("License ::") for c in metadata.get_all("Classifier") or []),
          f"{wheel.name}: no license classifier beside the expression")
    check(bool(metadata.get_all("Project-URL")), f"{wheel.name}: project URLs")
    check(metadata["Requires-Python"] == ">=3.9", f"{wheel.name}: Requires-Python >=3.9")
    requires = metadata.get_all("Requires-Dist") or []
    if name != "minipub":
        bound = [r for r in requires if r.replace(" ", "").startswith("minipub[plugins]")]
        check(len(bound) == 1 and "<0.2" in bound[0] and ">=0.1" in bound[0],
              f"{wheel.name}: requires minipub[plugins] of its minor series: {bound}")
    else:
        check(all("extra ==" in r for r in requires), f"{wheel.name}: no dependency outside extras: {requires}")
for sdist in sdists:
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    check(not any(n == "tests" or n.startswith("tests/") for n in names), f"{sdist.name}: no test tree")
    check({"LICENSE", "PKG-INFO", "pyproject.toml", "README.md"} <= names, f"{sdist.name}: LICENSE, README, pyproject")
if failures:
    sys.exit(f"{len(failures)} check(s) failed")
PY

echo "== the wheels in a fresh virtual environment: the demo and the plugin acceptance run"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$DIST"/*.whl opentelemetry-sdk
"$WORK/venv/bin/python" -m pip check
cd "$WORK"  # not the clone: everything imported comes from the installed wheels
"$WORK/venv/bin/python" -c "import minipub, sys; assert minipub.__file__.startswith(sys.prefix), minipub.__file__"
"$WORK/venv/bin/minipub" --version
env -u OUTPOST_API_KEY -u OUTPOST_API_BASE_URL "$WORK/venv/bin/python" -m minipub demo
env -u OUTPOST_API_KEY -u OUTPOST_API_BASE_URL "$WORK/venv/bin/python" "$ROOT/plugins/acceptance.py"
echo "packages: ok"
