"""Write the attachment vectors (protocol 11.1, 11.2) of this directory.

    python tests/vectors/attachments/generate.py            # (re)write attachments.json here
    python tests/vectors/attachments/generate.py --out DIR  # write it elsewhere
    python tests/vectors/attachments/generate.py --check    # compare with the file here

Deterministic: keys, salts, ids and data are fixed. `attachments.json` holds:

* `valid`: attachments of several lengths (empty, below the 1,024-byte frame floor, a frame
  ending exactly on a 16 KiB chunk boundary, several chunks), each with its key, salt,
  message id, attachment id and label, its length (the data is byte i = (7i + 3) mod 251),
  the context (hex), the whole
  ciphertext (base64url), its size, the chunk tree's root and the data's SHA-256.
* `invalid`: ciphertexts built by hand that a reader must refuse (another message's context,
  a flipped chunk, swapped chunks, a frame claiming another length, non-zero padding, a
  truncated ciphertext), each with the error class and the words it carries.

tests/test_attachment_vectors.py recomputes every valid ciphertext and root with
`cryptography` and hashlib (not liaison.crypto), checks the library against every case, and
re-runs this script with --check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from liaison.crypto import attachments as att  # noqa: E402
from liaison.crypto import chunked  # noqa: E402
from liaison.crypto.content import padded_size  # noqa: E402
from liaison.crypto.encoding import b64url_encode  # noqa: E402

MID = "0192f0e8-5a17-7c3e-9d4b-2f6a8c0e1b3d"
LABEL = {
    "policy": "coalition-2026",
    "classification": "SECRET",
    "compartments": ["AIRDEF"],
    "rel_to": ["UKR", "USA"],
}
#: (about, length): lengths chosen for their framing.
LENGTHS = [
    ("empty: the 1,024-byte frame floor", 0),
    ("a short note, under the floor", 100),
    ("a frame of exactly 16,384 bytes: one full chunk, then an empty final chunk", 16376),
    ("two chunks, Padmé padding", 20000),
]


def _data(n: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(n))


def _frame(data: bytes) -> bytes:
    size = padded_size(len(data))
    return len(data).to_bytes(8) + data + bytes(size - 8 - len(data))


def _ids(i: int) -> tuple[bytes, bytes, str]:
    key = bytes((i * 31 + k) % 256 for k in range(32))
    salt = bytes((i * 17 + 100 + k) % 256 for k in range(24))
    aid = "a_" + "abcdefghijklmnopqrstuvwxyz234567"[i] * 26
    return key, salt, aid


def valid() -> list[dict[str, Any]]:
    out = []
    for i, (about, n) in enumerate(LENGTHS):
        key, salt, aid = _ids(i)
        data = _data(n)
        ctx = att.context(MID, aid, LABEL)
        sealer = att.Sealer(key, salt, ctx, n)
        ct = sealer.update(data) + sealer.finish()
        tree = att.ChunkTree()
        tree.update(ct)
        out.append(
            {
                "about": about,
                "key": key.hex(),
                "salt": salt.hex(),
                "message": MID,
                "attachment": aid,
                "label": LABEL,
                "length": n,
                "context_hex": ctx.hex(),
                "ciphertext": b64url_encode(ct),
                "size": len(ct),
                "root": b64url_encode(tree.root()),
                "sha256": sealer.sha256,
            }
        )
    return out


def invalid() -> list[dict[str, Any]]:
    key, salt, aid = _ids(3)
    data = _data(17000)
    ctx = att.context(MID, aid, LABEL)
    good = chunked.encrypt(key, salt, _frame(data), ctx)
    step = chunked.CHUNK_SIZE + chunked.TAG_LEN
    body = good[chunked.PREFIX_LEN :]
    flipped = bytearray(good)
    flipped[chunked.PREFIX_LEN + step + 5] ^= 0x80
    lying = bytearray(_frame(data))
    lying[:8] = (16999).to_bytes(8)
    padded = bytearray(_frame(data))
    padded[-1] = 0x01
    swapped = good[: chunked.PREFIX_LEN] + body[step : 2 * step] + body[:step] + body[2 * step :]
    cases: list[tuple[str, bytes, str, str]] = [
        (
            "encrypted for another message",
            chunked.encrypt(
                key, salt, _frame(data), att.context("0192f0e8-0000-7000-8000-000000000000", aid, LABEL)
            ),
            "KeyCommitmentMismatch",
            "commitment",
        ),
        ("a bit flipped in chunk 1", bytes(flipped), "DecryptionFailed", "chunk 1"),
        (
            "chunks 0 and 1 swapped",
            swapped,
            "DecryptionFailed",
            "chunk 0",
        ),
        (
            "a frame that claims 39,999 bytes",
            chunked.encrypt(key, salt, bytes(lying), ctx),
            "MalformedContent",
            "length",
        ),
        (
            "a non-zero padding byte",
            chunked.encrypt(key, salt, bytes(padded), ctx),
            "MalformedContent",
            "padding",
        ),
        ("the final chunk cut off", good[: chunked.PREFIX_LEN + step], "MalformedContent", "cannot have"),
    ]
    return [
        {
            "about": about,
            "key": key.hex(),
            "message": MID,
            "attachment": aid,
            "label": LABEL,
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "ciphertext": b64url_encode(ct),
            "error": error,
            "words": words,
        }
        for about, ct, error, words in cases
    ]


def document() -> str:
    doc = {
        "about": "liaison attachment vectors (docs/protocol.md section 11)",
        "valid": valid(),
        "invalid": invalid(),
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--check", action="store_true", help="compare with the file here instead of writing")
    args = ap.parse_args()
    text = document()
    if args.check:
        same = (HERE / "attachments.json").read_text("utf-8") == text
        print("attachments.json is up to date" if same else "attachments.json differs from a re-run")
        return 0 if same else 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attachments.json").write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
