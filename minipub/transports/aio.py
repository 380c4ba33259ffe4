"""The lean transport's async half: many requests in flight on one event loop, in one thread.

``LeanTransport.send_async`` runs here, on the running loop (this module, and asyncio, load on its
first call). Each connection is an ``asyncio.Protocol`` (made with ``loop.create_connection``; no
streams) that feeds the sans-IO parser (``h11parse.py``) as bytes arrive; one deadline per attempt
bounds connect, TLS, send and read (loop timers). TLS goes through ``ssl`` with the same verifying
context as the sync transports; proxies as ``lean.py`` does them (``CONNECT`` then
``loop.start_tls`` for HTTPS, absolute URLs for HTTP). Idle connections are pooled per origin *and
per event loop*; ``max_connections`` bounds how many are open per origin and loop (a request beyond
it waits for one, within its deadline).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from typing import TYPE_CHECKING, AsyncIterator, Dict, Optional, Tuple

from .. import _fork
from ..errors import ConnectError, ConnectionLostError, TransportTimeout
from .aio_pool import CLOSED, Connection, LoopPool
from .base import HTTPRequest, HTTPResponse
from .common import ConnectOptions, Deadline, Sealed, Stale, map_os_error, split_origin
from .head import HeaderLines, host_line, request_head
from .proxy import Proxy

if TYPE_CHECKING:
    from .common import Origin

__all__ = ["LoopSender"]


async def _keeper(pool: LoopPool) -> AsyncIterator[None]:
    """Started on a pool's loop: ``loop.shutdown_asyncgens()`` (``asyncio.run`` calls it after the
    last task) finalizes it, so no idle connection outlives its loop. The pool stays usable: other
    async generators finalized with it may still publish (their connections are not kept)."""
    try:
        yield
    finally:
        pool.end()


async def _tcp(loop: asyncio.AbstractEventLoop, name: str, port: int, connect_timeout: Optional[float],
               ) -> socket.socket:
    """A connected non-blocking socket to ``name:port`` (each address in turn, as ``socket.create_connection``)."""
    try:  # a numeric address resolves here without a thread
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except RuntimeError:  # an exit hook: the interpreter stopped its thread pools; resolve here
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    error: Optional[OSError] = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            connect = loop.sock_connect(sock, address)
            await (connect if connect_timeout is None else asyncio.wait_for(connect, connect_timeout))
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error or OSError(f"no address for {name}")


class LoopSender:
    """The lean transport's async half (``LeanTransport.send_async``): idle connections per origin
    *and per event loop*, at most ``limit`` open at once per origin and loop (None: no limit)."""

    def __init__(self, options: ConnectOptions, lines: HeaderLines, max_body: int, pool_size: int,
                 limit: Optional[int]) -> None:
        self._options = options
        self._lines = lines  # the sync half's: one cache of header lines for both
        self._max_body = max_body
        self._pool_size = pool_size
        self._limit = limit
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPool] = weakref.WeakKeyDictionary()
        self._targets: Dict[str, Tuple[Origin, str]] = {}
        self._closed = False
        self._pools_lock = threading.Lock()  # a loop adds its pool while another thread closes them all
        _fork.register(self)

    def _after_fork_in_child(self) -> None:
        """A forked child never uses nor keeps open the parent's connections: the pools of every loop
        are forgotten (their sockets closed), a new loop in the child starts its own."""
        pools, self._pools = list(self._pools.values()), weakref.WeakKeyDictionary()
        for pool in pools:
            pool.forget()

    def close(self) -> None:
        """Close each loop's idle connections (from any thread); later sends fail with ConnectError."""
        self._closed = True
        try:
            current: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        with self._pools_lock:
            pools = list(self._pools.items())
        for loop, pool in pools:
            if loop is current:
                pool.close()
            elif loop.is_running():
                try:
                    loop.call_soon_threadsafe(pool.close)
                except RuntimeError:  # closed meanwhile
                    pool.close(in_loop=False)
            else:
                pool.close(in_loop=False)

    # -- async ----------------------------------------------------------------------------------

    async def _pool(self, loop: asyncio.AbstractEventLoop) -> LoopPool:
        if self._closed:
            raise ConnectError(CLOSED)
        pool = self._pools.get(loop)
        if pool is None:
            # Every open connection may be idle at once between two requests: keep up to the limit.
            idle = max(self._pool_size, self._limit or 0)
            with self._pools_lock:
                pool = self._pools[loop] = LoopPool(loop, idle, self._limit)
            pool.keeper = _keeper(pool)
            await pool.keeper.__anext__()  # first iterated here: the loop finalizes it
        return pool

    async def send_async(self, request: HTTPRequest) -> HTTPResponse:
        """Send one request on the running loop; ``request.timeout`` bounds the whole attempt."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout
        fields = self._lines.get(request)  # bad headers fail here, before any connection
        found = self._targets.get(request.url)
        if found is None:
            found = self._targets[request.url] = split_origin(request.url)
        origin, target = found
        pool = self._pools.get(loop) or await self._pool(loop)
        while True:  # a reused connection the server had closed (Stale): its slot is taken again
            conn = pool.checkout(origin) or await pool.slot(origin, deadline)
            if conn is None:
                break  # leave to open one
            try:
                return await self._exchange(pool, origin, conn, target, fields, request, True, deadline)
            except Stale:
                pass
        try:
            conn = await self._connect(loop, origin, deadline)
        except BaseException:
            pool.release(origin)
            raise
        try:
            return await self._exchange(pool, origin, conn, target, fields, request, False, deadline)
        except Stale as stale:  # pragma: no cover - only reused connections are stale
            raise ConnectionLostError("connection lost") from stale

    async def _exchange(self, pool: LoopPool, origin: Origin, conn: Connection, target: str, fields: Sealed,
                        request: HTTPRequest, reused: bool, deadline: float) -> HTTPResponse:
        if not reused and (conn.dirty or conn.transport.is_closing()):  # checkout() checked a reused one
            # A fresh connection reset right after the connect: nothing was sent. Writing would be lost
            # (asyncio: the answer's full timeout) or raise (uvloop: RuntimeError).
            pool.discard(origin, conn)
            raise ConnectionLostError("connection lost before the request was sent")
        waiter = conn.start(pool.loop, self._max_body, request.method == "HEAD", reused)
        pool.watch(conn, deadline)
        try:  # written without a local holding the head (frame-local capture sees no key)
            conn.transport.write(request_head(request, conn, target, fields).data)
            response = await waiter
        except BaseException:  # Stale, an error, the timeout, a cancellation: the state is unknown
            pool.discard(origin, conn)
            raise
        finally:
            pool.unwatch(conn)
            conn.waiter = None
        if conn.reusable():
            pool.checkin(origin, conn)
        else:
            pool.discard(origin, conn)
        return response

    async def _connect(self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float) -> Connection:
        left = deadline - loop.time()
        if left <= 0:
            raise TransportTimeout("connect timed out")
        try:
            return await asyncio.wait_for(self._open(loop, origin, deadline), left)
        except asyncio.TimeoutError:
            raise TransportTimeout("connect timed out") from None

    async def _open(self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float) -> Connection:
        scheme, host, port = origin
        proxy = self._options.proxy(origin)
        name, number = (proxy.host, proxy.port) if proxy else (host, port)
        try:
            left = deadline - loop.time()
            connect_timeout = self._options.connect_timeout(Deadline(left))
            sock = await _tcp(loop, name, number, None if connect_timeout >= left else connect_timeout)
        except OSError as exc:
            raise map_os_error(exc, connecting=True, target=(name, number)) from None
        tls = scheme == "https"
        conn = Connection(loop, sock, host_line(host, port, scheme), proxy, not tls and proxy is not None)
        handshake = max(0.1, deadline - loop.time()) + 1.0  # the attempt's deadline ends it first
        try:
            if tls and proxy is None:
                await loop.create_connection(lambda: conn, sock=sock, ssl=self._options.ssl_context(),
                                             server_hostname=host, ssl_handshake_timeout=handshake)
            else:
                await loop.create_connection(lambda: conn, sock=sock)
                if tls and proxy is not None:
                    await self._tunnel(loop, conn, proxy, host, port)
                    conn.transport = await loop.start_tls(conn.transport, conn, self._options.ssl_context(),
                                                          server_hostname=host, ssl_handshake_timeout=handshake)
        except OSError as exc:
            conn.close_now() if conn.transport is None else conn.abort()
            raise map_os_error(exc, connecting=True) from None
        except BaseException:
            conn.close_now() if conn.transport is None else conn.abort()
            raise
        return conn

    @staticmethod
    async def _tunnel(loop: asyncio.AbstractEventLoop, conn: Connection, proxy: Proxy, host: str, port: int) -> None:
        """Ask an HTTP proxy for a tunnel to ``host:port`` (``CONNECT``)."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        waiter = conn.start(loop, 0, True, False)  # a CONNECT answer's body is never read
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        conn.transport.write(Sealed(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode(
            "latin-1")).data)
        del auth
        try:
            response = await waiter
        except ConnectionLostError as exc:
            raise ConnectError(f"could not connect: the proxy closed the connection ({exc})") from None
        finally:
            conn.waiter = None
        if not 200 <= response.status < 300:
            raise ConnectError(f"could not connect: the proxy answered CONNECT with HTTP {response.status}")
        if conn.dirty or conn.will_close:
            raise ConnectError("could not connect: the proxy sent more than its CONNECT answer")

