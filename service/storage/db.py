"""Database engine and sessions: SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg) by URL."""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ..problems import Problem
from .checkpointer import WAL_KEEP, WalCheckpointer
from .quickread import QuickReader

__all__ = [
    "Database",
    "Fault",
    "FileLock",
    "fault_of",
    "fault_problem",
    "faults_as_problems",
    "sqlite_pragmas",
    "utcnow",
]

#: Seconds a connection attempt may take before the database counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 5


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the one rule for time in the service: see `models.UTCDateTime`)."""
    return datetime.now(UTC)


class Database:
    """Owns the async engine and the session factory."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_postgres = make_url(url).get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {}
        if self.is_postgres:
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
            )
        else:
            kwargs.update(connect_args={"timeout": 30})
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if not self.is_postgres:
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    def sync_engine(self) -> Engine:
        """A synchronous engine on the same database, for the writer's thread.

        The batching writer runs each batch on one thread with the synchronous driver (sqlite3,
        psycopg): about ten times cheaper per statement than the async drivers, whose every
        statement is a hop between threads or a trip through the event loop.
        """
        url = make_url(self.url)
        if self.is_postgres:
            return create_engine(
                url.set(drivername="postgresql+psycopg"),
                pool_size=2,
                max_overflow=0,
                pool_pre_ping=False,  # the writer reconnects a dropped connection itself (Writer._begin)
                # The driver begins no transaction by itself: `PostgresRaw.lock` begins each
                # batch's, in the same round trip as the writers' lock and the log's size.
                isolation_level="AUTOCOMMIT",
                connect_args={
                    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "application_name": "liaison-writer",
                },
            )
        engine = create_engine(
            url.set(drivername="sqlite"), connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", sqlite_pragmas)
        event.listen(engine, "connect", _writer_pragmas)
        return engine

    @functools.cached_property
    def quick_reader(self) -> QuickReader | None:
        """On a SQLite file, reads of one row at once on the event loop's thread
        (`storage.quickread`); None on PostgreSQL or in memory."""
        path = self._sqlite_file()
        return None if path is None else QuickReader(path)

    def checkpointer(self) -> WalCheckpointer | None:
        """On a SQLite file, the thread that checkpoints its WAL for the writer
        (`storage.checkpointer`); None on PostgreSQL."""
        path = self._sqlite_file()
        return None if path is None else WalCheckpointer(path)

    def writer_lock(self) -> FileLock | None:
        """What a writer holds around each batch transaction, so that one process at a time
        writes: on SQLite an exclusive `flock` on `<database>-writer.lock` (the kernel wakes
        the next writer the moment it is released, where SQLite's own busy handler sleeps and
        polls; a process that dies releases it), its own for each writer, so two writers in
        one process exclude each other too. On PostgreSQL nothing here: the batch takes an
        advisory lock inside its transaction (`storage.raw`), so None."""
        path = self._sqlite_file()
        return None if path is None else FileLock(Path(f"{path}-writer.lock"))

    def _sqlite_file(self) -> str | None:
        """The SQLite database's file; None on PostgreSQL or in memory."""
        path = make_url(self.url).database
        if self.is_postgres or not path or path == ":memory:":
            return None
        return path

    async def ping(self) -> None:
        """One round trip to the database; raises if it is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.quick_reader is not None:
            self.quick_reader.close()
        await self.engine.dispose()


class FileLock:
    """An exclusive `flock` on one file: `acquire` (blocking: from a worker thread, never the
    event loop), `try_acquire` (never waits), `release`. The file is created private (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        return self._fd

    def acquire(self) -> None:
        """Wait for the lock (blocking)."""
        fcntl.flock(self._open(), fcntl.LOCK_EX)

    def try_acquire(self) -> bool:
        """Take the lock if it is free now; never waits (safe on the event loop)."""
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; NORMAL sync is durable across application
    # crashes (a power loss may lose the last transactions, never corrupt the file).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _writer_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The writer's commits never checkpoint: its `WalCheckpointer` does, in a thread of its own.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.execute(f"PRAGMA journal_size_limit={WAL_KEEP}")
    cur.close()


#: What a database failure means for every request that met it, rather than for one of them.
Fault = Literal["unavailable", "storage-full"]

#: SQLite's primary result codes of a database that cannot serve now (busy, locked, I/O error,
#: cannot open): not the fault of the statement that met them.
_SQLITE_UNAVAILABLE = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
)
#: PostgreSQL SQLSTATE classes of the same: connection exception, insufficient resources,
#: operator intervention (an administrator's shutdown or terminated backend, a server
#: starting or stopping), system error.
_PG_UNAVAILABLE = frozenset({"08", "53", "57", "58"})
#: ... and single codes: a database that takes no connections now (`ALLOW_CONNECTIONS
#: false`, as during maintenance) answers a connection attempt with 55000.
_PG_UNAVAILABLE_CODES = frozenset({"55000"})


#: Seconds a client is told to wait (`Retry-After`) when the database is unreachable, or full.
RETRY_AFTER: dict[Fault, int] = {"unavailable": 2, "storage-full": 30}

_FAULT_DETAIL: dict[Fault, str] = {
    "unavailable": "the database is unavailable; nothing was stored; try again",
    "storage-full": "the service's storage is full; nothing was stored; try again later",
}


def fault_problem(kind: Fault) -> Problem:
    """The answer to a request that met a database fault: 503 `unavailable` or 507
    `storage-full`, each with `Retry-After`."""
    return Problem(kind, _FAULT_DETAIL[kind], retry_after=RETRY_AFTER[kind])


@contextmanager
def faults_as_problems() -> Iterator[None]:
    """Turn a database fault met inside the block into its problem (see `fault_problem`);
    any other error passes through."""
    try:
        yield
    except Exception as e:
        kind = fault_of(e)
        if kind is None:
            raise
        raise fault_problem(kind) from None


def fault_of(error: BaseException) -> Fault | None:
    """`storage-full` when the database has no space left, `unavailable` when it cannot be
    reached or stopped serving (a restart, a terminated connection, a lock or connect
    timeout); None for any other error, which is the statement's own (a constraint, a bug).

    Looks through SQLAlchemy's wrappers to the driver's error (sqlite3, psycopg, asyncpg).
    """
    e: BaseException | None = error
    for _ in range(6):  # SQLAlchemy error -> adapter error -> driver error, at most
        if e is None:
            return None
        found = _fault(e)
        if found is not None:
            return found
        e = getattr(e, "orig", None) or e.__cause__
    return None


def _fault(e: BaseException) -> Fault | None:
    if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
        return "unavailable"
    if isinstance(e, exc.TimeoutError):  # no pooled connection came free in time
        return "unavailable"
    if isinstance(e, sqlite3.Error):
        code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
        if code == sqlite3.SQLITE_FULL:
            return "storage-full"
        return "unavailable" if code in _SQLITE_UNAVAILABLE else None
    if isinstance(e, OSError):  # connecting (refused, unreachable) or writing
        return "storage-full" if e.errno == errno.ENOSPC else "unavailable"  # timeouts too
    sqlstate = getattr(e, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        if sqlstate == "53100":  # disk_full
            return "storage-full"
        unavailable = sqlstate[:2] in _PG_UNAVAILABLE or sqlstate in _PG_UNAVAILABLE_CODES
        return "unavailable" if unavailable else None
    if isinstance(e, asyncpg.InterfaceError):
        return "unavailable"  # no SQLSTATE: the client lost or could not open its connection
    # The same from psycopg (the writer's PostgreSQL driver), only ever loaded on PostgreSQL:
    # not imported here, so that a SQLite server does not load it.
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
        return "unavailable"
    return None
