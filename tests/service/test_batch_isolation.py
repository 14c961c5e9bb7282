"""One job never fails or undoes another: a write batch isolates its jobs (hardening issue, item 4).

Many requests share one write transaction (`service/writer.py`). A message to 270 devices once
overflowed PostgreSQL's 8,000-byte `pg_notify` payload, failing every unrelated request of its
batch (and rolling back their nonces, so they became replayable). These tests put a job that
fails amid 50 unrelated signed requests in one batch (a blocking job holds the writer until
all of them are queued, as load would), and check that every unrelated request succeeds, that
each of their nonces stays spent (each request, replayed byte for byte, is refused as a
replay), and that the log still verifies.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from liaison.crypto.keys import generate_device
from liaison.crypto.labels import parse_label
from liaison.service.problems import Problem
from liaison.service.storage.models import ChannelMember
from liaison.service.tlog.verify import verify_log
from liaison.service.writer import Tx
from tests.service.harness import (
    OPS,
    PG_ENV,
    Coalition,
    Device,
    World,
    assert_problem,
    coalition,
    in_one_batch,
    next_message_event,
    sse_events,
    world_on,
)

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
CROWD = "crowd"
CROWD_LABEL = "CONFIDENTIAL//REL TO FRA, UKR, USA"

#: Limits raised for set-up only (1,000 enrolments from one address, 2,000 admin requests).
FAST_SETUP = {
    "rate_limit_per_second": 100_000.0,
    "rate_limit_burst": 100_000,
    "enrol_rate_per_second": 100_000.0,
    "enrol_rate_burst": 100_000,
}


@pytest.fixture
async def busy_world(backend: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(backend, tmp_path, **FAST_SETUP) as w:
        yield w


@pytest.fixture
async def pg_busy_world(tmp_path: Path) -> AsyncIterator[World]:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"this test is PostgreSQL's: set {PG_ENV}")
    async with world_on("postgres", tmp_path, **FAST_SETUP) as w:
        yield w


def unrelated_requests(c: Coalition, envelopes: list[dict[str, Any]]) -> list[httpx.Request]:
    """50 signed requests of every kind that consumes a nonce in the writer: submits, inbox
    reads, whoami, the directory; built once, so that each can be replayed byte for byte."""
    reqs = [c.usa.build("POST", "/v1/messages", {"envelope": env}) for env in envelopes]
    for i in range(50 - len(reqs)):
        dev = (c.ukr, c.fra, c.usa)[i % 3]
        reqs.append(dev.build("GET", ("/v1/inbox", "/v1/me", "/v1/directory/devices?principal=root")[i % 3]))
    return reqs


async def assert_all_spent(world: World, reqs: list[httpx.Request]) -> None:
    """Every request, sent again byte for byte, is refused as a replay."""
    for req in reqs:
        assert_problem(await world.http.send(req), "replayed-request")


async def assert_log_verifies(world: World) -> None:
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok and report.size == await world.log_size(), report


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_message_to_1000_devices_amid_50_unrelated_requests(pg_busy_world: World) -> None:
    """On PostgreSQL, whose notification overflowed (the isolation of jobs it broke is tested
    on both databases below). About 60 s on 2 cores, most of it 998 enrolments."""
    world = pg_busy_world
    c = await coalition(world)
    r = await world.root.post(
        "/v1/admin/principals",
        {"id": CROWD, "display_name": "Crowd", "nation": "UKR", "clearance": "CONFIDENTIAL"},
    )
    assert r.status_code == 201, r.text
    # 998 devices of one principal (with the sender's and UKR's, 1,000 recipients: the most an
    # envelope may have), enrolled through the API concurrently (hybrid KEM keys, no ML-DSA
    # key: they only receive).
    keys = [generate_device(CROWD, mldsa65=False) for _ in range(998)]
    # At most 64 at once: the test kit reads the database to build each statement, and 998 at
    # once only queue for its connection pool (and time out on a loaded machine: 256 at once
    # did twice on 2026-12-02, a 503 from the pool's wait).
    gate = asyncio.Semaphore(64)

    async def enrol(k: Any) -> None:
        async with gate:
            code = await world.root.post(f"/v1/admin/principals/{CROWD}/enrolment-codes")
            assert code.status_code == 201, code.text
            await world.enrol_with_code(CROWD, code.json()["code"], k)

    await asyncio.gather(*(enrol(k) for k in keys))
    await world.channel("town", CROWD_LABEL, [CROWD, c.usa.principal, c.ukr.principal])
    label = parse_label(CROWD_LABEL, world.policy)
    everyone = [k.public for k in keys] + [c.usa.keys.public, c.ukr.keys.public]
    big = c.usa.build(
        "POST", "/v1/messages", {"envelope": await c.usa.envelope("town", label, recipients=everyone)}
    )
    reqs = unrelated_requests(c, [await c.usa.envelope(OPS, SECRET_AIRDEF) for _ in range(20)])

    results = await in_one_batch(world, *(lambda q=q: world.http.send(q) for q in [big, *reqs]))
    statuses = [x.status_code if isinstance(x, httpx.Response) else repr(x) for x in results]
    texts = [x.text[:200] if isinstance(x, httpx.Response) else "" for x in results]
    assert statuses == [201] * 21 + [200] * 30, list(zip(statuses, texts, strict=True))
    assert results[0].json()["recipients"] == 1000
    await assert_all_spent(world, [big, *reqs])
    await assert_log_verifies(world)


def _poison_now(tx: Tx) -> None:
    """A job whose statement fails (on PostgreSQL this aborts the whole transaction)."""
    tx.raw.execute("INSERT INTO poison (ref) VALUES ('nobody')")


def _poison_at_commit(tx: Tx) -> None:
    """A job whose write fails only when the batch commits (a deferred foreign key)."""
    tx.audit("principal.updated", "system", "nobody", id="nobody")  # it logs, too
    tx.raw.execute("INSERT INTO poison_deferred (ref) VALUES ('nobody')")


def _poison_in_last_writes(tx: Tx) -> None:
    """A job whose deferred row fails with the batch's last writes (on PostgreSQL, inside the
    pipeline that sends them together: the error comes back when it ends)."""
    tx.audit("principal.updated", "system", "nobody", id="nobody")
    tx.insert_later("poison (ref)", ("text",), [("nobody",)])


def _poison_unflushed(tx: Tx) -> None:
    """A job whose ORM write waits in the session, never flushed by the job, and fails when it
    is (a member of no channel): it must fail inside the batch's transaction. On PostgreSQL
    the COMMIT goes with the batch's last writes, so a flush left to `Session.commit()` would
    run after it, outside the transaction: the batch's entries committed, then its jobs run
    again (refused as replays: checked). The writer's flush after each job, and the
    pipeline's flush before that COMMIT, each prevent it. Last in its batch, so that no later
    job's query flushes it first."""
    tx.audit("principal.updated", "system", "nobody", id="nobody")
    tx.session.add(ChannelMember(channel_id="nowhere", principal_id="nobody"))


