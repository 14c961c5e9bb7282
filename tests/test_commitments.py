"""Commitments and disclosures (liaison.crypto.commitments, protocol 9.1): round trips, every
kind of wrong opening refused (never skipped), strict disclosure parsing."""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from liaison.crypto.commitments import (
    COMMITMENT_KEY,
    SALT_LEN,
    Disclosure,
    commit,
    commit_all,
    new_salt,
    open_facts,
    parse_disclosures,
)
from liaison.crypto.encoding import b64url_encode, loads_strict
from liaison.crypto.errors import CommitmentMismatch, MalformedError, MalformedStatement

names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
salts = st.binary(min_size=SALT_LEN, max_size=SALT_LEN)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(min_value=-1e15, max_value=1e15),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(str.isascii), inner, max_size=4)
    ),
    max_leaves=12,
)


def _independent(name: str, value: Any, salt: bytes) -> bytes:
    n, j = name.encode(), rfc8785.dumps(value)
    key = hashlib.sha256(b"liaison/v1/commitment-key").digest()
    msg = salt + len(n).to_bytes(2, "big") + n + len(j).to_bytes(4, "big") + j
    return hmac.new(key, msg, hashlib.sha256).digest()


def test_the_key_is_public_and_fixed() -> None:
    assert hashlib.sha256(b"liaison/v1/commitment-key").digest() == COMMITMENT_KEY


@settings(max_examples=200, deadline=None)
@given(name=names, value=json_values, salt=salts)
def test_commit_matches_the_formula_and_opens(name: str, value: Any, salt: bytes) -> None:
    c = commit(name, value, salt)
    assert c == _independent(name, value, salt) and len(c) == 32
    assert open_facts({name: c}, {name: Disclosure(salt, value)}) == {name: value}


@settings(max_examples=200, deadline=None)
@given(name=names, value=json_values, other=json_values, salt=salts, salt2=salts)
def test_a_wrong_value_or_salt_is_refused(
    name: str, value: Any, other: Any, salt: bytes, salt2: bytes
) -> None:
    c = commit(name, value, salt)
    if rfc8785.dumps(other) != rfc8785.dumps(value):
        with pytest.raises(CommitmentMismatch) as caught:
            open_facts({name: c}, {name: Disclosure(salt, other)})
        assert caught.value.field == name and caught.value.reason == "commitment-mismatch"
    if salt2 != salt:
        with pytest.raises(CommitmentMismatch):
            open_facts({name: c}, {name: Disclosure(salt2, value)})


@settings(max_examples=200, deadline=None)
@given(a=names, b=names, value=json_values, salt=salts)
def test_an_opening_cannot_be_shown_under_another_name(a: str, b: str, value: Any, salt: bytes) -> None:
    assume(a != b)
    commitments = {a: commit(a, value, salt), b: commit(b, value, salt)}
    assert commitments[a] != commitments[b]
    with pytest.raises(CommitmentMismatch) as caught:
        open_facts({b: commitments[a]}, {b: Disclosure(salt, value)})
    assert caught.value.field == b


def test_length_prefixes_keep_name_and_value_apart() -> None:
    salt = bytes(16)
    # Without lengths, "ab" + JCS("c") and "a" + JCS(...) could share bytes; with them, never.
    assert commit("ab", "c", salt) != commit("a", "b" + '"c', salt)
    assert commit("a", True, salt) != commit("a", "true", salt) != commit("a", 1, salt)


def test_a_disclosure_for_a_name_without_commitment_is_refused() -> None:
    salt = new_salt()
    with pytest.raises(CommitmentMismatch) as caught:
        open_facts({"active": commit("active", True, salt)}, {"role:admin": Disclosure(salt, True)})
    assert caught.value.field == "role:admin"


def test_unopened_commitments_stay_hidden() -> None:
    commitments, disclosures = commit_all({"active": True, "person": False, "role:admin": True})
    opened = open_facts(commitments, {"person": disclosures["person"]})
    assert opened == {"person": False}
    assert open_facts(commitments, {}) == {}


