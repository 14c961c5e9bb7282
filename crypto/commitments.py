"""Commitments and disclosures (protocol 9.1): a named value hidden until its opening is shown.

    K_c = SHA-256("liaison/v1/commitment-key")
    commit(name, value, salt) = HMAC-SHA-256(K_c, salt || u16be(len N) || N || u32be(len J) || J)
        N = UTF-8(name), J = JCS(value), salt = 16 bytes from the CSPRNG

The IETF KEYTRANS shape (an HMAC under a fixed, public key, the opening in front), with the
field name bound in so that an opening for one field can never be shown as another's. The
lengths are explicit, so no (name, value) pair shares its bytes with another. A disclosure is
`{"salt": base64url(salt), "value": value}`; disclosures travel as an object keyed by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _primitives as p
from .encoding import b64url_decode, b64url_encode, jcs
from .errors import CommitmentMismatch, MalformedError, MalformedStatement

__all__ = [
    "COMMITMENT_KEY",
    "COMMITMENT_LEN",
    "MAX_NAME_BYTES",
    "SALT_LEN",
    "Disclosure",
    "commit",
    "commit_all",
    "commit_fields",
    "new_salt",
    "open_facts",
    "parse_disclosures",
]

COMMITMENT_KEY = p.sha256(b"liaison/v1/commitment-key")
_COMMITMENT_MAC = p.HmacSha256(COMMITMENT_KEY)
SALT_LEN = 16
COMMITMENT_LEN = 32
#: A name's UTF-8 must fit its u16be length; the protocol's names are far shorter.
MAX_NAME_BYTES = 0xFFFF
_MAX_VALUE_BYTES = 0xFFFFFFFF
#: More disclosures than any record has (a principal: 2 + levels + compartments + roles).
_MAX_DISCLOSURES = 4096


def _name_bytes(name: str) -> bytes:
    if not isinstance(name, str) or not name:
        raise MalformedStatement("a commitment's name must be a non-empty string")
    try:
        data = name.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedStatement("a commitment's name must be valid Unicode (no lone surrogate)") from None
    if len(data) > MAX_NAME_BYTES:
        raise MalformedStatement(f"a commitment's name must be at most {MAX_NAME_BYTES} bytes of UTF-8")
    return data


def commit(name: str, value: Any, salt: bytes) -> bytes:
    """The 32-byte commitment to `value` under `name` with `salt` (16 bytes)."""
    return commit_fields({name: value}, {name: salt})[name]


def commit_fields(values: Mapping[str, Any], salts: Mapping[str, bytes]) -> dict[str, bytes]:
    """`commit(name, value, salts[name])` for every field of `values` (an entry's many fields
    in one call: the hot path of the audit log)."""
    out: dict[str, bytes] = {}
    mac = _COMMITMENT_MAC.mac
    for name, value in values.items():
        salt = salts.get(name)
        if not isinstance(salt, bytes) or len(salt) != SALT_LEN:
            raise MalformedStatement(f"a commitment's salt must be {SALT_LEN} bytes")
        n = _name_field(name)
        try:
            j = jcs(value)
        except MalformedError as e:
            raise MalformedStatement(f"the value of {name!r} is not JSON: {e}") from None
        if len(j) > _MAX_VALUE_BYTES:
            raise MalformedStatement(f"the value of {name!r} is too long to commit to")
        out[name] = mac(salt + n + len(j).to_bytes(4, "big") + j)
    return out


@functools.lru_cache(maxsize=1024)  # field names repeat: an entry type's, a statement's
def _name_field(name: str) -> bytes:
    """u16be(len N) || N, N the name's UTF-8 (checked by `_name_bytes`)."""
    n = _name_bytes(name)
    return len(n).to_bytes(2, "big") + n


def new_salt() -> bytes:
    """16 fresh bytes from the CSPRNG: every statement's every commitment has its own."""
    return p.random_bytes(SALT_LEN)


@dataclass(frozen=True)
class Disclosure:
    """The opening of one commitment: its salt and its value (any JSON value)."""

    salt: bytes
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"salt": b64url_encode(self.salt), "value": self.value}

    @classmethod
    def from_json(cls, obj: Any) -> Disclosure:
        """Strict: exactly `salt` and `value`, the salt canonical base64url of 16 bytes, the
        value JSON that JCS can write."""
        if not isinstance(obj, dict) or set(obj) != {"salt", "value"}:
            raise MalformedStatement("a disclosure must have exactly salt and value")
        if not isinstance(obj["salt"], str) or len(obj["salt"]) != 22:
            raise MalformedStatement(f"a disclosure's salt must be base64url of {SALT_LEN} bytes")
        try:
            salt = b64url_decode(obj["salt"], field="disclosure salt")
            jcs(obj["value"])
        except MalformedError as e:
            raise MalformedStatement(f"disclosure: {e}") from None
        return cls(salt, obj["value"])


def commit_all(
    values: Mapping[str, Any], salt: Callable[[], bytes] = new_salt
) -> tuple[dict[str, bytes], dict[str, Disclosure]]:
    """Commit to every value, each with its own salt (drawn in sorted name order, so a
    deterministic `salt` gives deterministic vectors); returns commitments and disclosures."""
    commitments: dict[str, bytes] = {}
    disclosures: dict[str, Disclosure] = {}
    for name in sorted(values):
        s = salt()
        commitments[name] = commit(name, values[name], s)
        disclosures[name] = Disclosure(s, values[name])
    return commitments, disclosures


def parse_disclosures(obj: Any) -> dict[str, Disclosure]:
    """`{"name": {"salt", "value"}, ...}`, strictly (MalformedStatement)."""
    if not isinstance(obj, dict):
        raise MalformedStatement("disclosures must be an object keyed by field name")
    if len(obj) > _MAX_DISCLOSURES:
        raise MalformedStatement(f"more than {_MAX_DISCLOSURES} disclosures")
    out: dict[str, Disclosure] = {}
    for name, value in obj.items():
        _name_bytes(name)
        out[name] = Disclosure.from_json(value)
    return out


def open_facts(commitments: Mapping[str, bytes], disclosures: Mapping[str, Disclosure]) -> dict[str, Any]:
    """The values that `disclosures` open, each checked against the commitment of its name.

    A disclosure that does not open its commitment, or one for a name with no commitment, is
    refused (CommitmentMismatch naming the field), never skipped: a server that adds a
    disclosure it cannot back must be caught, not ignored. Commitments left unopened stay
    hidden and are not in the result. Compared in constant time (a peer chose the bytes).
    """
    opened: dict[str, Any] = {}
    for name in sorted(disclosures):
        disclosure = disclosures[name]
        expected = commitments.get(name)
        if expected is None:
            raise CommitmentMismatch(name, f"a disclosure for {name!r}, which has no commitment")
        if not p.bytes_eq(commit(name, disclosure.value, disclosure.salt), expected):
            raise CommitmentMismatch(name, f"the disclosure of {name!r} does not open its commitment")
        opened[name] = disclosure.value
    return opened
