"""A message Outpost's queue consumer would drop or loop on cannot be produced through the transport.

Three views: a table of the cases, Hypothesis over invalid ``sdk.publish.event`` arguments and raw
bodies (nothing reaches the real queue), and a differential run against the real Outpost's HTTP
handler: every body it answers 422 is refused here too, and every body refused here that it takes
is one of the stricter rules this module documents.
"""

from __future__ import annotations

import json
import string
from typing import Any, Dict, List

import pytest
from conftest import Broker, RealOutpost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minipub_rabbitmq import InvalidQueueMessage, RabbitMQTransport, check_message

from minipub import SDK
from minipub.errors import ValidationError
from minipub.retry import RetryConfig
from minipub.transports.base import HTTPRequest

VALID: Dict[str, Any] = {"id": "evt_1", "tenant_id": "acme", "topic": "t", "data": {"n": 1}}
#: (body, what the error says): each one Outpost's consumer would drop (tenant) or requeue forever.
CASES = [
    (b"", "not a JSON document"),
    (b"{", "not a JSON document"),
    (b"\xff{}", "not a JSON document"),
    (b'{"id":"e","tenant_id":"a","data":{"x":NaN}}', "not a JSON document"),
    (b"[]", "must be a JSON object"),
    (json.dumps({**VALID, "tenant_id": None}).encode(), "tenant_id is required"),
    (json.dumps({k: v for k, v in VALID.items() if k != "tenant_id"}).encode(), "tenant_id is required"),
    (json.dumps({**VALID, "tenant_id": ""}).encode(), "tenant_id is required"),
    (json.dumps({**VALID, "tenant_id": 7}).encode(), "tenant_id must be a JSON string"),
    (json.dumps({**VALID, "data": None}).encode(), "data is required"),
    (json.dumps({**VALID, "data": [1]}).encode(), "data must be a JSON object"),
    (json.dumps({**VALID, "data": "x"}).encode(), "data must be a JSON object"),
    (json.dumps({**VALID, "metadata": {"a": 1}}).encode(), "metadata values must be strings"),
    (json.dumps({**VALID, "metadata": []}).encode(), "metadata must be a JSON object"),
    (json.dumps({**VALID, "eligible_for_retry": "yes"}).encode(), "eligible_for_retry must be a JSON bool"),
    (json.dumps({**VALID, "time": "2024-01-15T10:30:60Z"}).encode(), "seconds 00-59"),
    (json.dumps({**VALID, "time": "2024-01-15t10:30:00z"}).encode(), "upper-case T and Z"),
    (json.dumps({**VALID, "time": "2024-02-30T10:30:00Z"}).encode(), "not an RFC 3339"),
    (json.dumps({**VALID, "id": ""}).encode(), "id is required"),
    (json.dumps({k: v for k, v in VALID.items() if k != "id"}).encode(), "id is required"),
    (b'{"id":"e","tenant_id":"a","Tenant_ID":"","data":{}}', "spell each Outpost field once"),
    (b'{"id":"e","tenant_id":"a","tenant_id":"b","data":{}}', "spell each Outpost field once"),
]


@pytest.mark.parametrize(("body", "says"), CASES)
def test_each_poison_case_is_refused_with_the_reason(body: bytes, says: str) -> None:
    with pytest.raises(InvalidQueueMessage, match=says):
        check_message(body)


def test_topics_when_the_server_has_some() -> None:
    body = json.dumps(VALID).encode()
    assert check_message(body) == "evt_1" and check_message(body, topics={"t"}) == "evt_1"
    assert check_message(json.dumps({**VALID, "topic": "*"}).encode(), topics={"x"}) == "evt_1"
    with pytest.raises(InvalidQueueMessage, match="not one of the server's TOPICS"):
        check_message(body, topics={"user.created"})
    with pytest.raises(InvalidQueueMessage, match="topic is required"):
        check_message(json.dumps({**VALID, "topic": ""}).encode(), topics={"t"})


def test_keys_inside_data_may_be_spelled_any_way() -> None:
    assert check_message(b'{"id":"e","tenant_id":"a","data":{"ID":1,"id":2,"Tenant_Id":null}}') == "e"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3), max_leaves=6)
