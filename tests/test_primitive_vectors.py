"""Published test vectors for `liaison.crypto._primitives`, and how the primitives fail.

- RFC 8032 section 7.1: Ed25519 key derivation, deterministic signing, verification, and the
  rejection of every single-bit change to a signature, message or public key.
- RFC 9180 Appendix A.2.1: the library suite behind `_HPKE["X25519"]` opens the published
  ciphertext, and any changed bit of enc, ct, info or aad makes it fail.
- draft-ietf-hpke-pq-05 Appendix A.5.1: the same for `_HPKE["MLKEM768-X25519"]` (X-Wing).
- Property tests: HPKE and AEAD round trips, and PrimitiveError (never ValueError) for wrong
  keys, wrong info, tampering and malformed inputs.

Sources of the vectors: tests/vectors/*/SOURCE.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import _primitives as p

VECTORS = Path(__file__).resolve().parent / "vectors"


def _load(relative: str) -> Any:
    return json.loads((VECTORS / relative).read_text(encoding="utf-8"))


ED25519: list[dict[str, str]] = _load("rfc8032/ed25519.json")["vectors"]
RFC9180_A21: dict[str, Any] = _load("rfc9180/x25519_hkdfsha256_chacha20poly1305_base.json")
XWING_A51: dict[str, Any] = _load(
    "rfc9180/draft-ietf-hpke-pq-05_mlkem768x25519_hkdfsha256_chacha20poly1305_base.json"
)

_X25519_LEN = 32
_MLKEM768_PK_LEN = 1184


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def flip(data: bytes, bit: int) -> bytes:
    """`data` with bit number `bit` (0 = least significant bit of byte 0) inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def every_bit(data: bytes) -> range:
    return range(len(data) * 8)


def spread_bits(data: bytes, step: int = 61) -> list[int]:
    """A spread of bit positions: the first and last bit, and one every `step` bits."""
    return sorted({0, len(data) * 8 - 1, *range(0, len(data) * 8, step)})


def ed_id(vector: dict[str, str]) -> str:
    return vector["name"].replace(" ", "_")


# --- RFC 8032 section 7.1: Ed25519 ------------------------------------------------------


def test_rfc8032_file_has_the_five_section_7_1_vectors() -> None:
    names = [v["name"] for v in ED25519]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    assert [len(h(v["message"])) for v in ED25519] == [0, 1, 2, 1023, 64]


@pytest.mark.parametrize("vector", ED25519, ids=ed_id)
def test_rfc8032_public_key_from_seed(vector: dict[str, str]) -> None:
    assert p.ed25519_public(h(vector["secret_key"])) == h(vector["public_key"])


@pytest.mark.parametrize("vector", ED25519, ids=ed_id)
def test_rfc8032_sign_reproduces_the_signature(vector: dict[str, str]) -> None:
    # Ed25519 is deterministic: the same seed and message give the published signature.
    sk, msg = h(vector["secret_key"]), h(vector["message"])
    assert p.ed25519_sign(sk, msg) == h(vector["signature"])
    assert p.ed25519_sign(sk, msg) == p.ed25519_sign(sk, msg)


@pytest.mark.parametrize("vector", ED25519, ids=ed_id)
def test_rfc8032_verify_accepts(vector: dict[str, str]) -> None:
    assert p.ed25519_verify(h(vector["public_key"]), h(vector["message"]), h(vector["signature"]))


@pytest.mark.parametrize("vector", ED25519, ids=ed_id)
def test_rfc8032_verify_rejects_every_signature_bit_flip(vector: dict[str, str]) -> None:
    pk, msg, sig = h(vector["public_key"]), h(vector["message"]), h(vector["signature"])
    accepted = [bit for bit in every_bit(sig) if p.ed25519_verify(pk, msg, flip(sig, bit))]
    assert accepted == []


def _message_mutations(msg: bytes) -> Iterator[bytes]:
    """Every single-bit flip of `msg`, plus one byte appended and (if any) one byte dropped."""
    for bit in every_bit(msg):
        yield flip(msg, bit)
    yield msg + b"\x00"
    if msg:
        yield msg[:-1]


@pytest.mark.parametrize("vector", ED25519, ids=ed_id)
def test_rfc8032_verify_rejects_every_message_bit_flip(vector: dict[str, str]) -> None:
    pk, msg, sig = h(vector["public_key"]), h(vector["message"]), h(vector["signature"])
    mutations = list(_message_mutations(msg))
    assert len(mutations) == len(msg) * 8 + (2 if msg else 1)
    assert not any(p.ed25519_verify(pk, m, sig) for m in mutations)


