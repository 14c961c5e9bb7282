"""Passphrase sealing: Argon2id then ChaCha20-Poly1305, in a small self-describing JSON blob.

A sealed blob is canonical JSON (RFC 8785)::

    {"ct":"<b64url>","kdf":"argon2id","memlimit":268435456,"nonce":"<b64url>",
     "opslimit":3,"salt":"<b64url>","v":1}

- key = Argon2id(NFC(passphrase) as UTF-8, salt, opslimit, memlimit), 32 bytes;
- ct = ChaCha20-Poly1305(key, nonce, secret, aad) with
  aad = ``"liaison/v1/keystore" || 0x00 || JCS(blob without "ct")``,
  so no header field (cost, salt, version) can be changed without the tag failing.

`open_with_passphrase` accepts only the canonical form of the blob, so one sealed value has
exactly one byte encoding; it bounds the KDF costs *before* deriving anything, so a crafted
file cannot make us allocate gigabytes or spin for minutes.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from . import _primitives as p
from .encoding import b64url_decode, b64url_encode, jcs
from .errors import DecryptionFailed, MalformedError, MalformedKey

__all__ = [
    "MAX_MEMLIMIT",
    "MAX_OPSLIMIT",
    "MIN_MEMLIMIT",
    "MIN_OPSLIMIT",
    "open_with_passphrase",
    "seal_with_passphrase",
]

_VERSION = 1
_KDF = "argon2id"
_DOMAIN = b"liaison/v1/keystore"
_KEY_LEN = 32
_NONCE_LEN = 12
_FIELDS = frozenset({"v", "kdf", "opslimit", "memlimit", "salt", "nonce", "ct"})
#: A sealed device key is a few hundred bytes; anything far larger is not ours.
_MAX_BLOB = 64 * 1024

#: libsodium's own floors for Argon2id (crypto_pwhash_argon2id_OPSLIMIT_MIN / MEMLIMIT_MIN).
MIN_OPSLIMIT = 1
MIN_MEMLIMIT = 8192
#: Ceilings on what we will *open*: twice libsodium's "sensitive" time cost and its 1 GiB memory.
#: Anything above is refused before Argon2id runs, so a crafted file cannot exhaust the machine.
MAX_OPSLIMIT = 8
MAX_MEMLIMIT = 1024 * 1024 * 1024


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC so that the same passphrase typed through different input methods (precomposed
    # or combining accents) derives the same key.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _check_limits(opslimit: object, memlimit: object) -> str | None:
    """None if the costs are integers within bounds, else why not."""
    for name, value, low, high in (
        ("opslimit", opslimit, MIN_OPSLIMIT, MAX_OPSLIMIT),
        ("memlimit", memlimit, MIN_MEMLIMIT, MAX_MEMLIMIT),
    ):
        if type(value) is not int:  # bool is an int subclass: refuse it too
            return f"{name} must be an integer"
        if not low <= value <= high:
            return f"{name} {value} is outside [{low}, {high}]"
    return None


def _aad(header: dict[str, Any]) -> bytes:
    return _DOMAIN + b"\x00" + jcs(header)


def seal_with_passphrase(
    secret: bytes,
    passphrase: str,
    *,
    opslimit: int | None = None,
    memlimit: int | None = None,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt `secret` under `passphrase`; returns the canonical JSON blob.

    Costs default to libsodium's "moderate" Argon2id limits. `salt` and `nonce` are fresh
    random values unless given (for reproducible test vectors only: never reuse them).
    Raises ValueError for an empty passphrase or costs that `open_with_passphrase` would
    refuse, so we never write a file we cannot read back.
    """
    if not passphrase:
        raise ValueError("passphrase must not be empty")
    ops = p.ARGON2ID_OPSLIMIT if opslimit is None else opslimit
    mem = p.ARGON2ID_MEMLIMIT if memlimit is None else memlimit
    problem = _check_limits(ops, mem)
    if problem is not None:
        raise ValueError(f"Argon2id {problem}")
    salt = p.random_bytes(p.ARGON2ID_SALT_LEN) if salt is None else salt
    nonce = p.random_bytes(_NONCE_LEN) if nonce is None else nonce
    if len(salt) != p.ARGON2ID_SALT_LEN or len(nonce) != _NONCE_LEN:
        raise ValueError(f"salt must be {p.ARGON2ID_SALT_LEN} bytes and nonce {_NONCE_LEN} bytes")
    try:
        pw = _passphrase_bytes(passphrase)
    except UnicodeEncodeError as e:  # lone surrogates cannot be typed back in
        raise ValueError("passphrase is not valid Unicode text") from e
    header: dict[str, Any] = {
        "v": _VERSION,
        "kdf": _KDF,
        "opslimit": ops,
        "memlimit": mem,
        "salt": b64url_encode(salt),
        "nonce": b64url_encode(nonce),
    }
    key = p.argon2id(pw, salt, opslimit=ops, memlimit=mem, length=_KEY_LEN)
    ct = p.aead_seal(key, nonce, secret, _aad(header))
    return jcs({**header, "ct": b64url_encode(ct)})


