"""SQLite's WAL checkpoints off the writer's commits (`storage.checkpointer`).

The writer's connections never checkpoint (`wal_autocheckpoint=0`): a thread of the writer
does, after commits, so that no batch waits for the disk. What must hold: the WAL is still
copied back and starts over (it does not grow with everything ever written), the thread
stops with the writer, and a checkpoint that fails is logged and leaves the thread waiting
for the next commit, never crashing it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from liaison.service.storage.checkpointer import WalCheckpointer
from liaison.service.writer import Tx
from tests.service.harness import world_on

#: Bytes of audit-entry openings written per round (each round: 8 batches of 64 KiB).
ROUND = 512 * 1024


def _big(i: int) -> object:
    def job(tx: Tx) -> int:
        return tx.audit("test.bulk", "system", None, i=i, blob="x" * (64 * 1024))

    return job


async def _checkpointed(cp: WalCheckpointer, runs: int) -> tuple[int, int]:
    """Wait for a checkpoint after the `runs`-th that copied the whole WAL back."""
    for _ in range(200):
        if cp.runs > runs and cp.last is not None and cp.last[0] == cp.last[1]:
            return cp.last
        await asyncio.sleep(0.025)
    raise AssertionError(f"no complete checkpoint after run {runs}: last {cp.last}")


async def test_the_wal_starts_over_instead_of_growing_with_all_that_was_written(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path) as w:
        writer = w.state.writer
        cp = writer.checkpointer
        assert cp is not None
        with writer.engine.connect() as conn:  # the writer's connections leave it to the thread
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        database = writer.engine.url.database
        assert database is not None
        wal = Path(f"{database}-wal")
        sizes = []
        for r in range(10):  # 5 MiB in all: past SQLite's own 1,000-page (4 MiB) checkpoint
            runs = cp.runs
            for b in range(ROUND // (64 * 1024)):
                await writer.run(_big(r * 100 + b))
            await _checkpointed(cp, runs)
            sizes.append(os.stat(wal).st_size)
        # Each round's WAL starts over at its beginning: the file (as long as the longest WAL
        # so far: start-up's) does not grow by a round each time, nor up to SQLite's own 4 MiB.
        assert max(sizes) - sizes[0] < ROUND // 2, sizes
        assert len(await w.entries("test.bulk")) == 80


async def test_the_checkpointer_stops_with_the_writer(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path) as w:
        await w.state.writer.run(_big(0))
        assert any(t.name == "liaison-checkpointer" for t in threading.enumerate())
    assert not any(t.name == "liaison-checkpointer" for t in threading.enumerate())


async def test_a_failing_checkpoint_is_logged_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cp = WalCheckpointer(str(tmp_path / "no such directory" / "liaison.db"), every=0.01)
    cp.start()
    try:
        with caplog.at_level(logging.WARNING, logger="liaison.writer"):
            for kick in range(1, 3):
                cp.kick()
                for _ in range(200):
                    if sum("WAL checkpoint failed" in r.message for r in caplog.records) >= kick:
                        break
                    await asyncio.sleep(0.01)
        failures = [r.message for r in caplog.records if "WAL checkpoint failed" in r.message]
        assert len(failures) == 2, failures  # once per kick: the thread lives on
        assert cp.runs == 0
    finally:
        cp.stop()
    assert not any(t.name == "liaison-checkpointer" for t in threading.enumerate())