@pytest.mark.parametrize("vector", ED25519, ids=ed_id)
def test_rfc8032_verify_rejects_every_public_key_bit_flip(vector: dict[str, str]) -> None:
    pk, msg, sig = h(vector["public_key"]), h(vector["message"]), h(vector["signature"])
    assert not any(p.ed25519_verify(flip(pk, bit), msg, sig) for bit in every_bit(pk))


# --- RFC 9180 Appendix A.2.1: DHKEM(X25519), HKDF-SHA256, ChaCha20Poly1305, base ------


def _x25519_open(enc: bytes, ct: bytes, info: bytes, aad: bytes) -> bytes:
    """Single-shot open with an explicit AAD, through the exact suite `_primitives` uses."""
    return rust_openssl.hpke._decrypt_with_aad(
        p._HPKE["X25519"],
        enc + ct,
        p._kem_priv("X25519", h(RFC9180_A21["skRm"])),
        info=info,
        aad=aad,
    )


def test_rfc9180_vector_is_the_suite_of_primitives() -> None:
    v = RFC9180_A21
    assert (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) == (0, 0x0020, 0x0001, 0x0003)
    assert v["encryptions"][0]["sequence_number"] == 0
    assert v["enc"] == v["pkEm"]  # DHKEM: enc is the serialised ephemeral public key


def test_rfc9180_kem_public_matches_pkRm() -> None:
    assert p.kem_public("X25519", h(RFC9180_A21["skRm"])) == h(RFC9180_A21["pkRm"])
    assert p.kem_public("X25519", h(RFC9180_A21["skEm"])) == h(RFC9180_A21["pkEm"])


def test_rfc9180_decrypts_sequence_0() -> None:
    v, e = RFC9180_A21, RFC9180_A21["encryptions"][0]
    pt = _x25519_open(h(v["enc"]), h(e["ct"]), h(v["info"]), h(e["aad"]))
    assert pt == h(e["pt"]) == b"Beauty is truth, truth beauty"


def test_rfc9180_public_hpke_open_uses_empty_aad() -> None:
    # hpke_open is single-shot with empty AAD, so the vector's "Count-0" ciphertext must not
    # open through it: that would mean the AAD was being ignored.
    v, e = RFC9180_A21, RFC9180_A21["encryptions"][0]
    assert h(e["aad"]) == b"Count-0"
    with pytest.raises(p.PrimitiveError):
        p.hpke_open("X25519", h(v["skRm"]), h(v["enc"]) + h(e["ct"]), h(v["info"]))


@pytest.mark.parametrize("field", ["enc", "ct", "info", "aad"])
def test_rfc9180_any_flipped_bit_fails(field: str) -> None:
    v, e = RFC9180_A21, RFC9180_A21["encryptions"][0]
    parts = {"enc": h(v["enc"]), "ct": h(e["ct"]), "info": h(v["info"]), "aad": h(e["aad"])}
    for bit in every_bit(parts[field]):
        changed = {**parts, field: flip(parts[field], bit)}
        with pytest.raises(InvalidTag):
            _x25519_open(**changed)


def test_rfc9180_wrong_recipient_key_fails() -> None:
    v, e = RFC9180_A21, RFC9180_A21["encryptions"][0]
    with pytest.raises(InvalidTag):
        rust_openssl.hpke._decrypt_with_aad(
            p._HPKE["X25519"],
            h(v["enc"]) + h(e["ct"]),
            p._kem_priv("X25519", flip(h(v["skRm"]), 3)),
            info=h(v["info"]),
            aad=h(e["aad"]),
        )


@pytest.mark.parametrize("encryption", RFC9180_A21["encryptions"], ids=lambda e: f"seq{e['sequence_number']}")
def test_rfc9180_aead_matches_every_encryption(encryption: dict[str, Any]) -> None:
    # The published key and per-sequence nonce drive our content AEAD (the same ChaCha20-Poly1305).
    key, nonce = h(RFC9180_A21["key"]), h(encryption["nonce"])
    pt, aad, ct = h(encryption["pt"]), h(encryption["aad"]), h(encryption["ct"])
    assert p.aead_seal(key, nonce, pt, aad) == ct
    assert p.aead_open(key, nonce, ct, aad) == pt


