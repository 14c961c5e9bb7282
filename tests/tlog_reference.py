"""An independent tlog verifier for tests, written from the RFCs and C2SP texts only.

It deliberately shares no code with `liaison.crypto.merkle`, `.tiles` or `.note`: if those
and the service agreed on a mistake, this module would still disagree. Sources:

* RFC 6962 section 2.1: MTH, PATH (audit paths) and PROOF (consistency), recursively;
* RFC 9162 sections 2.1.3.2 and 2.1.4.2: verifying inclusion and consistency proofs;
* c2sp.org/signed-note: `<text>\\n\\n— <name> <base64(key id || sig)>\\n`, key id =
  SHA-256(name || "\\n" || 0x01 || pubkey)[:4], Ed25519 over the text;
* c2sp.org/tlog-checkpoint: origin, decimal size, base64 root, then extension lines;
* c2sp.org/tlog-tiles: tile/<L>/<N>[.p/<W>] with N in 3-digit groups, all but the last
  prefixed with x; a level-L tile holds hashes of tree level 8L; entry bundles are
  uint16-length-prefixed entries.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "RefCheckpoint",
    "RefError",
    "TileFetcher",
    "audit_tiles",
    "consistency_proof",
    "inclusion_proof",
    "leaf",
    "mth",
    "open_checkpoint",
    "ref_entries_path",
    "ref_tile_path",
    "split_bundle",
    "verify_consistency",
    "verify_inclusion",
]


class RefError(Exception):
    """Anything that fails to verify."""


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(entry: bytes) -> bytes:
    return _h(b"\x00" + entry)


def _node(left: bytes, right: bytes) -> bytes:
    return _h(b"\x01" + left + right)


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 2.1 MTH over *leaf hashes* (already SHA-256(0x00 || d))."""
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return leaves[0]
    k = _k(n)
    return _node(mth(leaves[:k]), mth(leaves[k:]))


def inclusion_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _k(n)
    if m < k:
        return [*inclusion_proof(leaves[:k], m), mth(leaves[k:])]
    return [*inclusion_proof(leaves[k:], m - k), mth(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """RFC 6962 2.1.2 PROOF(m, D[n])."""

    def sub(d: Sequence[bytes], m: int, b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = _k(n)
        if m <= k:
            return [*sub(d[:k], m, b), mth(d[k:])]
        return [*sub(d[k:], m - k, False), mth(d[:k])]

    if m in (0, len(leaves)):
        return []
    return sub(leaves, m, True)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2, step by step."""
    if index >= size:
        raise RefError("leaf_index >= tree_size")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise RefError("proof too long")
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise RefError(f"inclusion proof for leaf {index} in tree {size} does not verify")


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2, step by step (with the trivial cases of sizes 0 and equal)."""
    if first == 0:
        if proof:
            raise RefError("non-empty proof from the empty tree")
        return
    if first == second:
        if proof or first_hash != second_hash:
            raise RefError("equal sizes need an empty proof and equal roots")
        return
    if first > second or not proof:
        raise RefError("bad sizes or empty proof")
    path = list(proof)
    if first & (first - 1) == 0:  # exact power of two
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise RefError("proof too long")
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_hash or sr != second_hash:
        raise RefError(f"consistency proof {first} -> {second} does not verify")


# --- C2SP signed notes and checkpoints -------------------------------------------------


@dataclass(frozen=True)
class RefCheckpoint:
    origin: str
    size: int
    root: bytes
    text: str


def open_checkpoint(data: bytes, verifier_key: str) -> RefCheckpoint:
    """Verify the log's Ed25519 signature line and parse the checkpoint body."""
    name, key_hex, key_b64 = verifier_key.split("+", 2)
    blob = base64.b64decode(key_b64)
    if blob[0] != 0x01 or len(blob) != 33:
        raise RefError("not an Ed25519 note key")
    key_id = _h(name.encode() + b"\n" + blob)[:4]
    if key_id.hex() != key_hex:
        raise RefError("key id mismatch")
    msg = data.decode("utf-8")
    cut = msg.rfind("\n\n")
    if cut < 0:
        raise RefError("no signature block")
    text, sigs = msg[: cut + 1], msg[cut + 2 :]
    ok = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise RefError("bad signature line")
        sname, sig_b64 = line[2:].split(" ")
        raw = base64.b64decode(sig_b64)
        if sname == name and raw[:4] == key_id:
            try:
                Ed25519PublicKey.from_public_bytes(blob[1:]).verify(raw[4:], text.encode())
            except InvalidSignature:
                raise RefError("log signature does not verify") from None
            ok = True
    if not ok:
        raise RefError("no signature by the log key")
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if origin != name or str(size) != lines[1] or len(root) != 32:
        raise RefError("malformed checkpoint")
    return RefCheckpoint(origin, size, root, text)


# --- C2SP tlog-tiles -------------------------------------------------------------------


def _n(n: int) -> str:
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g:03d}" for g in groups[:-1]] + [f"{groups[-1]:03d}"])


def ref_tile_path(level: int, n: int, width: int = 256) -> str:
    return f"tile/{level}/{_n(n)}" + ("" if width == 256 else f".p/{width}")


def ref_entries_path(n: int, width: int = 256) -> str:
    return f"tile/entries/{_n(n)}" + ("" if width == 256 else f".p/{width}")


def split_bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise RefError("truncated bundle")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(data):
            raise RefError("truncated entry")
        out.append(data[pos : pos + size])
        pos += size
    return out


#: Fetches a path relative to the log prefix (e.g. "tile/0/000.p/3") and returns its bytes.
TileFetcher = Callable[[str], bytes]


def audit_tiles(size: int, root: bytes, fetch: TileFetcher, *, entries: bool = True) -> list[bytes]:
    """Fetch every tile of the tree of `size` and check it all against `root`.

    Level 0: the leaf hashes (and, with `entries`, the bundles whose entries must hash to
    them); every higher level: each hash must be the MTH of the 256 hashes under it. Returns
    the leaf hashes (so callers can compare proofs with `inclusion_proof`).
    """
    levels: list[list[bytes]] = []
    count, level = size, 0
    while count > 0:
        hashes: list[bytes] = []
        for n in range((count + 255) // 256):
            width = min(256, count - n * 256)
            data = fetch(ref_tile_path(level, n, width))
            if len(data) != 32 * width:
                raise RefError(f"tile {level}/{n} has {len(data)} bytes, want {32 * width}")
            tile = [data[i : i + 32] for i in range(0, len(data), 32)]
            if level == 0 and entries:
                bundle = split_bundle(fetch(ref_entries_path(n, width)))
                if len(bundle) != width or [leaf(e) for e in bundle] != tile:
                    raise RefError(f"entry bundle {n} does not match level-0 tile {n}")
            hashes.extend(tile)
        levels.append(hashes)
        count //= 256
        level += 1
    for lv in range(1, len(levels)):
        below = levels[lv - 1]
        for i, h in enumerate(levels[lv]):
            if mth(below[i * 256 : (i + 1) * 256]) != h:
                raise RefError(f"hash {i} of tile level {lv} is not the MTH of the tile below")
    leaves = levels[0] if levels else []
    if mth(leaves) != root:
        raise RefError("the level-0 tiles do not hash to the checkpoint root")
    return leaves
