"""The verifiable directory's map (protocol 9.5): a sparse binary prefix tree, its proofs, versions."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._primitives import bytes_eq, sha256, sha256_of
from .encoding import b64url_decode, b64url_encode
from .errors import MalformedError, ProofError

__all__ = [
    "EMPTY",
    "KEY_BYTES",
    "RANGE_BITS",
    "MapProof",
    "PersistentMap",
    "inner_hash",
    "leaf_hash",
    "map_key",
    "range_siblings",
    "root_of",
    "subtree_hash",
    "verify_proof",
    "verify_range",
]

KEY_BYTES = 32
_KEY_BITS = 8 * KEY_BYTES

#: The hash of an empty subtree. Not a SHA-256 output anyone can produce, so an empty subtree
#: can never be confused with a leaf or an inner node.
EMPTY = bytes(32)

# 0x10 and 0x11, not RFC 6962's 0x00 and 0x01: a map node can then never be passed off as an
# audit-log node (or the reverse), although both trees are SHA-256 over 32-byte children.
_LEAF = b"\x10"
_INNER = b"\x11"


def map_key(nation: str, record: str) -> bytes:
    """SHA-256(UTF-8(nation))[:2] || SHA-256(UTF-8(record))[:30]: the record's 256-bit key.

    The 16-bit nation prefix puts each nation's records in one contiguous key range, so a
    nation admin can monitor its range; the rest names the record (`*` for roots, policy and
    channels).
    """
    try:
        n, r = nation.encode("utf-8"), record.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise MalformedError("map_key: nation and record must be strings of valid Unicode") from None
    return sha256(n)[:2] + sha256(r)[:30]


def leaf_hash(key: bytes, value: bytes) -> bytes:
    """SHA-256(0x10 || key || value): binds the key, so a leaf proves where it belongs.

    Domain-separated from inner nodes (0x11), so a leaf can never stand in for a subtree (and
    a record cannot have two answers under one root); and from RFC 6962 (0x00/0x01), so no
    audit-log hash is ever a map hash.
    """
    _check32(key, "key", MalformedError)
    _check32(value, "value", MalformedError)
    return _leaf(key, value)


def inner_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x11 || left || right): an inner node; its 0x11 prefix keeps it apart from a leaf
    (0x10) and from RFC 6962's interior nodes (0x01)."""
    _check32(left, "left", MalformedError)
    _check32(right, "right", MalformedError)
    return _inner(left, right)


def root_of(items: Mapping[bytes, bytes]) -> bytes:
    """The root of the map holding `items`, computed from scratch exactly as 9.5 defines H.

    Deliberately independent of `PersistentMap` (one recursion step per bit, no path
    compression): tests compare the two, and an auditor replaying the leaf history needs
    nothing else.
    """
    return subtree_hash(items, 0)


def subtree_hash(items: Mapping[bytes, bytes], depth: int) -> bytes:
    """H of `items` as the subtree at `depth` that holds exactly them (9.5): all their keys
    must share their first `depth` bits (not checked here; `verify_range` does)."""
    pairs = sorted((_to_int(k), _value(v)) for k, v in _checked_items(items))
    keys = [k for k, _ in pairs]
    values = [v for _, v in pairs]

    def h(lo: int, hi: int, d: int) -> bytes:
        if lo == hi:
            return EMPTY
        if hi - lo == 1:
            return _leaf(keys[lo].to_bytes(KEY_BYTES, "big"), values[lo])
        mid = bisect_left(keys, _threshold(keys[lo], d), lo, hi)
        return _inner(h(lo, mid, d + 1), h(mid, hi, d + 1))

    return h(0, len(keys), depth)


#: A nation's range: the first 16 bits of its records' keys (9.5).
RANGE_BITS = 16


def range_siblings(proof: MapProof) -> tuple[bytes, ...]:
    """The siblings along a range's prefix, from the proof of any key in a range that holds
    at least two leaves (its terminal then lies deeper than the prefix)."""
    if len(proof.siblings) <= RANGE_BITS:
        raise ProofError("this proof does not reach below the range's prefix")
    return proof.siblings[:RANGE_BITS]


