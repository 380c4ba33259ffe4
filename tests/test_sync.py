"""The one publish path is written as coroutines; the sync path steps them to the end (minipub/_sync.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from minipub._sync import ready, run_sync


def test_a_coroutine_of_ready_calls_runs_in_this_thread_without_a_loop() -> None:
    seen = []

    async def path() -> int:
        seen.append(threading.get_ident())
        return await ready(lambda x: x + 1)(41)

    assert run_sync(path()) == 42 and seen == [threading.get_ident()]
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # none was started


def test_errors_come_out_as_raised_with_their_traceback() -> None:
    async def path() -> None:
        await ready(int)("not a number")

    with pytest.raises(ValueError) as info:
        run_sync(path())
    assert any(entry.name == "path" for entry in info.traceback)


def test_something_that_suspends_is_refused_and_the_coroutine_closed() -> None:
    closed = []

    async def path() -> None:
        try:
            await asyncio.sleep(0)  # a real suspension: only an event loop could resume it
        finally:
            closed.append(True)

    with pytest.raises(RuntimeError, match="awaited something that suspends"):
        run_sync(path())
    assert closed == [True]
