"""minipub-rabbitmq: publish into Outpost's RabbitMQ publish queue, with publisher confirms.

``SDK(transport="rabbitmq")`` (URL and queue from ``OUTPOST_PUBLISH_RABBITMQ_URL`` and
``OUTPOST_PUBLISH_RABBITMQ_QUEUE``), or ``SDK(transport=RabbitMQTransport(url, queue, ...))``.
"""

from .errors import AccessRefused, MessageNacked, MessageReturned, QueueNotFound, TopologyMismatch
from .message import InvalidQueueMessage, check_message
from .topology import Topology
from .transport import QUEUE_ENV, URL_ENV, RabbitMQTransport

__all__ = ["RabbitMQTransport", "Topology", "check_message", "InvalidQueueMessage", "MessageNacked",
           "MessageReturned", "QueueNotFound", "AccessRefused", "TopologyMismatch", "URL_ENV", "QUEUE_ENV"]
__version__ = "0.1.0"
