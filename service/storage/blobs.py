"""Where attachment ciphertext lives (issues 15 and 16): a small interface, its contract, and
the embedded default, a directory of files (the S3-compatible store is `s3blobs.py`).

The interface is S3's multipart upload: an upload of object `key` is begun, receives numbered
parts, each stored whole or not at all, and is completed into the object (its parts in order)
or aborted; objects are read by byte range and deleted. An upload is named by the key of the
object it becomes (one upload per key at a time). Keys match `KEY_RE` (they become file names
here, object names there): no path ever comes from a caller.

Contract (every backend, tested on each in tests/service/test_blobs.py):

* `begin(key)`: an upload of `key` exists when it returns (idempotent: an upload already
  begun keeps its parts). A part of an upload never begun is a `BlobError`.
* `put_part(key, number, pieces, sha256=None)`: when it returns, the part is durable (it
  survives a crash or power loss) and replaces any earlier part of that number; a part
  interrupted half-way is never listed or used. `sha256`, when given, is the part's SHA-256
  as the caller already verified it (a signed request's Content-Digest): the store uses it
  rather than hash the bytes again, or has its server check it (S3's checksum). Returns the
  part's number, size and SHA-256 (hex).
* `parts(key)`: the parts of the upload stored so far, in number order (what a resumed upload
  asks); a part's `sha256` is None where the store does not keep it (S3's ListParts).
* `complete(key, numbers)`: when it returns, object `key` is durable and holds the named parts
  concatenated in the order given (strictly ascending numbers, as S3 requires; on S3 every
  part but the last has at least 5 MiB, which the settings ensure), and the upload is gone;
  until it returns the object does not exist (never half of it). A missing part is a
  `BlobError`, and so is an object `key` that exists already: an object is never replaced,
  only deleted (S3: a conditional write, `If-None-Match: *`), so ciphertext whose chunk tree
  was checked cannot change under its readers.
* `abort(key)`: the upload of `key` and its parts are gone (idempotent; the object, if any,
  is untouched).
* `uploads()`: every upload not completed or aborted, with the time it was begun (what the
  sweep of abandoned uploads lists: server-side, so parts nobody remembers are found too).
* `read(key, start, end)`: the bytes [start, end) of object `key`, as pieces of at most
  `PIECE` bytes, never the whole object in memory.
* `size(key)`: the object's size, or None when it does not exist.
* `delete(key)`: when it returns, the object is no longer readable through this interface
  (idempotent). On a filesystem its blocks are freed, not overwritten; on a versioned bucket
  an older version may remain (docs/operations.md, "Attachment storage"). Retention deletes
  ciphertext whose key was in the message, which is destroyed too.
* `close()`: release connections (the file store holds none).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["KEY_RE", "MAX_PART", "PIECE", "BlobError", "BlobStore", "FileBlobStore", "OpenUpload", "PartInfo"]

#: Keys: what both a file name and an S3 object name can be, with no separator.
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
    sha256: str | None


@dataclass(frozen=True)
class OpenUpload:
    """An upload not completed or aborted: its object key and when it was begun (UTC)."""

    key: str
    begun: datetime


class BlobStore(Protocol):
    """See the module's contract."""

    async def begin(self, key: str) -> None: ...

    async def put_part(
        self, key: str, number: int, pieces: AsyncIterable[bytes], sha256: bytes | None = None
    ) -> PartInfo: ...

    async def parts(self, key: str) -> list[PartInfo]: ...

    async def complete(self, key: str, numbers: Sequence[int]) -> int: ...

    async def abort(self, key: str) -> None: ...

    async def uploads(self) -> list[OpenUpload]: ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int | None: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


def check_key(name: str) -> str:
    """`name` if it is a valid key, else BlobError (every backend checks every key it is given)."""
    if not isinstance(name, str) or not KEY_RE.fullmatch(name):
        raise BlobError(f"key {str(name)[:40]!r} is not a valid name (a-z, 0-9, _ and -, 8 to 96)")
    return name


