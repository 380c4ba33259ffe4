"""The durable outbox: a SQLite file (WAL) of events not yet delivered, and their dead letters.

One row per event, written before ``submit`` returns. A process claims due rows with a lease
(owner, expiry), so several processes can share one file without sending an event twice; a lease
that expires (its process was killed) is claimed again. A 202 deletes the row; a final failure
moves it to ``dead_letters``; any other failure puts it back with a later ``next_attempt_at``.
The admin key is never stored. Times are Unix seconds (``time.time()``), shared across processes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from . import _fork, _owners
from ._record import Record
from .errors import ConfigurationError, OutboxError
from .models import Event
from .request import PublishRequest, check_headers
from .retry import BackoffStrategy, RetryConfig

__all__ = ["Outbox", "OutboxEntry", "DeadLetter", "ClaimedRow", "Outcome", "SYNCHRONOUS_MODES"]

#: ``synchronous=`` settings: what a committed ``submit`` survives (see the README).
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")
SCHEMA_VERSION = 1

_COLUMNS = "event_id, tenant_id, topic, body, headers, retries, timeout_ms, created_at, first_sent_at"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT,
    retries TEXT,
    timeout_ms REAL,
    created_at REAL NOT NULL,
    first_sent_at REAL,
    next_attempt_at REAL NOT NULL,
    rounds INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at, id);
CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT,
    retries TEXT,
    timeout_ms REAL,
    created_at REAL NOT NULL,
    first_sent_at REAL,
    rounds INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    error TEXT NOT NULL,
    status INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_failed ON dead_letters (failed_at);
PRAGMA user_version = {SCHEMA_VERSION};
"""

_CLAIMABLE = "next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
#: Past any time this code writes (the year 31 million): a ``next_attempt_at`` above it, or text or a
#: blob (SQLite sorts them after every number), is a damaged row, found through the due index.
_NOT_A_TIME = 1e15
#: How often (seconds) a claiming outbox looks for dead owners and damaged schedules.
SWEEP_INTERVAL = 1.0

#: ``on_bad_row(row_id, event, reason)``: a row that does not decode, moved to the dead letters.
BadRowHandler = Callable[[int, Event, str], None]

#: What a worker reports for a claimed row: (kind, row id, error text, HTTP status, when).
#: kind: "delivered" (delete), "deferred" (again at ``when``), "dead" (to dead letters), "release".
Outcome = Tuple[str, int, Optional[str], Optional[int], float]


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



class ClaimedRow:
    """A row this process holds a lease on: the request to send again, and its history."""

    __slots__ = ("first_sent_at", "request", "retries", "rounds", "row_id", "timeout_ms")

    def __init__(self, row_id: int, request: PublishRequest, retries: Optional[RetryConfig],
                 timeout_ms: Optional[float], rounds: int, first_sent_at: Optional[float]) -> None:
        self.row_id = row_id
        self.request = request
        self.retries = retries
        self.timeout_ms = timeout_ms
        self.rounds = rounds
        self.first_sent_at = first_sent_at


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


def _stored_text(raw: bytes) -> str:
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
    from .fields import timeout_seconds

    timeout_seconds(value, "timeout_ms")
    return float(value)


