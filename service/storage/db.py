"""Database engine and sessions: SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg) by URL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

__all__ = ["Database", "sqlite_pragmas", "utcnow"]


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the one rule for time in the service: see `models.UTCDateTime`)."""
    return datetime.now(UTC)


class Database:
    """Owns the async engine and the session factory."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_postgres = make_url(url).get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {}
        if self.is_postgres:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        else:
            kwargs.update(connect_args={"timeout": 30})
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if not self.is_postgres:
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    def sync_engine(self) -> Engine:
        """A synchronous engine on the same database, for the writer's thread.

        The batching writer runs each batch on one thread with the synchronous driver (sqlite3,
        psycopg): about ten times cheaper per statement than the async drivers, whose every
        statement is a hop between threads or a trip through the event loop.
        """
        url = make_url(self.url)
        if self.is_postgres:
            return create_engine(
                url.set(drivername="postgresql+psycopg"), pool_size=2, max_overflow=0, pool_pre_ping=True
            )
        engine = create_engine(
            url.set(drivername="sqlite"), connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", sqlite_pragmas)
        return engine

    async def ping(self) -> None:
        """One round trip to the database; raises if it is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; NORMAL sync is durable across application
    # crashes (a power loss may lose the last transactions, never corrupt the file).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
