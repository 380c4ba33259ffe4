"""``Publisher``: ``submit`` returns an event id at once; worker threads deliver.

submit (validate with ``fields.build``, assign the id) → a queue (``memory.MemoryQueue``, or
``pump.OutboxPump`` with an outbox: a durable row, group-committed) → worker → ``SDK.send`` (the one
retry loop; an empty retry budget makes a worker wait for a token, up to the event's deadline,
never fails the event) → the outcome reported to the queue, settled by the ``tracker``: delivered,
or failed for good (``on_error``, dead letters). With an outbox, a failure that may pass later is
not final: the row is due again later (capped backoff) and the worker pauses, so an outage costs
about one attempt per worker per pause.
"""

from __future__ import annotations

import atexit
import os
import random
import threading
import time as _time
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, List, Mapping, Optional, Tuple, Union

from .. import _fork, _log
from .._sync import ready, run_sync
from ..client import SDK
from ..errors import ConfigurationError, MinipubError
from ..fields import build
from ..models import PublishResponse
from ..request import new_event_id
from ..retry import BackoffStrategy, backoff_ceiling, is_final
from .gate import PROBING, KeyGate
from .jobs import DEAD, DEFERRED, DELIVERED, POSTPONED, Job, JobQueue, Outcome
from .memory import MemoryQueue
from .tracker import ErrorHandler, PublisherStats, Tracker, describe

if TYPE_CHECKING:
    import asyncio

    from typing_extensions import Unpack

    from ..fields import PublishOptions
    from .loop import LoopWorkers, Take
    from .pump import OutboxPump
    from .rows import DeadLetter
    from .store import Outbox

__all__ = ["Publisher"]

#: How a worker sends a job: ``SDK.send`` (made awaitable) or ``SDK.send_async``.
Send = Callable[..., Awaitable[PublishResponse]]
#: ``engine=``: worker threads, or worker coroutines on one event loop thread.
ENGINES = ("auto", "threads", "loop")

#: How often a worker coroutine looks whether a key probe was answered (seconds).
_PROBE_NAP = 0.02
#: After close()'s flush: how long the workers and the outbox thread get to stop (seconds).
_STOP_GRACE = 1.0


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not (value >= 0 if zero else value > 0):
        wanted = "an int" if integer else "a number"
        raise ConfigurationError(f"Publisher {name} must be {wanted} {'>= 0' if zero else '> 0'}, got {value!r}")


