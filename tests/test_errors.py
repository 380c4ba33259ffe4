"""The status → exception table, checked over every status, body and content type."""

from __future__ import annotations

import json
from typing import Dict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub import SDK, PublishResponse
from minipub.errors import (
    APIError,
    BadRequestError,
    ConnectionLostError,
    InternalServerError,
    MinipubError,
    NotFoundError,
    RateLimitedError,
    TimeoutErrorT,
    UnauthorizedError,
)
from minipub.response import parse_publish_response
from minipub.testing import OutpostServer
from minipub.transports import HTTPResponse

from .conftest import API_KEY, NO_RETRY

EXPECTED = {
    **dict.fromkeys((404, 501, 505), NotFoundError),
    **dict.fromkeys((401, 403, 407, 511), UnauthorizedError),
    **dict.fromkeys((408, 504), TimeoutErrorT),
    429: RateLimitedError,
    **dict.fromkeys((413, 414, 415, 422, 431, 510), BadRequestError),
    **dict.fromkeys((500, 502, 503, 506, 507, 508), InternalServerError),
}


def expected_class(status: int) -> type:
    return EXPECTED.get(status, APIError)


bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans()),
                 lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
                 max_leaves=10).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.just(b'{"status":422,"message":"validation error","data":["tenant_id is required"]}'),
    st.just(b"\xff\xfe\x00invalid utf-8 \xc3"),
    st.just(f'{{"message":"bad key {API_KEY}"}}'.encode()),
    st.just(f"<html>key={API_KEY}</html>".encode()),
)
content_types = st.sampled_from(["application/json", "text/html", "text/plain; charset=utf-8", "", "application/problem+json"])


@given(status=st.integers(100, 599), body=bodies, content_type=content_types,
       extra=st.dictionaries(st.sampled_from(["retry-after", "x-request-id", "location"]), st.text(max_size=30)),
       truncated=st.booleans())
def test_class_is_the_tables_and_never_leaks_the_key(
    status: int, body: bytes, content_type: str, extra: Dict[str, str], truncated: bool
) -> None:
    headers = {**extra, "content-type": content_type}
    if extra:
        headers["x-echo"] = API_KEY
    response = HTTPResponse(status, headers, body, truncated)
    try:
        result = parse_publish_response(response, "evt_1", API_KEY)
    except APIError as error:
        assert not 200 <= status < 300
        assert type(error) is expected_class(status)
        assert error.status_code == status
        for text in (str(error), repr(error), error.body, error.message, json.dumps(error.data), str(error.headers)):
            assert API_KEY not in text
        assert len(error.body) <= 8192
    else:
        assert 200 <= status < 300
        assert isinstance(result, PublishResponse)
        assert isinstance(result.id, str) and result.id


def test_validation_error_message_is_kept() -> None:
    body = b'{"status":422,"message":"validation error","data":["tenant_id is required"]}'
    with pytest.raises(BadRequestError) as info:
        parse_publish_response(HTTPResponse(422, {"content-type": "application/json"}, body), "evt")
    assert info.value.data == {"status": 422, "message": "validation error", "data": ["tenant_id is required"]}
    assert "tenant_id is required" in str(info.value)


def test_proxy_html_503_is_still_internal_server_error() -> None:
    with pytest.raises(InternalServerError) as info:
        parse_publish_response(HTTPResponse(503, {"content-type": "text/html"}, b"<h1>down</h1>"), "evt")
    assert info.value.data is None and info.value.body == "<h1>down</h1>"


#: What each built-in transport makes of an interim 1XX (not 101) followed by the connection's close:
#: all of them read the answer with one parser, which skips interim responses as RFC 9110 says, so a
#: close before the final response is a lost connection, the same on every transport.
INTERIM_THEN_CLOSE = {"http.client": ConnectionLostError, "urllib": ConnectionLostError, "lean": ConnectionLostError}


@pytest.mark.parametrize("transport", sorted(INTERIM_THEN_CLOSE))
def test_every_status_end_to_end(server: OutpostServer, transport: str) -> None:
    """Every status 101-599 from a real HTTP server raises the table's class (2XX: success).

    The server sends each status as the final response; a 1XX is sent without a body and with
    ``Connection: close``. An unsolicited 101 is always a final response (APIError).
    """
    with SDK(API_KEY, server_url=server.url, retry_config=NO_RETRY, timeout_ms=5000, transport=transport) as sdk:
        for status in range(101, 600):
            server.fail_next(status)
            try:
                response = sdk.publish.event(tenant_id="t", topic="status.check", data={"s": status})
            except MinipubError as error:
                if status < 200 and status != 101 and INTERIM_THEN_CLOSE[transport] is ConnectionLostError:
                    assert type(error) is ConnectionLostError, (status, error)
                    assert f"interim HTTP {status} response" in str(error)
                    continue
                assert isinstance(error, APIError), (status, error)
                assert type(error) is expected_class(status), status
                assert error.status_code == status
            else:
                assert 200 <= status < 300, status
                assert response.id


# -- every error pickles ------------------------------------------------------------------------

def _error_classes() -> list:
    import minipub.errors as errors
    from minipub.cli.bulk import LineError
    from minipub.cli.common import UsageError

    found = [getattr(errors, name) for name in errors.__all__]
    return [cls for cls in found if isinstance(cls, type) and issubclass(cls, MinipubError)] + [LineError, UsageError]


def _build_error(cls: type, message: str, status: int, body: str, data: object) -> MinipubError:
    from minipub.errors import PluginError

    if issubclass(cls, APIError):
        return cls(message, status_code=status, headers={"x-request-id": "r1"}, body=body, data=data)
    if issubclass(cls, PluginError):
        return cls(message, plugin="acme", hook="minipub_attempt")
    try:
        return cls(message)
    except TypeError:  # a subclass with its own required arguments
        return cls(message, 1)


@given(cls=st.sampled_from(_error_classes()), message=st.text(max_size=40), status=st.integers(100, 599),
       body=st.text(max_size=40), data=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers())),
       protocol=st.integers(0, 5))
def test_every_error_pickles_with_its_attributes(
    cls: type, message: str, status: int, body: str, data: object, protocol: int
) -> None:
    import pickle

    error = _build_error(cls, message, status, body, data)
    error.extra = "kept"  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(error, protocol))
    assert type(copy) is cls
    assert copy.args == error.args and str(copy) == str(error) and repr(copy) == repr(error)
    assert vars(copy) == vars(error)


def test_a_pickled_error_from_a_response_keeps_the_key_out() -> None:
    import pickle

    body = f'{{"message":"bad key {API_KEY}","data":["{API_KEY}"]}}'.encode()
    with pytest.raises(UnauthorizedError) as info:
        parse_publish_response(HTTPResponse(401, {"content-type": "application/json", "x-echo": API_KEY}, body),
                               "evt", API_KEY)
    dumped = pickle.dumps(info.value)
    assert API_KEY.encode() not in dumped
    copy = pickle.loads(dumped)
    assert copy.status_code == 401 and copy.data == {"message": "bad key ***", "data": ["***"]}
