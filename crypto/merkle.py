"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: tree hashes, inclusion and consistency proofs.

Two ways to build proofs are offered:

* from the full list of leaf hashes (`inclusion_proof`, `consistency_proof`), a direct
  transcription of RFC 6962 section 2.1 (`PATH` and `SUBPROOF`), O(n) per proof;
* from a `HashReader` that returns stored hashes of complete subtrees
  (`inclusion_proof_from`, `consistency_proof_from`, `root_from`), O(log n) reads per proof,
  for a log that keeps its interior hashes in tiles or a table.

Stored-hash addressing (the same as Go's `golang.org/x/mod/sumdb/tlog`, by coordinates):
the node `(level, index)` is the root of the *complete* subtree of `2**level` leaves
`[index * 2**level, (index + 1) * 2**level)`. Level 0 holds the leaf hashes
(`leaf_hash(entry)`); `(L + 1, N)` is `node_hash((L, 2N), (L, 2N + 1))`. A tree of size `n`
has the node `(L, N)` exactly when `(N + 1) * 2**L <= n`; hashes of incomplete subtrees are
never stored, they are computed from complete ones.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 and raises `ProofError` with a
message naming the first check that failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from ._primitives import sha256
from .errors import MalformedError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HashReader",
    "MemoryHashStore",
    "Node",
    "append_hashes",
    "consistency_proof",
    "consistency_proof_from",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_from",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_from",
    "root_from_consistency",
    "root_from_inclusion",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

#: MTH({}) = SHA-256 of the empty string (RFC 6962 section 2.1).
EMPTY_ROOT = sha256(b"")

#: A stored-hash address: (level, index), see the module docstring.
Node = tuple[int, int]

# Sizes and indexes are uint64 on the wire (RFC 9162); refusing larger values keeps every
# client and server in agreement about what a proof means.
_MAX_SIZE = (1 << 64) - 1

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class HashReader(Protocol):
    """Source of stored hashes of complete subtrees.

    Contract: `get(level, index)` returns the 32-byte hash of node `(level, index)` (see the
    module docstring), which callers only ask for when that subtree is complete in the tree
    they are working on. An implementation that cannot answer raises (any exception
    propagates); it must never return a hash of an incomplete subtree.
    """

    def get(self, level: int, index: int) -> bytes: ...


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the 0x00 prefix keeps leaves and interior nodes apart."""
    return sha256(_LEAF_PREFIX, entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return sha256(_NODE_PREFIX, left, right)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, level by level (no recursion; ~n hashes for n leaves).

    Pairing neighbours and lifting an odd last node unchanged to the next level gives the
    RFC 6962 tree, whose left subtree is always the largest power of two below n.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(
    name: str, value: int, error: type[MalformedError] | type[ProofError] = MalformedError
) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_SIZE:
        raise error(f"{name} must be an integer in [0, 2**64)")


# --- proofs from the list of leaf hashes (RFC 6962 section 2.1, as written) --------------


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]): the audit path of leaf `index` in the tree of the first `size` leaves."""
    _check_size("size", size)
    _check_size("index", index)
    if size > len(leaf_hashes):
        raise MalformedError(f"tree size {size} exceeds the {len(leaf_hashes)} leaves given")
    if index >= size:
        raise MalformedError(f"leaf index {index} is not below tree size {size}")
    return _path(leaf_hashes[:size], index)


def _path(d: Sequence[bytes], m: int) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(d[:k], m), root_from_leaf_hashes(d[k:])]
    return [*_path(d[k:], m - k), root_from_leaf_hashes(d[:k])]


