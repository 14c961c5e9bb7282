"""The directory vectors (tests/vectors/directory, protocol 9.1-9.8): digests, commitments,
signatures and invitation keys recomputed independently (hashlib, hmac, rfc8785, PyNaCl);
every valid case accepted by the library in both directions, every invalid one refused with
its error and reason; and the generator rewrites every file byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import rfc8785

from liaison.crypto import errors
from liaison.crypto.anchors import anchors_digest, parse_anchors
from liaison.crypto.authority import SignerView, check_authority, check_roots_chain
from liaison.crypto.commitments import Disclosure, commit, open_facts, parse_disclosures
from liaison.crypto.encoding import b64url_decode
from liaison.crypto.invitation import make_invitation_v2, parse_invitation
from liaison.crypto.keys import PublicBundle
from liaison.crypto.policy import parse_policy
from liaison.crypto.statements import (
    SignedStatement,
    Statement,
    check_successor,
    check_universe,
    invitation_public,
    invitation_seed,
    open_all,
)

HERE = Path(__file__).parent / "vectors" / "directory"
COMMITMENTS: dict[str, Any] = json.loads((HERE / "commitments.json").read_text("utf-8"))
STATEMENTS: dict[str, Any] = json.loads((HERE / "statements.json").read_text("utf-8"))
ANCHORS: dict[str, Any] = json.loads((HERE / "anchors.json").read_text("utf-8"))
BUNDLES = {d["device"]: PublicBundle.from_json(d["bundle"]) for d in STATEMENTS["devices"].values()}
VALID = {case["name"]: case for case in STATEMENTS["valid"]}
POLICY = parse_policy(STATEMENTS["policy_toml"])


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + block, i + 1
    return out[:length]


def _view(obj: dict[str, Any] | None) -> SignerView | None:
    if obj is None:
        return None
    return SignerView(
        device=obj["device"],
        bundle=BUNDLES[obj["device"]],
        principal=obj["principal"],
        nation=obj["nation"],
        device_active=obj["device_active"],
        facts=obj["facts"],
        is_root_device=obj["is_root_device"],
    )


# --- commitments -------------------------------------------------------------------------


def test_commitment_key_is_the_hash_of_its_label() -> None:
    assert bytes.fromhex(COMMITMENTS["key"]) == hashlib.sha256(b"liaison/v1/commitment-key").digest()


@pytest.mark.parametrize("case", COMMITMENTS["valid"], ids=lambda c: c["name"])
def test_commitment_vectors(case: dict[str, Any]) -> None:
    name, salt = case["name"].encode(), unb64(case["salt"])
    j = rfc8785.dumps(case["value"])
    independent = hmac.new(
        bytes.fromhex(COMMITMENTS["key"]),
        salt + len(name).to_bytes(2, "big") + name + len(j).to_bytes(4, "big") + j,
        hashlib.sha256,
    ).digest()
    assert independent.hex() == case["commitment_hex"] and unb64(case["commitment"]) == independent
    assert commit(case["name"], case["value"], salt) == independent
    disclosure = Disclosure.from_json(case["disclosure"])
    assert disclosure.to_json() == case["disclosure"] == Disclosure(salt, case["value"]).to_json()
    assert open_facts({case["name"]: independent}, {case["name"]: disclosure}) == {
        case["name"]: case["value"]
    }


@pytest.mark.parametrize("case", COMMITMENTS["invalid"], ids=lambda c: c["why"])
def test_commitment_refusals(case: dict[str, Any]) -> None:
    wanted = getattr(errors, case["error"])
    commitments = {k: unb64(v) for k, v in case["commitments"].items()}
    with pytest.raises(wanted) as caught:
        open_facts(commitments, parse_disclosures(case["disclosures"]))
    if case["field"] is not None:
        assert isinstance(caught.value, errors.CommitmentMismatch) and caught.value.field == case["field"]


def test_there_are_as_many_invalid_vectors_as_valid_ones() -> None:
    assert len(COMMITMENTS["invalid"]) >= len(COMMITMENTS["valid"]) >= 6
    assert len(STATEMENTS["invalid"]) >= len(STATEMENTS["valid"]) >= 12
    assert len(ANCHORS["invalid"]) + len(ANCHORS["invalid_invitations"]) >= len(ANCHORS["valid"]) >= 3


# --- statements --------------------------------------------------------------------------


def test_devices_are_the_rfc8032_keys() -> None:
    for d in STATEMENTS["devices"].values():
        pk = nacl.signing.SigningKey(bytes.fromhex(d["ed25519_seed_hex"])).verify_key.encode()
        assert unb64(d["bundle"]["sig"]["ed25519"]) == pk
        fingerprint = hashlib.sha256(rfc8785.dumps(d["bundle"])).digest()
        assert d["device"] == "d_" + base64.b32encode(fingerprint).decode().lower()[:26]


@pytest.mark.parametrize("case", STATEMENTS["invitation_keys"], ids=lambda c: c["for"])
def test_invitation_keys(case: dict[str, Any]) -> None:
    s = _hkdf_sha256(case["code"].encode(), b"", b"liaison/v1/invitation-key", 32)
    assert s.hex() == case["seed_hex"] == invitation_seed(case["code"]).hex()
    pk = nacl.signing.SigningKey(s).verify_key.encode()
    assert pk.hex() == case["public_hex"] == invitation_public(case["code"]).hex()
    assert unb64(case["key"]) == pk


@pytest.mark.parametrize("case", STATEMENTS["valid"], ids=lambda c: c["name"])
def test_valid_statement(case: dict[str, Any]) -> None:
    wire = case["signed"]
    st = wire["statement"]
    jcs_bytes = rfc8785.dumps(st)
    assert jcs_bytes.decode() == case["jcs"]
    digest = hashlib.sha256(b"liaison/v1/statement-digest\x00" + jcs_bytes).digest()
    assert digest.hex() == case["digest_hex"] and unb64(case["digest"]) == digest
    signer = BUNDLES[st["signer"]]
    nacl.signing.VerifyKey(signer.ed25519).verify(
        b"liaison/v1/statement\x00" + jcs_bytes, unb64(wire["signatures"]["ed25519"])
    )
    if "invitation_signature" in wire and "invitation" in st["public"]:
        key = unb64(st["public"]["invitation"]["statement"]["public"]["key"])
        nacl.signing.VerifyKey(key).verify(
            b"liaison/v1/statement-invitation\x00" + jcs_bytes, unb64(wire["invitation_signature"])
        )
    # The library, both directions.
    signed = SignedStatement.from_json(wire)
    assert signed.to_json() == wire and Statement.from_json(st).to_json() == st
    assert signed.digest() == digest and signed.statement.canonical() == jcs_bytes
    signed.verify(signer)
    previous = VALID[case["previous"]]["signed"] if case["previous"] else None
    prev_statement = SignedStatement.from_json(previous).statement if previous else None
    check_successor(prev_statement, signed.statement)
    check_authority(
        signed,
        _view(case["signer"]),  # type: ignore[arg-type]
        relied=case["relied"],
        previous=prev_statement,
        invitation_signer=_view(case["invitation_signer"]),
    )
    if "disclosures" in case:
        opened = open_all(signed.statement, parse_disclosures(case["disclosures"]))
        assert sorted(k for k, v in opened.items() if v) == case["relied"]
        check_universe(POLICY, signed.statement)


def test_the_roots_chain() -> None:
    first = SignedStatement.from_json(VALID["roots-1"]["signed"])
    second = SignedStatement.from_json(VALID["roots-2"]["signed"])
    newest = check_roots_chain(first.digest(), 1, [first, second], BUNDLES)
    assert newest == second.statement
    with pytest.raises(errors.AuthorityError) as caught:
        check_roots_chain(second.digest(), 1, [first, second], BUNDLES)
    assert caught.value.reason == "anchor"


@pytest.mark.parametrize("case", STATEMENTS["invalid"], ids=lambda c: c["why"])
def test_invalid_statement(case: dict[str, Any]) -> None:
    wanted = getattr(errors, case["error"])
    with pytest.raises(wanted) as caught:
        if case["error"] == "MalformedStatement":
            SignedStatement.from_json(case["signed"])
        else:
            signed = SignedStatement.from_json(case["signed"])
            if case["error"] == "BadSignature":
                signed.verify(BUNDLES[case["verify_with"]])
            elif case["error"] == "StatementInvalid":
                check_successor(SignedStatement.from_json(case["previous"]).statement, signed.statement)
            else:
                previous = case["previous"]
                check_authority(
                    signed,
                    _view(case["signer"]),  # type: ignore[arg-type]
                    relied=case["relied"],
                    previous=SignedStatement.from_json(previous).statement if previous else None,
                    invitation_signer=_view(case["invitation_signer"]),
                )
    assert getattr(caught.value, "reason", None) == case["reason"], caught.value
    if case["error"] == "StatementInvalid":
        assert type(caught.value) is errors.StatementInvalid


# --- anchors and LIAISON2 invitations ----------------------------------------------------


@pytest.mark.parametrize("case", ANCHORS["valid"], ids=lambda c: c["code"])
def test_anchors_vectors(case: dict[str, Any]) -> None:
    jcs_bytes = rfc8785.dumps(case["anchors"])
    assert jcs_bytes.decode() == case["jcs"]
    digest = hashlib.sha256(b"liaison/v1/anchors\x00" + jcs_bytes).digest()
    assert digest.hex() == case["digest_hex"] == anchors_digest(case["anchors"]).hex()
    text = "LIAISON2-" + case["code"] + "-" + base64.b32encode(digest).decode().rstrip("=")
    assert text == case["invitation"] == str(make_invitation_v2(case["code"], digest))
    parsed = parse_anchors(case["anchors"])
    assert parsed.to_json() == case["anchors"] and parsed.digest == digest
    invitation = parse_invitation(text)
    assert invitation.version == 2 and invitation.anchors_digest == digest and invitation.code == case["code"]
    assert invitation.names_anchors(case["anchors"]) and not invitation.names(parsed.log_key)
    assert parse_invitation(text.lower()) == invitation


@pytest.mark.parametrize("case", ANCHORS["invalid"], ids=lambda c: c["why"])
def test_invalid_anchors(case: dict[str, Any]) -> None:
    with pytest.raises(errors.MalformedAnchors):
        parse_anchors(case["anchors"])


@pytest.mark.parametrize("case", ANCHORS["invalid_invitations"], ids=lambda c: c["why"])
def test_invalid_v2_invitations(case: dict[str, Any]) -> None:
    with pytest.raises(errors.MalformedError):
        parse_invitation(case["text"])


def test_the_generator_rewrites_every_file_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(HERE / "generate.py"), "--check", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    here = sorted(p.name for p in HERE.iterdir() if p.suffix == ".json")
    assert written == here
    for name in written:
        assert (tmp_path / name).read_bytes() == (HERE / name).read_bytes(), name


def test_the_first_invitation_key_bytes() -> None:
    """b64url_decode agrees with the independent decoder on every key (no malleability)."""
    for case in STATEMENTS["invitation_keys"]:
        assert b64url_decode(case["key"]) == unb64(case["key"])
