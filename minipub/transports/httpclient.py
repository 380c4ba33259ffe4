"""The ``http.client`` transport: pooled keep-alive ``http.client`` connections, thread-safe.

``http.client`` writes the request; minipub reads the answer with its own parser (``h11parse``)
and bounds the whole attempt with one deadline, so every built-in transport keeps one rule for
framing, caps, time and errors. The same connection classes serve the ``urllib`` transport.
"""

from __future__ import annotations

import functools
import http.client
import socket
from typing import IO, TYPE_CHECKING, Any, Optional, Tuple, Union

from ..errors import MinipubError
from .base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from .common import (
    Deadline,
    PooledTransport,
    Sealed,
    Stale,
    header_block,
    map_os_error,
    read_response,
    send_request,
    split_origin,
)
from .h11parse import ResponseParser
from .proxy import Proxy

if TYPE_CHECKING:
    from .common import Origin

__all__ = ["HTTPClientTransport", "map_os_error", "read_capped", "split_origin", "BoundedHTTPConnection",
           "BoundedHTTPSConnection", "Attempt"]

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


class Attempt:
    """What a connection's current attempt knows: its deadline and body cap, whether the
    connection was reused or connected yet, whether the server answered before the upload ended."""

    __slots__ = ("connected", "deadline", "early", "max_body", "reused", "target")

    early: Optional[bytes]
    target: Optional[Tuple[str, int]]  # the host and port connected to (a proxy's, through one)

    def __init__(self, deadline: Deadline, max_body: int = DEFAULT_MAX_BODY, *, reused: bool = False) -> None:
        self.deadline = deadline
        self.max_body = max_body
        self.reused = reused
        self.connected = False
        self.target = None
        self.early = None  # the start of an answer that came before the upload ended


class _Response(http.client.HTTPResponse):
    """A response read by minipub's parser within the attempt's deadline (``minipub`` holds it)."""

    _method: Optional[str]

    def __init__(self, attempt: Attempt, sock: socket.socket, debuglevel: int = 0, method: Optional[str] = None,
                 url: Optional[str] = None) -> None:
        super().__init__(sock, debuglevel, method, url)
        self._attempt = attempt
        self._sock = sock
        self.minipub: Optional[HTTPResponse] = None

    def begin(self) -> None:
        if self.minipub is not None:
            return
        attempt, sock = self._attempt, self._sock
        parser = ResponseParser(attempt.max_body, head_request=self._method == "HEAD")
        response = read_response(sock, parser, attempt.deadline, sock.settimeout, reused=attempt.reused,
                                 first=attempt.early or None)
        if self.fp is not None:
            self.fp.close()
            self.fp = None  # type: ignore[assignment]  # nothing is left to read: the connection may take the next request
        headers = http.client.HTTPMessage()
        for name, value in response.headers.items():
            headers[name] = value
        self.msg = self.headers = headers
        self.status, self.reason, self.version = response.status, parser.reason, 11
        self.code = response.status
        self.length, self.chunked = 0, False
        self.will_close = parser.will_close or attempt.early is not None
        self.minipub = response


class _Bounded:
    """Mixed into ``http.client`` connections: every write and read is bounded by the attempt's deadline."""

    sock: Any
    timeout: Any
    minipub: Attempt
    #: A proxy that plain-HTTP requests go through (absolute URL, proxy credentials), else None.
    minipub_proxy: Optional[Proxy] = None

    def __init__(self, attempt: Attempt, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start(attempt)

    def start(self, attempt: Attempt) -> None:
        """The next exchange runs under ``attempt``."""
        self.minipub = attempt
        setattr(self, "response_class", functools.partial(_Response, attempt))  # noqa: B010 - an instance attribute

    def connect(self) -> None:
        self.timeout = self.minipub.deadline.left()
        self.minipub.target = (self.host, self.port)  # type: ignore[attr-defined]
        super().connect()  # type: ignore[misc]
        self.minipub.connected = True

    def send(self, data: Any) -> None:
        attempt = self.minipub
        if attempt.early is not None:
            return  # the server answered already: the rest of the request is not sent
        if self.sock is None:
            self.connect()
        if not isinstance(data, (bytes, bytearray)):
            super().send(data)  # type: ignore[misc]
            return
        attempt.early = send_request(self.sock, Sealed(bytes(data)), attempt.deadline, self.sock.settimeout)


class BoundedHTTPConnection(_Bounded, http.client.HTTPConnection):
    """``http.client.HTTPConnection`` bounded by an :class:`Attempt`, read by minipub's parser."""


class BoundedHTTPSConnection(_Bounded, http.client.HTTPSConnection):
    """``http.client.HTTPSConnection`` bounded by an :class:`Attempt`; the handshake gets the time left."""

    _context: Any
    _tunnel_host: Optional[str]
    host: str

    def connect(self) -> None:
        self.timeout = self.minipub.deadline.left()
        self.minipub.target = (self.host, self.port)
        http.client.HTTPConnection.connect(self)  # TCP, and the CONNECT tunnel if any
        self.sock.settimeout(self.minipub.deadline.left())
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._tunnel_host or self.host)
        self.minipub.connected = True


