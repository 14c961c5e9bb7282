"""`tlog.log.build_entry` makes exactly what `tlog.entries.build` makes (its fast path only
moves the checks that depend on an entry's shape out of the per-entry work): the same bytes,
the same opening (values in the same order, the same salts) for the same seed, and the same
errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto.entry_v2 import CLEAR_FIELDS, parse_entry_v2
from liaison.service.tlog import entries
from liaison.service.tlog import log as tlog

_NOW = datetime(2026, 12, 1, 17, 4, 5, 678901, tzinfo=UTC)

_names = st.one_of(
    st.sampled_from(sorted({n for fields in CLEAR_FIELDS.values() for n in fields} | {"seq", "i", "time"})),
    st.text(min_size=1, max_size=12),
)
_json: Any = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**60), max_value=2**60),
        # Within JSON's exact integers: a float of 2**53 or more is written as an integer
        # that the entry parser then refuses (a known edge of entries.build itself, slow path
        # or fast: the service logs no such float; see the issue 17 closing note).
        st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**52), max_value=2.0**52),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_types = st.one_of(
    st.sampled_from([*sorted(CLEAR_FIELDS), "bench.filler", "message.rejected"]), st.text(max_size=70)
)


# The same seed for both makes the same entry; `monkeypatch` is set to the same value on every
# example, so sharing it between examples is harmless.
def _both(
    monkeypatch: pytest.MonkeyPatch, type_: str, actor: str, time: datetime, fields: dict[str, Any]
) -> None:
    seed = bytes(range(32))
    monkeypatch.setattr(entries._SEEDS, "take", lambda: seed)
    try:
        want = entries.build(type_, actor, time, fields)
    except Exception as e:  # the fast path must refuse exactly alike
        with pytest.raises(type(e)) as got:
            tlog.build_entry(type_, actor, time, fields)
        assert str(got.value) == str(e)
        return
    entry = tlog.build_entry(type_, actor, time, fields, "subj")
    assert entry.data == want[0]
    assert entry.opening == want[1]
    assert isinstance(entry.opening, entries.Opening)
    assert list(entry.opening.values.items()) == list(want[1].values.items())
    assert entry.opening.salts == want[1].salts
    assert entry.opening.fields_json() == want[1].fields_json()
    assert (entry.type, entry.actor, entry.subject, entry.time) == (type_, actor, "subj", time)
    parse_entry_v2(entry.data)  # and it is a valid entry v2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    type_=_types,
    actor=st.text(max_size=20),
    fields=st.dictionaries(_names, _json, max_size=5),
    minutes=st.integers(min_value=0, max_value=10**6),
)
def test_fast_build_is_entries_build(
    monkeypatch: pytest.MonkeyPatch, type_: str, actor: str, fields: dict[str, Any], minutes: int
) -> None:
    _both(monkeypatch, type_, actor, _NOW + timedelta(minutes=minutes, microseconds=minutes), fields)


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        ("bench.filler", {"seq": 1}),
        ("map.head", {"version": 3, "root": "abc", "time": "2026-12-01T00:00:00.000Z"}),
        ("directory.statement", {"record": "r", "seq": 2, "digest": "d", "statement": {"a": [1, 2]}}),
        ("message.accepted", {"envelope_digest": "x", "to": ["a", "b"], "label": {"level": "SECRET"}}),
        ("audit.shredded", {"indexes": [1, 2, 3]}),
        ("t\u00e9st", {"\u00e9": '\u2028"\\\n', "\U0001f600": 1.5, "a": None, "B": True}),
        ("x" * 64, {}),
        ("x" * 65, {}),  # refused: a type of more than 64 characters
        ("", {}),
        ("bench", {"actor": "someone"}),  # refused: reserved names
        ("bench", {"v": 1}),
        ("bench", {"clear": 1}),
        ("bench", {"big": "x" * 70_000}),  # committed: any size (only the commitment is in the entry)
        ("map.head", {"root": "x" * 70_000}),  # refused: the entry would exceed 65,535 bytes
        ("bench", {"s": "\ud800"}),  # refused: a lone surrogate
        ("bench", {"n": 2**60}),  # handed to rfc8785, which refuses it
        ("bench", {"f": float("nan")}),
    ],
)
def test_fast_build_cases(monkeypatch: pytest.MonkeyPatch, type_: str, fields: dict[str, Any]) -> None:
    _both(monkeypatch, type_, "alice", _NOW, fields)
    _both(monkeypatch, type_, '\u00e9ve "q"', _NOW.astimezone(UTC), fields)


def test_naive_time_refused_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    _both(monkeypatch, "bench", "alice", _NOW.replace(tzinfo=None), {"seq": 1})


def test_fresh_seed_per_entry() -> None:
    a = tlog.build_entry("bench", "alice", _NOW, {"seq": 1})
    b = tlog.build_entry("bench", "alice", _NOW, {"seq": 1})
    assert a.opening is not None and b.opening is not None
    assert a.opening.seed != b.opening.seed
    assert a.data != b.data