def _rounds_column(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{_kind(value)}, not a count")
    return value


def _time_column(value: Any) -> Optional[float]:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value < _NOT_A_TIME:
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


def _as_text(value: Any) -> str:
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


def _event(row: Sequence[Any]) -> Event:
    """An Event from (event_id, tenant_id, topic, body) as stored, whatever their types (for inspection)."""
    return Event(_as_text(row[0]), _as_text(row[1]), _as_text(row[2]), _as_bytes(row[3]))


#: A damaged row to the dead letters, its values made readable (text ids, a blob body).
_DEAD_LETTER_BAD_ROW = (
    f"INSERT INTO dead_letters ({_COLUMNS}, rounds, failed_at, error, status) "
    "SELECT CAST(event_id AS TEXT), CAST(tenant_id AS TEXT), CAST(topic AS TEXT), "
    "CASE WHEN typeof(body) = 'blob' THEN body ELSE CAST(body AS BLOB) END, headers, retries, timeout_ms, "
    "created_at, first_sent_at, CASE WHEN typeof(rounds) = 'integer' THEN rounds + 1 ELSE 1 END, ?, ?, NULL "
    "FROM outbox WHERE id = ?"
)


def _check_synchronous(value: str) -> str:
    mode = value.upper() if isinstance(value, str) else value
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigurationError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {value!r}")
    return str(mode)


class Outbox:
    """One outbox file. Thread-safe (one connection behind a lock); use ``close()`` when done.

    ``synchronous``: ``"FULL"`` (default: a recorded event survives power loss), ``"NORMAL"``
    (survives a crash of the process, not of the machine), ``"OFF"`` (fastest; a machine crash
    may lose recent events). ``busy_timeout``: how long to wait for another process's write lock.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], *, synchronous: str = "FULL",
                 busy_timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.synchronous = _check_synchronous(synchronous)
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self._closed = False
        self._fork_held = False
        self._owners_prefix = _owners.prefix_for(self.path)
        self._owner_locks: Dict[str, _owners.OwnerLock] = {}  # owners claiming through this object
        self._swept_at: Optional[float] = None
        with self._lock:
            self._connection()  # open now: a bad path or a refused WAL fails here
        _fork.register(self)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {self.path!r}: {exc}") from None
        conn.text_factory = _stored_text
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self.path!r}: SQLite refused WAL mode ({mode}); use a local disk")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except (sqlite3.Error, OutboxError) as exc:
            conn.close()
            if isinstance(exc, OutboxError):
                raise
            raise OutboxError(f"cannot open the outbox {self.path!r}: {exc}") from None
        return conn

    def _connection(self) -> sqlite3.Connection:
        """With the lock held: the connection, (re)opened on first use (after a fork, in both processes)."""
        if self._closed:
            raise OutboxError(f"the outbox {self.path!r} is closed")
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    # SQLite keeps per-file lock state for the whole process: a connection open across a fork would
    # leave the child with state it does not own. So no connection crosses a fork: hold the lock (no
    # statement runs), close, and let each side reopen on first use.

    def _before_fork(self) -> None:
        self._lock.acquire()
        self._fork_held = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _after_fork_in_parent(self) -> None:
        if self._fork_held:
            self._fork_held = False
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self._fork_held = False
        self._conn = None
        for lock in self._owner_locks.values():  # the parent's owners stay alive only while the parent is
            lock.forget_after_fork()
        self._owner_locks = {}

    def __repr__(self) -> str:
        return f"Outbox({self.path!r}, synchronous={self.synchronous!r})"

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Idempotent. An owner's liveness lock is given up only when it holds
        no row any more (a send still in flight keeps it until the process exits)."""
        with self._lock:
            if not self._closed and self._owner_locks:
                try:
                    held = {row[0] for row in self._read(
                        "SELECT DISTINCT lease_owner FROM outbox WHERE lease_owner IS NOT NULL")}
                except OutboxError:
                    held = set(self._owner_locks)
                for owner in [owner for owner in self._owner_locks if owner not in held]:
                    self._owner_locks.pop(owner).release()
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: other processes wait up to ``busy_timeout``)."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path!r}: {exc}") from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox {self.path!r}: {exc}") from None

    # -- the publisher's side --------------------------------------------------------------

    def transact(
        self,
        inserts: Sequence[Tuple[PublishRequest, Optional[RetryConfig], Optional[float]]],
        outcomes: Sequence[Outcome],
        *,
        owner: str,
        claim: int = 0,
        lease_seconds: float = 120.0,
        now: Optional[float] = None,
        on_bad_row: Optional[BadRowHandler] = None,
    ) -> Tuple[List[int], List[ClaimedRow]]:
        """One transaction (one commit, one fsync for all): record ``inserts``, apply ``outcomes`` of
        rows ``owner`` holds, then claim up to ``claim`` due rows for ``lease_seconds``.
        Returns the new row ids (in order) and the claimed rows.

        A claiming owner holds a liveness lock (see ``_owners``) while it has rows; rows leased by an
        owner whose process died are claimable at once. A row that does not decode is moved to the
        dead letters with the reason (``on_bad_row`` hears of it); the others flow."""
        now = time.time() if now is None else now
        dead: List[str] = []
        damaged: List[int] = []
        if claim > 0:
            self._hold(owner)
            dead, damaged = self._sweep()
        if not inserts and not outcomes and not dead and not damaged and (claim <= 0 or not self._read(
                f"SELECT 1 FROM outbox WHERE {_CLAIMABLE} LIMIT 1", (now, now))):
            return [], []
        bad: List[Tuple[int, Event, str]] = []
        with self._transaction() as conn:
            row_ids = [self._insert(conn, request, retries, timeout_ms, now)
                       for request, retries, timeout_ms in inserts]
            for outcome in outcomes:
                self._apply(conn, outcome, owner)
            for gone in dead:
                conn.execute("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                             (gone,))
            for row_id in damaged:
                self._bury(conn, row_id, "next_attempt_at: not a time", now, bad)
            claimed = self._claim(conn, owner, claim, lease_seconds, now, bad) if claim > 0 else []
        for gone in dead:
            _owners.forget(self._owners_prefix, gone)
        if on_bad_row is not None:
            for row_id, event, reason in bad:
                on_bad_row(row_id, event, reason)
        return row_ids, claimed

    def _hold(self, owner: str) -> None:
        """``owner`` shows it is alive while it claims through this outbox."""
        with self._lock:
            if owner in self._owner_locks:
                return
            lock = _owners.OwnerLock(self._owners_prefix, owner)
            lock.hold()  # False (no fcntl, a read-only directory): others fall back to its leases
            self._owner_locks[owner] = lock
        # once per owner: remove the files of dead owners that hold no row (killed while idle)
        dead = _owners.dead_files(self._owners_prefix)
        if dead:
            holding = {row[0] for row in self._read(
                "SELECT DISTINCT lease_owner FROM outbox WHERE lease_owner IS NOT NULL")}
            for gone in dead:
                if gone not in holding:
                    _owners.forget(self._owners_prefix, gone)

    def _sweep(self) -> Tuple[List[str], List[int]]:
        """At most every ``SWEEP_INTERVAL``: the owners of leases whose process died, and the rows whose
        schedule is damaged (they would never come due)."""
        clock = time.monotonic()
        with self._lock:
            if self._swept_at is not None and clock - self._swept_at < SWEEP_INTERVAL:
                return [], []
            self._swept_at = clock
            mine = set(self._owner_locks)
        owners = [row[0] for row in self._read(
            "SELECT DISTINCT lease_owner FROM outbox WHERE lease_owner IS NOT NULL")]
        dead = [o for o in owners if o not in mine and _owners.is_dead(self._owners_prefix, o)]
        damaged = [row[0] for row in self._read(
            "SELECT id FROM outbox WHERE next_attempt_at >= ? ORDER BY next_attempt_at LIMIT 100", (_NOT_A_TIME,))]
        return dead, damaged

    @staticmethod
    def _bury(conn: sqlite3.Connection, row_id: int, reason: str, now: float,
              bad: List[Tuple[int, Event, str]]) -> None:
        """Move a damaged row to the dead letters, readable, with the reason."""
        found = conn.execute("SELECT event_id, tenant_id, topic, body FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if found is None:
            return
        message = f"outbox row {row_id} could not be decoded ({reason}); it was not sent"
        conn.execute(_DEAD_LETTER_BAD_ROW, (now, f"OutboxError: {message}", row_id))
        conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        bad.append((row_id, _event(found), message))

    @staticmethod
    def _insert(conn: sqlite3.Connection, request: PublishRequest, retries: Optional[RetryConfig],
                timeout_ms: Optional[float], now: float) -> int:
        cursor = conn.execute(
            f"INSERT INTO outbox ({_COLUMNS}, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (request.event_id, request.tenant_id, request.topic, request.body,
             json.dumps(request.headers) if request.headers else None, _dump_retries(retries), timeout_ms, now, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    def _apply(conn: sqlite3.Connection, outcome: Outcome, owner: str) -> None:
        kind, row_id, error, status, when = outcome
        if kind == "delivered":
            conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        elif kind == "deferred":
            conn.execute(
                "UPDATE outbox SET rounds = rounds + 1, next_attempt_at = ?, last_error = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND lease_owner = ?", (when, error, row_id, owner))
        elif kind == "dead":
            conn.execute(
                f"INSERT INTO dead_letters ({_COLUMNS}, rounds, failed_at, error, status) "
                f"SELECT {_COLUMNS}, rounds + 1, ?, ?, ? FROM outbox WHERE id = ? AND lease_owner = ?",
                (when, error or "", status, row_id, owner))
            conn.execute("DELETE FROM outbox WHERE id = ? AND lease_owner = ?", (row_id, owner))
        elif kind == "release":
            conn.execute("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                         (row_id, owner))
        else:
            raise ValueError(f"unknown outbox outcome {kind!r}")

    @staticmethod
    def _claim(conn: sqlite3.Connection, owner: str, limit: int, lease_seconds: float, now: float,
               bad: List[Tuple[int, Event, str]]) -> List[ClaimedRow]:
        ids = [row[0] for row in conn.execute(
            f"SELECT id FROM outbox WHERE {_CLAIMABLE} ORDER BY next_attempt_at, id LIMIT ?", (now, now, limit))]
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
                Outbox._bury(conn, row[0], str(exc), now, bad)
        return claimed

    def row_ids(self) -> List[int]:
        """Every pending row id (what a starting publisher replays)."""
        return [row[0] for row in self._read("SELECT id FROM outbox ORDER BY id")]

    def existing(self, row_ids: Iterable[int]) -> Set[int]:
        """Which of these rows are still pending (the others were delivered or dead-lettered)."""
        ids = list(row_ids)
        found: Set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in self._read(f"SELECT id FROM outbox WHERE id IN ({marks})", chunk))
        return found

    def next_due(self) -> Optional[float]:
        """When the earliest unleased row becomes due (None when there is none)."""
        rows = self._read("SELECT MIN(next_attempt_at) FROM outbox WHERE lease_owner IS NULL")
        value = rows[0][0] if rows else None
        return float(value) if isinstance(value, (int, float)) else None  # damaged: found by the sweep

    # -- inspection ----------------------------------------------------------------------

    def pending_count(self) -> int:
        """How many events wait for delivery (claimed or not)."""
        return int(self._read("SELECT COUNT(*) FROM outbox")[0][0])

    def pending(self, limit: Optional[int] = 100) -> List[OutboxEntry]:
        """Pending events, oldest first (at most ``limit``; None for all)."""
        rows = self._read(
            "SELECT id, event_id, tenant_id, topic, body, rounds, next_attempt_at, first_sent_at, lease_owner, "
            "last_error FROM outbox ORDER BY id LIMIT ?", (-1 if limit is None else limit,))
        return [OutboxEntry(r[0], _event(r[1:5]), r[5], r[6], r[7], r[8], r[9]) for r in rows]

    def dead_letter_count(self) -> int:
        """How many events failed for good."""
        return int(self._read("SELECT COUNT(*) FROM dead_letters")[0][0])

    def dead_letters(self, limit: Optional[int] = 100) -> List[DeadLetter]:
        """Dead letters, oldest first (at most ``limit``; None for all)."""
        rows = self._read(
            "SELECT id, event_id, tenant_id, topic, body, error, status, rounds, first_sent_at, failed_at "
            "FROM dead_letters ORDER BY id LIMIT ?", (-1 if limit is None else limit,))
        return [DeadLetter(r[0], _event(r[1:5]), _as_text(r[5]), r[6], r[7], r[8], r[9]) for r in rows]

    def replay_dead_letters(self, ids: Optional[Iterable[int]] = None) -> int:
        """Put dead letters (these ids, or all) back in the outbox, due now, with the same event ids.
        Returns how many moved. A running publisher picks them up at its next poll."""
        return len(self.replay(ids))

    def replay(self, ids: Optional[Iterable[int]] = None) -> List[int]:
        """:meth:`replay_dead_letters`, answering the new outbox row ids (a publisher waits for them)."""
        where, params = _id_filter(ids)
        now = time.time()
        with self._transaction() as conn:
            before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]
            conn.execute(
                f"INSERT INTO outbox ({_COLUMNS}, next_attempt_at) SELECT {_COLUMNS}, ? FROM dead_letters {where} "
                "ORDER BY id", (now, *params))
            conn.execute(f"DELETE FROM dead_letters {where}", params)
            # one writer at a time (BEGIN IMMEDIATE) and AUTOINCREMENT: the new rows are those above ``before``
            return [row[0] for row in conn.execute("SELECT id FROM outbox WHERE id > ? ORDER BY id", (before,))]

    def purge_dead_letters(self, ids: Optional[Iterable[int]] = None, *, before: Optional[float] = None) -> int:
        """Delete dead letters (these ids, or all; only those failed before ``before`` if given).
        Returns how many were deleted."""
        where, params = _id_filter(ids)
        if before is not None:
            where = (where + " AND" if where else "WHERE") + " failed_at < ?"
            params = (*params, float(before))
        with self._transaction() as conn:
            return int(conn.execute(f"DELETE FROM dead_letters {where}", params).rowcount)


def _id_filter(ids: Optional[Iterable[int]]) -> Tuple[str, Tuple[Any, ...]]:
    if ids is None:
        return "", ()
    chosen = tuple(int(i) for i in ids)
    if not chosen:
        return "WHERE 0", ()
    return f"WHERE id IN ({','.join('?' * len(chosen))})", chosen

