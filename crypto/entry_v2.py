"""Audit log entries v2 (protocol 10): commit, then open.

An entry v2 is the JCS of::

    {"v": 2, "type": T, "hour": "YYYY-MM-DDTHH:00:00Z", "clear": {...}, "c": {name: commitment}}

`clear` holds only what the protocol lets anyone see for that type (`CLEAR_FIELDS`: envelope
digests, the map head, the directory's signed statements, ...); every other field, the actor
and the exact time included, is committed with the construction of protocol 9.1
(`commitments.commit`). A server-written entry derives each field's salt from one random
32-byte seed per entry, which the server keeps beside (never in) the append-only tables::

    salt(seed, name) = HMAC-SHA-256(seed, "liaison/v1/entry-salt" || 0x00 || UTF-8(name))[:16]

so that destroying the seed (shredding) makes every commitment of the entry unopenable at
once, while an opening handed to an auditor is one field's `{"salt", "value"}` (never the
seed: it would open every field). Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import _primitives as p
from .commitments import COMMITMENT_LEN, Disclosure, commit_fields, open_facts
from .encoding import b64url_decode, b64url_encode, jcs
from .errors import MalformedError

__all__ = [
    "CLEAR_FIELDS",
    "ENTRY_SALT_DOMAIN",
    "SEED_LEN",
    "SHREDDABLE",
    "EntryV2",
    "build_entry_v2",
    "entry_salt",
    "entry_salts",
    "entry_v2_bytes",
    "hour_of",
    "open_entry",
    "parse_entry_v2",
    "sealed_fields",
]

ENTRY_SALT_DOMAIN = b"liaison/v1/entry-salt"
SEED_LEN = 32
#: The largest entry the log stores (its entry bundles carry a u16 length).
_MAX_ENTRY_BYTES = 65535
_RESERVED = frozenset({"v", "type", "hour", "clear", "c"})

#: The entry types whose openings a message's expiry may destroy (protocol 10.7: what the
#: message was, who sent it to whom, who fetched and acknowledged it); no other entry is ever
#: shredded, the directory's statements least of all.
SHREDDABLE = frozenset(
    {"message.accepted", "message.delivered", "message.acked", "message.attachment_fetched"}
)

#: What each type shows in the clear (protocol 10.2); anything else is committed. A type not
#: listed shows nothing but its type and hour.
CLEAR_FIELDS: Mapping[str, frozenset[str]] = {
    "map.head": frozenset({"version", "root", "time"}),
    "directory.statement": frozenset({"actor", "record", "seq", "digest", "statement"}),
    "message.accepted": frozenset({"envelope_digest"}),
    "audit.shredded": frozenset({"indexes"}),
}


@functools.lru_cache(maxsize=8)  # a batch's entries share one time
def hour_of(t: datetime) -> str:
    """The entry's clear time: its UTC hour, `YYYY-MM-DDTHH:00:00Z`."""
    if t.tzinfo is None:
        raise MalformedError("an entry's time must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def entry_salt(seed: bytes, name: str) -> bytes:
    """The 16-byte salt of field `name` of the entry whose seed is `seed` (32 bytes)."""
    return entry_salts(seed, (name,))[name]


def entry_salts(seed: bytes, names: Iterable[str]) -> dict[str, bytes]:
    """`entry_salt(seed, name)` for every name, with the seed's HMAC key set up once."""
    if not isinstance(seed, bytes) or len(seed) != SEED_LEN:
        raise MalformedError(f"an entry's seed must be {SEED_LEN} bytes")
    mac = p.HmacSha256(seed).mac
    return {name: mac(_salt_input(name))[:16] for name in names}


@functools.lru_cache(maxsize=1024)  # the service's field names are a few dozen
def _salt_input(name: str) -> bytes:
    if not isinstance(name, str) or not name:
        raise MalformedError("a field's name must be a non-empty string")
    return ENTRY_SALT_DOMAIN + b"\x00" + name.encode("utf-8")


@dataclass(frozen=True)
class EntryV2:
    """A parsed entry v2: its type, hour, clear fields and commitments (name -> 32 bytes)."""

    type: str
    hour: str
    clear: Mapping[str, Any]
    commitments: Mapping[str, bytes]

    def view(self, opened: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What a reader sees: `{"v": 2, "type", "hour", **clear}` and the `opened` values."""
        return {"v": 2, "type": self.type, "hour": self.hour, **self.clear, **(opened or {})}

    def to_bytes(self) -> bytes:
        return jcs(
            {
                "v": 2,
                "type": self.type,
                "hour": self.hour,
                "clear": dict(self.clear),
                "c": {k: b64url_encode(v) for k, v in self.commitments.items()},
            }
        )


def build_entry_v2(
    type_: str, time: datetime, clear: Mapping[str, Any], committed: Mapping[str, Any], seed: bytes
) -> tuple[bytes, dict[str, Disclosure]]:
    """The exact bytes of an entry v2, and the disclosure of every committed field.

    `clear` may name only fields `CLEAR_FIELDS` allows for the type (MalformedError
    otherwise: a caller cannot publish a field by mistake); `committed` holds every other
    field (the actor and the exact time included)."""
    data, salts = entry_v2_bytes(type_, time, clear, committed, seed)
    return data, {name: Disclosure(salts[name], value) for name, value in committed.items()}


def entry_v2_bytes(
    type_: str, time: datetime, clear: Mapping[str, Any], committed: Mapping[str, Any], seed: bytes
) -> tuple[bytes, dict[str, bytes]]:
    """`build_entry_v2` for the service's hot path: the bytes and each field's salt."""
    if not isinstance(type_, str) or not type_ or len(type_) > 64:
        raise MalformedError("an entry's type must be a string of 1 to 64 characters")
    allowed = CLEAR_FIELDS.get(type_, frozenset())
    if not clear.keys() <= allowed:
        extra = sorted(set(clear) - allowed)
        raise MalformedError(f"{type_} may not show {', '.join(extra)} in the clear")
    if clear.keys() & committed.keys():
        both = sorted(set(clear) & set(committed))
        raise MalformedError(f"{', '.join(both)} both clear and committed")
    salts = entry_salts(seed, committed)
    commitments = commit_fields(committed, salts)
    data = EntryV2(type_, hour_of(time), dict(clear), commitments).to_bytes()
    if len(data) > _MAX_ENTRY_BYTES:
        raise MalformedError(f"an entry may be at most {_MAX_ENTRY_BYTES} bytes")
    return data, salts


def parse_entry_v2(data: bytes) -> EntryV2:
    """An entry v2 from its exact bytes, strictly: canonical JCS, exactly its five members,
    an hour on the hour, 32-byte commitments, clear fields the type allows and none also
    committed (MalformedError naming what is wrong)."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedError("the entry is not JSON") from None
    if not isinstance(obj, dict) or set(obj) != _RESERVED or obj.get("v") != 2:
        raise MalformedError("an entry v2 has exactly v (2), type, hour, clear and c")
    if jcs(obj) != data:
        raise MalformedError("the entry is not in its canonical (JCS) form")
    type_, hour, clear, c = obj["type"], obj["hour"], obj["clear"], obj["c"]
    if not isinstance(type_, str) or not type_ or len(type_) > 64:
        raise MalformedError("the entry's type must be a string of 1 to 64 characters")
    if not isinstance(hour, str):
        raise MalformedError("the entry's hour must be a string")
    try:
        parsed = datetime.strptime(hour, "%Y-%m-%dT%H:00:00Z").replace(tzinfo=UTC)
    except ValueError:
        raise MalformedError(f"the entry's hour {hour[:40]!r} is not YYYY-MM-DDTHH:00:00Z") from None
    if hour_of(parsed) != hour:  # pragma: no cover - strptime accepts only that shape
        raise MalformedError("the entry's hour is not canonical")
    if not isinstance(clear, dict) or not isinstance(c, dict):
        raise MalformedError("the entry's clear and c must be objects")
    extra = sorted(set(clear) - CLEAR_FIELDS.get(type_, frozenset()))
    if extra:
        raise MalformedError(f"{type_} shows {', '.join(extra)} in the clear, which it must commit")
    both = sorted(set(clear) & set(c))
    if both:
        raise MalformedError(f"{', '.join(both)} both clear and committed")
    commitments: dict[str, bytes] = {}
    for name, value in c.items():
        raw = b64url_decode(value, field=f"commitment {name[:40]}") if isinstance(value, str) else b""
        if len(raw) != COMMITMENT_LEN:
            raise MalformedError(f"the commitment of {name[:40]!r} must be {COMMITMENT_LEN} bytes")
        commitments[name] = raw
    return EntryV2(type_, hour, clear, commitments)


def open_entry(entry: EntryV2, disclosures: Mapping[str, Disclosure]) -> dict[str, Any]:
    """The committed fields `disclosures` open, each recomputed against its commitment
    (CommitmentMismatch naming the field otherwise: never skipped). Unopened fields stay
    sealed and are absent from the result."""
    return open_facts(entry.commitments, disclosures)


def sealed_fields(entry: EntryV2, opened: Mapping[str, Any]) -> list[str]:
    """The committed fields of `entry` that `opened` does not open."""
    return sorted(set(entry.commitments) - set(opened))
