"""A damaged outbox row (a value no writer of ours stores) goes to the dead letters with the reason; the rest flows."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, List, Tuple

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minipub import SDK, Event, Publisher, RetryBudget
from minipub.errors import OutboxError
from minipub.outbox import Outbox
from minipub.request import PublishRequest, build_publish_request
from minipub.testing import OutpostServer

from .conftest import API_KEY

FAST = {"backoff_initial": 0.01, "backoff_cap": 0.05, "poll_interval": 0.05}
#: Every column a claim reads or schedules by, and one it only copies.
COLUMNS = ["event_id", "tenant_id", "topic", "body", "headers", "retries", "timeout_ms", "rounds", "first_sent_at",
           "next_attempt_at", "created_at"]
damaged_values = st.one_of(
    st.none(), st.text(max_size=40), st.binary(max_size=40), st.integers(-2**63, 2**63 - 1),
    st.floats(allow_nan=False), st.sampled_from([float("inf"), -1.0, 0.0, 1e15, 1e300]),
    st.sampled_from(['{"X-A": "b"}', '{"X-A": 1}', '{"Bad Name": "x"}', '{"X-A": "a\\r\\nb"}', "[", "null", "{}",
                     '["backoff", [1, 2, 2.0, 3], true, 3]', '["backoff"]', '["none", [1, 2, 0.5, 3], true, 3]',
                     '["backoff", [1, 2, 2.0, 3], "yes", 3]', "[" * 5000 + "]" * 5000, "{\"a\": NaN}"]),
)


def _requests(count: int) -> List[PublishRequest]:
    return [build_publish_request(tenant_id="acme", topic="t", data={"n": n}) for n in range(count)]


def _damage(path: Path, row_id: int, column: str, value: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"UPDATE outbox SET {column} = ? WHERE id = ?", (value, row_id))
    finally:
        conn.close()


@settings(max_examples=150)
@given(column=st.sampled_from(COLUMNS), value=damaged_values)
def test_a_damaged_row_is_buried_and_the_others_are_claimed(column: str, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "o.db"
        requests = _requests(3)
        with Outbox(path, synchronous="OFF") as outbox:
            row_ids, _ = outbox.transact([(r, None, None) for r in requests], [], owner="writer")
            try:
                _damage(path, row_ids[1], column, value)
            except sqlite3.IntegrityError:  # NOT NULL columns refuse NULL (and NaN, stored as NULL)
                assume(False)
            assert len(outbox.pending(None)) == 3  # inspecting never raises
            outbox.next_due()
            bad: List[Tuple[int, Event, str]] = []
            extra = _requests(1)[0]
            new_ids, claimed = outbox.transact([(extra, None, None)], [], owner="me", claim=10, now=time.time() + 1,
                                               on_bad_row=lambda *row: bad.append(row))
            by_id = {row.row_id: row for row in claimed}
            for row_id, request in ((row_ids[0], requests[0]), (row_ids[2], requests[2]), (new_ids[0], extra)):
                assert by_id[row_id].request.body == request.body  # the intact rows flow
                assert by_id[row_id].request.event_id == request.event_id
            letters = outbox.dead_letters(None)
            pending = {entry.id for entry in outbox.pending(None)}
            if row_ids[1] in by_id:
                assert not bad and not letters  # the value was one a claim can send
            elif letters:
                (letter,) = letters
                assert column in letter.error and "could not be decoded" in letter.error
                assert [row[0] for row in bad] == [row_ids[1]] and column in bad[0][2]
                assert row_ids[1] not in pending
                assert isinstance(letter.event.body, bytes) and isinstance(letter.event.id, str)
            else:  # a valid time in the future: simply not due yet
                assert column == "next_attempt_at" and type(value) in (int, float) and value < 1e15
                assert row_ids[1] in pending and not bad


def test_damaged_rows_go_to_the_dead_letters_and_the_publisher_flows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    requests = _requests(5)
    with Outbox(path) as outbox:
        row_ids, _ = outbox.transact([(r, None, None) for r in requests], [], owner="writer")
    for row_id, column, value in ((row_ids[0], "body", requests[0].body.decode()),  # stored as TEXT
                                  (row_ids[1], "headers", "{not json"), (row_ids[2], "retries", "[1, 2")):
        _damage(path, row_id, column, value)
    errors: List[Tuple[Event, BaseException]] = []
    with OutpostServer(api_key=API_KEY) as server, \
            SDK(API_KEY, server_url=server.url, retry_budget=RetryBudget(100, 1)) as sdk, \
            Publisher(sdk, outbox=path, on_error=lambda event, error: errors.append((event, error)), **FAST) as pub:
        submitted = [pub.submit("t", {"n": n}, tenant_id="acme") for n in range(3)]  # never raises OutboxError
        start = time.monotonic()
        assert pub.flush(timeout=10)
        elapsed = time.monotonic() - start
        stats = pub.stats()
        delivered = sorted(e["id"] for e in server.events)
        letters = pub.dead_letters()
    assert delivered == sorted([r.event_id for r in requests[3:]] + submitted)
    assert sorted(d.event.id for d in letters) == sorted(r.event_id for r in requests[:3])
    assert {d.error.split("(")[1].split(":")[0] for d in letters} == {"body", "headers", "retries"}
    assert all(d.status is None for d in letters)
    assert sorted(e.id for e, _ in errors) == sorted(r.event_id for r in requests[:3])
    assert all(isinstance(error, OutboxError) for _, error in errors)
    assert stats.failed == 3 and stats.delivered == 5 and stats.queued == 0
    assert elapsed < 5
    with Outbox(path) as outbox:
        assert outbox.pending_count() == 0
