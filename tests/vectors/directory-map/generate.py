"""Write the directory map test vectors (protocol 9.5) of this directory, deterministically.

    python tests/vectors/directory-map/generate.py            # (re)write vectors.json here
    python tests/vectors/directory-map/generate.py --out DIR  # write it elsewhere
    python tests/vectors/directory-map/generate.py --check    # compare with vectors.json, byte for byte

Independent of liaison.crypto.vmap on purpose: keys, hashes, roots and proofs come from a
transcription of 9.5 as written (hashlib, one recursion step per bit, no path compression),
so the vectors check the module rather than restate it (tests/test_vmap_vectors.py). Every
invalid proof is first refused here, by this file's own verifier, for the reason it records.

All bytes are unpadded base64url, as on the wire. Sections: `map_key`, `leaf_hash`,
`inner_hash`, `roots` (small maps, keys chosen to share prefixes), and `proofs`: each a root,
a key and a proof as JSON with `expect` either `{"value": v}` (present), `{"absent": true}`,
or `{"error": "ProofError" | "MalformedError", "reason": ...}`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EMPTY = bytes(32)
Items = dict[bytes, bytes]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def value(name: str) -> bytes:
    """A statement digest stand-in: SHA-256 of a name."""
    return sha(b"liaison-vectors/directory-map/" + name.encode())


# --- 9.5 as written ---------------------------------------------------------------------


def map_key(nation: str, record: str) -> bytes:
    return sha(nation.encode())[:2] + sha(record.encode())[:30]


def leaf(k: bytes, v: bytes) -> bytes:
    return sha(b"\x10" + k + v)


def inner(left: bytes, right: bytes) -> bytes:
    return sha(b"\x11" + left + right)


def bit(k: bytes, i: int) -> int:
    return (k[i // 8] >> (7 - i % 8)) & 1


def H(items: Items, d: int = 0) -> bytes:
    if not items:
        return EMPTY
    if len(items) == 1:
        ((k, v),) = items.items()
        return leaf(k, v)
    s0 = {k: v for k, v in items.items() if bit(k, d) == 0}
    s1 = {k: v for k, v in items.items() if bit(k, d) == 1}
    return inner(H(s0, d + 1), H(s1, d + 1))


def prove(items: Items, key: bytes) -> dict[str, Any]:
    """The proof of 9.5: siblings down the key's path until the subtree is empty or lone."""
    siblings: list[str] = []
    d = 0
    while len(items) > 1:
        same = {k: v for k, v in items.items() if bit(k, d) == bit(key, d)}
        other = {k: v for k, v in items.items() if bit(k, d) != bit(key, d)}
        h = H(other, d + 1)
        siblings.append("" if h == EMPTY else b64(h))
        items, d = same, d + 1
    lone = None if not items else {"key": b64(next(iter(items))), "value": b64(next(iter(items.values())))}
    return {"siblings": siblings, "leaf": lone}


class Refused(Exception):
    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error, self.reason = error, reason


