"""tlog-tiles: paths, entry bundles, hash tiles and their authentication against a checkpoint."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import merkle as m
from liaison.crypto import tiles as t
from liaison.crypto.errors import MalformedError, ProofError

# One tree big enough for three tile levels (70,000 is the tlog-tiles spec's example size).
SIZE = 70_000
ENTRIES = [b"entry %d" % i for i in range(SIZE)]
STORE = m.MemoryHashStore([m.leaf_hash(e) for e in ENTRIES])
ROOTS: dict[int, bytes] = {}


def root(size: int) -> bytes:
    if size not in ROOTS:
        ROOTS[size] = m.root_from(STORE, size)
    return ROOTS[size]


def fetch(tiles: list[t.Tile]) -> dict[t.Tile, bytes]:
    """What a client would download: the server's tile bytes for each requested tile."""
    return {tile: t.hash_tile(STORE, tile) for tile in tiles}


# --- paths -------------------------------------------------------------------------------

INDEXES = {
    0: "000",
    42: "042",
    999: "999",
    1000: "x001/000",
    1234067: "x001/x234/067",
    123456789: "x123/x456/789",
    2**64 - 1: "x018/x446/x744/x073/x709/x551/615",
}


@pytest.mark.parametrize(("n", "text"), INDEXES.items())
def test_index_encoding(n: int, text: str) -> None:
    assert t.format_index(n) == text
    assert t.parse_tile_path(f"tile/0/{text}") == t.Tile(0, n)


def test_spec_path_examples() -> None:
    assert t.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert t.tile_path(1, 273, 17) == "tile/1/273.p/17"
    assert t.tile_path(2, 0, 256) == "tile/2/000"
    assert t.entries_path(273, 112) == "tile/entries/273.p/112"
    assert t.entries_path(1_000_000) == "tile/entries/x001/x000/000"
    assert t.parse_tile_path("tile/entries/273.p/112") == t.Tile(0, 273, 112, entries=True)
    assert t.parse_tile_path("tile/63/x999/999.p/255") == t.Tile(63, 999_999, 255)


@settings(max_examples=200, deadline=None)
@given(
    level=st.integers(0, 63),
    n=st.integers(0, 2**64 - 1),
    width=st.integers(1, 256),
    entries=st.booleans(),
)
def test_tile_paths_round_trip(level: int, n: int, width: int, entries: bool) -> None:
    tile = t.Tile(0 if entries else level, n, width, entries)
    path = tile.path
    assert t.parse_tile_path(path) == tile
    assert t.parse_tile_path(path).path == path


BAD_PATHS = [
    "tile/0/1234",
    "tile/0/12",
    "tile/00/000",
    "tile/64/000",
    "tile/-1/000",
    "tile/0/x000/001",
    "tile/0/001/002",
    "tile/0/x001",
    "tile/0/x01/000",
    "tile/0/000.p/256",
    "tile/0/000.p/0",
    "tile/0/000.p/007",
    "tile/0/000.p/",
    "tile/0/000.p",
    "tile/0/000.P/1",
    "tile/entries/000.p/256",
    "tile/entries/x000/000",
    "tile/data/000",
    "/tile/0/000",
    "tile/0/000/",
    "tile/0/ 000",
    "tile/0/\u0660\u0660\u0660",
    "tile/0/x018/x446/x744/x073/x709/x551/616",
    "tile/1/entries/000",
    "",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_non_canonical_paths_are_refused(path: str) -> None:
    with pytest.raises(MalformedError):
        t.parse_tile_path(path)


def test_tile_refuses_bad_fields() -> None:
    for args in ((64, 0), (0, -1), (0, 0, 0), (0, 0, 257), (0, 2**64)):
        with pytest.raises(MalformedError):
            t.Tile(*args)
    with pytest.raises(MalformedError):
        t.Tile(1, 0, entries=True)


# --- which tiles exist -------------------------------------------------------------------


def test_spec_tile_counts() -> None:
    tiles = t.tiles_for_size(70_000)
    assert sum(1 for x in tiles if x.level == 0 and x.is_full) == 273
    assert (
        [x for x in tiles if not x.is_full]
        == t.edge_tiles(70_000)
        == [
            t.Tile(0, 273, 112),
            t.Tile(1, 1, 17),
            t.Tile(2, 0, 1),
        ]
    )
    assert [x for x in tiles if x.level == 1] == [t.Tile(1, 0), t.Tile(1, 1, 17)]
    assert t.tiles_for_size(256) == [t.Tile(0, 0), t.Tile(1, 0, 1)]
    assert t.tiles_for_size(0) == t.edge_tiles(0) == []


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 270_000))
def test_tiles_for_size_have_their_widths(size: int) -> None:
    for tile in t.tiles_for_size(size):
        assert t.tile_width(size, tile.level, tile.n) == tile.width


