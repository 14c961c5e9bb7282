"""Write the envelope v2 test vectors (protocol 5.2) of this directory, deterministically.

    python tests/vectors/envelope-v2/generate.py            # (re)write the vectors here
    python tests/vectors/envelope-v2/generate.py --out DIR  # write them elsewhere
    python tests/vectors/envelope-v2/generate.py --check    # refuse to draw a new HPKE wrap

Every key, time, envelope id, message key and salt comes from fixed seeds. HPKE encapsulation
(RFC 9180) draws its own randomness inside `cryptography`, so wrapped keys are recorded in
`wraps.json` and replayed: a recorded wrap is used only after it unwraps, with the recipient's
private key and the exact `info`, to the message key it is recorded for. With `--check` a wrap
that is not recorded is an error, so a re-run must rewrite every file byte for byte
(tests/test_envelope_v2_vectors.py does that).

Each case file: the envelope, the sender's public bundle, and for each reader the expected
result: the content (base64url) and its type, or the name of the error `open_envelope` raises.
Parse-level refusals (what a server refuses too) are `MalformedEnvelope`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository, for tests.salamander

from liaison.crypto import _primitives as p  # noqa: E402
from liaison.crypto import chunked  # noqa: E402
from liaison.crypto.attachments import AttachmentRef, ciphertext_size  # noqa: E402
from liaison.crypto.content import AttachmentInfo, Body, padded_size, parse_frame, to_frame  # noqa: E402
from liaison.crypto.encoding import b64url_decode, b64url_encode, jcs  # noqa: E402
from liaison.crypto.envelope import (  # noqa: E402
    ENVELOPE_DOMAIN_V2,
    content_context,
    new_envelope_id,
    seal,
    wrap_info_v2,
)
from liaison.crypto.keys import DeviceKeys  # noqa: E402
from liaison.crypto.labels import Label  # noqa: E402
from liaison.crypto.names import MLKEM768_X25519, X25519  # noqa: E402
from tests.salamander import gcm_collision, v2_frame_with_free_bits  # noqa: E402

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
LABEL = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))
CHANNEL = "airdef-ops"
TEXT = "text/plain; charset=utf-8"


def seed(*parts: str, n: int = 32) -> bytes:
    """Deterministic bytes: SHA-512 of the parts, cut to n (at most 64)."""
    return hashlib.sha512("/".join(("liaison-vectors-v2", *parts)).encode()).digest()[:n]


def device(name: str, principal: str, suite: str = MLKEM768_X25519) -> DeviceKeys:
    kem = (
        seed(name, "mlkem", n=64) + seed(name, "x25519") if suite == MLKEM768_X25519 else seed(name, "x25519")
    )
    created = T0 - timedelta(days=30)
    return DeviceKeys(
        principal, created.strftime("%Y-%m-%dT%H:%M:%SZ"), seed(name, "ed25519"), None, suite, kem
    )


SENDER = device("sender", "usa-analyst-1")
ALICE = device("alice", "ukr-analyst-1")
BOB = device("bob", "usa-analyst-2")
CAROL = device("carol", "pol-system-1", X25519)
DEVICES = {"sender": SENDER, "alice": ALICE, "bob": BOB, "carol": CAROL}


class Wraps:
    """Recorded HPKE wraps, keyed by `info` and message key, checked before reuse."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path, self.strict = path, strict
        self.known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        self.used: dict[str, str] = {}
        self.private = {d.public.kem_pk: d for d in DEVICES.values()}

    def __call__(self, suite: str, public: bytes, key: bytes, info: bytes) -> bytes:
        ref = f"{info.hex()}:{key.hex()}"
        if ref in self.known:
            sealed = bytes.fromhex(self.known[ref])
            if self.private[public].unwrap(sealed, info) != key:
                raise SystemExit(f"recorded wrap {ref[:40]}... does not unwrap to its key")
        elif self.strict:
            raise SystemExit(f"--check: no recorded wrap for {ref[:40]}...")
        else:
            sealed = p.hpke_seal(suite, public, key, info)
        self.used[ref] = sealed.hex()
        return sealed


def header(case: str, **over: Any) -> dict[str, Any]:
    h = {
        "v": 2,
        "id": new_envelope_id(T0, seed(case, "id", n=10)),
        "channel": CHANNEL,
        "sender": SENDER.device_id,
        "created": "2026-11-30T12:00:00Z",
        "label": LABEL.to_json(),
        "suite": MLKEM768_X25519,
    }
    h.update(over)
    return h


