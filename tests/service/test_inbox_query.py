"""GET /v1/inbox's query (order, bounds, channel, unread, since, id prefix, totals) and the
stream's resume after a cursor, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from liaison.crypto.encoding import format_time
from tests.service.harness import OPS, Coalition, Device, World, assert_problem, coalition, sse_events

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
CONF = "CONFIDENTIAL//REL TO FRA, UKR, USA"


async def _send(dev: Device, label: str, text: bytes, channel: str = OPS) -> str:
    r = await dev.send(channel, label, text)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _page(dev: Device, query: str) -> dict[str, Any]:
    r = await dev.get("/v1/inbox" + (f"?{query}" if query else ""))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _ids(dev: Device, query: str) -> list[str]:
    return [m["id"] for m in (await _page(dev, query))["messages"]]


async def _five(world: World) -> tuple[Coalition, list[str]]:
    c = await coalition(world)
    return c, [await _send(c.usa, SECRET_AIRDEF, f"m{i}".encode()) for i in range(5)]


async def test_newest_first_pages_down_from_before(world: World) -> None:
    c, sent = await _five(world)
    assert await _ids(c.ukr, "order=newest") == sent[::-1]
    seen: list[str] = []
    query = "order=newest&limit=2"
    while True:
        page = await _page(c.ukr, query)
        seen += [m["id"] for m in page["messages"]]
        cursors = [m["cursor"] for m in page["messages"]]
        assert cursors == sorted(cursors, reverse=True)
        if not page["more"]:
            break
        query = f"order=newest&limit=2&before={page['next']}"
    assert seen == sent[::-1]
    # Both bounds: strictly between two cursors, either way.
    cursors = [m["cursor"] for m in (await _page(c.ukr, ""))["messages"]]
    between = f"after={cursors[0]}&before={cursors[4]}"
    assert await _ids(c.ukr, between) == sent[1:4]
    assert await _ids(c.ukr, between + "&order=newest") == sent[3:0:-1]
    for bad in ("order=sideways", "before=-1", "before=x"):
        assert_problem(await c.ukr.get(f"/v1/inbox?{bad}"), "validation")


async def test_channel_unread_and_since_filters(world: World) -> None:
    c, sent = await _five(world)
    await world.channel("side", "CONFIDENTIAL//REL TO FRA, UKR, USA", ["usa-analyst", "ukr-analyst"])
    side = await _send(c.usa, CONF, b"side", channel="side")
    assert await _ids(c.ukr, "channel=side") == [side]
    assert await _ids(c.ukr, f"channel={OPS}") == sent
    assert await _ids(c.ukr, "channel=nope") == []
    assert_problem(await c.ukr.get("/v1/inbox?channel=Not%20a%20slug"), "validation")

    ack = await c.ukr.post(f"/v1/messages/{sent[1]}/ack")
    assert ack.status_code == 200
    assert await _ids(c.ukr, "unread=true") == [sent[0], *sent[2:], side]
    assert await _ids(c.ukr, "unread=true&order=newest&limit=2") == [side, sent[4]]

    # Three messages were accepted "a day ago" (as the server records it): `since` is the
    # acceptance time, inclusive.
    old = datetime.now(UTC) - timedelta(days=1)
    for mid in sent[:3]:
        await world.sql(
            "UPDATE message SET accepted_at = :t WHERE id = :id", t=old.replace(tzinfo=None), id=mid
        )
    cut = format_time(old + timedelta(hours=1), millis=False)
    assert await _ids(c.ukr, f"since={cut}") == [*sent[3:], side]
    assert await _ids(c.ukr, f"since={format_time(old)}") == [*sent, side]
    assert await _ids(c.ukr, f"since={cut}&channel={OPS}&unread=true") == sent[3:]
    for bad in ("since=yesterday", "since=2026-13-01T00:00:00Z"):
        assert_problem(await c.ukr.get(f"/v1/inbox?{bad}"), "validation")


async def test_id_prefix(world: World) -> None:
    c, sent = await _five(world)
    # UUIDv7: the first 8 characters are the time, so messages sent together share them.
    assert await _ids(c.ukr, f"prefix={sent[2][:8]}") == [m for m in sent if m.startswith(sent[2][:8])]
    assert await _ids(c.ukr, f"prefix={sent[2]}") == [sent[2]]
    assert await _ids(c.ukr, f"prefix={sent[2][:-1]}") == [sent[2]]
    # Not a recipient: a prefix only ever matches the caller's own deliveries.
    assert await _ids(c.fra, f"prefix={sent[2]}") == []
    for bad in (sent[2][:7], sent[2].upper(), "%25%25%25%25%25%25%25%25", "________", sent[2] + "0"):
        assert_problem(await c.ukr.get(f"/v1/inbox?prefix={bad}"), "validation")


async def test_totals_count_readable_and_withheld(world: World) -> None:
    c, _ = await _five(world)
    conf = await _send(c.usa, CONF, b"for all")
    page = await _page(c.ukr, "totals=true&limit=2")
    assert (page["total"], page["withheld_total"]) == (6, 0)
    assert "total" not in await _page(c.ukr, "limit=2")
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"clearance": "CONFIDENTIAL"})
    assert r.status_code == 200, r.text
    page = await _page(c.ukr, "totals=true&order=newest")
    assert [m["id"] for m in page["messages"]] == [conf]
    assert (page["total"], page["withheld_total"], page["withheld"]) == (1, 5, 5)
    page = await _page(c.ukr, "totals=true&limit=1")  # totals are over every match, not the page
    assert (page["messages"], page["withheld"], page["withheld_total"]) == ([], 1, 5)


async def _stream(world: World, base: str, dev: Device, query: str = "") -> httpx.Request:
    path = "/v1/inbox/stream" + (f"?{query}" if query else "")
    signed = dev.build("GET", path)
    return world.http.build_request("GET", base + path, headers=signed.headers)


async def _messages(events: Any, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    async def take() -> None:
        async for ev in events:
            if ev.get("event") == "message":
                out.append(ev["data"])
                if len(out) == n:
                    return

    await asyncio.wait_for(take(), 15)
    return out


async def test_stream_events_are_inbox_items_and_resume_after_a_cursor(world: World) -> None:
    c, sent = await _five(world)
    first = await _page(c.ukr, "limit=2")
    cursor = first["next"]  # the client saw sent[0] and sent[1]
    async with world.served() as base, httpx.AsyncClient(timeout=15) as http:
        r = await http.send(await _stream(world, base, c.ukr, f"after={cursor}"), stream=True)
        try:
            assert r.status_code == 200
            events = sse_events(r)
            caught_up = await _messages(events, 3)
            assert [e["id"] for e in caught_up] == sent[2:]
            live = await _send(c.usa, SECRET_AIRDEF, b"live")
            (ev,) = await _messages(events, 1)
            assert ev["id"] == live and ev["type"] == "message"
            inbox = {m["id"]: m for m in (await _page(c.ukr, ""))["messages"]}
            for e in [*caught_up, ev]:
                assert {k: v for k, v in e.items() if k != "type"} == inbox[e["id"]]
            cursors = [e["cursor"] for e in [*caught_up, ev]]
            assert cursors == sorted(set(cursors)) and cursors[0] > cursor
        finally:
            await r.aclose()
        # Without `after`: live events only, as before.
        r = await http.send(await _stream(world, base, c.ukr), stream=True)
        try:
            events = sse_events(r)
            assert await anext(events) == {"comment": "connected"}
            new = await _send(c.usa, SECRET_AIRDEF, b"new")
            assert [e["id"] for e in await _messages(events, 1)] == [new]
        finally:
            await r.aclose()
        bad = await http.send(await _stream(world, base, c.ukr, "after=-1"))
        assert_problem(bad, "validation")


async def test_stream_withholds_what_the_principal_may_no_longer_read(world: World) -> None:
    c, _ = await _five(world)
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"clearance": "CONFIDENTIAL"})
    assert r.status_code == 200, r.text
    conf = await _send(c.usa, CONF, b"for all")
    async with world.served() as base, httpx.AsyncClient(timeout=15) as http:
        r = await http.send(await _stream(world, base, c.ukr, "after=0"), stream=True)
        try:
            assert [e["id"] for e in await _messages(sse_events(r), 1)] == [conf]
        finally:
            await r.aclose()
