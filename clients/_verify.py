"""The client's view of `liaison.crypto.transparency`: the same pure checks, client errors.

Each function returns the verified value or raises the specific `VerificationFailed`
subclass (ProofMissing, ProofInvalid, InconsistentLog, ...) whose message says what failed,
so callers and the CLI can say exactly why something was refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liaison.crypto import note, transparency
from liaison.crypto.errors import (
    BadSignature,
    CryptoError,
    MalformedError,
    MalformedKey,
    NoteSyntaxError,
    PolicyViolation,
    ProofError,
)
from liaison.crypto.keys import PublicBundle
from liaison.crypto.transparency import VerifiedEntry

from .errors import (
    InconsistentLog,
    KeyRevoked,
    MalformedResponse,
    ProofInvalid,
    ProofMissing,
    SignatureInvalid,
    UntrustedCheckpoint,
)

__all__ = [
    "Cosigners",
    "DeviceRecord",
    "VerifiedEntry",
    "check_consistency",
    "inspect_cosignatures",
    "open_checkpoint",
    "parse_entry",
    "require_unrevoked",
    "verify_device_record",
    "verify_entry",
    "verify_message_receipt",
]


def open_checkpoint(text: str | bytes, log_key: note.Verifier) -> note.Checkpoint:
    """The checkpoint, once the pinned log key's signature on it verifies."""
    try:
        return transparency.verify_checkpoint(text, log_key)
    except CryptoError as e:
        raise UntrustedCheckpoint(
            f"checkpoint is not signed by the pinned log key {log_key.name}: {e}"
        ) from None


def check_consistency(old: note.Checkpoint, new: note.Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise InconsistentLog unless `new` extends `old` (same origin, `old` a prefix of `new`)."""
    try:
        transparency.check_consistency(old, new, list(proof))
    except CryptoError as e:
        raise InconsistentLog(
            f"{e}; the server's log is not the one this profile saw before: refusing it"
        ) from None


def parse_entry(data: bytes, opening: Any = None) -> dict[str, Any]:
    """The entry's JSON, parsed from its exact bytes (never from a server-supplied field); a
    v2 entry's view with what `opening` opens."""
    try:
        entry = transparency.parse_entry(data, opening)
    except ProofError as e:  # an opening that does not open
        raise ProofInvalid(str(e)) from None
    except CryptoError as e:
        raise MalformedResponse(str(e)) from None
    return entry


def verify_entry(
    entry: Any, index: Any, proof: Any, cp: note.Checkpoint, opening: Any = None
) -> VerifiedEntry:
    """The (std-base64) entry is leaf `index` of the checkpoint's tree (a v2 entry opened by
    `opening` where it is given)."""
    try:
        return transparency.verify_entry(entry, index, proof if proof is not None else [], cp, opening)
    except ProofError as e:
        raise ProofInvalid(str(e)) from None
    except CryptoError as e:
        raise MalformedResponse(f"log proof: {e}") from None


def verify_message_receipt(
    receipt: Mapping[str, Any], envelope: Mapping[str, Any], log_key: note.Verifier
) -> transparency.VerifiedReceipt:
    """A receipt for this envelope's `message.accepted` entry (id and digest), verified."""
    if not isinstance(receipt, Mapping) or receipt.get("entry") is None:
        raise ProofMissing(f"message {envelope.get('id')}: the receipt carries no log entry")
    try:
        return transparency.verify_message_receipt(receipt, envelope, log_key)
    except (BadSignature, NoteSyntaxError) as e:
        raise UntrustedCheckpoint(f"receipt checkpoint: {e}") from None
    except ProofError as e:
        raise ProofInvalid(str(e)) from None
    except CryptoError as e:
        raise MalformedResponse(f"receipt: {e}") from None


@dataclass(frozen=True)
class DeviceRecord:
    """A directory device whose bundle verified and whose enrolment is proven in the log."""

    device: str
    principal: str
    bundle: PublicBundle
    enrol_index: int
    revoked: bool
    revoke_index: int | None


def verify_device_record(rec: Any, cp: note.Checkpoint) -> DeviceRecord:
    """Verify a directory record: self-signed bundle, id, and its `device.enrolled` proof.

    A record without an enrolment proof raises ProofMissing: a key the log does not show
    could be one the server shows to this client only.
    """
    if not isinstance(rec, dict) or not isinstance(rec.get("device"), str):
        raise MalformedResponse("a directory record has no device id")
    dev = rec["device"]
    try:
        bundle = PublicBundle.from_signed(rec.get("signed_bundle"))
    except (BadSignature, MalformedKey) as e:
        raise SignatureInvalid(f"device {dev}: its key bundle does not verify ({e})") from None
    except CryptoError as e:
        raise MalformedResponse(f"device {dev}: {e}") from None
    if not isinstance(rec.get("enrolment"), dict):
        raise ProofMissing(
            f"device {dev} of {bundle.principal}: no proof that its key is in "
            "the audit log; refusing to use it"
        )
    if rec.get("principal") != bundle.principal:
        raise SignatureInvalid(
            f"device {dev}: the bundle is for {bundle.principal}, not {rec.get('principal')}"
        )
    try:
        status = transparency.inspect_device_record(rec, cp)
    except ProofError as e:
        raise ProofInvalid(str(e)) from None
    except (MalformedError, PolicyViolation) as e:
        raise MalformedResponse(f"device {dev}: {e}") from None
    return DeviceRecord(
        dev, bundle.principal, status.bundle, status.enrol_index, status.revoked, status.revoke_index
    )


def require_unrevoked(rec: DeviceRecord, role: str) -> None:
    if rec.revoked:
        where = f" (log index {rec.revoke_index})" if rec.revoke_index is not None else ""
        raise KeyRevoked(f"the {role}'s device {rec.device} of {rec.principal} is revoked{where}")


# --- witness cosignatures ---------------------------------------------------------------------

#: A witness clock may run ahead of ours by this much (seconds) before its cosignature is
#: treated as dated in the future (and ignored): the service's default clock-skew window.
COSIGNATURE_SKEW = 300


@dataclass(frozen=True)
class Cosigners:
    """What a signed checkpoint's signature lines prove, under a set of pinned witness keys.

    `verified`: one cosignature per pinned witness whose signature on this exact checkpoint
    text verifies and whose timestamp is neither in the future nor (with a maximum age) too
    old. `stale`: pinned witnesses whose only valid cosignature is older than the maximum age.
    `ignored`: every other line but the log's own signature: unknown keys, keys of the
    right name but another id, signatures that do not verify, repeats, future dates. Nothing
    the server appends can add a name to `verified`.
    """

    verified: tuple[note.Cosignature, ...]
    stale: tuple[str, ...]
    ignored: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.verified)