def assemble(
    h: dict[str, Any],
    key: bytes,
    salt: bytes,
    chunks: list[bytes],
    readers: list[DeviceKeys],
    wrap: Callable[[str, bytes, bytes, bytes], bytes],
    *,
    commitment: bytes | None = None,
    key_ids: dict[str, str] | None = None,
    keys: dict[str, bytes] | None = None,
    order: list[int] | None = None,
) -> dict[str, Any]:
    """An envelope from chunks of a frame the case chose, sealed and signed as a sender would;
    the overrides let a case commit to another value, name another key id, give a reader
    another message key, or drop, reorder and repeat sealed chunks (then re-sign)."""
    d = chunked.derive(key, salt, content_context(h))
    sealed = chunked.encrypt_chunks(d.key, d.base_nonce, chunks)
    if order is not None:  # what an attacker does to sealed chunks: drop, reorder, repeat
        size = chunked.CHUNK_SIZE + chunked.TAG_LEN
        pieces = [sealed[i : i + size] for i in range(0, len(sealed), size)]
        sealed = b"".join(pieces[i] for i in order)
    commit = commitment if commitment is not None else d.commitment
    full = {**h, "salt": b64url_encode(salt), "commitment": b64url_encode(commit)}
    recipients = []
    for r in sorted(readers, key=lambda k: k.device_id):
        kid = (key_ids or {}).get(r.device_id, r.public.kem_key_id)
        given = (keys or {}).get(r.device_id, key)
        wrapped = wrap(h["suite"], r.public.kem_pk, given, wrap_info_v2(h["id"], r.device_id, kid))
        recipients.append({"device": r.device_id, "key_id": kid, "wrapped_key": b64url_encode(wrapped)})
    unsigned = {**full, "ciphertext": b64url_encode(salt + commit + sealed), "recipients": recipients}
    return {**unsigned, "signatures": SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))}


def cut(frame: bytes) -> list[bytes]:
    size = chunked.CHUNK_SIZE
    return [frame[i : i + size] for i in range(0, len(frame) + 1, size)]


def pattern(n: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(n))


def ok(content: bytes, content_type: str = TEXT) -> dict[str, Any]:
    out: dict[str, Any] = {
        "content_type": content_type,
        "content_sha256": hashlib.sha256(content).hexdigest(),
    }
    if len(content) <= 4096:
        out["content"] = b64url_encode(content)
    return out


def error(name: str) -> dict[str, Any]:
    return {"error": name}


def frame_of(body: bytes, size: int | None = None, fill: bytes = b"") -> bytes:
    total = size if size is not None else padded_size(len(body))
    pad = fill + bytes(total - 8 - len(body) - len(fill))
    return len(body).to_bytes(8) + body + pad