def verify_range(root: bytes, prefix: bytes, items: Mapping[bytes, bytes], siblings: Sequence[bytes]) -> None:
    """Check that `items` are exactly the leaves under the 16-bit `prefix` of the map of
    `root` (ProofError otherwise): every key carries the prefix, there are at least two (a
    range of one or none would sit higher, compressed), and their subtree's hash with
    `siblings` (depth 0 first) recomputes the root. A leaf withheld, added or changed in the
    range changes the subtree's hash: this is how a nation admin monitors its whole range."""
    if len(prefix) * 8 != RANGE_BITS or len(siblings) != RANGE_BITS:
        raise ProofError("a range proof has a 2-byte prefix and 16 siblings")
    for s in siblings:
        _check32(s, "sibling", ProofError)
    if len(items) < 2:
        raise ProofError("a range proof needs at least two leaves in the range")
    if any(bytes(k[:2]) != prefix for k in items):
        raise ProofError("a leaf of the range proof lies outside the range")
    h = subtree_hash(items, RANGE_BITS)
    p = int.from_bytes(prefix, "big")
    for i in range(RANGE_BITS - 1, -1, -1):
        bit = (p >> (RANGE_BITS - 1 - i)) & 1
        h = _inner(siblings[i], h) if bit else _inner(h, siblings[i])
    if not bytes_eq(h, root):
        raise ProofError("the range's leaves and siblings do not recompute the map's root")


@dataclass(frozen=True)
class MapProof:
    """A key's path in the map: `siblings[i]` is the hash of the subtree under the key's first
    i bits followed by the opposite of its bit i; `leaf` is the lone leaf found at depth
    `len(siblings)`, or None if that subtree is empty."""

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None

    def to_json(self) -> dict[str, Any]:
        """`{"siblings": [...], "leaf": null | {"key", "value"}}`, EMPTY written as "" (most
        siblings of a sparse tree are empty: this keeps proofs small)."""
        leaf = (
            None
            if self.leaf is None
            else {"key": b64url_encode(self.leaf[0]), "value": b64url_encode(self.leaf[1])}
        )
        return {"siblings": ["" if s == EMPTY else b64url_encode(s) for s in self.siblings], "leaf": leaf}

    @classmethod
    def from_json(cls, obj: Any) -> MapProof:
        """Parse a proof strictly: exactly the two members, at most 256 siblings, canonical
        base64url of 32 bytes, and EMPTY only as "" (one proof, one encoding: no malleability).
        MalformedError otherwise."""
        _members(obj, ("leaf", "siblings"), "map proof")
        raw = obj["siblings"]
        if not isinstance(raw, list):
            raise MalformedError("map proof: siblings must be a list")
        if len(raw) > _KEY_BITS:
            raise MalformedError(f"map proof: {len(raw)} siblings, at most {_KEY_BITS}")
        siblings = tuple(_sibling(s, i) for i, s in enumerate(raw))
        leaf = obj["leaf"]
        if leaf is None:
            return cls(siblings, None)
        _members(leaf, ("key", "value"), "map proof leaf")
        return cls(siblings, (_hash32(leaf["key"], "leaf key"), _hash32(leaf["value"], "leaf value")))


def verify_proof(root: bytes, key: bytes, proof: MapProof) -> bytes | None:
    """The value `key` holds under `root`, or None if the proof shows it absent; ProofError if
    the proof does not recompute `root` or is not a presence or absence proof for `key`.

    The terminal leaf must share the key's first d bits: without that check a server that
    signs the root of a tree it built wrongly could show another record's leaf as the
    answer for this key. With it, and the leaf/inner/EMPTY separation, a root gives at most
    one answer per key.
    """
    _check32(root, "root", ProofError)
    _check32(key, "key", ProofError)
    siblings = proof.siblings
    if not isinstance(siblings, tuple | list) or len(siblings) > _KEY_BITS:
        raise ProofError(f"map proof: more than {_KEY_BITS} siblings")
    for i, s in enumerate(siblings):
        _check32(s, f"sibling {i}", ProofError)
    k = _to_int(key)
    d = len(siblings)
    value: bytes | None = None
    if proof.leaf is None:
        h = EMPTY
    else:
        if not isinstance(proof.leaf, tuple) or len(proof.leaf) != 2:
            raise ProofError("map proof: leaf must be a (key, value) pair")
        lk, lv = proof.leaf
        _check32(lk, "leaf key", ProofError)
        _check32(lv, "leaf value", ProofError)
        if _first_diff(k, _to_int(lk)) < d:
            raise ProofError(f"map proof: the terminal leaf is not under the key's first {d} bits")
        h = _leaf(lk, lv)
        value = lv if lk == key else None
    for i in range(d - 1, -1, -1):
        h = _inner(siblings[i], h) if (k >> (_KEY_BITS - 1 - i)) & 1 else _inner(h, siblings[i])
    if not bytes_eq(h, root):
        raise ProofError("map proof does not recompute the map root")
    return value


