"""The transparency log's storage: the writer's `LogStore` and the readers' `LogReader`.

The log is four append-only tables: `audit_entry` (the exact entry bytes), `tree_hash` (the
hash of every complete subtree, addressed as in `liaison.crypto.merkle`), `checkpoint` (one
signed note per integrated size) and `cosignature` (witness signature lines per size). The
database refuses UPDATE and DELETE on them (the migration's triggers; `pg_roles` in depth).

`LogStore` is the integrator's whole view of them, inside the writer's one batch transaction
(Sunlight's Backend, with `Raw.lock` as its LockBackend). Its contract:

* Nothing written through a store is visible to anyone until the batch commits, and then all
  of it is: entries, hashes and the checkpoint of one batch commit together or not at all.
* `size()` is the size of the newest checkpoint. Every batch integrates what it appends, so
  no entry exists at an index >= `size()` when a batch begins, and the next entry's index is
  `size()`. Writers are serialised (`Raw.lock`), so that holds across processes.
* `append` writes entries at exactly the consecutive indexes it is given, `put_hashes` and
  `put_checkpoint` write new rows; none of them ever changes an existing row (a second row at
  the same key is an error, which fails the batch).
* `hashes(nodes)` returns every node asked for, or raises LookupError naming one missing.

The next stores of the same shape (the verifiable directory's versioned map nodes and the
confidential log's openings table, beside these append-only tables) are written through the
same `Raw` inside the same batch, so a map head and the log entry that records it commit
together (see docs/architecture.md).

`LogReader` is what readers see: one per database session, so that several reads of one
request (the size, then the tile under it) come from one snapshot.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import TextClause, and_, bindparam, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from liaison.crypto.merkle import Node

from .models import AuditEntry, AuditOpening, Checkpoint, Cosignature, TreeHash
from .raw import Raw

__all__ = ["CheckpointRow", "LogEntry", "LogReader", "LogStore", "SqlLogStore", "as_bytes"]

#: Nodes per hash query (each query is one `level = ? AND idx IN (...)` term per level).
_NODES_PER_QUERY = 500


class StoredOpening(Protocol):
    """What `audit_opening` keeps of an entry v2: its seed and its committed values' JSON."""

    @property
    def seed(self) -> bytes: ...

    def fields_json(self) -> str: ...


class LogEntry(NamedTuple):
    """One entry as stored: its bytes (what is hashed), the columns readers filter on, and for
    an entry v2 its opening, kept in `audit_opening`."""

    type: str
    actor: str
    subject: str | None
    time: datetime
    data: bytes
    opening: StoredOpening | None = None


@dataclass(frozen=True)
class CheckpointRow:
    size: int
    root_hash: bytes
    note: str


def as_bytes(value: bytes | str) -> bytes:
    """A stored BLOB as bytes. SQLite keeps what was written: a row someone rewrote as TEXT
    comes back as str; readers then see exactly the changed bytes, which proofs refuse."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _missing(wanted: Iterable[Node], found: Mapping[Node, bytes]) -> dict[Node, bytes]:
    missing = set(wanted) - set(found)
    if missing:
        raise LookupError(f"tree hashes missing from the database: {sorted(missing)[:3]}")
    return dict(found)


def _by_level(nodes: Sequence[Node]) -> Iterator[dict[int, list[int]]]:
    """`nodes` (deduplicated) in groups of at most 500, each as level -> indexes: both databases
    answer `level = ? AND idx IN (...)` from the primary key (a row-value IN list made SQLite
    scan the whole table)."""
    wanted = list(dict.fromkeys(nodes))
    for i in range(0, len(wanted), _NODES_PER_QUERY):
        group: dict[int, list[int]] = {}
        for level, index in wanted[i : i + _NODES_PER_QUERY]:
            group.setdefault(level, []).append(index)
        yield group


#: The log's tables and their columns' PostgreSQL types, for `Raw.insert_rows` (binary COPY).
_ENTRY_COLUMNS = (
    "audit_entry (idx, data, type, actor, time, subject)",
    ("int8", "bytea", "text", "text", "timestamp", "text"),
)
_OPENING_COLUMNS = ("audit_opening (idx, seed, fields)", ("int8", "bytea", "text"))
_HASH_COLUMNS = ("tree_hash (level, idx, hash)", ("int4", "int8", "bytea"))


class LogStore(Protocol):
    """The log's tables inside the writer's batch transaction (contract: module docstring)."""

    def size(self) -> int:
        """Number of integrated entries: the size of the newest checkpoint (0 if none)."""
        ...

    def hashes(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        """The stored hashes of `nodes`; LookupError if any is missing."""
        ...

    def append(self, start: int, entries: Sequence[LogEntry]) -> None:
        """Insert `entries` at indexes start, start + 1, ..."""
        ...

    def put_hashes(self, hashes: Mapping[Node, bytes]) -> None:
        """Insert the hashes of newly completed subtrees."""
        ...

    def put_checkpoint(self, size: int, root: bytes, signed_note: str, now: datetime) -> None:
        """Insert the signed checkpoint of `size`."""
        ...

    def latest_checkpoint(self) -> tuple[int, str] | None:
        """(size, signed note) of the newest checkpoint."""
        ...

    def entry(self, index: int) -> bytes | None:
        """The bytes of entry `index`."""
        ...

    def opening(self, index: int) -> tuple[bytes, str] | None:
        """Entry `index`'s opening (seed, committed values as JCS), if it has one."""
        ...

    def has_cosignature(self, size: int, witness: str) -> bool:
        """Whether `witness` already cosigned the checkpoint of `size`."""
        ...

    def put_cosignature(self, size: int, witness: str, line: str, now: datetime) -> None:
        """Insert a witness's verified cosignature line for the checkpoint of `size`."""
        ...