def cases(wrap: Wraps) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, description: str, envelope: dict[str, Any], expect: dict[str, Any]) -> None:
        out[name] = {
            "description": description,
            "envelope": envelope,
            "sender": SENDER.public.to_json(),
            "expect": expect,
        }

    def sealed(case: str, content: bytes, readers: list[DeviceKeys], ctype: str = TEXT, **kw: Any) -> Any:
        return seal(
            content,
            channel=CHANNEL,
            label=LABEL,
            sender=SENDER,
            recipients=[r.public for r in readers],
            content_type=ctype,
            envelope_id=header(case)["id"],
            created=T0,
            message_key=seed(case, "key"),
            salt=seed(case, "salt", n=24),
            wrap=wrap,
            **kw,
        )

    text = b"HOLD POSITION AT GRID 37U. Report at 0400."
    add(
        "valid-text",
        "One recipient, a short text: one 1024-byte frame, one chunk.",
        sealed("valid-text", text, [ALICE]),
        {"alice": ok(text)},
    )
    add(
        "valid-two-recipients",
        "Two recipients open the same content.",
        sealed("valid-two-recipients", text, [ALICE, BOB]),
        {"alice": ok(text), "bob": ok(text)},
    )
    add(
        "valid-empty",
        "Empty content of another type.",
        sealed("valid-empty", b"", [ALICE], "application/octet-stream"),
        {"alice": ok(b"", "application/octet-stream")},
    )
    big = pattern(20000)
    add(
        "valid-two-chunks",
        "20000 bytes: a 27648-byte frame, a full chunk and a short final one.",
        sealed("valid-two-chunks", big, [ALICE], "application/octet-stream"),
        {"alice": ok(big, "application/octet-stream")},
    )
    even = pattern(24000)
    add(
        "valid-empty-final-chunk",
        "A 32768-byte frame: two full chunks and an empty final chunk.",
        sealed("valid-empty-final-chunk", even, [ALICE], "application/octet-stream"),
        {"alice": ok(even, "application/octet-stream")},
    )
    add(
        "valid-x25519",
        "A classic X25519 recipient (suite X25519).",
        sealed("valid-x25519", text, [CAROL], suite=X25519),
        {"carol": ok(text)},
    )

    body = jcs(Body(text, TEXT).to_json())

    def bad(case: str, frame_chunks: list[bytes], readers: list[DeviceKeys] | None = None, **kw: Any) -> Any:
        return assemble(
            header(case),
            seed(case, "key"),
            seed(case, "salt", n=24),
            frame_chunks,
            readers or [ALICE],
            wrap,
            **kw,
        )

    add(
        "invalid-wrong-commitment",
        "The header and the ciphertext carry a commitment that is not the key's (re-signed).",
        bad("invalid-wrong-commitment", cut(frame_of(body)), commitment=seed("other-commitment")),
        {"alice": error("KeyCommitmentMismatch")},
    )

    # The two-key collision: one AES-256-GCM chunk valid under the keys derived from two
    # message keys; ALICE gets the committed key, BOB the other.
    h = header("invalid-two-key-collision")
    k1, k2, s = seed("collision", "k1"), seed("collision", "k2"), seed("collision", "salt", n=24)
    d1, d2 = chunked.derive(k1, s, content_context(h)), chunked.derive(k2, s, content_context(h))
    frame, bits = v2_frame_with_free_bits(b"HOLD POSITION. ")
    chunk = gcm_collision(d1.key, d1.base_nonce, d2.key, d2.base_nonce, frame, bits)
    opened = parse_frame(p.aes256gcm_open(d1.key, d1.base_nonce, chunk))

    env = assemble(h, k1, s, [], [ALICE, BOB], wrap, keys={BOB.device_id: k2})
    env = _replace_chunks(env, chunk)
    add(
        "invalid-two-key-collision",
        "One chunk that AES-256-GCM opens under both derived keys (an invisible salamander): the "
        "reader of the committed key reads, the other is stopped by the commitment.",
        env,
        {"alice": ok(opened.content), "bob": error("KeyCommitmentMismatch")},
    )

    add(
        "invalid-padding-nonzero",
        "A padding byte is 0x01.",
        bad("invalid-padding-nonzero", cut(frame_of(body, fill=b"\x00\x01"))),
        {"alice": error("MalformedContent")},
    )
    add(
        "invalid-padding-too-long",
        "Padded to 2048 bytes where the body pads to 1024.",
        bad("invalid-padding-too-long", cut(frame_of(body, size=2048))),
        {"alice": error("MalformedContent")},
    )
    spaced = json.dumps(Body(text, TEXT).to_json(), indent=1).encode()
    add(
        "invalid-body-not-canonical",
        "The body is JSON but not JCS.",
        bad("invalid-body-not-canonical", cut(frame_of(spaced))),
        {"alice": error("MalformedContent")},
    )
    two = cut(to_frame(Body(big, "application/octet-stream")))
    add(
        "invalid-truncated",
        "The final chunk is missing: no frame has this ciphertext length.",
        bad("invalid-truncated", two, order=[0]),
        {"alice": error("MalformedEnvelope")},
    )
    three = cut(to_frame(Body(even, "application/octet-stream")))
    add(
        "invalid-reordered",
        "Chunks 0 and 1 swapped.",
        bad("invalid-reordered", three, order=[1, 0, 2]),
        {"alice": error("DecryptionFailed")},
    )
    add(
        "invalid-duplicated",
        "Chunk 0 twice, chunk 1 missing.",
        bad("invalid-duplicated", three, order=[0, 0, 2]),
        {"alice": error("DecryptionFailed")},
    )
    add(
        "invalid-wrong-key-id",
        "ALICE's entry names BOB's KEM key id (wrapped under that info).",
        bad("invalid-wrong-key-id", cut(frame_of(body)), key_ids={ALICE.device_id: BOB.public.kem_key_id}),
        {"alice": error("WrongKeyId")},
    )
    add(
        "invalid-unpadded-size",
        "A 1000-byte frame: not a padded size (a server refuses it too).",
        bad("invalid-unpadded-size", cut(frame_of(body, size=1000))),
        {"alice": error("MalformedEnvelope")},
    )
    resealed = bad("invalid-header-resealed", cut(frame_of(body)))
    resealed["label"] = {**resealed["label"], "classification": "CONFIDENTIAL"}
    unsigned = {k: v for k, v in resealed.items() if k != "signatures"}
    resealed["signatures"] = SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
    add(
        "invalid-header-resealed",
        "The sender signs a label other than the one the content key was derived under.",
        resealed,
        {"alice": error("KeyCommitmentMismatch")},
    )
    salted = bad("invalid-salt-mismatch", cut(frame_of(body)))
    salted["salt"] = b64url_encode(seed("other-salt", n=24))
    unsigned = {k: v for k, v in salted.items() if k != "signatures"}
    salted["signatures"] = SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
    add(
        "invalid-salt-mismatch",
        "The header's salt is not the ciphertext's.",
        salted,
        {"alice": error("MalformedEnvelope")},
    )
    _attachment_cases(add, sealed, text)
    return out