def consistency_proof(leaf_hashes: Sequence[bytes], old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]); empty when old is 0 or old == new (nothing to prove)."""
    _check_size("old size", old)
    _check_size("new size", new)
    if new > len(leaf_hashes):
        raise MalformedError(f"tree size {new} exceeds the {len(leaf_hashes)} leaves given")
    if old > new:
        raise MalformedError(f"old size {old} is greater than new size {new}")
    if old in (0, new):
        return []
    return _subproof(leaf_hashes[:new], old, True)


def _subproof(d: Sequence[bytes], m: int, whole: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if whole else [root_from_leaf_hashes(d)]
    k = _split(n)
    if m <= k:
        return [*_subproof(d[:k], m, whole), root_from_leaf_hashes(d[k:])]
    return [*_subproof(d[k:], m - k, False), root_from_leaf_hashes(d[:k])]


# --- proofs from stored hashes ----------------------------------------------------------


def range_nodes(start: int, end: int) -> tuple[Node, ...]:
    """The complete subtrees, left to right, whose right fold is MTH(D[start:end]).

    `[start, end)` must be a range RFC 6962 hashes as one subtree: `start` a multiple of
    the smallest power of two >= `end - start`. Its hash is
    `node_hash(h0, node_hash(h1, ... hk))` over the returned nodes' hashes.
    """
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return tuple(nodes)


def _fold(reader: HashReader, nodes: Sequence[Node]) -> bytes:
    if not nodes:
        return EMPTY_ROOT
    acc = reader.get(*nodes[-1])
    for level, index in reversed(nodes[:-1]):
        acc = node_hash(reader.get(level, index), acc)
    return acc


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[Node, ...]]:
    """For each hash of PATH(index, size), bottom up, the stored nodes it folds (`range_nodes`).

    Lets a server fetch every stored hash a proof needs in one batch before hashing.
    """
    _check_size("size", size)
    _check_size("index", index)
    if index >= size:
        raise MalformedError(f"leaf index {index} is not below tree size {size}")
    out: list[tuple[Node, ...]] = []
    lo, hi = 0, size
    while hi - lo > 1:  # walk down from the root, recording siblings top down
        k = _split(hi - lo)
        if index < lo + k:
            out.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            out.append(range_nodes(lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_proof_nodes(old: int, new: int) -> list[tuple[Node, ...]]:
    """For each hash of PROOF(old, new), in proof order, the stored nodes it folds."""
    _check_size("old size", old)
    _check_size("new size", new)
    if old > new:
        raise MalformedError(f"old size {old} is greater than new size {new}")
    if old in (0, new):
        return []
    out: list[tuple[Node, ...]] = []
    lo, hi, whole = 0, new, True
    while old != hi:
        k = _split(hi - lo)
        if old - lo <= k:
            out.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            out.append(range_nodes(lo, lo + k))
            lo, whole = lo + k, False
    if not whole:
        out.append(range_nodes(lo, hi))
    out.reverse()
    return out


def root_from(reader: HashReader, size: int) -> bytes:
    """MTH of the first `size` leaves, from stored hashes (at most 64 reads)."""
    _check_size("size", size)
    return _fold(reader, range_nodes(0, size))


def inclusion_proof_from(reader: HashReader, index: int, size: int) -> list[bytes]:
    """The inclusion proof of `inclusion_proof`, read from stored hashes."""
    return [_fold(reader, nodes) for nodes in inclusion_proof_nodes(index, size)]


def consistency_proof_from(reader: HashReader, old: int, new: int) -> list[bytes]:
    """The consistency proof of `consistency_proof`, read from stored hashes."""
    return [_fold(reader, nodes) for nodes in consistency_proof_nodes(old, new)]


def append_hashes(reader: HashReader, size: int, new_leaf_hashes: Sequence[bytes]) -> dict[Node, bytes]:
    """Every stored hash that appending `new_leaf_hashes` at `size` creates, in creation order.

    Reads from `reader` only nodes complete before the append; one call handles a whole
    batch, so a log can integrate many entries with one tree update.
    """
    _check_size("size", size)
    new: dict[Node, bytes] = {}
    known = new.get  # a left sibling is mostly one this append made: looked up there first
    for index, h in enumerate(new_leaf_hashes, size):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise MalformedError(f"leaf hash must be {HASH_SIZE} bytes")
        level = 0
        new[(0, index)] = h
        while index & 1:  # a right child completes its parent
            left = known((level, index - 1))
            if left is None:
                left = reader.get(level, index - 1)
            h = sha256(_NODE_PREFIX + left + h)  # node_hash(left, h)
            level, index = level + 1, index >> 1
            new[(level, index)] = h
    return new


class MemoryHashStore:
    """An in-memory `HashReader` that grows by appends: for tests, witnesses and small logs."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._hashes: dict[Node, bytes] = {}
        self.size = 0
        self.append(list(leaf_hashes))

    def append(self, leaf_hashes: Sequence[bytes]) -> None:
        self._hashes.update(append_hashes(self, self.size, leaf_hashes))
        self.size += len(leaf_hashes)

    def get(self, level: int, index: int) -> bytes:
        try:
            return self._hashes[(level, index)]
        except KeyError:
            raise ProofError(f"no stored hash at level {level} index {index}") from None

    def root(self) -> bytes:
        return root_from(self, self.size)


