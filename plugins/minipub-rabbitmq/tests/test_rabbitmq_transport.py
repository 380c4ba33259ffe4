"""The transport against the real RabbitMQ: what is queued, confirms, nacks, returns, topology, connections, secrets."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from typing import Any, Iterator, List

import pika
import pytest
from amqp_proxy import AmqpFaultProxy
from conftest import Broker
from minipub_rabbitmq import (
    AccessRefused,
    MessageNacked,
    MessageReturned,
    QueueNotFound,
    RabbitMQTransport,
    TopologyMismatch,
)

from minipub import SDK, Publisher
from minipub.errors import ConfigurationError, ConnectError, ConnectionLostError, TransportError, TransportTimeout
from minipub.plugins import reset_autoload
from minipub.retry import RetryConfig
from minipub.transports.base import HTTPRequest

NO_RETRY = RetryConfig("none")


def take(broker: Broker, queue: str, count: int, timeout: float = 10) -> List[Any]:
    """``count`` messages from ``queue`` (acked), as (properties, body)."""
    channel = broker.channel()
    got: List[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
                continue
            got.append((properties, body))
    finally:
        channel.connection.close()
    return got


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD")
    reset_autoload()
    yield
    reset_autoload()


def test_sdk_transport_rabbitmq_from_the_environment_needs_no_key(
        autoload: None, broker: Broker, test_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_PUBLISH_RABBITMQ_URL", broker.url)
    monkeypatch.setenv("OUTPOST_PUBLISH_RABBITMQ_QUEUE", test_queue)
    with SDK(transport="rabbitmq") as sdk:  # no OUTPOST_API_KEY, no admin_api_key
        assert isinstance(sdk._transport, RabbitMQTransport)
        response = sdk.publish.event(tenant_id="acme", topic="user.created", data={"n": 1}, metadata={"a": "b"})
    assert response.id and response.duplicate is None and response.destination_ids is None and response.queued
    ((properties, body),) = take(broker, test_queue, 1)
    assert properties.delivery_mode == 2 and properties.content_type == "application/json"
    assert properties.message_id == response.id
    assert json.loads(body) == {"id": response.id, "tenant_id": "acme", "topic": "user.created",
                                "eligible_for_retry": True, "metadata": {"a": "b"}, "data": {"n": 1}}


def test_the_message_is_the_http_body_byte_for_byte(broker: Broker, test_queue: str) -> None:
    sent: List[bytes] = []
    transport = RabbitMQTransport(broker.url, test_queue)

    class Recording:
        needs_api_key = False

        def send(self, request: HTTPRequest) -> Any:
            sent.append(request.body)
            return transport.send(request)

        def close(self) -> None:
            transport.close()

    with SDK(transport=Recording()) as sdk:
        sdk.publish.event(tenant_id="acme", topic="t", data={"x": [1, 2.5, "é"]}, id="evt_bytes",
                          time="2024-01-15T10:30:00Z", destination_id="des_1", eligible_for_retry=False)
    ((_, body),) = take(broker, test_queue, 1)
    assert [body] == sent


def test_missing_queue_is_a_clear_error_naming_queue_and_setting(broker: Broker) -> None:
    sdk = SDK(transport=RabbitMQTransport(broker.url, "no-such-queue-here"), retry_config=NO_RETRY)
    with sdk, pytest.raises(QueueNotFound, match=r"'no-such-queue-here'.*PUBLISH_RABBITMQ_QUEUE") as caught:
        sdk.publish.event(tenant_id="acme", topic="t", data={})
    assert isinstance(caught.value, ConnectError)  # retried by the loop: the operator may declare it


def test_unroutable_is_returned_and_retried(broker: Broker, test_queue: str) -> None:
    channel = broker.channel()
    exchange = test_queue + ".unbound"
    channel.exchange_declare(exchange, exchange_type="topic", durable=False, auto_delete=True)
    sleeps: List[float] = []
    try:
        transport = RabbitMQTransport(broker.url, test_queue, exchange=exchange, routing_key="nowhere")
        retries = RetryConfig("backoff", max_attempts=3)
        sdk = SDK(transport=transport, retry_config=retries, sleep=sleeps.append)
        with sdk, pytest.raises(MessageReturned, match="unroutable"):
            sdk.publish.event(tenant_id="acme", topic="t", data={})
    finally:
        channel.exchange_delete(exchange)
        channel.connection.close()
    assert len(sleeps) == 2  # three attempts: the loop retried the return
    assert broker.depth(test_queue) == 0


def test_a_nack_is_retried_with_the_same_id(broker: Broker, test_queue: str) -> None:
    channel = broker.channel()
    full = test_queue + ".full"
    channel.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    sleeps: List[float] = []
    try:
        transport = RabbitMQTransport(broker.url, full)
        sdk = SDK(transport=transport, retry_config=RetryConfig("backoff", max_attempts=3), sleep=sleeps.append)
        with sdk, pytest.raises(MessageNacked, match="nacked"):
            sdk.publish.event(tenant_id="acme", topic="t", data={})
    finally:
        channel.queue_delete(full)
        channel.connection.close()
    assert len(sleeps) == 2


def test_declared_topology_is_quorum_with_delivery_limit_and_dead_letter(broker: Broker) -> None:
    queue = f"minipub-declared-{os.getpid()}-{time.monotonic_ns()}"
    transport = RabbitMQTransport(broker.url, queue, declare=True, delivery_limit=3)
    channel = broker.channel()
    try:
        with SDK(transport=transport) as sdk:
            sdk.publish.event(tenant_id="acme", topic="t", data={})
        assert broker.depth(queue) == 1 and broker.depth(queue + ".dead-letter") == 0
        # The same name as a classic queue elsewhere: the mismatch is named, not papered over.
        sdk = SDK(transport=RabbitMQTransport(broker.url, broker.queue, declare=True), retry_config=NO_RETRY)
        with sdk, pytest.raises(TopologyMismatch, match=broker.queue):
            sdk.publish.event(tenant_id="acme", topic="t", data={})
    finally:
        channel.queue_delete(queue)
        channel.queue_delete(queue + ".dead-letter")
        channel.exchange_delete(queue + ".dead-letter")
        channel.connection.close()


def test_one_connection_per_thread_all_closed_by_sdk_close(broker: Broker, test_queue: str) -> None:
    transport = RabbitMQTransport(broker.url, test_queue)
    sdk = SDK(transport=transport)
    barrier = threading.Barrier(4, timeout=10)
    errors: List[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(25):
                sdk.publish.event(tenant_id="acme", topic="t", data={})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and broker.depth(test_queue) == 100
    connections = transport.connections()
    assert len(connections) == 4
    sdk.close()
    assert not any(connection.is_open for connection in connections) and transport.connections() == []
    with pytest.raises(TransportError, match="closed"):
        sdk.publish.event(tenant_id="acme", topic="t", data={})


def test_reconnects_after_a_broken_connection(broker: Broker, test_queue: str) -> None:
    with AmqpFaultProxy(broker.port) as proxy:
        transport = RabbitMQTransport(proxy.url(), test_queue)
        with SDK(transport=transport, retry_config=NO_RETRY) as sdk:
            sdk.publish.event(tenant_id="acme", topic="t", data={})
            proxy.kill_all()  # the connection breaks while idle
            sdk.publish.event(tenant_id="acme", topic="t", data={})
            proxy.kill_all()
            time.sleep(1.2)  # idle past the check: found closed before publishing
            sdk.publish.event(tenant_id="acme", topic="t", data={})
        assert proxy.accepted == 3
    assert broker.depth(test_queue) == 3


@pytest.mark.parametrize("fate", ["before", "after"])
def test_a_lost_confirm_is_connection_lost_and_retried_safely(broker: Broker, test_queue: str, fate: str) -> None:
    before, after = (1.0, 0.0) if fate == "before" else (0.0, 1.0)
    with AmqpFaultProxy(broker.port, before=before, after=after) as proxy:
        sdk = SDK(transport=RabbitMQTransport(proxy.url(), test_queue), retry_config=NO_RETRY)
        with sdk, pytest.raises(ConnectionLostError):
            sdk.publish.event(tenant_id="acme", topic="t", data={}, id="evt_lost")
        proxy.before = proxy.after = 0
        with SDK(transport=RabbitMQTransport(proxy.url(), test_queue)) as sdk:
            sdk.publish.event(tenant_id="acme", topic="t", data={}, id="evt_lost")
    ids = [json.loads(body)["id"] for _, body in take(broker, test_queue, 2, timeout=2)]
    # before: queued once (by the retry); after: queued twice with one id (Outpost deduplicates it).
    assert ids == (["evt_lost"] if fate == "before" else ["evt_lost", "evt_lost"])


def test_a_broker_that_stops_answering_times_out(broker: Broker, test_queue: str) -> None:
    with AmqpFaultProxy(broker.port) as proxy, \
            SDK(transport=RabbitMQTransport(proxy.url(), test_queue), retry_config=NO_RETRY, timeout_ms=800) as sdk:
        sdk.publish.event(tenant_id="acme", topic="t", data={})
        proxy.stall = True
        started = time.monotonic()
        with pytest.raises(TransportTimeout):
            sdk.publish.event(tenant_id="acme", topic="t", data={})
        assert time.monotonic() - started < 0.8 + 5
        proxy.stall = False
        sdk.publish.event(tenant_id="acme", topic="t", data={})  # a fresh connection


def test_refused_connection_is_connect_error() -> None:
    import socket

    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        with SDK(transport=RabbitMQTransport(f"amqp://guest:guest@127.0.0.1:{port}/", "q"),
                 retry_config=NO_RETRY) as sdk, pytest.raises(ConnectError):
            sdk.publish.event(tenant_id="acme", topic="t", data={})


PASSWORD = "pa55-Wrd_only-h3re"


def test_the_password_is_redacted_everywhere(broker: Broker, test_queue: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = broker.url.replace("guest:guest@", f"guest:{PASSWORD}@")
    transport = RabbitMQTransport(url, test_queue)
    texts = [repr(transport), str(transport), transport.url]
    with SDK(transport=transport, retry_config=RetryConfig("backoff", max_attempts=2), sleep=lambda s: None) as sdk:
        texts.append(repr(sdk))
        with pytest.raises(AccessRefused) as caught:
            sdk.publish.event(tenant_id="acme", topic="t", data={})
    error = caught.value
    texts += [str(error), repr(error), "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    frames = traceback.walk_tb(error.__traceback__)
    ours = (f"{os.sep}minipub{os.sep}", f"{os.sep}minipub_rabbitmq{os.sep}")  # the packages' frames, not the test's
    texts += [repr(frame.f_locals) for frame, _ in frames if any(part in frame.f_code.co_filename for part in ours)]
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records, "pika logged nothing: the log check checked nothing"
    assert [text for text in texts if PASSWORD in text] == []
    with pytest.raises(ConfigurationError) as bad:
        RabbitMQTransport(f"http://guest:{PASSWORD}@127.0.0.1/", "q")
    assert PASSWORD not in str(bad.value) and "***" in str(bad.value)
    assert not any(PASSWORD in line for line in caplog.text.splitlines())


def test_without_url_or_queue_the_error_names_the_settings() -> None:
    with pytest.raises(ConfigurationError, match="OUTPOST_PUBLISH_RABBITMQ_URL"):
        RabbitMQTransport()
    with pytest.raises(ConfigurationError, match="OUTPOST_PUBLISH_RABBITMQ_QUEUE"):
        RabbitMQTransport("amqp://127.0.0.1/")


def test_fork_the_child_connects_anew_and_the_parent_keeps_its_connection(broker: Broker, test_queue: str) -> None:
    transport = RabbitMQTransport(broker.url, test_queue)
    with SDK(transport=transport) as sdk:
        sdk.publish.event(tenant_id="acme", topic="t", data={"who": "parent"})
        (before,) = transport.connections()
        pid = os.fork()
        if pid == 0:  # the child: publish on its own connection, never touch the parent's
            code = 1
            try:
                sdk.publish.event(tenant_id="acme", topic="t", data={"who": "child"})
                code = 0 if len(transport.connections()) == 1 and transport.connections()[0] is not before else 2
                sdk.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        sdk.publish.event(tenant_id="acme", topic="t", data={"who": "parent"})
        assert transport.connections() == [before] and before.is_open
    assert sorted(json.loads(b)["data"]["who"] for _, b in take(broker, test_queue, 3)) == ["child", "parent", "parent"]


def test_under_the_publisher_without_an_outbox(broker: Broker, test_queue: str) -> None:
    with SDK(transport=RabbitMQTransport(broker.url, test_queue)) as sdk, Publisher(sdk, workers=3) as publisher:
        for n in range(50):
            publisher.submit(tenant_id="acme", topic="t", data={"n": n})
        publisher.flush(30)
        stats = publisher.stats()
    assert (stats.delivered, stats.failed, stats.duplicates) == (50, 0, 0)
    assert broker.depth(test_queue) == 50


def test_pika_blocking_connection_kept_as_is(broker: Broker, test_queue: str) -> None:
    """The one pika internal the deadline relies on is there (a pika upgrade that drops it fails here)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        impl = connection._impl
        assert callable(impl._adapter_call_later) and callable(impl._adapter_remove_timeout)
    finally:
        connection.close()


