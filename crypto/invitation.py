"""Enrolment invitations: a one-time code and the digest of the log key to pin, in one string.

    LIAISON1-FZNR2-U4DC5-FHO6N-ROPP7-<52 base32 characters: SHA-256 of the log key>

An admin's own client builds the invitation from the log key *it* has pinned (never from what
the server says), and a new device pins the server's log key only if its digest is the one
the invitation carries. The digest is the whole SHA-256 (256 bits), not a truncation: the one
who could profit from a second key with the same digest is the server's operator, who also
made the real key, so collisions count as well as second preimages, and 128-bit collision
resistance needs all 256 bits. docs/protocol.md, section 3, has the exact bytes and vectors.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from . import _primitives as p
from . import note
from .errors import MalformedError

__all__ = [
    "LOG_KEY_DOMAIN",
    "PREFIX",
    "Invitation",
    "log_key_digest",
    "looks_like_invitation",
    "make_invitation",
    "parse_invitation",
]

PREFIX = "LIAISON1"
LOG_KEY_DOMAIN = b"liaison/v1/log-key"
_DIGEST_LEN = 32
_DIGEST_CHARS = 52  # ceil(256 / 5): the last character carries 1 bit and 4 zero bits
_CODE = r"[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}"
_CODE_RE = re.compile(_CODE)
_INVITATION_RE = re.compile(rf"{PREFIX}-({_CODE})-([A-Z2-7]{{{_DIGEST_CHARS}}})")


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
    """A parsed invitation: the one-time code (sent to the server) and the log key digest
    (kept by the device)."""

    code: str
    log_key_digest: bytes

    def __str__(self) -> str:
        return f"{PREFIX}-{self.code}-{_b32(self.log_key_digest)}"

    def names(self, verifier_key: str) -> bool:
        """Whether `verifier_key` is the key this invitation names (constant-time compare);
        False also for a string that is not a verifier key at all."""
        try:
            digest = log_key_digest(verifier_key)
        except MalformedError:
            return False
        return hmac.compare_digest(digest, self.log_key_digest)


def make_invitation(code: str, verifier_key: str) -> Invitation:
    """The invitation for `code` (`XXXXX-XXXXX-XXXXX-XXXXX`) naming `verifier_key`."""
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise MalformedError("an enrolment code is four groups of five base32 characters")
    return Invitation(code, log_key_digest(verifier_key))


def looks_like_invitation(text: str) -> bool:
    """Whether `text` is meant as an invitation (its prefix), as opposed to a plain code."""
    return text.strip().upper().startswith(PREFIX + "-")


def parse_invitation(text: str) -> Invitation:
    """Parse an invitation: ASCII, surrounding white space ignored, either case, otherwise exact;
    the digest's unused trailing bits must be zero (one digest, one spelling)."""
    # ASCII only before upper(): "\u017f" (long s).upper() is "S"; one invitation, one spelling per case.
    ascii_text = isinstance(text, str) and text.isascii()
    m = _INVITATION_RE.fullmatch(text.strip().upper()) if ascii_text else None
    if m is None:
        raise MalformedError(
            f"an invitation is {PREFIX}-XXXXX-XXXXX-XXXXX-XXXXX- and {_DIGEST_CHARS} base32 characters"
        )
    code, digest_text = m.groups()
    digest = base64.b32decode(digest_text + "=" * (-len(digest_text) % 8))
    if len(digest) != _DIGEST_LEN or _b32(digest) != digest_text:
        raise MalformedError("the invitation's log key digest is not canonical base32")
    return Invitation(code, digest)
