"""Why minipub puts an id on every publish: the same lost acknowledgement, on the real Outpost,
with the official generated SDK (``outpost-sdk``) and with minipub.

The fault proxy lets the first publish reach Outpost, which accepts and queues it, then resets the
connection before the answer: the client cannot know the event was taken. outpost-sdk sends no id,
so its repeat (its own retry, or the caller's by hand) is a new event to Outpost: the webhook gets
it twice. minipub repeats with the same id: Outpost answers ``duplicate: true``, the webhook gets it
once. ``outpost-sdk`` is a test dependency only; without it these tests skip, saying how to install
it, except under ``MINIPUB_REQUIRE_REAL_OUTPOST=1`` (CI), where they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections import Counter
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

from minipub import SDK, BackoffStrategy, RetryConfig
from minipub.errors import ConnectionLostError

from ..faultproxy import FaultProxy
from .conftest import RealOutpost, Receiving
from .faults import api_port

REQUIREMENT = "outpost-sdk==1.7.0"


@pytest.fixture
def outpost_sdk() -> ModuleType:
    try:
        return importlib.import_module("outpost_sdk")
    except ImportError:
        why = f"outpost-sdk is not installed (pip install '{REQUIREMENT}'): the comparison needs it"
        if os.environ.get("MINIPUB_REQUIRE_REAL_OUTPOST") == "1":
            pytest.fail(f"MINIPUB_REQUIRE_REAL_OUTPOST=1 but {why}", pytrace=False)
        pytest.skip(why)


def lose_the_first_acknowledgement(connection: int) -> Callable[[int], str]:
    """The first request of the first connection reaches Outpost; its answer is lost (a reset)."""
    return lambda request: "lost_ack" if connection == 1 and request == 1 else "pass"


@pytest.fixture
def lossy(real_outpost: RealOutpost) -> Iterator[Tuple[FaultProxy, str]]:
    with FaultProxy(api_port(real_outpost), lose_the_first_acknowledgement) as proxy:
        yield proxy, proxy.url(real_outpost.base_url)


def _deliveries_of(receiving: Receiving, marker: str, expected: int) -> Dict[str, int]:
    """Deliveries (by event id) of the events whose data carries ``marker``, once ``expected`` arrived."""
    deliveries = receiving.deliveries

    def matching() -> Dict[str, int]:
        with deliveries.lock:
            return {i: n for i, n in deliveries.by_id.items() if json.loads(deliveries.bodies[i]).get("m") == marker}

    deadline = time.monotonic() + 20
    while sum(matching().values()) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a later delivery would be seen too
    return matching()


def _figures(name: str, proxy: FaultProxy, delivered: Dict[str, int]) -> Dict[str, Any]:
    figures = {"client": name, "requests": proxy.requests, "faults": dict(proxy.faults),
               "accepted_as_new": sum(proxy.accepted_by_id.values()), "duplicate_acks": proxy.duplicate_acks,
               "distinct_event_ids_delivered": len(delivered), "deliveries": sum(delivered.values())}
    print(f"\n[repeat by hand] {json.dumps(figures, sort_keys=True)}")
    return figures


def test_outpost_sdk_retrying_a_lost_acknowledgement_delivers_the_event_twice(
        outpost_sdk: ModuleType, real_outpost: RealOutpost, receiving: Receiving,
        lossy: Tuple[FaultProxy, str]) -> None:
    proxy, url = lossy
    from outpost_sdk.utils import BackoffStrategy as SdkBackoff
    from outpost_sdk.utils import RetryConfig as SdkRetry

    # Its retries are off by default; turned on, with connection errors included, as a careful user would.
    retry = SdkRetry("backoff", SdkBackoff(10, 100, 2.0, 5_000), retry_connection_errors=True)
    with outpost_sdk.Outpost(api_key=real_outpost.api_key, server_url=url, retry_config=retry) as client:
        response = client.publish(request={"tenant_id": receiving.tenant_id, "topic": "repeat",
                                           "data": {"m": "sdk-retry"}})
    assert response.destination_ids == [receiving.destination_id]
    delivered = _deliveries_of(receiving, "sdk-retry", expected=2)
    figures = _figures("outpost-sdk, its own retry", proxy, delivered)
    assert figures["faults"] == {"lost_ack": 1} and figures["requests"] == 2
    assert figures["accepted_as_new"] == 2 and figures["duplicate_acks"] == 0  # no id: two events to Outpost
    assert Counter(delivered.values()) == Counter({1: 2})  # two event ids, one payload: delivered twice


def test_outpost_sdk_repeated_by_hand_after_a_lost_acknowledgement_delivers_the_event_twice(
        outpost_sdk: ModuleType, real_outpost: RealOutpost, receiving: Receiving,
        lossy: Tuple[FaultProxy, str]) -> None:
    proxy, url = lossy
    request = {"tenant_id": receiving.tenant_id, "topic": "repeat", "data": {"m": "by-hand"}}
    with outpost_sdk.Outpost(api_key=real_outpost.api_key, server_url=url) as client:
        with pytest.raises(Exception) as lost:  # httpx's error: the answer never came
            client.publish(request=request)
        client.publish(request=request)  # the caller tries again
    assert "minipub" not in type(lost.value).__module__
    delivered = _deliveries_of(receiving, "by-hand", expected=2)
    figures = _figures("outpost-sdk, repeated by hand", proxy, delivered)
    assert figures["accepted_as_new"] == 2 and sum(delivered.values()) == 2 and len(delivered) == 2


def test_minipub_retrying_the_same_lost_acknowledgement_delivers_the_event_once(
        real_outpost: RealOutpost, receiving: Receiving, lossy: Tuple[FaultProxy, str]) -> None:
    proxy, url = lossy
    retry = RetryConfig("backoff", BackoffStrategy(10, 100, 2.0, 5_000), True)
    with SDK(real_outpost.api_key, server_url=url, retry_config=retry) as sdk:
        response = sdk.publish.event(tenant_id=receiving.tenant_id, topic="repeat", data={"m": "minipub"})
    assert response.duplicate  # Outpost had it already: the first attempt was taken
    delivered = _deliveries_of(receiving, "minipub", expected=1)
    figures = _figures("minipub, its own retry", proxy, delivered)
    assert figures["faults"] == {"lost_ack": 1} and figures["requests"] == 2
    assert proxy.attempts_by_id[response.id] == 2 and proxy.accepted_by_id[response.id] == 1
    assert delivered == {response.id: 1}


def test_minipub_repeated_by_hand_with_its_id_delivers_the_event_once(
        real_outpost: RealOutpost, receiving: Receiving, lossy: Tuple[FaultProxy, str]) -> None:
    proxy, url = lossy
    fields: Dict[str, Any] = {"tenant_id": receiving.tenant_id, "topic": "repeat", "data": {"m": "minipub-hand"},
                              "id": "order-42-shipped-" + receiving.tenant_id}
    with SDK(real_outpost.api_key, server_url=url, retry_config=RetryConfig("none")) as sdk:
        with pytest.raises(ConnectionLostError):
            sdk.publish.event(**fields)
        again = sdk.publish.event(**fields)
    assert again.duplicate and again.id == fields["id"]
    delivered = _deliveries_of(receiving, "minipub-hand", expected=1)
    _figures("minipub, repeated by hand with the same id", proxy, delivered)
    assert delivered == {fields["id"]: 1}