class Publisher:
    """Publish in the background: ``submit`` validates, assigns the id and returns it at once.

    ``sdk``: the client to send with (default: ``minipub.default_client()``). ``workers`` sends run
    at once over its pooled transport: as coroutines on one event loop thread when the transport has
    ``send_async`` and no observability plugin is installed (``engine="loop"``; the default ``lean``
    has it), else as threads (``engine="threads"``); ``engine="auto"`` picks. Without an outbox, at
    most ``max_queue`` events wait (``submit`` blocks for room, up to ``block_timeout``;
    ``block=False`` raises ``QueueFullError``); with ``outbox="path.db"`` events wait on disk and
    ``submit`` returns once the row is committed. ``on_error(event, error)`` hears of each event
    that failed for good (default: a WARNING log). After the server refused the key (401/403), one
    event per pause probes it and the others are not sent (kept in the outbox, or failed to
    ``on_error``) until a probe is accepted. Use as a context manager, or call ``close()``; open
    publishers are closed at exit (``exit_timeout``).
    """

    def __init__(
        self,
        sdk: Optional[SDK] = None,
        *,
        workers: int = 4,
        max_queue: int = 10_000,
        outbox: Union[str, os.PathLike[str], None] = None,
        on_error: Optional[ErrorHandler] = None,
        block: bool = True,
        block_timeout: Optional[float] = None,
        exit_timeout: float = 5.0,
        synchronous: str = "FULL",
        lease_seconds: float = 120.0,
        backoff_initial: float = 1.0,
        backoff_cap: float = 30.0,
        poll_interval: float = 1.0,
        engine: str = "auto",
        loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None,
    ) -> None:
        _positive("workers", workers, integer=True)
        _positive("max_queue", max_queue, integer=True)
        for name, value in (("exit_timeout", exit_timeout), ("lease_seconds", lease_seconds),
                            ("backoff_cap", backoff_cap), ("poll_interval", poll_interval)):
            _positive(name, value)
        _positive("backoff_initial", backoff_initial, zero=True)
        if block_timeout is not None:
            _positive("block_timeout", block_timeout, zero=True)
        if on_error is not None and not callable(on_error):
            raise ConfigurationError("on_error must be a callable taking (event, error)")
        if sdk is None:
            from ..oneliner import default_client

            sdk = default_client()
        elif not isinstance(sdk, SDK):
            raise ConfigurationError("sdk must be a minipub.SDK (or None for minipub.default_client())")
        if engine not in ENGINES:
            raise ConfigurationError(f"Publisher engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        native = sdk.sends_natively_async()
        if engine == "loop" and not native:
            raise ConfigurationError("Publisher engine='loop' needs a transport with send_async (e.g. the default "
                                     "'lean', or 'httpx') and no observability plugin; use engine='threads'")
        #: How the workers run: "loop" (coroutines on one event loop thread) or "threads".
        self.engine = ("loop" if native else "threads") if engine == "auto" else engine
        if loop_factory is not None and (self.engine != "loop" or not callable(loop_factory)):
            raise ConfigurationError("Publisher loop_factory must be a callable returning a new event loop, and "
                                     f"needs the event-loop engine (this publisher's is {self.engine!r})")
        self._loop_factory = loop_factory
        if outbox is not None and lease_seconds <= sdk.timeout_ms / 1000:
            raise ConfigurationError(
                f"lease_seconds ({lease_seconds}) must exceed the per-attempt timeout ({sdk.timeout_ms / 1000} s); "
                "keep it well above one full publish (all retries)"
            )
        self._sdk = sdk
        self._workers = workers
        self._max_queue = max_queue
        self._on_error = on_error
        self._block, self._block_timeout = block, block_timeout  # submit()'s defaults
        self.exit_timeout = exit_timeout
        self._lease = float(lease_seconds)
        self._backoff = BackoffStrategy(round(backoff_initial * 1000), round(backoff_cap * 1000), 2.0, 0)
        self._poll = float(poll_interval)
        self._closed = False
        self._close_result = True
        self._outbox: Optional[Outbox] = None
        if outbox is not None:
            from .store import Outbox

            self._outbox = Outbox(outbox, synchronous=synchronous)
        self._reset()
        try:
            self._start()  # an event loop that cannot be made (loop_factory) fails here
        except BaseException:
            if self._outbox is not None:
                self._outbox.close()
            raise
        _fork.register(self)
        _OPEN.add(self)
        _register_atexit()

    def _reset(self) -> None:
        """A fresh tracker, queue and threads (at start, and in a forked child)."""
        self._tracker = Tracker(self._on_error)
        self._owner = f"{os.getpid()}-{new_event_id()[:8]}"  # this publisher's name on the outbox's leases
        self._queue: JobQueue = MemoryQueue(self._tracker, self._max_queue)
        self._pump: Optional[OutboxPump] = None
        if self._outbox is not None:
            from .pump import OutboxPump

            self._queue = self._pump = OutboxPump(self._tracker, self._outbox, self._owner, workers=self._workers,
                                                  lease_seconds=self._lease, poll_interval=self._poll)
        self._resting = threading.Event()  # set at close: wakes workers pausing after a failure
        self._gate = KeyGate(self._pause)
        self._threads: List[threading.Thread] = []
        self._loop: Optional[LoopWorkers] = None
        self._started = False

    def _after_fork_in_child(self) -> None:
        """The child shares nothing with the parent: not its threads, locks or queue (the outbox closed
        its SQLite connection before the fork; each side reopens it on first use). The child's publisher
        starts fresh on first use; the parent keeps its own events."""
        closing = self._tracker.closing
        self._reset()
        self._tracker.closing = closing

    def _start(self) -> None:
        if self._started:
            return
        with self._tracker.lock:
            if self._started or self._tracker.closing:
                return
            if self.engine == "loop":
                from .loop import LoopWorkers  # asyncio loads only for this engine

                # The loop first: a loop_factory that fails leaves nothing started.
                self._loop = LoopWorkers(self._queue.handout, self._workers, "minipub-publisher-loop",
                                         self._loop_factory)
                self._queue.start()
                self._threads.append(self._loop.thread)
                self._loop.start(lambda take, rest, nap: self._work(take, self._sdk.send_async, rest, nap))
            else:
                self._queue.start()
                for number in range(self._workers):
                    thread = threading.Thread(target=self._thread_work, name=f"minipub-publisher-{number + 1}",
                                              daemon=True)
                    self._threads.append(thread)
                    thread.start()
            self._started = True

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f", outbox={self._outbox.path!r}" if self._outbox is not None else ""
        loop = f", event_loop={self.event_loop!r}" if self.event_loop else ""
        return f"Publisher(workers={self._workers}, engine={self.engine!r}{loop}{where}, closed={self._closed})"

    @property
    def event_loop(self) -> Optional[str]:
        """The event loop's implementation on the loop engine ("asyncio", or "uvloop" by default when
        it is installed), None with threads."""
        return self._loop.kind if self._loop is not None else None

    @property
    def sdk(self) -> SDK:
        """The client the workers send with."""
        return self._sdk

    @property
    def outbox(self) -> Optional[Outbox]:
        """The outbox (inspect pending events and dead letters), or None."""
        return self._outbox

    def submit(self, topic: str, data: Mapping[str, Any], *, block: Optional[bool] = None,
               block_timeout: Optional[float] = None, **fields: Unpack[PublishOptions]) -> str:
        """Take one event (``publish``'s arguments) and return its id without touching the network.

        Bad input raises ``ValidationError`` here. With an outbox, returns once the event is
        committed to disk. ``block``/``block_timeout`` override the publisher's settings.
        """
        request, retry_config, timeout_ms = build({"topic": topic, "data": data, **fields})
        self._start()
        self._queue.add(request, retry_config, timeout_ms, self._block if block is None else block,
                        self._block_timeout if block_timeout is None else block_timeout)
        return request.event_id

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything submitted before this call, and everything replayed from the outbox,
        is delivered or failed for good. Returns False if ``timeout`` (seconds) ran out first."""
        self._start()
        return self._tracker.flush(timeout, self._queue.alive)

    def close(self, timeout: Optional[float] = 30.0) -> bool:
        """Flush (up to ``timeout`` seconds), then stop the workers. Returns whether all was settled.

        Without an outbox, events still unsent when the time is up go to ``on_error`` (as
        ``PublisherClosedError``) and count as failed. With an outbox they stay on disk for the
        next publisher: rows this process had claimed but not started are released at once.
        """
        with self._tracker.lock:
            if self._tracker.closing:
                return self._close_result
            self._tracker.closing = True
        settled = self._tracker.flush(timeout, self._queue.alive) if self._started else True
        self._close_result = settled
        deadline = _time.monotonic() + _STOP_GRACE  # then stop: workers finish their current send
        self._queue.stop()
        self._resting.set()
        if self._loop is not None:
            self._loop.stop_resting()
        for thread in self._threads:
            thread.join(max(0.0, deadline - _time.monotonic()))
        self._queue.close(deadline)
        self._closed = True
        _OPEN.discard(self)
        return settled

    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        return self._tracker.stats()

    # -- dead letters (outbox) ---------------------------------------------------------------

    def _require_outbox(self) -> Tuple[Outbox, OutboxPump]:
        if self._outbox is None or self._pump is None:
            raise ConfigurationError("this Publisher has no outbox; pass Publisher(outbox='path.db')")
        return self._outbox, self._pump

    def dead_letters(self, limit: Optional[int] = 100) -> List[DeadLetter]:
        """Events that failed for good, oldest first."""
        return self._require_outbox()[0].dead_letters(limit)

    def replay_dead_letters(self, ids: Optional[Iterable[int]] = None) -> int:
        """Send dead letters (these ids, or all) again, with their event ids. Returns how many;
        ``flush`` waits for them too."""
        pump = self._require_outbox()[1]
        self._start()
        return pump.replay(ids)

    def purge_dead_letters(self, ids: Optional[Iterable[int]] = None, *, before: Optional[float] = None) -> int:
        """Delete dead letters (these ids, or all; only those failed before ``before``). Returns how many."""
        return self._require_outbox()[0].purge_dead_letters(ids, before=before)

    # -- workers ---------------------------------------------------------------------------

    def _thread_work(self) -> None:
        """A worker thread: the worker coroutine, run here with calls that block (never suspends)."""
        run_sync(self._work(ready(self._queue.take), ready(self._sdk.send), ready(self._resting.wait), None))

    async def _work(self, take: Take, send: Send, rest: Callable[[float], Awaitable[object]],
                    nap: Optional[Callable[[float], Awaitable[None]]]) -> None:
        """One worker, written once for threads and for the event loop (``loop.py``). ``nap``: how a
        coroutine waits for a key probe's answer (None: the thread waits in the gate)."""
        queue = self._queue
        streak = 0  # failures in a row that may pass later: this worker pauses longer after each
        while True:
            job = await take()
            if job is None:
                return
            closed = self._gate.admit(nap is None)
            while closed == PROBING and nap is not None:
                await nap(_PROBE_NAP)
                closed = self._gate.admit(False)
            if isinstance(closed, tuple):  # the key was refused: not sent; kept (outbox) or failed (memory)
                refusal, until = closed
                queue.report(job, Outcome(POSTPONED, refusal, until) if queue.defers else
                             Outcome(DEAD, refusal, _time.time()))
                continue
            outcome, passing = await self._deliver(job, queue.defers, send)
            self._gate.sent(outcome.error)
            queue.report(job, outcome)
            streak = streak + 1 if passing else 0
            if passing:
                await rest(self._pause(streak))

    def _pause(self, number: int) -> float:
        """Capped exponential backoff with equal jitter: in [ceiling/2, ceiling]."""
        return backoff_ceiling(self._backoff, number) * (0.5 + 0.5 * random.random())

    async def _deliver(self, job: Job, defers: bool, send: Send) -> Tuple[Outcome, bool]:
        """Send one job: its outcome, and whether it failed in a way that may pass later."""
        retried = 1 if job.rounds else 0  # a row due again: its first attempt here is a retry too

        def observe(number: int, error: MinipubError, delay: Optional[float]) -> None:
            nonlocal retried
            if delay is not None:
                retried += 1

        try:
            response = await send(job.request, retry_config=job.retry_config, timeout_ms=job.timeout_ms,
                                  on_retry=observe, wait_for_budget=True)
        except Exception as error:
            passing = isinstance(error, MinipubError) and not is_final(error)
            if passing and defers:
                return Outcome(DEFERRED, error, _time.time() + self._pause(job.rounds + 1), retried=retried), True
            return Outcome(DEAD, error, _time.time(), retried=retried), passing
        return Outcome(DELIVERED, duplicate=response.duplicate is True, retried=retried), False


#: Publishers not closed yet: closed (bounded by their exit_timeout) when the interpreter exits.
_OPEN: weakref.WeakSet[Publisher] = weakref.WeakSet()
_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_close_open_publishers)


def _close_open_publishers() -> None:
    for publisher in list(_OPEN):
        try:
            publisher.close(timeout=publisher.exit_timeout)
        except Exception as exc:  # pragma: no cover - never let exit fail
            _log.log("ERROR", "closing %r at exit failed: %s", publisher, describe(exc))
