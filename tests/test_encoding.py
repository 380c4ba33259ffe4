"""The one JSON encoder: what it accepts, exactly how it writes it, and how it refuses."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub.encoding import encode_json
from minipub.errors import ValidationError

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(), children, max_size=5)),
    max_leaves=30,
)


@given(st.dictionaries(st.text(), json_values, max_size=8))
def test_plain_json_round_trips_compact_utf8(value: Dict[str, Any]) -> None:
    encoded = encode_json(value)
    assert json.loads(encoded.decode("utf-8")) == value
    assert encoded == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_keeps_exactly_its_digits(number: Decimal) -> None:
    encoded = encode_json({"price": number, "nested": [number]})
    decoded = json.loads(encoded, parse_float=Decimal, parse_int=Decimal)
    assert decoded["price"] == number and str(decoded["price"]) == str(Decimal(str(number)))
    assert decoded["nested"][0] == number


def test_decimal_is_not_rounded_through_float() -> None:
    assert encode_json({"p": Decimal("0.1000000000000000000000001")}) == b'{"p":0.1000000000000000000000001}'
    assert encode_json({"p": Decimal("19.90")}) == b'{"p":19.90}'


class Colour(enum.Enum):
    RED = "red"
    NESTED = {"k": 1}


class Size(enum.IntEnum):
    LARGE = 3


@dataclasses.dataclass
class Item:
    sku: str
    price: Decimal
    when: date


def test_rich_types() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    aware = datetime(2024, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    value = {
        "id": ident, "at": aware, "day": date(2024, 1, 15), "colour": Colour.RED, "size": Size.LARGE,
        "nested_enum": Colour.NESTED, "item": Item("A-1", Decimal("2.50"), date(2024, 2, 1)), "tuple": (1, 2),
    }
    assert json.loads(encode_json(value)) == {
        "id": str(ident), "at": "2024-01-15T10:30:00+02:00", "day": "2024-01-15", "colour": "red", "size": 3,
        "nested_enum": {"k": 1}, "item": {"sku": "A-1", "price": 2.5, "when": "2024-02-01"}, "tuple": [1, 2],
    }
    assert b'"price":2.50' in encode_json(value)


def test_non_ascii_is_utf8_not_escaped() -> None:
    assert encode_json({"name": "Zoë ☃"}) == '{"name":"Zoë ☃"}'.encode()


@pytest.mark.parametrize(
    ("value", "path", "hint"),
    [
        ({"items": [0, 1, 2, {"price": math.nan}]}, 'data["items"][3]["price"]', "finite"),
        ({"a": {"b": math.inf}}, 'data["a"]["b"]', "finite"),
        ({"a": Decimal("NaN")}, 'data["a"]', "finite"),
        ({"a": {1: "x"}}, 'data["a"]', "keys must be str"),
        ({"a": [datetime(2024, 1, 1)]}, 'data["a"][0]', "timezone"),
        ({"a": object()}, 'data["a"]', "cannot encode a object"),
        ({"a": {1, 2}}, 'data["a"]', "list"),
        ({"a": b"raw"}, 'data["a"]', "decode"),
    ],
)
def test_rejections_name_the_path(value: Any, path: str, hint: str) -> None:
    with pytest.raises(ValidationError) as info:
        encode_json(value)
    message = str(info.value)
    assert message.startswith(path + ":"), message
    assert hint in message


def test_cycles_are_rejected() -> None:
    loop: Dict[str, Any] = {"x": []}
    loop["x"].append(loop)
    with pytest.raises(ValidationError, match=r'data\["x"\]\[0\].*cycle'):
        encode_json(loop)
    shared: List[int] = [1]
    assert encode_json({"a": shared, "b": shared}) == b'{"a":[1],"b":[1]}'  # shared, not cyclic


flat_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())


@given(data=st.dictionaries(st.text(), flat_scalars, max_size=6))
def test_the_flat_envelope_fast_path_writes_what_the_checked_walk_writes(data: Dict[str, Any]) -> None:
    from minipub.encoding import encode_envelope

    envelope = {"id": "evt_1", "tenant_id": "t", "eligible_for_retry": True}
    if any(isinstance(v, float) and not math.isfinite(v) for v in data.values()):
        with pytest.raises(ValidationError, match=r'^data\["'):
            encode_envelope(envelope, "data", data)
        return
    assert encode_envelope(envelope, "data", data) == encode_json({**envelope, "data": data}, root="")


@pytest.mark.parametrize("bad, problem", [({"x": "\udc80"}, "lone surrogate"), ({"x": 10 ** 5000}, "too long"),
                                          ({"x": float("inf")}, "finite"), ({1: 2}, "must be str")])
def test_flat_data_the_fast_path_cannot_write_is_named_by_the_walk(bad: Dict[Any, Any], problem: str) -> None:
    from minipub.encoding import encode_envelope

    with pytest.raises(ValidationError, match=problem) as info:
        encode_envelope({"id": "evt_1"}, "data", bad)
    assert str(info.value).startswith("data")


@given(event_id=st.text(), tenant=st.text(), topic=st.text(), eligible=st.booleans(),
       data=st.dictionaries(st.text(), flat_scalars, max_size=6))
def test_the_common_event_template_writes_what_encode_envelope_writes(
        event_id: str, tenant: str, topic: str, eligible: bool, data: Dict[str, Any]) -> None:
    from minipub.encoding import encode_envelope, encode_event

    envelope = {"id": event_id, "tenant_id": tenant, "topic": topic, "eligible_for_retry": eligible}
    fast = encode_event(event_id, tenant, topic, eligible, data)
    try:
        general = encode_envelope(envelope, "data", data)
    except ValidationError:  # not finite, a lone surrogate: the template leaves it to the path that names it
        assert fast is None
        return
    assert fast == general


def test_the_common_event_template_leaves_str_subclasses_and_nested_data_to_the_walk() -> None:
    from minipub.encoding import encode_event

    class Name(str):
        def __str__(self) -> str:
            return "other"

    assert encode_event("e", Name("t"), "x", True, {}) is None
    assert encode_event("e", "t", "x", True, {"a": {"b": 1}}) is None
    assert encode_event("e", "t", "x", True, {"a": float("nan")}) is None
    assert encode_event("e", "t", "x", False, {"a": 1}) == b'{"id":"e","tenant_id":"t","topic":"x",' \
        b'"eligible_for_retry":false,"data":{"a":1}}'
