"""The audit log: entry bytes, batch integration into the RFC 6962 tree, receipts and proofs.

Entries v2 (protocol 10, `tlog.entries`) appended with consecutive indexes inside the writer's
transaction. `AuditLog.integrate` then adds a whole batch to the tree at once: it stores the
hash of every complete subtree the batch creates (the addressing of `liaison.crypto.merkle`),
signs one checkpoint for the new size, and returns each new entry's inclusion proof, all
without reading more than the tree's right edge. Storage is behind `storage.logstore`:
`LogStore` for the writer, `LogReader` for readers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from liaison.crypto import merkle, note
from liaison.crypto.encoding import b64encode

from ..storage.logstore import LogEntry, LogReader, LogStore
from .entries import MAX_ENTRY_BYTES, Opening
from .entries import build as build_v2

__all__ = ["MAX_ENTRY_BYTES", "AuditLog", "Integrated", "Receipt", "build_entry"]


@dataclass(frozen=True)
class Receipt:
    """Proof that entry `index` is in the log: a signed checkpoint and the inclusion proof."""

    index: int
    size: int
    checkpoint: str
    #: Tree hashes the inclusion proof is read from (a batch's new hashes and the edge).
    hashes: merkle.HashReader = field(repr=False, compare=False)
    #: The exact entry bytes, so the holder can check the proof without asking the log.
    entry: bytes | None = None
    #: An entry v2's opening; the receipt discloses every committed field to its holder
    #: (protocol 10.5), as the holder did what the entry records.
    opened: Opening | None = None

    @functools.cached_property
    def proof(self) -> tuple[bytes, ...]:
        """The inclusion proof, computed when asked: a batch of 50,000 entries has as many
        receipts, and most (a bulk job's) are never sent."""
        return tuple(merkle.inclusion_proof_from(self.hashes, self.index, self.size))

    @property
    def opening(self) -> dict[str, Any] | None:
        """The holder's disclosures, made when asked (most receipts of a batch never are)."""
        return None if self.opened is None else self.opened.disclose()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "log_index": self.index,
            "tree_size": self.size,
            "checkpoint": self.checkpoint,
            "inclusion_proof": [b64encode(h) for h in self.proof],
        }
        if self.entry is not None:
            out["entry"] = b64encode(self.entry)
        opening = self.opening
        if opening is not None:
            out["opening"] = opening
        return out


def build_entry(
    type_: str, actor: str, time: datetime, fields: dict[str, Any], subject: str | None = None
) -> LogEntry:
    """An entry v2 ready to append (protocol 10), with its opening; `subject` fills the
    column readers filter on (never in the entry's bytes)."""
    data, opening = build_v2(type_, actor, time, fields)
    return LogEntry(type_, actor, subject, time, data, opening)


def _opening(entry: LogEntry) -> Opening | None:
    """The `Opening` `build_entry` gave the entry (the store knows it only as a row)."""
    if entry.opening is None or isinstance(entry.opening, Opening):
        return entry.opening
    raise TypeError("log entries are made by build_entry")


@dataclass(frozen=True)
class Integrated:
    """The outcome of integrating one batch."""

    size: int
    root: bytes
    checkpoint: str
    receipts: dict[int, Receipt]


class _Hashes:
    """A `merkle.HashReader` over hashes already read."""

    def __init__(self, hashes: Mapping[merkle.Node, bytes]) -> None:
        self.hashes = hashes

    def get(self, level: int, index: int) -> bytes:
        try:
            return self.hashes[(level, index)]
        except KeyError:
            raise LookupError(f"tree hash ({level}, {index}) is not stored") from None


class AuditLog:
    """The append-only transparency log of one origin, signed with the log key."""

    def __init__(self, signer: note.Signer, origin: str) -> None:
        self.signer = signer
        self.origin = origin
        self.verifier_key = signer.verifier.key_string
        # The right edge of the tree after the last batch this process integrated; reused
        # when no other process appended since (checked against the stored size).
        self._edge: tuple[int, dict[merkle.Node, bytes]] | None = None

    # --- writing (in the writer's thread, inside its batch transaction) ----------------------

    def integrate(
        self, store: LogStore, start: int, entries: Sequence[LogEntry], now: datetime
    ) -> Integrated:
        """Append `entries` at [start, start + len) and integrate them: new subtree hashes,
        one signed checkpoint, and each new entry's receipt."""
        store.append(start, entries)
        edge = self._right_edge(store, start)
        datas = [e.data for e in entries]
        new = merkle.append_hashes(_Hashes(edge), start, [merkle.leaf_hash(d) for d in datas])
        store.put_hashes(new)
        size = start + len(datas)
        known = _Hashes({**edge, **new})
        root = merkle.root_from(known, size)
        text = note.sign_checkpoint(note.Checkpoint(self.origin, size, root), self.signer).decode()
        store.put_checkpoint(size, root, text, now)
        receipts = {
            i: Receipt(i, size, text, known, datas[i - start], _opening(entries[i - start]))
            for i in range(start, size)
        }
        self._edge = (size, {n: known.hashes[n] for n in merkle.range_nodes(0, size)})
        return Integrated(size, root, text, receipts)

    def _right_edge(self, store: LogStore, size: int) -> dict[merkle.Node, bytes]:
        if self._edge is not None and self._edge[0] == size:
            return self._edge[1]
        # Only at start, or when another process appended since: at most one node per level.
        return store.hashes(merkle.range_nodes(0, size))

    def receipt(self, store: LogStore, index: int) -> Receipt:
        """Entry `index` proven against the newest checkpoint, inside a writer job."""
        latest = store.latest_checkpoint()
        if latest is None or index >= latest[0]:
            raise LookupError(f"log index {index} is not integrated")
        size, text = latest
        wanted = [n for g in merkle.inclusion_proof_nodes(index, size) for n in g]
        found = _Hashes(store.hashes(wanted))
        row = store.opening(index)
        opened = Opening.from_row(*row) if row else None
        receipt = Receipt(index, size, text, found, store.entry(index), opened)
        receipt.proof  # noqa: B018 - computed here, where a missing hash is the writer's error
        return receipt

    def forget_edge(self) -> None:
        """Drop the cached right edge (after a failed transaction)."""
        self._edge = None

    # --- proofs for readers ------------------------------------------------------------------

    @staticmethod
    async def inclusion_proof(reader: LogReader, index: int, size: int) -> list[bytes]:
        groups = merkle.inclusion_proof_nodes(index, size)
        hashes = await reader.hashes([n for g in groups for n in g])
        return merkle.inclusion_proof_from(_Hashes(hashes), index, size)

    @staticmethod
    async def consistency_proof(reader: LogReader, old: int, new: int) -> list[bytes]:
        groups = merkle.consistency_proof_nodes(old, new)
        hashes = await reader.hashes([n for g in groups for n in g])
        return merkle.consistency_proof_from(_Hashes(hashes), old, new)
