"""Audit entries v2 (protocol 10): commit, then open. Properties of the pure module; its
vectors are in tests/vectors/audit-entries-v2 (tests/test_entry_v2_vectors.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.commitments import Disclosure, commit
from liaison.crypto.encoding import b64url_encode, jcs
from liaison.crypto.entry_v2 import (
    build_entry_v2,
    entry_salt,
    hour_of,
    open_entry,
    parse_entry_v2,
    sealed_fields,
)
from liaison.crypto.errors import CommitmentMismatch, MalformedError

SEED = bytes(range(32))
WHEN = datetime(2026, 12, 1, 5, 42, 17, 123000, tzinfo=UTC)
FIELDS = {
    "actor": "d_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    "time": "2026-12-01T05:42:17.123Z",
    "label": {"classification": "TOP SECRET", "compartments": ["HUMINT"], "rel_to": ["USA"]},
    "channel": "nightjar",
    "recipients": ["d_bbbbbbbbbbbbbbbbbbbbbbbbbb"],
    "size": 1234,
}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def test_an_entry_shows_only_its_type_hour_and_allowed_clear_fields() -> None:
    data, disclosures = build_entry_v2("message.accepted", WHEN, {"envelope_digest": "ab" * 32}, FIELDS, SEED)
    obj = json.loads(data)
    assert set(obj) == {"v", "type", "hour", "clear", "c"} and obj["v"] == 2
    assert obj["hour"] == "2026-12-01T05:00:00Z" and obj["clear"] == {"envelope_digest": "ab" * 32}
    assert set(obj["c"]) == set(FIELDS)
    for secret in ("TOP SECRET", "HUMINT", "nightjar", "d_aaaa", "d_bbbb", "05:42", "1234"):
        assert secret not in data.decode()
    entry = parse_entry_v2(data)
    assert open_entry(entry, disclosures) == FIELDS
    assert entry.to_bytes() == data


def test_an_opening_opens_one_field_and_only_its_own() -> None:
    data, disclosures = build_entry_v2("message.accepted", WHEN, {}, FIELDS, SEED)
    entry = parse_entry_v2(data)
    only = {"channel": disclosures["channel"]}
    assert open_entry(entry, only) == {"channel": "nightjar"}
    assert sealed_fields(entry, only) == sorted(set(FIELDS) - {"channel"})
    # Another field's opening shown under this name, or another value: refused.
    with pytest.raises(CommitmentMismatch):
        open_entry(entry, {"channel": disclosures["actor"]})
    with pytest.raises(CommitmentMismatch):
        open_entry(entry, {"channel": Disclosure(disclosures["channel"].salt, "other")})
    with pytest.raises(CommitmentMismatch):
        open_entry(entry, {"nope": disclosures["channel"]})


def test_salts_are_per_field_and_per_seed() -> None:
    a, b = entry_salt(SEED, "channel"), entry_salt(SEED, "label")
    assert len(a) == 16 and a != b and entry_salt(bytes(32), "channel") != a
    with pytest.raises(MalformedError):
        entry_salt(b"short", "channel")
    with pytest.raises(MalformedError):
        entry_salt(SEED, "")


def test_a_field_cannot_be_published_by_mistake() -> None:
    with pytest.raises(MalformedError, match="may not show label"):
        build_entry_v2("message.accepted", WHEN, {"label": "x"}, {}, SEED)
    with pytest.raises(MalformedError, match="both clear and committed"):
        build_entry_v2("map.head", WHEN, {"version": 1}, {"version": 1}, SEED)
    with pytest.raises(MalformedError, match="timezone"):
        hour_of(datetime(2026, 1, 1))


def _tampered(data: bytes, edit: object) -> bytes:
    obj = json.loads(data)
    assert callable(edit)
    edit(obj)
    return jcs(obj)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda o: o.update(v=1), "exactly v"),
        (lambda o: o.update(extra=1), "exactly v"),
        (lambda o: o.update(hour="2026-12-01T05:42:00Z"), "hour"),
        (lambda o: o.update(hour=5), "hour"),
        (lambda o: o.update(type=""), "type"),
        (lambda o: o["clear"].update(label="SECRET"), "in the clear"),
        (lambda o: o["c"].update(channel="AAAA"), "32 bytes"),
        (lambda o: o["c"].update(channel=7), "32 bytes"),
        (lambda o: o.update(c=[]), "objects"),
        (
            lambda o: (
                o["clear"].update(envelope_digest="x") or o["c"].update(envelope_digest=o["c"]["actor"])
            ),
            "both",
        ),
    ],
)
def test_malformed_entries_are_refused(edit: object, why: str) -> None:
    data, _ = build_entry_v2("message.accepted", WHEN, {}, FIELDS, SEED)
    with pytest.raises(MalformedError, match=why):
        parse_entry_v2(_tampered(data, edit))


def test_only_canonical_bytes_parse() -> None:
    data, _ = build_entry_v2("message.accepted", WHEN, {}, FIELDS, SEED)
    with pytest.raises(MalformedError, match="canonical"):
        parse_entry_v2(json.dumps(json.loads(data), indent=1).encode())
    with pytest.raises(MalformedError, match="not JSON"):
        parse_entry_v2(b"\xff")


@given(
    st.dictionaries(st.text(min_size=1, max_size=12), JSON, max_size=6), st.binary(min_size=32, max_size=32)
)
def test_any_fields_round_trip_and_open(fields: dict[str, object], seed: bytes) -> None:
    fields = {k: v for k, v in fields.items() if k not in ("envelope_digest",)}
    data, disclosures = build_entry_v2("message.accepted", WHEN, {}, fields, seed)
    entry = parse_entry_v2(data)
    assert open_entry(entry, disclosures) == fields
    for name, d in disclosures.items():
        assert entry.commitments[name] == commit(name, d.value, d.salt)
        assert b64url_encode(d.salt) == b64url_encode(entry_salt(seed, name))
