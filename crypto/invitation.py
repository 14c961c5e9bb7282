"""Enrolment invitations: a one-time code and the digest of what to pin, in one string.

    LIAISON1-FZNR2-U4DC5-FHO6N-ROPP7-<52 base32 characters: SHA-256 of the log key>
    LIAISON2-FZNR2-U4DC5-FHO6N-ROPP7-<52 base32 characters: SHA-256 of the anchors (9.7)>

An admin's own client builds the invitation from the log key *it* has pinned (never from what
the server says), and a new device pins the server's log key only if its digest is the one
the invitation carries. The digest is the whole SHA-256 (256 bits), not a truncation: the one
who could profit from a second key with the same digest is the server's operator, who also
made the real key, so collisions count as well as second preimages, and 128-bit collision
resistance needs all 256 bits. docs/protocol.md, section 3, has the exact bytes and vectors.
Version 2 (section 9.7) names the digest of an anchors object instead, which names the log
key, the roots, the policy floor and the witness policy; the device fetches the object by its
digest and pins what it names.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from . import _primitives as p
from . import note
from .anchors import anchors_digest
from .errors import MalformedError

__all__ = [
    "CODE_RE",
    "LOG_KEY_DOMAIN",
    "PREFIX",
    "PREFIX_V2",
    "Invitation",
    "log_key_digest",
    "looks_like_invitation",
    "make_invitation",
    "make_invitation_v2",
    "new_code",
    "parse_invitation",
]

PREFIX = "LIAISON1"
PREFIX_V2 = "LIAISON2"
_PREFIXES = {1: PREFIX, 2: PREFIX_V2}
LOG_KEY_DOMAIN = b"liaison/v1/log-key"
_DIGEST_LEN = 32
_DIGEST_CHARS = 52  # ceil(256 / 5): the last character carries 1 bit and 4 zero bits
_CODE = r"[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}"
#: An enrolment code as the server issues it (upper case): match with `fullmatch`.
CODE_RE = re.compile(_CODE)
_CODE_RE = CODE_RE
_INVITATION_RE = re.compile(rf"LIAISON([12])-({_CODE})-([A-Z2-7]{{{_DIGEST_CHARS}}})")


def log_key_digest(verifier_key: str) -> bytes:
    """SHA-256(`"liaison/v1/log-key" || 0x00 || key string`) of a log verifier key, taken over
    its canonical spelling (`<name>+<hex id>+<base64>`), so the key's name is bound too."""
    try:
        canonical = note.parse_verifier_key(verifier_key).key_string
    except MalformedError as e:
        raise MalformedError(f"not a log verifier key: {e}") from None
    return p.sha256(LOG_KEY_DOMAIN + b"\x00" + canonical.encode("ascii"))


def _b32(digest: bytes) -> str:
    return base64.b32encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Invitation:
    """A parsed invitation: the one-time code and the digest the device keeps: of the log key
    (version 1), or of the anchors object (version 2)."""

    code: str
    digest: bytes
    version: int = 1

    def __post_init__(self) -> None:
        if self.version not in _PREFIXES:
            raise MalformedError(f"invitation version {self.version!r} is not 1 or 2")

    def __str__(self) -> str:
        return f"{_PREFIXES[self.version]}-{self.code}-{_b32(self.digest)}"

    @property
    def log_key_digest(self) -> bytes | None:
        """Version 1: the digest of the log key to pin; None for version 2."""
        return self.digest if self.version == 1 else None

    @property
    def anchors_digest(self) -> bytes | None:
        """Version 2: the digest of the anchors object to pin; None for version 1."""
        return self.digest if self.version == 2 else None

    def names(self, verifier_key: str) -> bool:
        """Version 1: whether `verifier_key` is the key this invitation names (constant-time
        compare); False also for a string that is not a verifier key at all. Always False for
        version 2, which names anchors (`names_anchors`), whose `log_key` names the key."""
        if self.version != 1:
            return False
        try:
            digest = log_key_digest(verifier_key)
        except MalformedError:
            return False
        return hmac.compare_digest(digest, self.digest)

    def names_anchors(self, anchors: Mapping[str, Any]) -> bool:
        """Version 2: whether `anchors` (the JSON object, as fetched) is the one this invitation
        names (constant-time compare); False for version 1 and for what JCS cannot write.
        Parse it (`anchors.parse_anchors`) before pinning anything it names."""
        if self.version != 2:
            return False
        try:
            digest = anchors_digest(anchors)
        except (MalformedError, TypeError):
            return False
        return hmac.compare_digest(digest, self.digest)


def new_code() -> str:
    """A one-time enrolment code: 104 random bits in base32, `XXXXX-XXXXX-XXXXX-XXXXX`. Made by
    the admin's client (protocol 9.8), and by the operator's `init` for the genesis root code."""
    text = base64.b32encode(p.random_bytes(13)).decode("ascii").rstrip("=")[:20]
    return "-".join(text[i : i + 5] for i in range(0, 20, 5))


def make_invitation(code: str, verifier_key: str) -> Invitation:
    """The invitation for `code` (`XXXXX-XXXXX-XXXXX-XXXXX`) naming `verifier_key`."""
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise MalformedError("an enrolment code is four groups of five base32 characters")
    return Invitation(code, log_key_digest(verifier_key))


def make_invitation_v2(code: str, anchors_digest: bytes) -> Invitation:
    """The version 2 invitation for `code` naming the anchors whose digest is `anchors_digest`
    (`anchors.anchors_digest`, 32 bytes)."""
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise MalformedError("an enrolment code is four groups of five base32 characters")
    if not isinstance(anchors_digest, bytes) or len(anchors_digest) != _DIGEST_LEN:
        raise MalformedError(f"an anchors digest is {_DIGEST_LEN} bytes")
    return Invitation(code, anchors_digest, 2)


def looks_like_invitation(text: str) -> bool:
    """Whether `text` is meant as an invitation (its prefix), as opposed to a plain code."""
    return text.strip().upper().startswith((PREFIX + "-", PREFIX_V2 + "-"))


def parse_invitation(text: str, *, versions: Collection[int] = (1, 2)) -> Invitation:
    """Parse an invitation of one of `versions`: ASCII, surrounding white space ignored, either
    case, otherwise exact; the digest's unused trailing bits must be zero (one digest, one
    spelling). Its `version` says what the digest names (the log key, or the anchors)."""
    # ASCII only before upper(): "\u017f" (long s).upper() is "S"; one invitation, one spelling per case.
    ascii_text = isinstance(text, str) and text.isascii()
    m = _INVITATION_RE.fullmatch(text.strip().upper()) if ascii_text else None
    if m is None:
        raise MalformedError(
            f"an invitation is {PREFIX}- or {PREFIX_V2}-, XXXXX-XXXXX-XXXXX-XXXXX- and "
            f"{_DIGEST_CHARS} base32 characters"
        )
    version, code, digest_text = m.groups()
    if int(version) not in versions:
        raise MalformedError(f"{_PREFIXES[int(version)]} invitations are not accepted here")
    digest = base64.b32decode(digest_text + "=" * (-len(digest_text) % 8))
    if len(digest) != _DIGEST_LEN or _b32(digest) != digest_text:
        raise MalformedError("the invitation's digest is not canonical base32")
    return Invitation(code, digest, int(version))
