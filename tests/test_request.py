"""Request building over the space of inputs: valid ones encode faithfully, the rest fail cleanly."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Dict, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub.errors import ValidationError
from minipub.request import RESERVED_HEADERS, build_publish_request, new_event_id

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


names = st.text(min_size=1, max_size=20).filter(str.strip)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
aware = st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=45))]))


@given(tenant_id=names, topic=names, eligible=st.booleans(), destination=st.none() | names,
       metadata=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
       event_id=st.none() | names, time=st.none() | aware,
       data=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_every_valid_input_encodes_faithfully(
    tenant_id: str, topic: str, eligible: bool, destination: Optional[str], metadata: Optional[Dict[str, str]],
    event_id: Optional[str], time: Optional[datetime], data: Dict[str, Any],
) -> None:
    """Generated to be valid, so every example reaches the comparison (no input is refused here)."""
    request = build_publish_request(
        tenant_id=tenant_id, topic=topic, data=data, eligible_for_retry=eligible, destination_id=destination,
        metadata=metadata, id=event_id, time=time,
    )
    body = json.loads(request.body)
    expected = {"id": event_id or request.event_id, "tenant_id": tenant_id, "topic": topic,
                "eligible_for_retry": eligible, "data": data}
    if destination is not None:
        expected["destination_id"] = destination
    if metadata is not None:
        expected["metadata"] = metadata
    if time is not None:
        expected["time"] = body["time"]
        assert datetime.fromisoformat(body["time"].replace("Z", "+00:00")) == time
    assert body == expected
    assert (request.event_id, request.tenant_id, request.topic) == (expected["id"], tenant_id, topic)


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


# -- every bad input is a ValidationError naming the field ----------------------------------------

GOOD: Dict[str, Any] = {"tenant_id": "t", "topic": "x", "data": {"k": "v"}}
SURROGATES = ["\ud800", "a\udfffb", "\udc80\udc81", "x\ud83d"]


def nested(depth: int, kind: str) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    return value


@pytest.mark.parametrize("depth", [500, 1000, 5000, 50_000])
@pytest.mark.parametrize("kind", ["dict", "list"])
def test_deeply_nested_data_is_a_validation_error(depth: int, kind: str) -> None:
    with pytest.raises(ValidationError, match=r"^data\b.*nested too deeply"):
        build_publish_request(**{**GOOD, "data": {"root": nested(depth, kind)}})


def test_deeply_nested_data_with_decimals_is_a_validation_error() -> None:
    from decimal import Decimal

    with pytest.raises(ValidationError, match=r"^data\b.*nested too deeply"):
        build_publish_request(**{**GOOD, "data": {"root": nested(3000, "list"), "n": Decimal("1.5")}})


def build_with(field: str, value: str) -> None:
    args: Dict[str, Any] = dict(GOOD)
    if field.startswith("metadata"):
        args["metadata"] = {value: "v"} if field == "metadata key" else {"k": value}
    elif field.startswith("data"):
        args["data"] = {value: 1} if field == "data key" else {"k": [1, {"deep": value}]}
    elif field == "http_headers":
        args["http_headers"] = {"X-Trace": value}
    else:
        args[field] = value
    build_publish_request(**args)


FIELD_NAMES = {"tenant_id": "tenant_id", "topic": "topic", "id": "id", "destination_id": "destination_id",
               "metadata key": "metadata", "metadata value": 'metadata["k"]', "data key": "data",
               "data value": 'data["k"][1]["deep"]', "http_headers": "http_headers['X-Trace']"}


@given(field=st.sampled_from(sorted(FIELD_NAMES)), surrogate=st.sampled_from(SURROGATES),
       text=st.text(max_size=5))
def test_a_lone_surrogate_in_any_field_is_a_validation_error_naming_it(field: str, surrogate: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        build_with(field, text + surrogate + text)
    assert str(info.value).startswith(FIELD_NAMES[field]), str(info.value)


@given(value=st.text(st.characters(min_codepoint=0x100, max_codepoint=0x2FFF), min_size=1, max_size=5)
       | st.sampled_from(["\x01", "a\x7fb", "\x1b[31m", "tab\tok\x0b"]))
def test_a_header_value_that_is_not_latin1_text_is_a_validation_error_naming_it(value: str) -> None:
    with pytest.raises(ValidationError, match=re.escape("http_headers['X-Trace']")) as info:
        build_publish_request(**GOOD, http_headers={"X-Trace": value})
    assert value not in str(info.value)  # header values may be credentials: never echoed


@pytest.mark.parametrize("headers", [[("X-A", "b")], "X-A: b", 5])
def test_http_headers_that_are_not_a_mapping_are_a_validation_error(headers: Any) -> None:
    with pytest.raises(ValidationError, match="http_headers must be a mapping"):
        build_publish_request(**GOOD, http_headers=headers)


def test_latin1_tab_and_reserved_headers() -> None:
    assert build_publish_request(**GOOD, http_headers={"X-A": "caf\xe9\tok"}).headers == {"X-A": "caf\xe9\tok"}
    for name in RESERVED_HEADERS:
        with pytest.raises(ValidationError, match="set by minipub"):
            build_publish_request(**GOOD, http_headers={name.title(): "x"})


class Offset(tzinfo):  # type: ignore[misc]
    """A tzinfo with any offset, even one Python's own timezone refuses."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def utcoffset(self, dt: Optional[datetime]) -> timedelta:
        return self.offset

    def dst(self, dt: Optional[datetime]) -> Optional[timedelta]:
        return None


