"""The audit log: entry bytes, batch integration into the RFC 6962 tree, receipts and proofs.

Entries v2 (protocol 10, `tlog.entries`) appended with consecutive indexes inside the writer's
transaction. `AuditLog.integrate` then adds a whole batch to the tree at once: it stores the
hash of every complete subtree the batch creates (the addressing of `liaison.crypto.merkle`),
signs one checkpoint for the new size, and returns each new entry's inclusion proof, all
without reading more than the tree's right edge. Storage is behind `storage.logstore`:
`LogStore` for the writer, `LogReader` for readers.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from liaison.crypto import _primitives as p
from liaison.crypto import merkle, note
from liaison.crypto.commitments import COMMITMENT_KEY, SALT_LEN
from liaison.crypto.encoding import b64encode, format_time, jcs
from liaison.crypto.entry_v2 import CLEAR_FIELDS, ENTRY_SALT_DOMAIN, hour_of

from ..storage.logstore import LogEntry, LogReader, LogStore
from . import entries as _entries
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
    column readers filter on (never in the entry's bytes).

    Byte for byte what `tlog.entries.build` makes (tests/service/test_log_fast_build.py),
    with the checks that depend only on the entry's type and field names made once per
    shape (`_shape`); anything unusual (a check that fails, an entry too large) takes
    `entries.build` itself, which raises what it raises."""
    shape = _shape(type_, tuple(fields)) if type(type_) is str else None
    if shape is not None:
        try:
            built = _build_fast(shape, actor, time, fields, _entries._SEEDS.take())
        except Exception:  # a value it cannot take: `entries.build` says what is wrong
            built = None
        if built is not None:
            return LogEntry(type_, actor, subject, time, built[0], built[1])
    data, opening = build_v2(type_, actor, time, fields)
    return LogEntry(type_, actor, subject, time, data, opening)


#: Commitments (protocol 9.1) under their fixed, public key, set up once.
_COMMIT_MAC = p.HmacSha256(COMMITMENT_KEY).mac
#: base64url without padding of a 32-byte commitment: 44 standard characters, one `=`.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


class _Shape(NamedTuple):
    """What `entries.build` works out from an entry's type and field names alone."""

    #: The committed field names in `everything`'s order (actor, time, then the caller's).
    committed: tuple[str, ...]
    #: The clear field names (those `CLEAR_FIELDS` allows for the type), or () if none.
    clear: tuple[str, ...]
    #: Per committed name: its salt's HMAC input (protocol 10.1) and its commitment's name
    #: part, u16be(len N) || N (protocol 9.1).
    salt_inputs: tuple[bytes, ...]
    name_parts: tuple[bytes, ...]
    #: Positions of the committed names in JCS key order, with each name's JCS text.
    order: tuple[tuple[int, str], ...]
    #: The entry's JCS after its commitments and clear fields: `,"hour":` is per time.
    type_json: str


@functools.lru_cache(maxsize=1024)  # the service's entry shapes are a few dozen
def _shape(type_: str, names: tuple[str, ...]) -> _Shape | None:
    """The shape of an entry of `type_` with fields `names`, or None when `entries.build`
    must decide (a reserved or odd name, an odd type: it raises the right error)."""
    if not type_ or len(type_) > 64:
        return None
    if {"v", "type", "hour", "clear", "c", "actor"} & set(names):
        return None
    if any(type(n) is not str or not n for n in names):
        return None
    try:
        encoded = [n.encode("utf-8") for n in ("actor", "time", *names)]
        type_json = jcs(type_).decode("utf-8")
    except Exception:  # a lone surrogate, say: the slow path says what is wrong
        return None
    if any(len(e) > 0xFFFF for e in encoded):
        return None
    everything = list(dict.fromkeys(("actor", "time", *names)))  # a `time` field replaces the entry's
    allowed = CLEAR_FIELDS.get(type_, frozenset())
    committed = tuple(n for n in everything if n not in allowed)
    clear = tuple(n for n in everything if n in allowed)
    utf8 = {n: n.encode("utf-8") for n in committed}
    by_jcs = sorted(range(len(committed)), key=lambda i: committed[i].encode("utf-16-be"))
    return _Shape(
        committed,
        clear,
        tuple(ENTRY_SALT_DOMAIN + b"\x00" + utf8[n] for n in committed),
        tuple(len(utf8[n]).to_bytes(2, "big") + utf8[n] for n in committed),
        tuple((i, jcs(committed[i]).decode("utf-8")) for i in by_jcs),
        type_json,
    )


@functools.lru_cache(maxsize=64)  # a batch's entries share one time
def _times(time: datetime, type_json: str) -> tuple[str, str]:
    """The committed `time` value and the entry's JCS tail (hour, type, version)."""
    return format_time(time), f',"hour":"{hour_of(time)}","type":{type_json},"v":2}}'


def _build_fast(
    shape: _Shape, actor: str, time: datetime, fields: Mapping[str, Any], seed: bytes
) -> tuple[bytes, Opening] | None:
    """`entries.build` for an entry of `shape` with `seed`: the same checks, the same bytes,
    the same opening; None when it must decide (it then raises, or builds what is too
    unusual to be worth a fast path)."""
    stamp, tail = _times(time, shape.type_json)
    everything = {"actor": actor, "time": stamp, **fields}
    if shape.clear:
        committed = {n: everything[n] for n in shape.committed}
        clear_json = jcs({n: everything[n] for n in shape.clear}).decode("utf-8")
    else:
        committed = everything
        clear_json = "{}"
    salt_mac = p.HmacSha256(seed).mac
    salts: dict[str, bytes] = {}
    b64: list[str] = []
    commit, to_b64, urlsafe = _COMMIT_MAC, base64.b64encode, _TO_URLSAFE
    for name, value, salt_input, name_part in zip(
        shape.committed, committed.values(), shape.salt_inputs, shape.name_parts, strict=True
    ):
        salt = salts[name] = salt_mac(salt_input)[:SALT_LEN]
        j = jcs(value)
        if len(j) > 0xFFFFFFFF:
            return None
        b64.append(
            to_b64(commit(salt + name_part + len(j).to_bytes(4, "big") + j)).translate(urlsafe)[:-1].decode()
        )
    c = ",".join(f'{key}:"{b64[i]}"' for i, key in shape.order)
    data = f'{{"c":{{{c}}},"clear":{clear_json}{tail}'.encode()
    if len(data) > MAX_ENTRY_BYTES:
        return None
    return data, Opening(seed, committed, salts)


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
