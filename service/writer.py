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
* several service processes on one database take turns, batch by batch (a transaction-scoped
  advisory lock on PostgreSQL; on SQLite a file lock beside the database and an IMMEDIATE
  transaction), so the log's indexes stay consecutive across worker processes and replicas;
* the hot path's few fixed statements go straight to the DB-API connection (`Tx.raw`), and
  what jobs read about who may receive what (`Tx.cache`) is kept from batch to batch while
  nothing can have changed it (see `Writer.run` and `_batch`);
* a hot-path job sends no statement of its own: the batch claims its request nonce and looks
  up its envelope id with the others' before the jobs run (`Writer.run`'s `nonce` and
  `message_id`), and its rows and notification go in with the others' after them
  (`Tx.insert_later`, `Tx.notify`; written earlier for a job that may read them). On
  PostgreSQL every statement is a round trip, and the writer thread waits for the GIL again
  after each: per job they were most of a batch's time. The batch begins in one round trip
  there (`Raw.lock`: BEGIN, the writers' lock, the log's size), and its last writes (those
  rows, the map's leaves, the entries, the tree hashes, the checkpoint) and its COMMIT go
  out in one pipeline (`Raw.pipeline`), answered together.

A job that raises `Refusal` has its own writes rolled back (with `savepoint=False`, the job
promises that what it wrote before refusing must stay: a consumed request nonce), and the
refusal's audit entry (for example `message.rejected`) is still appended and committed before
the error returns.

One job's failure never fails or undoes another's writes (see `Writer._settle`): a job that
fails unexpectedly is answered `internal` and the others run again without it; a failure
while integrating or committing splits the batch until the job at fault fails alone; a
database that cannot serve (unreachable, restarting, full: `storage.db.fault_of`) fails the
jobs still waiting with `unavailable` or `storage-full` and a `Retry-After`, having written
nothing of them. Every job answered with a value or a refusal committed.

A job runs in the writer thread: it must not touch the event loop; work for the loop (waking
streaming clients) goes through `Tx.after_commit`, run on the loop after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from .problems import Problem
from .storage.db import RETRY_AFTER, Database, Fault, FileLock, fault_of, fault_problem, utcnow
from .storage.logstore import LogEntry, LogStore, SqlLogStore
from .storage.raw import Raw, raw_connection
from .tlog.dirmap import MapState
from .tlog.log import AuditLog, Receipt, build_entry

__all__ = [
    "CacheSlot",
    "Claim",
    "Deferred",
    "Entry",
    "Lookups",
    "Refusal",
    "Tx",
    "Writer",
    "WriterCache",
    "WriterResult",
]

T = TypeVar("T")
V = TypeVar("V")
log = logging.getLogger("liaison.writer")

#: Entries `Tx.cache` may hold before a batch starts it afresh.
_CACHE_MAX = 20_000

#: An audit entry to append: (type, actor, subject, fields).
Entry = tuple[str, str, str | None, dict[str, Any]]


class Refusal(Exception):
    """A job's refusal: roll back the job's writes, log `entry`, answer with `problem`."""

    def __init__(self, problem: Problem, entry: Entry | None):
        super().__init__(problem.detail)
        self.problem = problem
        self.entry = entry


@dataclass(frozen=True)
class CacheSlot(Generic[V]):
    """One kind of value `Tx.cache` holds, named once by the use case that fills it (e.g.
    device states by device id); the slot's type parameter types what comes out."""

    name: str


class WriterCache:
    """What jobs read about who may receive what, kept from batch to batch while nothing can
    have changed it (see `Writer.run`); values typed by their `CacheSlot`."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, Hashable], Any] = {}

    def get(self, slot: CacheSlot[V], key: Hashable) -> V | None:
        value: V | None = self._items.get((slot.name, key))
        return value

    def put(self, slot: CacheSlot[V], key: Hashable, value: V) -> V:
        self._items[(slot.name, key)] = value
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Claim:
    """A request nonce a job will consume: claimed for the whole batch in one statement before
    its jobs run (`Writer.run`'s `nonce`), kept until `seconds` after the batch time."""

    keyid: str
    nonce: str
    seconds: int


@dataclass
class Lookups:
    """What the batch looked up for its jobs before they ran, one statement each: the request
    nonces claimed (True: this batch inserted it; False: it was already there, a replay),
    and which message ids are taken (present, or accepted by an earlier job of the batch)."""

    nonces: dict[tuple[str, str], bool] = field(default_factory=dict)
    message_ids: dict[str, bool] = field(default_factory=dict)


@dataclass
class Deferred:
    """Writes jobs leave for later in their batch (`Tx.insert_later`, `Tx.notify`): rows by
    table, the tables written in the order they were first deferred into (a table whose rows
    name another's is deferred into after it), and notifications."""

    rows: dict[tuple[str, tuple[str, ...]], list[Sequence[Any]]] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)

    def count(self) -> int:
        """Rows deferred so far."""
        return sum(len(rows) for rows in self.rows.values())

    def take(self, other: Deferred) -> None:
        """Add a successful job's deferred writes after this batch's."""
        for key, rows in other.rows.items():
            self.rows.setdefault(key, []).extend(rows)
        self.notes.extend(other.notes)

    def write(self, raw: Raw) -> None:
        """Write everything deferred so far (one statement per table and one for the
        notifications), and forget it."""
        for (into, types), rows in self.rows.items():
            raw.insert_rows(into, types, rows)
        if self.notes:
            raw.notify_many(self.notes)
        self.rows.clear()
        self.notes.clear()


@dataclass
class Tx:
    """What a job sees: the session and its raw connection, the batch time (aware UTC), the
    log's store, and the cache of who may receive what."""

    session: Session
    raw: Raw
    log: LogStore
    now: datetime
    cache: WriterCache
    _entries: list[LogEntry]
    _start: int
    _after: list[Callable[[], None]] = field(default_factory=list)
    _mine: list[int] = field(default_factory=list)
    #: The map version this batch's leaf changes will have (protocol 9.5).
    map_version: int = 0
    _leaves: dict[bytes, bytes] = field(default_factory=dict)
    _later: Deferred = field(default_factory=lambda: Deferred())
    _lookups: Lookups = field(default_factory=lambda: Lookups())

    def audit(self, type_: str, actor: str, subject: str | None = None, **fields: Any) -> int:
        """Append one entry; returns its log index (final once the batch commits)."""
        self._entries.append(build_entry(type_, actor, self.now, fields, subject))
        index = self._start + len(self._entries) - 1
        self._mine.append(index)
        return index

    def nonce_claimed(self, keyid: str, nonce: str) -> bool | None:
        """Whether the batch's claim of this job's nonce inserted it (False: it was there
        already); None when the job declared no claim (or an earlier job of the batch used
        it): the job then inserts it itself. Answers once."""
        return self._lookups.nonces.pop((keyid, nonce), None)

    def message_id_taken(self, message_id: str) -> bool | None:
        """Whether a message with this id exists or an earlier job of the batch took it; None
        when the job declared no such lookup (it then finds out by inserting)."""
        return self._lookups.message_ids.get(message_id)

    def take_message_id(self, message_id: str) -> None:
        """This job inserts (or defers) the message: later jobs of the batch find it taken."""
        if message_id in self._lookups.message_ids:
            self._lookups.message_ids[message_id] = True

    def accepted_in_batch(self, index: int) -> bool:
        """Whether log entry `index` is this batch's (not committed, nor integrated, yet)."""
        return index >= self._start

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the event loop once the batch has committed."""
        self._after.append(fn)

    def insert_later(self, into: str, types: tuple[str, ...], rows: Iterable[Sequence[Any]]) -> None:
        """Insert `rows` (see `Raw.insert_rows`) once this job and the jobs after it that do
        not read them have run, in one statement with theirs: kept only if the job succeeds,
        written before any job that may read them (`Writer.run`'s `sees_deferred`) and
        before the batch's audit entries are integrated."""
        self._later.rows.setdefault((into, types), []).extend(rows)

    def notify(self, channel: str, payload: str) -> bool:
        """Notify listeners of every process when the batch commits (PostgreSQL's NOTIFY, sent
        with the rest of the batch's notifications in one statement); False when the backend
        cannot (SQLite: the job then tells its own process through `after_commit`)."""
        if not self.raw.postgres:
            return False
        self._later.notes.append((channel, payload))
        return True

    def set_leaf(self, key: bytes, value: bytes) -> None:
        """Set the directory map's leaf `key` to `value` in this batch's map version (kept
        only if the job succeeds; the batch's `map.head` entry carries the new root)."""
        self._leaves[key] = value


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
    sees_deferred: bool = True
    nonce: Claim | None = None
    message_id: str | None = None


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    mine: list[int] = field(default_factory=list)


class Writer:
    """Serialises and batches all writes of this process (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        log_: AuditLog,
        *,
        batch_max: int = 256,
        on_batch: Callable[[], None] | None = None,
        directory: MapState | None = None,
        lock: FileLock | None = None,
    ) -> None:
        self.engine = db.sync_engine()
        #: Held around each batch transaction: one writing process of this machine at a time
        #: (SQLite's own; on PostgreSQL one the caller may give, beside the advisory lock that
        #: orders every replica, so that the processes of one machine batch while they wait).
        self._lock = db.writer_lock() or lock
        #: On SQLite, the WAL's checkpoints, off the batches' commits (`storage.checkpointer`).
        self.checkpointer = db.checkpointer()
        #: The directory's map (protocol 9.5): every batch ends with its `map.head` entry.
        self.map = directory or MapState()
        self.is_postgres = db.is_postgres
        self.log = log_
        self.batch_max = batch_max
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[Any] | None = None
        # `Tx.cache`, kept across batches: valid while the log's size is what this process's
        # last committed batch left, or, when other processes appended since, while the
        # writers' epoch is the one this process last saw (a batch with a job that may change
        # principals, devices, channels or members bumps it: see `_run`).
        self._cache = WriterCache()
        self._cache_size: int | None = None
        self._cache_epoch: int | None = None
        self.batches = 0

    @property
    def pending(self) -> int:
        """Jobs waiting for the next batch."""
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="liaison-writer")
            if self.checkpointer is not None:
                self.checkpointer.start()

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
        if self._lock is not None:
            self._lock.close()
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)  # after the checkpoint under way
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(
                    Problem("unavailable", "the service is stopping", retry_after=RETRY_AFTER["unavailable"])
                )
        self.engine.dispose()

    async def run(
        self,
        fn: Callable[[Tx], T],
        *,
        shares_cache: bool = False,
        savepoint: bool = True,
        sees_deferred: bool = True,
        nonce: Claim | None = None,
        message_id: str | None = None,
    ) -> WriterResult[T]:
        """Run `fn` in the next batch; raises the job's `Problem` if it refused.

        `shares_cache=True` promises that the job changes nothing that `Tx.cache` holds (who
        may receive what: principals, devices, channels, members); any other job empties the
        cache before it runs, and its batch is not trusted to have left it current.
        `savepoint=False` promises that every write the job makes before it can still raise is
        one that must stay even when it refuses (a consumed request nonce), so there is nothing
        to roll back; it saves two statements per job on the hot path.
        `sees_deferred=False` promises that the job reads nothing that earlier jobs of its
        batch left to `Tx.insert_later` (nor writes what could conflict with it), so those
        rows may still wait, to go in with the job's own in one statement.
        `nonce` (only with `savepoint=False`: the claim stays whatever the job does) is
        claimed with the batch's others before any job runs (`Tx.nonce_claimed`);
        `message_id` is looked up likewise (`Tx.message_id_taken`): one statement each per
        batch instead of one per job.
        """
        if nonce is not None and savepoint:
            raise ValueError("a nonce claimed for the batch stays: only for savepoint=False jobs")
        if self._task is None:
            raise RuntimeError("writer is not started")
        future: asyncio.Future[WriterResult[Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, future, shares_cache, savepoint, sees_deferred, nonce, message_id))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            try:
                if self._lock is not None and not self._lock.try_acquire():
                    # Another process is writing: wait for its turn to end in a thread, and
                    # let the requests that arrive meanwhile join this batch (under contention
                    # the batches grow, instead of each process's turns multiplying).
                    await loop.run_in_executor(None, self._lock.acquire)
            except OSError as e:  # the lock file cannot be opened (a full or read-only disk)
                self._fail_waiting(jobs, e)
                continue
            while len(jobs) < self.batch_max and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            # The batch runs in a thread (and releases the lock); shielded so that stopping
            # the loop waits for it (see `stop`) instead of abandoning a transaction half way.
            self._inflight = loop.run_in_executor(None, self._batch, jobs)
            try:
                outcomes, receipts, after = await asyncio.shield(self._inflight)
            except Exception:  # a bug of the writer itself: every job gets the error
                self._forget()
                log.exception("write batch failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(fault_problem("unavailable"))
                continue
            for job, out in zip(jobs, outcomes, strict=True):
                if job.future.done():
                    continue
                if out.error is not None:
                    job.future.set_exception(out.error)
                else:
                    job.future.set_result(WriterResult(out.value, {i: receipts[i] for i in out.mine}))
            for fn in after:
                try:
                    fn()
                except Exception:
                    log.exception("after-commit hook failed")

    def _fail_waiting(self, jobs: list[_Job], e: OSError) -> None:
        """Answer `jobs` and every job waiting now: nothing can be written without the lock."""
        kind: Fault = "storage-full" if e.errno == errno.ENOSPC else "unavailable"
        log.warning("write lock unavailable: %s (%s)", kind, e.strerror or type(e).__name__)
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(fault_problem(kind))

    def _forget(self) -> None:
        """After a transaction that did not commit: what this process remembers of the log's
        edge and of who may receive what may be what it rolled back."""
        self.log.forget_edge()
        self._cache.clear()
        self._cache_size = None
        self._cache_epoch = None

    def _batch(self, jobs: list[_Job]) -> tuple[list[_Outcome], dict[int, Receipt], list[Callable[[], None]]]:
        """Commit the batch's jobs (runs in the writer thread): in one transaction, unless one
        of them fails in a way its transaction cannot survive (see `_settle`)."""
        self.batches += 1
        if self.on_batch:
            self.on_batch()
        outcomes: list[_Outcome | None] = [None] * len(jobs)
        receipts: dict[int, Receipt] = {}
        after: list[Callable[[], None]] = []
        try:
            self._settle(jobs, list(range(len(jobs))), outcomes, receipts, after)
        finally:
            if self._lock is not None:
                self._lock.release()  # taken by `_loop` for this batch, retries included
            if self.checkpointer is not None:
                self.checkpointer.kick()
        done = [o if o is not None else _Outcome(None, _internal()) for o in outcomes]
        return done, receipts, after

    def _settle(
        self,
        jobs: list[_Job],
        todo: list[int],
        outcomes: list[_Outcome | None],
        receipts: dict[int, Receipt],
        after: list[Callable[[], None]],
    ) -> None:
        """Commit jobs `todo`, so that one job's failure never fails or undoes another's writes.

        * A job that fails where its transaction cannot go on (a statement error aborts a
          PostgreSQL transaction; a job without a savepoint may have written half its work)
          is answered `internal`, and the others run again without it, in a new transaction.
        * When integrating or committing fails, no job is to blame by name: the jobs run again
          in two halves, each in its own transaction, until the one at fault fails alone.
        * When the database itself fails (unreachable, restarted, full), nothing can commit:
          every job still waiting is answered `unavailable` or `storage-full`, and what did
          not commit wrote nothing (its nonce included).

        So every job answered with a result or a refusal committed, and every nonce such a
        request consumed stays consumed; a job answered with a server error wrote nothing
        (unless the connection was lost during the commit itself: then the outcome is unknown
        and the answer is `unavailable`, as for any lost connection).
        """
        todo = list(todo)
        while todo:
            try:
                outs, rec, aft = self._transaction([jobs[i] for i in todo])
            except _JobBroke as broke:
                outcomes[todo.pop(broke.position)] = _Outcome(None, _internal())
                continue
            except _Fault as fault:
                for i in todo:
                    outcomes[i] = _Outcome(None, fault_problem(fault.kind))
                return
            except Exception:
                if len(todo) == 1:
                    log.exception("write job failed when its transaction committed")
                    outcomes[todo[0]] = _Outcome(None, _internal())
                    return
                half = len(todo) // 2
                self._settle(jobs, todo[:half], outcomes, receipts, after)
                self._settle(jobs, todo[half:], outcomes, receipts, after)
                return
            for i, out in zip(todo, outs, strict=True):
                outcomes[i] = out
            receipts.update(rec)
            after.extend(aft)
            return

    def _transaction(
        self, jobs: list[_Job]
    ) -> tuple[list[_Outcome], dict[int, Receipt], list[Callable[[], None]]]:
        """One transaction for `jobs`; raises `_JobBroke`, `_Fault`, or what integrating or
        committing raised, having rolled everything back."""
        size_then = self._cache_size
        self._cache_size = None  # until this transaction commits
        try:
            return self._run(jobs, size_then)
        except _JobBroke:
            self._forget()
            raise
        except Exception as e:
            self._forget()
            kind = fault_of(e)
            if kind is None:
                raise
            log.warning("write transaction failed: %s", _describe(e, kind))
            raise _Fault(kind) from None

    def _begin(self) -> tuple[Session, Raw, SqlLogStore, int]:
        """The batch's session, holding the writers' lock, and the log's size then.

        A pooled connection is not pinged before each batch (a round trip a batch): when the
        database dropped it (a restart, a failover, an idle timeout, `pg_terminate_backend`),
        the first statement fails before anything was written, and the batch begins once more
        on a new connection, the pool's other idle ones discarded too (as old, as likely
        dropped). A second failure is the database's: `_Fault`, nothing stored.
        """
        for retry in (False, True):
            session = Session(self.engine, expire_on_commit=False)
            raw: Raw | None = None
            try:
                session.begin()
                raw = raw_connection(session, self.is_postgres)
                start = SqlLogStore.size_of(raw.lock(then=SqlLogStore.SIZE))
                return session, raw, SqlLogStore(raw), start
            except Exception as e:  # nothing ran: whatever this is, the database cannot serve
                dropped = not retry and raw is not None and raw.dropped()
                if dropped:
                    assert raw is not None
                    raw.discard()
                with contextlib.suppress(Exception):
                    session.rollback()
                with contextlib.suppress(Exception):
                    session.close()
                if dropped:
                    self.engine.dispose()
                    log.warning("the writer's database connection was dropped: beginning the batch again")
                    continue
                raise _Fault(fault_of(e) or "unavailable") from e
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def _run(
        self, jobs: list[_Job], size_then: int | None
    ) -> tuple[list[_Outcome], dict[int, Receipt], list[Callable[[], None]]]:
        session, raw, store, start = self._begin()
        try:
            epoch = self._cache_epoch
            if start != size_then:
                # Another process appended since: what it changed, its bump of the epoch says.
                epoch = _read_epoch(raw)
                if epoch is None or epoch != self._cache_epoch:
                    self._cache.clear()
                self.map.load(raw)  # at start, or after another process's batches
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()  # past its bound (labels and devices are many); refills on demand
            if not all(job.shares_cache for job in jobs):
                epoch = _bump_epoch(raw)  # other processes' caches may no longer hold
            now = utcnow()
            base = Tx(session, raw, store, now, self._cache, [], start, map_version=self.map.version + 1)
            base._lookups = _look_up(raw, now, jobs)
            outcomes, after, entries, leaves = self._jobs(base, jobs)
            receipts: dict[int, Receipt] = {}
            staged = None
            # The batch's last writes and its COMMIT go out together (on PostgreSQL, one
            # round trip); the session's commit then ends the transaction where it did not.
            with raw.pipeline(base._later.count() + 2 * len(entries) + len(leaves), commit=True):
                base._later.write(raw)
                if entries:
                    # Every batch ends with the map's head (protocol 9.6): the entry at N - 1
                    # of every checkpoint of size N says which map that checkpoint carries.
                    staged = self.map.stage(leaves)
                    MapState.write(raw, staged)
                    entries.append(build_entry("map.head", "system", now, staged.head.fields()))
                    receipts = self.log.integrate(store, start, entries, now).receipts
            session.commit()
            if staged is not None:
                self.map.commit(staged)
        except BaseException:
            # The error that failed the transaction is the one to report. A connection the
            # database dropped is discarded here: handed back, the pool's own rollback would
            # fail on it and log an error with a traceback (seen mid-pipeline, under load).
            if raw.dropped():
                raw.discard()
            with contextlib.suppress(Exception):
                session.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                session.close()
        self._cache_size = start + len(entries)
        self._cache_epoch = epoch
        return outcomes, receipts, after

    @staticmethod
    def _jobs(
        base: Tx, jobs: list[_Job]
    ) -> tuple[list[_Outcome], list[Callable[[], None]], list[LogEntry], dict[bytes, bytes]]:
        """Run `jobs` in the open transaction of `base` (each job gets its own `Tx` like it);
        their outcomes, after-commit hooks, the entries they appended and the map leaves
        they set. Their deferred writes are written before a job that may read them (see
        `run`); what is left of them at the end, in `base._later`, is the caller's to write."""
        outcomes: list[_Outcome] = []
        after: list[Callable[[], None]] = []
        leaves: dict[bytes, bytes] = {}
        session, cache, entries, later = base.session, base.cache, base._entries, base._later
        for position, job in enumerate(jobs):
            if not job.shares_cache:
                cache.clear()
            if job.sees_deferred:
                later.write(base.raw)  # outside the job's savepoint: not the job's failure
            tx = Tx(
                session,
                base.raw,
                base.log,
                base.now,
                cache,
                entries,
                base._start,
                map_version=base.map_version,
                _lookups=base._lookups,
            )
            mark = len(entries)
            try:
                if job.savepoint:
                    with session.begin_nested():
                        value = job.fn(tx)
                else:
                    value = job.fn(tx)
                    session.flush()  # an ORM write fails here, as this job's, not later
                outcomes.append(_Outcome(value, None, tx._mine))
                after.extend(tx._after)
                leaves.update(tx._leaves)
                later.take(tx._later)
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
            except Exception as e:
                if fault_of(e) is not None:
                    raise  # the database failed, not this job: `_transaction` says so
                log.exception("write job failed")
                if not job.savepoint:
                    # What it wrote before failing is unknown, and on PostgreSQL a failed
                    # statement aborts the transaction: run the others again without it.
                    raise _JobBroke(position) from None
                del entries[mark:]  # its savepoint rolled back its writes
                cache.clear()
                outcomes.append(_Outcome(None, _internal()))
        return outcomes, after, entries, leaves


def _look_up(raw: Raw, now: datetime, jobs: list[_Job]) -> Lookups:
    """Claim the jobs' declared nonces and look up their message ids (see `Writer.run`)."""
    claims: dict[tuple[str, str], datetime] = {}
    for job in jobs:
        if job.nonce is not None:  # a nonce twice in one batch: the second job inserts it itself
            claims.setdefault((job.nonce.keyid, job.nonce.nonce), now + timedelta(seconds=job.nonce.seconds))
    lookups = Lookups()
    if claims:
        rows = [(k, n, raw.time(t)) for (k, n), t in claims.items()]
        inserted = raw.claim_nonces(rows)
        lookups.nonces = {key: key in inserted for key in claims}
    ids = list(dict.fromkeys(job.message_id for job in jobs if job.message_id is not None))
    if ids:
        present = raw.present_message_ids(ids)
        lookups.message_ids = {i: i in present for i in ids}
    return lookups


def _read_epoch(raw: Raw) -> int | None:
    """The writers' epoch (None if its row is missing: then every other process's batch
    empties the cache)."""
    row = raw.execute("SELECT epoch FROM writer_epoch WHERE id = 1").fetchone()
    return int(row[0]) if row else None


def _bump_epoch(raw: Raw) -> int | None:
    raw.execute("UPDATE writer_epoch SET epoch = epoch + 1 WHERE id = 1")
    return _read_epoch(raw)


class _JobBroke(Exception):
    """Job number `position` of a transaction failed in a way the transaction cannot survive."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


class _Fault(Exception):
    """The database failed (see `storage.db.fault_of`): no job of the transaction committed."""

    def __init__(self, kind: Fault) -> None:
        super().__init__(kind)
        self.kind = kind


def _internal() -> Problem:
    return Problem("internal", "the request could not be stored")


def _describe(e: BaseException, kind: Fault) -> str:
    """One line for the operator's log: the fault and the driver's first line (no traceback)."""
    root: BaseException = e
    for _ in range(6):  # SQLAlchemy error -> adapter error -> driver error, at most
        inner = getattr(root, "orig", None) or root.__cause__
        if not isinstance(inner, BaseException):
            break
        root = inner
    first = str(root).strip().splitlines()[0] if str(root).strip() else ""
    return f"{kind} ({type(root).__name__}: {first[:200]})"