# --- the persistent map -----------------------------------------------------------------
#
# A path-compressed (crit-bit) trie whose hashes are exactly 9.5's. A leaf node's hash is
# leaf(k, v) wherever it sits (a lone leaf sits as high as it can). An inner node splits at
# `bit` s, the first bit where its keys differ, and holds H of its subtree at depth s. Seen
# from a parent that splits at p - 1 (from the root: p = 0), its subtree's prefix is p bits
# long and every key shares bits p .. s-1, so 9.5's H there is that hash lifted through
# inner(h, EMPTY) or inner(EMPTY, h) for each skipped bit: `_lift`. A node can be shared by
# versions whose parents split at different depths, so the lifted hashes are kept by the
# parent (`left_up`, `right_up`), computed once when the parent is made.


# Nodes are plain tuples, not objects: the cyclic garbage collector stops tracking a tuple once
# everything in it is untracked (bytes, ints, tuples it has already stopped tracking), so the
# leaves leave its scans at the first collection that sees them and each level above at a
# later one, where objects stayed tracked for good. The map's long-lived nodes (every kept
# version's, each batch adding its paths) then cost collections less: `set_many` of 64 leaves
# into 30,000 with 256 versions kept, under the default collector settings, took 3.8 ms with
# objects and 2.2 ms with tuples (1.8 and 1.6 ms with the collector off).
#
#   a leaf:  (KEY_BITS, rep, hash, key, value): a lone leaf, its key as an integer and as
#            bytes, leaf(key, value). It never splits: every bit of its one key is shared.
#   inner:   (bit, rep, hash, left, right, left_up, right_up): keys that differ first at
#            `bit`; `rep` any key below (all share the bits above `bit`), H at that depth, and
#            the children lifted to bit + 1.
_BIT, _REP, _HASH = 0, 1, 2
_KEY, _VALUE = 3, 4  # a leaf's
_LEFT, _RIGHT, _LEFT_UP, _RIGHT_UP = 3, 4, 5, 6  # an inner node's

_Node = tuple[Any, ...]


def _new_leaf(rep: int, key: bytes, value: bytes) -> _Node:
    return (_KEY_BITS, rep, _leaf(key, value), key, value)


def _new_inner(bit: int, left: _Node, right: _Node, left_up: bytes, right_up: bytes) -> _Node:
    return (bit, left[_REP], _inner(left_up, right_up), left, right, left_up, right_up)


