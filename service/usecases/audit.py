"""Read use cases of the audit log: checkpoints, tiles, entries, proofs, receipts, cosignatures.

Everything here is served from what the integrator stored (table `tree_hash` holds every
complete subtree's hash), so a tile is one range read and a proof at most a few dozen point
reads, whatever the size of the log. What may be read is bounded by a *signed* checkpoint:
nothing beyond the latest checkpoint's size is ever served.

Who may read what (SPEC 6, issue 10 findings 19 and 20):

* public, always: checkpoints, hash tiles, consistency proofs and inclusion proofs. They are
  hashes, and every proof is computed from hash tiles anyone may fetch: a witness or client
  needs nothing more, and requiring a signature for them would protect nothing.
* auditors and admins (`require_auditor`, through one dependency), or anyone when
  `audit_public` is set: the entries themselves, as bundles and as JSON. Until entries are
  committed (a later release), an entry shows every field it records.
* a message's entry and proof (`message_proof`): the principals `may_read_message_entry`
  allows, never anonymously, whatever `audit_public` says; everyone else is told "not found".
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from liaison.crypto import note, tiles
from liaison.crypto.encoding import b64encode, parse_time
from liaison.crypto.errors import BadSignature, CryptoError, MalformedError, NoteSyntaxError
from liaison.crypto.policy import may_read_message_entry

from ..problems import Problem
from ..state import AppState
from ..storage.logstore import CheckpointRow, LogReader
from ..storage.models import Delivery, Message
from ..tlog.entries import Opening
from ..tlog.log import AuditLog
from ..writer import Refusal, Tx
from .audit_openings import opener_of, visible
from .auth import Caller, SignedRequest
from .readmodels import label_of
from .refusals import access_denied, refuse

__all__ = [
    "MAX_ENTRIES",
    "TileBody",
    "add_cosignature",
    "consistency",
    "entries",
    "entry_bundle",
    "hash_tile",
    "inclusion",
    "message_proof",
    "require_auditor",
    "signed_checkpoint",
    "with_cosignatures",
    "witness_verifiers",
]

log = logging.getLogger("liaison.audit")

#: Most entries one `GET /v1/audit/entries` returns.
MAX_ENTRIES = 1000
#: Full hash tiles kept in memory per log (8 KiB each): they never change once full.
_TILE_CACHE_SIZE = 2048


@dataclass(frozen=True)
class TileBody:
    """A tile's bytes and whether it is full (so immutable and cacheable for ever)."""

    data: bytes
    full: bool


# --- authorisation ---------------------------------------------------------------------------


async def require_auditor(state: AppState, caller: Caller, what: str) -> None:
    """Only auditors and admins read entries and proofs; a refusal is logged (`access.denied`)."""
    if caller.principal.has_role("auditor") or caller.principal.has_role("admin"):
        return
    await refuse(
        state,
        Problem("not-auditor", "only an auditor or admin may read the audit log"),
        access_denied(caller.device_id, what, "not-auditor", caller.device_id),
    )


# --- checkpoints -----------------------------------------------------------------------------


async def _latest(reader: LogReader) -> CheckpointRow:
    cp = await reader.latest_checkpoint()
    if cp is None:
        raise Problem("unavailable", "the log has no checkpoint yet")
    return cp


async def _at(reader: LogReader, size: int | None) -> CheckpointRow:
    """The stored checkpoint of `size` (the latest if None); a problem if none was signed."""
    if size is None:
        return await _latest(reader)
    cp = await reader.checkpoint_at(size)
    if cp is None:
        latest = await _latest(reader)
        if size > latest.size:
            raise Problem("proof", f"tree size {size} is beyond the log's size {latest.size}")
        raise Problem(
            "proof", f"no checkpoint was signed at tree size {size}; use the size of a checkpoint you hold"
        )
    return cp


async def _signed_at(reader: LogReader, size: int | None) -> tuple[CheckpointRow, str]:
    """`_at` and `with_cosignatures` together: the stored checkpoint of `size` (the latest if
    None) and its note with its cosignatures, in one query when it exists."""
    found = await reader.checkpoint_with_lines(size) if size is not None else None
    if found is None:
        cp = await _at(reader, size)  # the latest, or the problem saying why there is none
        return cp, await with_cosignatures(reader, cp)
    cp, lines = found
    return cp, _with_lines(cp, lines)


def _with_lines(cp: CheckpointRow, lines: Sequence[str]) -> str:
    if not lines:
        return cp.note
    return note.add_signature_lines(cp.note.encode("utf-8"), list(lines)).decode("utf-8")


