"""Passphrase sealing: round trip, wrong passphrase, tampering, malformed blobs, refused costs."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import pwhash

from liaison.crypto import passphrase as pp
from liaison.crypto.encoding import b64url_decode, b64url_encode, jcs
from liaison.crypto.errors import DecryptionFailed, MalformedKey
from liaison.crypto.passphrase import open_with_passphrase, seal_with_passphrase

# libsodium's minimum costs keep the suite fast; the format is the same at any cost.
OPS, MEM = pwhash.argon2id.OPSLIMIT_MIN, pwhash.argon2id.MEMLIMIT_MIN
FAST: dict[str, Any] = {"opslimit": OPS, "memlimit": MEM}
PASS = "correct horse battery staple"
SECRET = b"liaison test secret"

# Known-answer vector: made by this module with the fixed salt and nonce below, and checked
# against an independent construction (nacl + cryptography directly) in a test of its own.
VECTOR_SALT = bytes(range(16))
VECTOR_NONCE = bytes(range(100, 112))
VECTOR = (
    b'{"ct":"QoGweMfvutmfpNdTMjx__TRQ8qSmWChEkTgFG5aLrlSPjDQ","kdf":"argon2id","memlimit":8192,'
    b'"nonce":"ZGVmZ2hpamtsbW5v","opslimit":1,"salt":"AAECAwQFBgcICQoLDA0ODw","v":1}'
)


@pytest.fixture(scope="module")
def blob() -> bytes:
    return seal_with_passphrase(SECRET, PASS, **FAST)


def test_round_trip(blob: bytes) -> None:
    assert open_with_passphrase(blob, PASS) == SECRET
    obj = json.loads(blob)
    assert set(obj) == {"v", "kdf", "opslimit", "memlimit", "salt", "nonce", "ct"}
    assert obj["kdf"] == "argon2id" and obj["v"] == 1
    assert jcs(obj) == blob


def test_fresh_salt_and_nonce_each_time() -> None:
    a = json.loads(seal_with_passphrase(SECRET, PASS, **FAST))
    b = json.loads(seal_with_passphrase(SECRET, PASS, **FAST))
    assert a["salt"] != b["salt"] and a["nonce"] != b["nonce"] and a["ct"] != b["ct"]


def test_default_costs_are_libsodium_moderate() -> None:
    # One real-cost seal: checks that the defaults are the moderate limits and stay openable.
    sealed = seal_with_passphrase(b"k", PASS)
    obj = json.loads(sealed)
    assert obj["opslimit"] == pwhash.argon2id.OPSLIMIT_MODERATE
    assert obj["memlimit"] == pwhash.argon2id.MEMLIMIT_MODERATE
    assert open_with_passphrase(sealed, PASS) == b"k"


def test_known_answer_vector() -> None:
    sealed = seal_with_passphrase(SECRET, PASS, salt=VECTOR_SALT, nonce=VECTOR_NONCE, **FAST)
    assert sealed == VECTOR
    assert open_with_passphrase(VECTOR, PASS) == SECRET


def test_vector_matches_independent_construction() -> None:
    key = pwhash.argon2id.kdf(32, PASS.encode(), VECTOR_SALT, opslimit=OPS, memlimit=MEM)
    header = {
        "v": 1,
        "kdf": "argon2id",
        "opslimit": 1,
        "memlimit": 8192,
        "salt": b64url_encode(VECTOR_SALT),
        "nonce": b64url_encode(VECTOR_NONCE),
    }
    aad = b"liaison/v1/keystore\x00" + jcs(header)
    ct = ChaCha20Poly1305(key).encrypt(VECTOR_NONCE, SECRET, aad)
    assert jcs({**header, "ct": b64url_encode(ct)}) == VECTOR


def test_passphrase_is_nfc_normalised() -> None:
    composed = "caf\u00e9 au lait"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    sealed = seal_with_passphrase(SECRET, composed, **FAST)
    assert open_with_passphrase(sealed, decomposed) == SECRET


@pytest.mark.parametrize(
    "wrong",
    [
        "",
        "correct horse battery stapl",
        "Correct horse battery staple",
        "correct horse battery staple ",
        "\ud800",
    ],
)
def test_wrong_passphrase(blob: bytes, wrong: str) -> None:
    with pytest.raises(DecryptionFailed, match="wrong passphrase or damaged key file"):
        open_with_passphrase(blob, wrong)


def test_every_byte_tampered_is_refused(blob: bytes) -> None:
    for i in range(len(blob)):
        for mask in (0x01, 0x20, 0x80):
            tampered = bytearray(blob)
            tampered[i] ^= mask
            with pytest.raises((DecryptionFailed, MalformedKey)):
                open_with_passphrase(bytes(tampered), PASS)
    with pytest.raises((DecryptionFailed, MalformedKey)):
        open_with_passphrase(blob[:-1], PASS)
    with pytest.raises(MalformedKey):
        open_with_passphrase(blob + b" ", PASS)


def _resealed(blob: bytes, **changes: object) -> bytes:
    obj = json.loads(blob)
    obj.update(changes)
    return jcs(obj)


def test_swapped_parameters_fail_even_when_well_formed(blob: bytes) -> None:
    # Each header change parses fine and must still fail: the header is the AEAD's AAD.
    obj = json.loads(blob)
    other_salt = b64url_encode(bytes(16))
    for changes in (
        {"opslimit": 2},
        {"memlimit": 16384},
        {"salt": other_salt},
        {"nonce": b64url_encode(bytes(12))},
    ):
        with pytest.raises(DecryptionFailed):
            open_with_passphrase(_resealed(blob, **changes), PASS)
    ct = b64url_decode(obj["ct"])
    with pytest.raises(DecryptionFailed):
        open_with_passphrase(_resealed(blob, ct=b64url_encode(ct[:-1])), PASS)


def test_header_is_bound_not_just_key(blob: bytes) -> None:
    # Re-encrypt under the same key and nonce with an AAD over a different header: the
    # blob's own header must be what the tag covers, so this still fails.
    obj = json.loads(blob)
    key = pwhash.argon2id.kdf(32, PASS.encode(), b64url_decode(obj["salt"]), opslimit=OPS, memlimit=MEM)
    nonce = b64url_decode(obj["nonce"])
    ct = ChaCha20Poly1305(key).encrypt(nonce, SECRET, b"liaison/v1/keystore\x00{}")
    with pytest.raises(DecryptionFailed):
        open_with_passphrase(_resealed(blob, ct=b64url_encode(ct)), PASS)


MALFORMED: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"not json",
    b"\xff\xfe",
    b'{"v":1}',
    b"[" * 60_000,  # nesting deep enough to exhaust the JSON parser's recursion
    b"x" * (1024 * 1024),
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_blobs(raw: bytes) -> None:
    with pytest.raises(MalformedKey):
        open_with_passphrase(raw, PASS)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"v": True},
        {"v": "1"},
        {"kdf": "scrypt"},
        {"opslimit": "1"},
        {"opslimit": 1.5},
        {"memlimit": None},
        {"salt": "AAAA"},
        {"salt": b64url_encode(bytes(15))},
        {"nonce": b64url_encode(bytes(24))},
        {"ct": "not*base64"},
        {"ct": 5},
        {"extra": 1},
    ],
)
def test_malformed_fields(blob: bytes, changes: dict[str, object]) -> None:
    with pytest.raises(MalformedKey):
        open_with_passphrase(_resealed(blob, **changes), PASS)


def test_missing_field(blob: bytes) -> None:
    for field in json.loads(blob):
        obj = json.loads(blob)
        del obj[field]
        with pytest.raises(MalformedKey):
            open_with_passphrase(jcs(obj), PASS)


def test_non_canonical_encoding_refused(blob: bytes) -> None:
    obj = json.loads(blob)
    for raw in (
        json.dumps(obj).encode(),
        json.dumps(obj, indent=1).encode(),
        blob.replace(b'"v":1', b'"v":1.0'),
        blob[:-1] + b',"v":1}',
    ):
        with pytest.raises(MalformedKey):
            open_with_passphrase(raw, PASS)


@pytest.mark.parametrize(
    "changes",
    [
        {"opslimit": 0},
        {"opslimit": -1},
        {"opslimit": pp.MAX_OPSLIMIT + 1},
        {"memlimit": 0},
        {"memlimit": pwhash.argon2id.MEMLIMIT_MIN - 1},
        {"memlimit": pp.MAX_MEMLIMIT + 1},
        {"memlimit": 64 * 1024**3},  # 64 GiB: refused before anything is allocated
        {"opslimit": True},
    ],
)
def test_costs_out_of_bounds_refused(blob: bytes, changes: dict[str, object]) -> None:
    with pytest.raises(MalformedKey, match="Argon2id"):
        open_with_passphrase(_resealed(blob, **changes), PASS)


def test_huge_cost_beyond_json_numbers_refused(blob: bytes) -> None:
    for raw in (
        blob.replace(b'"opslimit":1', b'"opslimit":' + str(2**63).encode()),
        blob.replace(b'"memlimit":8192', b'"memlimit":' + b"9" * 5000),
    ):
        with pytest.raises(MalformedKey):
            open_with_passphrase(raw, PASS)


def test_bounds_agree_with_libsodium() -> None:
    assert pp.MIN_OPSLIMIT == pwhash.argon2id.OPSLIMIT_MIN
    assert pp.MIN_MEMLIMIT == pwhash.argon2id.MEMLIMIT_MIN
    assert pwhash.argon2id.OPSLIMIT_SENSITIVE <= pp.MAX_OPSLIMIT
    assert pwhash.argon2id.MEMLIMIT_SENSITIVE <= pp.MAX_MEMLIMIT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"opslimit": 0},
        {"opslimit": pp.MAX_OPSLIMIT + 1},
        {"memlimit": 1024},
        {"memlimit": pp.MAX_MEMLIMIT + 1},
        {"salt": bytes(8)},
        {"nonce": bytes(24)},
    ],
)
def test_seal_refuses_what_open_would_refuse(kwargs: dict[str, object]) -> None:
    args: dict[str, Any] = {**FAST, **kwargs}
    with pytest.raises(ValueError):
        seal_with_passphrase(SECRET, PASS, **args)


@pytest.mark.parametrize("bad", ["", "\ud800"])
def test_seal_refuses_unusable_passphrase(bad: str) -> None:
    with pytest.raises(ValueError):
        seal_with_passphrase(SECRET, bad, **FAST)


@settings(max_examples=30, deadline=None)
@given(secret=st.binary(max_size=512), passphrase=st.text(min_size=1, max_size=40))
def test_round_trip_property(secret: bytes, passphrase: str) -> None:
    sealed = seal_with_passphrase(secret, passphrase, **FAST)
    assert open_with_passphrase(sealed, passphrase) == secret
    with pytest.raises(DecryptionFailed):
        open_with_passphrase(sealed, passphrase + "x")


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    with pytest.raises((MalformedKey, DecryptionFailed)):
        open_with_passphrase(raw, PASS)
