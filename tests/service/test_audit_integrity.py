"""Append-only in depth, tamper detection (`audit verify` and clients), and shared integrators."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from liaison.crypto import note, tiles, transparency
from liaison.crypto.errors import ProofError
from liaison.service.app import close_state, open_state
from liaison.service.ops.audit_cli import app as audit_app
from liaison.service.storage.db import Database
from liaison.service.storage.migrate import upgrade
from liaison.service.storage.pg_roles import LOG_TABLES, pg_roles_sql
from liaison.service.tlog.verify import verify_log
from liaison.service.writer import Tx
from tests.service.harness import PG_ENV, World, postgres_database, running_world
from tests.service.test_audit_api import pair

ROOT = Path(__file__).resolve().parents[2]
LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


async def refused(world: World, sql: str) -> str:
    with pytest.raises(DBAPIError) as e:
        await world.sql(sql)
    return str(e.value)


async def test_triggers_refuse_update_delete_truncate(world: World) -> None:
    await pair(world)
    cp = note.open_checkpoint(
        (await world.http.get("/v1/audit/checkpoint")).content, world.state.log.signer.verifier
    )
    r = await world.root.post("/v1/audit/cosignatures", {"size": cp.size, "cosignature": "x"})
    assert r.status_code == 422  # no witness configured here; rows come below
    await world.sql(
        "INSERT INTO cosignature (size, witness, line, created_at) "
        "VALUES ((SELECT min(size) FROM checkpoint), 'w', 'l', '2026-01-01 00:00:00')"
    )
    where = {
        "audit_entry": "idx = 0",
        "tree_hash": "level = 0 AND idx = 0",
        "checkpoint": "size = (SELECT min(size) FROM checkpoint)",
        "cosignature": "witness = 'w'",
        "directory_statement": "seq = 1",
        "map_leaf": "version = 1",
    }
    column = {
        "audit_entry": "type = 'x'",
        "tree_hash": "idx = idx",
        "checkpoint": "note = 'x'",
        "cosignature": "line = 'x'",
        "directory_statement": "nation = 'x'",
        "map_leaf": "version = version",
    }
    for table in LOG_TABLES:
        for sql in (
            f"UPDATE {table} SET {column[table]} WHERE {where[table]}",
            f"DELETE FROM {table} WHERE {where[table]}",
            f"DELETE FROM {table}",
        ):
            assert "append-only" in await refused(world, sql), sql
        if world.state.db.is_postgres:
            assert "append-only" in await refused(world, f"TRUNCATE {table}")
    assert await world.log_size() > 5  # nothing was removed
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok, report.failures


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"needs {PG_ENV}")
async def test_postgres_roles(tmp_path: Path) -> None:
    """With scripts/pg-roles.sql the service's role cannot UPDATE, DELETE or TRUNCATE the log,
    nor drop the triggers, even as the tables' only writer; and the service still runs."""
    import asyncpg
    from sqlalchemy.engine.url import make_url

    assert (ROOT / "scripts" / "pg-roles.sql").read_text() == pg_roles_sql()
    async with postgres_database() as url:
        db = Database(url)
        await upgrade(db)
        await db.dispose()
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(pg_roles_sql())
            await conn.execute(pg_roles_sql())  # idempotent
            await conn.execute("SET ROLE liaison_app")
            for table in LOG_TABLES:
                key_column = {"checkpoint": "size", "cosignature": "size", "directory_statement": "seq"}.get(
                    table, "version" if table == "map_leaf" else "idx"
                )
                for sql in (
                    f"UPDATE {table} SET {key_column} = 0",
                    f"DELETE FROM {table}",
                    f"TRUNCATE {table}",
                    f"ALTER TABLE {table} DISABLE TRIGGER ALL",
                    f"DROP TRIGGER {table}_append_only ON {table}",
                ):
                    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                        await conn.execute(sql)
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute("CREATE TABLE sneaky (x int)")
        finally:
            await conn.close()
        app_url = make_url(url).set(username="liaison_app", password=None)
        try:
            probe = await asyncpg.connect(
                app_url.set(drivername="postgresql").render_as_string(hide_password=False)
            )
            await probe.close()
        except (
            asyncpg.exceptions.InvalidAuthorizationSpecificationError,
            asyncpg.exceptions.InvalidPasswordError,
        ):
            pytest.skip("this PostgreSQL does not let liaison_app log in without a password")
        # The whole service works as liaison_app: enrol, exchange, read the log.
        async with running_world(tmp_path, app_url.render_as_string(hide_password=False)) as w:
            usa, ukr = await pair(w)
            r = await usa.send("airdef", LABEL, b"as the app role")
            assert r.status_code == 201, r.text
            assert (await ukr.get("/v1/inbox")).json()["messages"]
            assert (await w.root.get("/v1/audit/entries?start=0&end=3")).status_code == 200
            report = await verify_log(w.state.db, w.state.log.signer.verifier)
            assert report.ok, report.failures


