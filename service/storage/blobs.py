"""Where attachment ciphertext lives (issue 15, item 3): a small interface, its contract, and
the embedded default, a directory of files.

The interface is shaped like S3's multipart upload so that an object store can stand behind it
unchanged (issue 16): an upload is a set of numbered parts, each stored whole or not at all;
completing it makes one object of the parts in order; objects are read by byte range and
deleted. Keys and upload ids are opaque to the store but must match `KEY_RE` (they become
file names here, object names there): no path ever comes from a caller.

Contract (every backend, tested in tests/service/test_blobs.py):

* `put_part(upload, number, pieces)`: when it returns, the part is durable (it survives a
  crash or power loss) and replaces any earlier part of that number; a part interrupted
  half-way is never listed or used. Returns the part's size and SHA-256.
* `parts(upload)`: the parts stored so far, in number order (what a resumed upload asks).
* `complete(upload, key, numbers)`: when it returns, object `key` is durable and holds the
  named parts concatenated in the order given, and the upload is gone; until it returns the
  object does not exist (never half of it). A missing part is a `BlobError`.
* `abort(upload)`: the upload and its parts are gone (idempotent).
* `read(key, start, end)`: the bytes [start, end) of object `key`, as pieces of at most
  `PIECE` bytes, never the whole object in memory.
* `size(key)`: the object's size, or None when it does not exist.
* `delete(key)`: when it returns, the object is no longer readable through this interface
  (idempotent). On a filesystem its blocks are freed, not overwritten: retention deletes
  ciphertext, whose key is in the message, which is destroyed too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["KEY_RE", "PIECE", "BlobError", "BlobStore", "FileBlobStore", "PartInfo"]

#: Keys and upload ids: what both a file name and an S3 object name can be, with no separator.
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{7,95}$")
#: The largest piece `read` yields and `put_part` writes at once.
PIECE = 1 << 20
#: Part numbers as S3 allows them.
MAX_PART = 10_000


class BlobError(Exception):
    """A store refused or failed an operation; the message says which and why."""


@dataclass(frozen=True)
class PartInfo:
    number: int
    size: int
    sha256: str


class BlobStore(Protocol):
    """See the module's contract."""

    async def put_part(self, upload: str, number: int, pieces: AsyncIterable[bytes]) -> PartInfo: ...

    async def parts(self, upload: str) -> list[PartInfo]: ...

    async def complete(self, upload: str, key: str, numbers: Sequence[int]) -> int: ...

    async def abort(self, upload: str) -> None: ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int | None: ...

    async def delete(self, key: str) -> None: ...


