"""The plugin's errors (all minipub ``TransportError``s) and the one map from pika's exceptions to them.

Retried by minipub's retry loop (connection errors): :class:`MessageNacked`, :class:`MessageReturned`,
:class:`QueueNotFound` and every lost or refused connection. Never retried: a refused login,
a topology that contradicts the queue's arguments, TLS and protocol failures.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Optional, Tuple, Type

import pika.exceptions as pe  # type: ignore[import-untyped]

from minipub.errors import (
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    TLSError,
    TransportError,
    TransportTimeout,
)

__all__ = ["MessageNacked", "MessageReturned", "QueueNotFound", "AccessRefused", "TopologyMismatch",
           "map_pika_error", "Redactor"]


_SSL_ALERT = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


class MessageNacked(ConnectionLostError):
    """The broker nacked the message (it did not take responsibility for it): publish it again."""


class MessageReturned(ConnectError):
    """The broker returned the message as unroutable (``mandatory``): no queue is bound to that route."""


class QueueNotFound(ConnectError):
    """The publish queue (or the exchange) does not exist on the broker; the message names it."""


class AccessRefused(TransportError):
    """The broker refused the login or the virtual host: the URL's credentials are wrong. Not retried."""


class TopologyMismatch(TransportError):
    """The queue or exchange exists with other arguments than the ones asked for. Not retried."""


class Redactor:
    """Replaces the URL's password (and its percent-encoded form) with ``***`` in any text."""

    __slots__ = ("_secrets",)

    def __init__(self, *secrets: Optional[str]) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _cause(exc: BaseException, kinds: Tuple[Type[BaseException], ...]) -> Optional[BaseException]:
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 10:
        if isinstance(current, kinds):
            found: BaseException = current
            return found
        first = current.args[0] if current.args else None
        nested: Optional[BaseException] = first if isinstance(first, BaseException) else None
        current = nested or current.__cause__ or current.__context__
        seen += 1
    return None


def map_pika_error(exc: BaseException, redact: Redactor, *, connecting: bool, where: str) -> TransportError:
    """pika's (or the socket's) failure as minipub's transport error; ``where`` names the broker."""
    text = redact(f"{type(exc).__name__}: {exc}")[:300]
    if isinstance(exc, pe.UnroutableError):
        return MessageReturned(f"the broker at {where} returned the message as unroutable (no queue bound to it)")
    if isinstance(exc, pe.NackError):
        return MessageNacked(f"the broker at {where} nacked the message; it may be published again safely")
    if isinstance(exc, (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError, pe.AuthenticationError)):
        return AccessRefused(f"the broker at {where} refused the login or the virtual host: {text}")
    if isinstance(exc, pe.ConnectionClosedByBroker) and exc.reply_code in (403, 530):
        return AccessRefused(f"the broker at {where} refused access: {text}")
    tls = _cause(exc, (ssl.SSLError,))
    if tls is not None and not isinstance(tls, ssl.SSLEOFError):
        if isinstance(tls, ssl.SSLCertVerificationError):
            return TLSError(f"TLS certificate verification failed for {where}: {tls.verify_message}")
        return TLSError(f"TLS error with {where}: {getattr(tls, 'reason', None) or type(tls).__name__}")
    alert = _SSL_ALERT.search(text)
    if alert is not None:  # pika keeps only the text of some TLS failures (a refused client certificate)
        return TLSError(f"TLS error with {where}: {alert.group(1)}")
    if isinstance(exc, (pe.IncompatibleProtocolError, pe.ProtocolSyntaxError)) and connecting:
        return ProtocolError(f"{where} does not speak AMQP 0-9-1: {text}")
    if _cause(exc, (socket.timeout, TimeoutError)) is not None or "timed out" in text.lower():
        return TransportTimeout(f"{'connecting to' if connecting else 'waiting for'} {where} timed out")
    if connecting:
        return ConnectError(f"could not connect to the broker at {where}: {text}")
    return ConnectionLostError(f"the connection to {where} was lost before the confirm: {text}")
