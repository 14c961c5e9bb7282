"""Client-side checks of the audit log's answers: checkpoints, receipts, directory proofs, audits.

Pure functions over what the server sent (no I/O): each returns the verified value or
raises a `CryptoError` subclass whose message names what failed, and the index where it can.

    verify_checkpoint(data, log_key, *, policy=None, not_after=None) -> note.Checkpoint
        The log key's signature (and, with a `note.WitnessPolicy`, a k-of-n witness quorum,
        fail-closed) on a signed checkpoint note.
    check_consistency(old, new, proof) -> None
        `new` extends `old`: same origin, old a prefix (RFC 9162 consistency proof, std
        base64 strings or bytes). Equal sizes need equal roots: two roots are a fork.
    advance(trusted, seen, proof) -> note.Checkpoint
        The checkpoint to remember after seeing `seen` while holding `trusted` (or None):
        the larger one, once consistency between the two is proven.
    verify_entry(entry, index, proof, checkpoint) -> VerifiedEntry
        The entry bytes are leaf `index` of the checkpoint's tree; parses the entry JSON.
    verify_receipt(receipt, log_key, *, entry=None, policy=None, not_after=None)
        -> VerifiedReceipt
        A receipt `{"log_index", "tree_size", "checkpoint", "inclusion_proof", "entry"?}`
        (the `receipt` of POST /v1/messages, /v1/enrol, revocations, and the answer of
        GET /v1/audit/messages/{id}): signed checkpoint, matching size, inclusion.
    verify_message_receipt(receipt, envelope, log_key, ...) -> VerifiedReceipt
        Also: the entry is `message.accepted` for this envelope id and digest
        (SHA-256 of the JCS envelope).
    inspect_device_record(record, checkpoint) -> DeviceStatus
        A directory record (GET /v1/directory/devices, recipients answers): the self-signed
        bundle, its id, the proof of its `device.enrolled` entry (bundle digest included)
        and, if present, of its `device.revoked` entry.
    verify_device_record(record, checkpoint) -> PublicBundle
        `inspect_device_record`, refusing a revoked device (`PolicyViolation`, reason
        `device-revoked`): the bundle it returns is safe to encrypt to.
    verify_log_entries(entries, checkpoint, hash_tiles=None) -> None
        An auditor's full check: entries [0, size) hash to the checkpoint root; with the
        hash tiles of that size, the first entry that differs from its committed leaf hash
        is named.

A client remembers the last checkpoint it verified and calls `advance` with every newer
one it is shown (a directory answer, a receipt) and the consistency proof between them
(GET /v1/audit/proof/consistency): a log that rewrote history cannot prove consistency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import merkle, note, tiles
from ._primitives import sha256
from .commitments import parse_disclosures
from .encoding import b64decode, jcs, loads_strict
from .entry_v2 import open_entry, parse_entry_v2
from .errors import CommitmentMismatch, MalformedError, PolicyViolation, ProofError
from .keys import PublicBundle

__all__ = [
    "DeviceStatus",
    "VerifiedEntry",
    "VerifiedReceipt",
    "advance",
    "check_consistency",
    "decode_hashes",
    "inspect_device_record",
    "parse_entry",
    "verify_checkpoint",
    "verify_device_record",
    "verify_entry",
    "verify_log_entries",
    "verify_message_receipt",
    "verify_receipt",
]

# A proof in a tree of up to 2**64 leaves has at most 64 hashes (RFC 9162).
_MAX_PROOF = 64


# --- checkpoints -------------------------------------------------------------------------


def _verifier(log_key: note.Verifier | str) -> note.Verifier:
    return note.parse_verifier_key(log_key) if isinstance(log_key, str) else log_key


def verify_checkpoint(
    data: bytes | str,
    log_key: note.Verifier | str,
    *,
    policy: note.WitnessPolicy | None = None,
    not_after: int | None = None,
) -> note.Checkpoint:
    """The checkpoint, once the log key (and the witness policy's quorum, if any) verified it."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return note.open_checkpoint(raw, _verifier(log_key), policy=policy, not_after=not_after)


def decode_hashes(values: Any, what: str = "proof") -> list[bytes]:
    """A proof as sent in JSON (std base64 strings) or as bytes; at most 64 hashes of 32 bytes."""
    if not isinstance(values, list | tuple) or len(values) > _MAX_PROOF:
        raise ProofError(f"{what} must be a list of at most {_MAX_PROOF} hashes")
    out = []
    for v in values:
        try:
            h = v if isinstance(v, bytes) else b64decode(v, field=what)
        except (MalformedError, AttributeError, TypeError):
            raise ProofError(f"{what} holds a value that is not a base64 hash") from None
        if len(h) != merkle.HASH_SIZE:
            raise ProofError(f"{what} holds a hash that is not 32 bytes")
        out.append(h)
    return out


def check_consistency(old: note.Checkpoint, new: note.Checkpoint, proof: Sequence[Any]) -> None:
    """Raise `ProofError` unless `new` extends `old` (same origin, old tree a prefix)."""
    if old.origin != new.origin:
        raise ProofError(f"checkpoint origin changed from {old.origin!r} to {new.origin!r}")
    if new.size < old.size:
        raise ProofError(f"log shrank from {old.size} to {new.size} entries")
    hashes = decode_hashes(list(proof), "consistency proof")
    if old.size == 0:
        # The empty tree is a prefix of every tree; its root is fixed (RFC 6962 MTH({})).
        if old.root_hash != merkle.EMPTY_ROOT or hashes:
            raise ProofError("a checkpoint of size 0 must have the empty root and an empty proof")
        return
    if old.size == new.size and old.root_hash != new.root_hash:
        raise ProofError(f"two different trees of size {new.size}: the log forked")
    try:
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, hashes)
    except ProofError as e:
        raise ProofError(
            f"the checkpoint of size {new.size} is not consistent with the one of size {old.size}: {e}"
        ) from None