not_a_str = st.none() | st.booleans() | st.integers() | st.lists(st.integers(), max_size=2)
#: One argument of sdk.publish.event made invalid, the others valid.
invalid_arguments = st.one_of(
    st.fixed_dictionaries({"tenant_id": st.sampled_from(["", " ", "\t\n"]) | not_a_str}),
    st.fixed_dictionaries({"data": not_a_str | st.text(max_size=5) | st.lists(json_values, max_size=2)}),
    st.fixed_dictionaries({"metadata": st.dictionaries(st.text(max_size=3), not_a_str | st.floats(), min_size=1,
                                                       max_size=2)}),
    st.fixed_dictionaries({"time": st.sampled_from(["2024-01-15T10:30:60Z", "2024-13-01T00:00:00Z", "yesterday",
                                                    "2024-01-15 10:30:00Z", "2024-01-15T10:30:00+24:00"])}),
    st.fixed_dictionaries({"topic": st.text(string.ascii_lowercase, min_size=1, max_size=8)
                          .filter(lambda t: t not in ("known", "*"))}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=invalid_arguments)
def test_invalid_publish_arguments_never_reach_the_queue(bad: Dict[str, Any], broker: Broker, test_queue: str,
                                                         _sdk: List[SDK]) -> None:
    if not _sdk:
        transport = RabbitMQTransport(broker.url, test_queue, topics=["known"])
        _sdk.append(SDK(transport=transport, retry_config=RetryConfig("none")))
    arguments = {"tenant_id": "acme", "topic": "known", "data": {"n": 1}, **bad}
    with pytest.raises(ValidationError):
        _sdk[0].publish.event(**arguments)


@pytest.fixture
def _sdk(broker: Broker, test_queue: str) -> Any:
    made: List[SDK] = []
    yield made
    for sdk in made:
        sdk.close()
    assert broker.depth(test_queue) == 0, "an invalid event reached the queue"


field_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6), st.just(""),
                         st.just("2024-01-15T10:30:00Z"), st.just("2024-01-15T10:30:60Z"), st.just({}),
                         st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(), max_size=2),
                         st.lists(st.integers(), max_size=2))
names = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=6)
#: Per field: a value Outpost takes, or any value at all (half the time each).
good = {
    "tenant_id": names, "topic": names, "destination_id": names, "eligible_for_retry": st.booleans(),
    "data": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    "metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    "time": st.sampled_from(["2024-01-15T10:30:00Z", "2024-01-15T10:30:00.123456+02:00", "1999-12-31T23:59:59-11:30"]),
}
ABSENT = object()


def _body(valid: Dict[str, Any], corrupt: Dict[str, Any]) -> Dict[str, Any]:
    merged = {"id": "evt_raw", **valid, **corrupt}
    return {name: value for name, value in merged.items() if value is not ABSENT}


#: A body Outpost takes, with none, one or two fields replaced by any value (or removed).
raw_bodies = st.builds(
    _body,
    st.fixed_dictionaries({"tenant_id": good["tenant_id"], "data": good["data"]},
                          optional={name: good[name] for name in good if name not in ("tenant_id", "data")}),
    st.dictionaries(st.sampled_from(sorted(good)), field_values | st.just(ABSENT), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=raw_bodies)
def test_raw_bodies_the_queue_gets_are_exactly_the_ones_outpost_handles(
        body: Dict[str, Any], real_outpost: RealOutpost, broker: Broker, test_queue: str, _queued: List[int]) -> None:
    """Differential: the real Outpost's HTTP handler on the same body (a tenant that does not exist:
    nothing is delivered). A 422 there is always a refusal here; a refusal here that Outpost takes is
    one of the documented stricter rules (whitespace tenant_id)."""
    raw = json.dumps(body).encode()
    try:
        check_message(raw)
        refused = ""
    except InvalidQueueMessage as error:
        refused = str(error)
    if isinstance(body.get("tenant_id"), str) and body["tenant_id"]:
        body = {**body, "tenant_id": "nobody-" + body["tenant_id"]}  # never a real tenant
    status, _, answer = real_outpost.request("POST", "/publish", raw=json.dumps(body).encode())
    assert status in (202, 422), (status, answer)
    if status == 422:
        assert refused, f"Outpost refused {body!r} ({answer!r}) but the queue path would take it"
    elif refused:
        assert body["tenant_id"].strip() == "" and "tenant_id is required" in refused, (body, refused)
    if not refused:  # and it really goes through the transport into the queue
        if not _queued:
            _queued.append(0)
        transport = RabbitMQTransport(broker.url, test_queue)
        try:
            transport.send(HTTPRequest("POST", "queue", {}, raw, 5))
        finally:
            transport.close()
        _queued[0] += 1


@pytest.fixture
def _queued(broker: Broker, test_queue: str) -> Any:
    count: List[int] = []
    yield count
    assert count and count[0] > 0, "no generated body was valid: the accepting side went untested"
    assert broker.depth(test_queue) == count[0]