class PersistentMap:
    """Immutable map with structural sharing: set() returns a new map, old ones stay valid (versions)."""

    __slots__ = ("_count", "_root", "_root_hash")

    def __init__(self) -> None:
        """The empty map (root EMPTY)."""
        self._root: _Node | None = None
        self._count = 0
        self._root_hash = EMPTY

    @classmethod
    def _of(cls, root: _Node | None, count: int) -> PersistentMap:
        m = cls()
        m._root, m._count = root, count
        m._root_hash = EMPTY if root is None else _up(root, 0)
        return m

    @classmethod
    def from_items(cls, items: Mapping[bytes, bytes]) -> PersistentMap:
        """A map holding `items`, built bottom-up in one pass (each node hashed once)."""
        batch = _Batch(items)
        root = batch.build(0, len(batch.ks)) if batch.ks else None
        return cls._of(root, len(batch.ks))

    def root(self) -> bytes:
        """The map root (cached): EMPTY for an empty map."""
        return self._root_hash

    def get(self, key: bytes) -> bytes | None:
        """The value at `key`, or None."""
        _check32(key, "key", MalformedError)
        node = self._root
        if node is None:
            return None
        k = _to_int(key)
        while (bit := node[_BIT]) != _KEY_BITS:
            node = node[_RIGHT] if (k >> (_KEY_BITS - 1 - bit)) & 1 else node[_LEFT]
        value: bytes = node[_VALUE]
        return value if node[_KEY] == key else None

    def set_many(self, items: Mapping[bytes, bytes]) -> PersistentMap:
        """A new version with these leaves set (inserted or replaced); this one is unchanged.

        Only the paths to the written keys are new, each new node hashed once however many
        keys of the batch lie below it. If nothing changes, returns this map.
        """
        return self._merged(_Batch(items))

    def set_changes(self, items: Mapping[bytes, bytes]) -> tuple[PersistentMap, dict[bytes, bytes]]:
        """`set_many`, and the items that changed something (a new key, or a new value for
        one): what a writer records as the new version's leaves, found by the same walk."""
        batch = _Batch(items)
        new = self._merged(batch)
        if new is self:
            return self, {}
        return new, {batch.keys[i]: batch.values[i] for i in sorted(batch.changed)}

    def _merged(self, batch: _Batch) -> PersistentMap:
        """This map with `batch`'s items set; this map itself if that changes nothing."""
        if not batch.ks:
            return self
        root = batch.merge(self._root, 0, len(batch.ks))
        return self if root is self._root else PersistentMap._of(root, self._count + batch.added)

    def set(self, key: bytes, value: bytes) -> PersistentMap:
        """A new version with `key` set to `value` (see set_many)."""
        return self.set_many({key: value})

    def prove(self, key: bytes) -> MapProof:
        """The proof of `key`'s value, or of its absence, under this version's root."""
        _check32(key, "key", MalformedError)
        k = _to_int(key)
        siblings: list[bytes] = []
        node, p = self._root, 0
        while node is not None:
            s = node[_BIT]
            if s == _KEY_BITS:
                return MapProof(tuple(siblings), (node[_KEY], node[_VALUE]))
            c = _first_diff(k, node[_REP])
            if c < s:
                # The key leaves this node's prefix at bit c: the subtree it enters is empty,
                # and its sibling is this node lifted to depth c + 1.
                siblings.extend([EMPTY] * (c - p))
                siblings.append(_lift(node[_HASH], node[_REP], s, c + 1))
                return MapProof(tuple(siblings), None)
            siblings.extend([EMPTY] * (s - p))
            if (k >> (_KEY_BITS - 1 - s)) & 1:
                siblings.append(node[_LEFT_UP])
                node = node[_RIGHT]
            else:
                siblings.append(node[_RIGHT_UP])
                node = node[_LEFT]
            p = s + 1
        return MapProof(tuple(siblings), None)

    def __len__(self) -> int:
        return self._count

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), in increasing key order."""
        stack = [] if self._root is None else [self._root]
        while stack:
            node = stack.pop()
            if node[_BIT] == _KEY_BITS:
                yield node[_KEY], node[_VALUE]
            else:
                stack.append(node[_RIGHT])
                stack.append(node[_LEFT])


class _Batch:
    """Checked items sorted by key, and the two ways of turning a range of them into a subtree."""

    def __init__(self, items: Mapping[bytes, bytes]) -> None:
        rows = sorted((_to_int(k), k, _value(v)) for k, v in _checked_items(items))
        self.ks = [r[0] for r in rows]
        self.keys = [r[1] for r in rows]
        self.values = [r[2] for r in rows]
        self.added = 0  # keys that merge() inserted rather than replaced
        #: Positions of the items that changed the map (inserted, or a new value).
        self.changed: list[int] = []

    def build(self, lo: int, hi: int) -> _Node:
        """The subtree of items[lo:hi] (at least one)."""
        ks = self.ks
        if hi - lo == 1:
            return _new_leaf(ks[lo], self.keys[lo], self.values[lo])
        c = _first_diff(ks[lo], ks[hi - 1])  # sorted: the range's first differing bit
        mid = bisect_left(ks, _threshold(ks[lo], c), lo, hi)
        return _join(c, self.build(lo, mid), self.build(mid, hi))

    def insert(self, lo: int, hi: int) -> _Node:
        """`build` for items that are new to the map (counted and recorded as changes)."""
        self.added += hi - lo
        self.changed.extend(range(lo, hi))
        return self.build(lo, hi)

    def merge(self, node: _Node | None, lo: int, hi: int) -> _Node:
        """`node`'s subtree with items[lo:hi] set; `node` itself if that changes nothing.

        The hot path of every batch that sets leaves (`set_many`): children without items are
        kept without a call, and the first differing bit comes from the sorted range's two ends
        at once."""
        if lo == hi:
            assert node is not None  # merge() is only ever given items, or a node to keep
            return node
        if node is None:
            return self.insert(lo, hi)
        ks = self.ks
        bit, rep = node[_BIT], node[_REP]
        # The first bit where the union differs: for a sorted range, min and max bound it.
        c = _KEY_BITS - max((rep ^ ks[lo]).bit_length(), (rep ^ ks[hi - 1]).bit_length())
        if c >= bit:
            if bit == _KEY_BITS:  # a leaf, and the one item is its key
                value = self.values[lo]
                if node[_VALUE] == value:
                    return node
                self.changed.append(lo)
                return _new_leaf(rep, node[_KEY], value)
            # Every item is inside this inner node's prefix.
            mid = bisect_left(ks, _threshold(rep, bit), lo, hi)
            old_left, old_right = node[_LEFT], node[_RIGHT]
            left = old_left if mid == lo else self.merge(old_left, lo, mid)
            right = old_right if mid == hi else self.merge(old_right, mid, hi)
            if left is old_left:
                if right is old_right:
                    return node
                lu = node[_LEFT_UP]
            else:
                lu = _up(left, bit + 1)
            ru = node[_RIGHT_UP] if right is old_right else _up(right, bit + 1)
            return _new_inner(bit, left, right, lu, ru)
        # Some item leaves the node's prefix at bit c < its bit: a new node splits there.
        mid = bisect_left(ks, _threshold(rep, c), lo, hi)
        if (rep >> (_KEY_BITS - 1 - c)) & 1:
            return _join(c, self.insert(lo, mid), self.merge(node, mid, hi))
        return _join(c, self.merge(node, lo, mid), self.insert(mid, hi))


# --- helpers ----------------------------------------------------------------------------


def _leaf(key: bytes, value: bytes) -> bytes:
    return sha256_of(_LEAF + key + value)


def _inner(left: bytes, right: bytes) -> bytes:
    return sha256_of(_INNER + left + right)


def _join(bit: int, left: _Node, right: _Node) -> _Node:
    return _new_inner(bit, left, right, _up(left, bit + 1), _up(right, bit + 1))


def _up(node: _Node, p: int) -> bytes:
    """9.5's H of `node`'s subtree seen from a prefix of p bits (p <= its bit)."""
    s = node[_BIT]
    if s in (p, _KEY_BITS):  # nothing to lift over, or a leaf (its hash binds its key)
        h: bytes = node[_HASH]
        return h
    return _lift(node[_HASH], node[_REP], s, p)


def _lift(h: bytes, rep: int, s: int, p: int) -> bytes:
    """H at depth s lifted to depth p over bits p .. s-1 of `rep`, whose other sides are empty."""
    for i in range(s - 1, p - 1, -1):
        h = _inner(EMPTY, h) if (rep >> (_KEY_BITS - 1 - i)) & 1 else _inner(h, EMPTY)
    return h


def _to_int(key: bytes) -> int:
    return int.from_bytes(key, "big")


def _first_diff(a: int, b: int) -> int:
    """The index (0 = most significant) of the first bit where a and b differ; 256 if equal."""
    return _KEY_BITS - (a ^ b).bit_length()


def _threshold(k: int, d: int) -> int:
    """The least key with k's first d bits and bit d set: keys below it have bit d = 0."""
    shift = _KEY_BITS - 1 - d
    return ((k >> shift) | 1) << shift


