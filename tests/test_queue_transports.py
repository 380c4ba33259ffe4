"""What the core does for a transport that queues events instead of sending HTTP (the RabbitMQ plugin's seam).

A queue transport says ``needs_api_key = False`` (the SDK then demands no admin key and sends no
``Authorization``), and answers with a 202 carrying ``x-minipub-queued``: the publish returns the
event id with ``duplicate``/``destination_ids`` None (unknown), never a made-up "not a duplicate".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from minipub import SDK, Publisher
from minipub.errors import ConfigurationError, ValidationError
from minipub.models import PublishResponse
from minipub.response import QUEUED_HEADER
from minipub.retry import is_final
from minipub.transports.base import HTTPRequest, HTTPResponse


class Queueing:
    """Takes each request body as a queue would, and answers as the RabbitMQ transport does."""

    needs_api_key = False

    def __init__(self) -> None:
        self.sent: List[HTTPRequest] = []

    def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sent.append(request)
        event_id = json.loads(request.body)["id"]
        return HTTPResponse(202, {QUEUED_HEADER: "test"}, json.dumps({"id": event_id}).encode())

    def close(self) -> None:
        pass


def test_no_key_is_demanded_and_none_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTPOST_API_KEY", raising=False)
    transport = Queueing()
    with SDK(transport=transport, server_url="http://127.0.0.1:9/api/v1") as sdk:
        response = sdk.publish.event(tenant_id="acme", topic="t", data={"n": 1}, id="evt_q")
    assert response == PublishResponse("evt_q", None, None) and response.queued
    (request,) = transport.sent
    assert "Authorization" not in request.headers


def test_a_key_given_is_still_checked_and_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = Queueing()
    with pytest.raises(ConfigurationError, match="admin_api_key"):
        SDK(" ", transport=transport)
    monkeypatch.setenv("OUTPOST_API_KEY", "sk_env_key")
    with SDK(transport=transport) as sdk:
        sdk.publish.event(tenant_id="acme", topic="t", data={})
    assert transport.sent[-1].headers["Authorization"] == "Bearer sk_env_key"


def test_an_http_transport_still_needs_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTPOST_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="no Outpost API key"):
        SDK(transport="lean")


def test_http_answers_are_never_queued() -> None:
    response = PublishResponse("evt", False, ["des_1"])
    assert not response.queued and response.destination_ids == ("des_1",)
    assert PublishResponse("evt").duplicate is False and PublishResponse("evt").destination_ids == ()


class Refusing(Queueing):
    """Refuses every body at send time, as a queue transport does with a message Outpost would loop on."""

    def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sent.append(request)
        raise ValidationError("topic 'x' is not one of the server's TOPICS")


def test_bad_input_refused_at_send_time_is_final_even_with_an_outbox(tmp_path: Path) -> None:
    """A ValidationError cannot pass later: the outbox does not defer it for ever, it is dead at once."""
    transport = Refusing()
    failed: List[BaseException] = []
    with SDK(transport=transport, server_url="http://127.0.0.1:9/api/v1") as sdk, \
            Publisher(sdk, outbox=tmp_path / "outbox.db", on_error=lambda event, error: failed.append(error),
                      backoff_initial=0.05, backoff_cap=0.1, poll_interval=0.05) as publisher:
        publisher.submit(tenant_id="acme", topic="x", data={})
        assert publisher.flush(10)
        stats = publisher.stats()
    assert (stats.failed, stats.queued, len(transport.sent)) == (1, 0, 1)
    assert [type(error) for error in failed] == [ValidationError]
    assert is_final(ValidationError("bad")) and not is_final(ConfigurationError("key file missing"))


@pytest.mark.parametrize("when", ["2016-12-31T23:59:60Z", "2024-01-15T10:30:60+02:00"])
def test_a_leap_second_is_refused_as_outpost_refuses_it(when: str) -> None:
    """Go's time parser (Outpost) rejects second 60 (422 over HTTP, a requeue loop on its queue)."""
    from minipub.request import build_publish_request

    with pytest.raises(ValidationError, match=r"^time: .*second 60"):
        build_publish_request(tenant_id="acme", topic="t", data={}, time=when)