def _attachment_pair(n: int, name: str) -> tuple[AttachmentRef, AttachmentInfo]:
    """A fixed attachment's header and body members (its ciphertext is in the attachment
    vectors; an envelope carries only these)."""
    aid = "a_" + "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in seed("aid", str(n), n=26))
    ref = AttachmentRef(aid, ciphertext_size(512 * n), seed("root", str(n)))
    info = AttachmentInfo(
        aid, seed("akey", str(n)), name, "image/jpeg", 512 * n, hashlib.sha256(bytes(n)).hexdigest()
    )
    return ref, info


def _attachment_cases(add: Callable[..., None], sealed: Callable[..., Any], text: bytes) -> None:
    one, two = _attachment_pair(1, "grid-37U.jpg"), _attachment_pair(2, "Пункт 4.jpg")
    env = sealed("valid-attachments", text, [ALICE], attachments=[one, two])
    add(
        "valid-attachments",
        "Two attachments: the header names their ids, sizes and roots, the body their keys, "
        "names, media types, lengths and SHA-256 (protocol 11.3, 11.4).",
        env,
        {"alice": {**ok(text), "attachments": [info.to_json() for _, info in (one, two)]}},
    )
    # The body names the first attachment only; the header is re-signed naming both.
    swapped = sealed("invalid-attachments-not-the-header", text, [ALICE], attachments=[one])
    swapped["attachments"] = [two[0].to_json(), one[0].to_json()]
    unsigned = {k: v for k, v in swapped.items() if k != "signatures"}
    swapped["signatures"] = SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
    add(
        "invalid-attachments-not-the-header",
        "The signed header names two attachments, the body one: a reader refuses the body.",
        swapped,
        {"alice": error("MalformedContent")},
    )
    odd = sealed("invalid-attachment-size", text, [ALICE], attachments=[one])
    odd["attachments"] = [{**one[0].to_json(), "size": one[0].size + 1}]
    unsigned = {k: v for k, v in odd.items() if k != "signatures"}
    odd["signatures"] = SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
    add(
        "invalid-attachment-size",
        "A header attachment of 1,097 ciphertext bytes, a size no attachment has (a server refuses it too).",
        odd,
        {"alice": error("MalformedEnvelope")},
    )


def _replace_chunks(env: dict[str, Any], chunk: bytes) -> dict[str, Any]:
    """The collision case: the assembled prefix (salt, commitment) with the colliding chunk."""
    prefix = b64url_decode(env["ciphertext"])[: chunked.PREFIX_LEN]
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    unsigned["ciphertext"] = b64url_encode(prefix + chunk)
    return {**unsigned, "signatures": SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))}


def keys_file() -> dict[str, Any]:
    return {
        name: {
            "device": d.device_id,
            "key_id": d.public.kem_key_id,
            "bundle": d.public.to_json(),
            "private": {"ed25519": d.ed25519.hex(), "kem_suite": d.kem_suite, "kem": d.kem.hex()},
        }
        for name, d in DEVICES.items()
    }


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--check", action="store_true", help="use only recorded HPKE wraps")
    args = ap.parse_args(argv)
    wrap = Wraps(HERE / "wraps.json", args.check)
    all_cases = cases(wrap)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "keys.json").write_text(dump(keys_file()))
    for name, case in all_cases.items():
        (args.out / f"{name}.json").write_text(dump(case))
    (args.out / "wraps.json").write_text(dump(wrap.used))
    print(f"{len(all_cases)} cases written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
