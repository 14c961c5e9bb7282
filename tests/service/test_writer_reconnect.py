"""The writer's PostgreSQL connections after the database dropped them (a restart, a failover,
an idle-connection timeout, an operator's `pg_terminate_backend`).

The writer does not ping a pooled connection before every batch (one round trip a batch, about
3% of a batch of 64 appends: bench/audit_log.py); instead a batch whose very first statement
finds its connection broken, before anything of it was written, starts again once on a new
connection. So a dropped connection costs its next batch nothing visible: no job is answered
503, and nothing is written twice. A database that is really down still answers 503 (the
retry fails too: tests/service/test_pg_outage.py).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest

from liaison.service.writer import Tx
from tests.service.harness import PG_ENV, _pg_admin_dsn, world_on

pytestmark = pytest.mark.postgres


async def _writer_backends(database: str) -> list[int]:
    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'liaison-writer'",
            database,
        )
        return [int(r["pid"]) for r in rows]
    finally:
        await conn.close()


async def _terminate(pids: list[int]) -> None:
    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):  # until they are gone
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
            )
            if not left:
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def _append(tx: Tx) -> int:
    return tx.audit("test.reconnect", "system")


async def test_a_batch_on_a_dropped_connection_reconnects_and_commits(tmp_path: Path) -> None:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"needs PostgreSQL: set {PG_ENV}")
    async with world_on("postgres", tmp_path) as w:
        writer = w.state.writer
        await writer.run(_append)
        database = w.state.db.engine.url.database
        assert database is not None
        pids = await _writer_backends(database)
        assert pids, "the writer's connections name themselves liaison-writer"
        await _terminate(pids)
        size = await w.log_size()

        result = await writer.run(_append)  # not a 503: the batch started again on a new connection

        assert list(result.receipts) == [size]
        assert await w.log_size() == size + 2  # its entry and the batch's map head, once each
        assert len(await w.entries("test.reconnect")) == 2
        assert set(await _writer_backends(database)).isdisjoint(pids)