def test_commit_all_draws_one_salt_per_name_in_sorted_order() -> None:
    drawn: list[bytes] = []

    def salt() -> bytes:
        drawn.append(bytes([len(drawn)]) * 16)
        return drawn[-1]

    commitments, disclosures = commit_all({"b": 2, "a": 1, "c": 3}, salt)
    assert [disclosures[n].salt for n in "abc"] == drawn
    assert open_facts(commitments, disclosures) == {"a": 1, "b": 2, "c": 3}
    again, _ = commit_all({"a": 1, "b": 2, "c": 3}, iter(drawn).__next__)
    assert again == commitments


def test_fresh_salts_unlink_two_versions() -> None:
    first, _ = commit_all({"active": True})
    second, _ = commit_all({"active": True})
    assert first["active"] != second["active"]
    assert len(new_salt()) == SALT_LEN and new_salt() != new_salt()


@settings(max_examples=200, deadline=None)
@given(value=json_values, salt=salts)
def test_disclosure_json_round_trips_both_ways(value: Any, salt: bytes) -> None:
    d = Disclosure(salt, value)
    wire = d.to_json()
    assert Disclosure.from_json(wire) == d
    assert Disclosure.from_json(wire).to_json() == wire
    text = rfc8785.dumps({"x": wire})
    assert parse_disclosures(loads_strict(text)) == {"x": d}


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "salt",
        {"salt": b64url_encode(bytes(16))},
        {"value": True},
        {"salt": b64url_encode(bytes(16)), "value": True, "name": "x"},
        {"salt": b64url_encode(bytes(15)), "value": True},
        {"salt": b64url_encode(bytes(17)), "value": True},
        {"salt": b64url_encode(bytes(16)) + "==", "value": True},
        {"salt": "A" * 21 + "B", "value": True},  # spare bits set: not canonical
        {"salt": "+" * 22, "value": True},
        {"salt": 16, "value": True},
        {"salt": b64url_encode(bytes(16)), "value": math.nan},
        {"salt": b64url_encode(bytes(16)), "value": {1: 2}},
    ],
)
def test_malformed_disclosures_are_refused(obj: Any) -> None:
    with pytest.raises(MalformedStatement):
        Disclosure.from_json(obj)
    with pytest.raises(MalformedStatement):
        parse_disclosures({"active": obj})


@pytest.mark.parametrize("obj", [None, [], "x", {"": {"salt": b64url_encode(bytes(16)), "value": True}}])
def test_malformed_disclosure_maps_are_refused(obj: Any) -> None:
    with pytest.raises(MalformedStatement) as caught:
        parse_disclosures(obj)
    assert isinstance(caught.value, MalformedError) and caught.value.reason == "malformed"


def test_a_name_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(MalformedStatement):
        parse_disclosures({"\ud800": {"salt": b64url_encode(bytes(16)), "value": True}})
    with pytest.raises(MalformedStatement):
        commit("\ud800", True, bytes(16))


def test_bad_commit_inputs_are_refused() -> None:
    for salt in (b"", bytes(15), bytes(17), bytearray(16)):
        with pytest.raises(MalformedStatement):
            commit("active", True, salt)  # type: ignore[arg-type]
    with pytest.raises(MalformedStatement):
        commit("", True, bytes(16))
    with pytest.raises(MalformedStatement):
        commit("x" * 65536, True, bytes(16))
    assert len(commit("x" * 65535, True, bytes(16))) == 32
    with pytest.raises(MalformedStatement):
        commit("active", math.inf, bytes(16))
    with pytest.raises(MalformedStatement):
        commit("active", object(), bytes(16))


def test_too_many_disclosures_are_refused() -> None:
    one = {"salt": b64url_encode(bytes(16)), "value": True}
    with pytest.raises(MalformedStatement):
        parse_disclosures({str(i): one for i in range(4097)})
