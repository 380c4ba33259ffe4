"""The README's custom-transport example, run as written against the embedded server."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from minipub.testing import OutpostServer

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
