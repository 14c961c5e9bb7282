"""Enrolment invitations (liaison.crypto.invitation): the project's vectors, recomputed here
independently; invalid spellings refused; the digest binds key and name; round trips."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto import note
from liaison.crypto.errors import MalformedError
from liaison.crypto.invitation import (
    Invitation,
    log_key_digest,
    looks_like_invitation,
    make_invitation,
    parse_invitation,
)

ROOT = Path(__file__).resolve().parent.parent
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "invitation" / "vectors.json").read_text())
VALID = VECTORS["valid"]


def _independent(vector: dict[str, str]) -> tuple[bytes, str]:
    """Digest and invitation computed from the spec with hashlib and base64 alone."""
    digest = hashlib.sha256(b"liaison/v1/log-key\x00" + vector["log_verifier_key"].encode()).digest()
    text = "LIAISON1-" + vector["code"] + "-" + base64.b32encode(digest).decode().rstrip("=")
    return digest, text


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v["log_verifier_key"].split("+")[0])
def test_vectors(vector: dict[str, str]) -> None:
    digest, text = _independent(vector)
    assert digest.hex() == vector["digest"] and text == vector["invitation"]
    assert log_key_digest(vector["log_verifier_key"]) == digest
    made = make_invitation(vector["code"], vector["log_verifier_key"])
    assert str(made) == text
    parsed = parse_invitation(text)
    assert parsed == made == Invitation(vector["code"], digest)
    assert parsed.names(vector["log_verifier_key"])
    assert looks_like_invitation(text) and not looks_like_invitation(vector["code"])


def test_the_digest_binds_the_key_name_and_nothing_else_matches() -> None:
    first, second = VALID
    assert first["digest"] != second["digest"]  # same public key, another name
    invitation = parse_invitation(first["invitation"])
    assert not invitation.names(second["log_verifier_key"])
    assert not invitation.names(note.generate_signer_key("liaison.example/audit")[1])
    assert not invitation.names("not a key")


@pytest.mark.parametrize("case", VECTORS["accepted_spellings"])
def test_accepted_spellings(case: dict[str, Any]) -> None:
    assert str(parse_invitation(case["text"])) == VALID[case["same_as"]]["invitation"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["why"])
def test_invalid_invitations_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(MalformedError):
        parse_invitation(case["text"])


def test_bad_codes_and_keys_are_refused() -> None:
    key = VALID[0]["log_verifier_key"]
    for code in (
        "",
        "FZNR2-U4DC5-FHO6N",
        "fznr2-u4dc5-fho6n-ropp7",
        "FZNR2U4DC5FHO6NROPP7",
        "FZNR1-U4DC5-FHO6N-ROPP7",
    ):
        with pytest.raises(MalformedError):
            make_invitation(code, key)
    with pytest.raises(MalformedError):
        make_invitation(VALID[0]["code"], key + "x")
    with pytest.raises(MalformedError):
        parse_invitation(None)  # type: ignore[arg-type]


def test_docs_quote_the_first_vector() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    for field in ("log_verifier_key", "digest", "invitation"):
        assert VALID[0][field] in protocol, field


B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
codes = st.lists(st.text(B32, min_size=5, max_size=5), min_size=4, max_size=4).map("-".join)


@given(code=codes, seed=st.binary(min_size=32, max_size=32), name=st.sampled_from(["a.example/log", "x"]))
def test_round_trip(code: str, seed: bytes, name: str) -> None:
    key = note.Signer.from_seed(name, seed).verifier.key_string
    made = make_invitation(code, key)
    text = str(made)
    assert parse_invitation(text) == made == parse_invitation(text.lower())
    assert parse_invitation(text).names(key)