def _check32(b: Any, name: str, error: type[Exception]) -> None:
    if not isinstance(b, bytes) or len(b) != 32:
        raise error(f"map: {name} must be 32 bytes")


def _value(v: Any) -> bytes:
    _check32(v, "value", MalformedError)
    return bytes(v)


def _checked_items(items: Mapping[bytes, bytes]) -> Iterator[tuple[bytes, bytes]]:
    for k, v in items.items():
        _check32(k, "key", MalformedError)
        yield bytes(k), v


def _members(obj: Any, names: tuple[str, ...], what: str) -> None:
    if not isinstance(obj, dict):
        raise MalformedError(f"{what} must be a JSON object")
    if tuple(sorted(obj)) != names:
        raise MalformedError(f"{what} must have exactly the members {', '.join(names)}")


def _hash32(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(f"map proof: {field} must be a base64url string")
    raw = b64url_decode(text, field=f"map proof {field}")
    if len(raw) != 32:
        raise MalformedError(f"map proof: {field} must encode 32 bytes, not {len(raw)}")
    return raw


def _sibling(text: Any, i: int) -> bytes:
    if text == "":
        return EMPTY
    raw = _hash32(text, f"sibling {i}")
    if raw == EMPTY:  # EMPTY has exactly one spelling: ""
        raise MalformedError(f'map proof: sibling {i} is EMPTY and must be written ""')
    return raw
