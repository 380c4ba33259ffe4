"""Classifying a 2XX: the body read as json.loads reads it, whatever its blanks, extra data or types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub import PublishResponse
from minipub.errors import ProtocolError
from minipub.response import parse_publish_response
from minipub.transports import HTTPResponse

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
values = st.one_of(scalars, st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3))
answers = st.fixed_dictionaries({}, optional={"id": st.one_of(st.just("evt_1"), values),
                                              "duplicate": values, "destination_ids": values})


def expected(body: bytes, event_id: str) -> Any:
    """What the rules say, with json.loads as the reader."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    answered = data.get("id")
    if isinstance(answered, str) and answered and answered != event_id:
        return ProtocolError
    destinations = data.get("destination_ids")
    if not isinstance(destinations, list) or not all(isinstance(d, str) for d in destinations):
        destinations = []
    duplicate = data.get("duplicate")
    return PublishResponse(answered if isinstance(answered, str) and answered else event_id,
                           duplicate if isinstance(duplicate, bool) else False, destinations)


@given(answer=answers, before=st.sampled_from(["", " ", "\n"]),
       after=st.sampled_from(["", " ", "\r\n", "{}", "x", "]", ' {"id": "evt_2"}']))
def test_a_2xx_body_is_read_as_json_loads_reads_it(answer: Any, before: str, after: str) -> None:
    body = (before + json.dumps(answer) + after).encode()
    want = expected(body, "evt_1")
    response = HTTPResponse(202, {"content-type": "application/json"}, body)
    if want is ProtocolError:
        with pytest.raises(ProtocolError):
            parse_publish_response(response, "evt_1")
    else:
        assert parse_publish_response(response, "evt_1") == want
