"""Fork evidence: two checkpoints signed by one log key that no append-only log can both have
signed, kept in a file an auditor can hand to others, and checked by anyone from it alone.

When a checkpoint is inconsistent with the one a profile saved, the client raises
`ForkDetected` (an `InconsistentLog`) carrying a `ForkEvidence`: both signed notes and, when
the server still serves hash tiles that authenticate against the larger checkpoint, the RFC
9162 consistency proof from the smaller size and the root that the larger tree has at that
size (`old_root_in_new_tree`). The proof verifies against that root and the larger
checkpoint, so that root is what the larger tree holds at the smaller size (barring a
SHA-256 collision); it differs from the smaller checkpoint's root, so the proof fails against
the smaller checkpoint: the log signed two histories. Equal sizes need no proof (two roots).

The file is JSON (docs/audit.md, "Fork evidence", is its specification)::

    {"type": "liaison-fork-evidence", "v": 1, "origin": "...", "log_key": "<verifier key>",
     "server": "https://...", "detected_at": "<RFC 3339>", "detected_by": "<command>",
     "saved_checkpoint": "<signed note>", "served_checkpoint": "<signed note>",
     "consistency": {"old_size": N, "new_size": M, "proof": ["<base64>", ...],
                     "old_root_in_new_tree": "<base64>"} | null,
     "unproven": "<why there is no proof>" | null, "error": "<what the client said>"}

`check` is pure (no I/O): it is what `liaison audit evidence verify FILE` runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liaison.crypto import merkle, note, tiles
from liaison.crypto.encoding import b64decode, b64encode, format_time
from liaison.crypto.errors import CryptoError, MalformedError

from .errors import ClientError, InconsistentLog, InputError
from .keystore import _write_private

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = [
    "EVIDENCE_TYPE",
    "EvidenceInvalid",
    "ForkDetected",
    "ForkEvidence",
    "Verdict",
    "build",
    "check",
    "default_path",
    "detected",
    "load",
    "save",
]

EVIDENCE_TYPE = "liaison-fork-evidence"
_VERSION = 1
_MAX_FILE = 1 << 20
_MAX_PROOF = 64


class EvidenceInvalid(InputError):
    """The file is not evidence of a fork (malformed, badly signed, or consistent after all)."""


@dataclass(frozen=True)
class ForkEvidence:
    origin: str
    log_key: str
    server: str
    detected_at: str
    detected_by: str
    saved_checkpoint: str
    served_checkpoint: str
    old_size: int | None = None
    new_size: int | None = None
    proof: tuple[bytes, ...] = ()
    old_root_in_new_tree: bytes | None = None
    unproven: str | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        consistency = None
        if self.old_root_in_new_tree is not None:
            consistency = {
                "old_size": self.old_size,
                "new_size": self.new_size,
                "proof": [b64encode(h) for h in self.proof],
                "old_root_in_new_tree": b64encode(self.old_root_in_new_tree),
            }
        return {
            "type": EVIDENCE_TYPE,
            "v": _VERSION,
            "origin": self.origin,
            "log_key": self.log_key,
            "server": self.server,
            "detected_at": self.detected_at,
            "detected_by": self.detected_by,
            "saved_checkpoint": self.saved_checkpoint,
            "served_checkpoint": self.served_checkpoint,
            "consistency": consistency,
            "unproven": self.unproven,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ForkEvidence:
        """Parse strictly: a wrong type of any field is `EvidenceInvalid`."""
        if not isinstance(doc, dict) or doc.get("type") != EVIDENCE_TYPE or doc.get("v") != _VERSION:
            raise EvidenceInvalid(f"not a {EVIDENCE_TYPE} v{_VERSION} document")
        strings = ("origin", "log_key", "server", "detected_at", "detected_by", "saved_checkpoint")
        for key in (*strings, "served_checkpoint"):
            if not isinstance(doc.get(key), str):
                raise EvidenceInvalid(f"evidence field {key!r} is missing or not a string")
        unproven, error = doc.get("unproven"), doc.get("error", "")
        if not (unproven is None or isinstance(unproven, str)) or not isinstance(error, str):
            raise EvidenceInvalid("evidence fields 'unproven' and 'error' must be strings")
        fields = {k: doc[k] for k in (*strings, "served_checkpoint")}
        c = doc.get("consistency")
        if c is None:
            return cls(**fields, unproven=unproven, error=error)
        if (
            not isinstance(c, dict)
            or type(c.get("old_size")) is not int
            or type(c.get("new_size")) is not int
            or not isinstance(c.get("proof"), list)
            or len(c["proof"]) > _MAX_PROOF
            or not isinstance(c.get("old_root_in_new_tree"), str)
        ):
            raise EvidenceInvalid("evidence field 'consistency' is malformed")
        try:
            proof = tuple(b64decode(h, field="proof") for h in c["proof"])
            root = b64decode(c["old_root_in_new_tree"], field="old_root_in_new_tree")
        except (MalformedError, TypeError) as e:
            raise EvidenceInvalid(f"evidence field 'consistency': {e}") from None
        return cls(**fields, old_size=c["old_size"], new_size=c["new_size"], proof=proof,
                   old_root_in_new_tree=root, unproven=unproven, error=error)  # fmt: skip


class ForkDetected(InconsistentLog):
    """The log is not the one this profile saw before, with what shows it (`evidence`)."""

    def __init__(self, message: str, evidence: ForkEvidence) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True)
class Verdict:
    """What a valid evidence file shows: both checkpoints (smaller first) and how they fork."""

    origin: str
    key: str
    smaller: note.Checkpoint
    larger: note.Checkpoint
    how: str


def _open(text: str, key: note.Verifier, which: str) -> note.Checkpoint:
    try:
        return note.open_checkpoint(text.encode("utf-8"), key)
    except (CryptoError, UnicodeError) as e:
        raise EvidenceInvalid(f"the {which} checkpoint is not signed by the log key: {e}") from None


def check(ev: ForkEvidence, log_key: str | None = None) -> Verdict:
    """A verdict if `ev` proves that the log signed two inconsistent checkpoints; else
    `EvidenceInvalid` saying why not. With `log_key`, the file's key must be that one."""
    try:
        key = note.parse_verifier_key(ev.log_key)
    except CryptoError as e:
        raise EvidenceInvalid(f"the file's log key does not parse: {e}") from None
    if log_key is not None and log_key.strip() != key.key_string:
        raise EvidenceInvalid("the file names another log key than the one given")
    if key.sig_type != note.SIG_ED25519:
        raise EvidenceInvalid("a log key is an Ed25519 note key (type 0x01)")
    saved = _open(ev.saved_checkpoint, key, "saved")
    served = _open(ev.served_checkpoint, key, "served")
    small, large = sorted((saved, served), key=lambda cp: cp.size)
    if small.size == large.size:
        if small.root_hash == large.root_hash:
            raise EvidenceInvalid("the two checkpoints are the same tree: no fork")
        how = f"two different roots for the same size {small.size}"
        return Verdict(key.name, key.key_string, small, large, how)
    if small.size == 0:
        raise EvidenceInvalid("the empty tree is a prefix of every tree: no fork")
    if ev.old_root_in_new_tree is None:
        raise EvidenceInvalid(
            f"no consistency proof in the file ({ev.unproven or 'none was built'}): two checkpoints "
            "of different sizes alone do not show a fork"
        )
    if (ev.old_size, ev.new_size) != (small.size, large.size):
        raise EvidenceInvalid("the proof is for other sizes than the checkpoints'")
    try:
        merkle.verify_consistency(small.size, large.size, ev.old_root_in_new_tree, large.root_hash, ev.proof)
    except CryptoError as e:
        raise EvidenceInvalid(
            f"the proof does not show what the larger tree holds at size {small.size} ({e})"
        ) from None
    if ev.old_root_in_new_tree == small.root_hash:
        raise EvidenceInvalid("the proof shows the checkpoints are consistent: no fork")
    try:  # what the file claims to show, checked as any verifier would check it
        merkle.verify_consistency(small.size, large.size, small.root_hash, large.root_hash, ev.proof)
    except CryptoError:
        pass
    else:  # unreachable without a SHA-256 collision
        raise EvidenceInvalid("the proof verifies against the smaller checkpoint: no fork")
    how = (
        f"the tree of size {large.size} holds root {b64encode(ev.old_root_in_new_tree)} at size "
        f"{small.size}, not the signed {b64encode(small.root_hash)}: the consistency proof fails"
    )
    return Verdict(key.name, key.key_string, small, large, how)


