"""Verify a whole stored log: recompute the tree from every entry and check everything stored.

`verify_log` streams the log in chunks (memory stays flat at a million entries and beyond) and
trusts nothing in the database: entries are re-hashed, the tree is rebuilt with the RFC 6962
right-edge (compact range) method, every stored subtree hash is compared with it, and each
checkpoint's signature is checked with the log's verifier key (and each stored cosignature
with the witness keys given). The first failure is named by log index where one can be.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from liaison.crypto import merkle, note
from liaison.crypto.commitments import parse_disclosures
from liaison.crypto.directory_replay import DirectoryReplay
from liaison.crypto.entry_v2 import SHREDDABLE, open_entry, parse_entry_v2
from liaison.crypto.errors import CryptoError

from ..storage.db import Database
from ..storage.logstore import LogReader
from ..storage.models import DirectoryStatement
from .entries import Opening

__all__ = ["VerifyReport", "verify_log"]

_CHUNK = 10_000
_MAX_FAILURES = 20


@dataclass
class VerifyReport:
    """What `verify_log` found; `ok` only if nothing failed."""

    size: int = 0
    checkpoints: int = 0
    cosignatures: int = 0
    cosignatures_unchecked: int = 0
    failures: list[str] = field(default_factory=list)
    first_bad_index: int | None = None
    #: Entries whose bytes no longer match their stored leaf hash, in order.
    bad_leaves: list[int] = field(default_factory=list)
    #: Directory statements replayed and map heads checked (protocol 9.10).
    statements: int = 0
    map_heads: int = 0
    #: Statements whose signer's authority the replay checked (all: the database holds every
    #: disclosure).
    authority_checked: int = 0
    #: Entries whose opening is gone, each named by a later `audit.shredded` entry.
    shredded: int = 0
    #: Entries v2 without an opening, not yet explained by a shredding: index -> type.
    unopened: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    def explained(self, start: int, end: int) -> bool:
        """Whether a changed entry in [start, end) already accounts for a mismatch there."""
        i = bisect.bisect_left(self.bad_leaves, start)
        return i < len(self.bad_leaves) and self.bad_leaves[i] < end

    def fail(self, message: str, index: int | None = None) -> None:
        if len(self.failures) < _MAX_FAILURES:
            self.failures.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


class _Edge:
    """The right edge of the tree being rebuilt: complete subtrees, largest (leftmost) first."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, int, bytes]] = []  # (level, index, hash)
        self.size = 0

    def push(self, leaf: bytes, created: dict[merkle.Node, bytes]) -> None:
        node = (0, self.size, leaf)
        created[(0, self.size)] = leaf
        self.size += 1
        while self.nodes and self.nodes[-1][0] == node[0]:
            left = self.nodes.pop()
            node = (node[0] + 1, left[1] >> 1, merkle.node_hash(left[2], node[2]))
            created[(node[0], node[1])] = node[2]
        self.nodes.append(node)

    def root(self) -> bytes:
        if not self.nodes:
            return merkle.EMPTY_ROOT
        acc = self.nodes[-1][2]
        for _, _, h in reversed(self.nodes[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc


def _stored_node_count(size: int) -> int:
    total, n = 0, size
    while n:
        total += n
        n >>= 1
    return total


async def _compare_stored(db: Database, created: dict[merkle.Node, bytes], report: VerifyReport) -> None:
    """Compare recomputed subtree hashes with the rows of `tree_hash`.

    A changed entry shows as a leaf mismatch (naming its index) and, above it, as mismatches
    of every subtree over it; those are consequences and are not reported again.
    """
    by_level: dict[int, list[int]] = {}
    for level, idx in created:
        by_level.setdefault(level, []).append(idx)
    async with db.sessions() as s:
        stored = await LogReader(s).hash_spans({lv: (min(ix), max(ix)) for lv, ix in by_level.items()})
    for (level, idx), h in sorted(created.items()):  # leaves first, then each level up
        got = stored.get((level, idx))
        if got == h:
            continue
        first, last = idx << level, (idx + 1) << level
        what = "is missing" if got is None else "differs"
        if level == 0:
            report.bad_leaves.append(idx)
            report.fail(
                f"entry {idx}: {what} from its stored leaf hash (the entry or its hash was changed)", idx
            )
        elif not report.explained(first, last):
            report.fail(
                f"stored tree hash ({level}, {idx}) over entries [{first}, {last}) "
                f"{what} from the one recomputed from the entries",
                first,
            )


def _check_entry(
    idx: int,
    data: bytes,
    type_: str,
    actor: str,
    report: VerifyReport,
    replay: DirectoryReplay,
    disclosures: Mapping[int, str],
    openings: Mapping[int, tuple[bytes, str]],
) -> None:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        report.fail(f"entry {idx}: not JSON", idx)
        return
    if isinstance(obj, dict) and obj.get("v") == 2:
        # An entry v2 (protocol 10): its type and clear fields are what the replay reads.
        try:
            entry = parse_entry_v2(data)
        except CryptoError as e:
            report.fail(f"entry {idx}: a malformed entry v2: {e}", idx)
            return
        if entry.type != type_:
            report.fail(f"entry {idx}: its type column does not match its bytes", idx)
            return
        # Every commitment must open with the stored opening (the operator holds them all);
        # one missing is withheld unless a later audit.shredded entry names it (_shredding).
        stored = openings.get(idx)
        values: dict[str, object] = {}
        if entry.commitments and stored is None:
            report.unopened[idx] = type_
        elif stored is not None:
            opening = Opening.from_row(*stored)
            try:
                values = open_entry(entry, parse_disclosures(opening.disclose()))
            except CryptoError as e:
                report.fail(f"entry {idx}: its stored opening does not open it: {e}", idx)
            else:
                if set(values) != set(entry.commitments):
                    report.fail(f"entry {idx}: its opening leaves fields sealed", idx)
            if values.get("actor", actor) != actor:
                report.fail(f"entry {idx}: its actor column does not match its committed actor", idx)
        obj = entry.view(values)
        if type_ == "audit.shredded":
            _shredding(idx, entry.clear.get("indexes"), report)
    elif not isinstance(obj, dict) or obj.get("type") != type_ or obj.get("actor") != actor:
        report.fail(f"entry {idx}: its type/actor columns do not match its bytes", idx)
        return
    opened = None
    if type_ == "directory.statement":
        raw = disclosures.get(idx)
        if raw is None:
            report.fail(f"entry {idx}: no stored statement row holds its disclosures", idx)
        else:
            try:
                opened = parse_disclosures(json.loads(raw))
            except (ValueError, CryptoError) as e:
                report.fail(f"entry {idx}: its stored disclosures are malformed: {e}", idx)
    replay.feed(idx, obj, opened)


def _shredding(idx: int, indexes: object, report: VerifyReport) -> None:
    """An `audit.shredded` entry at `idx` explains the missing openings it names (protocol
    10.7): each must be an earlier message entry (`SHREDDABLE`) whose opening is indeed gone.
    One still stored was not destroyed; a directory statement is never shredded."""
    if not isinstance(indexes, list) or not all(type(i) is int for i in indexes):
        report.fail(f"entry {idx}: audit.shredded without a list of indexes", idx)
        return
    for i in indexes:
        kind = report.unopened.pop(i, None)
        if not 0 <= i < idx:
            report.fail(f"entry {idx}: audit.shredded names entry {i}, which is not before it", idx)
        elif kind is None:
            report.fail(f"entry {idx}: audit.shredded names entry {i}, whose opening is still stored", idx)
        elif kind not in SHREDDABLE:
            report.fail(f"entry {idx}: audit.shredded names entry {i}, a {kind}, which is never shredded", i)
        else:
            report.shredded += 1


async def _disclosures(db: Database, start: int, end: int) -> dict[int, str]:
    """The stored disclosures of the directory statements logged in [start, end)."""
    async with db.sessions() as s:
        rows = await s.execute(
            select(DirectoryStatement.log_index, DirectoryStatement.disclosures).where(
                DirectoryStatement.log_index >= start, DirectoryStatement.log_index < end
            )
        )
        return {int(i): str(d) for i, d in rows}


async def verify_log(
    db: Database,
    log_key: note.Verifier,
    *,
    witnesses: Sequence[note.Verifier] = (),
    progress: Callable[[int, int], None] | None = None,
    chunk: int = _CHUNK,
) -> VerifyReport:
    """Rebuild the tree from every stored entry and check everything stored against it."""
    report = VerifyReport()
    async with db.sessions() as s:
        reader = LogReader(s)
        size = await reader.size()
        count, hashes = await reader.counts()
        cps = [(c.size, c.root_hash, c.note) for c in await reader.all_checkpoints()]
        cosigs = await reader.all_cosignatures()
    report.size, report.checkpoints = size, len(cps)
    if count != size:
        report.fail(f"{count} entries are stored but the latest checkpoint has size {size}", min(count, size))
    if hashes != _stored_node_count(size):
        report.fail(f"{hashes} tree hashes are stored; a tree of {size} has {_stored_node_count(size)}")

    edge, pending = _Edge(), list(reversed(cps))
    replay = DirectoryReplay(authority=True)
    root_mismatch: list[tuple[int, int]] = []  # (checkpoint size, last good size before it)
    last_good = 0

    def reach_checkpoints() -> None:
        nonlocal last_good
        while pending and pending[-1][0] == edge.size:
            cp_size, root, text = pending.pop()
            if _check_checkpoint(cp_size, root, text, edge.root(), log_key, report):
                last_good = cp_size
            else:
                root_mismatch.append((cp_size, last_good))

    reach_checkpoints()
    nxt = 0
    while nxt < size:
        async with db.sessions() as s:
            rows = await LogReader(s).entry_rows(nxt, size, chunk)
        if not rows:
            report.fail(f"entries from index {nxt} on are missing", nxt)
            break
        created: dict[merkle.Node, bytes] = {}
        disclosures = await _disclosures(db, rows[0][0], rows[-1][0] + 1)
        async with db.sessions() as s:
            openings = await LogReader(s).openings(r[0] for r in rows)
        for idx, data, type_, actor in rows:
            if idx != edge.size:
                report.fail(f"entry {edge.size} is missing (next stored index is {idx})", edge.size)
                return report
            _check_entry(idx, data, type_, actor, report, replay, disclosures, openings)
            edge.push(merkle.leaf_hash(data), created)
            reach_checkpoints()
        await _compare_stored(db, created, report)
        nxt = edge.size
        if progress:
            progress(edge.size, size)
    for cp_size, _, _ in pending:
        report.fail(f"checkpoint of size {cp_size} is beyond the stored entries", cp_size)
    for cp_size, good in root_mismatch:
        if not report.explained(0, cp_size):
            # The entries below this size no longer hash to what the log signed, and every
            # stored hash agrees with them: the change is in [good, cp_size).
            report.fail(
                f"checkpoint of size {cp_size}: the stored entries do not hash to its "
                f"signed root; an entry in [{good}, {cp_size}) was changed",
                good,
            )
    for idx in sorted(report.unopened):
        report.fail(f"entry {idx}: its opening is missing and no audit.shredded entry names it", idx)
    _check_cosignatures(cosigs, cps, witnesses, report)
    report.statements, report.map_heads = replay.statements, replay.map_heads
    report.authority_checked = replay.authority_checked
    for finding in replay.findings:
        report.fail(f"directory: {finding}", replay.first_bad_index)
    return report


def _check_checkpoint(
    size: int, root: bytes, text: str, computed: bytes, log_key: note.Verifier, report: VerifyReport
) -> bool:
    """Check one stored checkpoint; False if its signed root differs from the entries'."""
    try:
        cp = note.open_checkpoint(text.encode("utf-8"), log_key)
    except CryptoError as e:
        report.fail(f"checkpoint of size {size}: not validly signed by the log key: {e}")
        return True
    if cp.size != size or cp.root_hash != root:
        report.fail(f"checkpoint of size {size}: its note and its columns disagree")
    return cp.root_hash == computed


def _check_cosignatures(
    cosigs: Sequence[tuple[int, str, str]],
    cps: Sequence[tuple[int, bytes, str]],
    witnesses: Sequence[note.Verifier],
    report: VerifyReport,
) -> None:
    texts = {size: text for size, _, text in cps}
    for size, witness, line in cosigs:
        report.cosignatures += 1
        known = [w for w in witnesses if w.name == witness]
        if size not in texts:
            report.fail(f"cosignature by {witness} for size {size}: no such checkpoint")
            continue
        if not known:
            report.cosignatures_unchecked += 1
            continue
        try:
            cp = note.parse_checkpoint(texts[size][: texts[size].rindex("\n\n") + 1])
            note.verify_cosignature_line(line, cp, known)
        except (CryptoError, ValueError) as e:
            report.fail(f"cosignature by {witness} for size {size} does not verify: {e}")
