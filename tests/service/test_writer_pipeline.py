"""The batch's last writes in one pipeline on PostgreSQL (`PostgresRaw.pipeline`): rows of
every column type the writer uses land as a COPY would have written them, by chunks when there
are more than a statement carries, and through COPY itself past the pipeline's size. On SQLite
the same jobs run with no pipeline (the block is a no-op), so every test runs on both."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from liaison.service.storage import raw as raw_module
from liaison.service.writer import Tx
from tests.service.harness import World

_TYPES = ("int8", "bytea", "text", "timestamp", "int4")
_WHEN = datetime(2026, 12, 2, 3, 4, 5, 123456, tzinfo=UTC)


async def _table(world: World) -> None:
    await world.sql(
        "CREATE TABLE scratch (n BIGINT PRIMARY KEY, b BYTEA, t TEXT, at TIMESTAMP, small INTEGER)"
    )


def _rows(tx: Tx, count: int) -> list[tuple[Any, ...]]:
    """`count` rows; every third one has NULLs, one text holds characters COPY would escape."""
    return [
        (n, bytes([n % 256]) * 33, None, None, None)
        if n % 3 == 0
        else (n, b"\x00\\x" + bytes([n % 256]), f"row {n}\t'\"\\,{{}}é", tx.raw.time(_WHEN), n % 70_000)
        for n in range(count)
    ]


async def _written(world: World, count: int) -> None:
    got = (await world.sql("SELECT n, b, t, at, small FROM scratch ORDER BY n")).all()
    assert len(got) == count
    for n, b, t, at, small in got:
        if n % 3 == 0:
            assert (bytes(b), t, at, small) == (bytes([n % 256]) * 33, None, None, None)
        else:
            assert bytes(b) == b"\x00\\x" + bytes([n % 256])
            assert t == f"row {n}\t'\"\\,{{}}é" and small == n % 70_000
            stored = at if isinstance(at, datetime) else datetime.fromisoformat(at)
            assert stored.replace(tzinfo=UTC) == _WHEN


@pytest.mark.parametrize("count", [1, 10, 4_500], ids=["one", "chunks", "past-the-pipeline"])
async def test_deferred_rows_land_as_written(
    world: World, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _table(world)
    if count == 10:  # statements of 3 rows: four of them in the one pipeline
        monkeypatch.setattr(raw_module, "_UNNEST_ROWS", 3)
    chunks: list[int] = []
    if world.state.db.is_postgres:
        real = raw_module.PostgresRaw.insert_rows

        def counting(self: raw_module.PostgresRaw, into: str, types: Any, rows: Any) -> None:
            if into.startswith("scratch"):
                chunks.append(self._pipelined)
            real(self, into, types, rows)

        monkeypatch.setattr(raw_module.PostgresRaw, "insert_rows", counting)

    def job(tx: Tx) -> None:
        tx.insert_later("scratch (n, b, t, at, small)", _TYPES, _rows(tx, count))
        tx.audit("bench.append", "system", None, n=count)

    await world.state.writer.run(job)
    await _written(world, count)
    if world.state.db.is_postgres:
        # Pipelined up to its size; past it (a batch of thousands of rows) COPY, outside it.
        assert chunks == [count <= raw_module._PIPELINE_ROWS]
