"""One event loop's connections for ``aio.py``: the protocol each one is, and the pool that holds them.

A :class:`Connection` feeds the sans-IO parser while a request waits and marks itself dirty when
anything arrives while it is idle; a :class:`LoopPool` keeps idle connections per origin, counts the
open ones against ``max_connections`` and hands a returned connection (or a free slot) to the first
request waiting for one. Both are used from their loop's thread only.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, AsyncIterator, Deque, Dict, List, Optional

from ..errors import ConnectError, MinipubError, TransportTimeout
from .base import HTTPResponse
from .common import Stale, map_os_error, readable
from .h11parse import ResponseParser, parse_whole
from .proxy import Proxy

if TYPE_CHECKING:
    from .common import Origin

__all__ = ["Connection", "LoopPool", "CLOSED"]

CLOSED = "transport is closed"
_NEVER = float("inf")


class Connection(asyncio.Protocol):
    """One connection: while a request waits, bytes go to its parser; while idle, any byte, EOF or
    error marks it ``dirty`` (never read as the next answer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, host_line: str, proxy: Optional[Proxy],
                 absolute: bool) -> None:
        self.loop = loop
        self.sock = sock
        self.host_line = host_line
        self.absolute = absolute  # plain HTTP through a proxy: the request target is the full URL
        self.proxy_auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if absolute and proxy and \
            proxy.authorization else ""
        self.transport: Any = None
        self.lines: Dict[Any, bytes] = {}  # the request lines the lean transport's head builder caches
        self.waiter: Optional[asyncio.Future[HTTPResponse]] = None
        self.parser: Optional[ResponseParser] = None
        self.max_body = 0
        self.head_request = False
        self.reused = False
        self.received = False
        self.will_close = False
        self.dirty = False

    # -- one exchange ---------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, max_body: int, head_request: bool,
              reused: bool) -> asyncio.Future[HTTPResponse]:
        """Expect one response: the future it will complete."""
        self.waiter = waiter = loop.create_future()
        self.parser, self.received = None, False
        self.max_body, self.head_request, self.reused = max_body, head_request, reused
        return waiter

    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` and drop the connection (its state is unknown)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()

    def timed_out(self) -> None:
        self.fail(TransportTimeout("timed out waiting for the response"))

    def reusable(self) -> bool:
        """After a response: nothing past its end, no close asked, the whole request sent (an
        early answer leaves some unsent)."""
        transport = self.transport
        return not (self.will_close or self.dirty or transport.is_closing() or transport.get_write_buffer_size())

    def clean(self) -> bool:
        """Idle and nothing arrived: neither through the loop nor still unread in the socket."""
        return not self.dirty and not self.transport.is_closing() and not readable(self.sock)

    def abort(self) -> None:
        self.dirty = True
        if self.transport is not None:
            self.transport.abort()

    def close_now(self) -> None:
        """Close from outside the loop's thread when the loop no longer runs (closed: the socket itself)."""
        self.dirty = True
        if self.transport is not None and not self.loop.is_closed():
            self.transport.abort()
        else:
            self.sock.close()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.dirty = True  # unsolicited, or past the end of the response
            return
        self.received = True
        try:
            parser = self.parser
            if parser is None:  # the common case: the whole response in one read
                whole = parse_whole(data, self.max_body, self.head_request)
                if whole is not None:
                    self.will_close = whole[1]
                    waiter.set_result(whole[0])
                    return
                parser = self.parser = ResponseParser(self.max_body, head_request=self.head_request)
            response = parser.feed(data)
        except MinipubError as error:  # ProtocolError: malformed
            self.fail(error)
            return
        if response is not None:
            self.will_close = parser.will_close
            waiter.set_result(response)

    def eof_received(self) -> Optional[bool]:
        self._ended(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._ended(exc)

    def _ended(self, exc: Optional[BaseException]) -> None:
        waiter = self.waiter
        self.dirty = True
        if waiter is None or waiter.done():
            return
        if self.reused and not self.received:
            waiter.set_exception(Stale())  # the server had closed the idle connection
        elif exc is not None:
            waiter.set_exception(map_os_error(exc, connecting=False))
        else:
            try:
                parser = self.parser or ResponseParser(self.max_body, head_request=self.head_request)
                waiter.set_result(parser.eof())
                self.will_close = True
            except MinipubError as error:  # cut short: ConnectionLostError
                waiter.set_exception(error)
        del exc  # its traceback may hold the frame that wrote the request (the key)


class LoopPool:
    """One event loop's connections: idle ones per origin, how many are open, who waits for one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, limit: Optional[int]) -> None:
        # A proxy: the pools are kept per loop in a WeakKeyDictionary, and a strong reference from
        # the value would keep every closed loop alive.
        self.loop: asyncio.AbstractEventLoop = weakref.proxy(loop)
        self.size = size
        self.limit = limit
        self.idle: Dict[Origin, List[Connection]] = {}
        self.open: Dict[Origin, int] = {}
        self.waiters: Dict[Origin, Deque[asyncio.Future[Optional[Connection]]]] = {}
        self.closed = False
        self.ending = False  # the loop is shutting down (``end``): no connection is kept idle any more
        self.keeper: Optional[AsyncIterator[None]] = None  # ends the pool when the loop finalizes it (aio.py)
        # The deadlines of the exchanges in flight, under one loop timer set for the earliest (a timer
        # per exchange costs a heap entry and a cancelled handle each).
        self.inflight: Dict[Connection, float] = {}
        self._timer: Optional[asyncio.TimerHandle] = None
        self._armed = _NEVER

    def watch(self, conn: Connection, deadline: float) -> None:
        """Time ``conn``'s exchange out at ``deadline`` (until :meth:`unwatch`)."""
        self.inflight[conn] = deadline
        if deadline < self._armed:
            self._arm(deadline)

    def unwatch(self, conn: Connection) -> None:
        self.inflight.pop(conn, None)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = at
        self._timer = self.loop.call_at(at, self._expire_due)

    def _expire_due(self) -> None:
        self._timer, self._armed = None, _NEVER
        now, earliest = self.loop.time(), _NEVER
        for conn, deadline in list(self.inflight.items()):
            if deadline <= now:
                del self.inflight[conn]
                conn.timed_out()
            elif deadline < earliest:
                earliest = deadline
        if earliest < _NEVER:
            self._arm(earliest)

    def checkout(self, origin: Origin) -> Optional[Connection]:
        """A clean idle connection, or None (dirty ones are dropped on the way)."""
        if self.closed:
            raise ConnectError(CLOSED)
        idle = self.idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.clean():
                return conn
            self.discard(origin, conn)
        return None

    async def slot(self, origin: Origin, deadline: float) -> Optional[Connection]:
        """Leave to open one more connection (None), or a connection handed back while waiting."""
        while True:
            open_ = self.open.get(origin, 0)
            if self.limit is None or open_ < self.limit:
                self.open[origin] = open_ + 1
                return None
            waiter: asyncio.Future[Optional[Connection]] = self.loop.create_future()
            self.waiters.setdefault(origin, deque()).append(waiter)
            timer = self.loop.call_at(deadline, _expire, waiter)
            try:
                conn = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._hand_back(origin, waiter.result())  # handed over, then cancelled: pass it on
                raise
            finally:
                timer.cancel()
            if conn is None or conn.clean():
                return conn  # a slot passed on (counted already), or a connection to reuse
            self.discard(origin, conn)
            conn = self.checkout(origin)
            if conn is not None:
                return conn

    def _hand_back(self, origin: Origin, conn: Optional[Connection]) -> None:
        if conn is None:
            self.release(origin)
        else:
            self.checkin(origin, conn)

    def _next_waiter(self, origin: Origin) -> Optional[asyncio.Future[Optional[Connection]]]:
        waiters = self.waiters.get(origin)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def checkin(self, origin: Origin, conn: Connection) -> None:
        """Keep a connection after a response: to the first waiter, else idle (or closed: pool full)."""
        waiter = None if self.closed else self._next_waiter(origin)
        if waiter is not None:
            waiter.set_result(conn)
            return
        idle = self.idle.setdefault(origin, [])
        if self.closed or self.ending or len(idle) >= self.size:
            self.discard(origin, conn)
        else:
            idle.append(conn)

    def discard(self, origin: Origin, conn: Connection) -> None:
        conn.abort()
        self.release(origin)

    def release(self, origin: Origin) -> None:
        """One connection fewer (or a slot unused): a waiter may open one instead."""
        waiter = None if self.closed else self._next_waiter(origin)
        if waiter is not None:
            waiter.set_result(None)  # the slot passes to it: the count stays
        else:
            self.open[origin] = self.open.get(origin, 1) - 1

    def forget(self) -> None:
        """In a forked child: close its copies of the sockets (close(2) only: the parent's connections
        are untouched) and never touch this loop again."""
        self.closed = True
        for conn in [*self.inflight, *(conn for conns in self.idle.values() for conn in conns)]:
            conn.sock.close()
        self.idle.clear()
        self.inflight.clear()

    def end(self) -> None:
        """In the loop, as it shuts down (``shutdown_asyncgens``): close the idle connections and keep
        none from now on. Sends still work (an async generator's cleanup may publish after this)."""
        self.ending = True
        self.keeper = None  # it holds the loop's finalizer hook, and so the loop
        if self._timer is not None:  # a timer handle holds its loop: none is left behind
            self._timer.cancel()
        self._timer, self._armed = None, _NEVER
        idle = [conn for conns in self.idle.values() for conn in conns]
        self.idle.clear()
        for conn in idle:
            conn.abort()

    def close(self, *, in_loop: bool = True) -> None:
        self.closed = True
        idle = [conn for conns in self.idle.values() for conn in conns]
        self.idle.clear()
        for conn in idle:
            conn.abort() if in_loop else conn.close_now()
        for waiters in self.waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectError(CLOSED))
        self.waiters.clear()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TransportTimeout("timed out waiting for a free connection (max_connections)"))
