"""Request building over the space of inputs: valid ones encode faithfully, the rest fail cleanly."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from minipub.errors import ValidationError
from minipub.request import build_publish_request, new_event_id

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=4),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.datetimes(), st.datetimes(timezones=st.just(timezone.utc)),
)


@given(tenant_id=anything, topic=anything, eligible=anything, destination=anything, metadata=anything,
       event_id=anything, time=anything, data=anything)
def test_any_input_either_encodes_faithfully_or_raises_validation_error(
    tenant_id: Any, topic: Any, eligible: Any, destination: Any, metadata: Any, event_id: Any, time: Any, data: Any
) -> None:
    try:
        request = build_publish_request(
            tenant_id=tenant_id, topic=topic, data=data, eligible_for_retry=eligible, destination_id=destination,
            metadata=metadata, id=event_id, time=time,
        )
    except ValidationError as error:
        assert str(error)  # a message, naming something
        return
    body = json.loads(request.body)
    assert body["tenant_id"] == tenant_id and tenant_id.strip()
    assert body["topic"] == topic and topic.strip()
    assert body["eligible_for_retry"] is eligible
    assert body["id"] == request.event_id == (event_id or body["id"])
    assert body.get("destination_id") == destination
    assert body.get("metadata") == metadata
    assert isinstance(data, dict) and body["data"] == json.loads(json.dumps(data))
    if time is not None:
        assert datetime.fromisoformat(body["time"].replace("Z", "+00:00")) == time


@given(st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-7, minutes=-30))])))
def test_aware_datetimes_are_sent_as_rfc3339(when: datetime) -> None:
    body = json.loads(build_publish_request(tenant_id="t", topic="x", data={}, time=when).body)
    assert datetime.fromisoformat(body["time"]) == when


def test_generated_ids_are_uuid4_and_unique() -> None:
    import uuid

    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in list(ids)[:50]:
        assert uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
