"""Anchors (protocol 9.7): what an admin's client hands a new device to pin, named by digest.

    {"v": 1, "log_key": "<C2SP verifier key>", "roots": {"seq": 1, "digest": "<base64url>"},
     "policy": {"version": 1}, "witnesses": {"k": 0, "keys": [], "max_age": null}}

digest = SHA-256("liaison/v1/anchors" || 0x00 || JCS(anchors)), carried by a LIAISON2
invitation. The parser accepts one spelling of each anchors object (canonical key strings,
witness keys sorted), so one set of anchors has one digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import _primitives as p
from . import note
from .encoding import b64url_decode, b64url_encode, jcs
from .errors import CryptoError, MalformedAnchors, MalformedError

__all__ = ["ANCHORS_DOMAIN", "MAX_WITNESS_AGE", "Anchors", "anchors_digest", "parse_anchors"]

ANCHORS_DOMAIN: Final = b"liaison/v1/anchors"
#: The longest `max_age` accepted (ten years, as the client's witness policy).
MAX_WITNESS_AGE: Final = 10 * 365 * 86400
_MAX_SEQ = 2**53 - 1
_MAX_WITNESSES = 64


def anchors_digest(anchors: Mapping[str, Any]) -> bytes:
    """SHA-256("liaison/v1/anchors" || 0x00 || JCS(anchors)), over the object as given."""
    return p.sha256(ANCHORS_DOMAIN, b"\x00", jcs(dict(anchors)))


def _err(msg: str) -> MalformedAnchors:
    return MalformedAnchors(f"anchors: {msg}")


@dataclass(frozen=True)
class Anchors:
    """A parsed anchors object: the log key, the newest roots statement the admin's client
    verified (seq and digest), the lowest policy version to accept, the witness policy."""

    log_key: str
    roots_seq: int
    roots_digest: bytes
    policy_version: int
    witness_k: int = 0
    witness_keys: tuple[str, ...] = ()
    max_age: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "witness_keys", tuple(sorted(self.witness_keys)))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "log_key": self.log_key,
            "roots": {"seq": self.roots_seq, "digest": b64url_encode(self.roots_digest)},
            "policy": {"version": self.policy_version},
            "witnesses": {"k": self.witness_k, "keys": list(self.witness_keys), "max_age": self.max_age},
        }

    @property
    def digest(self) -> bytes:
        return anchors_digest(self.to_json())

    @property
    def log_verifier(self) -> note.Verifier:
        return note.parse_verifier_key(self.log_key)

    @property
    def witness_verifiers(self) -> tuple[note.Verifier, ...]:
        return tuple(note.parse_verifier_key(k) for k in self.witness_keys)


def _members(obj: Any, where: str, members: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != members:
        raise _err(f"{where} must have exactly {', '.join(sorted(members))}")
    return obj


def _int(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _err(f"{where} must be an integer from {low} to {high}")
    return value


def _verifier(text: Any, where: str, sig_type: int) -> note.Verifier:
    try:
        verifier = note.parse_verifier_key(text)
    except CryptoError as e:  # NoteSyntaxError, or UnsupportedSuite for an unknown type
        raise _err(f"{where} is not a verifier key: {e}") from None
    if verifier.key_string != text:
        raise _err(f"{where} is not in its canonical spelling")
    if verifier.sig_type != sig_type:
        raise _err(f"{where} is not a key of the right type (0x{sig_type:02x})")
    return verifier


def parse_anchors(obj: Any) -> Anchors:
    """Parse an anchors object strictly (MalformedAnchors): exact members at every level; `v`
    1; the log key a canonical Ed25519 note verifier key; `roots.seq` >= 1 and `roots.digest`
    32 bytes; `policy.version` >= 1; witnesses: keys canonical cosignature/v1 verifier keys,
    sorted, of distinct names and public keys, with 1 <= k <= len(keys) and `max_age` null or
    1 s to 10 years, or no keys, k 0 and `max_age` null (no witness policy)."""
    obj = _members(obj, "anchors", {"v", "log_key", "roots", "policy", "witnesses"})
    if type(obj["v"]) is not int or obj["v"] != 1:
        raise _err("v must be 1")
    _verifier(obj["log_key"], "log_key", note.SIG_ED25519)
    roots = _members(obj["roots"], "roots", {"seq", "digest"})
    seq = _int(roots["seq"], "roots.seq", 1, _MAX_SEQ)
    digest_text = roots["digest"]
    try:
        if not isinstance(digest_text, str) or len(digest_text) != 43:
            raise MalformedError("length")
        digest = b64url_decode(digest_text, field="roots.digest")
    except MalformedError:
        raise _err("roots.digest must be base64url of 32 bytes") from None
    version = _int(_members(obj["policy"], "policy", {"version"})["version"], "policy.version", 1, _MAX_SEQ)
    witnesses = _members(obj["witnesses"], "witnesses", {"k", "keys", "max_age"})
    keys, max_age = witnesses["keys"], witnesses["max_age"]
    if not isinstance(keys, list) or len(keys) > _MAX_WITNESSES:
        raise _err(f"witnesses.keys must be a list of at most {_MAX_WITNESSES} verifier keys")
    verifiers = [_verifier(k, "a witness key", note.SIG_COSIGNATURE_V1) for k in keys]
    if keys != sorted(set(keys)):
        raise _err("witnesses.keys must be sorted and unique")
    k = _int(witnesses["k"], "witnesses.k", 1 if keys else 0, len(keys))
    if keys:
        try:  # distinct names and public keys: one signature must never count twice
            note.WitnessPolicy(tuple(verifiers), k)
        except CryptoError as e:
            raise _err(f"witnesses: {e}") from None
    if max_age is not None:
        if not keys:
            raise _err("witnesses.max_age needs witnesses (it bounds the age of cosignatures)")
        _int(max_age, "witnesses.max_age", 1, MAX_WITNESS_AGE)
    return Anchors(obj["log_key"], seq, digest, version, k, tuple(keys), max_age)
