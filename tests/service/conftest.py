"""Fixtures: `world` runs once on SQLite and once on PostgreSQL (when configured)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.service.harness import PG_ENV, World, world_on


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not os.environ.get(PG_ENV):
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+asyncpg://postgres@"
            "127.0.0.1:5432/test); .ci/run sets it"
        )
    return str(request.param)


@pytest.fixture
async def world(backend: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(backend, tmp_path) as w:
        yield w
