"""Several processes write one SQLite database: their batches take turns (issue 17, item 2).

Each `open_state` below has its own writer thread and its own connections, exactly what a
second server process on the same data directory has as far as SQLite is concerned. Before
the writer serialised batches across processes, two such writers read the same log size,
and the second's batch failed (SQLite refuses to upgrade a read snapshot another connection
has written past: `database is locked`), answered as a server error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

import pytest

from liaison.service.app import close_state, open_state
from liaison.service.config import load_settings
from liaison.service.problems import Problem
from liaison.service.state import AppState
from liaison.service.tlog.verify import verify_log
from liaison.service.writer import Tx
from tests.service.harness import running_world

N = 300


async def _appends(state: AppState, tag: str, n: int) -> list[int]:
    async def one(i: int) -> int:
        def job(tx: Tx) -> int:
            return tx.audit("bench.append", "system", None, writer=tag, i=i)

        return (await state.writer.run(job)).value

    indexes: list[int] = []
    for chunk in range(0, n, 50):  # ten at a time: many small batches from each side
        indexes += await asyncio.gather(*(one(i) for i in range(chunk, min(n, chunk + 50))))
    return indexes


async def test_two_writers_on_one_sqlite_database_keep_one_consecutive_log(tmp_path: Path) -> None:
    async with running_world(tmp_path, None) as world:
        other = await open_state(load_settings(world.state.settings.data_dir), log_policy=False)
        try:
            before = world.state.writer.batches
            mine, theirs = await asyncio.gather(_appends(world.state, "a", N), _appends(other, "b", N))
            assert world.state.writer.batches - before > 5 and other.writer.batches > 5
        finally:
            await close_state(other)
        indexes = sorted(mine + theirs)
        assert len(set(indexes)) == 2 * N, "an index given twice"
        report = await verify_log(world.state.db, world.state.log.signer.verifier)
        assert report.ok, report.failures
        assert report.size >= indexes[-1] + 1


async def test_a_batch_that_read_the_log_size_is_never_overtaken(tmp_path: Path) -> None:
    """The race itself, made certain: process A's batch has read the log's size and is still
    running its job when process B commits a batch. Unserialised, A's entries then take
    indexes B has just used, and A's one-job batch fails (a 500 for its request)."""
    async with running_world(tmp_path, None) as world:
        other = await open_state(load_settings(world.state.settings.data_dir), log_policy=False)
        try:
            started, release = threading.Event(), threading.Event()

            def slow(tx: Tx) -> int:
                started.set()
                release.wait(10)
                return tx.audit("bench.append", "system", None, writer="a")

            def quick(tx: Tx) -> int:
                return tx.audit("bench.append", "system", None, writer="b")

            a = asyncio.ensure_future(world.state.writer.run(slow))
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
            b = asyncio.ensure_future(other.writer.run(quick))
            threading.Timer(0.5, release.set).start()  # B is waiting for A, or has committed
            index_a, index_b = (await a).value, (await b).value
        finally:
            await close_state(other)
        assert index_a != index_b
        report = await verify_log(world.state.db, world.state.log.signer.verifier)
        assert report.ok, report.failures


async def test_a_write_lock_that_cannot_be_opened_is_a_503_not_a_hang(tmp_path: Path) -> None:
    """The writers' lock file beside the database cannot be opened (here: a directory stands
    in its place; in life a full or read-only disk): every write is answered `unavailable`,
    and the writer keeps serving once the lock can be taken again."""
    async with running_world(tmp_path, None) as world:
        settings = world.state.settings
        other = await open_state(load_settings(settings.data_dir), log_policy=False)
        blocker = f"{other.writer.engine.url.database}-writer.lock"
        try:
            other.writer._lock.close()  # type: ignore[union-attr]  # as if never opened
            os.unlink(blocker)
            os.mkdir(blocker)

            def job(tx: Tx) -> int:
                return tx.audit("bench.append", "system")

            with pytest.raises(Problem) as refused:
                await asyncio.wait_for(other.writer.run(job), 10)
            assert refused.value.slug == "unavailable"
            os.rmdir(blocker)
            assert (await asyncio.wait_for(other.writer.run(job), 10)).value >= 0
        finally:
            with contextlib.suppress(OSError):  # gone already, when the test got that far
                os.rmdir(blocker)
            await close_state(other)
