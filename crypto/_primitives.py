"""The one module of liaison.crypto that touches `cryptography.hazmat`: thin, typed primitives.

Everything else in the package calls these functions, so the dangerous layer is
reviewed in one place. Keys cross this boundary as raw bytes; objects from
`cryptography` never leak out of it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from nacl import bindings as nacl_bindings
from nacl import exceptions as nacl_exceptions
from nacl import pwhash

from .names import KEM_SUITES, MLKEM768_X25519, X25519

__all__ = [
    "ARGON2ID_SALT_LEN",
    "KEM_SUITES",
    "MLDSA65_PUBLIC_LEN",
    "HmacSha256",
    "PrimitiveError",
    "aead_open",
    "aead_seal",
    "aes256gcm_open",
    "aes256gcm_seal",
    "argon2id",
    "bytes_eq",
    "ed25519_generate",
    "ed25519_public",
    "ed25519_sign",
    "ed25519_verify",
    "hkdf_expand_sha512",
    "hkdf_sha256",
    "hpke_open",
    "hpke_seal",
    "kem_generate",
    "kem_public",
    "mldsa65_generate",
    "mldsa65_public",
    "mldsa65_sign",
    "mldsa65_verify",
    "random_bytes",
    "sha256",
    "sha256_of",
]

MLDSA65_PUBLIC_LEN = 1952
_MLKEM768_PUBLIC_LEN = 1184
_X25519_LEN = 32
_MLKEM_SEED_LEN = 64

# Each of names.KEM_SUITES (re-exported here: the suites this module implements).
_HPKE = {
    X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    MLKEM768_X25519: hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
}


class PrimitiveError(Exception):
    """A key or ciphertext was rejected by a primitive (wrong length, bad tag, bad signature)."""


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def bytes_eq(a: bytes, b: bytes) -> bool:
    """Constant-time equality (for commitments, MACs and digests a peer chose)."""
    return hmac.compare_digest(a, b)


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def sha256_of(data: bytes) -> bytes:
    """SHA-256 of one byte string: `sha256` without its loop, for the map's hot paths."""
    return hashlib.sha256(data).digest()


class HmacSha256:
    """HMAC-SHA-256 under one key for many messages: the key is set up once and each MAC
    copies that state (a third to a half cheaper than a fresh `hmac.new` per message): the
    directory's commitments (protocol 9.1) and the log's entry salts (10.1).

    With OpenSSL (every CPython build this project supports) the stdlib's `hmac.HMAC` wraps a
    C object (`_hmac`) whose copy, update and digest skip the wrapper's Python frames; where it
    is absent, the wrapper itself is copied. Either way the MAC is the stdlib's."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        wrapper = hmac.new(key, digestmod=hashlib.sha256)
        self._keyed: Any = getattr(wrapper, "_hmac", None) or wrapper

    def mac(self, msg: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(msg)
        return bytes(h.digest())


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF (Extract then Expand) with SHA-256. An empty `salt` is HashLen zero bytes
    (RFC 5869 section 2.2): HMAC pads any key shorter than a block with zeros, so the two agree."""
    try:
        return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)
    except ValueError as e:  # length beyond 255 * 32
        raise PrimitiveError(f"HKDF-SHA-256 cannot produce {length} bytes") from e


# --- Ed25519 (RFC 8032) -----------------------------------------------------------------


def ed25519_generate() -> bytes:
    """A fresh 32-byte Ed25519 private key (the RFC 8032 seed)."""
    return os.urandom(32)


def _ed_priv(seed: bytes) -> ed25519.Ed25519PrivateKey:
    try:
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError as e:
        raise PrimitiveError("Ed25519 private key must be 32 bytes") from e


def ed25519_public(seed: bytes) -> bytes:
    return _ed_priv(seed).public_key().public_bytes_raw()


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    return _ed_priv(seed).sign(message)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature; never raises on bad input.

    Verified by libsodium (PyNaCl): strict RFC 8032 (S < L) and, beyond it, refusing
    small-order and non-canonical public keys and R values, against which a cofactorless
    check can accept one signature for many messages. About 40% faster here than OpenSSL's.
    """
    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        nacl_bindings.crypto_sign_open(signature + message, public)
    except (nacl_exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


# --- ML-DSA-65 (FIPS 204) --------------------------------------------------------------


def mldsa65_generate() -> bytes:
    """A fresh 32-byte ML-DSA-65 seed (the FIPS 204 xi)."""
    return os.urandom(32)


def _mldsa_priv(seed: bytes) -> mldsa.MLDSA65PrivateKey:
    try:
        return mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)
    except ValueError as e:
        raise PrimitiveError("ML-DSA-65 seed must be 32 bytes") from e


def mldsa65_public(seed: bytes) -> bytes:
    return _mldsa_priv(seed).public_key().public_bytes_raw()


def mldsa65_sign(seed: bytes, message: bytes) -> bytes:
    return _mldsa_priv(seed).sign(message)


@functools.lru_cache(maxsize=4096)
def _mldsa_pub(public: bytes) -> mldsa.MLDSA65PublicKey:
    # Decoding a 1952-byte key costs about as much as a twentieth of a verification, and a
    # server verifies the same few devices' signatures over and over.
    return mldsa.MLDSA65PublicKey.from_public_bytes(public)


def mldsa65_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid ML-DSA-65 signature; never raises on bad input."""
    try:
        _mldsa_pub(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- HPKE key wrapping (RFC 9180) ------------------------------------------------------


def kem_generate(suite: str) -> bytes:
    """A fresh KEM private key for `suite`: X25519 32 bytes; hybrid ML-KEM seed(64) || X25519(32)."""
    if suite == X25519:
        return os.urandom(_X25519_LEN)
    if suite == MLKEM768_X25519:
        return os.urandom(_MLKEM_SEED_LEN) + os.urandom(_X25519_LEN)
    raise PrimitiveError(f"unsupported KEM suite {suite!r}")


def _x_priv(raw: bytes) -> x25519.X25519PrivateKey:
    try:
        return x25519.X25519PrivateKey.from_private_bytes(raw)
    except ValueError as e:
        raise PrimitiveError("X25519 private key must be 32 bytes") from e


def _kem_priv(suite: str, raw: bytes) -> x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
    if suite == X25519:
        return _x_priv(raw)
    if suite == MLKEM768_X25519:
        if len(raw) != _MLKEM_SEED_LEN + _X25519_LEN:
            raise PrimitiveError(f"{MLKEM768_X25519} private key must be 96 bytes")
        ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM_SEED_LEN])
        return hpke.MLKEM768X25519PrivateKey(ml, _x_priv(raw[_MLKEM_SEED_LEN:]))
    raise PrimitiveError(f"unsupported KEM suite {suite!r}")