# --- verification (RFC 9162 section 2.1.3.2 and 2.1.4.2) ---------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes")


def _check_proof(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        _check_hash(f"proof hash {i}", h)


def _inclusion_length(index: int, size: int) -> int:
    # Paths to `index` and to `size - 1` share their top; below the split point every level
    # contributes one hash ("inner"), above it only the levels where `index` is a right child.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _lsb(x: int) -> bool:
    return bool(x & 1)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for `leaf` at `index` in a tree of `size` (RFC 9162 2.1.3.2)."""
    _check_size("size", size, ProofError)
    _check_size("index", index, ProofError)
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf)
    _check_proof(proof)
    want = _inclusion_length(index, size)
    if len(proof) != want:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, expected {want}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path")
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            while not _lsb(fn) and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise `ProofError` unless `proof` shows `leaf` at `index` in the tree (`size`, `root`)."""
    _check_hash("root hash", root)
    # Roots and proofs are public, so a plain comparison leaks nothing worth a constant-time one.
    if root_from_inclusion(leaf, index, size, proof) != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def root_from_consistency(old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]) -> bytes:
    """Check `proof` against `old_root` and return the new root it implies (0 < old < new)."""
    _check_size("new size", new_size, ProofError)
    if not isinstance(old_size, int) or not 0 < old_size < new_size:
        raise ProofError("root_from_consistency needs 0 < old size < new size")
    _check_hash("old root", old_root)
    _check_proof(proof)
    if not proof:
        raise ProofError("consistency proof is empty")
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    want = _inclusion_length(old_size - 1, new_size) - shift
    if old_size != 1 << shift:
        want += 1  # the proof starts with the old tree's largest right-edge subtree
    if len(proof) != want:
        raise ProofError(f"consistency proof has {len(proof)} hashes, expected {want}")
    path = list(proof)
    if old_size == 1 << shift:  # a complete old tree is its own first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while _lsb(fn):
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path")
        if _lsb(fn) or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not _lsb(fn) and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    return sr


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise `ProofError` unless `proof` shows tree (`old_size`, `old_root`) is a prefix of the new one.

    An empty old tree is a prefix of every tree, so `old_size == 0` needs an empty proof and
    `old_root == EMPTY_ROOT`; equal sizes need an empty proof and equal roots.
    """
    _check_size("old size", old_size, ProofError)
    _check_size("new size", new_size, ProofError)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is greater than new size {new_size}")
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        # The empty tree has exactly one root; any other value is a false claim. The new
        # root is otherwise unconstrained here, so at least refuse what cannot be a hash.
        if old_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree must be SHA-256 of the empty string")
        _check_hash("new root", new_root)
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree must be SHA-256 of the empty string")
        return
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("trees of equal size have different roots")
        return
    _check_hash("new root", new_root)
    if root_from_consistency(old_size, new_size, old_root, proof) != new_root:
        raise ProofError("consistency proof does not lead to the new root")
