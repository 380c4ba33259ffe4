"""The one value-object base: fields declared once as annotations (minipub/_record.py)."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest

from minipub import BackoffStrategy, PublishResponse, RetryConfig, ValidationError
from minipub._record import Record


class Point(Record):
    x: int
    y: int = 0
    label: Optional[str] = None

    def _check(self) -> None:
        if self.x < 0:
            raise ValidationError("Point.x must be >= 0")


class Labelled(Point):
    tags: Tuple[str, ...] = ()


def test_fields_in_order_positional_or_keyword_with_defaults() -> None:
    assert Point(1) == Point(x=1, y=0, label=None)
    assert Point(1, 2, "a") == Point(label="a", y=2, x=1)
    assert repr(Point(1, 2)) == "Point(x=1, y=2, label=None)"
    assert Point.__slots__ == ("x", "y", "label") and not hasattr(Point(1), "__dict__")
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]


def test_a_subclass_adds_fields_after_its_bases() -> None:
    assert Labelled(1, 2, None, ("t",)).tags == ("t",)
    assert repr(Labelled(1)) == "Labelled(x=1, y=0, label=None, tags=())"
    assert Labelled(1) != Point(1)  # another type is never equal


def test_immutable_hashable_checked() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError, match="immutable"):
        point.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del point.y  # type: ignore[misc]
    assert {Point(1, 2): "a"}[Point(1, 2)] == "a"
    with pytest.raises(ValidationError, match=r"Point\.x"):
        Point(-1)


def test_the_public_value_objects_keep_their_constructors() -> None:
    assert BackoffStrategy(500, 8000, 2.0, 30000).max_elapsed_time == 30000
    assert BackoffStrategy(1, 2, 1.5, None).max_elapsed_time is None  # no deadline
    assert RetryConfig("backoff", None).backoff == RetryConfig("backoff").backoff  # None: the default
    assert RetryConfig("none").deadline is None and RetryConfig("backoff").deadline == 30.0
    assert PublishResponse("e", False, ["d1", "d2"]).destination_ids == ("d1", "d2")  # any iterable: a tuple
    with pytest.raises(ValidationError, match=r"max_elapsed_time must be a number >= 0 \(or None"):
        BackoffStrategy(1, 2, 2.0, -1)
    with pytest.raises(ValidationError, match="max_attempts"):
        RetryConfig("backoff", max_attempts=0)


def test_a_proxy_still_unpacks_as_it_did_as_a_named_tuple() -> None:
    from minipub.transports.proxy import parse_proxy

    proxy = parse_proxy("http://user:pw@127.0.0.1:3128")
    host, port, authorization = proxy
    assert (host, port) == ("127.0.0.1", 3128) and authorization is not None and authorization.startswith("Basic ")
    assert "pw" not in repr(proxy) and {proxy: 1}[parse_proxy("http://user:pw@127.0.0.1:3128")] == 1
