"""Rate limits shared by the processes of one data directory: `storage.buckets.SharedBuckets`
(a token-bucket table in a mapped file) behind `usecases.ratelimit.RateLimiter`."""

from __future__ import annotations

import math
import multiprocessing
import os
import struct
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, TypeVar

import pytest

from liaison.service.problems import Problem
from liaison.service.storage import buckets
from liaison.service.storage.buckets import HEADER, RECORD, BucketFileError, SharedBuckets
from liaison.service.usecases.ratelimit import RateLimiter, refund_token, take_token

SPAWN = multiprocessing.get_context("spawn")
T = TypeVar("T")
#: What a hammering process reports: when it started and ended, and the tokens it got per key.
Granted = tuple[float, float, dict[str, int]]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def drain(limiter: RateLimiter, key: str, tries: int) -> int:
    """How many of `tries` takes for `key` were allowed."""
    return sum(1 for _ in range(tries) if limiter.take(key) == 0)


def run_spawned(target: Callable[..., None], args: list[tuple[Any, ...]], out: Queue[T]) -> list[T]:
    """Run `target(*a)` for each `a` of `args`, each in a spawned process, at once; what each
    put on `out`. Every process must exit cleanly."""
    procs = [SPAWN.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return got


def records(path: Path) -> list[tuple[int, float, float]]:
    data = path.read_bytes()
    return [RECORD.unpack_from(data, off) for off in range(HEADER.size, len(data), RECORD.size)]


def salt_of(path: Path) -> bytes:
    salt: bytes = HEADER.unpack(path.read_bytes()[: HEADER.size])[4]
    return salt


# --- the arithmetic, once for both backends -----------------------------------------------


def test_take_and_refund_arithmetic() -> None:
    assert take_token(None, 100.0, 2.0, 3.0) == ((2.0, 100.0), 0.0)
    assert take_token((0.5, 100.0), 100.0, 2.0, 3.0) == ((0.5, 100.0), 0.25)
    assert take_token((0.5, 100.0), 100.5, 2.0, 3.0) == ((0.5, 100.5), 0.0)  # 1.5 - 1
    assert take_token((0.0, 100.0), 1e9, 2.0, 3.0) == ((2.0, 1e9), 0.0)  # refilled to the burst only
    # A clock stepped back refills nothing, and loses nothing.
    assert take_token((0.5, 100.0), 50.0, 2.0, 3.0) == ((0.5, 50.0), 0.25)
    # Unreadable values (a damaged shared file) count as a full bucket.
    for bad in [(math.nan, 1.0), (1.0, math.inf), (-1.0, 1.0), (3.5, 1.0)]:
        assert take_token(bad, 100.0, 2.0, 3.0) == ((2.0, 100.0), 0.0)
        assert refund_token(bad, 100.0, 3.0) == (3.0, 100.0)
    assert refund_token((0.5, 90.0), 100.0, 3.0) == (1.5, 90.0)
    assert refund_token((2.5, 90.0), 100.0, 3.0) == (3.0, 90.0)
    assert refund_token(None, 100.0, 3.0) == (3.0, 100.0)


# --- across processes ------------------------------------------------------------------------


def _take_all(path: str | None, rate: float, burst: int, barrier: Barrier, out: Queue[int]) -> None:
    """Try 2 x burst takes of one key, on the table at `path`, or in memory when None."""
    table = SharedBuckets.open(Path(path), slots=64) if path else None
    limiter = RateLimiter(rate, burst, table=table)
    barrier.wait(timeout=30)
    out.put(drain(limiter, "device-1", 2 * burst))
    if table:
        table.close()


def allowed_in_two_processes(path: str | None, rate: float, burst: int) -> int:
    """How many tokens two processes got together, taking from one key at the same time."""
    barrier = SPAWN.Barrier(2)
    out: Queue[int] = SPAWN.Queue()
    return sum(run_spawned(_take_all, [(path, rate, burst, barrier, out)] * 2, out))


def test_two_processes_share_one_bucket(tmp_path: Path) -> None:
    burst, rate = 40, 0.001  # no refill to speak of during the test
    # In memory (what each worker had until now): each process allows the burst.
    assert allowed_in_two_processes(None, rate, burst) == 2 * burst
    # On one table: the burst, once, between them.
    assert allowed_in_two_processes(str(tmp_path / "t"), rate, burst) == burst


def _hammer(
    path: str, keys: list[str], rate: float, burst: int, seconds: float, barrier: Barrier, out: Queue[Granted]
) -> None:
    with SharedBuckets.open(Path(path), slots=1024) as table:
        limiter = RateLimiter(rate, burst, table=table)
        barrier.wait(timeout=30)
        granted: Counter[str] = Counter()
        start = time.time()
        rounds = 0
        # At least 2 x burst tries per key, then on until the time is up.
        while rounds < 2 * burst or time.time() - start < seconds:
            for key in keys:
                if limiter.take(key) == 0:
                    granted[key] += 1
            rounds += 1
        out.put((start, time.time(), dict(granted)))


def test_many_processes_never_exceed_the_bucket(tmp_path: Path) -> None:
    burst, rate, workers = 10, 20.0, 3
    keys = [f"device-{i}" for i in range(12)]
    barrier = SPAWN.Barrier(workers)
    out: Queue[Granted] = SPAWN.Queue()
    # Each process hammers every key, starting from a different one.
    args = [
        (str(tmp_path / "t"), keys[i:] + keys[:i], rate, burst, 0.3, barrier, out) for i in range(workers)
    ]
    results = run_spawned(_hammer, args, out)
    elapsed = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    total: Counter[str] = Counter()
    for _, _, granted in results:
        total.update(granted)
    for key in keys:
        assert burst <= total[key] <= burst + rate * elapsed, (key, total[key], elapsed)


def test_a_forked_child_reopens_the_table(tmp_path: Path) -> None:
    """A table inherited across fork is reopened in the child (its own lock), not shared."""
    with SharedBuckets.open(tmp_path / "t", slots=64) as table:
        limiter = RateLimiter(0.001, 5, table=table)
        assert drain(limiter, "k", 3) == 3
        fork = multiprocessing.get_context("fork")
        out: Queue[int] = fork.Queue()
        child = fork.Process(target=lambda: out.put(drain(limiter, "k", 5)))
        child.start()
        assert out.get(timeout=30) == 2
        child.join(timeout=30)
        assert child.exitcode == 0 and limiter.take("k") > 0


# --- one process ------------------------------------------------------------------------------


def test_refill_refund_and_retry_after_as_in_memory(tmp_path: Path) -> None:
    with SharedBuckets.open(tmp_path / "t", slots=64) as table:
        shared, memory = RateLimiter(0.5, 2, table=table), RateLimiter(0.5, 2)
        for limiter in (shared, memory):
            assert drain(limiter, "k", 2) == 2
            wait = limiter.take("k")
            assert 1.9 < wait <= 2.0
            with pytest.raises(Problem) as refused:
                limiter.check("k", "too many requests from this device")
            assert (refused.value.slug, refused.value.retry_after) == ("rate-limited", 2)
            limiter.refund("k")
            assert limiter.take("k") == 0 and limiter.take("k") > 0
            assert limiter.take("other") == 0  # per key
    with SharedBuckets.open(tmp_path / "fast", slots=64) as table:
        fast = RateLimiter(20.0, 3, table=table)
        assert drain(fast, "k", 3) == 3
        time.sleep(0.2)  # 4 tokens' worth: refilled to the burst
        assert fast.take("k") == 0
        waits = [fast.take("k") for _ in range(10)]
        assert any(waits) and all(wait <= 1 / 20 for wait in waits)


def test_exact_refill_on_the_tables_clock(tmp_path: Path) -> None:
    clock = Clock()
    with SharedBuckets.open(tmp_path / "t", slots=64, clock=clock) as table:
        limiter = RateLimiter(2.0, 3, table=table)
        assert drain(limiter, "k", 4) == 3
        assert limiter.take("k") == 0.5
        clock.now += 0.75  # 1.5 tokens
        assert drain(limiter, "k", 3) == 1
        clock.now -= 3600  # stepped back: no refill, no crash
        assert limiter.take("k") == 0.25
        clock.now += 0.25  # 0.5 + 0.5
        assert limiter.take("k") == 0
        limiter.refund("k")
        limiter.refund("k")
        limiter.refund("k")
        limiter.refund("k")
        assert drain(limiter, "k", 5) == 3  # refunds never exceed the burst


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with SharedBuckets.open(path, slots=64) as table:
        assert drain(RateLimiter(0.001, 3, table=table), "k", 3) == 3
    salt = salt_of(path)
    with SharedBuckets.open(path, slots=64) as table:
        assert RateLimiter(0.001, 3, table=table).take("k") > 0
    assert salt_of(path) == salt


def test_eviction_when_a_window_is_full(tmp_path: Path) -> None:
    clock = Clock()
    # 8 slots: every key lands in the one window.
    with SharedBuckets.open(tmp_path / "t", slots=8, clock=clock) as table:
        limiter = RateLimiter(0.001, 2, table=table)
        keys = [f"k{i}" for i in range(9)]
        for key in keys[:8]:
            assert drain(limiter, key, 3) == 2
            clock.now += 1
        assert len({h for h, _, _ in records(tmp_path / "t")}) == 8
        # A ninth key takes the least recently updated slot, k0's...
        assert drain(limiter, keys[8], 3) == 2
        clock.now += 1
        for key in keys[1:8]:
            assert limiter.take(key) > 0  # ...the others keep their buckets
            clock.now += 1
        # ...and k0 starts again from a full bucket: the table's limit.
        assert drain(limiter, "k0", 3) == 2


def test_keys_are_hashed_with_the_files_own_salt(tmp_path: Path) -> None:
    with SharedBuckets.open(tmp_path / "a", slots=64) as a, SharedBuckets.open(tmp_path / "b", slots=64) as b:
        RateLimiter(1, 2, table=a).take("device-1")
        RateLimiter(1, 2, table=b).take("device-1")
    assert salt_of(tmp_path / "a") != salt_of(tmp_path / "b")
    used = [{h for h, _, _ in records(tmp_path / name) if h} for name in "ab"]
    assert len(used[0]) == len(used[1]) == 1 and used[0] != used[1]
    assert used[0] == {buckets.key_hash("device-1", salt_of(tmp_path / "a"))}


# --- damaged and unsafe files -------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"LIAISONB",  # truncated in the header
        b"\xff" * (HEADER.size + 64 * RECORD.size),  # right size, garbage
        b"NOTATABL" + b"\0" * (HEADER.size + 64 * RECORD.size - 8),  # wrong magic
        struct.pack("<8sIIQ16s24x", b"LIAISONB", 2, 0, 64, b"s" * 16) + b"\0" * 64 * RECORD.size,  # version
        struct.pack("<8sIIQ16s24x", b"LIAISONB", 1, 0, 32, b"s" * 16) + b"\0" * 32 * RECORD.size,  # slots
        struct.pack("<8sIIQ16s24x", b"LIAISONB", 1, 0, 64, b"s" * 16) + b"\0" * 10,  # truncated records
    ],
)
def test_a_damaged_file_is_initialised_again(tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "t"
    path.write_bytes(damage)
    path.chmod(0o600)
    with SharedBuckets.open(path, slots=64) as table:
        assert drain(RateLimiter(0.001, 3, table=table), "k", 4) == 3
    assert path.stat().st_size == HEADER.size + 64 * RECORD.size
    assert salt_of(path) not in (b"s" * 16, b"\xff" * 16)


def test_damage_while_open_is_initialised_again(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with SharedBuckets.open(path, slots=64) as table:
        limiter = RateLimiter(0.001, 3, table=table)
        assert drain(limiter, "k", 4) == 3
        # Another process finds the file truncated (and initialises it): no SIGBUS here.
        os.truncate(path, 100)
        assert drain(limiter, "k", 4) == 3
        # Values out of range in the record: a full bucket.
        with path.open("r+b") as f:
            data = bytearray(f.read())
            for off in range(HEADER.size, len(data), RECORD.size):
                h, _, last = RECORD.unpack_from(data, off)
                if h:
                    RECORD.pack_into(data, off, h, math.nan, last)
            f.seek(0)
            f.write(data)
        assert drain(limiter, "k", 4) == 3
        # A new salt written by another process is adopted.
        with path.open("r+b") as f:
            f.seek(24)
            f.write(b"n" * 16)
        assert drain(limiter, "k", 4) == 3
        assert salt_of(path) == b"n" * 16


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    target.chmod(0o600)
    (tmp_path / "t").symlink_to(target)
    with pytest.raises(BucketFileError, match="symbolic link"):
        SharedBuckets.open(tmp_path / "t", slots=64)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(BucketFileError, match="symbolic link"):
        SharedBuckets.open(tmp_path / "dangling", slots=64)
    assert not (tmp_path / "nowhere").exists() and target.read_bytes() == b""


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t"
    SharedBuckets.open(path, slots=64).close()
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(BucketFileError, match="mode 0644"):
        SharedBuckets.open(path, slots=64)
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(BucketFileError, match="not a regular file"):
        SharedBuckets.open(tmp_path / "fifo", slots=64)


def test_a_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t"
    SharedBuckets.open(path, slots=64).close()
    monkeypatch.setattr(buckets.os, "geteuid", lambda: path.stat().st_uid + 1)
    with pytest.raises(BucketFileError, match="owned by uid"):
        SharedBuckets.open(path, slots=64)


def test_bad_slot_counts_and_a_closed_table(tmp_path: Path) -> None:
    for slots in (0, 7, 1 << 30):
        with pytest.raises(ValueError, match="slots"):
            SharedBuckets.open(tmp_path / "t", slots=slots)
    table = SharedBuckets.open(tmp_path / "t", slots=8)
    table.close()
    table.close()
    with pytest.raises(ValueError, match="closed"):
        RateLimiter(1, 1, table=table).take("k")


def test_a_reset_empties_every_processs_view_of_the_table(tmp_path: Path) -> None:
    path = tmp_path / "t.buckets"
    with SharedBuckets.open(path) as one, SharedBuckets.open(path) as two:
        first, second = RateLimiter(0.001, 3, table=one), RateLimiter(0.001, 3, table=two)
        assert [first.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert second.take("k") > 0  # the shared bucket is empty
        second.reset()
        assert first.take("k") == 0.0  # full again, for the other opener too
        assert (tmp_path / "t.buckets").stat().st_blocks * 512 >= (tmp_path / "t.buckets").stat().st_size
