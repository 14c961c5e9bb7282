"""Live streams end with the right to them, and one device cannot open hundreds (hardening
issue, item 10).

A device's `GET /v1/inbox/stream` once outlived its revocation and its principal's suspension
(authentication was checked only when the stream opened), and one device could hold 300
streams open. These tests use the real server over loopback HTTP (streams need it), on both
databases, and across two service instances sharing one database (another replica).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.service.harness import (
    Device,
    World,
    another_service,
    assert_problem,
    coalition,
    serve_app,
    sse_events,
    world_on,
)

#: `LIAISON_MAX_STREAMS_PER_DEVICE`'s documented default.
DEFAULT_STREAMS_PER_DEVICE = 4
#: How soon a stream must end after its device's right to it did (the sweep runs every 2 s).
WITHIN_SECONDS = 5.0


async def open_stream(http: httpx.AsyncClient, base: str, dev: Device) -> httpx.Response:
    signed = dev.build("GET", "/v1/inbox/stream")  # signed for the public URL
    return await http.send(
        http.build_request("GET", base + "/v1/inbox/stream", headers=signed.headers), stream=True
    )


async def until_closed(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every event up to the end of the stream (comments included)."""
    return [ev async for ev in events]


async def assert_closes(response: httpx.Response, reason: str) -> float:
    """The stream ends (within WITHIN_SECONDS), its last event saying `reason`; the seconds
    it took."""
    start = time.monotonic()
    events = sse_events(response)
    assert await anext(events) == {"comment": "connected"}
    try:
        seen = await asyncio.wait_for(until_closed(events), WITHIN_SECONDS)
    except TimeoutError:
        raise AssertionError(f"the stream was still open {WITHIN_SECONDS} s later") from None
    assert seen and seen[-1] == {"event": "closed", "data": {"reason": reason}}, seen
    return time.monotonic() - start


async def no_streams_left(world: World) -> None:
    for _ in range(100):
        if world.state.hub.subscribers == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{world.state.hub.subscribers} streams left open")


async def test_revoking_a_device_closes_its_streams(world: World) -> None:
    c = await coalition(world)
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        ukr, fra = await open_stream(http, base, c.ukr), await open_stream(http, base, c.fra)
        try:
            assert ukr.status_code == fra.status_code == 200
            revoked = await world.root.post(f"/v1/admin/devices/{c.ukr.id}/revoke")
            assert revoked.status_code == 200, revoked.text
            await assert_closes(ukr, "device-revoked")
            assert world.state.hub.subscribers == 1  # other devices stream on
        finally:
            await ukr.aclose()
            await fra.aclose()
    await no_streams_left(world)


async def test_suspending_a_principal_closes_every_stream_of_its_devices(world: World) -> None:
    c = await coalition(world)
    laptop = await world.enrol(c.ukr.principal)
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        streams = [await open_stream(http, base, d) for d in (c.ukr, laptop, c.usa)]
        try:
            assert [s.status_code for s in streams] == [200, 200, 200]
            r = await world.root.request(
                "PATCH", f"/v1/admin/principals/{c.ukr.principal}", {"status": "suspended"}
            )
            assert r.status_code == 200, r.text
            await asyncio.gather(*(assert_closes(s, "principal-suspended") for s in streams[:2]))
            assert world.state.hub.subscribers == 1  # USA's
        finally:
            for s in streams:
                await s.aclose()
    await no_streams_left(world)


async def test_a_revocation_through_one_replica_closes_streams_on_another(world: World) -> None:
    c = await coalition(world)
    async with (
        another_service(world) as other,
        serve_app(other.app) as base,
        httpx.AsyncClient(timeout=10) as http,
    ):
        stream = await open_stream(http, base, c.ukr.on(other))
        try:
            assert stream.status_code == 200
            assert other.state.hub.subscribers == 1 and world.state.hub.subscribers == 0
            revoked = await world.root.post(f"/v1/admin/devices/{c.ukr.id}/revoke")
            assert revoked.status_code == 200, revoked.text
            await assert_closes(stream, "device-revoked")
        finally:
            await stream.aclose()
        await no_streams_left(other)


async def test_one_device_cannot_open_hundreds_of_streams(world: World) -> None:
    c = await coalition(world)
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        streams = [await open_stream(http, base, c.ukr) for _ in range(DEFAULT_STREAMS_PER_DEVICE + 6)]
        try:
            statuses = [s.status_code for s in streams]
            assert statuses == [200] * DEFAULT_STREAMS_PER_DEVICE + [429] * 6, statuses
            refused = streams[-1]
            await refused.aread()
            body = assert_problem(refused, "too-many-streams")
            assert str(DEFAULT_STREAMS_PER_DEVICE) in body["detail"]
            assert int(refused.headers["retry-after"]) >= 1
            # Per device: another device still opens its own.
            other = await open_stream(http, base, c.fra)
            streams.append(other)
            assert other.status_code == 200
            # A stream that ends frees its place.
            await streams[0].aclose()
            for _ in range(100):
                if world.state.hub.subscribers <= DEFAULT_STREAMS_PER_DEVICE:  # and FRA's
                    break
                await asyncio.sleep(0.05)
            again = await open_stream(http, base, c.ukr)
            streams.append(again)
            assert again.status_code == 200
        finally:
            for s in streams:
                await s.aclose()
    await no_streams_left(world)


async def test_the_stream_cap_is_a_setting(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, max_streams_per_device=1) as world:
        c = await coalition(world)
        async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
            first, second = await open_stream(http, base, c.ukr), await open_stream(http, base, c.ukr)
            try:
                assert (first.status_code, second.status_code) == (200, 429)
            finally:
                await first.aclose()
                await second.aclose()