async def with_cosignatures(reader: LogReader, cp: CheckpointRow) -> str:
    """The checkpoint note with the stored witness cosignatures of its size appended."""
    return _with_lines(cp, await reader.cosignature_lines(cp.size))


async def signed_checkpoint(state: AppState, size: int | None = None, cosigned: int = 0) -> str:
    """The latest checkpoint, the one of `size`, or the newest with >= `cosigned` cosignatures.

    Each comes with the cosignatures stored for its size.
    """
    async with state.db.sessions() as s:
        reader = LogReader(s)
        if cosigned > 0:
            found = await reader.newest_cosigned_size(cosigned)
            if found is None:
                raise Problem("not-found", f"no checkpoint has {cosigned} witness cosignature(s)")
            size = found
        return await with_cosignatures(reader, await _at(reader, size))


# --- tiles -----------------------------------------------------------------------------------

_tile_cache: weakref.WeakKeyDictionary[AuditLog, OrderedDict[tuple[int, int], bytes]] = (
    weakref.WeakKeyDictionary()
)


def _check_tile_exists(tile: tiles.Tile, size: int) -> None:
    """A tile exists when its `width` hashes exist in the tree of `size`.

    Partial tiles narrower than the current edge stay available (their hashes never change),
    so a client holding an older checkpoint can still fetch exactly the tiles it needs.
    """
    available = size >> (tiles.TILE_HEIGHT * tile.level)
    if tile.n * tiles.TILE_WIDTH + tile.width > available:
        raise Problem("not-found", f"{tile.path} is beyond the tree of size {size}")


async def hash_tile(state: AppState, tile: tiles.Tile) -> TileBody:
    """A hash tile's bytes from the stored hashes of tree level 8L (one range read)."""
    cache = _tile_cache.setdefault(state.log, OrderedDict())
    if tile.is_full and (tile.level, tile.n) in cache:
        cache.move_to_end((tile.level, tile.n))
        return TileBody(cache[(tile.level, tile.n)], True)
    async with state.db.sessions() as s:
        reader = LogReader(s)
        _check_tile_exists(tile, await reader.size())
        first = tile.n * tiles.TILE_WIDTH
        rows = await reader.hash_range(tiles.TILE_HEIGHT * tile.level, first, first + tile.width)
    if [r[0] for r in rows] != list(range(first, first + tile.width)):
        log.error("tree hashes of tile %s are missing from the database", tile.path)
        raise Problem("internal", "the log's stored hashes are incomplete")
    data = b"".join(r[1] for r in rows)
    if tile.is_full:
        cache[(tile.level, tile.n)] = data
        while len(cache) > _TILE_CACHE_SIZE:
            cache.popitem(last=False)
    return TileBody(data, tile.is_full)


async def entry_bundle(state: AppState, tile: tiles.Tile) -> TileBody:
    """An entry bundle: each entry as a big-endian uint16 length, then its bytes."""
    async with state.db.sessions() as s:
        reader = LogReader(s)
        _check_tile_exists(tile, await reader.size())
        first = tile.n * tiles.TILE_WIDTH
        rows = await reader.entry_range(first, first + tile.width)
    if [r[0] for r in rows] != list(range(first, first + tile.width)):
        log.error("entries of bundle %s are missing from the database", tile.path)
        raise Problem("internal", "the log's stored entries are incomplete")
    return TileBody(tiles.encode_entry_bundle([r[1] for r in rows]), tile.is_full)


# --- JSON conveniences -----------------------------------------------------------------------


def _entry_json(idx: int, data: bytes, opened: Mapping[str, Any] | None = None) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:  # only a damaged database holds such an entry; serve its bytes as is
        parsed = None
    out: dict[str, Any] = {"index": idx, "entry": b64encode(data), "json": parsed}
    if isinstance(parsed, dict) and parsed.get("v") == 2:
        # Entries v2 (protocol 10.3): the clear view, what this reader may open (with the
        # disclosures that prove it) and the names of what stays sealed.
        disclosed = dict(opened or {})
        values = {k: d["value"] for k, d in disclosed.items()}
        clear = parsed.get("clear") or {}
        out["json"] = {"v": 2, "type": parsed.get("type"), "hour": parsed.get("hour"), **clear, **values}
        out["opening"] = disclosed
        out["sealed"] = sorted(set(parsed.get("c") or {}) - set(disclosed))
    return out


