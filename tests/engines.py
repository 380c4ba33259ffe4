"""Run a Publisher test module on each engine and event loop: ``from .engines import engine  # noqa: F401``.

The module's ``Publisher`` name is the real class for "auto" (the event loop for a transport with
``send_async``, e.g. the default lean: uvloop's when it is installed, as in the test extras), the
class with ``engine="threads"`` bound for "threads", and with asyncio's own loop for "asyncio".
"""

from __future__ import annotations

import asyncio
import functools
import sys
from typing import Any

import pytest

import minipub


def on_asyncio(*args: Any, **kwargs: Any) -> minipub.Publisher:
    """A Publisher whose event loop, when it runs one, is asyncio's own (``loop_factory``)."""
    sdk = args[0] if args else kwargs.get("sdk")
    native = sdk is None or (isinstance(sdk, minipub.SDK) and sdk.sends_natively_async())
    if kwargs.get("engine") != "threads" and native:
        kwargs.setdefault("loop_factory", asyncio.new_event_loop)
    return minipub.Publisher(*args, **kwargs)


@pytest.fixture(autouse=True, params=["auto", "asyncio", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    module = sys.modules[request.module.__name__]
    if request.param == "threads":
        monkeypatch.setattr(module, "Publisher", functools.partial(minipub.Publisher, engine="threads"))
    elif request.param == "asyncio":
        monkeypatch.setattr(module, "Publisher", on_asyncio)
    return str(request.param)


@pytest.fixture(autouse=True, params=["default", "asyncio"], name="event_loop_kind")
def each_event_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """For the loop engine's own tests: the default loop (uvloop's when installed), then asyncio's."""
    if request.param == "asyncio":
        monkeypatch.setattr(sys.modules[request.module.__name__], "Publisher", on_asyncio)
    return str(request.param)
