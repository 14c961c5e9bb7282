"""How a batch begins (`Raw.lock`): its transaction, the writers' lock and the log's size in one
go (on PostgreSQL one round trip: BEGIN READ COMMITTED, `pg_advisory_xact_lock`, the size, as
one simple query on the writer's autocommit connection; on SQLite BEGIN IMMEDIATE, then the
size). The lock is held until the transaction ends, the size read is the log's, and a
transaction begun before the lock (whose snapshot could be stale) is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import asyncpg
import pytest
from sqlalchemy.orm import Session

from liaison.service.storage.logstore import SqlLogStore
from liaison.service.storage.raw import _PG_LOCK_KEY, Raw, raw_connection
from tests.service.harness import World, _pg_admin_dsn


@contextmanager
def _batch_session(world: World) -> Iterator[tuple[Session, Raw]]:
    """A session on the writer's own engine, as `Writer._begin` opens one."""
    writer = world.state.writer
    session = Session(writer.engine, expire_on_commit=False)
    try:
        session.begin()
        yield session, raw_connection(session, writer.is_postgres)
    finally:
        with suppress(Exception):
            session.rollback()
        session.close()


async def _someone_else_can_lock(world: World) -> bool:
    """Whether another connection could take the writers' lock now (PostgreSQL)."""
    database = world.state.db.engine.url.database
    conn = await asyncpg.connect(_pg_admin_dsn(), database=database)
    try:
        got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _PG_LOCK_KEY))
        if got:
            await conn.execute("SELECT pg_advisory_unlock($1)", _PG_LOCK_KEY)
        return got
    finally:
        await conn.close()


async def test_the_lock_is_held_and_the_size_is_the_logs(world: World) -> None:
    await world.state.writer.run(lambda tx: tx.audit("test.begin", "system"))
    size = await world.log_size()
    assert size > 0

    def begin() -> tuple[Session, Raw, int]:
        session = Session(world.state.writer.engine, expire_on_commit=False)
        session.begin()
        raw = raw_connection(session, world.state.writer.is_postgres)
        return session, raw, SqlLogStore.size_of(raw.lock(then=SqlLogStore.SIZE))

    session, raw, read = await asyncio.to_thread(begin)
    try:
        assert read == size
        if world.state.db.is_postgres:
            conn = raw.cursor.connection
            assert conn.autocommit  # psycopg began nothing itself: the batch's BEGIN did
            assert conn.info.transaction_status.name == "INTRANS"
            level = raw.execute("SHOW transaction_isolation").fetchone()[0]
            assert level == "read committed"
            assert not await _someone_else_can_lock(world)
        else:
            assert raw.cursor.connection.in_transaction
    finally:
        await asyncio.to_thread(session.rollback)
        session.close()
    if world.state.db.is_postgres:
        assert await _someone_else_can_lock(world)  # released with the transaction
    # And the writer carries on from there.
    await world.state.writer.run(lambda tx: tx.audit("test.begin", "system"))
    assert await world.log_size() == size + 2


async def test_a_transaction_begun_before_the_lock_is_refused(world: World) -> None:
    def attempt() -> str:
        with _batch_session(world) as (_, raw):
            raw.execute("BEGIN")  # as a driver would before the first statement, by itself
            with pytest.raises(RuntimeError, match="began before its lock") as e:
                raw.lock(then=SqlLogStore.SIZE)
            return str(e.value)

    assert "began before its lock" in await asyncio.to_thread(attempt)


@pytest.mark.parametrize("then", ["SELECT 1; SELECT 2", "SELECT max(size) FROM checkpoint WHERE size > %s"])
async def test_the_read_after_the_lock_is_one_plain_statement(world: World, then: str) -> None:
    if not world.state.db.is_postgres:
        pytest.skip("SQLite runs the read as a statement of its own")

    def attempt() -> None:
        with _batch_session(world) as (_, raw), pytest.raises(ValueError, match="one statement"):
            raw.lock(then=then)

    await asyncio.to_thread(attempt)