# --- entry bundles -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=256))
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    data = t.encode_entry_bundle(entries)
    assert t.decode_entry_bundle(data) == entries
    assert t.decode_entry_bundle(data, len(entries)) == entries
    assert t.encode_entry_bundle(t.decode_entry_bundle(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_canonically_or_raise(data: bytes) -> None:
    try:
        entries = t.decode_entry_bundle(data)
    except MalformedError:
        return
    assert t.encode_entry_bundle(entries) == data


@pytest.mark.parametrize(
    ("data", "width"),
    [
        (b"\x00", None),
        (b"\x00\x05abc", None),
        (b"\x00\x01a\x00", None),
        (b"\x00\x00" * 257, None),
        (b"\x00\x01a", 2),
    ],
    ids=["half length", "truncated entry", "trailing byte", "257 entries", "wrong count"],
)
def test_garbage_bundles_are_refused(data: bytes, width: int | None) -> None:
    with pytest.raises(MalformedError):
        t.decode_entry_bundle(data, width)


def test_encode_refuses_oversized_entries_and_bundles() -> None:
    assert len(t.encode_entry_bundle([bytes(65535)])) == 65537
    with pytest.raises(MalformedError):
        t.encode_entry_bundle([bytes(65536)])
    with pytest.raises(MalformedError):
        t.encode_entry_bundle([b""] * 257)


def test_entry_bundle_checked_against_level0_tile() -> None:
    bundle = t.encode_entry_bundle(ENTRIES[256:512])
    tile = t.hash_tile(STORE, t.Tile(0, 1))
    assert t.verify_entry_bundle(bundle, tile) == ENTRIES[256:512]
    swapped = t.encode_entry_bundle([ENTRIES[257], ENTRIES[256], *ENTRIES[258:512]])
    with pytest.raises(ProofError, match="entry 0"):
        t.verify_entry_bundle(swapped, tile)
    with pytest.raises(MalformedError):
        t.verify_entry_bundle(t.encode_entry_bundle(ENTRIES[256:511]), tile)


# --- hash tiles and authentication -------------------------------------------------------


def test_hash_tile_layout() -> None:
    tile = t.hash_tile(STORE, t.Tile(1, 0))
    assert len(tile) == 256 * 32
    assert tile[32:64] == m.root_from_leaf_hashes([m.leaf_hash(e) for e in ENTRIES[256:512]])
    assert t.hash_tile(STORE, t.Tile(0, 273, 112))[-32:] == m.leaf_hash(ENTRIES[SIZE - 1])


def test_root_from_all_level0_tiles() -> None:
    for size in (1, 255, 256, 257, 70_000):
        level0 = [x for x in t.tiles_for_size(size) if x.level == 0]
        assert t.root_from_level0_tiles(size, list(fetch(level0).values())) == root(size)
    with pytest.raises(ProofError):
        t.root_from_level0_tiles(600, [t.hash_tile(STORE, t.Tile(0, 0))])


def test_all_tiles_verify_for_many_sizes() -> None:
    for size in (0, 1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000):
        reader = t.verify_tiles(size, root(size), fetch(t.tiles_for_size(size)))
        assert m.root_from(reader, size) == root(size)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_proofs_from_fetched_tiles_equal_server_proofs(data: Any) -> None:
    size = data.draw(st.integers(1, SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old")
    nodes = [
        node
        for groups in (m.inclusion_proof_nodes(index, size), m.consistency_proof_nodes(old, size))
        for group in groups
        for node in group
    ]
    needed = t.tiles_needed(size, nodes)
    levels = [tile.level for tile in needed]
    assert levels == sorted(levels, reverse=True)  # parents first
    reader = t.verify_tiles(size, root(size), fetch(needed))
    proof = m.inclusion_proof_from(reader, index, size)
    assert proof == m.inclusion_proof_from(STORE, index, size)
    m.verify_inclusion(m.leaf_hash(ENTRIES[index]), index, size, proof, root(size))
    assert m.consistency_proof_from(reader, old, size) == m.consistency_proof_from(STORE, old, size)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_altered_tile_is_refused(data: Any) -> None:
    size = data.draw(st.integers(1, SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    fetched = fetch(t.tiles_needed(size, [(0, index)]))
    victim = data.draw(st.sampled_from(sorted(fetched)), label="tile")
    bit = data.draw(st.integers(0, len(fetched[victim]) * 8 - 1), label="bit")
    altered = bytearray(fetched[victim])
    altered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProofError):
        t.verify_tiles(size, root(size), {**fetched, victim: bytes(altered)})


def test_unanchored_tiles_are_refused() -> None:
    # SPEC 6: every tile must chain to the signed root. A full tile whose parent is not
    # supplied, or a consistent pair of forged tiles off the edge, must not be accepted.
    size = 70_000
    edge = fetch(t.edge_tiles(size))
    orphan = fetch([t.Tile(0, 5)])
    with pytest.raises(ProofError, match="parent is missing"):
        t.verify_tiles(size, root(size), {**edge, **orphan})
    forged_leaf_tile = bytes(32) * 256
    forged_parent = bytearray(t.hash_tile(STORE, t.Tile(1, 0)))
    forged_parent[5 * 32 : 6 * 32] = m.root_from_leaf_hashes([bytes(32)] * 256)
    with pytest.raises(ProofError, match="does not match the hash in its parent"):
        t.verify_tiles(
            size,
            root(size),
            {**edge, t.Tile(1, 0): bytes(forged_parent), t.Tile(0, 5): forged_leaf_tile},
        )
    with pytest.raises(ProofError, match="edge tile"):
        t.verify_tiles(size, root(size), fetch([t.Tile(0, 5), t.Tile(1, 0)]))
    with pytest.raises(ProofError, match="checkpoint root"):
        t.verify_tiles(size, root(size - 1), edge)
    reader = t.verify_tiles(size, root(size), edge)
    with pytest.raises(ProofError, match="not in the authenticated tiles"):
        reader.get(0, 5 * 256)


def test_tile_width_rules() -> None:
    size = 70_000
    edge = fetch(t.edge_tiles(size))
    # A full tile offered for a partial one is cut to the checkpoint's width.
    full = {tile: data for tile, data in edge.items() if tile != t.Tile(0, 273, 112)}
    full[t.Tile(0, 273)] = b"".join(STORE.get(0, 273 * 256 + i) for i in range(112)) + bytes(32 * 144)
    assert m.root_from(t.verify_tiles(size, root(size), full), size) == root(size)
    with pytest.raises(ProofError, match="narrower"):
        t.verify_tiles(size, root(size), {**edge, t.Tile(0, 273, 100): bytes(3200)})
    with pytest.raises(ProofError, match="does not exist"):
        t.verify_tiles(size, root(size), {**edge, t.Tile(0, 274, 1): bytes(32)})
    with pytest.raises(ProofError, match="expected"):
        t.verify_tiles(size, root(size), {**edge, t.Tile(0, 5): bytes(64)})
    with pytest.raises(MalformedError):
        t.verify_tiles(size, root(size), {**edge, t.Tile(0, 5): bytes(33)})
    with pytest.raises(MalformedError):
        t.tile_width(size, 0, 274)


def test_sizes_are_checked() -> None:
    for call in (
        lambda: t.tiles_for_size(-1),
        lambda: t.edge_tiles(-5),
        lambda: t.tile_width(2**64, 0, 0),
    ):
        with pytest.raises(MalformedError):
            call()
