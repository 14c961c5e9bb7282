"""The batching writer: every state change goes through here, many requests per transaction.

Requests hand the writer a *job*: a plain function of a `Tx`. One task takes all jobs that are
waiting and runs them, in a worker thread, in one database transaction on a synchronous
connection (each job inside a savepoint unless it opts out, so one refusal does not undo its
neighbours); it
appends their audit entries with consecutive indexes, integrates the whole batch into the
Merkle tree with one checkpoint signature, commits, and only then answers each request with
its receipt. So:

* a request's writes and its audit entries commit atomically, or not at all;
* N concurrent requests cost one commit, one tree update and one signature, not N;
* the event loop never waits on the database for a write: the batch runs on a synchronous
  driver (sqlite3, psycopg) in a thread, about ten times cheaper per statement than the
  async drivers, and the loop keeps serving reads and verifying signatures meanwhile;
* on PostgreSQL several service processes take turns with a transaction-scoped advisory
  lock, so the log's indexes stay consecutive across replicas;
* the hot path's few fixed statements go straight to the DB-API connection (`Tx.raw`), and
  what jobs read about who may receive what (`Tx.cache`) is kept from batch to batch while
  nothing can have changed it (see `Writer.run` and `_batch`).

A job that raises `Refusal` has its own writes rolled back (with `savepoint=False`, the job
promises that what it wrote before refusing must stay: a consumed request nonce), and the
refusal's audit entry (for example `message.rejected`) is still appended and committed before
the error returns.
A job runs in the writer thread: it must not touch the event loop; work for the loop (waking
streaming clients) goes through `Tx.after_commit`, run on the loop after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from .problems import Problem
from .storage.db import Database, utcnow
from .tlog.log import AuditLog, Receipt, build_entry

__all__ = ["Raw", "Refusal", "Tx", "Writer", "WriterResult"]

T = TypeVar("T")
log = logging.getLogger("liaison.writer")

#: Entries `Tx.cache` may hold before a batch starts it afresh.
_CACHE_MAX = 20_000
#: Advisory-lock key shared by every Liaison process on one PostgreSQL database.
_PG_LOCK_KEY = 0x4C49_4149  # "LIAI"

Entry = tuple[str, str, str | None, dict[str, Any]]


class Refusal(Exception):
    """A job's refusal: roll back the job's writes, log `entry`, answer with `problem`."""

    def __init__(self, problem: Problem, entry: Entry | None):
        super().__init__(problem.detail)
        self.problem = problem
        self.entry = entry


class Raw:
    """The batch's DB-API connection (sqlite3 or psycopg), for the hot path's fixed statements.

    SQLAlchemy's per-statement machinery (cache-key lookup, parameter processing, result
    wrapping) cost more than SQLite itself there. Statements are written with `?` markers and
    converted once for psycopg's `%s`; timestamps go through `time`, which gives each database
    what SQLAlchemy's DateTime would have stored (on SQLite its text form), so ORM readers and
    raw writers see the same values. Everything runs inside the batch's transaction.
    """

    def __init__(self, dbapi_connection: Any, postgres: bool) -> None:
        self.cursor = dbapi_connection.cursor()
        self.postgres = postgres
        self._sql: dict[str, str] = {}

    def _text(self, sql: str) -> str:
        if not self.postgres:
            return sql
        text_ = self._sql.get(sql)
        if text_ is None:
            if "%" in sql:
                raise ValueError("raw SQL may not contain '%'")
            text_ = self._sql[sql] = sql.replace("?", "%s")
        return text_

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the cursor (fetchone/fetchall/rowcount)."""
        self.cursor.execute(self._text(sql), params)
        return self.cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.cursor.executemany(self._text(sql), list(rows))

    def time(self, value: datetime | None) -> Any:
        """A naive-UTC timestamp as a parameter."""
        if value is None or self.postgres:
            return value
        return value.isoformat(" ", "microseconds")  # SQLAlchemy's form: always 6 digits


