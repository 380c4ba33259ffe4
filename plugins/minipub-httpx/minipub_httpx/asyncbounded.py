"""An httpcore async network backend that keeps minipub's attempt rules under ``httpx.AsyncClient``.

The whole attempt runs under one asyncio deadline (``HttpxTransport.send_async``); this backend
adds what a deadline cannot: the bytes read while a response head is awaited are capped
(``MAX_HEAD``, interim responses included, as the sync ``bounded.py``), a big HTTP/1.1 upload
listens while it writes, so a server that answers before the upload ended is heard (httpcore then
reads that answer), and a TLS failure after the handshake is httpcore's read or write error (so it
maps to minipub's ``TLSError``), never a bare ``ssl.SSLError``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Iterable, Optional

import httpcore

from .bounded import current

__all__ = ["BoundedAsyncBackend", "LISTEN_ABOVE"]

#: A write longer than this (bytes) listens for an early answer while it goes out; a shorter one
#: fits the socket buffers, so no answer can be left unheard behind it.
LISTEN_ABOVE = 256 * 1024


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel a task and wait until it ended; a cancellation of the caller still reaches the caller."""
    task.cancel()
    await asyncio.wait({task})


class BoundedAsyncStream(httpcore.AsyncNetworkStream):
    """A network stream whose head reads are capped and whose big writes listen for an answer."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._early = b""  # the start of an answer read while uploading

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        if self._early:
            data, self._early = self._early[:max_bytes], self._early[max_bytes:]
        else:
            try:
                data = await self._inner.read(max_bytes, timeout)
            except ssl.SSLError as exc:
                raise httpcore.ReadError(f"TLS error: {exc.reason or type(exc).__name__}") from exc
        attempt = current.get()
        if attempt is not None:
            attempt.count(data)
        return data

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        try:
            if len(buffer) <= LISTEN_ABOVE or self._http2():
                await self._inner.write(buffer, timeout)
                return
            await self._write_listening(buffer, timeout)
        except ssl.SSLError as exc:
            raise httpcore.WriteError(f"TLS error: {exc.reason or type(exc).__name__}") from exc

    async def _write_listening(self, buffer: bytes, timeout: Optional[float]) -> None:
        writing = asyncio.ensure_future(self._inner.write(buffer, timeout))
        reading = asyncio.ensure_future(self._inner.read(65536, timeout))
        try:
            await asyncio.wait({writing, reading}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this attempt is cancelled (its deadline)
            for task in (writing, reading):
                if not task.done():
                    await _settle(task)
                if not task.cancelled():
                    task.exception()  # retrieved: asyncio does not log it as lost
        answered = not reading.cancelled()  # bytes, the end of the stream, or a broken connection
        if answered and reading.exception() is None:
            self._early = reading.result()
        if not writing.cancelled() and writing.exception() is None:
            return  # the upload ended: an answer read meanwhile waits in _early
        if answered:  # httpcore now reads the answer (or the end) that came first
            raise httpcore.WriteError("the server answered before the request was sent whole")
        writing.result()  # the upload's own failure

    def _http2(self) -> bool:
        # h2 reads under its own lock: a second reader would take frames from under it
        tls = self._inner.get_extra_info("ssl_object")
        return tls is not None and tls.selected_alpn_protocol() == "h2"

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: Optional[str] = None,
                        timeout: Optional[float] = None) -> httpcore.AsyncNetworkStream:
        return BoundedAsyncStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._early:
            return True
        return self._inner.get_extra_info(info)


class BoundedAsyncBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams bounded as above."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: Optional[float] = None,
                          local_address: Optional[str] = None,
                          socket_options: Optional[Iterable[Any]] = None) -> httpcore.AsyncNetworkStream:
        return BoundedAsyncStream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: Optional[float] = None,
                                  socket_options: Optional[Iterable[Any]] = None) -> httpcore.AsyncNetworkStream:
        return BoundedAsyncStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
