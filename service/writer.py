"""The batching writer: every state change goes through here, many requests per transaction.

Requests hand the writer a *job* (an async function of a `Tx`). One task takes all jobs that
are waiting, runs them in one database transaction (each inside a savepoint, so one refusal
does not undo its neighbours), appends their audit entries with consecutive indexes,
integrates the whole batch into the Merkle tree with one checkpoint signature, commits, and
only then answers each request, with its receipt. So:

* a request's writes and its audit entries commit atomically, or not at all;
* N concurrent requests cost one commit, one tree update and one signature, not N;
* on PostgreSQL several service processes take turns with a transaction-scoped advisory
  lock, so the log's indexes stay consecutive across replicas.

A job that raises `Refusal` has its own writes rolled back, but the refusal's audit entry
(for example `message.rejected`) is still appended and committed before the error returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .audit import AuditLog, Receipt, build_entry
from .db import Database, utcnow
from .problems import Problem

__all__ = ["Refusal", "Tx", "Writer", "WriterResult"]

T = TypeVar("T")
log = logging.getLogger("liaison.writer")

#: Advisory-lock key shared by every Liaison process on one PostgreSQL database.
_PG_LOCK_KEY = 0x4C49_4149  # "LIAI"


class Refusal(Exception):
    """A job's refusal: roll back the job's writes, log `entry`, answer with `problem`."""

    def __init__(self, problem: Problem, entry: tuple[str, str, str | None, dict[str, Any]] | None):
        super().__init__(problem.detail)
        self.problem = problem
        self.entry = entry


@dataclass
class Tx:
    """What a job sees: the session, the batch time, and the audit log to append to."""

    session: AsyncSession
    now: datetime
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
        """Run `fn` once the batch has committed (e.g. wake streaming clients)."""
        self._after.append(fn)


@dataclass(frozen=True)
class WriterResult(Generic[T]):
    value: T
    receipts: dict[int, Receipt]

    def receipt(self, index: int) -> Receipt:
        return self.receipts[index]


@dataclass
class _Job:
    fn: Callable[[Tx], Awaitable[Any]]
    future: asyncio.Future[WriterResult[Any]]


class Writer:
    """Serialises and batches all writes of this process (see the module docstring)."""

    def __init__(self, db: Database, log_: AuditLog, *, batch_max: int = 256,
                 on_batch: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_batch = on_batch
        self.log = log_
        self.batch_max = batch_max
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="liaison-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self, fn: Callable[[Tx], Awaitable[T]]) -> WriterResult[T]:
        """Run `fn` in the next batch; raises the job's `Problem` if it refused."""
        if self._task is None:
            raise RuntimeError("writer is not started")
        future: asyncio.Future[WriterResult[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(fn, future))
        return await future

    async def _loop(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            # Let requests that are already on their way join this batch.
            await asyncio.sleep(0)
            while len(jobs) < self.batch_max and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await self._batch(jobs)
            except Exception as e:  # the whole transaction failed: every job gets the error
                self.log.forget_edge()
                log.exception("write batch failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(
                            Problem("unavailable", "the database write failed; try again")
                            if not isinstance(e, Problem) else e)

    async def _batch(self, jobs: list[_Job]) -> None:
        self.batches += 1
        self.jobs += len(jobs)
        if self.on_batch:
            self.on_batch()
        outcomes: list[tuple[_Job, Any, BaseException | None, list[int]]] = []
        after: list[Callable[[], None]] = []
        async with self.db.sessions() as session, session.begin():
            if self.db.is_postgres:
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            start = await self.log.size(session)
            entries: list[tuple[str, str, str | None, datetime, bytes]] = []
            now = utcnow()
            for job in jobs:
                tx = Tx(session, now, entries, start)
                mark = len(entries)
                try:
                    async with session.begin_nested():
                        value = await job.fn(tx)
                    outcomes.append((job, value, None, tx._mine))
                    after.extend(tx._after)
                except Refusal as r:
                    del entries[mark:]
                    tx._mine.clear()
                    if r.entry is not None:
                        t, actor, subject, fields = r.entry
                        tx.audit(t, actor, subject, **fields)
                    outcomes.append((job, None, r.problem, tx._mine))
                except Problem as p:
                    del entries[mark:]
                    outcomes.append((job, None, p, []))
                except Exception as e:
                    del entries[mark:]
                    log.exception("write job failed")
                    outcomes.append((job, None, Problem("internal", "the request could not be "
                                                        "stored"), []))
                    del e
            await self.log.append(session, start, entries)
            integrated = await self.log.integrate(session, start, [e[4] for e in entries], now) \
                if entries else None
        for job, value, error, mine in outcomes:
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                receipts = {i: integrated.receipts[i] for i in mine} if integrated else {}
                job.future.set_result(WriterResult(value, receipts))
        for fn in after:
            try:
                fn()
            except Exception:
                log.exception("after-commit hook failed")
