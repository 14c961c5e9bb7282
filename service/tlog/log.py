"""The audit log: the one module that appends to, integrates and reads the transparency log.

Entries are JCS JSON (SPEC 6) appended with consecutive indexes inside the caller's
transaction. `integrate` then adds a whole batch to the RFC 6962 tree at once: it stores the
hash of every complete subtree the batch creates (table `tree_hash`, the addressing of
`liaison.crypto.merkle`), signs one checkpoint for the new size, and returns each new entry's
inclusion proof, all without reading more than the tree's right edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from liaison.crypto import merkle, note
from liaison.crypto.encoding import b64encode, format_time, jcs

from ..storage.models import AuditEntry, Checkpoint, TreeHash

if TYPE_CHECKING:
    from ..writer import Raw

__all__ = ["MAX_ENTRY_BYTES", "AuditLog", "Integrated", "Receipt", "build_entry"]

#: A tile entry bundle stores each entry behind a uint16 length (c2sp.org/tlog-tiles).
MAX_ENTRY_BYTES = 65535


def build_entry(type_: str, actor: str, time: datetime, fields: dict[str, Any]) -> bytes:
    """The exact bytes of one log entry: `{"v":1,"type","time","actor",...}` in JCS."""
    reserved = {"v", "type", "time", "actor"} & set(fields)
    if reserved:
        raise ValueError(f"audit fields may not override {sorted(reserved)}")
    data = jcs({"v": 1, "type": type_, "time": format_time(time), "actor": actor, **fields})
    if len(data) > MAX_ENTRY_BYTES:
        raise ValueError("audit entry larger than 65535 bytes")
    return data


@dataclass(frozen=True)
class Receipt:
    """Proof that entry `index` is in the log: a signed checkpoint and the inclusion proof."""

    index: int
    size: int
    checkpoint: str
    proof: tuple[bytes, ...]
    #: The exact entry bytes, so the holder can check the proof without asking the log.
    entry: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"log_index": self.index, "tree_size": self.size,
                               "checkpoint": self.checkpoint,
                               "inclusion_proof": [b64encode(h) for h in self.proof]}
        if self.entry is not None:
            out["entry"] = b64encode(self.entry)
        return out


@dataclass(frozen=True)
class Integrated:
    """The outcome of integrating one batch."""

    size: int
    root: bytes
    checkpoint: str
    receipts: dict[int, Receipt]


_SIZE = select(func.max(Checkpoint.size))


def _hash_queries(nodes: Sequence[merkle.Node]) -> Iterator[Select[tuple[int, int, bytes]]]:
    """Queries for stored hashes, 500 nodes each, as one `level = ? AND idx IN (...)` term per
    level: both databases answer that from the primary key (a row-value IN list made SQLite
    scan the whole table)."""
    wanted = list(dict.fromkeys(nodes))
    for i in range(0, len(wanted), 500):
        by_level: dict[int, list[int]] = {}
        for lv, ix in wanted[i:i + 500]:
            by_level.setdefault(lv, []).append(ix)
        yield select(TreeHash.level, TreeHash.idx, TreeHash.hash).where(
            or_(*(and_(TreeHash.level == lv, TreeHash.idx.in_(ixs))
                  for lv, ixs in by_level.items())))


def _complete(wanted: Sequence[merkle.Node], found: dict[merkle.Node, bytes]
              ) -> dict[merkle.Node, bytes]:
    missing = set(wanted) - set(found)
    if missing:
        raise LookupError(f"tree hashes missing from the database: {sorted(missing)[:3]}")
    return found


class _DictReader:
    def __init__(self, hashes: dict[merkle.Node, bytes]) -> None:
        self.hashes = hashes

    def get(self, level: int, index: int) -> bytes:
        try:
            return self.hashes[(level, index)]
        except KeyError:
            raise LookupError(f"tree hash ({level}, {index}) is not stored") from None


class AuditLog:
    """Append-only transparency log over the database tables of `models`."""

    def __init__(self, signer: note.Signer, origin: str) -> None:
        self.signer = signer
        self.origin = origin
        self.verifier_key = signer.verifier.key_string
        # The right edge of the tree after the last batch this process integrated; reused
        # when no other process appended since (checked against the stored size).
        self._edge: tuple[int, dict[merkle.Node, bytes]] | None = None

    # --- writing (in the writer's thread, on its synchronous session) ------------------------

    def writer_size(self, raw: Raw) -> int:
        """Number of integrated entries (every batch integrates what it appends)."""
        row = raw.execute("SELECT max(size) FROM checkpoint").fetchone()
        return int(row[0] or 0) if row else 0

    def append(self, raw: Raw, start: int,
               entries: Sequence[tuple[str, str, str | None, datetime, bytes]]) -> None:
        """Insert `(type, actor, subject, time, data)` rows at indexes start, start+1, ..."""
        raw.executemany(
            "INSERT INTO audit_entry (idx, data, type, actor, time, subject) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(start + i, d, t, a, raw.time(tm), s) for i, (t, a, s, tm, d) in enumerate(entries)])

    def integrate(self, raw: Raw, start: int, datas: Sequence[bytes],
                  now: datetime) -> Integrated:
        """Add entries [start, start+len(datas)) to the tree and sign one checkpoint."""
        edge = self._right_edge(raw, start)
        new = merkle.append_hashes(_DictReader(edge), start, [merkle.leaf_hash(d) for d in datas])
        if new:
            raw.executemany("INSERT INTO tree_hash (level, idx, hash) VALUES (?, ?, ?)",
                            [(lv, ix, h) for (lv, ix), h in new.items()])
        size = start + len(datas)
        known = {**edge, **new}
        reader = _DictReader(known)
        root = merkle.root_from(reader, size)
        signed = note.sign_checkpoint(note.Checkpoint(self.origin, size, root), self.signer)
        text = signed.decode()
        raw.execute("INSERT INTO checkpoint (size, root_hash, note, created_at) "
                    "VALUES (?, ?, ?, ?)", (size, root, text, raw.time(now)))
        receipts = {
            i: Receipt(i, size, text, tuple(merkle.inclusion_proof_from(reader, i, size)),
                       datas[i - start])
            for i in range(start, size)
        }
        self._edge = (size, {n: known[n] for n in merkle.range_nodes(0, size)})
        return Integrated(size, root, text, receipts)

    def _right_edge(self, raw: Raw, size: int) -> dict[merkle.Node, bytes]:
        if self._edge is not None and self._edge[0] == size:
            return self._edge[1]
        # Only at start, or when another process appended since: at most one node per level.
        wanted = merkle.range_nodes(0, size)
        out: dict[merkle.Node, bytes] = {}
        if wanted:
            terms = " OR ".join(["(level = ? AND idx = ?)"] * len(wanted))
            rows = raw.execute(f"SELECT level, idx, hash FROM tree_hash WHERE {terms}",  # noqa: S608 (placeholders only)
                               [v for node in wanted for v in node]).fetchall()
            out = {(lv, ix): bytes(h) for lv, ix, h in rows}
        return _complete(wanted, out)

    def writer_receipt(self, session: Session, index: int) -> Receipt:
        """`receipt`, on the writer's synchronous session (a job's own answer)."""
        conn = session.connection()
        latest = conn.execute(select(Checkpoint.size, Checkpoint.note)
                              .order_by(Checkpoint.size.desc()).limit(1)).first()
        if latest is None or index >= latest[0]:
            raise LookupError(f"log index {index} is not integrated")
        size, text = latest
        wanted = [n for g in merkle.inclusion_proof_nodes(index, size) for n in g]
        found: dict[merkle.Node, bytes] = {}
        for query in _hash_queries(wanted):
            found.update({(lv, ix): h for lv, ix, h in conn.execute(query)})
        reader = _DictReader(_complete(wanted, found))
        entry = conn.scalar(select(AuditEntry.data).where(AuditEntry.idx == index))
        return Receipt(index, size, text, tuple(merkle.inclusion_proof_from(reader, index, size)),
                       entry)

    def forget_edge(self) -> None:
        """Drop the cached right edge (after a failed transaction)."""
        self._edge = None

    # --- reading ----------------------------------------------------------------------------

    async def size(self, session: AsyncSession) -> int:
        """Number of integrated entries, as a reader sees it."""
        return int(await session.scalar(_SIZE) or 0)

    async def read_hashes(self, session: AsyncSession,
                          nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        wanted = list(dict.fromkeys(nodes))
        out: dict[merkle.Node, bytes] = {}
        for query in _hash_queries(wanted):
            out.update({(lv, ix): h for lv, ix, h in await session.execute(query)})
        return _complete(wanted, out)

    async def latest_checkpoint(self, session: AsyncSession) -> Checkpoint | None:
        return (await session.execute(
            select(Checkpoint).order_by(Checkpoint.size.desc()).limit(1))).scalar_one_or_none()

    async def checkpoint_at(self, session: AsyncSession, size: int) -> Checkpoint | None:
        return await session.get(Checkpoint, size)

    async def inclusion_proof(self, session: AsyncSession, index: int, size: int) -> list[bytes]:
        groups = merkle.inclusion_proof_nodes(index, size)
        reader = _DictReader(await self.read_hashes(session, [n for g in groups for n in g]))
        return merkle.inclusion_proof_from(reader, index, size)

    async def consistency_proof(self, session: AsyncSession, old: int, new: int) -> list[bytes]:
        groups = merkle.consistency_proof_nodes(old, new)
        reader = _DictReader(await self.read_hashes(session, [n for g in groups for n in g]))
        return merkle.consistency_proof_from(reader, old, new)