async def _openings_for(
    state: AppState, s: AsyncSession, caller: Caller | None, rows: Sequence[tuple[int, bytes]]
) -> dict[int, dict[str, Any]]:
    """Per entry v2 among `rows`, the disclosures `caller` may receive (protocol 10.3)."""
    if caller is None:  # an unsigned reader (LIAISON_AUDIT_PUBLIC) opens nothing
        return {}
    stored = await LogReader(s).openings(i for i, _ in rows)
    if not stored:
        return {}
    who = opener_of(caller)
    types = {i: _type_of(d) for i, d in rows}

    def decide(sync: Session) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for i, row in stored.items():
            opening = Opening.from_row(*row)
            names = visible(sync, state.policy, who, types.get(i) or "", opening.values)
            if names:
                out[i] = opening.disclose(names)
        return out

    return await s.run_sync(decide)


def _is_v2(data: bytes) -> bool:
    try:
        obj = json.loads(data)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("v") == 2


def _type_of(data: bytes) -> str | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


async def entries(
    state: AppState,
    start: int,
    end: int | None,
    *,
    caller: Caller | None = None,
    type_: str | None = None,
    actor: str | None = None,
    since: str | None = None,
) -> dict[str, Any]:
    """Entries in [start, end) (end defaults to and is capped at the log size), at most 1000.

    With filters, the matching entries in that range; `next` is where to continue: the end
    when the range is exhausted.
    """
    since_dt: datetime | None = None
    if since is not None:
        try:
            since_dt = parse_time(since, field="since")
        except MalformedError as e:
            raise Problem("validation", str(e)) from None
    async with state.db.sessions() as s:
        reader = LogReader(s)
        size = await reader.size()
        stop = size if end is None else min(end, size)
        if start > stop:
            if end is not None and end < start:
                raise Problem("validation", "end must not be below start")
            return {"entries": [], "next": start}
        filtered = type_ is not None or actor is not None or since_dt is not None
        if not filtered:
            stop = min(stop, start + MAX_ENTRIES)
        rows = await reader.entry_range(
            start, stop, type_=type_, actor=actor, since=since_dt, limit=MAX_ENTRIES
        )
        opened = await _openings_for(state, s, caller, rows)
    out = [_entry_json(i, d, opened.get(i)) for i, d in rows]
    nxt = stop if len(rows) < MAX_ENTRIES or not filtered else rows[-1][0] + 1
    if opened and caller is not None:
        await _log_opened(state, caller, opened)
    return {"entries": out, "next": nxt}


async def _log_opened(state: AppState, caller: Caller, opened: Mapping[int, Mapping[str, Any]]) -> None:
    """Every answer that opened something is logged (`audit.opened`): which entries, how many
    fields."""

    def job(tx: Tx) -> None:
        tx.audit(
            "audit.opened",
            caller.device_id,
            caller.device_id,
            indexes=sorted(opened)[:MAX_ENTRIES],
            fields=sum(len(v) for v in opened.values()),
        )

    await state.writer.run(job)


async def inclusion(state: AppState, index: int, size: int | None) -> dict[str, Any]:
    """The inclusion proof of entry `index` in the checkpoint of `size` (default: latest)."""
    async with state.db.sessions() as s:
        reader = LogReader(s)
        cp, text = await _signed_at(reader, size)
        if index >= cp.size:
            raise Problem("proof", f"log index {index} is not below tree size {cp.size}")
        proof = await AuditLog.inclusion_proof(reader, index, cp.size)
    return {
        "index": index,
        "size": cp.size,
        "inclusion_proof": [b64encode(h) for h in proof],
        "checkpoint": text,
    }


async def consistency(state: AppState, old: int, new: int | None) -> dict[str, Any]:
    """The consistency proof from tree size `old` to the checkpoint of `new` (default: latest)."""
    async with state.db.sessions() as s:
        reader = LogReader(s)
        cp, text = await _signed_at(reader, new)
        if old > cp.size:
            raise Problem("proof", f"old size {old} is greater than new size {cp.size}")
        proof = await AuditLog.consistency_proof(reader, old, cp.size)
    return {
        "old": old,
        "new": cp.size,
        "consistency_proof": [b64encode(h) for h in proof],
        "checkpoint": text,
    }


