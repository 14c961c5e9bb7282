"""Live push across processes on SQLite: poll for deliveries other processes committed.

Several processes may serve one SQLite data directory. Each wakes its own streams after its
own commits (`usecases.messaging`, through `EventHub`), and, while it has streams, runs a
`SqliteListener`: every `interval` seconds (50 ms) it asks its own connection `PRAGMA
data_version`, which changes when any other connection committed (no disk I/O). When it
changed, one read transaction takes the deliveries since the listener's cursor (`delivery.seq`,
an INTEGER PRIMARY KEY that grows with every insert) to this process's streaming devices, a
bounded page at a time, and publishes each message (`{"type", "id", "channel", "log_index"}`,
as the writer does) to them; the cursor moves to the highest `seq` of that transaction.

* Messages this process's own writer published are skipped (`EventHub.is_local`: marked in
  the writer's job, before its commit, so also when the poll sees the commit first).
* No streams, no query: the listener sleeps until the first stream opens, and takes its
  cursor (`max(seq)`) right then, in the subscribing call, so nothing committed after the
  stream opened is missed and nothing older is replayed (a stream's `after` catch-up reads the
  inbox after that). That one read runs on the event loop: an indexed lookup, once per idle
  period.
* The polls run on a thread of their own with their own connection; a database that cannot
  answer (busy, locked, I/O) costs a warning (at most one a minute) and a retry at the next
  poll, never the listener. Pushes are hints: a lost one is in the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine.url import make_url

from .db import Database
from .events import EventHub

__all__ = ["SqliteListener"]

log = logging.getLogger("liaison.events")

#: Rows read per statement; a poll reads pages until one is not full.
_PAGE = 1000
#: Up to this many streaming devices, a poll asks for theirs by index (`device_id IN (...)`);
#: beyond, it reads every new delivery and keeps this process's (fewer statements).
_IN_MAX = 500
#: Seconds between two warnings of a failing poll.
_WARN_EVERY = 60.0
#: Seconds a read waits for a lock (in WAL mode only a recovery of the WAL index holds
#: readers up); the first subscriber's cursor is read on the event loop, so waits less.
_BUSY = 1.0
_BUSY_ON_LOOP = 0.1

_VERSION = "PRAGMA data_version"
_HIGH = "SELECT coalesce(max(seq), 0) FROM delivery"
_COLUMNS = (
    "SELECT d.seq, d.message_id, d.device_id, m.channel_id, m.log_index "
    "FROM delivery d JOIN message m ON m.id = d.message_id WHERE d.seq > ? AND d.seq <= ? "
)
_ALL = _COLUMNS + "ORDER BY d.seq LIMIT ?"

Row = tuple[int, str, str, str, int]


class SqliteListener:
    """Publish to this process's streams the deliveries other processes commit to one SQLite
    database (see the module's docstring). `start()`, then `stop()`; `ready` once it can poll.
    `queries` counts the statements it sent."""

    def __init__(self, db: Database, hub: EventHub, interval: float = 0.05) -> None:
        url = make_url(db.url)
        self.path = url.database if url.database and url.database != ":memory:" else None
        self.hub = hub
        self.interval = interval
        self.ready = asyncio.Event()
        self.queries = 0
        self._cursor: int | None = None  # None: take `max(seq)` at the next poll
        self._epoch = 0  # moves at each first subscriber: a poll begun before is stale
        self._seen: tuple[int, int] | None = None  # the poll thread's last (epoch, data_version)
        self._conn: sqlite3.Connection | None = None  # the poll thread's
        self._fence: sqlite3.Connection | None = None  # the loop's, for the first subscriber
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._warned = 0.0
        self._failing = False

    @property
    def cursor(self) -> int | None:
        """The highest `seq` polled (None until a stream opens): what is pushed comes after."""
        return self._cursor

    async def start(self) -> None:
        if self.path is None:  # an in-memory database has no other process
            self.ready.set()
            return
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="liaison-sqlite-listen")
        self.hub.on_first_subscriber = self._first_subscriber
        if self.hub.subscribers:
            self._first_subscriber()
        self._task = asyncio.create_task(self._run(), name="liaison-sqlite-listen")

    async def stop(self) -> None:
        if self.hub.on_first_subscriber == self._first_subscriber:
            self.hub.on_first_subscriber = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._thread is not None:
            # After a poll still running there: the thread's connection closes on the thread.
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._thread, self._close_thread_conn)
            self._thread.shutdown(wait=False)
            self._thread = None
        if self._fence is not None:
            self._fence.close()
            self._fence = None

    # --- on the event loop ---------------------------------------------------------------

    def _first_subscriber(self) -> None:
        """The first stream opened: take the cursor now (`max(seq)`), then wake the polls."""
        self._epoch += 1
        self._cursor = None
        try:
            if self._fence is None:
                self._fence = self._connect(_BUSY_ON_LOOP)
            self._cursor = self._high(self._fence)
        except Exception as e:  # the next poll takes it instead, a few ms later
            self._warn("cursor", e)
        self._wake.set()

    async def _run(self) -> None:
        assert self._thread is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._thread, self._open)
                break
            except Exception as e:
                self._warn("open", e)
                await asyncio.sleep(max(self.interval, 1.0))
        self.ready.set()
        while True:
            if not self.hub.subscribers:
                self._wake.clear()
                await self._wake.wait()  # no streams: no query until one opens
                continue
            try:
                await self._tick(loop)
            except Exception as e:  # busy, locked, I/O: again at the next poll
                self._warn("poll", e)
            else:
                if self._failing:
                    self._failing = False
                    log.info("polling for deliveries again")
            await asyncio.sleep(self.interval)

    async def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """One poll; then the same range for the devices whose first stream opened while it
        ran (the poll asked for the devices streaming when it began, and the cursor moves
        past what it read)."""
        epoch, cursor, devices = self._epoch, self._cursor, self.hub.devices()
        found = await loop.run_in_executor(self._thread, self._poll, epoch, devices, cursor)
        if found is None or epoch != self._epoch:
            return
        high, rows = found
        asked = set(devices)
        while cursor is not None and (added := [d for d in self.hub.devices() if d not in asked]):
            asked.update(added)
            rows += await loop.run_in_executor(self._thread, self._between, cursor, high, added)
        if epoch == self._epoch:  # else a first stream since took the cursor: it rules
            self._cursor = high
            self._publish(sorted(rows))

    def _publish(self, rows: list[Row]) -> None:
        """Each message, in `seq` order, to its devices here; not those published here."""
        messages: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for _seq, mid, device, channel, index in rows:
            if mid not in messages:
                if self.hub.is_local(mid):
                    continue
                event = {"type": "message", "id": mid, "channel": channel, "log_index": index}
                messages[mid] = (event, [])
            messages[mid][1].append(device)
        for event, devices in messages.values():
            self.hub.publish(event, devices)

    def _warn(self, what: str, e: Exception) -> None:
        self._failing = True
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY or self._warned == 0.0:
            self._warned = now
            log.warning("delivery %s failed (%s: %s); retrying", what, type(e).__name__, e)

    # --- on the listener's thread ----------------------------------------------------------

    def _connect(self, busy: float) -> sqlite3.Connection:
        assert self.path is not None
        conn = sqlite3.connect(self.path, timeout=busy, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _open(self) -> None:
        if self._conn is None:
            self._conn = self._connect(_BUSY)

    def _close_thread_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _high(self, conn: sqlite3.Connection) -> int:
        self.queries += 1
        return int(conn.execute(_HIGH).fetchone()[0])

    def _poll(self, epoch: int, devices: list[str], cursor: int | None) -> tuple[int, list[Row]] | None:
        """(the new cursor, the new deliveries to `devices` after `cursor`), or None when no
        other connection committed since the last poll of this `epoch` (a first subscriber
        since always reads: a poll of the epoch before may have seen commits it drops)."""
        conn = self._conn
        assert conn is not None
        self.queries += 1
        version = int(conn.execute(_VERSION).fetchone()[0])
        if (epoch, version) == self._seen and cursor is not None:
            return None
        rows: list[Row] = []
        conn.execute("BEGIN")  # one snapshot: the highest seq and the rows up to it
        try:
            high = self._high(conn)
            if cursor is not None and high > cursor:
                rows = self._since(conn, cursor, high, devices)
        finally:
            conn.execute("COMMIT")
        self._seen = (epoch, version)
        return high, rows

    def _between(self, cursor: int, high: int, devices: list[str]) -> list[Row]:
        """The deliveries to `devices` with `cursor < seq <= high` (all committed: `seq` grows
        in commit order, one writer at a time, and deliveries are never deleted)."""
        assert self._conn is not None
        return self._since(self._conn, cursor, high, devices)

    def _since(self, conn: sqlite3.Connection, cursor: int, high: int, devices: list[str]) -> list[Row]:
        if len(devices) <= _IN_MAX:
            marks = ",".join("?" * len(devices))
            sql = _COLUMNS + f"AND d.device_id IN ({marks}) ORDER BY d.seq LIMIT ?"
            return self._pages(conn, sql, cursor, high, devices)
        here = set(devices)
        return [r for r in self._pages(conn, _ALL, cursor, high, []) if r[2] in here]

    def _pages(
        self, conn: sqlite3.Connection, sql: str, cursor: int, high: int, devices: list[str]
    ) -> list[Row]:
        rows: list[Row] = []
        while True:
            self.queries += 1
            page: list[Row] = conn.execute(sql, (cursor, high, *devices, _PAGE)).fetchall()
            rows.extend(page)
            if len(page) < _PAGE:
                return rows
            cursor = page[-1][0]