@dataclass
class Tx:
    """What a job sees: the session (and its raw connection), the batch time, the audit log,
    and the cache of who may receive what."""

    session: Session
    raw: Raw
    now: datetime
    cache: dict[Any, Any]
    _entries: list[tuple[str, str, str | None, datetime, bytes]]
    _start: int
    _after: list[Callable[[], None]] = field(default_factory=list)
    _mine: list[int] = field(default_factory=list)

    def audit(self, type_: str, actor: str, subject: str | None = None, **fields: Any) -> int:
        """Append one entry; returns its log index (final once the batch commits)."""
        data = build_entry(type_, actor, self.now, fields)
        self._entries.append((type_, actor, subject, self.now, data))
        index = self._start + len(self._entries) - 1
        self._mine.append(index)
        return index

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the event loop once the batch has committed."""
        self._after.append(fn)


@dataclass(frozen=True)
class WriterResult(Generic[T]):
    value: T
    receipts: dict[int, Receipt]

    def receipt(self, index: int) -> Receipt:
        return self.receipts[index]


@dataclass
class _Job:
    fn: Callable[[Tx], Any]
    future: asyncio.Future[WriterResult[Any]]
    shares_cache: bool
    savepoint: bool


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    mine: list[int] = field(default_factory=list)


class Writer:
    """Serialises and batches all writes of this process (see the module docstring)."""

    def __init__(self, db: Database, log_: AuditLog, *, batch_max: int = 256,
                 on_batch: Callable[[], None] | None = None) -> None:
        self.engine = db.sync_engine()
        self.is_postgres = db.is_postgres
        self.log = log_
        self.batch_max = batch_max
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[Any] | None = None
        # `Tx.cache`, kept across batches: valid while the log's size is what this process's
        # last committed batch left (every change to principals, devices, channels or members,
        # by this process or another replica, appends audit entries).
        self._cache: dict[Any, Any] = {}
        self._cache_size: int | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="liaison-writer")

    async def stop(self) -> None:
        """Stop taking jobs; let a batch already in the thread finish, then close the engine."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await self._inflight
            self._inflight = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Problem("unavailable", "the service is stopping"))
        self.engine.dispose()

    async def run(self, fn: Callable[[Tx], T], *, shares_cache: bool = False,
                  savepoint: bool = True) -> WriterResult[T]:
        """Run `fn` in the next batch; raises the job's `Problem` if it refused.

        `shares_cache=True` promises that the job changes nothing that `Tx.cache` holds (who
        may receive what: principals, devices, channels, members); any other job empties the
        cache before it runs, and its batch is not trusted to have left it current.
        `savepoint=False` promises that every write the job makes before it can still raise is
        one that must stay even when it refuses (a consumed request nonce), so there is nothing
        to roll back; it saves two statements per job on the hot path.
        """
        if self._task is None:
            raise RuntimeError("writer is not started")
        future: asyncio.Future[WriterResult[Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, future, shares_cache, savepoint))
        return await future

    async def _loop(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.batch_max and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            # The batch runs in a thread; shielded so that stopping the loop waits for it (see
            # `stop`) instead of abandoning a transaction half way.
            self._inflight = asyncio.get_running_loop().run_in_executor(None, self._batch, jobs)
            try:
                outcomes, receipts, after = await asyncio.shield(self._inflight)
            except Exception:  # the whole transaction failed: every job gets the error
                self.log.forget_edge()
                self._cache.clear()
                self._cache_size = None
                log.exception("write batch failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(
                            Problem("unavailable", "the database write failed; try again"))
                continue
            for job, out in zip(jobs, outcomes, strict=True):
                if job.future.done():
                    continue
                if out.error is not None:
                    job.future.set_exception(out.error)
                else:
                    job.future.set_result(WriterResult(
                        out.value, {i: receipts[i] for i in out.mine}))
            for fn in after:
                try:
                    fn()
                except Exception:
                    log.exception("after-commit hook failed")

    def _batch(self, jobs: list[_Job]) -> tuple[list[_Outcome], dict[int, Receipt],
                                                  list[Callable[[], None]]]:
        """One transaction for the whole batch (runs in the writer thread)."""
        self.batches += 1
        self.jobs += len(jobs)
        size_then = self._cache_size
        if self.on_batch:
            self.on_batch()
        outcomes: list[_Outcome] = []
        after: list[Callable[[], None]] = []
        entries: list[tuple[str, str, str | None, datetime, bytes]] = []
        cache = self._cache
        self._cache_size = None  # until this batch commits
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            if self.is_postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            raw = Raw(session.connection().connection.driver_connection, self.is_postgres)
            start = self.log.writer_size(raw)
            if start != size_then or len(cache) > _CACHE_MAX:
                # Another process appended since (it may have changed anything), or the cache
                # has grown past its bound (labels and devices are many; it refills on demand).
                cache.clear()
            now = utcnow()
            for job in jobs:
                if not job.shares_cache:
                    cache.clear()
                tx = Tx(session, raw, now, cache, entries, start)
                mark = len(entries)
                try:
                    if job.savepoint:
                        with session.begin_nested():
                            value = job.fn(tx)
                    else:
                        value = job.fn(tx)
                    outcomes.append(_Outcome(value, None, tx._mine))
                    after.extend(tx._after)
                except Refusal as r:
                    del entries[mark:]
                    tx._mine.clear()
                    cache.clear()  # it may hold what the rolled-back job read or wrote
                    if r.entry is not None:
                        t, actor, subject, fields = r.entry
                        tx.audit(t, actor, subject, **fields)
                    outcomes.append(_Outcome(None, r.problem, tx._mine))
                except Problem as p:
                    del entries[mark:]
                    cache.clear()
                    outcomes.append(_Outcome(None, p))
                except Exception:
                    del entries[mark:]
                    cache.clear()
                    log.exception("write job failed")
                    outcomes.append(_Outcome(None, Problem(
                        "internal", "the request could not be stored")))
            receipts: dict[int, Receipt] = {}
            if entries:
                self.log.append(raw, start, entries)
                receipts = self.log.integrate(raw, start, [e[4] for e in entries], now
                                              ).receipts
        self._cache_size = start + len(entries)
        return outcomes, receipts, after