async def message_proof(state: AppState, signed: SignedRequest, message_id: str) -> dict[str, Any]:
    """A message's `message.accepted` entry and its proof against the latest checkpoint, for a
    caller entitled to it (`liaison.crypto.policy.may_read_message_entry`: root; else a
    principal dominating the label that sent or received it, or is an auditor or admin).

    Everyone else is answered exactly as for a message that does not exist: `not-found`,
    "no such message", logged as `access.denied` (why `not-found`) in the writer job that
    consumes the request, with the same queries run either way.
    """
    mid = message_id[:36]  # a longer id names no message; the path is the caller's

    def job(tx: Tx) -> int:
        caller = signed.caller(tx)
        me = caller.principal
        m = tx.session.get(Message, mid) if mid == message_id else None
        received = tx.session.execute(
            select(Delivery.seq).where(Delivery.message_id == mid, Delivery.device_id == caller.device_id)
        ).first()
        if m is None or not may_read_message_entry(
            state.policy,
            me.subject,
            me.roles,
            me.is_root,
            label_of(m.label),
            received is not None or m.sender_device == caller.device_id,
        ):
            raise Refusal(
                Problem("not-found", "no such message"),
                access_denied(caller.device_id, f"message proof {mid}", "not-found", mid),
            )
        return m.log_index

    index = (await state.writer.run(job, shares_cache=True, savepoint=False)).value
    async with state.db.sessions() as s:
        reader = LogReader(s)
        entry = await reader.entry(index)
        cp = await _latest(reader)
        if entry is None or index >= cp.size:
            raise Problem("internal", "the message's log entry is missing")
        proof = await AuditLog.inclusion_proof(reader, index, cp.size)
        text = await with_cosignatures(reader, cp)
        found = (await reader.openings([index])).get(index)
    out = {
        "id": mid,
        "log_index": index,
        "entry": b64encode(entry),
        "inclusion_proof": [b64encode(h) for h in proof],
        "tree_size": cp.size,
        "checkpoint": text,
    }
    if found is not None:  # the caller is entitled to the whole entry (may_read_message_entry)
        out["opening"] = Opening.from_row(*found).disclose()
    elif _is_v2(entry):
        # Shredded at expiry (protocol 10.7): the entry stays proven, but nothing binds it to
        # the message any more, which is the point.
        raise Problem("not-found", "the message expired and its log entry's opening was shredded")
    return out


# --- witnesses -------------------------------------------------------------------------------


def witness_verifiers(keys: list[str]) -> list[note.Verifier]:
    """The configured witness keys (type 0x04 cosignature keys); a bad one is an error."""
    out = []
    for k in keys:
        try:
            v = note.parse_verifier_key(k)
        except CryptoError as e:
            raise Problem("internal", f"a configured witness key is invalid: {e}") from None
        if v.sig_type != note.SIG_COSIGNATURE_V1:
            raise Problem("internal", f"witness key {v.name} is not a cosignature key (0x04)")
        out.append(v)
    return out


async def add_cosignature(state: AppState, caller: Caller, size: int, line: str) -> dict[str, Any]:
    """Check a witness's C2SP tlog-cosignature on our checkpoint of `size`, store and log it."""
    try:
        sig = note.parse_signature_line(line[:-1] if line.endswith("\n") else line)
    except NoteSyntaxError as e:
        raise Problem("bad-cosignature", f"not a signature line: {e}") from None
    witnesses = [
        w
        for w in witness_verifiers(state.settings.witness_keys)
        if (w.name, w.key_id) == (sig.name, sig.key_id)
    ]
    if not witnesses:
        raise Problem("unknown-witness", f"{sig.name}+{sig.key_id.hex()} is not a configured witness key")
    async with state.db.sessions() as s:
        row = await LogReader(s).checkpoint_at(size)
    if row is None:
        raise Problem("not-found", f"no checkpoint was signed at tree size {size}")
    checkpoint = note.parse_checkpoint(
        note.open_note(row.note.encode("utf-8"), [state.log.signer.verifier]).text
    )
    # A witness's clock may run a little ahead of ours; a cosignature from far in the future
    # would claim an observation that has not happened yet.
    not_after = int(time.time()) + state.settings.clock_skew_seconds
    try:
        cosig = note.verify_cosignature_line(line, checkpoint, witnesses, not_after=not_after)
    except (BadSignature, NoteSyntaxError) as e:
        raise Problem("bad-cosignature", str(e)) from None
    name = cosig.name

    def job(tx: Tx) -> int:
        # The writer serialises every write, so no other cosignature of this (size, witness)
        # can be stored between the check and the insert.
        if tx.log.has_cosignature(size, name):
            raise Problem("conflict", f"witness {name} already cosigned tree size {size}")
        tx.log.put_cosignature(size, name, cosig.line, tx.now)
        return tx.audit(
            "witness.cosigned",
            caller.device_id,
            name if len(name) <= 64 else None,
            witness=name,
            key_id=cosig.key_id.hex(),
            size=size,
            root_hash=b64encode(checkpoint.root_hash),
            timestamp=cosig.timestamp,
        )

    index = (await state.writer.run(job)).value
    return {"size": size, "witness": name, "log_index": index}
