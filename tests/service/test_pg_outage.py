"""A PostgreSQL restart under load (hardening issue, item 24).

What a database restart looks like to the service, simulated on the shared PostgreSQL of the
test machine without restarting it: the test database refuses new connections (`ALTER
DATABASE ... ALLOW_CONNECTIONS false`) and every connection the service holds is terminated
(`pg_terminate_backend`, again and again) for a few seconds; then connections are allowed
again. Meanwhile 32 senders submit messages, readers read, and `/readyz` is polled. Then the
same once more, this time in the middle of one write batch (its first jobs have written,
the rest have not).

Every acknowledged (201) message must survive with its `message.accepted` entry; every other
answer must be a clean 503 `unavailable` with `Retry-After` (no 500, no error log); the
service must reconnect by itself; `/readyz` must report the outage and the recovery; and no
part of a failed batch may be visible afterwards (the log verifies, and every message and
entry matches).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine.url import make_url

from liaison.crypto.labels import parse_label
from liaison.service.tlog.verify import verify_log
from tests.service.harness import (
    OPS,
    PG_ENV,
    Device,
    World,
    _pg_admin_dsn,
    assert_problem,
    coalition,
    world_on,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
SENDERS = 32


@pytest.fixture
async def pg_world(tmp_path: Path) -> AsyncIterator[World]:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"the outage test needs PostgreSQL: set {PG_ENV}")
    async with world_on("postgres", tmp_path, rate_limit_per_second=100_000.0, rate_limit_burst=100_000) as w:
        yield w


async def outage(world: World, seconds: float) -> float:
    """Make the service's database unreachable for `seconds`, as a restart would; returns the
    monotonic time connections were allowed again."""
    db = make_url(world.state.settings.db_url).database
    admin = await asyncpg.connect(_pg_admin_dsn())
    try:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await terminate(admin, db)
            await asyncio.sleep(0.2)
    finally:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        await admin.close()
    return time.monotonic()


async def terminate(admin: asyncpg.Connection, db: str | None) -> int:
    return len(
        await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            db,
        )
    )


@dataclass
class Load:
    """What the senders, readers and the readiness probe saw, with monotonic times."""

    accepted: dict[str, int] = field(default_factory=dict)  # envelope id -> log index
    answers: list[tuple[float, str, int]] = field(default_factory=list)  # (time, what, status)
    ready: list[tuple[float, int]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self, r: httpx.Response, what: str) -> None:
        self.answers.append((time.monotonic(), what, r.status_code))
        if r.status_code >= 500:
            body = assert_problem(r, "unavailable")
            assert int(r.headers["retry-after"]) >= 1, (what, body)


async def sender(world: World, dev: Device, bundles: list[Any], load: Load) -> None:
    label = parse_label(SECRET_AIRDEF, world.policy)
    while not load.stop.is_set():
        env = await dev.envelope(OPS, label, b"under load", recipients=bundles)
        r = await dev.submit(env)
        load.check(r, "submit")
        if r.status_code == 201:
            load.accepted[env["id"]] = r.json()["log_index"]
        else:
            assert r.status_code == 503, r.text
            await asyncio.sleep(0.1)


async def reader(world: World, dev: Device, load: Load) -> None:
    while not load.stop.is_set():
        for what, call in (
            ("inbox", lambda: dev.get("/v1/inbox?limit=5")),
            ("checkpoint", lambda: world.http.get("/v1/audit/checkpoint")),
        ):
            r = await call()
            load.check(r, what)
            assert r.status_code in (200, 503), (what, r.status_code, r.text[:300])
        await asyncio.sleep(0.05)


async def probe(world: World, load: Load) -> None:
    while not load.stop.is_set():
        r = await world.http.get("/readyz")
        load.ready.append((time.monotonic(), r.status_code))
        if r.status_code != 200:
            assert_problem(r, "unavailable")
            assert int(r.headers["retry-after"]) >= 1
        await asyncio.sleep(0.1)


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def assert_consistent(world: World, accepted: dict[str, int]) -> None:
    """Every acknowledged message is stored with its entry; every stored message has its
    entry and every `message.accepted` entry its message and deliveries; the log verifies."""
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok and report.size == await world.log_size(), report
    rows = (await world.sql("SELECT id, log_index FROM message")).all()
    stored = {mid: index for mid, index in rows}
    missing = {m: i for m, i in accepted.items() if stored.get(m) != i}
    assert not missing, f"{len(missing)} acknowledged messages lost: {list(missing.items())[:5]}"
    entries = await world.entries("message.accepted")
    assert {e["id"] for e in entries} == set(stored)
    deliveries = (await world.sql("SELECT count(*) FROM delivery")).scalar()
    assert deliveries == sum(len(e["recipients"]) for e in entries)
    for mid, index in stored.items():
        entry = await world.entry(index)
        assert (entry["type"], entry["id"]) == ("message.accepted", mid)


async def test_the_service_rides_out_a_database_restart_under_load(
    pg_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world = pg_world
    c = await coalition(world)
    bundles = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    load = Load()
    with caplog.at_level(logging.WARNING):
        tasks = [
            asyncio.create_task(sender(world, (c.usa, c.ukr)[i % 2], bundles, load)) for i in range(SENDERS)
        ]
        tasks += [asyncio.create_task(reader(world, c.fra, load)), asyncio.create_task(probe(world, load))]
        try:
            # Under load, and ready, before the outage begins.
            await until(lambda: len(load.accepted) >= SENDERS and 200 in [s for _, s in load.ready])
            began = time.monotonic()
            allowed = await outage(world, 3.0)
            # Recovered: a message is accepted again, and /readyz says ready.
            deadline = allowed + 30
            while time.monotonic() < deadline:
                after = [t for t, what, s in load.answers if what == "submit" and s == 201 and t > allowed]
                ready = [t for t, s in load.ready if s == 200 and t > allowed]
                if after and ready:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)
        finally:
            load.stop.set()
            done = await asyncio.gather(*tasks, return_exceptions=True)
        for result in done:
            if isinstance(result, BaseException):
                raise result
    assert after and ready, "the service did not recover within 30 s"
    recovered, ready_again = after[0] - allowed, ready[0] - allowed
    statuses = Counter((what, s) for _, what, s in load.answers)
    during = [s for t, what, s in load.answers if began < t < allowed]
    print(
        f"\nrecovery: first accepted message {recovered:.2f} s and /readyz 200 {ready_again:.2f} s "
        f"after connections were allowed again; answers {dict(statuses)}"
    )
    assert 503 in during, "the outage was not noticed"
    assert {s for _, _, s in load.answers} <= {200, 201, 503}
    # /readyz: ready, then not, then ready again.
    states = [s for _, s in load.ready]
    first_down = states.index(503)
    assert 200 in states[:first_down] and 200 in states[first_down:]
    # Nothing worse than a warning was logged, and no traceback.
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [(r.name, r.getMessage()) for r in bad[:5]]
    assert len(load.accepted) > SENDERS
    await assert_consistent(world, load.accepted)


async def test_a_restart_in_the_middle_of_a_write_batch_leaves_none_of_it(
    pg_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world = pg_world
    c = await coalition(world)
    bundles = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    label = parse_label(SECRET_AIRDEF, world.policy)
    envs = [await c.usa.envelope(OPS, label, b"batch", recipients=bundles) for _ in range(20)]
    reqs = [c.usa.build("POST", "/v1/messages", {"envelope": e}) for e in envs]
    writer = world.state.writer
    holding, hold, middle = threading.Event(), threading.Event(), threading.Event()

    def pause(tx: Any) -> None:  # the batch's first ten jobs have written; the rest wait
        middle.set()
        hold.wait(30)

    # One batch: ten submits, the pause, ten more (a job holds the writer while they queue).
    held = asyncio.ensure_future(writer.run(lambda tx: holding.wait(30)))
    await asyncio.sleep(0.05)
    first = [asyncio.create_task(world.http.send(q)) for q in reqs[:10]]
    await until(lambda: writer.pending >= 10)
    paused = asyncio.ensure_future(writer.run(pause))
    rest = [asyncio.create_task(world.http.send(q)) for q in reqs[10:]]
    await until(lambda: writer.pending >= 21)
    holding.set()
    await held
    with caplog.at_level(logging.WARNING):
        await until(middle.is_set)
        admin = await asyncpg.connect(_pg_admin_dsn())
        try:
            assert await terminate(admin, make_url(world.state.settings.db_url).database) > 0
        finally:
            await admin.close()
        hold.set()
        answers = await asyncio.gather(*first, *rest)
        with pytest.raises(Exception) as paused_error:
            await paused
    assert getattr(paused_error.value, "slug", None) == "unavailable"
    assert [r.status_code for r in answers] == [503] * 20, [r.text[:200] for r in answers]
    for r in answers:
        assert_problem(r, "unavailable")
        assert int(r.headers["retry-after"]) >= 1
    assert (await world.sql("SELECT count(*) FROM message")).scalar() == 0, "the failed batch is visible"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    await assert_consistent(world, {})
    # The service carries on by itself; nothing of the failed requests was stored, their
    # nonces included, so each can be sent again as it was, and is accepted.
    again = [await world.http.send(q) for q in reqs]
    assert [r.status_code for r in again] == [201] * 20, [r.text[:200] for r in again]
    await assert_consistent(world, {e["id"]: r.json()["log_index"] for e, r in zip(envs, again, strict=True)})
