"""The outbox file: a SQLite database (WAL) of events not yet delivered, and their dead letters.

One row per event, written before ``submit`` returns. A process claims due rows with a lease
(owner, expiry), so several processes can share one file without sending an event twice; a lease
that expires (its process was killed) is claimed again, and so, at once, are the rows of an owner
whose liveness lock nobody holds (``_owners``). A 202 deletes the row; a final failure moves it to
``dead_letters``; any other failure puts it back with a later ``next_attempt_at``. The admin key is
never stored. Times are Unix seconds (``time.time()``), shared across processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from .. import _fork, _owners
from ..errors import ConfigurationError, OutboxError
from ..models import Event
from ..request import PublishRequest
from ..retry import RetryConfig
from . import rows
from .rows import CLAIMABLE, COLUMNS, NOT_A_TIME, BadRowHandler, ClaimedRow, DeadLetter, OutboxEntry, RowOutcome

__all__ = ["Outbox", "SYNCHRONOUS_MODES", "SWEEP_INTERVAL"]

#: ``synchronous=`` settings: what a committed ``submit`` survives (see the README).
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")
#: How often (seconds) a claiming outbox looks for dead owners and damaged schedules.
SWEEP_INTERVAL = 1.0
#: How long a write waits for another process's write lock (seconds).
_BUSY_TIMEOUT = 30.0


def _check_synchronous(value: str) -> str:
    mode = value.upper() if isinstance(value, str) else value
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigurationError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {value!r}")
    return str(mode)


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection to the outbox file in WAL mode, its schema made if missing."""
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path!r}: {exc}") from None
    conn.text_factory = rows.stored_text
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"outbox {path!r}: SQLite refused WAL mode ({mode}); use a local disk")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        for statement in rows.SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
    except (sqlite3.Error, OutboxError) as exc:
        conn.close()
        if isinstance(exc, OutboxError):
            raise
        raise OutboxError(f"cannot open the outbox {path!r}: {exc}") from None
    return conn


