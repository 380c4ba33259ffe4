"""A minipub transport that publishes into Outpost's RabbitMQ publish queue, with publisher confirms.

``send`` takes the same ``HTTPRequest`` the SDK builds for ``POST /publish`` and publishes its
body (the same JSON) to the queue: persistent (``delivery_mode`` 2), ``mandatory``, on a channel
in confirm mode. It returns only once the broker confirmed, as a 202 marked ``x-minipub-queued``
(the SDK turns it into a ``PublishResponse`` with ``duplicate``/``destination_ids`` None: the
queue's confirm is not Outpost's answer). A nack, a basic.return (unroutable) or a connection lost
before the confirm raises a minipub ``TransportError`` the retry loop retries; the body keeps its
event id, so a re-publish is deduplicated by Outpost.

pika's ``BlockingConnection`` fits a synchronous transport: one blocking call per publish, no
event loop or I/O thread of its own. It is not thread-safe, so each thread gets its own
connection (``threading.local``); every connection is tracked so ``close()`` closes them all.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from typing import Any, Collection, List, Optional, Set
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika  # type: ignore[import-untyped]
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from minipub import _fork
from minipub.errors import ConfigurationError, ConnectionLostError, MinipubError, TransportError, TransportTimeout
from minipub.response import QUEUED_HEADER
from minipub.transports.base import HTTPRequest, HTTPResponse
from minipub.transports.tls import make_ssl_context

from .errors import MessageNacked, Redactor, map_pika_error
from .message import check_message
from .topology import DEFAULT_DELIVERY_LIMIT, Topology

__all__ = ["RabbitMQTransport", "URL_ENV", "QUEUE_ENV", "DEFAULT_HEARTBEAT"]

#: Named after Outpost's own ``PUBLISH_RABBITMQ_SERVER_URL`` / ``PUBLISH_RABBITMQ_QUEUE`` settings.
URL_ENV = "OUTPOST_PUBLISH_RABBITMQ_URL"
QUEUE_ENV = "OUTPOST_PUBLISH_RABBITMQ_QUEUE"
#: Seconds; the broker closes a connection that misses two. An idle connection is checked before reuse.
DEFAULT_HEARTBEAT = 30
#: A connection idle this long is polled (heartbeats, a close from the broker) before it publishes.
IDLE_CHECK = 1.0
_CLOSE_TIMEOUT = 2.0
_QUEUED = b"rabbitmq"


class _Deadline(Exception):
    """Raised from the connection's own timer: the confirm (or a topology call) took too long."""


