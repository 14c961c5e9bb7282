"""A read of one row at once, on the event loop's own thread, from a SQLite file.

The async driver reads through a thread of its own, and each of its steps (taking a pooled
connection, the statement, the fetch, giving it back) comes back through the event loop: on a
loop busy with other requests' signature checks, a turn each. A device's first request to a
process that does not hold its keys waited that long: up to 300 ms when many devices started
at once (docs/scaling.md 2c). A primary-key read of a SQLite file in WAL mode waits for no
writer and costs tens of microseconds: cheaper, run at once, than the trips around it.

Only for such reads, and only on SQLite (`Database.quick_reader` is None on PostgreSQL, where
a read is a network round trip the loop must not wait for). A read that cannot be made at
once (the file busy, locked or gone) raises `sqlite3.Error`: the caller then reads the usual
way, which waits and reports a database that cannot serve as such.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["QuickReader"]


class QuickReader:
    """One query-only connection to a SQLite file, opened at the first read, used only by the
    thread that opened it (the event loop's)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._thread: int | None = None

    def one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row of `sql`, or None; raises `sqlite3.Error` if it cannot be read now."""
        cursor = self._open().execute(sql, params)
        try:
            row: tuple[Any, ...] | None = cursor.fetchone()
        finally:
            cursor.close()  # ends the read at once: no WAL snapshot is held for checkpoints to wait on
        return row

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            # No busy wait: a file locked beyond WAL's readers (a migration, a recovery) is
            # read the usual way instead, not waited for here, on the loop.
            uri = f"{Path(self._path).resolve().as_uri()}?mode=rw"  # never creates the file
            conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
            try:
                conn.execute("PRAGMA query_only=1")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn, self._thread = conn, threading.get_ident()
        elif self._thread != threading.get_ident():
            raise sqlite3.ProgrammingError("a QuickReader is used by the thread that opened it only")
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # from another thread: left to the collector
                conn.close()