# --- draft-ietf-hpke-pq-05 A.5.1: MLKEM768-X25519 (X-Wing), HKDF-SHA256, ChaCha20Poly1305


def _xwing_private(seed: bytes) -> bytes:
    """Our 96-byte hybrid private key (ML-KEM seed || X25519) from the 32-byte X-Wing seed."""
    return hashlib.shake_256(seed).digest(64 + _X25519_LEN)


def _xwing_open(enc: bytes, ct: bytes, info: bytes, aad: bytes) -> bytes:
    return rust_openssl.hpke._decrypt_with_aad(
        p._HPKE["MLKEM768-X25519"],
        enc + ct,
        p._kem_priv("MLKEM768-X25519", _xwing_private(h(XWING_A51["skRm"]))),
        info=info,
        aad=aad,
    )


def test_xwing_vector_is_the_suite_of_primitives() -> None:
    v = XWING_A51
    assert (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) == (0, 0x647A, 0x0001, 0x0003)
    assert len(h(v["enc"])) == 1120
    assert len(h(v["pkRm"])) == _MLKEM768_PK_LEN + _X25519_LEN


def test_xwing_kem_public_matches_pkRm() -> None:
    private = _xwing_private(h(XWING_A51["skRm"]))
    assert p.kem_public("MLKEM768-X25519", private) == h(XWING_A51["pkRm"])


def test_xwing_decrypts_sequence_0() -> None:
    v, e = XWING_A51, XWING_A51["encryptions"][0]
    assert e["sequence_number"] == 0
    assert _xwing_open(h(v["enc"]), h(e["ct"]), h(v["info"]), h(e["aad"])) == h(e["pt"])


@pytest.mark.parametrize("field", ["enc", "ct", "info", "aad"])
def test_xwing_flipped_bits_fail(field: str) -> None:
    v, e = XWING_A51, XWING_A51["encryptions"][0]
    parts = {"enc": h(v["enc"]), "ct": h(e["ct"]), "info": h(v["info"]), "aad": h(e["aad"])}
    bits = spread_bits(parts[field])
    if field == "enc":  # make sure both halves are hit: ML-KEM ciphertext, then X25519 share
        bits += [1088 * 8 - 1, 1088 * 8, 1088 * 8 + 255]
    for bit in bits:
        changed = {**parts, field: flip(parts[field], bit)}
        with pytest.raises(InvalidTag):
            _xwing_open(**changed)


@pytest.mark.parametrize("encryption", XWING_A51["encryptions"], ids=lambda e: f"seq{e['sequence_number']}")
def test_xwing_aead_matches_encryptions(encryption: dict[str, Any]) -> None:
    key, nonce = h(XWING_A51["key"]), h(encryption["nonce"])
    pt, aad, ct = h(encryption["pt"]), h(encryption["aad"]), h(encryption["ct"])
    assert p.aead_seal(key, nonce, pt, aad) == ct
    assert p.aead_open(key, nonce, ct, aad) == pt


# --- Round trips (hypothesis) -----------------------------------------------------------

_FEW = settings(max_examples=20, deadline=None)


@_FEW
@given(
    suite=st.sampled_from(p.KEM_SUITES),
    plaintext=st.binary(max_size=256),
    info=st.binary(max_size=64),
)
def test_hpke_round_trip(suite: str, plaintext: bytes, info: bytes) -> None:
    sk = p.kem_generate(suite)
    sealed = p.hpke_seal(suite, p.kem_public(suite, sk), plaintext, info)
    assert p.hpke_open(suite, sk, sealed, info) == plaintext


@_FEW
@given(suite=st.sampled_from(p.KEM_SUITES), plaintext=st.binary(max_size=64))
def test_hpke_wrong_private_key_fails(suite: str, plaintext: bytes) -> None:
    sk, other = p.kem_generate(suite), p.kem_generate(suite)
    sealed = p.hpke_seal(suite, p.kem_public(suite, sk), plaintext, b"info")
    with pytest.raises(p.PrimitiveError):
        p.hpke_open(suite, other, sealed, b"info")


@_FEW
@given(
    suite=st.sampled_from(p.KEM_SUITES),
    info=st.binary(max_size=64),
    other_info=st.binary(max_size=64),
)
def test_hpke_wrong_info_fails(suite: str, info: bytes, other_info: bytes) -> None:
    if other_info == info:
        other_info = info + b"\x00"
    sk = p.kem_generate(suite)
    sealed = p.hpke_seal(suite, p.kem_public(suite, sk), b"wrapped key", info)
    with pytest.raises(p.PrimitiveError):
        p.hpke_open(suite, sk, sealed, other_info)


