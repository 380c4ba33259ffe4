"""Fixtures: the real RabbitMQ and Outpost of ``bash tests/real/outpost.sh start`` (the repository's real-server
fixtures, imported), queues of the test's own, and a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pika
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.append(str(ROOT))  # last: the installed minipub wins over the source tree

from tests.real.conftest import SCRIPT, RealOutpost, Receiving, WebhookReceiver, real_outpost, receiving  # noqa: E402

__all__ = ["RealOutpost", "Receiving", "WebhookReceiver", "real_outpost", "receiving", "broker"]

ENV = ("OUTPOST_API_KEY", "OUTPOST_API_BASE_URL", "OUTPOST_PUBLISH_RABBITMQ_URL", "OUTPOST_PUBLISH_RABBITMQ_QUEUE",
       "MINIPUB_LOG_JSON", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", "1")


class Broker:
    """The real RabbitMQ: its URL, a channel of the test's own, and the outpost.sh subcommands."""

    def __init__(self, server: RealOutpost) -> None:
        assert server.amqp_url and server.publish_queue, "outpost.sh did not print the RabbitMQ lines"
        self.url = server.amqp_url
        self.queue = server.publish_queue
        self.port = urlsplit(self.url).port or 5672
        self.server = server

    def channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        return connection.channel()

    def depth(self, queue: str) -> int:
        channel = self.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.message_count)
        finally:
            channel.connection.close()

    def script(self, command: str, **env_vars: str) -> None:
        """Run ``outpost.sh COMMAND`` on the same state folder (it waits until the service is healthy)."""
        env = {**os.environ, "REAL_OUTPOST_DIR": str(self.server.state), **env_vars}
        subprocess.run(["bash", str(SCRIPT), command], env=env, check=True, timeout=180,
                       stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def broker(real_outpost: RealOutpost) -> Broker:
    return Broker(real_outpost)


@pytest.fixture
def test_queue(broker: Broker) -> Iterator[str]:
    """A durable classic queue of this test's own (deleted after it)."""
    name = "minipub-test-" + uuid.uuid4().hex[:10]
    channel = broker.channel()
    channel.queue_declare(name, durable=True)
    yield name
    channel.queue_delete(name)
    channel.connection.close()
