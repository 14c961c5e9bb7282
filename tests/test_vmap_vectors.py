"""The directory map vectors (tests/vectors/directory-map, protocol 9.5): liaison.crypto.vmap
computes every key, hash, root and proof they hold, refuses every invalid proof with its error,
and the independent generator rewrites them byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from liaison.crypto import errors
from liaison.crypto import vmap as v
from liaison.crypto.encoding import b64url_decode as d

HERE = Path(__file__).parent / "vectors" / "directory-map"
VECTORS: dict[str, Any] = json.loads((HERE / "vectors.json").read_text())
PROOFS: list[dict[str, Any]] = VECTORS["proofs"]
MAPS = {r["name"]: {d(i["key"]): d(i["value"]) for i in r["items"]} for r in VECTORS["roots"]}


def test_there_are_as_many_invalid_proofs_as_valid_ones() -> None:
    valid = [p for p in PROOFS if "error" not in p["expect"]]
    invalid = [p for p in PROOFS if "error" in p["expect"]]
    assert len(invalid) >= len(valid) >= 6
    kinds = {("value" in p["expect"], p["proof"]["leaf"] is None) for p in valid}
    assert kinds == {(True, False), (False, True), (False, False)}  # present; absent: empty, other leaf


def test_map_keys() -> None:
    for case in VECTORS["map_key"]:
        assert v.map_key(case["nation"], case["record"]) == d(case["key"]), case


def test_leaf_and_inner_hashes() -> None:
    for case in VECTORS["leaf_hash"]:
        assert v.leaf_hash(d(case["key"]), d(case["value"])) == d(case["hash"])
    for case in VECTORS["inner_hash"]:
        assert v.inner_hash(d(case["left"]), d(case["right"])) == d(case["hash"])


@pytest.mark.parametrize("case", VECTORS["roots"], ids=[r["name"] for r in VECTORS["roots"]])
def test_roots(case: dict[str, Any]) -> None:
    items = MAPS[case["name"]]
    root = d(case["root"])
    assert v.root_of(items) == root
    assert v.PersistentMap.from_items(items).root() == root
    m = v.PersistentMap()
    for k, val in reversed(list(items.items())):
        m = m.set(k, val)
    assert m.root() == root


@pytest.mark.parametrize("case", PROOFS, ids=[p["name"] for p in PROOFS])
def test_proof(case: dict[str, Any]) -> None:
    root, key, expect = d(case["root"]), d(case["key"]), case["expect"]
    if "error" in expect:
        wanted = getattr(errors, expect["error"])
        with pytest.raises(wanted):
            v.verify_proof(root, key, v.MapProof.from_json(case["proof"]))
        if wanted is errors.ProofError:  # it parses: only verification refuses it
            assert v.MapProof.from_json(case["proof"]).to_json() == case["proof"]
        return
    proof = v.MapProof.from_json(case["proof"])
    assert proof.to_json() == case["proof"]
    got = v.verify_proof(root, key, proof)
    assert got == (d(expect["value"]) if "value" in expect else None)
    # The module's own proof, from the same map, is the vector's proof.
    m = v.PersistentMap.from_items(MAPS[case["map"]])
    assert m.root() == root
    assert m.prove(key) == proof


def test_the_generator_rewrites_the_vectors_byte_for_byte(tmp_path: Path) -> None:
    gen = [sys.executable, str(HERE / "generate.py")]
    subprocess.run([*gen, "--check"], check=True, capture_output=True, timeout=60)
    subprocess.run([*gen, "--out", str(tmp_path)], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "vectors.json").read_bytes() == (HERE / "vectors.json").read_bytes()
