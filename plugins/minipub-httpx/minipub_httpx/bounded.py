"""An httpcore network backend that keeps minipub's attempt rules under httpx.

httpx's timeouts bound each read and write; minipub's ``request.timeout`` bounds the whole
attempt. Every socket operation of the attempt in progress (a context variable, set by
``HttpxTransport.send``) gets the time left; the bytes read while a response head is awaited
are capped (``MAX_HEAD``, interim responses included); a big upload waits for the socket to be
writable *or readable*, so a server that answers before the upload ended is heard (httpcore
then reads that answer).
"""

from __future__ import annotations

import contextvars
import socket
import time
from typing import Any, Iterable, Optional

import httpcore

from minipub.transports.common import Deadline, Sealed, send_request
from minipub.transports.h11parse import MAX_HEAD

__all__ = ["Attempt", "BoundedBackend", "current", "install_backend"]


class Attempt:
    """One attempt: its deadline, and how many head bytes were read (while ``in_head``)."""

    __slots__ = ("deadline", "head_bytes", "in_head")

    def __init__(self, timeout: float) -> None:
        self.deadline = Deadline(timeout)
        self.head_bytes = 0
        self.in_head = False

    def count(self, data: bytes) -> None:
        """Bytes read: while a head is awaited, at most ``MAX_HEAD`` in all (interim responses included)."""
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                raise httpcore.RemoteProtocolError(
                    f"invalid HTTP response: the response head is larger than {MAX_HEAD} bytes "
                    "(interim responses included)")

    def trace(self, event: str, info: Any) -> None:
        """httpcore's trace hook: which phase the attempt is in."""
        if event.endswith("receive_response_headers.started"):
            self.in_head = True
        elif "receive_response_headers." in event:
            self.in_head = False


#: The attempt running in this thread (or task), if any.
current: contextvars.ContextVar[Optional[Attempt]] = contextvars.ContextVar("minipub_attempt", default=None)


def _left(timeout: Optional[float], expired: type) -> Optional[float]:
    attempt = current.get()
    if attempt is None:
        return timeout
    left = attempt.deadline.at - time.monotonic()
    if left <= 0:
        raise expired("the attempt's timeout ran out")
    return left if timeout is None else min(timeout, left)


class BoundedStream(httpcore.NetworkStream):
    """A network stream whose reads and writes keep to the attempt's deadline and head cap."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._early = b""  # the start of an answer read while uploading

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        if self._early:
            data, self._early = self._early[:max_bytes], self._early[max_bytes:]
        else:
            data = self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))
        attempt = current.get()
        if attempt is not None:
            attempt.count(data)
        return data

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        attempt = current.get()
        sock = self._inner.get_extra_info("socket")
        if attempt is None or not isinstance(sock, socket.socket):
            self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))
            return
        try:
            early = send_request(sock, Sealed(bytes(buffer)), attempt.deadline, sock.settimeout)
        except (TimeoutError, BlockingIOError) as exc:
            raise httpcore.WriteTimeout(str(exc)) from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from None
        if early is not None:
            self._early = early
            raise httpcore.WriteError("the server answered before the request was sent whole")

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: Optional[str] = None,
                  timeout: Optional[float] = None) -> httpcore.NetworkStream:
        return BoundedStream(self._inner.start_tls(ssl_context, server_hostname,
                                                   _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._early:
            return True
        return self._inner.get_extra_info(info)


class BoundedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, its streams bounded by the attempt in progress."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: Optional[float] = None, local_address: Optional[str] = None,
                    socket_options: Optional[Iterable[Any]] = None) -> httpcore.NetworkStream:
        return BoundedStream(self._inner.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout),
                                                     local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: Optional[float] = None,
                            socket_options: Optional[Iterable[Any]] = None) -> httpcore.NetworkStream:
        return BoundedStream(self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout),
                                                             socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_backend(transport: Any, backend: Any) -> None:
    """Put ``backend`` under an ``httpx.(Async)HTTPTransport``'s connection pool (httpcore has no
    public way to pass one through httpx)."""
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):  # pragma: no cover - an httpx we do not know
        from minipub.errors import ConfigurationError

        raise ConfigurationError("this httpx/httpcore cannot take minipub's bounded network backend")
    pool._network_backend = backend
