"""Checked by ``mypy --strict`` in CI (``.ci/run``), never run: the publish calls as type checkers see them.

Each wrong call carries a ``type: ignore[code]``; with ``warn_unused_ignores`` (on in --strict) a
wrong call that stopped being an error fails the check, so this file cannot pass by accident.
"""

from __future__ import annotations

import datetime

import minipub
from minipub import SDK, Publisher, PublishResponse, RetryConfig


def right(sdk: SDK, publisher: Publisher) -> None:
    minipub.publish("user.created", {"id": 1}, tenant_id="acme")
    answer: PublishResponse = minipub.publish(
        "user.created", {}, tenant_id="acme", eligible_for_retry=False, destination_id="des_1",
        metadata={"source": "crm"}, id="evt_1", time=datetime.datetime.now(datetime.timezone.utc),
        retries=RetryConfig("none"), timeout_ms=500, http_headers={"X-Trace": "1"},
    )
    sdk.publish.event(tenant_id="acme", topic="user.created", data={"id": 1}, time="2024-01-15T10:30:00Z")
    event_id: str = publisher.submit("user.created", {"id": 1}, tenant_id="acme", block=False, block_timeout=1.0)
    del answer, event_id


async def right_async(sdk: SDK) -> None:
    await minipub.publish_async("user.created", {}, tenant_id="acme", id="evt_2")
    await sdk.publish.event_async(tenant_id="acme", topic="user.created", data={})


def wrong(sdk: SDK, publisher: Publisher) -> None:
    minipub.publish("user.created", {})  # type: ignore[call-arg]
    minipub.publish("user.created", {}, tenant_id=1)  # type: ignore[arg-type]
    minipub.publish("user.created", {}, tenant_id="acme", tennant="x")  # type: ignore[call-arg]
    minipub.publish("user.created", [1], tenant_id="acme")  # type: ignore[arg-type]
    minipub.publish("user.created", {}, tenant_id="acme", eligible_for_retry="yes")  # type: ignore[arg-type]
    minipub.publish("user.created", {}, tenant_id="acme", metadata={"n": 1})  # type: ignore[dict-item]
    minipub.publish("user.created", {}, tenant_id="acme", retries=3)  # type: ignore[arg-type]
    sdk.publish.event(tenant_id="acme", topic="user.created")  # type: ignore[call-arg]
    sdk.publish.event("acme", "user.created", {})  # type: ignore[call-arg, arg-type]
    publisher.submit("user.created", {}, tenant_id="acme", block="no")  # type: ignore[arg-type]
    publisher.submit("user.created", {}, tenant_id="acme", timeout_ms="1")  # type: ignore[arg-type]