def kem_public(suite: str, raw_private: bytes) -> bytes:
    """The public key: X25519 32 bytes; hybrid ML-KEM-768 pk (1184) || X25519 pk (32)."""
    if suite == X25519:
        return _x_priv(raw_private).public_key().public_bytes_raw()
    if suite == MLKEM768_X25519:
        if len(raw_private) != _MLKEM_SEED_LEN + _X25519_LEN:
            raise PrimitiveError(f"{MLKEM768_X25519} private key must be 96 bytes")
        ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw_private[:_MLKEM_SEED_LEN])
        xk = _x_priv(raw_private[_MLKEM_SEED_LEN:])
        return ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
    raise PrimitiveError(f"unsupported KEM suite {suite!r}")


def _kem_pub(suite: str, raw: bytes) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
    try:
        if suite == X25519:
            if len(raw) != _X25519_LEN:
                raise ValueError("length")
            return x25519.X25519PublicKey.from_public_bytes(raw)
        if suite == MLKEM768_X25519:
            if len(raw) != _MLKEM768_PUBLIC_LEN + _X25519_LEN:
                raise ValueError("length")
            return hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM768_PUBLIC_LEN]),
                x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM768_PUBLIC_LEN:]),
            )
    except ValueError as e:
        raise PrimitiveError(f"malformed {suite} public key") from e
    raise PrimitiveError(f"unsupported KEM suite {suite!r}")


def hpke_seal(suite: str, public: bytes, plaintext: bytes, info: bytes) -> bytes:
    """RFC 9180 base-mode single-shot seal; returns enc || ciphertext."""
    if suite not in _HPKE:
        raise PrimitiveError(f"unsupported KEM suite {suite!r}")
    recipient = _kem_pub(suite, public)
    try:
        return _HPKE[suite].encrypt(plaintext, recipient, info)
    except ValueError as e:  # e.g. a low-order X25519 point: the DH output is all zero
        raise PrimitiveError(f"{suite} public key rejected by HPKE encapsulation") from e


def hpke_open(suite: str, private: bytes, sealed: bytes, info: bytes) -> bytes:
    if suite not in _HPKE:
        raise PrimitiveError(f"unsupported KEM suite {suite!r}")
    try:
        return _HPKE[suite].decrypt(sealed, _kem_priv(suite, private), info)
    except (InvalidTag, ValueError) as e:
        raise PrimitiveError("key unwrapping failed") from e


# --- Content AEAD ------------------------------------------------------------------------


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    except ValueError as e:
        raise PrimitiveError("content key must be 32 bytes and nonce 12 bytes") from e


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError) as e:
        raise PrimitiveError("content decryption failed") from e


# --- Chunked content encryption (C2SP chunked-encryption, Cobblestone-256) -----------------


def hkdf_expand_sha512(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand with SHA-512 (no Extract step: `prk` is already uniform)."""
    return HKDFExpand(hashes.SHA512(), length, info).derive(prk)


def aes256gcm_seal(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """AES-256-GCM with empty associated data; returns ciphertext || 16-byte tag."""
    try:
        return AESGCM(key).encrypt(nonce, plaintext, None)
    except ValueError as e:
        raise PrimitiveError("AES-256-GCM key must be 32 bytes and nonce 12 bytes") from e


def aes256gcm_open(key: bytes, nonce: bytes, ciphertext: bytes | memoryview) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, None)
    except (InvalidTag, ValueError) as e:
        raise PrimitiveError("chunk decryption failed") from e


# --- Passphrase key derivation ------------------------------------------------------------

ARGON2ID_SALT_LEN = pwhash.argon2id.SALTBYTES
#: libsodium's "moderate" limits: about 0.3-0.7 s and 256 MiB here, a deliberate cost per guess.
ARGON2ID_OPSLIMIT = pwhash.argon2id.OPSLIMIT_MODERATE
ARGON2ID_MEMLIMIT = pwhash.argon2id.MEMLIMIT_MODERATE


def argon2id(
    passphrase: bytes,
    salt: bytes,
    *,
    opslimit: int = ARGON2ID_OPSLIMIT,
    memlimit: int = ARGON2ID_MEMLIMIT,
    length: int = 32,
) -> bytes:
    """Argon2id (libsodium via PyNaCl) key derivation from a passphrase."""
    if len(salt) != ARGON2ID_SALT_LEN:
        raise PrimitiveError(f"Argon2id salt must be {ARGON2ID_SALT_LEN} bytes")
    try:
        return pwhash.argon2id.kdf(length, passphrase, salt, opslimit=opslimit, memlimit=memlimit)
    except Exception as e:  # nacl raises its own errors for out-of-range limits
        raise PrimitiveError(f"Argon2id parameters rejected: {e}") from e