def _parse(blob: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Parse and bound a blob: (header, salt, nonce, ct), or MalformedKey."""
    if not isinstance(blob, bytes | bytearray) or len(blob) > _MAX_BLOB:
        raise MalformedKey("sealed key blob is not bytes of a plausible size")
    try:
        obj = json.loads(bytes(blob).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedKey("sealed key blob is not JSON") from e
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise MalformedKey(f"sealed key blob must have exactly the fields {sorted(_FIELDS)}")
    if type(obj["v"]) is not int or obj["v"] != _VERSION:
        raise MalformedKey("unsupported sealed key blob version")
    if obj["kdf"] != _KDF:
        raise MalformedKey("unsupported key derivation function")
    problem = _check_limits(obj["opslimit"], obj["memlimit"])
    if problem is not None:
        raise MalformedKey(f"refusing Argon2id parameters: {problem}")
    try:
        # Only the canonical encoding is accepted: no second byte form of the same blob.
        if jcs(obj) != bytes(blob):
            raise MalformedKey("sealed key blob is not canonical JSON")
        salt = b64url_decode(obj["salt"], field="salt")
        nonce = b64url_decode(obj["nonce"], field="nonce")
        ct = b64url_decode(obj["ct"], field="ct")
    except MalformedKey:
        raise
    except MalformedError as e:
        raise MalformedKey(str(e)) from e
    if len(salt) != p.ARGON2ID_SALT_LEN or len(nonce) != _NONCE_LEN:
        raise MalformedKey("salt or nonce has the wrong length")
    header = {k: v for k, v in obj.items() if k != "ct"}
    return header, salt, nonce, ct


def open_with_passphrase(blob: bytes, passphrase: str) -> bytes:
    """Decrypt a blob from `seal_with_passphrase`.

    Raises MalformedKey for a blob that does not parse or names refused costs, and
    DecryptionFailed for a wrong passphrase or any tampering the parser cannot see.
    """
    header, salt, nonce, ct = _parse(blob)
    try:
        pw = _passphrase_bytes(passphrase)
    except UnicodeEncodeError as e:
        raise DecryptionFailed("wrong passphrase or damaged key file") from e
    try:
        key = p.argon2id(pw, salt, opslimit=header["opslimit"], memlimit=header["memlimit"], length=_KEY_LEN)
    except p.PrimitiveError as e:
        raise MalformedKey("refusing Argon2id parameters") from e
    try:
        return p.aead_open(key, nonce, ct, _aad(header))
    except p.PrimitiveError as e:
        # One error for both causes: telling them apart would need a second secret check.
        raise DecryptionFailed("wrong passphrase or damaged key file") from e