class Broken(tzinfo):  # type: ignore[misc]
    def utcoffset(self, dt: Optional[datetime]) -> timedelta:
        raise KeyError("no such zone")


RFC3339_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")


@pytest.mark.parametrize("tz", [Offset(timedelta(hours=25)), Offset(timedelta(hours=-24)), Broken()])
@pytest.mark.parametrize("where", ["time", "data"])
def test_a_tzinfo_with_an_impossible_offset_is_a_validation_error_naming_time(tz: tzinfo, where: str) -> None:
    when = datetime(2024, 1, 15, 10, 30, tzinfo=tz)
    expected = "time" if where == "time" else 'data["at"]'
    with pytest.raises(ValidationError, match=re.escape(expected)):
        if where == "time":
            build_publish_request(**GOOD, time=when)
        else:
            build_publish_request(**{**GOOD, "data": {"at": when}})


@given(when=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
       seconds=st.integers(-86399, 86399), micros=st.integers(0, 999_999) | st.just(0))
def test_any_offset_is_sent_as_rfc3339_with_the_same_instant(when: datetime, seconds: int, micros: int) -> None:
    aware = when.replace(tzinfo=timezone(timedelta(seconds=seconds, microseconds=micros if seconds >= 0 else 0)))
    body = json.loads(build_publish_request(**{**GOOD, "data": {"at": aware}}, time=aware).body)
    for text in (body["time"], body["data"]["at"]):
        assert RFC3339_OFFSET.match(text), text
        assert datetime.fromisoformat(text.replace("Z", "+00:00")) == aware


def test_whole_minute_offsets_are_kept_and_others_sent_in_utc() -> None:
    kept = datetime(2024, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=5, minutes=45)))
    assert json.loads(build_publish_request(**GOOD, time=kept).body)["time"] == "2024-01-15T10:30:00+05:45"
    odd = datetime(2024, 1, 15, 10, 30, tzinfo=timezone(timedelta(seconds=30)))
    assert json.loads(build_publish_request(**GOOD, time=odd).body)["time"] == "2024-01-15T10:29:30+00:00"


@pytest.mark.parametrize("value", ["2024-01-15T10:30:00+05:60", "2024-01-15T10:30:00+24:00",
                                   "2024-01-15T10:30:00+25:00"])
def test_rfc3339_strings_with_impossible_offsets_are_rejected(value: str) -> None:
    with pytest.raises(ValidationError, match=r"^time"):
        build_publish_request(**GOOD, time=value)


def test_a_huge_int_is_a_validation_error_naming_it() -> None:
    import sys

    if not hasattr(sys, "get_int_max_str_digits"):  # before 3.11 (and 3.10.7) every int can be written
        assert json.loads(build_publish_request(**{**GOOD, "data": {"n": [10 ** 5000]}}).body)["data"]["n"]
        return
    with pytest.raises(ValidationError, match=re.escape('data["n"][0]: an int too long')):
        build_publish_request(**{**GOOD, "data": {"n": [10 ** (sys.get_int_max_str_digits() + 10)]}})


class Hostile(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise KeyError("boom")


def test_a_mapping_that_raises_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"^data"):
        build_publish_request(**{**GOOD, "data": {"inner": Hostile(a=1)}})
    with pytest.raises(ValidationError, match=r"^metadata"):
        build_publish_request(**GOOD, metadata=Hostile(a="1"))
