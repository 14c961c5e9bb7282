"""`encoding.loads_strict`: I-JSON (RFC 7493) parsing. Where it accepts, it returns what
`json.loads` returns; it refuses repeated member names, lone surrogates, NaN and Infinity,
numbers beyond a double, text that is not UTF-8, nesting past the limit and, when asked,
U+0000 — each with its own error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.encoding import MAX_JSON_DEPTH, jcs, loads_strict, parse_time
from liaison.crypto.errors import JSONRefused, MalformedError
from liaison.crypto.transparency import parse_entry

# JSON values without duplicate keys (dict keys are unique) and without lone surrogates.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


@given(json_values, st.booleans())
def test_accepts_what_json_writes_and_returns_what_json_reads(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert loads_strict(text.encode()) == json.loads(text)
    assert loads_strict(text) == json.loads(text)


@given(json_values)
def test_accepts_jcs(value: Any) -> None:
    try:
        canonical = jcs(value)
    except MalformedError:  # integers beyond 2**53 have no JCS form
        return
    assert loads_strict(canonical) == json.loads(canonical)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 1}',
        b'{"a": 1, "b": {"c": 2, "c": 3}}',
        b'[{"x": [], "x": []}]',
        b'{"\\u0061": 1, "a": 2}',  # equal once unescaped
        b'{"envelope": {}, "to": null, "envelope": {}}',
    ],
)
def test_repeated_member_names_are_refused(raw: bytes) -> None:
    with pytest.raises(JSONRefused) as e:
        loads_strict(raw)
    assert e.value.reason == "duplicate-key"


def test_depth() -> None:
    assert loads_strict(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    for raw in (
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b'{"a":' * 40 + b"1" + b"}" * 40,
        b"[" * 100_000 + b"]" * 100_000,  # past the interpreter's own recursion limit
    ):
        with pytest.raises(JSONRefused) as e:
            loads_strict(raw)
        assert e.value.reason == "json-too-deep"
    with pytest.raises(JSONRefused):
        loads_strict(b'{"rel": [["USA"]]}', max_depth=2)
    # Brackets inside strings are not nesting.
    assert loads_strict(b'["' + b"[" * 100 + b'"]') == ["[" * 100]


@pytest.mark.parametrize("raw", [b'"\\ud800"', b'["\\udfff"]', b'{"\\ud83d": 1}', b'["a\\ude00b"]'])
def test_lone_surrogates_are_refused(raw: bytes) -> None:
    with pytest.raises(JSONRefused) as e:
        loads_strict(raw)
    assert e.value.reason == "invalid-character"


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert loads_strict(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert loads_strict(b'["\\\\ud800"]') == ["\\ud800"]  # a backslash, then text


def test_nul_only_when_refused() -> None:
    assert loads_strict(b'["a\\u0000"]') == ["a\x00"]
    for raw in (b'["a\\u0000"]', b'{"\\u0000": 1}', b'"\\u0000"'):
        with pytest.raises(JSONRefused) as e:
            loads_strict(raw, forbid_nul=True)
        assert e.value.reason == "invalid-character"
    assert loads_strict(b'["\\\\u0000"]', forbid_nul=True) == ["\\u0000"]


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity]",
        b"[-Infinity]",
        b"[1e400]",
        b"[" + b"9" * 5000 + b"]",
        b'{"a": ',
        b"",
        b"\xff",
        b'"\xed\xa0\x80"',  # a surrogate as raw (CESU-8) bytes: not UTF-8
        '"x"'.encode("utf-16"),
        b'{"a": 1} x',
    ],
)
def test_not_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedError) as e:
        loads_strict(raw)
    assert not isinstance(e.value, JSONRefused)


def test_log_entries_are_parsed_strictly() -> None:
    entry = b'{"actor":"system","time":"t","type":"x","type":"y","v":1}'
    with pytest.raises(MalformedError):
        parse_entry(entry)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_outside_years_1_to_9999_in_utc_are_refused(text: str) -> None:
    with pytest.raises(MalformedError, match="out of range"):
        parse_time(text)
    assert parse_time(text.replace("+01:00", "Z").replace("-01:00", "Z")).year in (1, 9999)
