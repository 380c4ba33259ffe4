"""The outbox's rows: the SQLite schema, how each column is written and read back, the value objects.

A claimed row is decoded column by column (each decoder raises on a damaged value, naming the
column); such a row is "buried": moved to the dead letters, readable, with the reason. The
statements a transaction runs on rows (insert, apply an outcome, claim, bury) live here too;
``store.py`` owns the file, its connection and its transactions.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._record import Record
from ..models import Event
from ..request import PublishRequest, check_headers
from ..retry import BackoffStrategy, RetryConfig

__all__ = ["OutboxEntry", "DeadLetter", "ClaimedRow", "RowOutcome", "BadRowHandler", "SCHEMA", "SCHEMA_VERSION",
           "insert", "apply", "claim", "bury", "event_of", "as_text"]

SCHEMA_VERSION = 1

COLUMNS = "event_id, tenant_id, topic, body, headers, retries, timeout_ms, created_at, first_sent_at"
#: The event and how to send it: the columns both tables have, in this order.
_EVENT_COLUMNS = """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT,
    retries TEXT,
    timeout_ms REAL,
    created_at REAL NOT NULL,
    first_sent_at REAL,"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox ({_EVENT_COLUMNS}
    next_attempt_at REAL NOT NULL,
    rounds INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at, id);
CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters ({_EVENT_COLUMNS}
    rounds INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    error TEXT NOT NULL,
    status INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_failed ON dead_letters (failed_at);
PRAGMA user_version = {SCHEMA_VERSION};
"""

CLAIMABLE = "next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
#: Past any time this code writes (the year 31 million): a ``next_attempt_at`` above it, or text or a
#: blob (SQLite sorts them after every number), is a damaged row, found through the due index.
NOT_A_TIME = 1e15

#: ``on_bad_row(row_id, event, reason)``: a row that does not decode, moved to the dead letters.
BadRowHandler = Callable[[int, Event, str], None]

#: An outcome applied to a row ``owner`` holds: (kind, row id, error text, HTTP status, when); the
#: kinds are :data:`_OUTCOMES`'s.
RowOutcome = Tuple[str, int, Optional[str], Optional[int], float]


class OutboxEntry(Record):
    """A pending row: the event, how many rounds failed, when it is next due, who holds it."""

    id: int
    event: Event
    rounds: int
    next_attempt_at: float
    first_sent_at: Optional[float]
    lease_owner: Optional[str]
    last_error: Optional[str]


class DeadLetter(Record):
    """An event that failed for good: the error text, the HTTP status (if any), when it failed."""

    id: int
    event: Event
    error: str
    status: Optional[int]
    rounds: int
    first_sent_at: Optional[float]
    failed_at: float


class ClaimedRow(Record):
    """A row this process holds a lease on: the request to send again, and its history."""

    row_id: int
    request: PublishRequest
    retries: Optional[RetryConfig]
    timeout_ms: Optional[float]
    rounds: int
    first_sent_at: Optional[float]


def _dump_retries(config: Optional[RetryConfig]) -> Optional[str]:
    if config is None:
        return None
    b = config.backoff
    return json.dumps([config.strategy, [b.initial_interval, b.max_interval, b.exponent, b.max_elapsed_time],
                       config.retry_connection_errors, config.max_attempts])


def _load_retries(text: Optional[str]) -> Optional[RetryConfig]:
    if not text:
        return None
    strategy, backoff, connection_errors, max_attempts = json.loads(text)
    return RetryConfig(strategy, BackoffStrategy(*backoff), connection_errors, max_attempts)


def stored_text(raw: bytes) -> str:
    """Text as stored; bytes that are not UTF-8 (a damaged row) become lone surrogates, never an error."""
    return raw.decode("utf-8", "surrogateescape")


def _kind(value: Any) -> str:
    return {str: "text", bytes: "a blob", int: "an integer", float: "a real", type(None): "NULL"}.get(
        type(value), type(value).__name__)


def _text_column(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{_kind(value)}, not text" if value != "" else "empty")
    return value


def _body_column(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError(f"{_kind(value)}, not a blob")
    return value


def _headers_column(value: Any) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, str):
        raise ValueError(f"{_kind(value)}, not JSON text")
    headers = json.loads(value)
    if not isinstance(headers, dict):
        raise ValueError("not a JSON object")
    return check_headers(headers)


def _retries_column(value: Any) -> Optional[RetryConfig]:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{_kind(value)}, not JSON text")
    return _load_retries(value)


def _timeout_column(value: Any) -> Optional[float]:
    if value is None:
        return None
    from ..fields import timeout_seconds

    timeout_seconds(value, "timeout_ms")
    return float(value)


def _rounds_column(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{_kind(value)}, not a count")
    return value


def _time_column(value: Any) -> Optional[float]:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value < NOT_A_TIME:
        raise ValueError(f"{_kind(value)}, not a time")
    return float(value)


#: How each column a claim reads becomes a value (each raises on a damaged value).
_DECODERS: Tuple[Tuple[str, Callable[[Any], Any]], ...] = (
    ("event_id", _text_column), ("tenant_id", _text_column), ("topic", _text_column), ("body", _body_column),
    ("headers", _headers_column), ("retries", _retries_column), ("timeout_ms", _timeout_column),
    ("rounds", _rounds_column), ("first_sent_at", _time_column),
)
_CLAIM_COLUMNS = ", ".join(name for name, _ in _DECODERS)


class _BadRow(Exception):
    """A stored row that cannot be sent as it is (the reason names the column)."""


def _decode(row: Sequence[Any]) -> ClaimedRow:
    """A claimed row (id, then the ``_DECODERS`` columns) as the request to send again."""
    values = []
    for (column, decoder), value in zip(_DECODERS, row[1:]):
        try:
            if isinstance(value, str):
                value.encode("utf-8")  # lone surrogates: the stored bytes were not UTF-8
            values.append(decoder(value))
        except Exception as exc:  # whatever a damaged value makes a decoder raise (json, RecursionError...)
            raise _BadRow(f"{column}: {exc}"[:300]) from None
    event_id, tenant_id, topic, body, headers, retries, timeout_ms, rounds, first_sent_at = values
    return ClaimedRow(row[0], PublishRequest(event_id, body, headers, tenant_id, topic), retries, timeout_ms, rounds,
                      first_sent_at)


def as_text(value: Any) -> str:
    """Any stored value as printable text (for inspection)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else str(value).encode()


def event_of(row: Sequence[Any]) -> Event:
    """An Event from (event_id, tenant_id, topic, body) as stored, whatever their types (for inspection)."""
    return Event(as_text(row[0]), as_text(row[1]), as_text(row[2]), _as_bytes(row[3]))


#: A damaged row to the dead letters, its values made readable (text ids, a blob body).
_DEAD_LETTER_BAD_ROW = (
    f"INSERT INTO dead_letters ({COLUMNS}, rounds, failed_at, error, status) "
    "SELECT CAST(event_id AS TEXT), CAST(tenant_id AS TEXT), CAST(topic AS TEXT), "
    "CASE WHEN typeof(body) = 'blob' THEN body ELSE CAST(body AS BLOB) END, headers, retries, timeout_ms, "
    "created_at, first_sent_at, CASE WHEN typeof(rounds) = 'integer' THEN rounds + 1 ELSE 1 END, ?, ?, NULL "
    "FROM outbox WHERE id = ?"
)

#: What each outcome kind does to the row (named parameters: id, owner, error, status, when).
_OUTCOMES: Dict[str, Tuple[str, ...]] = {
    "delivered": ("DELETE FROM outbox WHERE id = :id",),
    "deferred": ("UPDATE outbox SET rounds = rounds + 1, next_attempt_at = :when, last_error = :error, "
                 "lease_owner = NULL, lease_until = NULL WHERE id = :id AND lease_owner = :owner",),
    "dead": (f"INSERT INTO dead_letters ({COLUMNS}, rounds, failed_at, error, status) SELECT {COLUMNS}, "
             "rounds + 1, :when, :error, :status FROM outbox WHERE id = :id AND lease_owner = :owner",
             "DELETE FROM outbox WHERE id = :id AND lease_owner = :owner"),
    "postponed": ("UPDATE outbox SET next_attempt_at = :when, last_error = :error, lease_owner = NULL, "
                  "lease_until = NULL WHERE id = :id AND lease_owner = :owner",),  # not sent: no round
    "release": ("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE id = :id AND lease_owner = :owner",),
}


def insert(conn: sqlite3.Connection, inserts: Sequence[Tuple[PublishRequest, Optional[RetryConfig], Optional[float]]],
           now: float, lease: Optional[Tuple[str, float]] = None, leased: int = 0) -> List[int]:
    """New rows, due now, the first ``leased`` of them already claimed by ``lease`` (owner, until) and
    sent from now; their ids, in order."""
    if not inserts:
        return []
    owner, until = lease or (None, None)
    conn.executemany(
        f"INSERT INTO outbox ({COLUMNS}, next_attempt_at, lease_owner, lease_until) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(request.event_id, request.tenant_id, request.topic, request.body,
          json.dumps(request.headers) if request.headers else None, _dump_retries(retries), timeout_ms, now,
          *((now, now, owner, until) if number < leased else (None, now, None, None)))
         for number, (request, retries, timeout_ms) in enumerate(inserts)])
    last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
    # one writer at a time (BEGIN IMMEDIATE) and AUTOINCREMENT: the new ids are consecutive
    return list(range(last - len(inserts) + 1, last + 1))