def advance(trusted: note.Checkpoint | None, seen: note.Checkpoint, proof: Sequence[Any]) -> note.Checkpoint:
    """The checkpoint to keep after seeing `seen`: the larger, once consistency is proven.

    `proof` is the consistency proof between the smaller and the larger of the two.
    """
    if trusted is None:
        return seen
    if seen.size >= trusted.size:
        check_consistency(trusted, seen, proof)
        return seen
    check_consistency(seen, trusted, proof)
    return trusted


# --- entries and receipts ----------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedEntry:
    """An entry proven to be leaf `index` of a checkpoint's tree, with its parsed JSON."""

    index: int
    data: bytes
    json: dict[str, Any]


def parse_entry(data: bytes, opening: Any = None) -> dict[str, Any]:
    """An entry's JSON, from its exact bytes: canonical (JCS) v1 with type, time and actor;
    or the view of a v2 entry (protocol 10): `{"v": 2, "type", "hour", **clear}` and the
    committed fields that `opening` (`{name: {"salt", "value"}}`) opens, each recomputed
    against its commitment (ProofError if one does not open; unopened ones are absent).

    Refusing non-canonical bytes means one entry has one byte form, so two readers of the
    same leaf can never disagree on what it says.
    """
    try:
        obj = loads_strict(data)
    except (ValueError, TypeError):  # MalformedError is a ValueError
        raise MalformedError("a log entry is not JSON") from None
    if isinstance(obj, dict) and obj.get("v") == 2:
        return _view_v2(data, opening)
    if opening:
        raise MalformedError("an opening was given for a v1 entry, which commits to nothing")
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise MalformedError("a log entry is not a v1 or v2 JSON object")
    if not all(isinstance(obj.get(k), str) for k in ("type", "time", "actor")):
        raise MalformedError("a log entry lacks its type, time or actor")
    try:
        canonical = jcs(obj)
    except MalformedError:
        raise MalformedError("a log entry cannot be canonicalised") from None
    if canonical != data:
        raise MalformedError("a log entry is not in canonical (JCS) form")
    return obj


def _view_v2(data: bytes, opening: Any) -> dict[str, Any]:
    entry = parse_entry_v2(data)
    opened: dict[str, Any] = {}
    if opening:
        try:
            opened = open_entry(entry, parse_disclosures(opening))
        except CommitmentMismatch as e:
            raise ProofError(f"the entry's opening does not match its commitments: {e}") from None
    return entry.view(opened)


