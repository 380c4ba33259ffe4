"""The Publisher's workers as coroutines on one event loop, in one thread (``engine="loop"``).

Each worker is the Publisher's own worker coroutine (``publisher.py``); here it awaits its next job,
its send (``SDK.send_async``: the transport's ``send_async`` on this loop) and its pauses. The
submitting threads never touch the loop while it has work: a waiting worker leaves a future and
sets the handout's ``wanted`` flag, and only the ``put`` that finds it set wakes the loop (one
``call_soon_threadsafe``); the loop then hands ready jobs to the waiting workers, under the lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Awaitable, Callable, Deque, Optional

from .. import _log
from ..errors import ConfigurationError
from .jobs import Handout, Job
from .tracker import describe

__all__ = ["LoopWorkers", "Take", "Rest", "new_loop"]

Take = Callable[[], Awaitable[Optional[Job]]]
Rest = Callable[[float], Awaitable[None]]
Work = Callable[[Take, Rest, Rest], Awaitable[None]]


def new_loop(factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None) -> asyncio.AbstractEventLoop:
    """A new loop from ``factory``; by default uvloop's when it is installed (less CPU per event than
    asyncio's: the README's Performance section), else asyncio's."""
    if factory is None:
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            return asyncio.new_event_loop()
        factory = uvloop.new_event_loop
    try:
        loop = factory()
    except Exception as exc:
        raise ConfigurationError(f"the Publisher's loop_factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(loop, asyncio.AbstractEventLoop) or loop.is_closed():
        raise ConfigurationError(f"the Publisher's loop_factory must return a new event loop, got {loop!r}")
    return loop


class LoopWorkers:
    """``count`` worker coroutines on a loop of their own, fed from ``handout``; ``thread`` runs it."""

    def __init__(self, handout: Handout, count: int, name: str,
                 factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None) -> None:
        self._handout = handout
        self._count = count
        self._loop = new_loop(factory)
        #: The loop's implementation: the top package of its class ("asyncio", "uvloop", ...).
        self.kind = type(self._loop).__module__.split(".")[0]
        self._waiting: Deque[asyncio.Future[Optional[Job]]] = deque()  # touched in the loop only
        self._resting: Optional[asyncio.Event] = None  # set at close: pausing workers go on (made in the loop)
        self._closing = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, work: Work) -> None:
        """With the handout's lock held: start the thread running ``work(take, rest, nap)`` ``count`` times over."""
        self._work = work
        self._handout.waker = self._wake
        self.thread.start()

    def stop_resting(self) -> None:
        """From any thread (close): workers pausing after a failure stop waiting."""
        self._closing = True
        self._call(self._set_resting)

    # -- the loop's thread -----------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._main())
            loop.run_until_complete(loop.shutdown_asyncgens())  # transports close this loop's connections
        except BaseException as exc:  # pragma: no cover - a bug: flush() sees the events unsettled
            _log.log("ERROR", "the publisher's event loop stopped: %s", describe(exc))
        finally:
            with self._handout.work:
                self._handout.waker = None
            asyncio.set_event_loop(None)
            loop.close()

    async def _main(self) -> None:
        self._resting = asyncio.Event()
        if self._closing:
            self._resting.set()
        done = await asyncio.gather(*(self._work(self._take, self._rest, asyncio.sleep) for _ in range(self._count)),
                                    return_exceptions=True)
        for result in done:
            if isinstance(result, BaseException):  # pragma: no cover - a bug in a worker
                _log.log("ERROR", "a publisher worker stopped: %s", describe(result))

    async def _take(self) -> Optional[Job]:
        handout = self._handout
        with handout.work:
            if handout.stopping:
                return None
            if handout.ready:
                return handout.pop()
            waiter: asyncio.Future[Optional[Job]] = self._loop.create_future()
            self._waiting.append(waiter)
            handout.wanted = True
        return await waiter

    async def _rest(self, seconds: float) -> None:
        resting = self._resting
        assert resting is not None
        if resting.is_set():
            return
        try:
            await asyncio.wait_for(resting.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _hand_out(self) -> None:
        """In the loop: ready jobs to waiting workers (None to each once the handout stops)."""
        handout = self._handout
        with handout.work:
            waiting = self._waiting
            while waiting and (handout.ready or handout.stopping):
                waiter = waiting.popleft()
                if not waiter.done():
                    waiter.set_result(None if handout.stopping else handout.pop())
            if waiting and not handout.stopping:
                handout.wanted = True

    def _set_resting(self) -> None:
        if self._resting is not None:
            self._resting.set()

    # -- from other threads ----------------------------------------------------------------------

    def _wake(self) -> None:
        """With the lock held, from ``Handout.put``/``halt``: the loop hands out what is ready."""
        self._call(self._hand_out)

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: its workers are gone already
            pass
