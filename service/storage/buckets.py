"""Token buckets shared by every process serving one data directory: a fixed table in a file.

`SharedBuckets` maps a file (`mmap`, a shared mapping) that every process opening the same path
reads and writes, so a rate limit holds for the server as a whole, not per worker. It stores
buckets and decides nothing: the token arithmetic is the caller's (`usecases.ratelimit`), given
to `update` as a step from the bucket read to the bucket to write.

File layout (little-endian; the file is exactly `HEADER.size + slots * RECORD.size` bytes):

    offset  size  field
         0     8  magic, b"LIAISONB"
         8     4  format version (u32), 1
        12     4  reserved (u32), 0
        16     8  slot count (u64)
        24    16  salt: 16 random bytes, written once when the table is initialised
        40    24  reserved, zero
        64         then `slots` records of 24 bytes each:
                     key hash (u64; 0 = an empty slot), tokens (f64), last update (f64, Unix time)

A missing or wrong header (magic, version), a size that is not the one above, or another slot
count, is re-initialised under the lock: a new salt and every slot empty (so every bucket
full). Rate limits then start again, which is what a restart of an in-memory limiter did.

Keys are hashed with BLAKE2b keyed by the salt (8-byte digest; 0 becomes 1, since 0 marks an
empty slot). The salt is in the private file only (mode 0600, owned by the server's user), so a
client cannot choose keys (device ids, addresses) that collide on purpose.

Lookup probes a window of `WINDOW` slots from `hash % slots`: the key's slot, else the first
empty one, else the least recently updated slot of the window is evicted. This is the table's
limit: an evicted key starts again from a full bucket, so more than `WINDOW` keys active at
once in one window (or many more keys than slots overall) loosens their limits; size `slots`
well above the keys active within a refill period (131072 slots, 3 MiB, by default).

Concurrency: every read and write of the table happens under an exclusive `fcntl.flock` on the
file, held for one `update` only (microseconds: no I/O but the mapped memory). The lock belongs
to the open file, so a process killed while holding it releases it (the kernel drops it when
the file is closed). The file is on a local filesystem of the one machine that runs the
processes (flock and shared mappings do not span machines). Each process opens its own table; a
table used in a child after `fork` is reopened there (a descriptor inherited across fork would
share the parent's lock). Within a process the table is used from one thread, the event loop:
flock does not exclude two threads of one process from each other.

Time is `time.time()` (the same for every process and across restarts), read under the lock.
Elapsed time is clamped at 0: a clock stepped back refills nothing (and loses no tokens). Values
read back from the file are the caller's to check (non-finite or out of range: a full bucket).

The file is meant to live in the data directory and must not be removed or replaced while
servers use it (a process keeps the file it opened). A symbolic link, anything but a regular
file, a file owned by another user, or a file that group or others may read or write, is
refused (`BucketFileError`): the salt must stay private, and anyone who could write the table
could reset the limits. A file of the wrong mode is refused rather than fixed, because whoever
could open it may still hold it open after a chmod; remove it and it is created again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import math
import mmap
import os
import secrets
import stat
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

__all__ = ["HEADER", "MAGIC", "RECORD", "VERSION", "WINDOW", "Bucket", "BucketFileError", "SharedBuckets"]

MAGIC = b"LIAISONB"
VERSION = 1
#: magic, version, reserved, slot count, salt; padded to 64 bytes.
HEADER = struct.Struct("<8sIIQ16s24x")
#: key hash, tokens, last update time.
RECORD = struct.Struct("<Qdd")
#: Slots probed from a key's home slot.
WINDOW = 8
MAX_SLOTS = 1 << 24  # 384 MiB of records: far above any sensible table

#: A bucket as stored: (tokens, time of the last update).
Bucket = tuple[float, float]
T = TypeVar("T")


class BucketFileError(OSError):
    """The table's file cannot be used safely (a link, not ours, readable by others...)."""


