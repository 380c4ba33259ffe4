"""End to end through the real Outpost consuming its RabbitMQ publish queue: each event reaches the
webhook receiver exactly once (counted by ``x-outpost-event-id``), whatever happens on the way.

These tests stop and restart RabbitMQ and Outpost (``tests/real/outpost.sh`` subcommands, which wait
until healthy) and always bring them back: in CI one instance serves the whole sequential run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Set

import pytest
from amqp_proxy import AmqpFaultProxy
from conftest import Broker, Receiving
from minipub_rabbitmq import RabbitMQTransport

from minipub import SDK, Publisher
from minipub.retry import BackoffStrategy, RetryBudget, RetryConfig

FAST_RETRIES = RetryConfig("backoff", BackoffStrategy(20, 300, 2.0, 60_000), max_attempts=30)


def unlimited_sdk(url: str, queue: str, **options: object) -> SDK:
    # Each event is retried until it is queued: the per-client retry budget (made for a service's
    # steady traffic) would stop retries under a deliberate 30% fault rate.
    return SDK(transport=RabbitMQTransport(url, queue, **options), retry_config=FAST_RETRIES,  # type: ignore[arg-type]
               retry_budget=RetryBudget(capacity=float("inf")))


def settle(broker: Broker, receiving: Receiving, ids: Set[str], timeout: float = 180) -> None:
    """Every id delivered, Outpost's queue drained (so late duplicates had their chance), exactly once each."""
    missing = receiving.deliveries.wait_for(ids, timeout=timeout)
    assert missing == set(), f"{len(missing)} of {len(ids)} events never arrived, e.g. {sorted(missing)[:3]}"
    deadline = time.monotonic() + 60
    while broker.depth(broker.queue) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert broker.depth(broker.queue) == 0
    time.sleep(2)  # a duplicate Outpost took would be on its way by now
    assert receiving.deliveries.duplicates() == {}
    assert {k for k, v in receiving.deliveries.by_id.items() if k in ids and v == 1} == ids


@pytest.fixture
def outpost_back(broker: Broker) -> Iterator[None]:
    """Whatever a test stops, the next test finds RabbitMQ and Outpost running and healthy."""
    yield
    broker.script("start-outpost")


def test_1000_events_with_connections_cut_on_over_20_percent_of_publishes(broker: Broker,
                                                                          receiving: Receiving) -> None:
    proxy = AmqpFaultProxy(broker.port, before=0.15, after=0.15, seed=1000)
    with proxy, unlimited_sdk(proxy.url(), broker.queue) as sdk, Publisher(sdk, workers=4) as publisher:
        ids = {publisher.submit(tenant_id=receiving.tenant_id, topic="faults", data={"n": n}) for n in range(1000)}
        assert publisher.flush(240)
        stats = publisher.stats()
    print(f"\n1000 events: {proxy.publishes} publishes, {proxy.faults_before} cut before the publish, "
          f"{proxy.faults_after} confirms swallowed, {proxy.accepted} connections, {stats.retried} retries")
    assert (stats.delivered, stats.failed) == (1000, 0)
    # ≥ 20% of the events, and of all publishes the proxy saw, had their connection cut around the confirm.
    assert proxy.faults >= 200 and proxy.faults >= 0.2 * proxy.publishes, (proxy.faults, proxy.publishes)
    assert proxy.faults_before >= 50 and proxy.faults_after >= 50  # both kinds: lost publishes, lost confirms
    settle(broker, receiving, ids)


def test_rabbitmq_restarted_mid_stream_with_an_outbox(broker: Broker, receiving: Receiving, tmp_path: Path,
                                                      outpost_back: None) -> None:
    sdk = unlimited_sdk(broker.url, broker.queue)
    sdk.retry_config = RetryConfig("backoff", BackoffStrategy(50, 500, 2.0, 5_000), max_attempts=3)
    ids: List[str] = []
    with sdk, Publisher(sdk, workers=2, outbox=tmp_path / "outbox.db", backoff_initial=0.2, backoff_cap=2.0,
                        poll_interval=0.2, lease_seconds=60) as publisher:
        restarted = threading.Event()

        def restart() -> None:
            broker.script("restart-rabbitmq")  # RabbitMQ down and up (Outpost restarted with it)
            restarted.set()

        for n in range(400):
            ids.append(publisher.submit(tenant_id=receiving.tenant_id, topic="restart", data={"n": n}))
            if n == 100:
                restarter = threading.Thread(target=restart)
                restarter.start()
            time.sleep(0.02)
        restarter.join(180)
        assert restarted.is_set()
        assert publisher.flush(180)
        stats = publisher.stats()
    print(f"\nrestart: {stats.delivered} delivered, {stats.retried} retries")
    assert (stats.delivered, stats.failed) == (400, 0) and stats.retried > 0  # the restart was felt
    settle(broker, receiving, set(ids))