class SqlLogStore:
    """`LogStore` on the batch's raw connection; the same SQL on SQLite and PostgreSQL (where
    they differ, `Raw`'s backend class handles it)."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw

    #: The log's size (`size`), as a statement: `Raw.lock` runs it with the lock's.
    SIZE = "SELECT max(size) FROM checkpoint"

    def size(self) -> int:
        return self.size_of(self.raw.execute(self.SIZE).fetchone())

    @staticmethod
    def size_of(row: Any) -> int:
        """The size in `SIZE`'s row."""
        return int(row[0] or 0) if row else 0

    def hashes(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        found: dict[Node, bytes] = {}
        for group in _by_level(nodes):
            terms, params = [], []
            for level, indexes in group.items():
                terms.append(f"(level = ? AND idx IN ({', '.join('?' * len(indexes))}))")
                params += [level, *indexes]
            rows = self.raw.execute(
                f"SELECT level, idx, hash FROM tree_hash WHERE {' OR '.join(terms)}",  # noqa: S608 (placeholders only)
                params,
            ).fetchall()
            found.update({(lv, ix): bytes(h) for lv, ix, h in rows})
        return _missing(nodes, found)

    def append(self, start: int, entries: Sequence[LogEntry]) -> None:
        raw = self.raw
        times: dict[datetime, Any] = {}  # a batch's entries share one time: converted once
        rows = []
        openings = []
        for index, (type_, actor, subject, time, data, opening) in enumerate(entries, start):
            column_time = times.get(time)
            if column_time is None:
                column_time = times[time] = raw.time(time)
            rows.append((index, data, type_, actor, column_time, subject))
            if opening is not None:
                openings.append((index, opening.seed, opening.fields_json()))
        raw.insert_rows(*_ENTRY_COLUMNS, rows)
        raw.insert_rows(*_OPENING_COLUMNS, openings)

    def put_hashes(self, hashes: Mapping[Node, bytes]) -> None:
        self.raw.insert_rows(*_HASH_COLUMNS, [(lv, ix, h) for (lv, ix), h in hashes.items()])

    def put_checkpoint(self, size: int, root: bytes, signed_note: str, now: datetime) -> None:
        self.raw.execute(
            "INSERT INTO checkpoint (size, root_hash, note, created_at) VALUES (?, ?, ?, ?)",
            (size, root, signed_note, self.raw.time(now)),
        )

    def latest_checkpoint(self) -> tuple[int, str] | None:
        row = self.raw.execute("SELECT size, note FROM checkpoint ORDER BY size DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def entry(self, index: int) -> bytes | None:
        row = self.raw.execute("SELECT data FROM audit_entry WHERE idx = ?", (index,)).fetchone()
        return as_bytes(row[0]) if row else None

    def opening(self, index: int) -> tuple[bytes, str] | None:
        row = self.raw.execute("SELECT seed, fields FROM audit_opening WHERE idx = ?", (index,)).fetchone()
        return (as_bytes(row[0]), str(row[1])) if row else None

    def has_cosignature(self, size: int, witness: str) -> bool:
        return (
            self.raw.execute(
                "SELECT 1 FROM cosignature WHERE size = ? AND witness = ?", (size, witness)
            ).fetchone()
            is not None
        )

    def put_cosignature(self, size: int, witness: str, line: str, now: datetime) -> None:
        self.raw.execute(
            "INSERT INTO cosignature (size, witness, line, created_at) VALUES (?, ?, ?, ?)",
            (size, witness, line, self.raw.time(now)),
        )


_SIZE = select(func.max(Checkpoint.size))
_CHECKPOINT_AT = select(Checkpoint.size, Checkpoint.root_hash, Checkpoint.note).where(
    Checkpoint.size == bindparam("size")
)
_COSIGNATURE_LINES = (
    select(Cosignature.line).where(Cosignature.size == bindparam("size")).order_by(Cosignature.witness)
)

_CHECKPOINT_WITH_LINES = text(
    "SELECT checkpoint.size, checkpoint.root_hash, checkpoint.note, cosignature.line FROM checkpoint"
    " LEFT OUTER JOIN cosignature ON cosignature.size = checkpoint.size"
    " WHERE checkpoint.size = :size ORDER BY cosignature.witness"
)


@functools.lru_cache(maxsize=256)
def _hashes_query(counts: tuple[int, ...]) -> TextClause:
    """`SELECT level, idx, hash FROM tree_hash` for one `_by_level` group: `counts[k]` indexes
    of the k-th level, bound as `:lk` and `:ik_j` (one query per shape of group)."""
    terms = [
        f"(level = :l{k} AND idx IN ({', '.join(f':i{k}_{j}' for j in range(n))}))"
        for k, n in enumerate(counts)
    ]
    return text(f"SELECT level, idx, hash FROM tree_hash WHERE {' OR '.join(terms)}")  # noqa: S608 (binds only)


class LogReader:
    """Reads of the log's tables in one database session (one snapshot per request)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def size(self) -> int:
        """Number of integrated entries, as a reader sees it."""
        return int(await self.session.scalar(_SIZE) or 0)

    async def hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        # Plain SQL named by its shape (levels and indexes per level), not a SQLAlchemy
        # expression built per proof: building and keying that cost more than the query.
        wanted = list(nodes)
        found: dict[Node, bytes] = {}
        for group in _by_level(wanted):
            params: dict[str, int] = {}
            for k, (level, indexes) in enumerate(group.items()):
                params[f"l{k}"] = level
                params.update({f"i{k}_{j}": index for j, index in enumerate(indexes)})
            query = _hashes_query(tuple(len(indexes) for indexes in group.values()))
            rows = await self.session.execute(query, params)
            found.update({(int(lv), int(ix)): as_bytes(h) for lv, ix, h in rows})
        return _missing(wanted, found)

    async def hash_range(self, level: int, first: int, end: int) -> list[tuple[int, bytes]]:
        """Stored (index, hash) of `level` for indexes in [first, end), in order."""
        rows = await self.session.execute(
            select(TreeHash.idx, TreeHash.hash)
            .where(TreeHash.level == level, TreeHash.idx >= first, TreeHash.idx < end)
            .order_by(TreeHash.idx)
        )
        return [(int(i), as_bytes(h)) for i, h in rows]

    async def latest_checkpoint(self) -> CheckpointRow | None:
        row = (
            await self.session.execute(
                select(Checkpoint.size, Checkpoint.root_hash, Checkpoint.note)
                .order_by(Checkpoint.size.desc())
                .limit(1)
            )
        ).first()
        return CheckpointRow(int(row[0]), as_bytes(row[1]), row[2]) if row else None

    async def checkpoint_at(self, size: int) -> CheckpointRow | None:
        row = (await self.session.execute(_CHECKPOINT_AT, {"size": size})).first()
        return CheckpointRow(int(row[0]), as_bytes(row[1]), row[2]) if row else None

    async def checkpoint_with_lines(self, size: int) -> tuple[CheckpointRow, list[str]] | None:
        """The stored checkpoint of `size` and its cosignature lines by witness name (what
        `checkpoint_at` and `cosignature_lines` read), in one query."""
        rows = (await self.session.execute(_CHECKPOINT_WITH_LINES, {"size": size})).all()
        if not rows:
            return None
        size_, root, note = rows[0][:3]
        lines = [str(r[3]) for r in rows if r[3] is not None]
        return CheckpointRow(int(size_), as_bytes(root), str(note)), lines

    async def cosignature_lines(self, size: int) -> list[str]:
        """The stored cosignature lines of the checkpoint of `size`, by witness name."""
        return list((await self.session.execute(_COSIGNATURE_LINES, {"size": size})).scalars().all())

    async def newest_cosigned_size(self, witnesses: int) -> int | None:
        """The largest size that has at least `witnesses` cosignatures."""
        found = await self.session.scalar(
            select(Cosignature.size)
            .group_by(Cosignature.size)
            .having(func.count() >= witnesses)
            .order_by(Cosignature.size.desc())
            .limit(1)
        )
        return None if found is None else int(found)

    async def entry(self, index: int) -> bytes | None:
        data = await self.session.scalar(select(AuditEntry.data).where(AuditEntry.idx == index))
        return None if data is None else as_bytes(data)

    async def openings(self, indexes: Iterable[int]) -> dict[int, tuple[bytes, str]]:
        """The stored openings (seed, committed values as JCS) of these entries."""
        wanted = sorted(set(indexes))
        out: dict[int, tuple[bytes, str]] = {}
        for i in range(0, len(wanted), 500):
            rows = await self.session.execute(
                select(AuditOpening.idx, AuditOpening.seed, AuditOpening.fields).where(
                    AuditOpening.idx.in_(wanted[i : i + 500])
                )
            )
            out.update({int(x): (as_bytes(s), str(f)) for x, s, f in rows})
        return out

    async def entry_range(
        self,
        first: int,
        end: int,
        *,
        type_: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """(index, bytes) of the entries in [first, end) that match the filters, in order."""
        q = select(AuditEntry.idx, AuditEntry.data).where(AuditEntry.idx >= first, AuditEntry.idx < end)
        if type_ is not None:
            q = q.where(AuditEntry.type == type_)
        if actor is not None:
            q = q.where(AuditEntry.actor == actor)
        if since is not None:
            q = q.where(AuditEntry.time >= since)
        q = q.order_by(AuditEntry.idx)
        if limit is not None:
            q = q.limit(limit)
        return [(int(i), as_bytes(d)) for i, d in await self.session.execute(q)]

    # --- what `tlog.verify` reads: everything, in chunks --------------------------------------

    async def counts(self) -> tuple[int, int]:
        """(entries, tree hashes) stored."""
        entries = await self.session.scalar(select(func.count()).select_from(AuditEntry))
        hashes = await self.session.scalar(select(func.count()).select_from(TreeHash))
        return int(entries or 0), int(hashes or 0)

    async def all_checkpoints(self) -> list[CheckpointRow]:
        rows = await self.session.execute(
            select(Checkpoint.size, Checkpoint.root_hash, Checkpoint.note).order_by(Checkpoint.size)
        )
        return [CheckpointRow(int(s), as_bytes(r), n) for s, r, n in rows]

    async def all_cosignatures(self) -> list[tuple[int, str, str]]:
        """(size, witness, line) of every stored cosignature."""
        rows = await self.session.execute(select(Cosignature.size, Cosignature.witness, Cosignature.line))
        return [(int(s), w, line) for s, w, line in rows]

    async def entry_rows(self, first: int, end: int, limit: int) -> list[tuple[int, bytes, str, str]]:
        """(index, bytes, type column, actor column) of up to `limit` entries from `first`."""
        rows = await self.session.execute(
            select(AuditEntry.idx, AuditEntry.data, AuditEntry.type, AuditEntry.actor)
            .where(AuditEntry.idx >= first, AuditEntry.idx < end)
            .order_by(AuditEntry.idx)
            .limit(limit)
        )
        return [(int(i), as_bytes(d), t, a) for i, d, t, a in rows]

    async def hash_spans(self, spans: Mapping[int, tuple[int, int]]) -> dict[Node, bytes]:
        """Every stored hash of each level L with index in [first, last] for spans[L]."""
        conds = [
            and_(TreeHash.level == lv, TreeHash.idx >= lo, TreeHash.idx <= hi)
            for lv, (lo, hi) in spans.items()
        ]
        if not conds:
            return {}
        rows = await self.session.execute(
            select(TreeHash.level, TreeHash.idx, TreeHash.hash).where(or_(*conds))
        )
        return {(int(lv), int(ix)): as_bytes(h) for lv, ix, h in rows}
