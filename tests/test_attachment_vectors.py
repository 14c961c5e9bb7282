"""The attachment vectors (tests/vectors/attachments, protocol 11): every valid ciphertext and
chunk-tree root recomputed with `cryptography`'s HKDF and AES-GCM, hashlib and rfc8785 (not
liaison.crypto), the library's stream reader checked against every valid and invalid case,
and the generator re-run byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from liaison.crypto import attachments as att
from liaison.crypto import errors

HERE = Path(__file__).resolve().parent / "vectors" / "attachments"
DOC = json.loads((HERE / "attachments.json").read_text("utf-8"))


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _padme(n: int) -> int:
    e = n.bit_length() - 1
    mask = (1 << (e - e.bit_length())) - 1
    return (n + mask) & ~mask


def _encrypt(key: bytes, salt: bytes, data: bytes, ctx: bytes) -> bytes:
    """Protocol 11.1 from its definition: the frame, then C2SP chunked encryption."""
    size = max(1024, _padme(8 + len(data)))
    frame = len(data).to_bytes(8, "big") + data + bytes(size - 8 - len(data))
    info = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00" + salt + ctx
    out = HKDFExpand(hashes.SHA512(), 76, info).derive(key)
    k, nonce, commitment = out[:32], out[32:44], out[44:]
    chunks = [frame[i : i + 16384] for i in range(0, len(frame) + 1, 16384)]
    aead, base = AESGCM(k), int.from_bytes(nonce, "big")
    sealed = b"".join(aead.encrypt((base ^ i).to_bytes(12, "big"), c, None) for i, c in enumerate(chunks))
    return salt + commitment + sealed


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash, straight from section 2.1."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


@pytest.mark.parametrize("case", DOC["valid"], ids=lambda c: c["about"])
def test_valid_attachments(case: dict[str, Any]) -> None:
    key, salt = bytes.fromhex(case["key"]), bytes.fromhex(case["salt"])
    data = bytes((7 * i + 3) % 251 for i in range(case["length"]))
    ctx = b"liaison/v2/attachment\x00" + rfc8785.dumps(
        {"attachment": case["attachment"], "label": case["label"], "message": case["message"]}
    )
    assert ctx.hex() == case["context_hex"]
    ct = _b64d(case["ciphertext"])
    assert _encrypt(key, salt, data, ctx) == ct and len(ct) == case["size"]
    sealed = ct[56:]
    leaves = [ct[:56]] + [sealed[i : i + 16400] for i in range(0, len(sealed), 16400)]
    assert _mth(leaves) == _b64d(case["root"])
    assert hashlib.sha256(data).hexdigest() == case["sha256"]
    # The library agrees: its context, its stream reader and its tree.
    assert att.context(case["message"], case["attachment"], case["label"]) == ctx
    reader = att.Unsealer(key, ctx, len(ct), len(data), case["sha256"])
    assert reader.update(ct) + reader.finish() == data
    tree = att.ChunkTree()
    tree.update(ct)
    assert tree.root() == _b64d(case["root"])


@pytest.mark.parametrize("case", DOC["invalid"], ids=lambda c: c["about"])
def test_invalid_attachments(case: dict[str, Any]) -> None:
    error = getattr(errors, case["error"])
    ctx = att.context(case["message"], case["attachment"], case["label"])
    ct = _b64d(case["ciphertext"])
    with pytest.raises(error, match=case["words"]):
        reader = att.Unsealer(bytes.fromhex(case["key"]), ctx, len(ct), case["length"], case["sha256"])
        reader.update(ct)
        reader.finish()


def test_the_generator_rewrites_the_vectors_byte_for_byte() -> None:
    r = subprocess.run(
        [sys.executable, str(HERE / "generate.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