@pytest.mark.parametrize(
    ("poison", "last"),
    [
        (_poison_now, False),
        (_poison_at_commit, False),
        (_poison_in_last_writes, False),
        (_poison_unflushed, True),
    ],
    ids=["statement", "commit", "last-writes", "unflushed"],
)
async def test_a_failing_job_fails_alone(busy_world: World, poison: Callable[[Tx], None], last: bool) -> None:
    world = busy_world
    c = await coalition(world)
    await world.sql("CREATE TABLE poison (ref VARCHAR(64) REFERENCES principal(id))")
    await world.sql(
        "CREATE TABLE poison_deferred "
        "(ref VARCHAR(64) REFERENCES principal(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    reqs = unrelated_requests(c, [await c.usa.envelope(OPS, SECRET_AIRDEF) for _ in range(20)])
    before = await world.counts()

    async def poisoned() -> None:
        await world.state.writer.run(poison, savepoint=False)

    sends = [lambda q=q: world.http.send(q) for q in reqs]
    half = len(sends) if last else len(sends) // 2  # the failing job runs in the middle of the batch
    results = await in_one_batch(world, *sends[:half], poisoned, *sends[half:])
    failed = results.pop(half)
    assert isinstance(failed, Problem) and failed.slug == "internal", failed
    statuses = [x.status_code if isinstance(x, httpx.Response) else repr(x) for x in results]
    assert statuses == [201] * 20 + [200] * 30, statuses
    after = await world.counts()
    assert after["message"] == before["message"] + 20
    # Nothing of the failed job stays: no row, no entry.
    assert (await world.sql("SELECT count(*) FROM poison_deferred")).scalar() == 0
    assert (await world.sql("SELECT count(*) FROM poison")).scalar() == 0
    assert [e for e in await world.entries("principal.updated") if e.get("id") == "nobody"] == []
    await assert_all_spent(world, reqs)
    await assert_log_verifies(world)
    # And the writer carries on.
    assert (await c.usa.send(OPS, SECRET_AIRDEF)).status_code == 201


@pytest.mark.postgres
async def test_a_device_streaming_hears_of_a_message_to_300_devices(pg_busy_world: World) -> None:
    """PostgreSQL's live notification names the message, never its recipients: its size does
    not grow with the recipient list (NOTIFY takes at most 8,000 bytes), and each process
    finds which of its streaming devices received it (SQLite's one process tells its own
    streams directly: tests/service/test_stream.py)."""
    world = pg_busy_world
    c = await coalition(world)
    r = await world.root.post(
        "/v1/admin/principals",
        {"id": CROWD, "display_name": "Crowd", "nation": "UKR", "clearance": "CONFIDENTIAL"},
    )
    assert r.status_code == 201, r.text
    crowd: list[Device] = []

    async def enrol() -> None:
        code = await world.root.post(f"/v1/admin/principals/{CROWD}/enrolment-codes")
        keys = generate_device(CROWD, mldsa65=False)
        crowd.append(await world.enrol_with_code(CROWD, code.json()["code"], keys))

    await asyncio.gather(*(enrol() for _ in range(300)))
    await world.channel("town", CROWD_LABEL, [CROWD, c.usa.principal, c.fra.principal])
    label = parse_label(CROWD_LABEL, world.policy)
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        streams = {}
        for dev in (crowd[-1], c.fra):  # a recipient, and a member left out by `to`
            signed = dev.build("GET", "/v1/inbox/stream")
            streams[dev.id] = await http.send(
                http.build_request("GET", base + "/v1/inbox/stream", headers=signed.headers), stream=True
            )
        try:
            events = {d: sse_events(s) for d, s in streams.items()}
            for ev in events.values():
                assert await anext(ev) == {"comment": "connected"}
            to_crowd = [d.keys.public for d in crowd] + [c.usa.keys.public]
            env = await c.usa.envelope("town", label, to=[CROWD, c.usa.principal], recipients=to_crowd)
            sent = await c.usa.submit(env, to=[CROWD, c.usa.principal])
            assert sent.status_code == 201, sent.text
            ev = await next_message_event(events[crowd[-1].id])
            assert ev["id"] == sent.json()["id"]
            everyone = await c.usa.send("town", CROWD_LABEL, to=[c.fra.principal, c.usa.principal])
            assert everyone.status_code == 201, everyone.text
            # FRA's first event is the message it received, not the one it did not.
            assert (await next_message_event(events[c.fra.id]))["id"] == everyone.json()["id"]
        finally:
            for s in streams.values():
                await s.aclose()
