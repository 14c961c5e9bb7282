"""What a batch does for its jobs at once (issue 17): writes they leave for later
(`Tx.insert_later`, `Tx.notify`) and lookups they declare (`Writer.run`'s nonce, message_id).

A submit's rows and its live notification are written once per batch, in one statement with
the other submits', and its nonce and envelope id are checked with the others' before the jobs
run (on PostgreSQL each per-job statement was a round trip the batch waited for). These tests
hold the writer while jobs queue in a known order, so that they run in one batch, and check
what that must not change: a later job that may read deferred rows sees them; a job that
refuses or fails leaves none of its deferred rows; deliveries keep the batch's order; every
streaming recipient hears of every message, in order; a replay or a duplicate envelope inside
one batch is refused as such; a revoked device's request leaves no nonce. And one bug found on
the way: a fetch in its message's own batch was a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from liaison.service.problems import Problem
from liaison.service.writer import Refusal, Tx
from tests.service.harness import (
    OPS,
    World,
    assert_problem,
    coalition,
    in_one_batch,
    next_message_event,
    sse_events,
)

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"


async def in_order_in_one_batch(world: World, *calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """`calls` in one batch, run in this order (each queued once the one before it is)."""
    return await in_one_batch(world, *calls, in_order=True)


async def test_a_fetch_in_the_batch_of_the_submit_is_answered_as_before_it(world: World) -> None:
    """A recipient's fetch queued right behind the submit, in its batch, could see the message
    row but not a receipt (the batch's entries are integrated after its jobs): it was a 500.
    It is answered as if it came first, as the message is not accepted until the batch
    commits: no such message (the logged `not-recipient`); fetched again, it is there."""
    c = await coalition(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    submit = c.usa.build("POST", "/v1/messages", {"envelope": env})
    fetch = c.ukr.build("GET", f"/v1/messages/{env['id']}")
    sent, early = await in_order_in_one_batch(
        world, lambda: world.http.send(submit), lambda: world.http.send(fetch)
    )
    assert sent.status_code == 201, sent.text
    assert_problem(early, "not-recipient")
    got = await c.ukr.get(f"/v1/messages/{env['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["envelope"]["id"] == env["id"]


async def test_deliveries_follow_the_batch_order(world: World) -> None:
    """Three submits in one batch, their deliveries written together: the recipient's inbox
    lists them in the order the log accepted them."""
    c = await coalition(world)
    envs = [await c.usa.envelope(OPS, SECRET_AIRDEF, f"m{i}".encode()) for i in range(3)]
    reqs = [c.usa.build("POST", "/v1/messages", {"envelope": e}) for e in envs]
    results = await in_order_in_one_batch(world, *(lambda q=q: world.http.send(q) for q in reqs))
    assert [r.status_code for r in results] == [201] * 3, [r.text for r in results]
    indexes = [r.json()["log_index"] for r in results]
    assert indexes == sorted(indexes)
    inbox = await c.ukr.get("/v1/inbox")
    assert inbox.status_code == 200, inbox.text
    listed = [m["id"] for m in inbox.json()["messages"]]
    assert listed == [e["id"] for e in envs], listed


async def test_a_refused_or_failed_job_leaves_none_of_its_deferred_rows(world: World) -> None:
    await world.sql("CREATE TABLE later_rows (ref VARCHAR(64))")
    into = ("later_rows (ref)", ("text",))
    writer = world.state.writer

    def keeps(tx: Tx) -> None:
        tx.insert_later(*into, [("kept-1",), ("kept-2",)])

    def refuses(tx: Tx) -> None:
        tx.insert_later(*into, [("refused",)])
        raise Refusal(Problem("not-found", "refused after deferring"), None)

    def fails(tx: Tx) -> None:
        tx.insert_later(*into, [("failed",)])
        raise RuntimeError("a bug after deferring")

    def counts(tx: Tx) -> int:
        return int(tx.raw.execute("SELECT count(*) FROM later_rows").fetchone()[0])

    async def run(fn: Callable[[Tx], Any], **kw: Any) -> Any:
        return (await writer.run(fn, savepoint=kw.pop("savepoint", True), **kw)).value

    results = await in_order_in_one_batch(
        world,
        lambda: run(keeps, sees_deferred=False),
        lambda: run(refuses, sees_deferred=False),
        lambda: run(fails, sees_deferred=False),
        lambda: run(counts),  # may read them: what the jobs before it kept is written first
        lambda: run(keeps, sees_deferred=False),
        lambda: run(counts, sees_deferred=False),  # promises not to read them: not yet
    )
    assert results[0] is None
    assert isinstance(results[1], Problem) and results[1].slug == "not-found"
    assert isinstance(results[2], Problem) and results[2].slug == "internal"
    assert results[3] == 2
    assert results[4] is None
    assert results[5] == 2
    rows = (await world.sql("SELECT ref FROM later_rows")).scalars().all()
    assert sorted(rows) == ["kept-1", "kept-1", "kept-2", "kept-2"]


async def test_streams_hear_of_every_message_of_a_batch_in_order(world: World) -> None:
    """Five messages in one batch: one notification each (on PostgreSQL sent together in one
    statement), heard by a streaming recipient in the log's order."""
    c = await coalition(world)
    envs = [await c.usa.envelope(OPS, SECRET_AIRDEF, f"m{i}".encode()) for i in range(5)]
    reqs = [c.usa.build("POST", "/v1/messages", {"envelope": e}) for e in envs]
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        signed = c.ukr.build("GET", "/v1/inbox/stream")
        stream = await http.send(
            http.build_request("GET", base + "/v1/inbox/stream", headers=signed.headers), stream=True
        )
        try:
            events = sse_events(stream)
            assert await anext(events) == {"comment": "connected"}
            results = await in_order_in_one_batch(world, *(lambda q=q: world.http.send(q) for q in reqs))
            assert [r.status_code for r in results] == [201] * 5, [r.text for r in results]
            heard = [(await next_message_event(events))["id"] for _ in envs]
            assert heard == [e["id"] for e in envs]
        finally:
            await stream.aclose()


@pytest.mark.parametrize("n", [0, 1, 3])
async def test_notify_many_on_the_raw_connection(world: World, n: int) -> None:
    """`Raw.notify_many` with none, one or several notifications: a statement that runs (on
    SQLite, where nothing is notified, it does nothing)."""

    def job(tx: Tx) -> bool:
        tx.raw.notify_many([("liaison_test", f"p{i}") for i in range(n)])
        return tx.raw.postgres

    assert (await world.state.writer.run(job)).value == world.state.db.is_postgres


# --- what the batch looks up for its jobs (`Writer.run`'s nonce and message_id) --------------


async def test_a_replay_in_the_same_batch_is_refused_as_such(world: World) -> None:
    """The nonces of a batch's requests are claimed in one statement before its jobs run: a
    request sent twice in one batch (a submit, and a read) is served once and refused once
    as a replay, and stays spent."""
    c = await coalition(world)
    submit = c.usa.build("POST", "/v1/messages", {"envelope": await c.usa.envelope(OPS, SECRET_AIRDEF)})
    read = c.ukr.build("GET", "/v1/me")
    sends = [lambda q=q: world.http.send(q) for q in (submit, read) * 2]
    results = await in_order_in_one_batch(world, *sends)
    assert results[0].status_code == 201, results[0].text
    assert results[1].status_code == 200, results[1].text
    assert_problem(results[2], "replayed-request")
    assert_problem(results[3], "replayed-request")
    for q in (submit, read):
        assert_problem(await world.http.send(q), "replayed-request")


async def test_one_envelope_twice_in_a_batch_is_accepted_once(world: World) -> None:
    """Two requests carrying one envelope in one batch (its id looked up free when the batch
    began): the first is accepted, the second refused as a duplicate, and one message, one
    `message.accepted` entry and one set of deliveries remain."""
    c = await coalition(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    reqs = [c.usa.build("POST", "/v1/messages", {"envelope": env}) for _ in range(2)]
    before = await world.counts()
    first, second = await in_order_in_one_batch(world, *(lambda q=q: world.http.send(q) for q in reqs))
    assert first.status_code == 201, first.text
    assert_problem(second, "duplicate-envelope")
    after = await world.counts()
    assert after["message"] == before["message"] + 1
    assert [e["id"] for e in await world.entries("message.accepted")].count(env["id"]) == 1
    deliveries = await world.sql("SELECT count(*) FROM delivery WHERE message_id = :m", m=env["id"])
    assert deliveries.scalar() == first.json()["recipients"]
    again = c.usa.build("POST", "/v1/messages", {"envelope": env})  # and in a later batch
    assert_problem(await world.http.send(again), "duplicate-envelope")


async def test_a_revoked_devices_request_leaves_no_nonce(world: World) -> None:
    """A revoked device's request is refused as revoked and writes nothing, its nonce
    included (the batch claimed it and takes it back): sent again, it is refused as revoked,
    not as a replay."""
    await coalition(world)
    usa2 = await world.enrol("usa-analyst")
    r = await world.root.post(f"/v1/admin/devices/{usa2.id}/revoke")
    assert r.status_code == 200, r.text
    req = usa2.build("GET", "/v1/me")
    nonces = "SELECT count(*) FROM request_nonce WHERE keyid = :k"
    (refused,) = await in_order_in_one_batch(world, lambda: world.http.send(req))
    assert_problem(refused, "device-revoked")
    assert (await world.sql(nonces, k=usa2.id)).scalar() == 0
    assert_problem(await world.http.send(req), "device-revoked")


async def test_batch_lookups_past_sqlites_parameter_limit(world: World) -> None:
    """`batch_max` has no upper bound: 1,000 nonces and ids at once (SQLite's reads go by
    chunks under its oldest limit of 999 parameters; PostgreSQL's are one array each)."""
    keyid = "d_" + "a" * 26
    c = await coalition(world)
    sent = await c.usa.send(OPS, SECRET_AIRDEF)
    assert sent.status_code == 201, sent.text
    ids = [f"m{i:04d}" for i in range(999)]
    ids.insert(950, sent.json()["id"])  # past the first chunk

    def job(tx: Tx) -> tuple[int, int, int]:
        when = tx.raw.time(tx.now)
        rows = [(keyid, f"n{i:04d}", when) for i in range(1000)]
        first = tx.raw.claim_nonces(rows)
        again = tx.raw.claim_nonces([*rows[:10], (keyid, "fresh", when)])
        present = tx.raw.present_message_ids(ids)
        return len(first), len(again), len(present)

    assert (await world.state.writer.run(job)).value == (1000, 1, 1)
