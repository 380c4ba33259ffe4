"""The ``rabbitmq`` entry point: ``SDK(transport="rabbitmq")`` (never the default: it is asked for by name)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from minipub.hookspecs import hookimpl

from .transport import RabbitMQTransport

__all__ = ["minipub_transport", "NAME"]

NAME = "rabbitmq"
#: The client options this transport understands (others are ignored, as the hook asks).
OPTIONS = ("ssl_context", "ca_file", "client_cert", "client_key")


@hookimpl
def minipub_transport(name: Optional[str], options: Dict[str, Any]) -> Optional[RabbitMQTransport]:
    """A ``RabbitMQTransport`` from ``OUTPOST_PUBLISH_RABBITMQ_URL``/``_QUEUE`` for ``transport="rabbitmq"``."""
    if name != NAME:
        return None
    return RabbitMQTransport(**{key: options[key] for key in OPTIONS if options.get(key) is not None})
