"""The entries the service writes: v2 (protocol 10), each with its opening kept beside the log.

`build` splits an entry's fields into what its type shows in the clear (`CLEAR_FIELDS`) and
what it commits to (the actor and the exact time included), with a fresh 32-byte seed; the
`Opening` (seed and committed values) is stored in `audit_opening`, never in the log, and
gives out disclosures one field at a time (`disclose`).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from liaison.crypto import _primitives as p
from liaison.crypto.encoding import b64url_encode, format_time
from liaison.crypto.entry_v2 import CLEAR_FIELDS, SEED_LEN, entry_salts, entry_v2_bytes, parse_entry_v2
from liaison.crypto.errors import MalformedError

__all__ = ["MAX_ENTRY_BYTES", "Opening", "build", "view"]

#: A tile entry bundle stores each entry behind a uint16 length (c2sp.org/tlog-tiles).
MAX_ENTRY_BYTES = 65535


@dataclass(frozen=True)
class Opening:
    """An entry's seed and the values its commitments hide (and, when just built, the salts
    the seed gave, so a receipt's disclosures do not derive them twice)."""

    seed: bytes
    values: Mapping[str, Any]
    salts: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def disclose(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """`{name: {"salt", "value"}}` for `names` (all committed fields if None)."""
        wanted = sorted(self.values if names is None else [n for n in names if n in self.values])
        missing = [n for n in wanted if n not in self.salts]
        salts = {**self.salts, **entry_salts(self.seed, missing)} if missing else self.salts
        return {n: {"salt": b64url_encode(salts[n]), "value": self.values[n]} for n in wanted}

    def fields_json(self) -> str:
        """The committed values as stored in `audit_opening.fields`: plain JSON (the
        commitments fix each value's canonical form; the column only has to give it back)."""
        return json.dumps(self.values, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_row(cls, seed: bytes, fields: str) -> Opening:
        return cls(bytes(seed), json.loads(fields))


class _SeedPool:
    """Entry seeds cut from one CSPRNG read of 128 at a time (a read per entry cost a system
    call each: 8% of a large batch's time). Thread-safe; the pool holds at most 4 KiB. A
    forked child never reuses its parent's unused seeds (two processes would otherwise give
    two entries the same salts): the pool belongs to the process that filled it."""

    _BATCH = 128

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0
        self._pid = 0

    def take(self) -> bytes:
        with self._lock:
            if self._at >= len(self._buffer) or self._pid != os.getpid():
                self._buffer, self._at = p.random_bytes(SEED_LEN * self._BATCH), 0
                self._pid = os.getpid()
            seed = self._buffer[self._at : self._at + SEED_LEN]
            self._at += SEED_LEN
            return seed


_SEEDS = _SeedPool()


@functools.lru_cache(maxsize=8)  # a batch's entries share one time
def _time(t: datetime) -> str:
    return format_time(t)


def build(type_: str, actor: str, time: datetime, fields: Mapping[str, Any]) -> tuple[bytes, Opening]:
    """The exact bytes of an entry v2 and its opening (ValueError if it would not fit)."""
    # A field named `time` (a map head's) replaces the entry's own: both are the batch time.
    reserved = {"v", "type", "hour", "clear", "c", "actor"} & set(fields)
    if reserved:
        raise ValueError(f"audit fields may not override {sorted(reserved)}")
    allowed = CLEAR_FIELDS.get(type_, frozenset())
    everything = {"actor": actor, "time": _time(time), **fields}
    clear = {k: v for k, v in everything.items() if k in allowed}
    committed = {k: v for k, v in everything.items() if k not in allowed}
    seed = _SEEDS.take()
    try:
        data, salts = entry_v2_bytes(type_, time, clear, committed, seed)
    except MalformedError as e:
        raise ValueError(f"audit entry: {e}") from None
    if len(data) > MAX_ENTRY_BYTES:
        raise ValueError("audit entry larger than 65535 bytes")
    return data, Opening(seed, committed, salts)


def view(data: bytes, opening: Opening | None) -> dict[str, Any]:
    """An entry as the service reads it: a v1 entry's JSON, or a v2 entry's clear fields and
    every committed value its opening holds (`EntryV2.view`)."""
    obj: dict[str, Any] = json.loads(data)
    if obj.get("v") != 2:
        return obj
    return parse_entry_v2(data).view(opening.values if opening else None)