def key_hash(key: str, salt: bytes) -> int:
    """The key's 64-bit slot hash under `salt`; never 0 (an empty slot)."""
    digest = hashlib.blake2b(key.encode(), key=salt, digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def pick_slot(window: list[tuple[int, float]], wanted: int) -> tuple[int, bool]:
    """The index in `window` (each slot's hash and last update) for a key of hash `wanted`: its
    own slot, else the first empty one, else the least recently updated (then True: that
    slot's bucket is evicted, and the key starts from a full bucket)."""
    for i, (h, _) in enumerate(window):
        if h == wanted:
            return i, False
    for i, (h, _) in enumerate(window):
        if h == 0:
            return i, False
    # An unreadable time counts as the oldest: a damaged slot is the first to go.
    ages = [last if math.isfinite(last) else -math.inf for _, last in window]
    return ages.index(min(ages)), True


def _header(slots: int, salt: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, 0, slots, salt)


def _salt_of(header: bytes, slots: int) -> bytes | None:
    """The salt of a valid header for `slots` slots, else None (re-initialise)."""
    if len(header) != HEADER.size:
        return None
    magic, version, _, count, salt = HEADER.unpack(header)
    ok = magic == MAGIC and version == VERSION and count == slots
    return salt if ok else None


def _open_private(path: Path) -> int:
    """Open (create, 0600) `path` for reading and writing, refusing anything unsafe."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BucketFileError(f"{path} is a symbolic link: refusing to follow it") from e
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BucketFileError(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise BucketFileError(f"{path} is owned by uid {st.st_uid}, not by this user ({os.geteuid()})")
        if st.st_mode & 0o077:
            raise BucketFileError(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others may read or write "
                "it; refusing (remove it and it is created again with mode 0600)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


class SharedBuckets:
    """A fixed table of token buckets in a mapped file, shared by the processes that open it.

    Open one per limiter (`SharedBuckets.open(path)`), in each process; `close()` when done.
    """

    def __init__(self, path: Path, slots: int, clock: Callable[[], float]) -> None:
        self.path, self.slots, self._clock = path, slots, clock
        self._size = HEADER.size + slots * RECORD.size
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._salt = b""
        self._pid = 0

    @classmethod
    def open(
        cls, path: Path, slots: int = 131072, *, clock: Callable[[], float] = time.time
    ) -> SharedBuckets:
        """Open (or create) the table at `path`; re-initialise it if it is not a valid table of
        `slots` slots. `clock` is Unix time in seconds (tests pass their own)."""
        if not WINDOW <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be between {WINDOW} and {MAX_SLOTS}, not {slots}")
        table = cls(path, slots, clock)
        table._attach()
        return table

    def _attach(self) -> mmap.mmap:
        """Open the file, check or initialise it under the lock, and map it."""
        fd = _open_private(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                salt = self._valid_salt(fd) or self._initialise(fd)
                # Every block of the file reserved now: a store into a page of a sparse file
                # on a full disk is SIGBUS, which no handler catches (ENOSPC is raised here).
                os.posix_fallocate(fd, 0, self._size)
                mapped = mmap.mmap(fd, self._size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._map, self._salt, self._pid = fd, mapped, salt, os.getpid()
        return mapped

    def _valid_salt(self, fd: int) -> bytes | None:
        """The salt if the file is a valid table of our size (lock held), else None."""
        if os.fstat(fd).st_size != self._size:
            return None
        return _salt_of(os.pread(fd, HEADER.size, 0), self.slots)

    def _initialise(self, fd: int) -> bytes:
        """Make the file an empty table of our size with a new salt (lock held)."""
        salt = secrets.token_bytes(16)
        os.ftruncate(fd, 0)  # every record zero: empty slots, full buckets
        os.ftruncate(fd, self._size)
        os.posix_fallocate(fd, 0, self._size)  # no sparse pages under the mapping (see `_attach`)
        os.pwrite(fd, _header(self.slots, salt), 0)
        return salt

    def close(self) -> None:
        """Unmap and close the file (the table stays, for the other processes and restarts)."""
        if self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map, self._fd = None, -1

    def __enter__(self) -> SharedBuckets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _locked(self) -> Iterator[mmap.mmap]:
        """The mapped table under the exclusive lock, valid: re-initialised (or a new salt
        adopted) if another process re-initialised it or the file was damaged meanwhile."""
        mapped = self._map
        if mapped is None:
            raise ValueError("the bucket table is closed")
        if os.getpid() != self._pid:  # forked: the inherited descriptor shares the parent's lock
            self.close()
            mapped = self._attach()
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # Checked before the map is touched: a file truncated under it would be SIGBUS.
            salt = self._valid_salt(fd) or self._initialise(fd)
            self._salt = salt
            yield mapped
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def clear(self) -> None:
        """Forget every bucket (all full again), for every process mapping the table."""
        with self._locked() as mapped:
            mapped[HEADER.size : self._size] = bytes(self._size - HEADER.size)

    def update(self, key: str, step: Callable[[Bucket | None, float], tuple[Bucket, T]]) -> T:
        """Under the lock: read `key`'s bucket (None when it has none, or it was evicted), call
        `step(bucket, now)`, store the bucket it returns, and return its result."""
        with self._locked() as mapped:
            wanted = key_hash(key, self._salt)
            home = wanted % self.slots
            offsets = [HEADER.size + (home + i) % self.slots * RECORD.size for i in range(WINDOW)]
            records = [RECORD.unpack_from(mapped, off) for off in offsets]
            index, evicted = pick_slot([(h, last) for h, _, last in records], wanted)
            h, tokens, last = records[index]
            bucket = None if evicted or h != wanted else (tokens, last)
            (tokens, last), result = step(bucket, self._clock())
            RECORD.pack_into(mapped, offsets[index], wanted, tokens, last)
            return result
