"""C2SP tlog-tiles (height 8): tile paths, entry bundles, hash tiles and their authentication.

A hash tile at level L, index N holds up to 256 consecutive stored hashes of tree level 8L:
the nodes `(8L, 256N + i)` of `liaison.crypto.merkle` for i in [0, width). A tile of the
tree of size s is full (256 hashes) when `256(N + 1) <= s >> 8L`, otherwise it is the
partial tile of width `(s >> 8L) mod 256`. Entry bundles mirror level-0 tiles, each entry a
big-endian uint16 length then its bytes.

Authentication (SPEC 6): a client trusts a tile only once it is tied to a signed checkpoint.
`verify_tiles` recomputes the root from the right-edge (partial) tiles, whose hashes together
determine the root, and checks every full tile against the hash its parent tile holds for
it; a tile whose chain of parents does not reach the edge is refused, not skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import MalformedError, ProofError
from .merkle import HASH_SIZE, HashReader, Node, leaf_hash, root_from
from .merkle import root_from_leaf_hashes as _mth

__all__ = [
    "MAX_ENTRY_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "VerifiedTiles",
    "decode_entry_bundle",
    "edge_tiles",
    "encode_entry_bundle",
    "entries_path",
    "format_index",
    "hash_tile",
    "parse_tile_path",
    "root_from_level0_tiles",
    "tile_for_node",
    "tile_path",
    "tile_width",
    "tiles_for_size",
    "tiles_needed",
    "verify_entry_bundle",
    "verify_tiles",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_SIZE = 0xFFFF
_MAX_LEVEL = 63
_MAX_INDEX = (1 << 64) - 1

_PATH = re.compile(
    r"tile/(?:(?P<entries>entries)|(?P<level>0|[1-9][0-9]?))"
    r"/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


@dataclass(frozen=True, order=True)
class Tile:
    """A hash tile (level, n, width) or, with `entries`, the entry bundle beside level-0 tile n."""

    level: int
    n: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        for name, value in (("level", self.level), ("n", self.n), ("width", self.width)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise MalformedError(f"tile {name} must be an integer")
        if not 0 <= self.level <= _MAX_LEVEL or (self.entries and self.level != 0):
            raise MalformedError("tile level must be 0..63 (0 for entry bundles)")
        if not 0 <= self.n <= _MAX_INDEX:
            raise MalformedError("tile index must be in [0, 2**64)")
        if not 1 <= self.width <= TILE_WIDTH:
            raise MalformedError("tile width must be 1..256")

    @property
    def path(self) -> str:
        if self.entries:
            return entries_path(self.n, self.width)
        return tile_path(self.level, self.n, self.width)

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH


# --- paths -------------------------------------------------------------------------------


def format_index(n: int) -> str:
    """N as zero-padded 3-digit path elements, all but the last prefixed with x: x001/x234/067."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _MAX_INDEX:
        raise MalformedError("tile index must be an integer in [0, 2**64)")
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def _suffix(width: int | None) -> str:
    if width is None or width == TILE_WIDTH:
        return ""
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width < TILE_WIDTH:
        raise MalformedError("tile width must be 1..256")
    return f".p/{width}"


def tile_path(level: int, n: int, width: int | None = None) -> str:
    """`tile/<L>/<N>[.p/<W>]`; a width of None or 256 is a full tile."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= _MAX_LEVEL:
        raise MalformedError("tile level must be an integer 0..63")
    return f"tile/{level}/{format_index(n)}{_suffix(width)}"


def entries_path(n: int, width: int | None = None) -> str:
    """`tile/entries/<N>[.p/<W>]`."""
    return f"tile/entries/{format_index(n)}{_suffix(width)}"


def parse_tile_path(path: str) -> Tile:
    """Parse a tile or entry-bundle path, refusing every non-canonical spelling.

    One resource has one path, so caches and storage keys cannot be split or confused:
    no leading zeros in L or W, no `.p/256`, no empty leading `x000` groups.
    """
    m = _PATH.fullmatch(path) if isinstance(path, str) else None
    if m is None:
        raise MalformedError("not a tile path: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]")
    groups = m["index"].split("/")
    if len(groups) > 1 and groups[0] == "x000":
        raise MalformedError("tile index has a leading zero group")
    n = int("".join(g.lstrip("x") for g in groups))
    width = int(m["width"]) if m["width"] else TILE_WIDTH
    if m["width"] and width >= TILE_WIDTH:
        raise MalformedError("partial tile width must be 1..255")
    level = 0 if m["entries"] else int(m["level"])
    if level > _MAX_LEVEL:
        raise MalformedError("tile level must be 0..63")
    return Tile(level, n, width, entries=bool(m["entries"]))


# --- entry bundles -----------------------------------------------------------------------


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Each entry as a big-endian uint16 length and its bytes; at most 256 entries."""
    if len(entries) > TILE_WIDTH:
        raise MalformedError("an entry bundle holds at most 256 entries")
    out = bytearray()
    for e in entries:
        if not isinstance(e, bytes | bytearray):
            raise MalformedError("log entries must be bytes")
        if len(e) > MAX_ENTRY_SIZE:
            raise MalformedError("a log entry must be at most 65535 bytes")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def decode_entry_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Split a bundle into entries; refuse truncation, trailing bytes and a wrong count."""
    entries: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(entries) == TILE_WIDTH:
            raise MalformedError("entry bundle holds more than 256 entries")
        if end - pos < 2:
            raise MalformedError("entry bundle ends inside a length prefix")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if end - pos < size:
            raise MalformedError("entry bundle ends inside an entry")
        entries.append(bytes(data[pos : pos + size]))
        pos += size
    if width is not None and len(entries) != width:
        raise MalformedError(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries


def verify_entry_bundle(data: bytes, level0_tile: bytes) -> list[bytes]:
    """Decode a bundle and check each entry's leaf hash against an authenticated level-0 tile."""
    hashes = _split_hashes(level0_tile)
    entries = decode_entry_bundle(data, len(hashes))
    for i, (entry, h) in enumerate(zip(entries, hashes, strict=True)):
        if leaf_hash(entry) != h:
            raise ProofError(f"entry {i} of the bundle does not match its leaf hash")
    return entries