def test_event_async_and_the_negotiated_heartbeat(broker: Broker, test_queue: str) -> None:
    import asyncio

    transport = RabbitMQTransport(broker.url, test_queue, heartbeat=7)
    with SDK(transport=transport) as sdk:
        response = asyncio.run(sdk.publish.event_async(tenant_id="acme", topic="t", data={"a": 1}))
        assert response.queued
        (connection,) = transport.connections()
        assert connection._impl.params.heartbeat == 7  # what the broker agreed to
    ((_, body),) = take(broker, test_queue, 1)
    assert json.loads(body)["id"] == response.id


def test_minipub_publish_transport_rabbitmq_prints_unknowns_as_null(broker: Broker, test_queue: str) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OUTPOST_API_KEY", "MINIPUB_DISABLE_PLUGIN_AUTOLOAD")}
    env.update(OUTPOST_PUBLISH_RABBITMQ_URL=broker.url, OUTPOST_PUBLISH_RABBITMQ_QUEUE=test_queue)
    done = subprocess.run([sys.executable, "-m", "minipub", "publish", "user.created", "--tenant", "acme",
                           "--data", '{"n": 1}', "--transport", "rabbitmq", "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["duplicate"] is None and answer["destination_ids"] is None
    ((_, body),) = take(broker, test_queue, 1)
    assert json.loads(body)["id"] == answer["id"]
    refused = subprocess.run([sys.executable, "-m", "minipub", "publish", "t", "--tenant", "acme", "--data", "{}",
                              "--time", "2024-01-15T10:30:60Z", "--transport", "rabbitmq"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "second 60" in refused.stderr  # exit 2: input Outpost would reject


def test_an_id_longer_than_an_amqp_short_string_is_queued(broker: Broker, test_queue: str) -> None:
    long_id = "evt_" + "é" * 200  # 404 bytes: Outpost takes any string id
    with SDK(transport=RabbitMQTransport(broker.url, test_queue), retry_config=NO_RETRY) as sdk:
        assert sdk.publish.event(tenant_id="acme", topic="t", data={}, id=long_id).id == long_id
    ((properties, body),) = take(broker, test_queue, 1)
    assert json.loads(body)["id"] == long_id and properties.message_id is None


def test_a_connection_the_broker_closed_for_missed_heartbeats_is_replaced(broker: Broker, test_queue: str) -> None:
    """Idle, a blocking connection sends no heartbeats: the broker closes it after two missed ones."""
    transport = RabbitMQTransport(broker.url, test_queue, heartbeat=1)
    with SDK(transport=transport, retry_config=NO_RETRY) as sdk:
        sdk.publish.event(tenant_id="acme", topic="t", data={})
        (first,) = transport.connections()
        time.sleep(4)  # > 2 heartbeats of 1 s: the broker has closed it by now
        sdk.publish.event(tenant_id="acme", topic="t", data={})  # no error: found closed, replaced
        (second,) = transport.connections()
        assert second is not first and not first.is_open
    assert broker.depth(test_queue) == 2