class Outbox:
    """One outbox file. Thread-safe (one connection behind a lock); use ``close()`` when done.

    ``synchronous``: ``"FULL"`` (default: a recorded event survives power loss), ``"NORMAL"``
    (survives a crash of the process, not of the machine), ``"OFF"`` (fastest; a machine crash
    may lose recent events).
    """

    def __init__(self, path: Union[str, os.PathLike[str]], *, synchronous: str = "FULL") -> None:
        self.path = os.fspath(path)
        self.synchronous = _check_synchronous(synchronous)
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self._syncing = True
        self._closed = False
        self._fork_held = False
        self._owners = _owners.Owners(self.path, self._holding)  # owners claiming through this object
        self._swept_at: Optional[float] = None
        with self._lock:
            self._connection()  # open now: a bad path or a refused WAL fails here
        _fork.register(self)

    def _connection(self) -> sqlite3.Connection:
        """With the lock held: the connection, (re)opened on first use (after a fork, in both processes)."""
        if self._closed:
            raise OutboxError(f"the outbox {self.path!r} is closed")
        if self._conn is None:
            self._conn = _connect(self.path, self.synchronous)
            self._syncing = True  # the connection's setting is the outbox's
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
        self._owners.forget_after_fork()

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
            if not self._closed:
                self._owners.release_idle()
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: other processes wait up to 30 s); not ``durable``:
        under ``FULL``, committed without waiting for the sync (the next durable commit syncs it too)."""
        with self._lock:
            conn = self._connection()
            if self.synchronous == "FULL" and self._syncing != durable:
                conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._syncing = durable
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
        outcomes: Sequence[RowOutcome],
        *,
        owner: str,
        claim: int = 0,
        claim_inserts: bool = False,
        lease_seconds: float = 120.0,
        now: Optional[float] = None,
        on_bad_row: Optional[BadRowHandler] = None,
    ) -> Tuple[List[int], List[ClaimedRow]]:
        """One transaction (one commit, one sync for all): record ``inserts``, apply ``outcomes`` of
        rows ``owner`` holds, then claim up to ``claim`` due rows for ``lease_seconds`` (oldest first).
        With ``claim_inserts`` the inserts are recorded after the claim, and the claim's room left
        takes them as they are written (nothing read back). Returns the new row ids (in order) and the
        claimed rows.

        A claiming owner holds a liveness lock (see ``_owners``) while it has rows; rows leased by an
        owner whose process died are claimable at once. A row that does not decode is moved to the
        dead letters with the reason (``on_bad_row`` hears of it); the others flow. With
        ``synchronous="FULL"`` only a transaction that records inserts waits for the sync: what the
        others change (a delivered row deleted, a row moved or leased) is synced with the next one,
        so a power loss can only make a row be sent again, with its id."""
        now = time.time() if now is None else now
        dead: List[str] = []
        damaged: List[int] = []
        if claim > 0:
            with self._lock:
                self._owners.hold(owner)
            dead, damaged = self._sweep()
        if not inserts and not outcomes and not dead and not damaged and (claim <= 0 or not self._read(
                f"SELECT 1 FROM outbox WHERE {CLAIMABLE} LIMIT 1", (now, now))):
            return [], []
        bad: List[Tuple[int, Event, str]] = []
        with self._transaction(durable=bool(inserts)) as conn:
            row_ids = [] if claim_inserts else rows.insert(conn, inserts, now)
            rows.apply(conn, outcomes, owner)
            for gone in dead:
                conn.execute("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                             (gone,))
            for row_id in damaged:
                rows.bury(conn, row_id, "next_attempt_at: not a time", now, bad)
            claimed = rows.claim(conn, owner, claim, lease_seconds, now, bad) if claim > 0 else []
            if claim_inserts:  # after the claim: rows already due go first
                room = claim - len(claimed)
                row_ids = rows.insert(conn, inserts, now, (owner, now + lease_seconds), room)
                claimed += [ClaimedRow(row_id, *insert, 0, now) for row_id, insert in zip(row_ids[:room], inserts)]
        for gone in dead:
            _owners.forget(self._owners.prefix, gone)
        if on_bad_row is not None:
            for row_id, event, reason in bad:
                on_bad_row(row_id, event, reason)
        return row_ids, claimed

    def _holding(self) -> Set[str]:
        """The owners holding leases now."""
        return {row[0] for row in self._read("SELECT DISTINCT lease_owner FROM outbox WHERE lease_owner IS NOT NULL")}

    def _sweep(self) -> Tuple[List[str], List[int]]:
        """At most every ``SWEEP_INTERVAL``: the owners of leases whose process died, and the rows whose
        schedule is damaged (they would never come due)."""
        clock = time.monotonic()
        with self._lock:
            if self._swept_at is not None and clock - self._swept_at < SWEEP_INTERVAL:
                return [], []
            self._swept_at = clock
            dead = self._owners.dead(self._holding())
        damaged = [row[0] for row in self._read(
            "SELECT id FROM outbox WHERE next_attempt_at >= ? ORDER BY next_attempt_at LIMIT 100", (NOT_A_TIME,))]
        return dead, damaged

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
        found = self._read("SELECT MIN(next_attempt_at) FROM outbox WHERE lease_owner IS NULL")
        value = found[0][0] if found else None
        return float(value) if isinstance(value, (int, float)) else None  # damaged: found by the sweep

    # -- inspection ----------------------------------------------------------------------

    def pending_count(self) -> int:
        """How many events wait for delivery (claimed or not)."""
        return int(self._read("SELECT COUNT(*) FROM outbox")[0][0])

    def pending(self, limit: Optional[int] = 100) -> List[OutboxEntry]:
        """Pending events, oldest first (at most ``limit``; None for all)."""
        found = self._listed("outbox", "rounds, next_attempt_at, first_sent_at, lease_owner, last_error", limit)
        return [OutboxEntry(*row) for row in found]

    def dead_letter_count(self) -> int:
        """How many events failed for good."""
        return int(self._read("SELECT COUNT(*) FROM dead_letters")[0][0])

    def dead_letters(self, limit: Optional[int] = 100) -> List[DeadLetter]:
        """Dead letters, oldest first (at most ``limit``; None for all)."""
        found = self._listed("dead_letters", "error, status, rounds, first_sent_at, failed_at", limit)
        return [DeadLetter(row_id, event, rows.as_text(error), *rest) for row_id, event, error, *rest in found]

    def _listed(self, table: str, columns: str, limit: Optional[int]) -> List[Tuple[Any, ...]]:
        """(id, the event as stored, then ``columns``) of a table's rows, oldest first."""
        found = self._read(f"SELECT id, event_id, tenant_id, topic, body, {columns} FROM {table} ORDER BY id LIMIT ?",
                           (-1 if limit is None else limit,))
        return [(row[0], rows.event_of(row[1:5]), *row[5:]) for row in found]

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
                f"INSERT INTO outbox ({COLUMNS}, next_attempt_at) SELECT {COLUMNS}, ? FROM dead_letters {where} "
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