# --- which tiles exist -------------------------------------------------------------------


def _check_size(size: int) -> None:
    # A negative size would never shift down to zero in the loops below.
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_INDEX:
        raise MalformedError("tree size must be an integer in [0, 2**64)")


def tile_width(size: int, level: int, n: int) -> int:
    """Width of tile (level, n) in the tree of `size`; `MalformedError` if it does not exist."""
    _check_size(size)
    count = size >> (TILE_HEIGHT * level)  # stored hashes at tree level 8 * level
    full = count >> TILE_HEIGHT
    if n < full:
        return TILE_WIDTH
    if n == full and count % TILE_WIDTH:
        return count % TILE_WIDTH
    raise MalformedError(f"tile {level}/{n} does not exist in a tree of size {size}")


def tiles_for_size(size: int) -> list[Tile]:
    """Every hash tile of the tree of `size`, by level, then index (full tiles, then partial)."""
    _check_size(size)
    out: list[Tile] = []
    level = 0
    while count := size >> (TILE_HEIGHT * level):
        full, rest = divmod(count, TILE_WIDTH)
        out.extend(Tile(level, n) for n in range(full))
        if rest:
            out.append(Tile(level, full, rest))
        level += 1
    return out


def edge_tiles(size: int) -> list[Tile]:
    """The partial tiles of the tree of `size`: together their hashes determine its root."""
    _check_size(size)
    out: list[Tile] = []
    level = 0
    while count := size >> (TILE_HEIGHT * level):
        if count % TILE_WIDTH:
            out.append(Tile(level, count >> TILE_HEIGHT, count % TILE_WIDTH))
        level += 1
    return out


def _width_or_zero(size: int, level: int, n: int) -> int:
    try:
        return tile_width(size, level, n)
    except MalformedError:
        return 0


def tile_for_node(size: int, node: Node) -> Tile:
    """The tile holding the tile-level hashes from which stored node (level, index) is computed."""
    level, index = node
    tile_level, sub = divmod(level, TILE_HEIGHT)
    n = (index << sub) >> TILE_HEIGHT
    return Tile(tile_level, n, tile_width(size, tile_level, n))


def tiles_needed(size: int, nodes: Iterable[Node]) -> list[Tile]:
    """Tiles to fetch to read `nodes` authenticated against a checkpoint of `size`, parents first.

    Always includes the edge tiles (which authenticate against the root) and, for each full
    tile, its parents up to the edge.
    """
    need: set[Tile] = set(edge_tiles(size))
    for node in nodes:
        tile = tile_for_node(size, node)
        while tile not in need:
            need.add(tile)
            parent = tile.level + 1, tile.n >> TILE_HEIGHT
            tile = Tile(parent[0], parent[1], tile_width(size, *parent))
    return sorted(need, key=lambda t: (-t.level, t.n))


# --- hash tiles --------------------------------------------------------------------------


def hash_tile(reader: HashReader, tile: Tile) -> bytes:
    """The bytes of a hash tile: `width` concatenated 32-byte stored hashes of level 8L."""
    if tile.entries:
        raise MalformedError("an entry bundle is not a hash tile")
    base_level, first = TILE_HEIGHT * tile.level, tile.n * TILE_WIDTH
    return b"".join(reader.get(base_level, first + i) for i in range(tile.width))