def parse32(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text or b64(unb64(text)) != text:
        raise Refused("MalformedError", f"{what} is not canonical unpadded base64url")
    raw = unb64(text)
    if len(raw) != 32:
        raise Refused("MalformedError", f"{what} is {len(raw)} bytes, not 32")
    return raw


def verify(root: bytes, key: bytes, obj: Any) -> bytes | None:
    """9.5's verification, with the JSON rules of the proof's encoding; Refused otherwise."""
    if not isinstance(obj, dict) or sorted(obj) != ["leaf", "siblings"]:
        raise Refused("MalformedError", "a proof has exactly the members siblings and leaf")
    if len(obj["siblings"]) > 256:
        raise Refused("MalformedError", "more than 256 siblings (d <= 256)")
    siblings = []
    for i, s in enumerate(obj["siblings"]):
        raw = EMPTY if s == "" else parse32(s, f"sibling {i}")
        if s != "" and raw == EMPTY:
            raise Refused("MalformedError", f'sibling {i} is EMPTY, which is written ""')
        siblings.append(raw)
    d, lone, answer = len(siblings), obj["leaf"], None
    if lone is None:
        h = EMPTY
    else:
        if not isinstance(lone, dict) or sorted(lone) != ["key", "value"]:
            raise Refused("MalformedError", "a leaf has exactly the members key and value")
        lk, lv = parse32(lone["key"], "leaf key"), parse32(lone["value"], "leaf value")
        if any(bit(lk, i) != bit(key, i) for i in range(d)):
            raise Refused("ProofError", f"the terminal leaf does not share the key's first {d} bits")
        h, answer = leaf(lk, lv), (lv if lk == key else None)
    for i in range(d - 1, -1, -1):
        h = inner(siblings[i], h) if bit(key, i) else inner(h, siblings[i])
    if h != root:
        raise Refused("ProofError", "the proof does not recompute the root")
    return answer


# --- the vectors ------------------------------------------------------------------------

KEY_PAIRS = [
    ("FRA", "principal:alice"),
    ("FRA", "principal:bob"),
    ("FRA", "principal:\u00e9lodie"),
    ("UKR", "device:d_olena-laptop"),
    ("*", "roots"),
    ("*", "policy"),
    ("*", "channel:ops"),
]

ALICE = map_key("FRA", "principal:alice")
BOB = map_key("FRA", "principal:bob")
PAIR_A = map_key("UKR", "device:d_olena-laptop")
PAIR_B = PAIR_A[:31] + bytes([PAIR_A[31] ^ 1])  # differs from PAIR_A in the last bit only
FIVE = {
    ALICE: value("alice"),
    BOB: value("bob"),
    map_key("FRA", "device:d_alice-phone"): value("alice-phone"),
    map_key("UKR", "principal:olena"): value("olena"),
    map_key("*", "roots"): value("roots"),
}
MAPS: dict[str, Items] = {
    "empty": {},
    "one": {ALICE: value("alice")},
    "pair-last-bit": {PAIR_A: value("pair-a"), PAIR_B: value("pair-b")},
    "five": FIVE,
}


def probe(items: Items, lone: bool) -> bytes:
    """The first absent key (by a fixed list of records) whose proof ends at another lone leaf
    (lone) or at an empty subtree (not lone)."""
    for i in range(10_000):
        k = map_key(("USA", "FRA", "UKR", "*")[i % 4], f"principal:probe-{i}")
        if k not in items and (prove(items, k)["leaf"] is not None) == lone:
            return k
    raise SystemExit("no probe key found")


def valid(name: str, m: str, key: bytes) -> dict[str, Any]:
    items = MAPS[m]
    proof = prove(items, key)
    expect = {"value": b64(items[key])} if key in items else {"absent": True}
    assert verify(H(items), key, proof) == items.get(key), name
    return {"name": name, "map": m, "root": b64(H(items)), "key": b64(key), "proof": proof, "expect": expect}


def invalid(name: str, root: bytes, key: bytes, proof: Any, error: str) -> dict[str, Any]:
    try:
        verify(root, key, proof)
    except Refused as e:
        if e.error != error:
            raise SystemExit(f"{name}: refused as {e.error}, not {error}: {e.reason}") from None
        return {
            "name": name,
            "root": b64(root),
            "key": b64(key),
            "proof": proof,
            "expect": {"error": error, "reason": e.reason},
        }
    raise SystemExit(f"{name}: not refused")


def proofs() -> list[dict[str, Any]]:
    five_root = H(FIVE)
    present = prove(FIVE, BOB)
    j = next(i for i, s in enumerate(present["siblings"]) if s)  # a non-empty sibling
    bob_leaf = present["leaf"]
    other = {"key": b64(ALICE), "value": b64(FIVE[ALICE])}
    usa = map_key("USA", "principal:carol")
    # A root no honest map has: b's leaf placed under bit 0 = 0, where only keys starting
    # with a 0 bit may be. Its proof recomputes that root; the prefix check refuses it.
    zero, one = bytes(32), b"\x80" + bytes(31)
    crafted = inner(leaf(one, value("one")), EMPTY)
    off_path = {"siblings": [""], "leaf": {"key": b64(one), "value": b64(value("one"))}}
    h = b64(b"\x07" * 32)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    non_canonical = h[:-1] + alphabet[alphabet.index(h[-1]) | 1]  # a spare bit set: same 32 bytes
    assert unb64(non_canonical) == unb64(h) and non_canonical != h

    def sib(siblings: list[str]) -> dict[str, Any]:
        return {"siblings": siblings, "leaf": bob_leaf}

    ok = [
        valid("presence-one-leaf", "one", ALICE),
        valid("absence-one-leaf-other-leaf-terminal", "one", BOB),
        valid("absence-empty-map", "empty", ALICE),
        valid("presence-keys-differing-in-the-last-bit", "pair-last-bit", PAIR_A),
        valid("absence-empty-terminal-at-depth-255", "pair-last-bit", PAIR_A[:31] + bytes([PAIR_A[31] ^ 2])),
        valid("presence-five", "five", BOB),
        valid("absence-five-empty-terminal", "five", probe(FIVE, lone=False)),
        valid("absence-five-other-leaf-terminal", "five", probe(FIVE, lone=True)),
    ]
    flipped = list(present["siblings"])
    flipped[j] = b64(sha(unb64(flipped[j])))
    bad = [
        invalid("flipped-sibling", five_root, BOB, sib(flipped), "ProofError"),
        invalid("dropped-sibling", five_root, BOB, sib(present["siblings"][:-1]), "ProofError"),
        invalid("added-sibling", five_root, BOB, sib([*present["siblings"], ""]), "ProofError"),
        invalid(
            "changed-leaf-value",
            five_root,
            BOB,
            {"siblings": present["siblings"], "leaf": {**bob_leaf, "value": b64(value("forged"))}},
            "ProofError",
        ),
        invalid(
            "present-key-claimed-absent-null-terminal",
            five_root,
            BOB,
            {"siblings": present["siblings"], "leaf": None},
            "ProofError",
        ),
        invalid(
            "present-key-claimed-absent-other-terminal",
            five_root,
            BOB,
            {"siblings": present["siblings"], "leaf": other},
            "ProofError",
        ),
        invalid("stale-root", H({k: v for k, v in FIVE.items() if k != BOB}), BOB, present, "ProofError"),
        invalid("proof-for-another-key", five_root, usa, present, "ProofError"),
        invalid("terminal-off-the-keys-path", crafted, zero, off_path, "ProofError"),
        invalid("too-many-siblings", EMPTY, zero, {"siblings": [""] * 257, "leaf": None}, "MalformedError"),
        invalid("empty-written-as-base64url", five_root, BOB, sib([b64(EMPTY)]), "MalformedError"),
        invalid("sibling-of-31-bytes", five_root, BOB, sib([b64(b"\x01" * 31)]), "MalformedError"),
        invalid("non-canonical-base64url", five_root, BOB, sib([non_canonical]), "MalformedError"),
        invalid("padded-base64url", five_root, BOB, sib([h + "="]), "MalformedError"),
        invalid("extra-member", five_root, BOB, {**present, "depth": 3}, "MalformedError"),
        invalid(
            "leaf-without-value",
            five_root,
            BOB,
            {"siblings": [], "leaf": {"key": b64(BOB)}},
            "MalformedError",
        ),
        invalid(
            "leaf-key-of-33-bytes",
            five_root,
            BOB,
            {"siblings": [], "leaf": {"key": b64(BOB + b"\x00"), "value": b64(FIVE[BOB])}},
            "MalformedError",
        ),
    ]
    return ok + bad


def vectors() -> dict[str, Any]:
    a, b = value("a"), value("b")
    return {
        "source": "Liaison protocol section 9.5 (the map), transcribed independently by generate.py",
        "map_key": [{"nation": n, "record": r, "key": b64(map_key(n, r))} for n, r in KEY_PAIRS],
        "leaf_hash": [
            {"key": b64(k), "value": b64(v), "hash": b64(leaf(k, v))} for k, v in ((ALICE, a), (EMPTY, EMPTY))
        ],
        "inner_hash": [
            {"left": b64(x), "right": b64(y), "hash": b64(inner(x, y))}
            for x, y in ((a, b), (b, a), (EMPTY, a), (EMPTY, EMPTY))
        ],
        "roots": [
            {
                "name": name,
                "items": [{"key": b64(k), "value": b64(v)} for k, v in sorted(items.items())],
                "root": b64(H(items)),
            }
            for name, items in MAPS.items()
        ],
        "proofs": proofs(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="directory to write vectors.json to")
    ap.add_argument("--check", action="store_true", help="compare with vectors.json instead of writing")
    args = ap.parse_args(argv)
    data = (json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n").encode()
    path = args.out / "vectors.json"
    if args.check:
        if not path.exists() or path.read_bytes() != data:
            print(f"{path} differs from what generate.py writes", file=sys.stderr)
            return 1
        return 0
    path.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
