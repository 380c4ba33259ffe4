"""The publish fields, declared once (minipub/fields.py): what type checkers see equals what runs."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Dict

import pytest
from hypothesis import given
from hypothesis import strategies as st

import minipub
from minipub import fields
from minipub.cli import bulk
from minipub.testing import OutpostServer


def test_the_type_checkers_fields_are_the_runtime_table() -> None:
    names = [field.name for field in fields.FIELDS]
    typed = set(fields.EventCall.__required_keys__) | set(fields.EventCall.__optional_keys__)
    assert set(names) == typed and len(names) == len(typed)
    assert set(fields.REQUIRED_FIELDS) == set(fields.EventCall.__required_keys__) == {"tenant_id", "topic", "data"}
    positional = {"topic", "data"}
    assert set(fields.PublishOptions.__required_keys__) | set(fields.PublishOptions.__optional_keys__) == (
        typed - positional)


def test_a_bulk_line_carries_the_events_own_fields() -> None:
    assert tuple(bulk.FIELDS) == fields.LINE_FIELDS == (
        "tenant_id", "topic", "data", "eligible_for_retry", "destination_id", "metadata", "id", "time")


def test_every_entry_point_takes_the_same_fields(server: OutpostServer) -> None:
    """The one-liner, the SDK call, async and submit: each field reaches the server the same way."""
    extra: Dict[str, Any] = {"eligible_for_retry": False, "destination_id": None, "metadata": {"k": "v"},
                             "time": "2024-01-15T10:30:00Z", "timeout_ms": 5000, "http_headers": {"X-A": "b"}}
    with minipub.SDK(server.api_key, server_url=server.url) as sdk:
        sdk.publish.event(tenant_id="t", topic="a", data={"n": 1}, id="e1", **extra)
        asyncio.run(sdk.publish.event_async(tenant_id="t", topic="a", data={"n": 1}, id="e2", **extra))
        with minipub.Publisher(sdk) as publisher:
            publisher.submit("a", {"n": 1}, tenant_id="t", id="e3", **extra)
            publisher.flush(10)
    sent = sorted(server.events, key=lambda event: event["id"])
    assert [event["id"] for event in sent] == ["e1", "e2", "e3"]
    assert all({k: event.get(k) for k in ("metadata", "eligible_for_retry", "time")} ==
               {"metadata": {"k": "v"}, "eligible_for_retry": False, "time": "2024-01-15T10:30:00Z"}
               for event in sent)


@pytest.mark.parametrize("call", ["publish", "event", "event_async", "submit"])
def test_an_unknown_or_missing_field_is_named_before_any_network_call(call: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a closed port: any network call would raise ConnectError instead
    monkeypatch.setenv("OUTPOST_API_KEY", "k" * 24)
    monkeypatch.setenv("OUTPOST_API_BASE_URL", "http://127.0.0.1:9")
    minipub.reset_default_client()
    with minipub.SDK("k" * 24, server_url="http://127.0.0.1:9") as sdk:
        def run(**kwargs: Any) -> object:
            if call == "publish":
                topic, data = kwargs.pop("topic"), kwargs.pop("data")
                return minipub.publish(topic, data, **kwargs)
            if call == "event":
                return sdk.publish.event(**kwargs)
            if call == "event_async":
                return asyncio.run(sdk.publish.event_async(**kwargs))
            with minipub.Publisher(sdk) as publisher:
                topic, data = kwargs.pop("topic"), kwargs.pop("data")
                return publisher.submit(topic, data, **kwargs)

        with pytest.raises(minipub.ValidationError, match=r"unknown publish argument 'tennant_id' \(did you mean "
                                                          r"'tenant_id'\?\)"):
            run(topic="a", data={}, tennant_id="t")
        with pytest.raises(minipub.ValidationError, match=r"^tenant_id is required$"):
            run(topic="a", data={})
        with pytest.raises(minipub.ValidationError, match="timeout_ms must be a number of milliseconds"):
            run(topic="a", data={}, tenant_id="t", timeout_ms=0)
        with pytest.raises(minipub.ValidationError, match=r"retries must be a minipub\.RetryConfig"):
            run(topic="a", data={}, tenant_id="t", retries=3)
    minipub.reset_default_client()


def test_the_signatures_name_the_fields_once() -> None:
    """Each public entry point takes ``**fields`` typed by the one declaration (no field list of its own)."""
    for function in (minipub.publish, minipub.publish_async, minipub.Publish.event, minipub.Publish.event_async,
                     minipub.Publisher.submit):
        params = inspect.signature(function).parameters
        assert [p.kind for p in params.values()][-1] is inspect.Parameter.VAR_KEYWORD, function
        assert not set(params) & {field.name for field in fields.FIELDS} - {"topic", "data"}, function


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.none(), max_size=4))
def test_any_name_outside_the_table_is_refused(extra: Dict[str, Any]) -> None:
    unknown = {name: value for name, value in extra.items() if name not in {f.name for f in fields.FIELDS}}
    call = {"tenant_id": "t", "topic": "a", "data": {}, **unknown}
    if unknown:
        with pytest.raises(minipub.ValidationError, match="unknown publish argument"):
            fields.build(call)
    else:
        request, retries, timeout_ms = fields.build(call)
        assert (request.tenant_id, request.topic, retries, timeout_ms) == ("t", "a", None, None)


def test_the_event_defaults_are_the_tables() -> None:
    from minipub.request import build_publish_request

    params = inspect.signature(build_publish_request).parameters
    for field in fields.FIELDS:
        if field.name in ("retries", "timeout_ms"):
            assert field.name not in params and field.default is None
        elif field.default is fields.REQUIRED:
            assert params[field.name].default is inspect.Parameter.empty, field.name
        else:
            assert params[field.name].default == field.default, field.name
    assert set(params) == {field.name for field in fields.FIELDS} - {"retries", "timeout_ms"}
