"""minipub's transport contracts, kept by the httpx transport's async path (``send_async``).

The contracts call ``send``; here ``send`` awaits ``HttpxTransport.send_async`` on an event loop
that runs in its own thread, so every case of the contract (errors, deadlines, caps, keep-alive,
proxies, TLS, hostile servers) runs through the ``httpx.AsyncClient`` path.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

from minipub.testing import TransportContract
from minipub.testing.contract import HostileServerContract
from minipub.transports.base import HTTPRequest, HTTPResponse, Transport
from minipub_httpx import HttpxTransport


class AsyncPath:
    """An ``HttpxTransport`` whose ``send`` is its ``send_async``, awaited on a loop of its own."""

    supports_keepalive = True
    supports_proxy = True

    def __init__(self, **options: Any) -> None:
        self.inner = HttpxTransport(**options)
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        thread.start()
        weakref.finalize(self, _stop, self.loop, thread)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        before = self.inner.open_clients
        response = asyncio.run_coroutine_threadsafe(self.inner.send_async(request), self.loop).result(60)
        assert self.inner.open_clients == before == 0  # no sync client: the async path sent it
        return response

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.inner.aclose(), self.loop).result(10)
        assert self.inner.open_async_clients == 0


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


class TestHttpxAsyncPath(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return AsyncPath(**options)


class TestHttpxAsyncPathHTTP1(TransportContract):
    def make_transport(self, **options: Any) -> Transport:
        return AsyncPath(http2=False, **options)


class TestHostileHttpxAsyncPath(HostileServerContract):
    def make_transport(self, **options: Any) -> Transport:
        return AsyncPath(**options)
