"""Live push across processes on one SQLite database (`storage.sqlite_events.SqliteListener`).

In process: two apps on one data directory, each with its own writer, hub and listener, as two
server processes have. Then two real `liaison-server run` processes on one data directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from liaison.service.ops.cli import app as cli
from liaison.service.storage import sqlite_events
from liaison.service.storage.events import Subscription
from liaison.service.storage.sqlite_events import SqliteListener
from tests.service.harness import (
    OPS,
    Coalition,
    Device,
    World,
    another_service,
    coalition,
    next_message_event,
    running_world,
    serve_app,
    server_env,
    sse_events,
)
from tests.service.test_replicas import exchange_through_two_servers

SECRET = "SECRET//AIRDEF//REL TO UKR, USA"


def listener(w: World) -> SqliteListener:
    found = w.app.state.listener
    assert isinstance(found, SqliteListener)
    return found


async def caught_up(w: World) -> None:
    """Wait until `w`'s listener has polled past every delivery committed so far (it has
    published what it found by then)."""
    high = int((await w.sql("SELECT coalesce(max(seq), 0) FROM delivery")).scalar())
    for _ in range(400):
        cursor = listener(w).cursor
        if cursor is not None and cursor >= high:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"the listener did not reach seq {high}")


async def drained(sub: Subscription) -> list[dict[str, Any]]:
    """The events already waiting for `sub` (after `caught_up`, every event there will be)."""
    events = []
    while True:
        try:
            event = await sub.next(idle=0.01)
        except TimeoutError:
            return events
        assert event is not None
        events.append(event)


async def sent(dev: Device, text: bytes = b"hi") -> dict[str, Any]:
    r = await dev.send(OPS, SECRET, text)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def event_of(accepted: dict[str, Any]) -> dict[str, Any]:
    """The hub event of an accepted message, as the writer publishes it."""
    return {"type": "message", "id": accepted["id"], "channel": OPS, "log_index": accepted["log_index"]}


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[World, World, Coalition]]:
    """Apps A and B on one SQLite data directory, and the coalition (made through A)."""
    async with running_world(tmp_path, None) as a:
        c = await coalition(a)
        async with another_service(a) as b:
            yield a, b, c


async def test_a_device_streaming_from_one_app_hears_of_a_message_sent_through_the_other(
    two: tuple[World, World, Coalition],
) -> None:
    a, b, c = two
    async with serve_app(b.app) as base, httpx.AsyncClient(timeout=10) as http:
        req = c.ukr.on(b).build("GET", "/v1/inbox/stream")
        stream = await http.send(
            http.build_request("GET", base + "/v1/inbox/stream", headers=req.headers), stream=True
        )
        try:
            assert stream.status_code == 200
            events = sse_events(stream)
            assert await anext(events) == {"comment": "connected"}
            assert b.state.hub.subscribers == 1 and a.state.hub.subscribers == 0
            for i in range(3):
                accepted = await sent(c.usa, f"from A {i}".encode())  # through A
                ev = await next_message_event(events)
                assert ev["id"] == accepted["id"]
                assert (ev["data"]["channel"], ev["data"]["log_index"]) == (OPS, accepted["log_index"])
        finally:
            await stream.aclose()


async def test_each_hub_publishes_a_message_once_whichever_app_accepted_it(
    two: tuple[World, World, Coalition],
) -> None:
    a, b, c = two
    subs = {
        "a-ukr": a.state.hub.subscribe(c.ukr.id),
        "b-ukr": b.state.hub.subscribe(c.ukr.id),
        "a-fra": a.state.hub.subscribe(c.fra.id),  # not a recipient at SECRET
    }
    try:
        through_a = await sent(c.usa, b"through A")
        through_b = await sent(c.usa.on(b), b"through B")
        await caught_up(a)
        await caught_up(b)
        # Once each: from its own writer where it was accepted, from the listener elsewhere.
        want = [event_of(through_a), event_of(through_b)]
        assert await drained(subs["a-ukr"]) == want
        assert await drained(subs["b-ukr"]) == want
        assert await drained(subs["a-fra"]) == []
        # A's listener saw both commits, published B's and skipped its own.
        assert a.state.hub.is_local(through_a["id"]) and not a.state.hub.is_local(through_b["id"])
    finally:
        for sub in subs.values():
            (a.state.hub if sub in (subs["a-ukr"], subs["a-fra"]) else b.state.hub).unsubscribe(sub)


@pytest.mark.parametrize(("in_max", "page"), [(500, 1000), (0, 1000), (500, 1), (0, 1)])
async def test_every_delivery_is_found_whichever_way_the_listener_reads(
    two: tuple[World, World, Coalition], monkeypatch: pytest.MonkeyPatch, in_max: int, page: int
) -> None:
    """By index for a few streaming devices, by a scan of the new deliveries for many; a page
    at a time (a page of one row here)."""
    _, b, c = two
    monkeypatch.setattr(sqlite_events, "_IN_MAX", in_max)
    monkeypatch.setattr(sqlite_events, "_PAGE", page)
    subs = [b.state.hub.subscribe(d.id) for d in (c.ukr, c.usa, c.fra)]
    try:
        accepted = [await sent(c.usa, f"{i}".encode()) for i in range(3)]
        everyone = await c.ukr.send(OPS, "CONFIDENTIAL//REL TO FRA, UKR, USA", b"all")
        assert everyone.status_code == 201, everyone.text
        await caught_up(b)
        want = [event_of(x) for x in accepted]
        assert await drained(subs[0]) == [*want, event_of(everyone.json())]  # UKR
        assert await drained(subs[1]) == [*want, event_of(everyone.json())]  # USA, sender too
        assert await drained(subs[2]) == [event_of(everyone.json())]  # FRA
    finally:
        for sub in subs:
            b.state.hub.unsubscribe(sub)


async def test_a_device_whose_stream_opens_during_a_poll_misses_nothing(
    two: tuple[World, World, Coalition], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll asks for the devices streaming when it began; one whose first stream opens
    while it runs, and a delivery to it committed meanwhile, are read before the cursor moves."""
    _, b, c = two
    watch = listener(b)
    loop = asyncio.get_running_loop()
    subs = {"ukr": b.state.hub.subscribe(c.ukr.id)}
    try:
        secret = await sent(c.usa)  # FRA is not among its recipients
        await caught_up(b)
        assert await drained(subs["ukr"]) == [event_of(secret)]
        poll = watch._poll
        armed, inserted = True, threading.Event()

        async def subscribe() -> None:
            subs["fra"] = b.state.hub.subscribe(c.fra.id)

        def racing(epoch: int, devices: list[str], cursor: int | None) -> Any:
            nonlocal armed
            if armed:  # on the listener's thread, mid-poll: FRA's stream opens, then another
                armed = False  # process commits a delivery to FRA
                asyncio.run_coroutine_threadsafe(subscribe(), loop).result(10)
                db = sqlite3.connect(watch.path, timeout=30)
                with db:
                    db.execute(
                        "INSERT INTO delivery (message_id, device_id) VALUES (?, ?)", (secret["id"], c.fra.id)
                    )
                db.close()
                inserted.set()
            return poll(epoch, devices, cursor)

        monkeypatch.setattr(watch, "_poll", racing)
        for _ in range(400):
            if inserted.is_set():
                break
            await asyncio.sleep(0.025)
        await caught_up(b)  # past the delivery inserted
        assert await drained(subs["fra"]) == [event_of(secret)]
        assert await drained(subs["ukr"]) == []
    finally:
        for sub in subs.values():
            b.state.hub.unsubscribe(sub)


