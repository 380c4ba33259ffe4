"""``HttpxTransport``'s awaited half: ``send_async`` and ``aclose`` on ``httpx.AsyncClient``.

The same rules as ``send``: the request as given, no redirects, the body read raw up to the cap,
minipub's errors (``errors.py``) and one resend for an idle pooled connection found closed. The
whole attempt runs under one asyncio deadline, whose cancellation closes the connection it was
using; the async backend (``asyncbounded.py``) keeps the head cap and hears early answers; the
clients, one per running loop, are ``asyncclients.py``'s.
"""

from __future__ import annotations

import ssl
from typing import Any, Dict, List, Optional, Tuple

import httpx

from minipub.errors import TransportTimeout
from minipub.transports.base import HTTPRequest, HTTPResponse
from minipub.transports.proxy import Proxy

from .asyncbounded import BoundedAsyncBackend
from .asyncclients import LoopClients
from .bounded import Attempt, current, install_backend
from .errors import mapped, resend_fresh

__all__ = ["AsyncSending"]

_ProxyKey = Optional[Proxy]


class AsyncSending:
    """Mixed into ``HttpxTransport``, which provides what is declared here."""

    http2: bool
    _pool_size: int
    _max_body: int
    _user_client: Optional[httpx.Client]
    _async_clients: LoopClients

    def _url(self, request: HTTPRequest) -> httpx.URL:
        raise NotImplementedError

    def _proxy_key(self, url: httpx.URL) -> Tuple[_ProxyKey, Optional[Proxy]]:
        raise NotImplementedError

    def _context(self) -> ssl.SSLContext:
        raise NotImplementedError

    def _httpx_proxy(self, proxy: Optional[Proxy]) -> Optional[httpx.Proxy]:
        raise NotImplementedError

    def send(self, request: HTTPRequest) -> HTTPResponse:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _make_async_client(self, proxy: Optional[Proxy]) -> httpx.AsyncClient:
        # The whole attempt runs under one asyncio deadline (send_async), whose cancellation closes
        # the connection it was using; the backend keeps the head cap and hears early answers.
        limits = httpx.Limits(max_keepalive_connections=self._pool_size)
        transport = httpx.AsyncHTTPTransport(verify=self._context(), http2=self.http2,
                                             proxy=self._httpx_proxy(proxy), limits=limits, trust_env=False)
        install_backend(transport, BoundedAsyncBackend())  # the head cap, and answers heard during an upload
        return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False, headers=None)

    async def send_async(self, request: HTTPRequest) -> HTTPResponse:
        """:meth:`send` on the running event loop, through this loop's ``httpx.AsyncClient``.

        ``request.timeout`` bounds the whole attempt (connect, upload, answer, body): one deadline,
        whose cancellation closes the connection. With a caller's (sync) ``client``, :meth:`send`
        runs in a worker thread.
        """
        import asyncio

        url = self._url(request)
        if self._user_client is not None:
            return await asyncio.to_thread(self.send, request)
        key, proxy = self._proxy_key(url)
        client = await self._async_clients.get(key, proxy)
        token = current.set(Attempt(request.timeout))  # the head cap's count (asyncbounded.py)
        try:
            return await asyncio.wait_for(self._send_async(client, url, request), max(request.timeout, 0.001))
        except asyncio.TimeoutError:
            raise TransportTimeout(f"timed out (the attempt's {request.timeout:g} s ran out)") from None
        finally:
            current.reset(token)

    async def _send_async(self, client: httpx.AsyncClient, url: httpx.URL, request: HTTPRequest) -> HTTPResponse:
        timeout = httpx.Timeout(request.timeout).as_dict()
        for resend in (False, True):
            connected: List[str] = []

            async def trace(event: str, info: Dict[str, Any], connected: List[str] = connected) -> None:
                attempt = current.get()
                if attempt is not None:
                    attempt.trace(event, info)
                if "connect_tcp" in event:
                    connected.append(event)

            try:
                response = await client.send(httpx.Request(request.method, url, headers=request.headers,
                                                           content=request.body,
                                                           extensions={"timeout": timeout, "trace": trace}),
                                             stream=True, follow_redirects=False)
            except (httpx.HTTPError, RuntimeError, OSError) as exc:
                if resend_fresh(exc, resend, connected):
                    continue
                raise mapped(exc) from None
            try:
                body, truncated = await self._read_async(response)
            except (httpx.HTTPError, OSError) as exc:
                raise mapped(exc) from None
            finally:
                await response.aclose()
            return HTTPResponse(response.status_code, dict(response.headers.items()), body, truncated)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_async(self, response: httpx.Response) -> Tuple[bytes, bool]:
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self._max_body:
                return bytes(body[: self._max_body]), True
        return bytes(body), False

    async def aclose(self) -> None:
        """:meth:`close`, awaited: the running loop's async clients are closed before it returns."""
        self.close()
        await self._async_clients.aclose_running()