def _entry_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return b64decode(value, field="entry")
    except (MalformedError, AttributeError, TypeError):
        raise MalformedError("a log entry must be standard base64") from None


def _index(value: Any, what: str = "log index") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise MalformedError(f"{what} must be an integer in [0, 2**64)")
    return int(value)


def verify_entry(
    entry: bytes | str, index: int, proof: Sequence[Any], checkpoint: note.Checkpoint, opening: Any = None
) -> VerifiedEntry:
    """The entry (bytes or std base64) is leaf `index` of the checkpoint's tree; a v2 entry's
    `opening` opens what it may (`parse_entry`)."""
    data = _entry_bytes(entry)
    index = _index(index)
    hashes = decode_hashes(list(proof), "inclusion proof")
    try:
        merkle.verify_inclusion(merkle.leaf_hash(data), index, checkpoint.size, hashes, checkpoint.root_hash)
    except ProofError as e:
        raise ProofError(
            f"log entry {index} is not in the checkpoint of size {checkpoint.size}: {e}"
        ) from None
    return VerifiedEntry(index, data, parse_entry(data, opening))


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose checkpoint is signed and whose entry is proven in it."""

    checkpoint: note.Checkpoint
    note: str
    entry: VerifiedEntry

    @property
    def index(self) -> int:
        return self.entry.index


def verify_receipt(
    receipt: Mapping[str, Any],
    log_key: note.Verifier | str,
    *,
    entry: bytes | None = None,
    policy: note.WitnessPolicy | None = None,
    not_after: int | None = None,
) -> VerifiedReceipt:
    """Check a receipt: signed checkpoint, its size, and the entry's inclusion proof.

    The entry comes from the receipt (`"entry"`, std base64) or from `entry`; given both,
    they must be the same bytes.
    """
    if not isinstance(receipt, Mapping):
        raise MalformedError("a receipt must be a JSON object")
    text = receipt.get("checkpoint")
    if not isinstance(text, str):
        raise MalformedError("a receipt needs its signed checkpoint")
    cp = verify_checkpoint(text, log_key, policy=policy, not_after=not_after)
    if _index(receipt.get("tree_size"), "tree size") != cp.size:
        raise ProofError("the receipt's tree size is not its checkpoint's size")
    sent = receipt.get("entry")
    if sent is None and entry is None:
        raise MalformedError("a receipt without its entry cannot be checked")
    data = _entry_bytes(sent) if sent is not None else entry
    assert data is not None
    if entry is not None and data != entry:
        raise ProofError("the receipt's entry is not the expected entry")
    verified = verify_entry(
        data,
        _index(receipt.get("log_index")),
        receipt.get("inclusion_proof") or [],
        cp,
        receipt.get("opening"),
    )
    return VerifiedReceipt(cp, text, verified)


def verify_message_receipt(
    receipt: Mapping[str, Any],
    envelope: Mapping[str, Any],
    log_key: note.Verifier | str,
    *,
    policy: note.WitnessPolicy | None = None,
    not_after: int | None = None,
) -> VerifiedReceipt:
    """`verify_receipt`, and the entry is this envelope's `message.accepted` (id and digest)."""
    r = verify_receipt(receipt, log_key, policy=policy, not_after=not_after)
    e = r.entry.json
    if e.get("v") == 2 and "id" not in e:
        raise ProofError(f"log entry {r.index}: the receipt does not open the entry's message id")
    digest = sha256(jcs(dict(envelope))).hex()
    if e.get("type") != "message.accepted" or e.get("id") != envelope.get("id"):
        raise ProofError(f"log entry {r.index} is not the acceptance of message {envelope.get('id')}")
    if e.get("envelope_digest") != digest:
        raise ProofError(f"log entry {r.index} records another envelope than this one")
    return r


# --- key transparency --------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceStatus:
    """A directory device whose bundle verified and whose enrolment the log proves."""

    device: str
    bundle: PublicBundle
    enrol_index: int
    revoked: bool
    revoke_index: int | None


