"""The directory map (protocol 9.5): the persistent map against the reference root, proofs, JSON."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto import vmap as v
from liaison.crypto._primitives import sha256
from liaison.crypto.encoding import b64url_encode
from liaison.crypto.errors import MalformedError, ProofError
from liaison.crypto.vmap import (
    EMPTY,
    MapProof,
    PersistentMap,
    range_siblings,
    root_of,
    verify_proof,
    verify_range,
)

NATIONS = ("FRA", "UKR", "USA", "POL", "DEU", "*")

# Keys that share long prefixes: a few bases, each with only its last `free` bits drawn, so
# that trees have long single-child chains, splits at bit 255 and whole empty nation ranges.
_BASES = (0, (1 << 256) - 1, 1 << 255, *(int.from_bytes(v.map_key(n, "x"), "big") for n in NATIONS))
_FREE = (1, 2, 3, 8, 16, 17, 64, 240, 256)


@st.composite
def keys(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(_BASES))
    free = draw(st.sampled_from(_FREE))
    tail = draw(st.integers(0, (1 << free) - 1))
    return (((base >> free) << free) | tail).to_bytes(32, "big")


values = st.binary(min_size=32, max_size=32)
item_sets = st.dictionaries(keys(), values, max_size=40)
some_items = st.dictionaries(keys(), values, min_size=1, max_size=40)
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _flip(key: bytes, bit: int) -> bytes:
    return (int.from_bytes(key, "big") ^ (1 << (255 - bit))).to_bytes(32, "big")


def _other(h: bytes) -> bytes:
    return sha256(b"other", h)


# --- the root ---------------------------------------------------------------------------


@FAST
@given(item_sets)
def test_bulk_build_matches_the_reference_root(items: dict[bytes, bytes]) -> None:
    m = PersistentMap.from_items(items)
    assert m.root() == root_of(items)
    assert len(m) == len(items)
    assert list(m.items()) == sorted(items.items())


@FAST
@given(item_sets, st.data())
def test_root_is_the_same_for_any_insertion_order_and_batching(
    items: dict[bytes, bytes], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(list(items)))
    # Earlier values that later batches overwrite: replacement must leave no trace.
    stale = data.draw(st.dictionaries(st.sampled_from(order), values) if order else st.just({}))
    m = PersistentMap().set_many(stale)
    i = 0
    while i < len(order):
        n = data.draw(st.integers(1, 8))
        batch = {k: items[k] for k in order[i : i + n]}
        m = m.set(*next(iter(batch.items()))) if n == 1 else m.set_many(batch)
        i += n
    assert m.root() == root_of(items)
    assert len(m) == len(items)
    assert dict(m.items()) == items
    for k, val in items.items():
        assert m.get(k) == val


def test_a_few_thousand_records_over_six_nations_in_random_batches() -> None:
    rnd = random.Random(7)
    items = {v.map_key(NATIONS[i % 6], f"principal:{i}"): sha256(b"%d" % i) for i in range(3000)}
    ks = list(items)
    rnd.shuffle(ks)
    m = PersistentMap()
    while ks:
        n = rnd.randint(1, 120)
        m = m.set_many({k: items[k] for k in ks[:n]})
        ks = ks[n:]
    assert m.root() == root_of(items) == PersistentMap.from_items(items).root()
    for k in rnd.sample(list(items), 200):
        assert verify_proof(m.root(), k, m.prove(k)) == items[k]


# --- proofs -----------------------------------------------------------------------------


@FAST
@given(item_sets)
def test_every_key_has_a_presence_proof(items: dict[bytes, bytes]) -> None:
    m = PersistentMap.from_items(items)
    for k, val in items.items():
        proof = m.prove(k)
        assert len(proof.siblings) <= 256
        assert verify_proof(m.root(), k, proof) == val


@FAST
@given(item_sets, st.lists(keys(), max_size=10), st.integers(0, 255))
def test_absent_keys_have_absence_proofs(items: dict[bytes, bytes], others: list[bytes], bit: int) -> None:
    m = PersistentMap.from_items(items)
    neighbours = [_flip(k, bit) for k in items] + [_flip(k, 255) for k in items]
    for k in others + neighbours:
        if k not in items:
            assert verify_proof(m.root(), k, m.prove(k)) is None


@FAST
@given(some_items, st.data())
def test_a_proof_for_one_key_never_lies_about_another(items: dict[bytes, bytes], data: st.DataObject) -> None:
    m = PersistentMap.from_items(items)
    k1 = data.draw(st.sampled_from(list(items)) | keys())
    k2 = data.draw(st.sampled_from(list(items)) | keys())
    try:
        answer = verify_proof(m.root(), k2, m.prove(k1))
    except ProofError:
        return
    assert answer == items.get(k2)


def _tampered(proof: MapProof, how: str, items: dict[bytes, bytes], i: int) -> MapProof | None:
    sib = list(proof.siblings)
    if how == "flip-sibling" and sib:
        j = i % len(sib)
        sib[j] = _other(sib[j])
    elif how == "drop-sibling" and sib:
        del sib[i % len(sib)]
    elif how == "add-sibling":
        sib.insert(i % (len(sib) + 1), EMPTY if i % 2 else _other(b"x"))
    elif how == "leaf-value" and proof.leaf:
        return MapProof(proof.siblings, (proof.leaf[0], _other(proof.leaf[1])))
    elif how == "terminal-to-null" and proof.leaf:
        return MapProof(proof.siblings, None)
    elif how == "terminal-to-other-leaf" and proof.leaf and len(items) > 1:
        other = sorted(k for k in items if k != proof.leaf[0])[i % (len(items) - 1)]
        return MapProof(proof.siblings, (other, items[other]))
    else:
        return None
    return MapProof(tuple(sib), proof.leaf)


TAMPERINGS = (
    "flip-sibling",
    "drop-sibling",
    "add-sibling",
    "leaf-value",
    "terminal-to-null",
    "terminal-to-other-leaf",
)


@FAST
@given(some_items, st.data(), st.sampled_from(TAMPERINGS), st.integers(0, 1000))
def test_tampered_proofs_are_refused(
    items: dict[bytes, bytes], data: st.DataObject, how: str, i: int
) -> None:
    m = PersistentMap.from_items(items)
    present = data.draw(st.sampled_from(list(items)))
    for k in (present, data.draw(keys())):
        bad = _tampered(m.prove(k), how, items, i)
        if bad is not None:
            with pytest.raises(ProofError):
                verify_proof(m.root(), k, bad)


@FAST
@given(item_sets, keys(), values)
def test_a_wrong_root_is_refused(items: dict[bytes, bytes], k: bytes, root: bytes) -> None:
    m = PersistentMap.from_items(items)
    if root != m.root():
        with pytest.raises(ProofError, match="does not recompute"):
            verify_proof(root, k, m.prove(k))


def test_absence_of_a_present_key_cannot_be_claimed_by_swapping_the_terminal() -> None:
    a, b = bytes(32), b"\x80" + bytes(31)
    m = PersistentMap.from_items({a: _other(b"a"), b: _other(b"b")})
    proof = m.prove(a)
    assert proof.leaf == (a, _other(b"a"))
    for leaf in (None, (b, _other(b"b")), (_flip(a, 255), _other(b"a"))):
        with pytest.raises(ProofError):
            verify_proof(m.root(), a, MapProof(proof.siblings, leaf))


def test_a_leaf_off_the_keys_path_is_refused_even_when_it_recomputes_the_root() -> None:
    # A server that signs the root of a tree it built wrongly: b's leaf under a's first bit.
    a, b = bytes(32), b"\x80" + bytes(31)
    val = _other(b"b")
    root = v.inner_hash(v.leaf_hash(b, val), EMPTY)
    with pytest.raises(ProofError, match="not under the key's first 1 bits"):
        verify_proof(root, a, MapProof((EMPTY,), (b, val)))
    # The same leaf at depth 0 is a valid absence proof under the root of {b}.
    assert verify_proof(v.leaf_hash(b, val), a, MapProof((), (b, val))) is None


def test_malformed_proofs_are_refused_by_verify() -> None:
    m = PersistentMap.from_items({bytes(32): bytes(32)})
    r, k = m.root(), bytes(32)
    cases: list[tuple[Any, Any, MapProof]] = [
        (r, k, MapProof((EMPTY,) * 257, None)),
        (r, k, MapProof((bytes(31),), None)),
        (r, k, MapProof((), (bytes(31), bytes(32)))),
        (r, k, MapProof((), (bytes(32), bytes(33)))),
        (r, k, MapProof((), (bytes(32),))),  # type: ignore[arg-type]
        (r[:31], k, m.prove(k)),
        (r, k[:31], m.prove(k)),
        (r, "k" * 32, m.prove(k)),
    ]
    for root, key, proof in cases:
        with pytest.raises(ProofError):
            verify_proof(root, key, proof)


# --- versions ---------------------------------------------------------------------------


@FAST
@given(item_sets, item_sets)
def test_old_versions_are_unchanged_by_set_many(old: dict[bytes, bytes], new: dict[bytes, bytes]) -> None:
    m1 = PersistentMap.from_items(old)
    root1, items1 = m1.root(), list(m1.items())
    proofs1 = {k: m1.prove(k) for k in list(old) + list(new)}
    m2 = m1.set_many(new)
    assert m2.root() == root_of({**old, **new})
    assert len(m2) == len({**old, **new})
    assert m1.root() == root1 and list(m1.items()) == items1 and len(m1) == len(old)
    for k, proof in proofs1.items():
        assert m1.prove(k) == proof
        assert verify_proof(root1, k, proof) == old.get(k)


@FAST
@given(item_sets, item_sets, st.data())
def test_set_changes_reports_exactly_what_changed(
    old: dict[bytes, bytes], new: dict[bytes, bytes], data: st.DataObject
) -> None:
    # Some of the batch's items repeat what the map holds already: those change nothing.
    repeats = data.draw(st.lists(st.sampled_from(sorted(old)), unique=True) if old else st.just([]))
    batch = {**new, **{k: old[k] for k in repeats}}
    m1 = PersistentMap.from_items(old)
    m2, changed = m1.set_changes(batch)
    assert changed == {k: w for k, w in batch.items() if old.get(k) != w}
    assert m2.root() == m1.set_many(batch).root() == root_of({**old, **batch})
    assert len(m2) == len({**old, **batch})
    if not changed:
        assert m2 is m1


def test_setting_what_is_already_there_changes_nothing() -> None:
    items = {v.map_key(n, f"r{i}"): sha256(b"%d" % i) for i, n in enumerate(NATIONS)}
    m = PersistentMap.from_items(items)
    assert m.set_many({}) is m
    assert m.set_many(dict(list(items.items())[:3])) is m
    k = next(iter(items))
    m2 = m.set(k, _other(items[k]))
    assert m2.get(k) == _other(items[k]) and m.get(k) == items[k] and len(m2) == len(m)
    assert m2.set(k, items[k]).root() == m.root()


# --- edge cases -------------------------------------------------------------------------


def test_the_empty_map() -> None:
    m = PersistentMap()
    assert m.root() == EMPTY == bytes(32) == root_of({}) == PersistentMap.from_items({}).root()
    assert len(m) == 0 and list(m.items()) == [] and m.get(bytes(32)) is None
    proof = m.prove(bytes(32))
    assert proof == MapProof((), None)
    assert proof.to_json() == {"siblings": [], "leaf": None}
    assert verify_proof(EMPTY, b"\x01" * 32, proof) is None
    with pytest.raises(ProofError):
        verify_proof(EMPTY, bytes(32), MapProof((EMPTY,), None))
    with pytest.raises(ProofError):
        verify_proof(EMPTY, bytes(32), MapProof((), (bytes(32), bytes(32))))
    m.set(bytes(32), bytes(32))
    assert m.root() == EMPTY and len(m) == 0


def test_a_one_leaf_map() -> None:
    k, val = v.map_key("FRA", "principal:alice"), sha256(b"statement")
    m = PersistentMap().set(k, val)
    assert m.root() == v.leaf_hash(k, val) == root_of({k: val})
    assert m.prove(k) == MapProof((), (k, val))
    assert verify_proof(m.root(), k, m.prove(k)) == val
    for other in (_flip(k, 0), _flip(k, 255), v.map_key("FRA", "principal:bob")):
        proof = m.prove(other)
        assert proof == MapProof((), (k, val))  # the lone leaf, at depth 0
        assert verify_proof(m.root(), other, proof) is None


def test_keys_differing_only_in_the_last_bit() -> None:
    a = v.map_key("UKR", "device:d_1")
    b = _flip(a, 255)
    c = _flip(a, 254)  # absent: leaves the pair's path at bit 254
    items = {a: _other(b"a"), b: _other(b"b")}
    m = PersistentMap.from_items(items)
    assert m.root() == root_of(items) == PersistentMap().set(b, items[b]).set(a, items[a]).root()
    for k in (a, b):
        proof = m.prove(k)
        assert len(proof.siblings) == 256
        assert [s for s in proof.siblings[:255] if s != EMPTY] == []
        assert verify_proof(m.root(), k, proof) == items[k]
        assert len(json.dumps(proof.to_json(), separators=(",", ":"))) < 1000  # 255 of 256 are ""
    proof = m.prove(c)
    assert len(proof.siblings) == 255 and proof.leaf is None
    assert verify_proof(m.root(), c, proof) is None
    m3 = m.set(c, _other(b"c"))
    assert m3.root() == root_of({**items, c: _other(b"c")})
    assert verify_proof(m3.root(), c, m3.prove(c)) == _other(b"c")


def test_map_key_puts_each_nation_in_one_range() -> None:
    k1, k2 = v.map_key("FRA", "principal:alice"), v.map_key("FRA", "principal:bob")
    assert len(k1) == v.KEY_BYTES == 32
    assert k1[:2] == k2[:2] == sha256(b"FRA")[:2]
    assert k1[2:] == sha256(b"principal:alice")[:30]
    assert v.map_key("*", "roots")[:2] == sha256(b"*")[:2]
    with pytest.raises(MalformedError):
        v.map_key("FRA", "principal:\udc00")
    with pytest.raises(MalformedError):
        v.map_key(b"FRA", "x")  # type: ignore[arg-type]


def test_hashes_are_domain_separated() -> None:
    k, val = bytes(32), b"\x01" * 32
    assert v.leaf_hash(k, val) == sha256(b"\x10" + k + val)
    assert v.inner_hash(k, val) == sha256(b"\x11" + k + val)
    assert v.leaf_hash(k, val) != v.inner_hash(k, val)
    bad: tuple[Any, Any]
    for bad in ((bytes(31), val), (k, bytes(33)), ("x" * 32, val)):
        with pytest.raises(MalformedError):
            v.leaf_hash(*bad)
        with pytest.raises(MalformedError):
            v.inner_hash(*bad)


@pytest.mark.parametrize(
    "items",
    [{bytes(31): bytes(32)}, {bytes(32): bytes(31)}, {bytes(32): None}, {"k" * 32: bytes(32)}],
    ids=["short-key", "short-value", "none-value", "str-key"],
)
def test_bad_keys_and_values_are_refused(items: Any) -> None:
    with pytest.raises(MalformedError):
        PersistentMap.from_items(items)
    with pytest.raises(MalformedError):
        PersistentMap().set_many(items)
    with pytest.raises(MalformedError):
        PersistentMap.from_items({b"\x01" * 32: bytes(32)}).set_many(items)
    with pytest.raises(MalformedError):
        root_of(items)


def test_lookups_refuse_keys_of_the_wrong_length() -> None:
    m = PersistentMap.from_items({bytes(32): bytes(32)})
    for bad in (bytes(31), bytes(33), "x" * 32):
        with pytest.raises(MalformedError):
            m.get(bad)  # type: ignore[arg-type]
        with pytest.raises(MalformedError):
            m.prove(bad)  # type: ignore[arg-type]


# --- JSON -------------------------------------------------------------------------------


@FAST
@given(item_sets, keys())
def test_proof_json_round_trips_from_a_proof(items: dict[bytes, bytes], k: bytes) -> None:
    proof = PersistentMap.from_items(items).prove(k)
    obj = proof.to_json()
    text = json.dumps(obj)
    assert MapProof.from_json(json.loads(text)) == proof
    assert MapProof.from_json(obj).to_json() == obj


_b64_hash = values.filter(lambda b: b != EMPTY).map(b64url_encode)
_proof_json = st.fixed_dictionaries(
    {
        "siblings": st.lists(st.just("") | _b64_hash, max_size=256),
        "leaf": st.none()
        | st.fixed_dictionaries({"key": values.map(b64url_encode), "value": values.map(b64url_encode)}),
    }
)


@FAST
@given(_proof_json)
def test_proof_json_round_trips_from_json(obj: dict[str, Any]) -> None:
    proof = MapProof.from_json(obj)
    assert proof.to_json() == obj
    assert MapProof.from_json(proof.to_json()) == proof


_H = b64url_encode(b"\x07" * 32)
_LEAF = {"key": _H, "value": _H}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_NON_CANONICAL = _H[:-1] + _ALPHABET[_ALPHABET.index(_H[-1]) | 1]  # same bytes, a spare bit set


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "proof",
        {},
        {"siblings": []},
        {"leaf": None},
        {"siblings": [], "leaf": None, "extra": 1},
        {"siblings": "", "leaf": None},
        {"siblings": None, "leaf": None},
        {"siblings": [None], "leaf": None},
        {"siblings": [1], "leaf": None},
        {"siblings": [_NON_CANONICAL], "leaf": None},
        {"siblings": [_H + "="], "leaf": None},
        {"siblings": [_H.replace("B", "+")], "leaf": None},
        {"siblings": [b64url_encode(bytes(31) + b"\x01")[:-1]], "leaf": None},
        {"siblings": [b64url_encode(b"\x01" * 31)], "leaf": None},
        {"siblings": [b64url_encode(b"\x01" * 33)], "leaf": None},
        {"siblings": [b64url_encode(EMPTY)], "leaf": None},
        {"siblings": [""] * 257, "leaf": None},
        {"siblings": [], "leaf": []},
        {"siblings": [], "leaf": "x"},
        {"siblings": [], "leaf": {"key": _H}},
        {"siblings": [], "leaf": {**_LEAF, "extra": _H}},
        {"siblings": [], "leaf": {"key": _H, "value": None}},
        {"siblings": [], "leaf": {"key": b64url_encode(b"\x01" * 31), "value": _H}},
        {"siblings": [], "leaf": {"key": _H, "value": b64url_encode(b"\x01" * 33)}},
        {"siblings": [], "leaf": {"key": _NON_CANONICAL, "value": _H}},
        {"siblings": [], "leaf": {"key": _H, "value": ""}},
    ],
)
def test_from_json_is_strict(obj: Any) -> None:
    with pytest.raises(MalformedError):
        MapProof.from_json(obj)


def test_256_siblings_parse() -> None:
    proof = MapProof.from_json({"siblings": [""] * 256, "leaf": None})
    assert proof.siblings == (EMPTY,) * 256


# --- ranges: a nation's whole key range, proven complete (protocol 9.5, 9.10) ----------------


@given(st.integers(min_value=2, max_value=40), st.integers(min_value=0, max_value=40), st.data())
def test_a_range_proof_proves_exactly_the_ranges_leaves(
    inside: int, outside: int, data: st.DataObject
) -> None:
    prefix = data.draw(st.binary(min_size=2, max_size=2))
    keys_in = {prefix + data.draw(st.binary(min_size=30, max_size=30)) for _ in range(inside)}
    keys_out = {data.draw(st.binary(min_size=32, max_size=32)) for _ in range(outside)}
    keys_out = {k for k in keys_out if k[:2] != prefix}
    if len(keys_in) < 2:
        return
    items = {k: sha256(k) for k in keys_in | keys_out}
    m = PersistentMap.from_items(items)
    rng = {k: v for k, v in items.items() if k[:2] == prefix}
    siblings = range_siblings(m.prove(sorted(rng)[0]))
    verify_range(m.root(), prefix, rng, siblings)
    # A leaf withheld, one changed, or one from outside added: refused.
    withheld = dict(list(rng.items())[1:])
    changed = {**rng, sorted(rng)[0]: b"\x07" * 32}
    for bad in (withheld, changed):
        if len(bad) >= 2:
            with pytest.raises(ProofError):
                verify_range(m.root(), prefix, bad, siblings)
    if keys_out:
        with pytest.raises(ProofError):
            verify_range(m.root(), prefix, {**rng, sorted(keys_out)[0]: b"\x01" * 32}, siblings)


def test_a_range_of_one_leaf_has_no_range_proof() -> None:
    m = PersistentMap.from_items({b"\xaa\xbb" + b"\x00" * 30: b"\x01" * 32, b"\x00" * 32: b"\x02" * 32})
    with pytest.raises(ProofError):
        range_siblings(m.prove(b"\xaa\xbb" + b"\x00" * 30))
