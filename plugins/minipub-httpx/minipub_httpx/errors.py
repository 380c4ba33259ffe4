"""httpx's failures as minipub's transport errors, their frames (which hold the headers) dropped."""

from __future__ import annotations

import ssl
from typing import List, Optional

import httpx

from minipub.errors import ConnectError, ConnectionLostError, ProtocolError, TLSError, TransportError, TransportTimeout

__all__ = ["map_httpx_error", "mapped", "resend_fresh"]

_MAX_MESSAGE = 300
_LOST = ("disconnected", "peer closed", "incomplete", "connection closed", "connectionterminated")


def _ssl_cause(exc: BaseException) -> Optional[ssl.SSLError]:
    seen = 0
    cause: Optional[BaseException] = exc
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def _tls_error(cause: ssl.SSLError) -> TLSError:
    if isinstance(cause, ssl.SSLCertVerificationError):
        return TLSError(f"TLS certificate verification failed: {cause.verify_message}")
    return TLSError(f"TLS error: {cause.reason or type(cause).__name__}")


def _forget_frames(exc: BaseException) -> None:
    """Drop the frames of ``exc`` and of everything chained to it: httpx's and httpcore's frames
    hold the request headers (the key), which error reporters would record as frame locals."""
    seen = 0
    pending: List[Optional[BaseException]] = [exc]
    while pending and seen < 50:
        current_exc = pending.pop()
        if current_exc is None:
            continue
        seen += 1
        current_exc.with_traceback(None)
        pending.extend([current_exc.__cause__, current_exc.__context__])


def map_httpx_error(exc: Exception) -> TransportError:
    """An httpx failure as minipub's transport error (the message never carries headers)."""
    text = f"{type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
    if isinstance(exc, httpx.TimeoutException):
        return TransportTimeout("connect timed out" if isinstance(exc, httpx.ConnectTimeout)
                                else f"timed out ({type(exc).__name__})")
    tls = _ssl_cause(exc)
    if tls is not None:
        return _tls_error(tls)
    if isinstance(exc, (httpx.ProxyError, httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ConnectError(f"could not connect: {text}")
    if isinstance(exc, httpx.RemoteProtocolError):
        if any(marker in str(exc).lower() for marker in _LOST):
            return ConnectionLostError(f"connection lost: {text}")
        return ProtocolError(f"invalid HTTP response: {text}")
    if isinstance(exc, httpx.LocalProtocolError):
        return ProtocolError(f"the request could not be sent as HTTP: {text}")
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return ConnectionLostError(f"connection lost: {text}")
    return TransportError(f"request failed: {text}")


def resend_fresh(exc: Exception, resend: bool, connected: List[str]) -> bool:
    """Whether a failed send goes once more on a fresh connection: the first try, on a pooled
    connection (no new one was opened) that turned out closed."""
    return (not resend and not connected and isinstance(exc, httpx.HTTPError)
            and isinstance(map_httpx_error(exc), ConnectionLostError))


def mapped(exc: Exception) -> TransportError:
    """A failure of httpx (or of a closed caller's client) as minipub's, its frames dropped."""
    _forget_frames(exc)
    if isinstance(exc, RuntimeError):  # the caller's client was closed
        return ConnectError(f"the httpx client cannot send: {exc}")
    if isinstance(exc, OSError):  # not mapped by httpcore (a TLS alert after the handshake, say)
        tls = _ssl_cause(exc)
        return _tls_error(tls) if tls is not None else ConnectionLostError(f"connection lost: {type(exc).__name__}")
    return map_httpx_error(exc)
