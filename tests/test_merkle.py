"""RFC 6962 / 9162 Merkle trees: transparency-dev vectors, stored-hash addressing, properties."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import merkle as m
from liaison.crypto.errors import MalformedError, ProofError

VECTORS = Path(__file__).parent / "vectors"
TDEV = VECTORS / "transparency-dev-merkle" / "testdata"
TREE = json.loads((VECTORS / "rfc6962-tree" / "tree.json").read_text())


def _b64(text: str) -> bytes:
    # The vectors are Go []byte fields, so empty byte strings appear as "".
    return base64.b64decode(text) if text else b""


def _vector_files(kind: str) -> list[Path]:
    return sorted((TDEV / kind).rglob("*.json"))


def _id(path: Path) -> str:
    return str(path.relative_to(TDEV))


# --- transparency-dev/merkle vectors -----------------------------------------------------


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_id)
def test_inclusion_vectors(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    args = (
        _b64(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        [_b64(p) for p in v["proof"] or []],
        _b64(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            m.verify_inclusion(*args)
    else:
        m.verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=_id)
def test_consistency_vectors(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    args = (
        v["size1"],
        v["size2"],
        _b64(v["root1"]),
        _b64(v["root2"]),
        [_b64(p) for p in v["proof"] or []],
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            m.verify_consistency(*args)
    else:
        m.verify_consistency(*args)


def test_vector_sets_are_all_there() -> None:
    inclusion, consistency = _vector_files("inclusion"), _vector_files("consistency")
    assert len(inclusion) == 98 and len(consistency) == 98
    valid = [p for p in inclusion + consistency if not json.loads(p.read_text())["wantErr"]]
    assert 10 <= len(valid) < len(inclusion + consistency) // 4  # invalid cases dominate


# --- the RFC 6962 reference tree (transparency-dev/merkle testonly) ----------------------

LEAVES = [bytes.fromhex(x) for x in TREE["leaves_hex"]]
LEAF_HASHES = [m.leaf_hash(x) for x in LEAVES]
ROOTS = [bytes.fromhex(x) for x in TREE["root_hashes_hex"]]


def test_empty_root_and_reference_roots() -> None:
    assert m.EMPTY_ROOT == ROOTS[0] == m.root_from_leaf_hashes([])
    for n, root in enumerate(ROOTS):
        assert m.root_from_leaf_hashes(LEAF_HASHES[:n]) == root
        assert m.root_from(m.MemoryHashStore(LEAF_HASHES[:n]), n) == root


def test_stored_hash_addressing_matches_reference_node_hashes() -> None:
    store = m.MemoryHashStore(LEAF_HASHES)
    for level, row in enumerate(TREE["node_hashes_hex"]):
        for index, h in enumerate(row):
            assert store.get(level, index) == bytes.fromhex(h)
    with pytest.raises(ProofError):
        store.get(3, 1)  # leaves 8..15 do not exist


def test_leaf_and_node_prefixes() -> None:
    assert m.leaf_hash(b"") == bytes.fromhex(TREE["node_hashes_hex"][0][0])
    assert m.node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]
    # Domain separation: a node is never a leaf of the concatenated children.
    assert m.leaf_hash(LEAF_HASHES[0] + LEAF_HASHES[1]) != ROOTS[2]


def test_append_hashes_creates_exactly_the_new_complete_subtrees() -> None:
    store = m.MemoryHashStore(LEAF_HASHES[:3])
    new = m.append_hashes(store, 3, LEAF_HASHES[3:6])
    assert list(new) == [(0, 3), (1, 1), (2, 0), (0, 4), (0, 5), (1, 2)]
    with pytest.raises(MalformedError):
        m.append_hashes(store, 3, [b"short"])


# --- every (index, size) and (old, new) on one random tree -------------------------------

RNG_LEAVES = [m.leaf_hash(i.to_bytes(4, "big") * 3) for i in range(300)]
RNG_STORE = m.MemoryHashStore(RNG_LEAVES)
RNG_ROOTS = [m.root_from(RNG_STORE, n) for n in range(301)]


def test_root_from_reader_equals_list_root_for_every_size() -> None:
    for n in range(301):
        assert RNG_ROOTS[n] == m.root_from_leaf_hashes(RNG_LEAVES[:n])


def test_every_inclusion_proof_verifies() -> None:
    for size in range(1, 301):
        for index in range(size):
            proof = m.inclusion_proof_from(RNG_STORE, index, size)
            m.verify_inclusion(RNG_LEAVES[index], index, size, proof, RNG_ROOTS[size])


def test_every_consistency_proof_verifies() -> None:
    for new in range(0, 301):
        for old in range(0, new + 1):
            proof = m.consistency_proof_from(RNG_STORE, old, new)
            m.verify_consistency(old, new, RNG_ROOTS[old], RNG_ROOTS[new], proof)


def test_list_proofs_equal_reader_proofs_on_small_trees() -> None:
    for size in range(1, 48):
        for i in range(size):
            assert m.inclusion_proof(RNG_LEAVES, i, size) == m.inclusion_proof_from(RNG_STORE, i, size)
        for old in range(size + 1):
            assert m.consistency_proof(RNG_LEAVES, old, size) == m.consistency_proof_from(
                RNG_STORE, old, size
            )


# --- properties on random trees ----------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=300)


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_inclusion_proofs_verify_and_any_alteration_fails(leaves: list[bytes], data: Any) -> None:
    hashes = [m.leaf_hash(x) for x in leaves]
    size = data.draw(st.integers(1, len(hashes)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = m.root_from_leaf_hashes(hashes[:size])
    proof = m.inclusion_proof(hashes, index, size)
    assert proof == m.inclusion_proof_from(m.MemoryHashStore(hashes), index, size)
    m.verify_inclusion(hashes[index], index, size, proof, root)

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        m.verify_inclusion(_flip(hashes[index], bit), index, size, proof, root)
    with pytest.raises(ProofError):
        m.verify_inclusion(hashes[index], index, size, proof, _flip(root, bit))
    for i in range(len(proof)):
        bad = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            m.verify_inclusion(hashes[index], index, size, bad, root)
    with pytest.raises(ProofError):
        m.verify_inclusion(hashes[index], index, size, [*proof, root], root)
    if proof:
        with pytest.raises(ProofError):
            m.verify_inclusion(hashes[index], index, size, proof[:-1], root)
    other = data.draw(st.integers(0, size - 1), label="other index")
    if hashes[other] != hashes[index]:
        with pytest.raises(ProofError):
            m.verify_inclusion(hashes[other], index, size, proof, root)


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_consistency_proofs_verify_and_any_alteration_fails(leaves: list[bytes], data: Any) -> None:
    hashes = [m.leaf_hash(x) for x in leaves]
    new = data.draw(st.integers(1, len(hashes)), label="new")
    old = data.draw(st.integers(1, new), label="old")
    old_root, new_root = m.root_from_leaf_hashes(hashes[:old]), m.root_from_leaf_hashes(hashes[:new])
    proof = m.consistency_proof(hashes, old, new)
    assert proof == m.consistency_proof_from(m.MemoryHashStore(hashes), old, new)
    m.verify_consistency(old, new, old_root, new_root, proof)
    if old == new:
        return
    assert m.root_from_consistency(old, new, old_root, proof) == new_root

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        m.verify_consistency(old, new, _flip(old_root, bit), new_root, proof)
    with pytest.raises(ProofError):
        m.verify_consistency(old, new, old_root, _flip(new_root, bit), proof)
    for i in range(len(proof)):
        bad = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            m.verify_consistency(old, new, old_root, new_root, bad)
    with pytest.raises(ProofError):
        m.verify_consistency(old, new, old_root, new_root, proof[:-1])
    with pytest.raises(ProofError):
        m.verify_consistency(old, new, old_root, new_root, [*proof, new_root])
    with pytest.raises(ProofError):
        m.verify_consistency(new, old, new_root, old_root, proof)


@settings(max_examples=40, deadline=None)
@given(leaves=leaf_lists, extra=st.lists(st.binary(max_size=4), max_size=40))
def test_batched_appends_equal_one_store(leaves: list[bytes], extra: list[bytes]) -> None:
    store = m.MemoryHashStore([m.leaf_hash(x) for x in leaves])
    store.append([m.leaf_hash(x) for x in extra])
    everything = [m.leaf_hash(x) for x in leaves + extra]
    assert store.size == len(everything)
    assert store.root() == m.root_from_leaf_hashes(everything)


# --- arguments and specific errors -------------------------------------------------------


def test_builders_refuse_bad_arguments() -> None:
    with pytest.raises(MalformedError, match="not below tree size"):
        m.inclusion_proof(RNG_LEAVES, 5, 5)
    with pytest.raises(MalformedError, match="exceeds"):
        m.inclusion_proof(RNG_LEAVES, 0, 301)
    with pytest.raises(MalformedError, match="greater than"):
        m.consistency_proof(RNG_LEAVES, 6, 5)
    with pytest.raises(MalformedError, match="greater than"):
        m.consistency_proof_from(RNG_STORE, 6, 5)
    with pytest.raises(MalformedError):
        m.inclusion_proof_from(RNG_STORE, -1, 5)
    with pytest.raises(MalformedError):
        m.root_from(RNG_STORE, 1 << 64)
    assert m.consistency_proof(RNG_LEAVES, 0, 7) == m.consistency_proof(RNG_LEAVES, 7, 7) == []


def test_verification_messages_name_the_failed_check() -> None:
    root, leaf = RNG_ROOTS[10], RNG_LEAVES[3]
    proof = m.inclusion_proof_from(RNG_STORE, 3, 10)
    with pytest.raises(ProofError, match="not below tree size"):
        m.verify_inclusion(leaf, 10, 10, proof, root)
    with pytest.raises(ProofError, match="leaf hash must be 32 bytes"):
        m.verify_inclusion(leaf[:31], 3, 10, proof, root)
    with pytest.raises(ProofError, match="proof hash 1 must be 32 bytes"):
        m.verify_inclusion(leaf, 3, 10, [proof[0], b"", *proof[2:]], root)
    with pytest.raises(ProofError, match="has 3 hashes, expected 4"):
        m.verify_inclusion(leaf, 3, 10, proof[:3], root)
    with pytest.raises(ProofError, match="expected root"):
        m.verify_inclusion(leaf, 3, 10, proof, RNG_ROOTS[9])
    cproof = m.consistency_proof_from(RNG_STORE, 6, 10)
    with pytest.raises(ProofError, match="empty"):
        m.verify_consistency(6, 10, RNG_ROOTS[6], root, [])
    with pytest.raises(ProofError, match="old root"):
        m.verify_consistency(6, 10, RNG_ROOTS[5], root, cproof)
    with pytest.raises(ProofError, match="new root"):
        m.verify_consistency(6, 10, RNG_ROOTS[6], RNG_ROOTS[9], cproof)
    with pytest.raises(ProofError, match="equal size"):
        m.verify_consistency(6, 6, RNG_ROOTS[6], RNG_ROOTS[5], [])


def test_empty_old_tree_is_consistent_with_every_tree() -> None:
    m.verify_consistency(0, 0, m.EMPTY_ROOT, m.EMPTY_ROOT, [])
    m.verify_consistency(0, 9, m.EMPTY_ROOT, RNG_ROOTS[9], [])
    with pytest.raises(ProofError, match="must be empty"):
        m.verify_consistency(0, 9, m.EMPTY_ROOT, RNG_ROOTS[9], [RNG_ROOTS[9]])
    with pytest.raises(ProofError, match="empty tree"):
        m.verify_consistency(0, 9, RNG_ROOTS[1], RNG_ROOTS[9], [])
