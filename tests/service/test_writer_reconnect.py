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
import logging
import os
from pathlib import Path

import asyncpg
import pytest

from liaison.service.problems import Problem
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


#: A table an insert into which makes the database drop the inserting connection.
_TRAP = """
CREATE TABLE trap (x integer);
CREATE FUNCTION trap_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
CREATE TRIGGER trap_drop AFTER INSERT ON trap FOR EACH ROW EXECUTE FUNCTION trap_drop();
"""


def _lose_the_connection(tx: Tx) -> None:
    """Leave, for the batch's last writes, a row whose insert drops the connection: it goes
    out with the COMMIT in one pipeline (`Raw.pipeline`), whose answers are read when the
    pipeline ends, with the COMMIT's still to come."""
    tx.insert_later("trap (x)", ("integer",), [(1,)])


async def test_a_connection_lost_in_the_batchs_pipeline_is_discarded_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen under load in test_pg_outage.py: a connection dropped while the batch's pipeline
    was open was handed back to the pool still in pipeline mode; the pool's reset then failed
    and logged an ERROR with a traceback. The batch fails (503, nothing stored), the connection
    is discarded, nothing worse than a warning is logged, and the next batch commits."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"needs PostgreSQL: set {PG_ENV}")
    async with world_on("postgres", tmp_path) as w:
        conn = await asyncpg.connect(w.state.settings.db_url.replace("+asyncpg", ""))
        try:
            await conn.execute(_TRAP)
        finally:
            await conn.close()
        writer = w.state.writer
        await writer.run(_append)
        size = await w.log_size()
        with caplog.at_level(logging.WARNING):
            with pytest.raises(Problem) as failed:
                await writer.run(_lose_the_connection)
            assert failed.value.status == 503
            assert await w.log_size() == size  # nothing of the batch was stored

            result = await writer.run(_append)

        assert list(result.receipts) == [size]
        bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, [(r.name, r.getMessage()) for r in bad[:5]]
