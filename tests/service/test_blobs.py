"""The attachment store's contract (service/storage/blobs.py), on the filesystem backend: parts
stored whole or not at all, listed for a resume, completed into one object atomically, read by
range a piece at a time, deleted; names that could become paths refused."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison.service.storage.blobs import PIECE, BlobError, FileBlobStore

UPLOAD, KEY = "up_0123456789abcdef", "obj_0123456789abcdef"


async def _pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


async def _read(store: FileBlobStore, key: str, start: int, end: int) -> list[bytes]:
    return [p async for p in store.read(key, start, end)]


async def test_parts_complete_read_and_delete(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    one, two = b"a" * (PIECE + 5), b"b" * 1000
    info = await store.put_part(UPLOAD, 2, _pieces(two))
    assert (info.number, info.size, info.sha256) == (2, 1000, hashlib.sha256(two).hexdigest())
    await store.put_part(UPLOAD, 1, _pieces(one[:10], one[10:]))
    assert [(p.number, p.size) for p in await store.parts(UPLOAD)] == [(1, PIECE + 5), (2, 1000)]
    # A part sent again replaces the earlier one of its number.
    await store.put_part(UPLOAD, 2, _pieces(two[:500]))
    assert [p.size for p in await store.parts(UPLOAD)] == [PIECE + 5, 500]
    assert await store.size(KEY) is None
    assert await store.complete(UPLOAD, KEY, [1, 2]) == PIECE + 505
    assert await store.parts(UPLOAD) == [] and await store.size(KEY) == PIECE + 505
    whole = b"".join(await _read(store, KEY, 0, PIECE + 505))
    assert whole == one + two[:500]
    pieces = await _read(store, KEY, 3, PIECE + 20)
    assert all(len(p) <= PIECE for p in pieces) and b"".join(pieces) == whole[3 : PIECE + 20]
    with pytest.raises(BlobError, match="shorter"):
        await _read(store, KEY, 0, PIECE + 506)
    await store.delete(KEY)
    await store.delete(KEY)  # idempotent
    assert await store.size(KEY) is None
    with pytest.raises(BlobError, match="no object"):
        await _read(store, KEY, 0, 1)


async def test_an_interrupted_part_is_never_listed_nor_used(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")

    async def dropped() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_part(UPLOAD, 1, dropped())
    assert await store.parts(UPLOAD) == []
    assert list((tmp_path / "blobs" / "uploads" / UPLOAD).iterdir()) == []  # no temporary left
    with pytest.raises(BlobError, match="no part 1"):
        await store.complete(UPLOAD, KEY, [1])
    assert await store.size(KEY) is None
    await store.abort(UPLOAD)
    await store.abort(UPLOAD)
    assert not (tmp_path / "blobs" / "uploads" / UPLOAD).exists()


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "short", "UPPER_CASE_NAME", "a/b/cdefghij", "", "x" * 97, "-leading-dash"]
)
async def test_names_that_could_be_paths_are_refused(tmp_path: Path, name: str) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(BlobError, match="not a valid name"):
        await store.put_part(name, 1, _pieces(b"x"))
    with pytest.raises(BlobError, match="not a valid name"):
        await store.size(name)
    with pytest.raises(BlobError, match="not a valid name"):
        await store.delete(name)
    assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").rglob("*passwd*"))


async def test_bad_part_numbers_and_ranges(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    for number in (0, 10_001, -1):
        with pytest.raises(BlobError, match="part number"):
            await store.put_part(UPLOAD, number, _pieces(b"x"))
    await store.put_part(UPLOAD, 1, _pieces(b"abc"))
    await store.complete(UPLOAD, KEY, [1])
    with pytest.raises(BlobError, match="not a range"):
        await _read(store, KEY, 2, 1)
    assert await _read(store, KEY, 1, 1) == []


async def test_completing_copies_nothing_and_deleting_removes_the_manifest_first(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    await store.put_part(UPLOAD, 1, _pieces(b"a" * 10))
    await store.put_part(UPLOAD, 2, _pieces(b"b" * 5))
    part = next((tmp_path / "blobs" / "uploads" / UPLOAD).glob("1.*.part"))
    inode = part.stat().st_ino
    assert await store.complete(UPLOAD, KEY, [1, 2]) == 15
    moved = next((tmp_path / "blobs" / "objects").rglob("1.*.part"))
    assert moved.stat().st_ino == inode  # renamed, not copied
    (moved.parent / "manifest").unlink()  # a delete cut short after its first step
    assert await store.size(KEY) is None
    await store.delete(KEY)
    assert not moved.parent.exists()