async def build(
    client: AsyncClient, saved_note: str, served_note: str, *, error: str, detected_by: str = ""
) -> ForkEvidence:
    """Evidence from two checkpoints the client holds, with the consistency proof built from
    hash tiles that authenticate against the larger one, if the server still serves them."""
    key = client.memory.log_key
    saved = note.open_checkpoint(saved_note.encode(), key)
    served = note.open_checkpoint(served_note.encode(), key)
    small, large = sorted((saved, served), key=lambda cp: cp.size)
    base = ForkEvidence(
        key.name,
        key.key_string,
        client.server,
        format_time(datetime.now(UTC)),
        detected_by,
        saved_note,
        served_note,
        error=error,
    )
    if small.size in (0, large.size):
        return base
    nodes = [n for group in merkle.consistency_proof_nodes(small.size, large.size) for n in group]
    nodes += merkle.range_nodes(0, small.size)
    try:
        reader = await client.verified_tiles(large, tiles.tiles_needed(large.size, nodes))
        proof = merkle.consistency_proof_from(reader, small.size, large.size)
        root = merkle.root_from(reader, small.size)
    except (ClientError, CryptoError) as e:
        why = f"the server serves no hash tiles that authenticate the checkpoint of size {large.size} ({e})"
        return replace(base, unproven=why)
    return replace(
        base, old_size=small.size, new_size=large.size, proof=tuple(proof), old_root_in_new_tree=root
    )


async def detected(
    client: AsyncClient, e: InconsistentLog, saved_note: str, served_note: str
) -> ForkDetected:
    """`e` as a `ForkDetected` carrying the evidence (built once: a nested one is kept)."""
    if isinstance(e, ForkDetected):
        return e
    return ForkDetected(str(e), await build(client, saved_note, served_note, error=str(e)))


def default_path(state_dir: Path) -> Path:
    """`<profile state>/evidence/fork-<UTC time>.json`, never an existing file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = state_dir / "evidence"
    path, n = folder / f"fork-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"fork-{stamp}-{n}.json"
    return path


def save(ev: ForkEvidence, path: Path) -> Path:
    """Write the evidence (0600, atomically); refuses to replace an existing file."""
    if path.exists():
        raise InputError(f"{path} exists: evidence is never written over another file")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(path, (json.dumps(ev.to_json(), indent=2) + "\n").encode())
    return path


def load(path: Path) -> ForkEvidence:
    try:
        raw = path.read_bytes()[: _MAX_FILE + 1]
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) > _MAX_FILE:
        raise EvidenceInvalid(f"{path} is larger than any evidence file")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise EvidenceInvalid(f"{path} is not JSON") from None
    return ForkEvidence.from_json(doc)