def _split_hashes(data: bytes) -> list[bytes]:
    if len(data) % HASH_SIZE or not data or len(data) > TILE_WIDTH * HASH_SIZE:
        raise MalformedError("a hash tile is 1 to 256 concatenated 32-byte hashes")
    return [bytes(data[i : i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)]


def root_from_level0_tiles(size: int, tiles: Sequence[bytes]) -> bytes:
    """The root of the tree of `size` from all its level-0 tiles, in order (an auditor's check)."""
    expected = [tile_width(size, 0, n) for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH)]
    if len(tiles) != len(expected):
        raise ProofError(f"expected {len(expected)} level-0 tiles, got {len(tiles)}")
    hashes: list[bytes] = []
    for n, (data, width) in enumerate(zip(tiles, expected, strict=True)):
        got = _split_hashes(data)
        if len(got) != width:
            raise ProofError(f"level-0 tile {n} has {len(got)} hashes, expected {width}")
        hashes.extend(got)
    return _mth(hashes)


class _TileReader:
    """A `HashReader` over tile hashes keyed by (tile level, tile index); trusts what it holds."""

    def __init__(self, size: int, tiles: Mapping[tuple[int, int], list[bytes]]) -> None:
        self.size = size
        self._tiles = dict(tiles)

    def get(self, level: int, index: int) -> bytes:
        tile_level, sub = divmod(level, TILE_HEIGHT)
        first = index << sub  # first tile-level hash under this node
        n, offset = divmod(first, TILE_WIDTH)
        hashes = self._tiles.get((tile_level, n))
        if hashes is None or offset + (1 << sub) > len(hashes):
            raise ProofError(f"hash ({level}, {index}) is not in the authenticated tiles")
        # Nodes between tile levels are recomputed from the tile's hashes, never fetched.
        return _mth(hashes[offset : offset + (1 << sub)])


class VerifiedTiles(_TileReader):
    """A `HashReader` over tiles that `verify_tiles` authenticated against one checkpoint."""


def verify_tiles(size: int, root_hash: bytes, tiles: Mapping[Tile, bytes]) -> VerifiedTiles:
    """Authenticate fetched hash tiles against a checkpoint (size, root) and read from them.

    The edge tiles of `size` must all be present: their hashes recompute the root. Every
    other tile must be full and match the hash its parent (present, and itself verified)
    holds. A full tile offered where a partial one is expected is cut to the partial
    width, since hashes beyond it are not covered by this checkpoint.
    """
    if len(root_hash) != HASH_SIZE:
        raise ProofError("root hash must be 32 bytes")
    by_position: dict[tuple[int, int], list[bytes]] = {}
    for tile, data in tiles.items():
        if tile.entries:
            raise ProofError("entry bundles are verified with verify_entry_bundle")
        want = _width_or_zero(size, tile.level, tile.n)
        if want == 0:
            raise ProofError(f"tile {tile.path} does not exist in a tree of size {size}")
        hashes = _split_hashes(data)
        if len(hashes) != tile.width:
            raise ProofError(f"tile {tile.path} has {len(hashes)} hashes, expected {tile.width}")
        if len(hashes) < want:
            raise ProofError(f"tile {tile.path} is narrower than the {want} hashes of this tree")
        hashes = hashes[:want]
        key = (tile.level, tile.n)
        if by_position.setdefault(key, hashes) != hashes:
            raise ProofError(f"two different tiles offered for {tile.level}/{tile.n}")

    edge = {(t.level, t.n) for t in edge_tiles(size)}
    missing = edge - by_position.keys()
    if missing:
        level, n = min(missing)
        raise ProofError(f"edge tile {level}/{n} is needed to check the root")
    # Unverified until the root matches: every hash of every edge tile feeds the root.
    unverified_edge = _TileReader(size, {k: by_position[k] for k in edge})
    if root_from(unverified_edge, size) != root_hash:
        raise ProofError("the edge tiles do not hash to the checkpoint root")

    verified = {k: by_position[k] for k in edge}
    # Parents before children: a full tile is checked against the hash its verified parent holds.
    for level, n in sorted(by_position.keys() - edge, key=lambda k: (-k[0], k[1])):
        parent = verified.get((level + 1, n >> TILE_HEIGHT))
        if parent is None:
            raise ProofError(f"tile {level}/{n} cannot be authenticated: its parent is missing")
        if _mth(by_position[(level, n)]) != parent[n % TILE_WIDTH]:
            raise ProofError(f"tile {level}/{n} does not match the hash in its parent tile")
        verified[(level, n)] = by_position[(level, n)]
    return VerifiedTiles(size, verified)
