"""The directory's map as the service holds it: versions in memory, leaf history in the database.

The map (protocol 9.5) is a pure `PersistentMap`; this module keeps its versions. The writer
stages a batch's leaf changes, writes them to `map_leaf` inside the batch's transaction, ends
the batch with a `map.head` entry (9.6) and, once the transaction commits, makes the staged
map current. Nothing changes before the commit, so a batch that rolls back leaves the map as
it was. Lookups ask for the map of the version a checkpoint's `map.head` names; recent
versions stay in memory (they share all but their changed paths); the lookup use case rebuilds older ones
from the leaf history. Another replica's writes are caught up from `map_leaf` before a batch
builds on the map, under the writer's lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liaison.crypto.encoding import b64url_encode
from liaison.crypto.vmap import PersistentMap

from ..storage.raw import Raw

__all__ = ["MapHead", "MapState", "Staged"]

#: `map_leaf`'s columns and their PostgreSQL types (`Raw.insert_rows`).
_LEAF_COLUMNS = ("map_leaf (version, key, value)", ("int8", "bytea", "bytea"))

#: Versions kept in memory for lookups at a recent checkpoint.
_KEEP = 256


@dataclass(frozen=True)
class MapHead:
    """What a `map.head` entry says: the map's version and root."""

    version: int
    root: bytes

    def fields(self) -> dict[str, Any]:
        return {"version": self.version, "root": b64url_encode(self.root)}


@dataclass(frozen=True)
class Staged:
    """A batch's map, not yet committed: its head and the leaves it changed."""

    head: MapHead
    map: PersistentMap
    changed: dict[bytes, bytes]


class MapState:
    """The map's committed versions in this process (thread-safe: the writer thread commits,
    the event loop's readers look up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: OrderedDict[int, PersistentMap] = OrderedDict({0: PersistentMap()})
        self.version = 0

    @property
    def current(self) -> PersistentMap:
        with self._lock:
            return self._versions[self.version]

    def head(self) -> MapHead:
        with self._lock:
            return MapHead(self.version, self._versions[self.version].root())

    def load(self, raw: Raw) -> None:
        """Catch up with the leaf history: what this process (at start) or another replica
        wrote since this process last looked. Call under the writer's lock."""
        rows = raw.execute(
            "SELECT version, key, value FROM map_leaf WHERE version > ? ORDER BY version",
            (self.version,),
        ).fetchall()
        if not rows:
            return
        by_version: dict[int, dict[bytes, bytes]] = {}
        for version, key, value in rows:
            by_version.setdefault(int(version), {})[bytes(key)] = bytes(value)
        current = self.current
        if self.version == 0 and len(current) == 0:
            # A start: build the newest version in one pass, not version by version.
            newest: dict[bytes, bytes] = {}
            for changes in by_version.values():
                newest.update(changes)
            self._commit(max(by_version), PersistentMap.from_items(newest))
            return
        for version in sorted(by_version):
            current = current.set_many(by_version[version])
            self._commit(version, current)

    def stage(self, changes: Mapping[bytes, bytes]) -> Staged:
        """The map after `changes` (the batch's leaf updates), as the next version if anything
        changed, else the current one again."""
        with self._lock:
            base = self._versions[self.version]
            version = self.version
        new, changed = base.set_changes(changes)
        if not changed:
            return Staged(MapHead(version, base.root()), base, {})
        return Staged(MapHead(version + 1, new.root()), new, changed)

    @staticmethod
    def write(raw: Raw, staged: Staged) -> None:
        """Record the staged leaves in `map_leaf` (inside the batch's transaction)."""
        version = staged.head.version
        raw.insert_rows(*_LEAF_COLUMNS, [(version, k, v) for k, v in staged.changed.items()])

    def commit(self, staged: Staged) -> None:
        """Once the batch's transaction committed: its map is the current one."""
        if staged.changed:
            self._commit(staged.head.version, staged.map)

    def _commit(self, version: int, m: PersistentMap) -> None:
        with self._lock:
            if version <= self.version:
                return
            self._versions[version] = m
            self.version = version
            while len(self._versions) > _KEEP:
                self._versions.popitem(last=False)

    def at(self, version: int) -> PersistentMap | None:
        """The map of `version` if this process holds it (recent versions only; lookups rebuild
        an older or another replica's newer one from the leaf history)."""
        with self._lock:
            return self._versions.get(version)