def reraise_clean(exc: MinipubError) -> MinipubError:
    """``exc`` without the frames it came through (``http.client``'s hold the request head)."""
    return exc.with_traceback(None)


Connection = Union[BoundedHTTPConnection, BoundedHTTPSConnection]


class HTTPClientTransport(PooledTransport[Connection]):
    """Keep-alive connections per origin, reused across calls and threads (one user at a time).

    ``proxy``: ``"env"`` (default: ``HTTP(S)_PROXY``/``NO_PROXY``), ``None`` (direct) or a URL.
    """

    # -- connections ---------------------------------------------------------------------

    def _socket(self, conn: Connection) -> Optional[socket.socket]:
        return conn.sock  # type: ignore[no-any-return]

    def _connect(self, origin: Origin, deadline: Deadline) -> Connection:
        scheme, host, port = origin
        proxy = self._options.proxy(origin)
        attempt = Attempt(deadline, self._max_body)
        conn: Connection
        if scheme == "https":
            conn = BoundedHTTPSConnection(attempt, proxy.host if proxy else host, proxy.port if proxy else port,
                                          context=self._options.ssl_context())
            if proxy:
                headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                conn.set_tunnel(host, port, headers=headers)
        else:
            conn = BoundedHTTPConnection(attempt, proxy.host if proxy else host, proxy.port if proxy else port)
        conn.minipub_proxy = proxy if scheme == "http" else None
        try:
            conn.timeout = self._options.connect_timeout(deadline)
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            target = (proxy.host, proxy.port) if proxy else (host, port)
            raise map_os_error(exc.with_traceback(None), connecting=True, target=target) from None
        sock = conn.sock
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    # -- sending -------------------------------------------------------------------------

    def send(self, request: HTTPRequest) -> HTTPResponse:
        header_block(request)  # the one header rule (a ValidationError naming the header)
        return self._roundtrip(request, self._exchange)

    def _exchange(
        self, request: HTTPRequest, _: Any, origin: Origin, conn: Connection, path: str, reused: bool,
        deadline: Deadline,
    ) -> HTTPResponse:
        # No local holds the headers: frame-local capture (error reporters) never sees the key.
        proxy = conn.minipub_proxy
        conn.start(Attempt(deadline, self._max_body, reused=reused))
        try:
            if proxy is None:  # the credentials revealed only inside the call that writes them
                conn.request(request.method, path, request.body, request.reveal_headers())
            else:  # plain http through a proxy: absolute URL, proxy credentials
                conn.request(request.method, request.url, request.body, {**request.reveal_headers(), **(
                    {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {})})
            response = conn.getresponse()
        except _STALE as exc:
            conn.close()
            exc.with_traceback(None)  # http.client's frames hold the request head
            if reused:
                raise Stale() from None
            raise map_os_error(exc.with_traceback(None), connecting=False) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_os_error(exc.with_traceback(None), connecting=False) from None
        except Stale:
            conn.close()
            raise
        except MinipubError as exc:
            conn.close()
            raise reraise_clean(exc) from None
        except BaseException:
            conn.close()
            raise
        result = response.minipub  # type: ignore[attr-defined]
        if response.will_close or result.truncated:
            conn.close()
        else:
            self._pool.checkin(origin, conn)
        return result  # type: ignore[no-any-return]