async def _drop_update_trigger(world: World, table: str) -> None:
    """What an attacker with database access does first."""
    if world.state.db.is_postgres:
        await world.sql(f"DROP TRIGGER {table}_append_only ON {table}")
    else:
        await world.sql(f"DROP TRIGGER {table}_no_update")


def _cli(world: World, *args: str) -> Any:
    url = [] if not world.state.db.is_postgres else ["--database-url", world.state.db.url]
    return CliRunner().invoke(
        audit_app, ["verify", "--data-dir", str(world.state.settings.data_dir), "--quiet", *url, *args]
    )


async def test_tampered_entry_is_detected(world: World) -> None:
    usa, _ = await pair(world)
    ids = []
    for i in range(3):
        r = await usa.send("airdef", LABEL, f"m{i}".encode())
        assert r.status_code == 201, r.text
        ids.append((r.json()["id"], r.json()["log_index"]))
    key = world.state.log.signer.verifier
    # An auditor holds a checkpoint that covers the messages.
    held = note.open_checkpoint((await world.http.get("/v1/audit/checkpoint")).content, key)
    ok = await asyncio.to_thread(_cli, world)
    assert ok.exit_code == 0, ok.output
    assert f"OK: {held.size} entries" in ok.output

    # The attacker rewrites one byte of the second message's entry.
    mid, index = ids[1]
    original = await world.entry_bytes(index)
    forged = original.replace(b'"size":', b'"size":1')
    assert forged != original
    await _drop_update_trigger(world, "audit_entry")
    await world.sql("UPDATE audit_entry SET data = :d WHERE idx = :i", d=forged, i=index)

    # The operator's full check names the entry...
    report = await verify_log(world.state.db, key)
    assert not report.ok and report.first_bad_index == index, report.failures
    assert any(f"entry {index}:" in f for f in report.failures)
    bad = await asyncio.to_thread(_cli, world)
    assert bad.exit_code == 1
    assert f"first bad index: {index}" in bad.output, bad.output

    # ...and so does a client that kept its older checkpoint: it fetches the entries and the
    # hash tiles of that size and compares them.
    entries: list[bytes] = []
    while len(entries) < held.size:
        r = await world.root.get(f"/v1/audit/entries?start={len(entries)}&end={held.size}")
        entries += [base64.b64decode(e["entry"]) for e in r.json()["entries"]]
    hash_tiles = {}
    for t in tiles.tiles_for_size(held.size):
        r = await world.http.get(f"/v1/audit/{t.path}")
        assert r.status_code == 200
        hash_tiles[t] = r.content
    with pytest.raises(ProofError, match=f"log entry {index} "):
        transparency.verify_log_entries(entries, held, hash_tiles)
    with pytest.raises(ProofError, match=f"log entry {index} "):  # its own receipt check too
        proof = (await world.root.get(f"/v1/audit/messages/{mid}")).json()
        transparency.verify_receipt(proof, key)
    # Untouched entries still verify.
    other = (await world.root.get(f"/v1/audit/messages/{ids[0][0]}")).json()
    transparency.verify_receipt(other, key)


