"""The writer's batch connection: fixed statements straight on the DB-API cursor, per backend.

SQLAlchemy's per-statement machinery (cache-key lookup, parameter processing, result
wrapping) cost more than SQLite itself on the hot path, so the writer's few fixed statements
go to the driver's cursor (sqlite3 or psycopg) inside the batch's one transaction. Where the
two databases differ (placeholders, how a timestamp is passed, serialising writers, live
notifications), each has its own class; everything else is the same SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from psycopg.pq import PipelineStatus, TransactionStatus
from sqlalchemy.orm import Session

from .models import to_column_time

__all__ = ["PostgresRaw", "Raw", "SqliteRaw", "raw_connection"]

#: Advisory-lock key shared by every Liaison process on one PostgreSQL database.
_PG_LOCK_KEY = 0x4C49_4149  # "LIAI"
_IDLE = TransactionStatus.IDLE


class Raw:
    """The batch's DB-API cursor. Statements are written with `?` markers."""

    postgres = False

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pooled = session.connection().connection
        self.cursor: Any = self._pooled.driver_connection.cursor()  # type: ignore[union-attr]

    def dropped(self) -> bool:
        """Whether this connection can no longer be used (the database closed it after a
        statement failed)."""
        return False

    def discard(self) -> None:
        """Tell the pool never to hand this connection out again."""
        self._pooled.invalidate()

    def _text(self, sql: str) -> str:
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the cursor (fetchone/fetchall/rowcount)."""
        self.cursor.execute(self._text(sql), params)
        return self.cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.cursor.executemany(self._text(sql), list(rows))

    def insert_rows(self, into: str, types: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert `rows` into `into` (`"table (a, b)"`; `types`: the PostgreSQL type of each
        column): an executemany of `INSERT ... VALUES` here (see `PostgresRaw`)."""
        if rows:
            marks = ", ".join("?" * len(types))
            self.executemany(f"INSERT INTO {into} VALUES ({marks})", rows)  # noqa: S608 (fixed names)

    @contextlib.contextmanager
    def pipeline(self, rows: int, *, commit: bool = False) -> Iterator[None]:
        """Statements that need no answer go out without waiting for one until the block ends
        (PostgreSQL's pipeline mode: see `PostgresRaw`), for a block that inserts about
        `rows` rows; here every statement runs at once, as outside it. With `commit`, the
        block is the transaction's last and the caller commits it after (`Session.commit`),
        which may find it committed already (in the block's round trip)."""
        yield

    def claim_nonces(self, rows: Sequence[tuple[str, str, Any]]) -> set[tuple[str, str]]:
        """Insert the (keyid, nonce, expires_at) rows that are not there yet (no two with one
        key); returns the keys inserted. Here a read of those present (by chunks, within
        SQLite's oldest limit of 999 parameters a statement), then one executemany."""
        present: set[tuple[str, str]] = set()
        for chunk in _chunks(rows, _PARAMS // 2):
            marks = ", ".join("(?, ?)" for _ in chunk)
            found = self.execute(
                f"SELECT keyid, nonce FROM request_nonce WHERE (keyid, nonce) IN (VALUES {marks})",  # noqa: S608 (markers only)
                [v for k, n, _ in chunk for v in (k, n)],
            ).fetchall()
            present.update((str(k), str(n)) for k, n in found)
        new = [r for r in rows if (r[0], r[1]) not in present]
        self.executemany("INSERT INTO request_nonce (keyid, nonce, expires_at) VALUES (?, ?, ?)", new)
        return {(k, n) for k, n, _ in new}

    def present_message_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these message ids exist."""
        present: set[str] = set()
        for chunk in _chunks(ids, _PARAMS):
            marks = ", ".join("?" * len(chunk))
            rows = self.execute(f"SELECT id FROM message WHERE id IN ({marks})", list(chunk)).fetchall()  # noqa: S608 (markers only)
            present.update(str(r[0]) for r in rows)
        return present

    def time(self, value: datetime | None) -> Any:
        """An aware timestamp as a parameter, stored exactly as `models.UTCDateTime` stores it
        (so ORM readers and raw writers see the same values); None stays None."""
        return None if value is None else to_column_time(value)

    def lock(self, then: str) -> Any:
        """Begin the batch's transaction holding the writers' lock (every writer of this
        database waits for it until the transaction ends), then run `then` (one read without
        parameters: the log's size) in it and return its first row."""
        raise NotImplementedError

    def notify_many(self, notes: Sequence[tuple[str, str]]) -> None:
        """Notify listeners of every process of each (channel, payload), in order, when the
        transaction commits. Nothing here: SQLite cannot (`Tx.notify` says so, and the job
        tells its own process after the commit)."""


class SqliteRaw(Raw):
    """SQLite: each process's writer task serialises its own batches, and processes take turns
    through the writer's file lock (`Database.writer_lock`); the batch's transaction begins
    IMMEDIATE, so that it holds SQLite's write lock before it reads the log's size (a writer
    without the file lock then waits on SQLite's busy timeout instead of writing at an index
    another has taken). Timestamps in SQLAlchemy's text form."""

    def lock(self, then: str) -> Any:
        conn = self.cursor.connection
        if conn.in_transaction:  # nothing may have begun it: its snapshot could be stale
            raise RuntimeError("the batch's SQLite transaction began before its lock")
        self.cursor.execute("BEGIN IMMEDIATE")
        return self.cursor.execute(then).fetchone()

    def time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return to_column_time(value).isoformat(" ", "microseconds")  # always 6 digits


class PostgresRaw(Raw):
    """PostgreSQL: `%s` placeholders; replicas take turns through a transaction-scoped advisory
    lock; notifications through `pg_notify`, delivered only if the transaction commits."""

    postgres = True

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._sql: dict[str, str] = {}
        self._pipelined = False

    def _text(self, sql: str) -> str:
        text_ = self._sql.get(sql)
        if text_ is None:
            if "%" in sql:
                raise ValueError("raw SQL may not contain '%'")
            text_ = self._sql[sql] = sql.replace("?", "%s")
        return text_

    def lock(self, then: str) -> Any:
        """One round trip (three before: psycopg's BEGIN, the lock, the read): the writer's
        connection is in autocommit mode (`Database.sync_engine`), so psycopg begins nothing
        itself, and the three statements go as one simple query. Each statement of a simple
        query takes its own snapshot at READ COMMITTED (asked for, whatever the server's
        default), so `then` sees every transaction committed before the lock was granted."""
        conn = self.cursor.connection
        if not conn.autocommit or conn.info.transaction_status != _IDLE:
            raise RuntimeError("the batch's PostgreSQL transaction began before its lock")
        if ";" in then or "%" in then:
            raise ValueError("the read after the lock is one statement without parameters")
        self.cursor.execute(
            f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({_PG_LOCK_KEY}); {then}"
        )
        self.cursor.nextset()  # past BEGIN's and the lock's results
        self.cursor.nextset()
        return self.cursor.fetchone()

    def dropped(self) -> bool:
        """Also a connection left in pipeline mode (`pipeline`) by a failure as it ended: no
        statement can run on it again, not even the pool's ROLLBACK when it is handed back."""
        conn = self.cursor.connection
        return bool(conn.broken or conn.closed or conn.pgconn.pipeline_status != PipelineStatus.OFF)

    def claim_nonces(self, rows: Sequence[tuple[str, str, Any]]) -> set[tuple[str, str]]:
        """One statement: the rows inserted where not there yet, and the keys that were."""
        found = self.execute(
            "INSERT INTO request_nonce (keyid, nonce, expires_at) "
            "SELECT * FROM unnest(?::text[], ?::text[], ?::timestamp[]) "
            "ON CONFLICT DO NOTHING RETURNING keyid, nonce",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
        ).fetchall()
        return {(str(k), str(n)) for k, n in found}

    def present_message_ids(self, ids: Sequence[str]) -> set[str]:
        rows = self.execute("SELECT id FROM message WHERE id = ANY(?::text[])", (list(ids),)).fetchall()
        return {str(r[0]) for r in rows}

    def notify_many(self, notes: Sequence[tuple[str, str]]) -> None:
        """One statement for them all, in order (`WITH ORDINALITY`); PostgreSQL delivers a
        transaction's notifications in the order they were sent."""
        if notes:
            self.execute(
                "SELECT count(pg_notify(c, p)) FROM (SELECT c, p FROM unnest(?::text[], ?::text[]) "
                "WITH ORDINALITY AS t(c, p, n) ORDER BY n) AS s",
                ([c for c, _ in notes], [p for _, p in notes]),
            )

    @contextlib.contextmanager
    def pipeline(self, rows: int, *, commit: bool = False) -> Iterator[None]:
        """A batch's last statements (its audit entries, tree hashes, checkpoint, map leaves)
        in one round trip instead of one or two each: psycopg's pipeline mode sends each
        statement at once and collects the answers when the block ends, which raises the
        first statement's error (the transaction is then aborted, as it would have been).
        A statement whose answer is read waits for it, as outside. With `commit`, the COMMIT
        goes last in the same round trip when the block raised nothing (the session's pending
        ORM writes flushed before the block, so that none is left to run after the COMMIT),
        and the caller's `Session.commit()` finds nothing to do; a COMMIT that fails raises
        when the block ends, like any statement of it. Only for small blocks (`rows` up to
        `_PIPELINE_ROWS`): COPY, twice as fast for thousands of rows, cannot run in a
        pipeline (the caller's `Session.commit()` commits then)."""
        if rows > _PIPELINE_ROWS:
            yield
            return
        if commit:
            self.session.flush()
        with self.cursor.connection.pipeline():
            self._pipelined = True
            try:
                yield
                if commit:
                    self.cursor.execute("COMMIT")
            finally:
                self._pipelined = False

    def insert_rows(self, into: str, types: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """One binary `COPY ... FROM STDIN`: the same rows at about a fifth of an
        executemany's cost (which runs the INSERT once per row on the server); COPY fires the
        same triggers and needs the same INSERT privilege, and a duplicate key fails it as it
        fails the INSERT. In a pipeline (`pipeline`), an `INSERT ... SELECT FROM unnest` of
        one binary array per column instead, by chunks."""
        if not rows:
            return
        if self._pipelined:
            arrays = ", ".join(f"%b::{t}[]" for t in types)
            sql = f"INSERT INTO {into} SELECT * FROM unnest({arrays})"  # noqa: S608 (fixed names)
            for chunk in _chunks(rows, _UNNEST_ROWS):
                self.cursor.execute(sql, [list(column) for column in zip(*chunk, strict=True)])
            return
        with self.cursor.copy(f"COPY {into} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(types))
            write = copy.write_row
            for row in rows:
                write(row)


#: Parameters per statement in the lookups by chunks (SQLite before 3.32 allows 999).
_PARAMS = 900

#: Rows up to which a block of inserts goes out as one pipeline (`PostgresRaw.pipeline`)...
_PIPELINE_ROWS = 4_000
#: ... in statements of at most this many rows each (arrays of as many values per column).
_UNNEST_ROWS = 1_000

_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def raw_connection(session: Session, postgres: bool) -> Raw:
    """The raw connection of `session`'s transaction, for its backend."""
    return PostgresRaw(session) if postgres else SqliteRaw(session)