def apply(conn: sqlite3.Connection, outcomes: Sequence[RowOutcome], owner: str) -> None:
    """Apply outcomes to rows ``owner`` holds (a 202 deletes the row whoever holds it), kind by kind."""
    by_kind: Dict[str, List[Dict[str, Any]]] = {}
    for kind, row_id, error, status, when in outcomes:
        if kind not in _OUTCOMES:
            raise ValueError(f"unknown outbox outcome {kind!r}")
        by_kind.setdefault(kind, []).append({"id": row_id, "owner": owner, "status": status, "when": when,
                                             "error": error if error or kind != "dead" else ""})
    for kind, params in by_kind.items():
        for sql in _OUTCOMES[kind]:
            conn.executemany(sql, params)


def bury(conn: sqlite3.Connection, row_id: int, reason: str, now: float, bad: List[Tuple[int, Event, str]]) -> None:
    """Move a damaged row to the dead letters, readable, with the reason."""
    found = conn.execute("SELECT event_id, tenant_id, topic, body FROM outbox WHERE id = ?", (row_id,)).fetchone()
    if found is None:
        return
    message = f"outbox row {row_id} could not be decoded ({reason}); it was not sent"
    conn.execute(_DEAD_LETTER_BAD_ROW, (now, f"OutboxError: {message}", row_id))
    conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
    bad.append((row_id, event_of(found), message))


def claim(conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: float,
          bad: List[Tuple[int, Event, str]]) -> List[ClaimedRow]:
    """Lease up to ``limit`` due rows to ``owner``; the damaged ones among them are buried instead."""
    ids = [row[0] for row in conn.execute(
        f"SELECT id FROM outbox WHERE {CLAIMABLE} ORDER BY next_attempt_at, id LIMIT ?", (now, now, limit))]
    if not ids:
        return []
    conn.executemany(
        "UPDATE outbox SET lease_owner = ?, lease_until = ?, first_sent_at = COALESCE(first_sent_at, ?) "
        "WHERE id = ?", [(owner, now + lease_seconds, now, row_id) for row_id in ids])
    marks = ",".join("?" * len(ids))
    claimed: List[ClaimedRow] = []
    for row in conn.execute(f"SELECT id, {_CLAIM_COLUMNS} FROM outbox WHERE id IN ({marks}) "
                            "ORDER BY next_attempt_at, id", ids).fetchall():
        try:
            claimed.append(_decode(row))
        except _BadRow as exc:
            bury(conn, row[0], str(exc), now, bad)
    return claimed