@_FEW
@given(suite=st.sampled_from(p.KEM_SUITES), data=st.data())
def test_hpke_tampered_bit_fails(suite: str, data: st.DataObject) -> None:
    sk = p.kem_generate(suite)
    sealed = p.hpke_seal(suite, p.kem_public(suite, sk), b"wrapped key", b"info")
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1), label="bit")
    with pytest.raises(p.PrimitiveError):
        p.hpke_open(suite, sk, flip(sealed, bit), b"info")


@pytest.mark.parametrize("suite", p.KEM_SUITES)
def test_hpke_truncated_or_empty_fails(suite: str) -> None:
    sk = p.kem_generate(suite)
    sealed = p.hpke_seal(suite, p.kem_public(suite, sk), b"wrapped key", b"info")
    for bad in (b"", sealed[:-1], sealed[: len(sealed) // 2]):
        with pytest.raises(p.PrimitiveError):
            p.hpke_open(suite, sk, bad, b"info")


@_FEW
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    plaintext=st.binary(max_size=512),
    aad=st.binary(max_size=64),
)
def test_aead_round_trip(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> None:
    ct = p.aead_seal(key, nonce, plaintext, aad)
    assert len(ct) == len(plaintext) + 16
    assert p.aead_open(key, nonce, ct, aad) == plaintext


@_FEW
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    plaintext=st.binary(max_size=128),
    aad=st.binary(max_size=32),
    data=st.data(),
)
def test_aead_tamper_fails(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes, data: st.DataObject
) -> None:
    ct = p.aead_seal(key, nonce, plaintext, aad)
    bit = data.draw(st.integers(0, len(ct) * 8 - 1), label="ciphertext bit")
    with pytest.raises(p.PrimitiveError):
        p.aead_open(key, nonce, flip(ct, bit), aad)
    with pytest.raises(p.PrimitiveError):
        p.aead_open(key, nonce, ct, aad + b"\x00")
    with pytest.raises(p.PrimitiveError):
        p.aead_open(flip(key, 0), nonce, ct, aad)
    with pytest.raises(p.PrimitiveError):
        p.aead_open(key, flip(nonce, 0), ct, aad)
    with pytest.raises(p.PrimitiveError):
        p.aead_open(key, nonce, ct[:-1], aad)


# --- Malformed inputs: PrimitiveError, never ValueError ----------------------------------

_XWING_MLKEM_PK = h(XWING_A51["pkRm"])[:_MLKEM768_PK_LEN]
# Low-order X25519 u-coordinates (RFC 7748 section 6.1: the shared secret would be all zero).
_LOW_ORDER_X25519 = [
    bytes(32),
    bytes([1]) + bytes(31),
    h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


def _malformed_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    for n in (0, 31, 33, 64):
        yield f"ed25519_public-{n}", lambda n=n: p.ed25519_public(bytes(n))
        yield f"ed25519_sign-{n}", lambda n=n: p.ed25519_sign(bytes(n), b"msg")
    for n in (0, 31, 33):
        yield f"mldsa65_public-{n}", lambda n=n: p.mldsa65_public(bytes(n))
        yield f"mldsa65_sign-{n}", lambda n=n: p.mldsa65_sign(bytes(n), b"msg")
    for n in (0, 31, 33, 96):
        yield f"kem_public-X25519-{n}", lambda n=n: p.kem_public("X25519", bytes(n))
        yield f"hpke_seal-X25519-pk{n}", lambda n=n: p.hpke_seal("X25519", bytes(n), b"k", b"")
        yield f"hpke_open-X25519-sk{n}", lambda n=n: p.hpke_open("X25519", bytes(n), bytes(64), b"")
    for n in (0, 32, 95, 97):
        yield f"kem_public-hybrid-{n}", lambda n=n: p.kem_public("MLKEM768-X25519", bytes(n))
        yield (
            f"hpke_open-hybrid-sk{n}",
            lambda n=n: p.hpke_open("MLKEM768-X25519", bytes(n), bytes(1200), b""),
        )
    for n in (0, 32, 1184, 1215, 1217):
        yield f"hpke_seal-hybrid-pk{n}", lambda n=n: p.hpke_seal("MLKEM768-X25519", bytes(n), b"k", b"")
    # 1184 bytes of 0xff are not a valid ML-KEM-768 encapsulation key (coefficients >= q).
    yield (
        "hpke_seal-hybrid-bad-mlkem",
        lambda: p.hpke_seal("MLKEM768-X25519", b"\xff" * _MLKEM768_PK_LEN + bytes(range(32)), b"k", b""),
    )
    for i, point in enumerate(_LOW_ORDER_X25519):
        yield f"hpke_seal-X25519-low-order{i}", lambda pt=point: p.hpke_seal("X25519", pt, b"k", b"")
        yield (
            f"hpke_seal-hybrid-low-order{i}",
            lambda pt=point: p.hpke_seal("MLKEM768-X25519", _XWING_MLKEM_PK + pt, b"k", b""),
        )
    for n in (0, 16, 31, 33):
        yield f"aead_seal-key{n}", lambda n=n: p.aead_seal(bytes(n), bytes(12), b"pt", b"")
        yield f"aead_open-key{n}", lambda n=n: p.aead_open(bytes(n), bytes(12), bytes(32), b"")
    for n in (0, 8, 11, 13, 24):
        yield f"aead_seal-nonce{n}", lambda n=n: p.aead_seal(bytes(32), bytes(n), b"pt", b"")
        yield f"aead_open-nonce{n}", lambda n=n: p.aead_open(bytes(32), bytes(n), bytes(32), b"")
    for suite in ("P256", "x25519", ""):
        yield f"kem_generate-{suite!r}", lambda s=suite: p.kem_generate(s)
        yield f"kem_public-{suite!r}", lambda s=suite: p.kem_public(s, bytes(32))
        yield f"hpke_seal-{suite!r}", lambda s=suite: p.hpke_seal(s, bytes(32), b"k", b"")
        yield f"hpke_open-{suite!r}", lambda s=suite: p.hpke_open(s, bytes(32), bytes(64), b"")


_MALFORMED = list(_malformed_cases())


@pytest.mark.parametrize("call", [c for _, c in _MALFORMED], ids=[i for i, _ in _MALFORMED])
def test_malformed_input_raises_primitive_error(call: Callable[[], object]) -> None:
    # PrimitiveError is not a ValueError, so a leaked ValueError fails this test.
    assert not issubclass(p.PrimitiveError, ValueError)
    with pytest.raises(p.PrimitiveError):
        call()


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        (bytes(31), bytes(64)),
        (bytes(33), bytes(64)),
        (b"", b""),
        (h(ED25519[0]["public_key"]), h(ED25519[0]["signature"])[:63]),
        (h(ED25519[0]["public_key"]), h(ED25519[0]["signature"]) + b"\x00"),
    ],
    ids=["pk31", "pk33", "empty", "sig63", "sig65"],
)
def test_verify_malformed_returns_false(public: bytes, signature: bytes) -> None:
    assert p.ed25519_verify(public, h(ED25519[0]["message"]), signature) is False
    assert p.mldsa65_verify(public, b"", signature) is False


