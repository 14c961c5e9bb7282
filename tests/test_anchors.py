"""Anchors and LIAISON2 invitations (liaison.crypto.anchors, .invitation; protocol 9.7): JSON
both directions, one spelling per anchors object, the digest, and the v2 invitation beside v1."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import note
from liaison.crypto.anchors import MAX_WITNESS_AGE, Anchors, anchors_digest, parse_anchors
from liaison.crypto.encoding import b64url_encode, jcs, loads_strict
from liaison.crypto.errors import MalformedAnchors, MalformedError
from liaison.crypto.invitation import (
    Invitation,
    looks_like_invitation,
    make_invitation,
    make_invitation_v2,
    parse_invitation,
)


def _seed(name: str) -> bytes:
    return hashlib.sha256(f"test-anchors/{name}".encode()).digest()


LOG_KEY = note.Signer.from_seed("liaison.example/audit", _seed("log")).verifier.key_string
WITNESSES = sorted(
    note.Signer.from_seed(f"w{i}.example", _seed(f"w{i}"), note.SIG_COSIGNATURE_V1).verifier.key_string
    for i in range(4)
)
CODE = "FZNR2-U4DC5-FHO6N-ROPP7"


def anchors(**over: Any) -> Anchors:
    base: dict[str, Any] = {
        "log_key": LOG_KEY,
        "roots_seq": 1,
        "roots_digest": _seed("roots"),
        "policy_version": 1,
    }
    base.update(over)
    return Anchors(**base)


def test_the_shape_of_the_spec_example() -> None:
    assert anchors().to_json() == {
        "v": 1,
        "log_key": LOG_KEY,
        "roots": {"seq": 1, "digest": b64url_encode(_seed("roots"))},
        "policy": {"version": 1},
        "witnesses": {"k": 0, "keys": [], "max_age": None},
    }


def test_the_digest_is_the_spec_formula() -> None:
    a = anchors()
    want = hashlib.sha256(b"liaison/v1/anchors\x00" + rfc8785.dumps(a.to_json())).digest()
    assert a.digest == want == anchors_digest(a.to_json())
    assert anchors(roots_seq=2).digest != want and anchors(policy_version=2).digest != want


witness_sets = st.lists(st.sampled_from(WITNESSES), unique=True, max_size=4)


@settings(max_examples=150, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=2**53 - 1),
    version=st.integers(min_value=1, max_value=2**53 - 1),
    keys=witness_sets,
    data=st.data(),
)
def test_anchors_round_trip_both_ways(seq: int, version: int, keys: list[str], data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=1, max_value=len(keys))) if keys else 0
    max_age = data.draw(st.none() | st.integers(min_value=1, max_value=MAX_WITNESS_AGE)) if keys else None
    a = anchors(roots_seq=seq, policy_version=version, witness_k=k, witness_keys=tuple(keys), max_age=max_age)
    wire = a.to_json()
    assert wire["witnesses"]["keys"] == sorted(keys)  # one spelling: the keys sorted
    parsed = parse_anchors(loads_strict(jcs(wire)))
    assert parsed == a and parsed.to_json() == wire and parsed.digest == anchors_digest(wire)
    assert parsed.log_verifier.key_string == LOG_KEY
    assert [w.key_string for w in parsed.witness_verifiers] == sorted(keys)


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    obj = anchors(witness_k=1, witness_keys=tuple(WITNESSES[:2]), max_age=60).to_json()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("v",), 2),
        (("v",), True),
        (("v",), 1.0),
        (("log_key",), None),
        (("log_key",), "not a key"),
        (("log_key",), LOG_KEY + " "),
        (("log_key",), WITNESSES[0]),
        (("roots",), []),
        (("roots", "seq"), True),
        (("roots", "seq"), 2**53),
        (("roots", "digest"), ""),
        (("roots", "digest"), b64url_encode(_seed("x")) + "A"),
        (("roots", "digest"), b64url_encode(bytes(33))),
        (("roots", "extra"), 1),
        (("policy",), {"version": 1, "floor": 1}),
        (("policy", "version"), -1),
        (("witnesses", "keys"), "w"),
        (("witnesses", "keys"), [1]),
        (("witnesses", "keys"), [LOG_KEY]),
        (("witnesses", "keys"), WITNESSES[:2][::-1]),
        (("witnesses", "k"), 3),
        (("witnesses", "k"), 0),
        (("witnesses", "k"), None),
        (("witnesses", "max_age"), MAX_WITNESS_AGE + 1),
        (("witnesses", "max_age"), "60"),
        (("witnesses", "extra"), None),
    ],
)
def test_malformed_anchors_are_refused(path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(MalformedAnchors):
        parse_anchors(_with(path, value))


@pytest.mark.parametrize("obj", [None, [], "anchors", {}, {"v": 1}])
def test_not_anchors(obj: Any) -> None:
    with pytest.raises(MalformedAnchors) as caught:
        parse_anchors(obj)
    assert isinstance(caught.value, MalformedError)


def test_one_witness_under_two_names_is_refused() -> None:
    same_key = note.Signer.from_seed(
        "w0-again.example", _seed("w0"), note.SIG_COSIGNATURE_V1
    ).verifier.key_string
    keys = sorted([WITNESSES[0], same_key])
    with pytest.raises(MalformedAnchors):
        parse_anchors(anchors(witness_k=1, witness_keys=tuple(keys)).to_json())


def test_witness_fields_without_witnesses_are_refused() -> None:
    for witnesses in ({"k": 1, "keys": [], "max_age": None}, {"k": 0, "keys": [], "max_age": 60}):
        obj = anchors().to_json()
        obj["witnesses"] = witnesses
        with pytest.raises(MalformedAnchors):
            parse_anchors(obj)


# --- LIAISON2 invitations --------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    code=st.lists(
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=5, max_size=5), min_size=4, max_size=4
    ).map("-".join),
    digest=st.binary(min_size=32, max_size=32),
)
def test_v2_invitations_round_trip(code: str, digest: bytes) -> None:
    made = make_invitation_v2(code, digest)
    text = str(made)
    assert text == f"LIAISON2-{code}-" + base64.b32encode(digest).decode().rstrip("=") and len(text) == 85
    assert parse_invitation(text) == made == parse_invitation(f"  {text.lower()}\n")
    assert made.version == 2 and made.anchors_digest == digest and made.log_key_digest is None
    assert looks_like_invitation(text)


def test_a_v2_invitation_names_its_anchors_and_no_log_key() -> None:
    a = anchors().to_json()
    invitation = make_invitation_v2(CODE, anchors_digest(a))
    assert invitation.names_anchors(a) and invitation.names_anchors(copy.deepcopy(a))
    assert not invitation.names_anchors(anchors(policy_version=2).to_json())
    assert not invitation.names_anchors({"x": float("nan")})
    assert not invitation.names(LOG_KEY)  # the log key is named through the anchors only


def test_v1_invitations_are_unchanged() -> None:
    v1 = make_invitation(CODE, LOG_KEY)
    assert v1.version == 1 and v1 == Invitation(CODE, v1.digest) and v1.log_key_digest == v1.digest
    assert str(v1).startswith("LIAISON1-") and parse_invitation(str(v1)) == v1 and v1.names(LOG_KEY)
    assert v1.anchors_digest is None and not v1.names_anchors(anchors().to_json())
    v2 = make_invitation_v2(CODE, v1.digest)
    assert v2 != v1 and str(v2)[8:] == str(v1)[8:]  # the version is part of what it says


def test_versions_can_be_restricted() -> None:
    v2 = str(make_invitation_v2(CODE, bytes(32)))
    with pytest.raises(MalformedError):
        parse_invitation(v2, versions=(1,))
    assert parse_invitation(v2, versions=(2,)).version == 2
    with pytest.raises(MalformedError):
        parse_invitation(str(make_invitation(CODE, LOG_KEY)), versions=(2,))


@pytest.mark.parametrize(
    "text",
    [
        "LIAISON3-FZNR2-U4DC5-FHO6N-ROPP7-" + "A" * 52,
        "LIAISON0-FZNR2-U4DC5-FHO6N-ROPP7-" + "A" * 52,
        "LIAISON2-FZNR2-U4DC5-FHO6N-ROPP7-" + "A" * 51,
        "LIAISON2-FZNR2-U4DC5-FHO6N-ROPP7-" + "A" * 51 + "B",
        "LIAISON2-FZNR2-U4DC5-FHO6N-ROPP7",
        "LIAISON2-" + "A" * 52,
    ],
)
def test_malformed_v2_invitations(text: str) -> None:
    with pytest.raises(MalformedError):
        parse_invitation(text)


def test_make_invitation_v2_refuses_bad_input() -> None:
    for code, digest in (("fznr2-u4dc5-fho6n-ropp7", bytes(32)), (CODE, bytes(31)), (CODE, "0" * 64)):
        with pytest.raises(MalformedError):
            make_invitation_v2(code, digest)  # type: ignore[arg-type]
