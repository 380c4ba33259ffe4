"""Run a Publisher test module on both engines: ``from .engines import engine  # noqa: F401``.

The module's ``Publisher`` name is the real class for "auto" (the event loop, for a transport with
``send_async``, e.g. the default lean) and the class with ``engine="threads"`` bound for "threads".
"""

from __future__ import annotations

import functools
import sys

import pytest

import minipub


@pytest.fixture(autouse=True, params=["auto", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "threads":
        monkeypatch.setattr(sys.modules[request.module.__name__], "Publisher",
                            functools.partial(minipub.Publisher, engine="threads"))
    return str(request.param)