async def test_rewritten_hashes_are_detected(world: World) -> None:
    """An attacker who also rewrites the entry's leaf hash still cannot match the signed roots."""
    await pair(world)
    key = world.state.log.signer.verifier
    index = 3
    from liaison.crypto import merkle

    original = await world.entry_bytes(index)
    forged = original.replace(b'"v":2', b'"v":2 ').replace(b'"v":1', b'"v":1 ')
    assert forged != original
    for table in ("audit_entry", "tree_hash"):
        await _drop_update_trigger(world, table)
    await world.sql("UPDATE audit_entry SET data = :d WHERE idx = :i", d=forged, i=index)
    await world.sql(
        "UPDATE tree_hash SET hash = :h WHERE level = 0 AND idx = :i", h=merkle.leaf_hash(forged), i=index
    )
    report = await verify_log(world.state.db, key)
    assert not report.ok
    assert report.first_bad_index is not None and report.first_bad_index <= index
    assert any("does not hash to its signed root" in f or "differs" in f for f in report.failures)


async def test_verify_cli_usage_errors(tmp_path: Path) -> None:
    r = await asyncio.to_thread(
        CliRunner().invoke, audit_app, ["verify", "--data-dir", str(tmp_path / "nope")]
    )
    assert r.exit_code == 2 and "does not exist" in r.output
    r = await asyncio.to_thread(CliRunner().invoke, audit_app, ["pg-roles", "--app-role", "x;y"])
    assert r.exit_code == 2
    r = await asyncio.to_thread(CliRunner().invoke, audit_app, ["pg-roles"])
    assert r.exit_code == 0 and r.output == pg_roles_sql()


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"needs {PG_ENV}")
@pytest.mark.parametrize("isolation", [None, "repeatable read"], ids=["default", "server-repeatable-read"])
async def test_two_integrators_share_postgres(tmp_path: Path, isolation: str | None) -> None:
    """Two replicas' writers on one database take turns (the advisory lock): the log stays
    consecutive, every receipt verifies, and the whole tree checks out. Also where the
    server's default isolation is REPEATABLE READ, under which a transaction's one snapshot
    would be taken before its lock is granted (and its log size read stale): each batch asks
    for READ COMMITTED (fails without it: checked)."""
    async with postgres_database() as url:
        if isolation is not None:
            db = Database(url)
            try:
                async with db.engine.connect() as conn:
                    name = (await conn.exec_driver_sql("SELECT current_database()")).scalar_one()
                    await conn.exec_driver_sql(
                        f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = '{isolation}'"
                    )
                    await conn.commit()
            finally:
                await db.dispose()
        async with running_world(tmp_path, url) as world:
            await _two_integrators(world)


async def _two_integrators(world: World) -> None:
    other = await open_state(world.state.settings)
    # As a replica on another machine: no file lock shared with the first (`_machine_lock`),
    # the advisory lock alone orders the two writers.
    if other.writer._lock is not None:
        other.writer._lock.close()
        other.writer._lock = None
    try:

        def job(tx: Tx, k: int = 0) -> list[int]:
            return [tx.audit("test.filler", "system", None, k=k, j=j) for j in range(5)]

        async def one(state: Any, k: int) -> list[Any]:
            result = await state.writer.run(lambda tx: job(tx, k))
            return [result.receipts[i] for i in result.value]

        async def turns(state: Any) -> list[list[Any]]:  # one batch after another: they contend
            return [await one(state, k) for k in range(40)]

        results = [rs for t in await asyncio.gather(turns(world.state), turns(other)) for rs in t]
    finally:
        await close_state(other)
    receipts = [r for rs in results for r in rs]
    indexes = sorted(r.index for r in receipts)
    # Unique, and consecutive but for each batch's closing map.head (protocol 9.6).
    assert len(set(indexes)) == len(indexes)
    span = range(indexes[0], indexes[-1] + 1)
    entries = await world.entries(start=indexes[0], heads=True)
    gaps = sorted(set(span) - set(indexes))
    assert all(entries[i - indexes[0]]["type"] == "map.head" for i in gaps), gaps
    key = world.state.log.signer.verifier
    for r in receipts:
        transparency.verify_receipt(r.to_json(), key)
    report = await verify_log(world.state.db, key)
    assert report.ok, report.failures
