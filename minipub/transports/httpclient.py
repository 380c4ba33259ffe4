"""The ``http.client`` transport: pooled keep-alive ``http.client`` connections, thread-safe."""

from __future__ import annotations

import http.client
import socket
from typing import IO, TYPE_CHECKING, Optional, Tuple

from .base import HTTPRequest, HTTPResponse
from .common import Origin, PooledTransport, Stale, map_os_error, split_origin
from .proxy import Proxy

if TYPE_CHECKING:
    pass

__all__ = ["HTTPClientTransport", "map_os_error", "read_capped", "split_origin"]

# Failures of a reused idle connection that mean "the server had closed it": send again once.
_STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)


def read_capped(stream: IO[bytes], max_body: int) -> Tuple[bytes, bool]:
    """At most ``max_body`` bytes of a response body and whether there was more.

    A body that ends before its ``Content-Length`` raises ``IncompleteRead`` (``read(n)`` alone
    would return it short, as if whole).
    """
    expected = getattr(stream, "length", None)
    body = stream.read(max_body + 1)
    if isinstance(expected, int) and len(body) < min(expected, max_body + 1):
        raise http.client.IncompleteRead(body, expected - len(body))
    if len(body) > max_body:
        return body[:max_body], True
    return body, False


class HTTPClientTransport(PooledTransport[http.client.HTTPConnection]):
    """Keep-alive connections per origin, reused across calls and threads (one user at a time).

    ``proxy``: ``"env"`` (default: ``HTTP(S)_PROXY``/``NO_PROXY``), ``None`` (direct) or a URL.
    """

    # -- connections ---------------------------------------------------------------------

    def _connect(self, origin: Origin, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = origin
        proxy = self._options.proxy(origin)
        connect_timeout = self._options.connect_timeout(timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                proxy.host if proxy else host, proxy.port if proxy else port,
                timeout=connect_timeout, context=self._options.ssl_context(),
            )
            if proxy:
                headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                conn.set_tunnel(host, port, headers=headers)
        else:
            conn = http.client.HTTPConnection(proxy.host if proxy else host, proxy.port if proxy else port,
                                              timeout=connect_timeout)
        conn._minipub_proxy = proxy if scheme == "http" else None  # type: ignore[attr-defined]
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc, connecting=True) from None
        sock = conn.sock
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    # -- sending -------------------------------------------------------------------------

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return self._roundtrip(request, lambda origin, conn, path, reused: self._exchange(
            origin, conn, path, request, reused=reused))

    def _exchange(
        self, origin: Origin, conn: http.client.HTTPConnection, path: str, request: HTTPRequest, *, reused: bool
    ) -> HTTPResponse:
        proxy: Optional[Proxy] = getattr(conn, "_minipub_proxy", None)
        headers = request.public_headers
        if proxy is not None:  # plain http through a proxy: absolute URL, proxy credentials
            path = request.url
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        try:
            if conn.timeout != request.timeout:  # settimeout is a system call: only on a change
                if conn.sock is not None:
                    conn.sock.settimeout(request.timeout)
                conn.timeout = request.timeout
            conn.request(request.method, path, request.body, request.reveal_headers(headers))  # the key only here
            response = conn.getresponse()
        except _STALE as exc:
            conn.close()
            if reused:
                raise Stale() from None
            raise map_os_error(exc, connecting=False) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc, connecting=False) from None
        try:
            body, truncated = read_capped(response, self._max_body)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc, connecting=False) from None
        result = HTTPResponse(response.status, dict(response.getheaders()), body, truncated)
        if truncated or response.will_close or not response.isclosed():
            conn.close()
        else:
            self._pool.checkin(origin, conn)
        return result