def check_part(number: int, sha256: bytes | None) -> None:
    if type(number) is not int or not 1 <= number <= MAX_PART:
        raise BlobError(f"a part number is 1 to {MAX_PART}")
    if sha256 is not None and len(sha256) != 32:
        raise BlobError("a part's SHA-256 is 32 bytes")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """The embedded default: an upload is the folder `<root>/uploads/<key>/` (its `begun`
    marker and its parts `<number>.<sha256>.part`), and an object the folder
    `<root>/objects/<key[:2]>/<key>/` of its parts and a `manifest` naming them in order:
    completing an upload writes the manifest and renames the upload's folder into place,
    copying nothing. Durability by write-to-temporary, fsync, rename and fsync of the
    directory; blocking file work runs in threads, a piece at a time. A part's name carries
    its SHA-256, so that listing parts reads no part."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._uploads = root / "uploads"
        self._objects = root / "objects"

    def _object(self, key: str) -> Path:
        check_key(key)
        return self._objects / key[:2] / key

    def _upload(self, key: str) -> Path:
        return self._uploads / check_key(key)

    async def begin(self, key: str) -> None:
        await asyncio.to_thread(_begin, self._upload(key))

    async def put_part(
        self, key: str, number: int, pieces: AsyncIterable[bytes], sha256: bytes | None = None
    ) -> PartInfo:
        check_part(number, sha256)
        folder = self._upload(key)
        if not await asyncio.to_thread((folder / _BEGUN).exists):
            raise BlobError(f"no upload of {key} was begun")
        tmp = folder / f".{number}.{secrets.token_hex(8)}.tmp"
        digest, size = (hashlib.sha256() if sha256 is None else None), 0
        f: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        try:
            async for piece in pieces:
                if digest is not None:
                    digest.update(piece)
                size += len(piece)
                await asyncio.to_thread(f.write, piece)
            await asyncio.to_thread(_flush_and_sync, f)
        except BaseException:
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            raise
        await asyncio.to_thread(f.close)
        hexdigest = digest.hexdigest() if digest is not None else (sha256 or b"").hex()
        await asyncio.to_thread(_replace_part, tmp, folder, number, hexdigest)
        return PartInfo(number, size, hexdigest)

    async def parts(self, key: str) -> list[PartInfo]:
        return await asyncio.to_thread(self._parts, self._upload(key))

    @staticmethod
    def _parts(folder: Path) -> list[PartInfo]:
        return [info for info, _ in _part_files(folder).values()]

    async def complete(self, key: str, numbers: Sequence[int]) -> int:
        folder, target = self._upload(key), self._object(key)
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
        for path in folder.iterdir():  # parts not named, the marker, anything half-written
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
        if target.exists():  # an object is never replaced (S3: If-None-Match)
            raise BlobError(f"object {target.name} exists: an object is never replaced")
        os.rename(folder, target)
        _fsync_dir(target.parent)
        _fsync_dir(folder.parent)
        return sum(size for _, size in manifest)

    async def abort(self, key: str) -> None:
        await asyncio.to_thread(_remove_tree, self._upload(key))

    async def uploads(self) -> list[OpenUpload]:
        return await asyncio.to_thread(_open_uploads, self._uploads)

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

    async def close(self) -> None:
        return None


_BEGUN = "begun"


def _begin(folder: Path) -> None:
    if (folder / _BEGUN).exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".begun.{secrets.token_hex(8)}.tmp"
    tmp.write_bytes(b"")
    _replace_durably(tmp, folder / _BEGUN)
    _fsync_dir(folder.parent)


def _open_uploads(uploads: Path) -> list[OpenUpload]:
    """Every upload folder with its `begun` marker's time (a folder without one, left by a
    crash between its creation and the marker, counts from the folder's own time)."""
    out: list[OpenUpload] = []
    if not uploads.is_dir():
        return out
    for folder in uploads.iterdir():
        if not KEY_RE.fullmatch(folder.name) or not folder.is_dir():
            continue
        try:
            marker = folder / _BEGUN
            st = marker.stat() if marker.exists() else folder.stat()
        except FileNotFoundError:  # completed or aborted meanwhile
            continue
        out.append(OpenUpload(folder.name, datetime.fromtimestamp(st.st_mtime, UTC)))
    return sorted(out, key=lambda u: (u.begun, u.key))


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
