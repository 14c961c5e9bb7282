"""Invisible salamanders: one ciphertext and tag that open under two keys (test helper).

An AEAD without key commitment lets a sender build a ciphertext valid under two keys, each
giving its own plaintext (Dodis-Grubbs-Ristenpart-Woodage 2018; Len-Grubbs-Ristenpart 2021).
This module builds such collisions with nothing but `cryptography`'s own AEADs and keystream,
to attack envelopes v1 (ChaCha20-Poly1305) and v2 (the AES-256-GCM inside C2SP chunked
encryption), and builds the envelopes that carry them. It is an attacker's tool for tests:
it uses only the library's public objects and old, stable names of liaison.crypto, so that
the attack can run against old code as well as new.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from liaison.crypto import _primitives as p
from liaison.crypto.encoding import jcs

_P1305 = (1 << 130) - 5


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- ChaCha20-Poly1305 (RFC 8439): a prime-field equation in one free block ---------------


def _chacha_block0(key: bytes, nonce: bytes) -> tuple[int, int]:
    """Poly1305's (r, s) for this key and nonce: ChaCha20 block 0, clamped."""
    raw = Cipher(algorithms.ChaCha20(key, b"\x00" * 4 + nonce), mode=None).encryptor().update(bytes(32))
    r = int.from_bytes(raw[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    return r, int.from_bytes(raw[16:], "little")


def _keystream(key: bytes, nonce: bytes, n: int) -> bytes:
    """ChaCha20 keystream from block 1, as the AEAD encrypts."""
    return (
        Cipher(algorithms.ChaCha20(key, b"\x01\x00\x00\x00" + nonce), mode=None).encryptor().update(bytes(n))
    )


def _poly_blocks(aad: bytes, ct: bytes) -> list[int]:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 16)

    data = pad(aad) + pad(ct) + struct.pack("<QQ", len(aad), len(ct))
    return [int.from_bytes(data[i : i + 16], "little") + (1 << 128) for i in range(0, len(data), 16)]


def _poly_h(blocks: list[int], r: int) -> int:
    h = 0
    for m in blocks:
        h = (h + m) * r % _P1305
    return h


def chacha_collision(key1: bytes, key2: bytes, nonce: bytes, aad: bytes, text1: bytes, text2: bytes) -> bytes:
    """ciphertext || tag opening under key1 to text1 + junk and under key2 to junk + text2.

    The ciphertext is [text1 under key1][text2 under key2][random block][free block]; the free
    block solves tag1 = tag2 in GF(2^130 - 5), retried with another random block until it
    fits in 16 bytes and the final reduction mod 2^128 agrees (a few tries).
    """
    assert len(text1) % 16 == 0 and len(text2) % 16 == 0
    (r1, s1), (r2, s2) = _chacha_block0(key1, nonce), _chacha_block0(key2, nonce)
    n = len(text1) + len(text2) + 32
    ks1, ks2 = _keystream(key1, nonce, n), _keystream(key2, nonce, n)
    fixed = bytes(a ^ b for a, b in zip(text1, ks1, strict=False)) + bytes(
        a ^ b for a, b in zip(text2, ks2[len(text1) :], strict=False)
    )
    j = (len(aad) + 15) // 16 + len(fixed) // 16 + 1  # index of the free block
    inv = None
    for _ in range(1000):
        # A random block before the free one: the solution depends on it, not on the free
        # block's old value, so each try is a new chance for it to fit in 16 bytes.
        prefix = fixed + os.urandom(16)
        base = _poly_blocks(aad, prefix + bytes(16))
        e = len(base) - j  # the free block's power of r
        a1, a2 = _poly_h(base, r1), _poly_h(base, r2)
        c1, c2 = pow(r1, e, _P1305), pow(r2, e, _P1305)
        inv = inv or pow((c1 - c2) % _P1305, -1, _P1305)
        old = base[j]
        for t in range(-5, 6):
            target = (s2 - s1) + t * (1 << 128)  # wanted h1 - h2, as integers
            # h_k = a_k + (x - old) * c_k; solve a1 - a2 + (x - old)(c1 - c2) = target (mod p)
            x = (old + (target - (a1 - a2)) * inv) % _P1305
            if not (1 << 128) <= x < (1 << 129):
                continue
            ct = prefix + (x - (1 << 128)).to_bytes(16, "little")
            sealed1 = ChaCha20Poly1305(key1).encrypt(
                nonce, bytes(a ^ b for a, b in zip(ct, ks1, strict=True)), aad
            )
            try:
                ChaCha20Poly1305(key2).decrypt(nonce, sealed1, aad)
            except InvalidTag:  # the integer difference was target +- p: another t or block
                continue
            return sealed1
    raise RuntimeError("no ChaCha20-Poly1305 collision found")


# --- AES-GCM: GHASH is linear over GF(2), so free bits solve it ---------------------------


def _gcm_tag(key: bytes, nonce: bytes, ct: bytes, keystream: bytes) -> int:
    sealed = AESGCM(key).encrypt(nonce, bytes(a ^ b for a, b in zip(ct, keystream, strict=True)), None)
    return int.from_bytes(sealed[-16:])


def gcm_collision(
    key1: bytes, nonce1: bytes, key2: bytes, nonce2: bytes, plain1: bytes, free_bits: Sequence[int]
) -> bytes:
    """ciphertext || tag that opens under (key1, nonce1) to `plain1` with some of `free_bits`
    (bit positions, 0 = the most significant bit of byte 0) flipped, and under (key2, nonce2)
    to whatever that ciphertext gives. The map ciphertext -> tag1 xor tag2 is affine over
    GF(2), so its columns are measured with the AEAD itself and the system is solved by
    Gaussian elimination; at least 128 free bits are needed."""
    n = len(plain1)
    ks1 = AESGCM(key1).encrypt(nonce1, bytes(n), None)[:n]
    ks2 = AESGCM(key2).encrypt(nonce2, bytes(n), None)[:n]
    c0 = bytes(a ^ b for a, b in zip(plain1, ks1, strict=True))

    def diff(ct: bytes) -> int:
        return _gcm_tag(key1, nonce1, ct, ks1) ^ _gcm_tag(key2, nonce2, ct, ks2)

    def flip(ct: bytes, bit: int) -> bytes:
        out = bytearray(ct)
        out[bit // 8] ^= 0x80 >> (bit % 8)
        return bytes(out)

    base = diff(c0)
    # Rows of the augmented system: one per free bit, (column, bit mask of chosen free bits).
    pivots: dict[int, tuple[int, int]] = {}  # leading bit -> (vector, combination)
    for i, bit in enumerate(free_bits):
        vec, combo = diff(flip(c0, bit)) ^ base, 1 << i
        while vec:
            lead = vec.bit_length() - 1
            if lead not in pivots:
                pivots[lead] = (vec, combo)
                break
            pv, pc = pivots[lead]
            vec, combo = vec ^ pv, combo ^ pc
    want, combo = base, 0
    while want:
        lead = want.bit_length() - 1
        if lead not in pivots:
            raise RuntimeError("the free bits do not span the tag difference")
        pv, pc = pivots[lead]
        want, combo = want ^ pv, combo ^ pc
    ct = c0
    for i, bit in enumerate(free_bits):
        if combo >> i & 1:
            ct = flip(ct, bit)
    sealed = ct + _gcm_tag(key1, nonce1, ct, ks1).to_bytes(16)
    AESGCM(key2).decrypt(nonce2, sealed, None)  # raises unless the collision holds
    return sealed


# --- envelopes carrying them ---------------------------------------------------------------


@dataclass(frozen=True)
class Salamander:
    """A signed envelope whose recipients in `first` get one content key, the others another."""

    envelope: dict[str, Any]
    first: frozenset[str]


Signer = Callable[[bytes, bytes], dict[str, str]]  # (domain, message) -> signatures


def envelope_v1(
    header: dict[str, Any],
    recipients: dict[str, tuple[str, bytes]],
    first: set[str],
    text1: bytes,
    text2: bytes,
    sign: Signer,
) -> Salamander:
    """A v1 envelope (header: v, id, channel, sender, created, label, content_type, suite)
    whose devices in `first` read text1 + junk, the others junk + text2; both verify.
    `recipients`: device id -> (KEM suite, public key)."""
    key1, key2, nonce = os.urandom(32), os.urandom(32), os.urandom(12)
    aad = hashlib.sha256(b"liaison/v1/content\x00" + jcs(header)).digest()
    sealed = chacha_collision(key1, key2, nonce, aad, text1, text2)
    wrapped = []
    for dev in sorted(recipients):
        suite_name, pk = recipients[dev]
        info = b"liaison/v1/wrap\x00" + header["id"].encode() + b"\x00" + dev.encode()
        key = key1 if dev in first else key2
        wrapped.append({"device": dev, "wrapped_key": b64url(p.hpke_seal(suite_name, pk, key, info))})
    unsigned = {**header, "ciphertext": b64url(nonce + sealed), "recipients": wrapped}
    signed = {**unsigned, "signatures": sign(b"liaison/v1/envelope", jcs(unsigned))}
    return Salamander(signed, frozenset(first))


#: Characters h..o differ only in their three low bits: each one placed in the base64url
#: content of a v2 body gives three free ciphertext bits that keep the body valid.
_FREE_CHAR = ord("h")
_FREE_CHARS = 48


def v2_frame_with_free_bits(text1: bytes) -> tuple[bytes, list[int]]:
    """A valid v2 frame whose content is `text1` then junk, and the bit positions (within the
    frame) that may flip while it stays a valid frame with the same length."""
    from liaison.crypto.content import padded_size

    assert len(text1) % 3 == 0
    prefix = b64url(text1)
    content = prefix + chr(_FREE_CHAR) * _FREE_CHARS + "AAAA"
    body = jcs({"attachments": [], "content": content, "content_type": "text/plain; charset=utf-8"})
    frame = len(body).to_bytes(8) + body + bytes(padded_size(len(body)) - 8 - len(body))
    start = 8 + body.index(content.encode()) + len(prefix)
    bits = [(start + i) * 8 + b for i in range(_FREE_CHARS) for b in (5, 6, 7)]
    return frame, bits


def envelope_v2(
    header: dict[str, Any],
    recipients: dict[str, tuple[str, bytes, str]],
    first: set[str],
    text1: bytes,
    sign: Signer,
) -> Salamander:
    """A v2 envelope (header: v, id, channel, sender, created, label, suite) whose chunk is a
    genuine AES-256-GCM collision between the keys derived from two message keys: devices in
    `first` get the committed key and read text1 + junk; the others get the other key, under
    which the chunk decrypts too, and only the commitment stops them.
    `recipients`: device id -> (KEM suite, public key, key id)."""
    from liaison.crypto import chunked

    key1, key2, salt = os.urandom(32), os.urandom(32), os.urandom(24)
    context = b"liaison/v2/content\x00" + jcs(header)
    d1, d2 = chunked.derive(key1, salt, context), chunked.derive(key2, salt, context)
    frame, bits = v2_frame_with_free_bits(text1)
    chunk = gcm_collision(d1.key, d1.base_nonce, d2.key, d2.base_nonce, frame, bits)
    full = {**header, "salt": b64url(salt), "commitment": b64url(d1.commitment)}
    wrapped = []
    for dev in sorted(recipients):
        suite_name, pk, key_id = recipients[dev]
        info = b"\x00".join((b"liaison/v2/wrap", header["id"].encode(), dev.encode(), key_id.encode()))
        key = key1 if dev in first else key2
        wrapped.append(
            {"device": dev, "key_id": key_id, "wrapped_key": b64url(p.hpke_seal(suite_name, pk, key, info))}
        )
    unsigned = {**full, "ciphertext": b64url(salt + d1.commitment + chunk), "recipients": wrapped}
    signed = {**unsigned, "signatures": sign(b"liaison/v2/envelope", jcs(unsigned))}
    return Salamander(signed, frozenset(first))