def inspect_cosignatures(
    signed_note: str | bytes,
    log_key: note.Verifier,
    witnesses: Sequence[note.Verifier],
    *,
    now: int,
    max_age: int | None = None,
) -> Cosigners:
    """Sort a checkpoint's signature lines into verified pinned cosignatures and the rest.

    The log's signature is checked first (UntrustedCheckpoint if it fails), so the text the
    cosignatures are checked against is the one the log signed.
    """
    data = signed_note.encode("utf-8") if isinstance(signed_note, str) else bytes(signed_note)
    try:
        opened = note.open_note(data, [log_key])
    except CryptoError as e:
        raise UntrustedCheckpoint(
            f"checkpoint is not signed by the pinned log key {log_key.name}: {e}"
        ) from None
    payload = opened.text.encode("utf-8")
    pinned = {(w.name, w.key_id): w for w in witnesses}
    verified: dict[str, note.Cosignature] = {}
    stale: set[str] = set()
    ignored = 0
    for sig in opened.unverified:  # every line but the pinned log key's own signature
        witness = pinned.get((sig.name, sig.key_id))
        if witness is None or not witness.verify(payload, sig.blob):
            ignored += 1
            continue
        timestamp = int.from_bytes(sig.blob[:8], "big")
        if timestamp > now + COSIGNATURE_SKEW or witness.name in verified:
            ignored += 1
            continue
        if max_age is not None and timestamp < now - max_age:
            stale.add(witness.name)
            continue
        verified[witness.name] = note.Cosignature(sig.name, sig.key_id, timestamp, sig.blob[8:])
    ordered = tuple(verified[w.name] for w in witnesses if w.name in verified)
    return Cosigners(ordered, tuple(sorted(stale - set(verified))), ignored)