class _Link:
    """One thread's connection and its confirm-mode channel."""

    __slots__ = ("channel", "connection", "lock", "pid", "used")

    def __init__(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        self.connection = connection
        self.channel = channel
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.used = time.monotonic()


def _redacted_url(url: str, password: Optional[str]) -> str:
    parts = urlsplit(url)
    if password is None or parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RabbitMQTransport:
    """Publishes each request's body to Outpost's publish queue; see the module docstring.

    ``url``: the AMQP URL (``amqp://user:password@host:5672/vhost``, ``amqps://`` for TLS), else
    ``$OUTPOST_PUBLISH_RABBITMQ_URL``. ``queue``: Outpost's ``PUBLISH_RABBITMQ_QUEUE``, else
    ``$OUTPOST_PUBLISH_RABBITMQ_QUEUE``. ``exchange``/``routing_key``: the route (default: the
    default exchange, routing key = the queue). ``declare``: declare the safe topology (see
    ``topology.py``) instead of only checking that the queue exists. ``topics``: the server's
    ``TOPICS``, when it has some (a message with another topic would loop in the queue).
    """

    #: No HTTP is sent: the SDK demands no admin API key for this transport.
    needs_api_key = False
    supports_keepalive = True
    supports_proxy = False

    def __init__(
        self,
        url: Optional[str] = None,
        queue: Optional[str] = None,
        *,
        exchange: str = "",
        routing_key: Optional[str] = None,
        declare: bool = False,
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        topics: Optional[Collection[str]] = None,
        heartbeat: int = DEFAULT_HEARTBEAT,
        ssl_context: Optional[ssl.SSLContext] = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        **ignored: Any,
    ) -> None:
        url = url or os.environ.get(URL_ENV, "").strip()
        if not url:
            raise ConfigurationError(f"no RabbitMQ URL: pass url=... or set {URL_ENV} (Outpost's "
                                     "PUBLISH_RABBITMQ_SERVER_URL)")
        if not isinstance(url, str):
            raise ConfigurationError("url must be a str such as 'amqp://user:password@host:5672/'")
        queue = queue or os.environ.get(QUEUE_ENV, "").strip()
        if not queue:
            raise ConfigurationError(f"no publish queue: pass queue=... or set {QUEUE_ENV} (Outpost's "
                                     "PUBLISH_RABBITMQ_QUEUE)")
        try:
            parts = urlsplit(url)
            password = parts.password
            _ = parts.port
        except ValueError:
            raise ConfigurationError("the RabbitMQ URL is not a valid URL (its text is not shown: it may hold a "
                                     "password)") from None
        self._redact = Redactor(password and unquote(password), password, password and quote(unquote(password)))
        #: The URL with its password shown as ``***``.
        self.url = _redacted_url(url, password)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ConfigurationError(f"the RabbitMQ URL must start with amqp:// or amqps:// and name a host, "
                                     f"got {self.url!r}")
        try:
            params = pika.URLParameters(url)
        except Exception as exc:
            raise ConfigurationError(f"the RabbitMQ URL {self.url!r} is invalid: {self._redact(str(exc))}") from None
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 0:
            raise ConfigurationError(f"heartbeat must be an int >= 0 (seconds; 0 turns heartbeats off), "
                                     f"got {heartbeat!r}")
        if parts.scheme == "amqps":
            context = ssl_context or make_ssl_context(ca_file=ca_file, client_cert=client_cert,
                                                      client_key=client_key)
            params.ssl_options = pika.SSLOptions(context, server_hostname=parts.hostname)
        self._params = params
        self._heartbeat = heartbeat
        self.topology = Topology(queue, exchange, routing_key, declare=declare, delivery_limit=delivery_limit)
        if topics is not None and (isinstance(topics, str) or not all(isinstance(t, str) for t in topics)):
            raise ConfigurationError("topics must be a list of str (the Outpost server's TOPICS) or None")
        self._topics = None if topics is None else frozenset(topics)
        self._where = f"{parts.hostname}:{params.port}"
        self._properties = {"content_type": "application/json", "delivery_mode": 2}
        self._local = threading.local()
        self._links: Set[_Link] = set()
        self._lock = threading.Lock()
        self._closed = False
        _fork.register(self)

    def __repr__(self) -> str:
        return f"RabbitMQTransport(url={self.url!r}, {self.topology!r})"

    # -- connections ------------------------------------------------------------------------

    def _connection_params(self, timeout: float) -> pika.ConnectionParameters:
        p = self._params
        return pika.ConnectionParameters(
            host=p.host, port=p.port, virtual_host=p.virtual_host, credentials=p.credentials,
            ssl_options=p.ssl_options, heartbeat=self._heartbeat, socket_timeout=timeout, stack_timeout=timeout,
            blocked_connection_timeout=max(timeout, 1.0), connection_attempts=1, retry_delay=0,
            client_properties={"connection_name": "minipub-rabbitmq"},
        )

    def _connect(self, deadline: float) -> _Link:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportTimeout(f"connecting to {self._where} timed out")
        try:
            connection = pika.BlockingConnection(self._connection_params(remaining))
        except Exception as exc:
            raise map_pika_error(exc, self._redact, connecting=True, where=self._where) from None
        try:
            channel = self._bounded(connection, deadline, lambda: connection.channel())
            self._bounded(connection, deadline, channel.confirm_delivery)
            self._bounded(connection, deadline, lambda: self.topology.prepare(channel, self._where))
        except BaseException:
            _abandon(connection)
            raise
        link = _Link(connection, channel)
        with self._lock:
            if self._closed:
                _abandon(connection)
                raise TransportError("the RabbitMQ transport is closed")
            self._links.add(link)
        self._local.link = link
        return link

    def _bounded(self, connection: pika.BlockingConnection, deadline: float, call: Any) -> Any:
        """``call()`` on ``connection``, cut off at ``deadline`` by the connection's own I/O loop timer."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportTimeout(f"waiting for {self._where} timed out")
        impl = connection._impl  # the one pika internal used: its timers run inside the blocking wait

        def expire() -> None:
            raise _Deadline()

        timer = impl._adapter_call_later(remaining, expire)
        try:
            return call()
        except _Deadline:
            raise TransportTimeout(f"waiting for {self._where} timed out (no answer within the attempt's "
                                   "timeout)") from None
        except MinipubError:
            raise
        except Exception as exc:
            raise map_pika_error(exc, self._redact, connecting=False, where=self._where) from None
        finally:
            try:
                impl._adapter_remove_timeout(timer)
            except Exception:  # the connection is gone with its timers
                pass

    def _current(self) -> Optional[_Link]:
        link: Optional[_Link] = getattr(self._local, "link", None)
        if link is not None and (link.pid != os.getpid() or not link.connection.is_open):
            self._drop(link)
            return None
        return link

    def _drop(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        if getattr(self._local, "link", None) is link:
            self._local.link = None
        if link.pid == os.getpid():
            _abandon(link.connection)

    # -- the seam ---------------------------------------------------------------------------

    def send(self, request: HTTPRequest) -> HTTPResponse:
        """Publish ``request.body`` and wait for the broker's confirm (bounded by ``request.timeout``)."""
        if self._closed:
            raise TransportError("the RabbitMQ transport is closed")
        event_id = check_message(request.body, self._topics)
        deadline = time.monotonic() + request.timeout
        link = self._current()
        reused = link is not None
        while True:
            if link is None:
                link = self._connect(deadline)
            try:
                self._publish(link, request.body, event_id, deadline)
            except ConnectionLostError as error:
                self._drop(link)
                if reused and not isinstance(error, MessageNacked):
                    # An idle connection the broker (or a network device) had closed: once more, fresh.
                    # Safe: the id is the same, and Outpost deduplicates a message queued twice.
                    link, reused = None, False
                    continue
                raise
            except MinipubError:
                self._drop(link)
                raise
            link.used = time.monotonic()
            body = b'{"id":' + json.dumps(event_id).encode() + b"}"
            return HTTPResponse.lowered(202, {QUEUED_HEADER: "rabbitmq", "content-type": "application/json"}, body)

    def _publish(self, link: _Link, body: bytes, event_id: str, deadline: float) -> None:
        topology = self.topology
        # message_id is an AMQP short string (255 bytes at most); Outpost reads the id from the body anyway.
        message_id = event_id if len(event_id.encode()) <= 255 else None
        properties = pika.BasicProperties(message_id=message_id, **self._properties)
        with link.lock:
            if link.connection.is_closed:
                raise ConnectionLostError(f"the connection to {self._where} was closed")
            if time.monotonic() - link.used > IDLE_CHECK:  # heartbeats, or the broker's close, before reuse
                self._bounded(link.connection, deadline, lambda: link.connection.process_data_events(0))
            self._bounded(link.connection, deadline, lambda: link.channel.basic_publish(
                topology.exchange, topology.routing_key, body, properties, mandatory=True))

    def close(self) -> None:
        """Close every connection (each bounded to 2 s). Idempotent; later sends raise ``TransportError``."""
        with self._lock:
            self._closed = True
            links, self._links = list(self._links), set()
        for link in links:
            if link.pid != os.getpid():
                continue
            if not link.lock.acquire(timeout=_CLOSE_TIMEOUT):  # a send still running: cut it off
                _abandon(link.connection)
                continue
            try:
                self._close_link(link)
            finally:
                link.lock.release()

    def _close_link(self, link: _Link) -> None:
        try:
            self._bounded(link.connection, time.monotonic() + _CLOSE_TIMEOUT, link.connection.close)
        except MinipubError:
            _abandon(link.connection)

    # -- fork safety ------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent's connections are the parent's: never send on them, never close them (a close
        # frame would end the parent's session). The child connects anew on its first send.
        self._lock = threading.Lock()
        self._local = threading.local()
        self._links = set()

    def connections(self) -> List[pika.BlockingConnection]:
        """The open connections (one per thread that sent), for tests and diagnostics."""
        with self._lock:
            return [link.connection for link in self._links if link.connection.is_open]


def _abandon(connection: pika.BlockingConnection) -> None:
    """Drop a connection at once, without the closing handshake (its state is unknown)."""
    try:
        impl = connection._impl
        transport = getattr(impl, "_transport", None)
        if transport is not None:
            transport.abort()
        impl.ioloop.close()
    except Exception:
        pass
