"""A refused key (401/403) stops the background Publisher: one probe per pause, until a probe is accepted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from minipub import SDK, Publisher, RetryConfig
from minipub.errors import UnauthorizedError
from minipub.outbox import Outbox
from minipub.testing import OutpostServer

from .conftest import API_KEY
from .engines import engine  # noqa: F401  (each test runs on each engine and loop)
from .test_publisher import Errors

WRONG = "wrong-" + API_KEY
PAUSES = {"backoff_initial": 0.3, "backoff_cap": 0.3, "poll_interval": 0.05}


def test_without_an_outbox_a_refused_key_fails_events_without_sending_them(server: OutpostServer) -> None:
    server.api_key = WRONG  # the server does not know the client's key
    told = Errors()
    with SDK(API_KEY, server_url=server.url, retry_config=RetryConfig("none")) as sdk, \
            Publisher(sdk, workers=4, on_error=told, **PAUSES) as publisher:
        ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(60)]
        assert publisher.flush(timeout=10)
        stats = publisher.stats()
    assert sorted(event.id for event, _ in told.calls) == sorted(ids)  # each one told, none silently dropped
    assert all(isinstance(error, UnauthorizedError) for _, error in told.calls)
    assert stats.failed == 60 and stats.delivered == 0
    assert len(server.requests) <= 4 + 2  # what was in flight at the first 401, and a probe or so: not 60


def test_with_an_outbox_a_refused_key_keeps_the_events_until_it_is_accepted(server: OutpostServer,
                                                                            tmp_path: Path) -> None:
    server.api_key = WRONG
    told = Errors()
    path = tmp_path / "o.db"
    with SDK(API_KEY, server_url=server.url, retry_config=RetryConfig("none")) as sdk, \
            Publisher(sdk, workers=4, outbox=path, on_error=told, **PAUSES) as publisher:
        ids = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(40)]
        time.sleep(1.0)  # about three pauses of 0.3 s
        refused = len(server.requests)
        assert publisher.outbox is not None
        letters = publisher.outbox.dead_letter_count()
        pending = publisher.outbox.pending_count()
        assert refused <= 4 + 5  # in flight at the first 401, then about one probe per pause
        assert letters == refused == len(told.calls)  # a refused send fails for good, as before
        assert pending == 40 - letters  # the rest wait, unsent
        assert all(entry.rounds == 0 for entry in publisher.outbox.pending(None))  # postponed, not tried
        server.api_key = API_KEY  # the operator fixes the key: the next probe is accepted, sending resumes
        assert publisher.flush(timeout=10) is False or publisher.stats().queued == 0
        deadline = time.monotonic() + 10
        while publisher.outbox.pending_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.outbox.pending_count() == 0
    accepted = {e["id"] for e in server.events}
    with Outbox(path) as box:
        lost = {d.event.id for d in box.dead_letters(None)}
    assert accepted | lost == set(ids) and not accepted & lost
    assert len(accepted) == 40 - letters


@pytest.mark.parametrize("status", [401, 403])
def test_after_one_pause_a_probe_is_sent_and_an_accepted_one_resumes(server: OutpostServer, status: int) -> None:
    server.fail_next(status)  # one refusal, then the key is accepted again
    told = Errors()
    with SDK(API_KEY, server_url=server.url, retry_config=RetryConfig("none")) as sdk, \
            Publisher(sdk, workers=1, on_error=told, **PAUSES) as publisher:
        refused = publisher.submit("t", {"n": 0}, tenant_id="acme")
        assert publisher.flush(timeout=10)
        during = publisher.submit("t", {"n": 1}, tenant_id="acme")  # within the pause: not sent
        assert publisher.flush(timeout=10)
        assert len(server.requests) == 1
        time.sleep(0.35)
        after = [publisher.submit("t", {"n": n}, tenant_id="acme") for n in range(2, 8)]
        assert publisher.flush(timeout=10)
    assert [event.id for event, _ in told.calls] == [refused, during]
    assert all(isinstance(error, UnauthorizedError) and error.status_code == status for _, error in told.calls)
    assert sorted(e["id"] for e in server.events) == sorted(after)  # the probe was accepted: all flowed
