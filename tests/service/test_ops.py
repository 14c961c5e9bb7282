"""Ops endpoints: /healthz, /readyz (database reachable, schema current) and /metrics (on the
metrics app, which `run` serves on its own listener)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from liaison.service.app import create_metrics_app
from liaison.service.storage.db import Database
from liaison.service.storage.migrate import head_revision
from tests.service.harness import OPS, World, assert_problem, coalition


async def test_healthz_and_readyz(world: World) -> None:
    r = await world.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await world.http.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "schema": head_revision()}


async def test_readyz_refuses_a_schema_that_is_not_current(world: World) -> None:
    await world.sql("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    try:
        body = assert_problem(await world.http.get("/readyz"), "unavailable")
        assert "newer" in body["detail"] and "ffffffffffff" in body["detail"]
    finally:
        await world.sql("UPDATE alembic_version SET version_num = :v", v=head_revision())
    assert (await world.http.get("/readyz")).status_code == 200


async def test_readyz_refuses_an_unreachable_database(world: World) -> None:
    real = world.state.db
    world.state.db = Database("sqlite+aiosqlite:////nonexistent-dir/liaison.db")
    try:
        body = assert_problem(await world.http.get("/readyz"), "unavailable")
        assert "unreachable" in body["detail"]
        assert (await world.http.get("/healthz")).status_code == 200  # alive, not ready
    finally:
        await world.state.db.dispose()
        world.state.db = real


async def _metrics(world: World) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_metrics_app(world.app))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        return await http.get("/metrics")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics(world: World) -> None:
    c = await coalition(world)
    assert (await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA")).status_code == 201
    assert (await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA")).status_code == 201
    r = await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA", recipients=[c.usa.keys.public])
    assert r.status_code == 422
    r = await c.fra.send(OPS, "SECRET//REL TO FRA, UKR, USA", recipients=[c.usa.keys.public])
    assert r.status_code == 403
    r = await _metrics(world)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    assert m[("liaison_messages_accepted_total", ())] == 2
    assert m[("liaison_messages_rejected_total", (("reason", "missing-recipient"),))] == 1
    assert m[("liaison_messages_rejected_total", (("reason", "clearance"),))] == 1
    posts = (("method", "POST"), ("route", "/v1/messages"))
    assert m[("liaison_http_requests_total", (*posts, ("status", "201")))] == 2
    assert m[("liaison_http_requests_total", (*posts, ("status", "422")))] == 1
    assert m[("liaison_http_requests_total", (*posts, ("status", "403")))] == 1
    assert m[("liaison_http_request_seconds_count", posts)] == 4
    assert m[("liaison_http_request_seconds_bucket", (("le", "+Inf"), *posts))] == 4
    assert m[("liaison_http_request_seconds_sum", posts)] > 0
    assert m[("liaison_audit_log_size", ())] == await world.log_size()
    assert m[("liaison_write_batches_total", ())] >= 1
    assert ("liaison_inbox_streams", ()) in m
    # Unmatched paths are counted under one label, so scanners cannot blow up the series.
    await world.http.get("/no/such/path/1")
    await world.http.get("/no/such/path/2")
    m = _samples((await _metrics(world)).text)
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert m[("liaison_http_requests_total", unmatched)] == 2
