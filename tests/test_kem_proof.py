"""Proof of possession of a device's KEM key (liaison.crypto.keys): the challenge opens only with
that key and only for that device id, the answer verifies only for that bundle, and a device
is never an oracle between challenges and envelope keys. Both suites."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import _primitives as p
from liaison.crypto.encoding import b64url_decode, b64url_encode
from liaison.crypto.envelope import seal, wrap_info_v2
from liaison.crypto.errors import BadSignature, DecryptionFailed, MalformedError, MalformedKey
from liaison.crypto.keys import (
    KEM_PROOF_DOMAIN,
    DeviceKeys,
    generate_device,
    kem_challenge_digest,
    kem_proof_message,
    seal_kem_challenge,
    sign_with,
    verify_kem_proof,
)
from liaison.crypto.labels import parse_label
from liaison.crypto.names import MLKEM768_X25519, X25519
from liaison.crypto.policy import Policy

SUITES = [X25519, MLKEM768_X25519]


def _device(suite: str) -> DeviceKeys:
    return generate_device("usa-a1", suite=suite, mldsa65=suite != X25519)


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip(suite: str) -> None:
    keys = _device(suite)
    challenge = secrets.token_bytes(32)
    proof = keys.answer_kem_challenge(seal_kem_challenge(keys.public, challenge))
    assert set(proof) == {"challenge", "signatures"} and b64url_decode(proof["challenge"]) == challenge
    assert set(proof["signatures"]) == set(keys.public.algorithms)
    assert verify_kem_proof(keys.public, proof) == challenge
    assert kem_challenge_digest(challenge) == p.sha256(b"liaison/v1/kem-challenge\x00" + challenge).hex()


@pytest.mark.parametrize("suite", SUITES)
def test_only_the_kem_key_opens_it_and_only_for_its_own_device(suite: str) -> None:
    keys = _device(suite)
    sealed = seal_kem_challenge(keys.public, secrets.token_bytes(32))
    with pytest.raises(DecryptionFailed):
        _device(suite).answer_kem_challenge(sealed)  # another KEM key
    # The same KEM key in another bundle (other signing keys, so another device id): the
    # challenge is bound to the device id it was sealed for, and does not open.
    twin = dataclasses.replace(keys, ed25519=p.ed25519_generate())
    assert twin.public.kem_pk == keys.public.kem_pk and twin.device_id != keys.device_id
    with pytest.raises(DecryptionFailed):
        twin.answer_kem_challenge(sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        keys.answer_kem_challenge(bytes(tampered))


@pytest.mark.parametrize("suite", SUITES)
def test_a_device_is_no_oracle_between_envelopes_and_challenges(suite: str, policy: Policy) -> None:
    keys = _device(suite)
    env = seal(
        b"hello",
        channel="ops",
        label=parse_label("UNCLASSIFIED", policy),
        sender=keys,
        recipients=[keys.public],
        suite=suite,
    )
    wrapped = b64url_decode(env["recipients"][0]["wrapped_key"])
    with pytest.raises(DecryptionFailed):  # an envelope key never opens as a challenge
        keys.answer_kem_challenge(wrapped)
    sealed = seal_kem_challenge(keys.public, secrets.token_bytes(32))
    wrap_info = wrap_info_v2(env["id"], keys.device_id, keys.public.kem_key_id)
    assert len(keys.unwrap(wrapped, wrap_info)) == 32  # the envelope's own info does open it
    with pytest.raises(p.PrimitiveError):  # but a challenge never opens as an envelope key
        keys.unwrap(sealed, wrap_info)


@pytest.mark.parametrize("suite", SUITES)
def test_proofs_verify_only_for_their_bundle(suite: str) -> None:
    keys, other = _device(suite), _device(suite)
    challenge = secrets.token_bytes(32)
    proof = keys.answer_kem_challenge(seal_kem_challenge(keys.public, challenge))
    with pytest.raises(BadSignature):
        verify_kem_proof(other.public, proof)
    changed = {**proof, "challenge": b64url_encode(secrets.token_bytes(32))}
    with pytest.raises(BadSignature):
        verify_kem_proof(keys.public, changed)
    # Signed for another device id by the right keys: refused.
    foreign = {
        "challenge": proof["challenge"],
        "signatures": sign_with(keys, KEM_PROOF_DOMAIN, kem_proof_message(other.device_id, challenge)),
    }
    with pytest.raises(BadSignature):
        verify_kem_proof(keys.public, foreign)
    if suite != X25519:  # the ML-DSA-65 signature cannot be stripped
        with pytest.raises(BadSignature):
            verify_kem_proof(
                keys.public, {**proof, "signatures": {"ed25519": proof["signatures"]["ed25519"]}}
            )


@pytest.mark.parametrize(
    "proof",
    [
        None,
        [],
        {},
        {"challenge": "AAAA"},
        {"challenge": b64url_encode(bytes(32)), "signatures": {}, "x": 1},
        {"challenge": 5, "signatures": {}},
        {"challenge": b64url_encode(bytes(31)), "signatures": {}},
        {"challenge": b64url_encode(bytes(33)), "signatures": {}},
        {"challenge": b64url_encode(bytes(32)) + "=", "signatures": {}},
        {"challenge": "A" * 100, "signatures": {}},
    ],
)
def test_malformed_proofs(proof: object) -> None:
    with pytest.raises(MalformedKey):
        verify_kem_proof(_device(X25519).public, proof)


def test_only_32_byte_challenges_are_sealed() -> None:
    for size in (0, 31, 33):
        with pytest.raises(MalformedError):
            seal_kem_challenge(_device(X25519).public, bytes(size))


@settings(max_examples=20, deadline=None)
@given(challenge=st.binary(min_size=32, max_size=32), suite=st.sampled_from(SUITES))
def test_property_round_trip(challenge: bytes, suite: str) -> None:
    keys = _device(suite)
    assert (
        verify_kem_proof(keys.public, keys.answer_kem_challenge(seal_kem_challenge(keys.public, challenge)))
        == challenge
    )