# --- Ed25519 beyond RFC 8032's vectors: what a strict verifier must refuse ----------------

_L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point


def test_ed25519_refuses_the_small_order_key_that_signs_everything() -> None:
    """The identity point as public key, R = identity and S = 0 satisfy the cofactorless
    equation [S]B = R + [k]A for every message (OpenSSL accepts it); ours refuses."""
    identity = bytes([1]) + bytes(31)
    for message in (b"", b"pay 100", b"another message"):
        assert not p.ed25519_verify(identity, message, identity + bytes(32))


def test_ed25519_refuses_a_non_canonical_s() -> None:
    """S + L verifies the same equation as S; RFC 8032 section 5.1.7 requires S < L."""
    seed = bytes(range(32))
    public, message = p.ed25519_public(seed), b"malleable?"
    sig = p.ed25519_sign(seed, message)
    assert p.ed25519_verify(public, message, sig)
    s = int.from_bytes(sig[32:], "little") + _L
    assert s < 2**256
    assert not p.ed25519_verify(public, message, sig[:32] + s.to_bytes(32, "little"))


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        (bytes(31), bytes(64)),
        (bytes(33), bytes(64)),
        (bytes(32), bytes(63)),
        (b"", b""),
    ],
)
def test_ed25519_wrong_lengths_are_refused_not_raised(public: bytes, signature: bytes) -> None:
    assert not p.ed25519_verify(public, b"m", signature)
