"""The transport's ``httpx.AsyncClient``s: one per running event loop (and proxy), closed with the loop.

An AsyncClient belongs to the loop it first ran on, so each loop gets its own. When a client is
made, a small async generator (the loop's *keeper*) is started on that loop: ``asyncio.run``
(like any loop owner calling ``loop.shutdown_asyncgens()``) finalizes it after the last task, and
its ``finally`` closes the loop's clients there, so no connection outlives its loop. ``close()``
from the loop's own thread closes them with a task on it, from another thread through
``run_coroutine_threadsafe`` (bounded), on a stopped loop with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Dict, List, Optional, Set, Tuple

import httpx

from minipub.errors import ConnectError

if TYPE_CHECKING:
    from minipub.transports.proxy import Proxy

__all__ = ["LoopClients", "CLOSE_WAIT"]

#: How long ``close()`` waits (seconds) for clients of a loop running in another thread to close.
CLOSE_WAIT = 5.0

_Key = Any  # the proxy a client goes through (None: direct)


class _Loop:
    """One loop's clients, and the keeper that closes them when the loop finalizes."""

    __slots__ = ("clients", "keeper")

    def __init__(self) -> None:
        self.clients: Dict[_Key, httpx.AsyncClient] = {}
        self.keeper: Optional[AsyncIterator[None]] = None


async def _keeper(clients: Dict[_Key, httpx.AsyncClient]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await _aclose_all(clients)


async def _aclose_all(clients: Dict[_Key, httpx.AsyncClient]) -> None:
    while clients:  # one at a time: a cancelled closer leaves the rest to the keeper
        _, client = clients.popitem()
        await client.aclose()


class LoopClients:
    """``await get(key, proxy)``: the running loop's client for that proxy (made by ``make(proxy)``)."""

    def __init__(self, make: Callable[[Optional[Proxy]], httpx.AsyncClient]) -> None:
        self._make = make
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._closed = False
        self._closing: Set[asyncio.Future[None]] = set()  # close tasks, kept until they end

    async def get(self, key: _Key, proxy: Optional[Proxy]) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise ConnectError("transport is closed")
            entry = self._loops.get(loop)
            if entry is None:
                entry = self._loops[loop] = _Loop()
            client = entry.clients.get(key)
            if client is None:
                client = entry.clients[key] = self._make(proxy)
            start = entry.keeper is None
            if start:
                entry.keeper = _keeper(entry.clients)
        if start:
            assert entry.keeper is not None
            await entry.keeper.__anext__()  # first iterated here: the loop finalizes it
        return client

    def count(self) -> int:
        """How many async clients are open (over every loop)."""
        with self._lock:
            return sum(len(entry.clients) for entry in self._loops.values())

    def close(self) -> None:
        """No client is made after this; each loop's clients are closed as that loop allows."""
        with self._lock:
            self._closed = True
            loops: List[Tuple[asyncio.AbstractEventLoop, _Loop]] = list(self._loops.items())
        try:
            running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, entry in loops:
            if not entry.clients or loop.is_closed():
                continue  # a closed loop finalized its keeper (asyncio.run), or can run nothing now
            if loop is running:
                task = loop.create_task(_aclose_all(entry.clients))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(_aclose_all(entry.clients), loop)
                try:
                    future.result(CLOSE_WAIT)
                except Exception:
                    pass
            elif running is None:
                loop.run_until_complete(_aclose_all(entry.clients))

    async def aclose_running(self) -> None:
        """Close the running loop's clients now (``close()`` first)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.get(loop)
        if entry is not None:
            await _aclose_all(entry.clients)
