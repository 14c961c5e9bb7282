"""Schema migrations: upgrade to head, and tell whether a database is current, old or newer."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import Database

__all__ = ["SchemaState", "downgrade", "schema_state", "upgrade"]


def _config() -> Config:
    # The migrations ship as the namespace package `liaison.migrations` (the repo's alembic/
    # folder, which has no __init__.py so that it can never shadow the alembic library).
    spec = importlib.util.find_spec("liaison.migrations")
    assert spec is not None and spec.submodule_search_locations
    cfg = Config()
    cfg.set_main_option("script_location", next(iter(spec.submodule_search_locations)))
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migration scripts, read once per process: alembic compiles every script file each
    time a ScriptDirectory is made, and a start reads the schema's state three times."""
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str
    known: bool

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    def problem(self) -> str | None:
        """A one-line explanation with the fixing command, or None when current."""
        if self.is_current:
            return None
        if self.current is None:
            return "the database is not migrated: run 'liaison-server migrate'"
        if not self.known:
            return (
                f"the database schema {self.current} is newer than this version of "
                f"liaison-server ({self.head}): upgrade liaison-server"
            )
        return f"the database schema {self.current} is old: run 'liaison-server migrate'"


async def schema_state(db: Database) -> SchemaState:
    script = _scripts()

    def read(conn: Any) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with db.engine.connect() as conn:
        current = await conn.run_sync(read)
    known = current is None or any(r.revision == current for r in script.walk_revisions())
    return SchemaState(current, head_revision(), known)


async def upgrade(db: Database, revision: str = "head") -> None:
    cfg = _config()

    def run(conn: Any) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def downgrade(db: Database, revision: str = "base") -> None:
    """Undo migrations down to `revision` ("base": no table left; what a failed `init` does to
    the database it found empty)."""
    cfg = _config()

    def run(conn: Any) -> None:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
