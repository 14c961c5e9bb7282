"""C2SP chunked encryption, instantiated as Cobblestone-256 (SHA-512, AES-256-GCM).

    derive(input_key, salt, context) -> Derived(key, base_nonce, commitment)
    encrypt(input_key, salt, plaintext, context) -> salt || commitment || chunks
    decrypt(input_key, ciphertext, context) -> plaintext  (commitment checked first)
    plaintext_length(ciphertext_length) -> int             (refuses impossible lengths)

https://c2sp.org/chunked-encryption: one HKDF-Expand derives a single-use key, base nonce and
32-byte key commitment from the input key, a 24-byte salt and the application's context; the
message is cut into 16 KiB chunks with a forced short (possibly empty) final chunk, each sealed
with the key and the base nonce XOR the chunk number. A ciphertext has one possible chunking,
so truncation, reordering and duplication of chunks fail to decrypt, and the commitment makes
the ciphertext open under one input key only (the "invisible salamanders" of a non-committing
AEAD). Nothing here deviates from the specification.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _primitives as p
from .errors import DecryptionFailed, KeyCommitmentMismatch, MalformedError

__all__ = [
    "AEAD_NAME",
    "CHUNK_SIZE",
    "COMMITMENT_LEN",
    "KEY_LEN",
    "PREFIX_LEN",
    "SALT_LEN",
    "TAG_LEN",
    "Derived",
    "check_commitment",
    "ciphertext_length",
    "decrypt",
    "decrypt_chunk",
    "decrypt_with",
    "derive",
    "encrypt",
    "encrypt_chunks",
    "plaintext_length",
]

AEAD_NAME = b"AEAD_AES_256_GCM"  # the IANA AEAD registry's name, as the spec asks
_INFO_PREFIX = b"c2sp.org/chunked-encryption@v1+"
KEY_LEN = 32
_NONCE_LEN = 12
COMMITMENT_LEN = 32
SALT_LEN = 24
TAG_LEN = 16
CHUNK_SIZE = 16 * 1024
PREFIX_LEN = SALT_LEN + COMMITMENT_LEN  # 56 bytes before the first chunk
_SEALED_CHUNK = CHUNK_SIZE + TAG_LEN
_MAX_CHUNKS = 1 << 32  # the spec allows 2^38 and asks for no limit below 2^32


@dataclass(frozen=True, repr=False)
class Derived:
    """The single-use values of one message. `repr` suppressed: `key` is secret."""

    key: bytes
    base_nonce: bytes
    commitment: bytes


def derive(input_key: bytes, salt: bytes, context: bytes) -> Derived:
    """key || base nonce || commitment = HKDF-Expand(SHA-512, input key,
    "c2sp.org/chunked-encryption@v1+" || "AEAD_AES_256_GCM" || 0x00 || salt || context)."""
    if len(input_key) != KEY_LEN:
        raise ValueError(f"the input key must be {KEY_LEN} bytes")
    if len(salt) != SALT_LEN:
        raise ValueError(f"the salt must be {SALT_LEN} bytes")
    info = _INFO_PREFIX + AEAD_NAME + b"\x00" + salt + context
    out = p.hkdf_expand_sha512(input_key, info, KEY_LEN + _NONCE_LEN + COMMITMENT_LEN)
    return Derived(out[:KEY_LEN], out[KEY_LEN : KEY_LEN + _NONCE_LEN], out[KEY_LEN + _NONCE_LEN :])


def _nonce(base_nonce: bytes, index: int) -> bytes:
    if index >= _MAX_CHUNKS:
        raise DecryptionFailed("too many chunks")
    return (int.from_bytes(base_nonce) ^ index).to_bytes(_NONCE_LEN)


def encrypt_chunks(key: bytes, base_nonce: bytes, chunks: list[bytes], first: int = 0) -> bytes:
    """Seal `chunks` in the order given, numbering them from `first` (no check of their sizes:
    `encrypt` cuts a message correctly; a stream seals one chunk at a time; test vectors use
    this to build wrong chunkings)."""
    return b"".join(p.aes256gcm_seal(key, _nonce(base_nonce, first + i), c) for i, c in enumerate(chunks))


def _cut(plaintext: bytes) -> list[bytes]:
    # Full chunks, then a final chunk shorter than CHUNK_SIZE (empty when the length is a
    # multiple of it, an empty message included): the one correct chunking of each length.
    return [plaintext[i : i + CHUNK_SIZE] for i in range(0, len(plaintext) + 1, CHUNK_SIZE)]


def encrypt(input_key: bytes, salt: bytes, plaintext: bytes, context: bytes) -> bytes:
    """salt || commitment || the sealed chunks of `plaintext`."""
    d = derive(input_key, salt, context)
    return salt + d.commitment + encrypt_chunks(d.key, d.base_nonce, _cut(plaintext))


def ciphertext_length(plaintext_len: int) -> int:
    """The ciphertext length of a plaintext of `plaintext_len` bytes."""
    return PREFIX_LEN + plaintext_len + (plaintext_len // CHUNK_SIZE + 1) * TAG_LEN


def plaintext_length(ciphertext_len: int) -> int:
    """The plaintext length a ciphertext of this length carries; MalformedError when no
    message has this length (under 56 + 16 bytes, or a final chunk shorter than a tag,
    which is how a ciphertext cut at a chunk boundary looks)."""
    body = ciphertext_len - PREFIX_LEN
    if body < TAG_LEN:
        raise MalformedError("chunked ciphertext is too short")
    full, last = divmod(body, _SEALED_CHUNK)
    if last < TAG_LEN:
        raise MalformedError("chunked ciphertext is truncated (its final chunk is missing)")
    return full * CHUNK_SIZE + last - TAG_LEN


def check_commitment(derived: Derived, ciphertext: bytes) -> None:
    """The commitment the ciphertext carries is the derived one (constant time)."""
    if not p.bytes_eq(ciphertext[SALT_LEN:PREFIX_LEN], derived.commitment):
        raise KeyCommitmentMismatch("the content key does not match the key commitment")


def decrypt(input_key: bytes, ciphertext: bytes, context: bytes) -> bytes:
    """Check the commitment, then open every chunk; the final one must be short.

    KeyCommitmentMismatch when the key (or context) is not the committed one, before any
    chunk is decrypted; DecryptionFailed when a chunk does not open (tampered, truncated,
    reordered or duplicated chunks); MalformedError for an impossible length.
    """
    plaintext_length(len(ciphertext))
    derived = derive(input_key, ciphertext[:SALT_LEN], context)
    check_commitment(derived, ciphertext)
    return decrypt_with(derived, ciphertext)


def decrypt_with(derived: Derived, ciphertext: bytes) -> bytes:
    """Open every chunk with values already derived and whose commitment the caller checked."""
    plaintext_length(len(ciphertext))
    sealed = memoryview(ciphertext)[PREFIX_LEN:]
    return b"".join(
        decrypt_chunk(derived, i, sealed[start : start + _SEALED_CHUNK])
        for i, start in enumerate(range(0, len(sealed), _SEALED_CHUNK))
    )


def decrypt_chunk(derived: Derived, index: int, sealed: bytes | memoryview, what: str = "content") -> bytes:
    """Open sealed chunk number `index` (DecryptionFailed naming `what` and the chunk): the one
    step a stream repeats as its ciphertext arrives."""
    try:
        return p.aes256gcm_open(derived.key, _nonce(derived.base_nonce, index), sealed)
    except p.PrimitiveError:
        raise DecryptionFailed(f"{what} chunk {index} does not decrypt") from None
