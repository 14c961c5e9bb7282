"""The tables the code maps (`storage/models.py`) are exactly what the migrations create, on
SQLite and on PostgreSQL: Alembic compares a freshly migrated database with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, Table

from liaison.service.storage.db import Database
from liaison.service.storage.migrate import upgrade
from liaison.service.storage.models import Base
from tests.service.harness import postgres_database


def _differences(conn: Any, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _compare(url: str, metadata: MetaData) -> list[Any]:
    db = Database(url)
    try:
        await upgrade(db)
        async with db.engine.connect() as conn:
            return await conn.run_sync(_differences, metadata)
    finally:
        await db.dispose()


async def _compare_on(backend: str, tmp_path: Path, metadata: MetaData) -> list[Any]:
    if backend == "sqlite":
        return await _compare(f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}", metadata)
    async with postgres_database() as url:
        return await _compare(url, metadata)


async def test_models_match_the_migrated_schema(backend: str, tmp_path: Path) -> None:
    assert await _compare_on(backend, tmp_path, Base.metadata) == []


async def test_a_model_the_migrations_lack_is_found(backend: str, tmp_path: Path) -> None:
    # The comparison is not vacuous: one more mapped table (or column) shows up as a difference.
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    Table("not_migrated", metadata, Column("id", Integer, primary_key=True))
    metadata.tables["principal"].append_column(Column("nickname", String(20)))
    found = await _compare_on(backend, tmp_path, metadata)
    kinds = sorted(d[0] for d in found if isinstance(d, tuple))
    assert kinds == ["add_column", "add_table"], found