def test_outpost_stopped_for_10_s_publishes_keep_succeeding(broker: Broker, receiving: Receiving,
                                                            outpost_back: None) -> None:
    ids: Set[str] = set()
    with SDK(transport=RabbitMQTransport(broker.url, broker.queue)) as sdk:
        broker.script("stop-outpost")
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10:
            response = sdk.publish.event(tenant_id=receiving.tenant_id, topic="away", data={"n": len(ids)})
            assert response.queued
            ids.add(response.id)
            time.sleep(0.05)
        assert broker.depth(broker.queue) == len(ids)  # held by the queue, nothing consumed
        assert receiving.deliveries.wait_for(ids, timeout=0.5) == ids
        broker.script("start-outpost")
    assert len(ids) >= 50
    settle(broker, receiving, ids, timeout=120)


def test_a_poison_message_put_in_by_hand_ends_in_the_dead_letter_queue(broker: Broker, receiving: Receiving,
                                                                       outpost_back: None) -> None:
    """Outpost (restarted on a queue declared with declare=True) nacks a poison message with requeue;
    the quorum queue's delivery limit dead-letters it instead of letting it loop."""
    queue = "minipub-declared-" + uuid.uuid4().hex[:8]
    channel = broker.channel()
    try:
        with SDK(transport=RabbitMQTransport(broker.url, queue, declare=True, delivery_limit=2)) as sdk:
            sdk.publish.event(tenant_id=receiving.tenant_id, topic="declared", data={"before": True})
            broker.script("stop-outpost")
            broker.script("start-outpost", OUTPOST_PUBLISH_QUEUE_NAME=queue)  # Outpost now consumes `queue`
            channel.basic_publish("", queue, b'{"id":"evt_poison","tenant_id":"' + receiving.tenant_id.encode()
                                  + b'","topic":"declared","data":[1,2,3]}')
            after = sdk.publish.event(tenant_id=receiving.tenant_id, topic="declared", data={"after": True})
            deadline = time.monotonic() + 60
            while broker.depth(queue + ".dead-letter") == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert broker.depth(queue + ".dead-letter") == 1
            _, properties, body = channel.basic_get(queue + ".dead-letter", auto_ack=True)
            assert json.loads(body)["id"] == "evt_poison"
            assert properties.headers["x-death"][0]["reason"] == "delivery_limit"
            assert receiving.deliveries.wait_for({after.id}, timeout=30) == set()  # the queue kept flowing
            assert "evt_poison" not in receiving.deliveries.by_id
    finally:
        broker.script("stop-outpost")  # the fixture starts it again, on its own queue
        channel.queue_delete(queue)
        channel.queue_delete(queue + ".dead-letter")
        channel.exchange_delete(queue + ".dead-letter")
        channel.connection.close()


def test_minipub_bulk_transport_rabbitmq(broker: Broker, receiving: Receiving, tmp_path: Path) -> None:
    lines = [json.dumps({"tenant_id": receiving.tenant_id, "topic": "bulk", "data": {"n": n}, "id": f"bulk-{n}-"
                         + uuid.uuid4().hex[:8]}) for n in range(60)]
    source = tmp_path / "events.ndjson"
    source.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OUTPOST_API_KEY", "MINIPUB_DISABLE_PLUGIN_AUTOLOAD")}
    env.update(OUTPOST_PUBLISH_RABBITMQ_URL=broker.url, OUTPOST_PUBLISH_RABBITMQ_QUEUE=broker.queue)
    done = subprocess.run([sys.executable, "-m", "minipub", "bulk", "--transport", "rabbitmq", "--progress", "none",
                           "--outbox", str(tmp_path / "bulk.db"), str(source)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "60 delivered" in done.stderr + done.stdout
    settle(broker, receiving, {json.loads(line)["id"] for line in lines}, timeout=60)
