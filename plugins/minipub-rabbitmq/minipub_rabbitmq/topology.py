"""Where messages go, and checking (default) or declaring (``declare=True``) it on each new connection.

Default: Outpost's own dev tool's route (the default exchange ``""``, routing key = the queue
name). Outpost never declares its publish queue: the operator does; by default the transport only
checks that the queue (and a named exchange) exists, with passive declares.

``declare=True`` declares the safe topology: the queue durable and *quorum* with
``x-delivery-limit`` (a message Outpost keeps nacking with requeue is not redelivered forever) and
``x-dead-letter-exchange`` (it lands, after the limit, in ``<queue>.dead-letter`` to be looked at
instead of being dropped); with a named exchange, a durable topic exchange bound to the queue.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pika.exceptions as pe  # type: ignore[import-untyped]
from pika.adapters.blocking_connection import BlockingChannel  # type: ignore[import-untyped]

from minipub.errors import ConfigurationError

from .errors import QueueNotFound, TopologyMismatch

__all__ = ["Topology", "DEFAULT_DELIVERY_LIMIT"]

DEFAULT_DELIVERY_LIMIT = 5


class Topology:
    """The queue, exchange and routing key a transport publishes to, and whether it declares them."""

    __slots__ = ("binding_key", "declare", "delivery_limit", "exchange", "queue", "routing_key")

    def __init__(self, queue: str, exchange: str = "", routing_key: Optional[str] = None, *, declare: bool = False,
                 delivery_limit: int = DEFAULT_DELIVERY_LIMIT, binding_key: Optional[str] = None) -> None:
        for name, value in (("queue", queue), ("exchange", exchange)):
            if not isinstance(value, str) or len(value.encode()) > 255:
                raise ConfigurationError(f"{name} must be a str of at most 255 bytes, got {value!r}")
        if not queue:
            raise ConfigurationError("queue must name Outpost's publish queue (its PUBLISH_RABBITMQ_QUEUE)")
        if routing_key is not None and (not isinstance(routing_key, str) or len(routing_key.encode()) > 255):
            raise ConfigurationError(f"routing_key must be a str of at most 255 bytes, got {routing_key!r}")
        if type(declare) is not bool:
            raise ConfigurationError("declare must be True or False")
        if type(delivery_limit) is not int or delivery_limit < 1:
            raise ConfigurationError(f"delivery_limit must be an int >= 1, got {delivery_limit!r}")
        self.queue = queue
        self.exchange = exchange
        self.routing_key = queue if routing_key is None and not exchange else (routing_key or "")
        self.binding_key = binding_key if binding_key is not None else (self.routing_key or "#")
        self.declare = declare
        self.delivery_limit = delivery_limit

    @property
    def dead_letter(self) -> str:
        """The dead-letter exchange and queue of the declared topology."""
        return f"{self.queue}.dead-letter"

    def queue_arguments(self) -> Dict[str, Any]:
        return {"x-queue-type": "quorum", "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_letter}

    def __repr__(self) -> str:
        return (f"Topology(queue={self.queue!r}, exchange={self.exchange!r}, routing_key={self.routing_key!r}, "
                f"declare={self.declare})")

    def prepare(self, channel: BlockingChannel, where: str) -> None:
        """Check (passive) or declare the topology on a new channel; raise a clear error when it is wrong."""
        try:
            if self.declare:
                self._declare(channel)
            else:
                if self.exchange:
                    channel.exchange_declare(self.exchange, passive=True)
                channel.queue_declare(self.queue, passive=True)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise QueueNotFound(
                    f"{'the exchange ' + repr(self.exchange) + ' or ' if self.exchange else ''}the queue "
                    f"{self.queue!r} does not exist on {where}: Outpost consumes the queue named by its "
                    f"PUBLISH_RABBITMQ_QUEUE setting and never declares it; declare it (or pass declare=True, "
                    f"or set OUTPOST_PUBLISH_RABBITMQ_QUEUE to Outpost's queue)") from None
            if exc.reply_code == 406:
                raise TopologyMismatch(
                    f"the queue {self.queue!r} (or its exchange) on {where} exists with other arguments than "
                    f"{self.queue_arguments()!r}: {exc.reply_text}; use it as it is (declare=False) or "
                    f"migrate it") from None
            raise

    def _declare(self, channel: BlockingChannel) -> None:
        channel.exchange_declare(self.dead_letter, exchange_type="fanout", durable=True)
        channel.queue_declare(self.dead_letter, durable=True)
        channel.queue_bind(self.dead_letter, self.dead_letter)
        channel.queue_declare(self.queue, durable=True, arguments=self.queue_arguments())
        if self.exchange:
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            channel.queue_bind(self.queue, self.exchange, routing_key=self.binding_key)