def inspect_device_record(record: Mapping[str, Any], checkpoint: note.Checkpoint) -> DeviceStatus:
    """Verify a directory record against a (verified) checkpoint; see the module docstring.

    A record without an enrolment proof is refused: a key the log does not show could be
    one the server shows to this client only. A revocation claim without a proof still
    counts as revoked: believing it can only make a client do less.
    """
    if not isinstance(record, Mapping) or not isinstance(record.get("device"), str):
        raise MalformedError("a directory record has no device id")
    dev = record["device"]
    signed = record.get("signed_bundle")
    bundle = PublicBundle.from_signed(signed)  # MalformedKey / BadSignature
    assert isinstance(signed, dict)
    if bundle.device_id != dev:
        raise ProofError(f"device {dev}: its key bundle has id {bundle.device_id}")
    if "principal" in record and record["principal"] != bundle.principal:
        raise ProofError(f"device {dev}: the bundle is for {bundle.principal}, not {record['principal']}")
    enrolment = record.get("enrolment")
    if not isinstance(enrolment, Mapping):
        raise ProofError(f"device {dev}: no proof that its key is in the audit log")
    enrolled = verify_entry(
        _entry_bytes(enrolment.get("entry")),
        _index(enrolment.get("log_index")),
        enrolment.get("inclusion_proof") or [],
        checkpoint,
        enrolment.get("opening"),
    )
    e = enrolled.json
    if (e.get("type"), e.get("device"), e.get("principal")) != ("device.enrolled", dev, bundle.principal):
        raise ProofError(f"device {dev}: log entry {enrolled.index} is not its enrolment")
    if e.get("bundle_digest") != sha256(jcs(signed["bundle"])).hex():
        raise ProofError(f"device {dev}: log entry {enrolled.index} records another key bundle")
    revoked = record.get("revoked") is True
    revoke_index = None
    revocation = record.get("revocation")
    if revocation is not None:
        if not isinstance(revocation, Mapping):
            raise MalformedError(f"device {dev}: malformed revocation proof")
        r = verify_entry(
            _entry_bytes(revocation.get("entry")),
            _index(revocation.get("log_index")),
            revocation.get("inclusion_proof") or [],
            checkpoint,
            revocation.get("opening"),
        )
        if (r.json.get("type"), r.json.get("device")) != ("device.revoked", dev):
            raise ProofError(f"device {dev}: log entry {r.index} is not its revocation")
        revoked, revoke_index = True, r.index
    return DeviceStatus(dev, bundle, enrolled.index, revoked, revoke_index)


def verify_device_record(record: Mapping[str, Any], checkpoint: note.Checkpoint) -> PublicBundle:
    """The bundle of a proven, unrevoked device: the only kind of key to encrypt to."""
    status = inspect_device_record(record, checkpoint)
    if status.revoked:
        where = f" at log index {status.revoke_index}" if status.revoke_index is not None else ""
        raise PolicyViolation("device-revoked", f"device {status.device} is revoked{where}")
    return status.bundle


# --- auditing ----------------------------------------------------------------------------


def verify_log_entries(
    entries: Sequence[bytes],
    checkpoint: note.Checkpoint,
    hash_tiles: Mapping[tiles.Tile, bytes] | None = None,
) -> None:
    """Check that `entries` are exactly the log's entries [0, size) of `checkpoint`.

    With the checkpoint's hash tiles (every tile of `tiles.tiles_for_size(size)`, as served
    for that size), each entry is compared with the leaf hash the checkpoint commits to and
    the first one that differs is named; without them only the root is compared.
    """
    if len(entries) != checkpoint.size:
        raise ProofError(f"expected {checkpoint.size} entries, got {len(entries)}")
    leaves = [merkle.leaf_hash(e) for e in entries]
    if hash_tiles is not None:
        try:
            verified = tiles.verify_tiles(checkpoint.size, checkpoint.root_hash, hash_tiles)
            for i, h in enumerate(leaves):
                if verified.get(0, i) != h:
                    raise ProofError(
                        f"log entry {i} is not the entry the checkpoint of size {checkpoint.size} commits to"
                    )
        except MalformedError as e:
            raise ProofError(f"hash tiles: {e}") from None
    if merkle.root_from_leaf_hashes(leaves) != checkpoint.root_hash:
        raise ProofError(f"the entries do not hash to the root of the checkpoint of size {checkpoint.size}")
