"""The real server is there, and one publish through minipub reaches a webhook exactly once."""

from __future__ import annotations

import minipub

from .conftest import RealOutpost, Receiving


def test_publish_is_delivered_once(real_outpost: RealOutpost, receiving: Receiving) -> None:
    with minipub.SDK(real_outpost.api_key, server_url=real_outpost.base_url) as sdk:
        response = sdk.publish.event(tenant_id=receiving.tenant_id, topic="smoke", data={"n": 1})
    assert list(response.destination_ids) == [receiving.destination_id]
    assert not response.duplicate
    assert receiving.deliveries.wait_for({response.id}, timeout=20) == set()
    assert receiving.deliveries.by_id[response.id] == 1
    assert receiving.deliveries.headers[response.id]["x-outpost-topic"] == "smoke"