def _check(kind: str, name: str) -> str:
    if not isinstance(name, str) or not KEY_RE.fullmatch(name):
        raise BlobError(f"{kind} {str(name)[:40]!r} is not a valid name (a-z, 0-9, _ and -, 8 to 96)")
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """The embedded default: `<root>/uploads/<upload>/<number>.<sha256>.part`, and an object
    is the folder `<root>/objects/<key[:2]>/<key>/` of its parts and a `manifest` naming them
    in order: completing an upload writes the manifest and renames the upload's folder into
    place, copying nothing. Durability by write-to-temporary, fsync, rename and fsync of the
    directory; blocking file work runs in threads, a piece at a time. A part's name carries
    its SHA-256, so that listing parts reads no part."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._uploads = root / "uploads"
        self._objects = root / "objects"

    def _object(self, key: str) -> Path:
        _check("key", key)
        return self._objects / key[:2] / key

    def _upload(self, upload: str) -> Path:
        return self._uploads / _check("upload", upload)

    async def put_part(self, upload: str, number: int, pieces: AsyncIterable[bytes]) -> PartInfo:
        if type(number) is not int or not 1 <= number <= MAX_PART:
            raise BlobError(f"a part number is 1 to {MAX_PART}")
        folder = self._upload(upload)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        tmp = folder / f".{number}.{secrets.token_hex(8)}.tmp"
        digest, size = hashlib.sha256(), 0
        f: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        try:
            async for piece in pieces:
                digest.update(piece)
                size += len(piece)
                await asyncio.to_thread(f.write, piece)
            await asyncio.to_thread(_flush_and_sync, f)
        except BaseException:
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        await asyncio.to_thread(f.close)
        hexdigest = digest.hexdigest()
        await asyncio.to_thread(_replace_part, tmp, folder, number, hexdigest)
        return PartInfo(number, size, hexdigest)

    async def parts(self, upload: str) -> list[PartInfo]:
        return await asyncio.to_thread(self._parts, self._upload(upload))

    @staticmethod
    def _parts(folder: Path) -> list[PartInfo]:
        return [info for info, _ in _part_files(folder).values()]

    async def complete(self, upload: str, key: str, numbers: Sequence[int]) -> int:
        folder, target = self._upload(upload), self._object(key)
        return await asyncio.to_thread(self._complete, folder, target, list(numbers))

    @staticmethod
    def _complete(folder: Path, target: Path, numbers: list[int]) -> int:
        # No byte is copied: the upload's folder, its parts and a manifest naming them in
        # order, is renamed into place as the object (one atomic rename).
        stored = _part_files(folder)
        missing = [n for n in numbers if n not in stored]
        if missing or not numbers:
            raise BlobError(f"the upload has no part {missing[0] if missing else 1}")
        keep = {stored[n][1].name for n in numbers}
        for path in folder.iterdir():  # parts not named, and anything half-written
            if path.name not in keep:
                path.unlink(missing_ok=True)
        manifest: list[tuple[str, int]] = [(stored[n][1].name, stored[n][0].size) for n in numbers]
        tmp = folder / f".manifest.{secrets.token_hex(8)}.tmp"
        with tmp.open("w") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        _replace_durably(tmp, folder / _MANIFEST)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # completing a key again replaces it, as S3 does
            _remove_tree(target)
        os.rename(folder, target)
        _fsync_dir(target.parent)
        _fsync_dir(folder.parent)
        return sum(size for _, size in manifest)

    async def abort(self, upload: str) -> None:
        await asyncio.to_thread(_remove_tree, self._upload(upload))

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        folder = self._object(key)
        if start < 0 or end < start:
            raise BlobError(f"the range [{start}, {end}) is not a range")
        manifest = await asyncio.to_thread(_manifest, folder)
        if manifest is None:
            raise BlobError(f"no object {key}")
        offset = 0
        for name, size in manifest:
            lo, hi = max(start, offset), min(end, offset + size)
            if lo < hi:
                async for piece in _read_file(folder / name, lo - offset, hi - offset):
                    yield piece
            offset += size
        if end > offset:
            raise BlobError(f"object {key} is shorter than {end} bytes")

    async def size(self, key: str) -> int | None:
        manifest = await asyncio.to_thread(_manifest, self._object(key))
        return None if manifest is None else sum(size for _, size in manifest)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(_remove_tree, self._object(key))


_MANIFEST = "manifest"


def _manifest(folder: Path) -> list[tuple[str, int]] | None:
    """An object's parts in order, with their sizes; None when there is no such object."""
    try:
        raw = (folder / _MANIFEST).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [(str(name), int(size)) for name, size in json.loads(raw)]


async def _read_file(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        f: BinaryIO = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise BlobError(f"a part of the object is missing ({path.name})") from None
    try:
        await asyncio.to_thread(f.seek, start)
        left = end - start
        while left > 0:
            piece = await asyncio.to_thread(f.read, min(PIECE, left))
            if not piece:
                raise BlobError(f"a part of the object is shorter than its manifest says ({path.name})")
            left -= len(piece)
            yield piece
    finally:
        await asyncio.to_thread(f.close)


_PART_NAME = re.compile(r"^([0-9]{1,5})\.([0-9a-f]{64})\.part$")


def _part_files(folder: Path) -> dict[int, tuple[PartInfo, Path]]:
    """The parts in `folder` by number, in number order (the newest file of a number, should a
    crash have left two)."""
    found: dict[int, tuple[PartInfo, Path, float]] = {}
    if not folder.is_dir():
        return {}
    for path in folder.iterdir():
        m = _PART_NAME.fullmatch(path.name)
        if m is None:
            continue
        st = path.stat()
        number = int(m[1])
        if number not in found or st.st_mtime > found[number][2]:
            found[number] = (PartInfo(number, st.st_size, m[2]), path, st.st_mtime)
    return {n: (found[n][0], found[n][1]) for n in sorted(found)}


def _replace_part(tmp: Path, folder: Path, number: int, digest: str) -> None:
    """Rename the written part into place, then remove any earlier part of that number."""
    target = folder / f"{number}.{digest}.part"
    _replace_durably(tmp, target)
    for path in folder.iterdir():
        m = _PART_NAME.fullmatch(path.name)
        if m is not None and int(m[1]) == number and path != target:
            path.unlink(missing_ok=True)


def _flush_and_sync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _replace_durably(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _unlink_durably(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def _remove_tree(folder: Path) -> None:
    if not folder.is_dir():
        return
    # An object's manifest first: from then on it does not exist, whatever is left of it.
    _unlink_durably(folder / _MANIFEST)
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    folder.rmdir()
    _fsync_dir(folder.parent)