async def test_an_idle_listener_sends_no_query_and_replays_nothing(
    two: tuple[World, World, Coalition],
) -> None:
    _, b, c = two
    watch = listener(b)
    await sent(c.usa)
    await asyncio.sleep(watch.interval * 6)
    before = watch.queries
    await sent(c.usa)  # commits B's listener would notice, had it a stream to feed
    await asyncio.sleep(watch.interval * 6)
    assert watch.queries == before
    # The first stream: the listener takes its cursor there, so what came before is not
    # pushed, and polls from then on.
    sub = b.state.hub.subscribe(c.ukr.id)
    try:
        await caught_up(b)
        assert watch.queries > before
        assert await drained(sub) == []
        new = await sent(c.usa, b"new")
        await caught_up(b)
        assert await drained(sub) == [event_of(new)]
    finally:
        b.state.hub.unsubscribe(sub)
    # The last stream gone: no query again, and nothing sent meanwhile is replayed later.
    await asyncio.sleep(watch.interval * 6)
    idle = watch.queries
    await sent(c.usa, b"unheard")
    await asyncio.sleep(watch.interval * 6)
    assert watch.queries == idle
    sub = b.state.hub.subscribe(c.ukr.id)
    try:
        await caught_up(b)
        assert await drained(sub) == []
    finally:
        b.state.hub.unsubscribe(sub)


async def test_a_failing_poll_is_a_warning_and_a_retry(
    two: tuple[World, World, Coalition], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b, c = two
    watch = listener(b)
    poll = watch._poll
    failures = 0

    def locked(*args: Any) -> Any:
        nonlocal failures
        if failures < 5:
            failures += 1
            raise sqlite3.OperationalError("database is locked")
        return poll(*args)

    monkeypatch.setattr(watch, "_poll", locked)
    sub = b.state.hub.subscribe(c.ukr.id)
    try:
        with caplog.at_level(logging.INFO, logger="liaison.events"):
            for _ in range(400):
                if failures == 5:
                    break
                await asyncio.sleep(0.025)
            accepted = await sent(c.usa)
            await caught_up(b)
        assert await drained(sub) == [event_of(accepted)]
    finally:
        b.state.hub.unsubscribe(sub)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "database is locked" in warnings[0], warnings  # one a minute
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


async def test_stop_with_streams_open_ends_the_listener(tmp_path: Path) -> None:
    async with running_world(tmp_path, None) as w:
        c = await coalition(w)
        watch = listener(w)
        sub = w.state.hub.subscribe(c.ukr.id)
        await caught_up(w)
        await watch.stop()
        await watch.stop()  # idempotent; the lifespan stops it again
        before = watch.queries
        accepted = await sent(c.usa)
        assert await drained(sub) == [event_of(accepted)]  # pushed here by the writer, still
        await asyncio.sleep(watch.interval * 4)
        assert watch.queries == before
        w.state.hub.unsubscribe(sub)


# --- two `liaison-server run` processes ----------------------------------------------------


@pytest.mark.slow
def test_a_message_sent_through_one_process_is_pushed_from_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers on one SQLite data directory: the whole replicas scenario (set-up through
    both, a device streaming from B hears of messages sent through A, one verifiable log)."""
    data = tmp_path / "data"
    env = server_env()
    for name in os.environ:
        if name.startswith("LIAISON_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, ["init", "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.stderr
    errors = exchange_through_two_servers(data, env, json.loads(result.stdout))
    assert not any("database is locked" in e for e in errors), errors
