"""GET /v1/inbox/stream: server-sent events push new messages to exactly their recipients.

The in-memory ASGI transport buffers whole responses, so these tests serve the app over real
HTTP on a loopback port (plain HTTP, as `--dev-plain-http` would).
"""

from __future__ import annotations

import asyncio

import httpx

from tests.service.harness import (
    OPS,
    Device,
    World,
    assert_problem,
    coalition,
    next_message_event,
    sse_events,
)


def _stream_request(http: httpx.AsyncClient, base: str, dev: Device) -> httpx.Request:
    signed = dev.build("GET", "/v1/inbox/stream")  # signed for the public URL
    return http.build_request("GET", base + "/v1/inbox/stream", headers=signed.headers)


async def test_stream_pushes_new_messages_to_their_recipients_only(world: World) -> None:
    c = await coalition(world)
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        ukr = await http.send(_stream_request(http, base, c.ukr), stream=True)
        fra = await http.send(_stream_request(http, base, c.fra), stream=True)
        try:
            for r in (ukr, fra):
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                assert r.headers["cache-control"] == "no-store"
            ukr_events, fra_events = sse_events(ukr), sse_events(fra)
            assert await anext(ukr_events) == {"comment": "connected"}
            assert await anext(fra_events) == {"comment": "connected"}
            assert world.state.hub.subscribers == 2
            secret = await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA", b"secret")
            assert secret.status_code == 201
            ev = await next_message_event(ukr_events)
            assert ev["id"] == secret.json()["id"] and ev["data"]["id"] == ev["id"]
            assert ev["data"]["channel"] == OPS
            assert ev["data"]["log_index"] == secret.json()["log_index"]
            assert "devices" not in ev["data"]  # who else received it is not the client's business
            # FRA was not a recipient: the first event it sees is the next message, to all.
            everyone = await c.ukr.send(OPS, "CONFIDENTIAL//REL TO FRA, UKR, USA", b"all")
            assert (await next_message_event(fra_events))["id"] == everyone.json()["id"]
            assert (await next_message_event(ukr_events))["id"] == everyone.json()["id"]
            # A refused submission pushes nothing.
            bad = await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA", recipients=[c.usa.keys.public])
            assert bad.status_code == 422
            last = await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA", b"last")
            assert (await next_message_event(ukr_events))["id"] == last.json()["id"]
        finally:
            await ukr.aclose()
            await fra.aclose()
        for _ in range(100):  # the server notices the disconnects and unsubscribes
            if world.state.hub.subscribers == 0:
                break
            await asyncio.sleep(0.05)
        assert world.state.hub.subscribers == 0


async def test_stream_needs_an_authenticated_active_device(world: World) -> None:
    c = await coalition(world)
    await world.root.post(f"/v1/admin/devices/{c.fra.id}/revoke")
    async with world.served() as base, httpx.AsyncClient(timeout=10) as http:
        assert_problem(await http.get(base + "/v1/inbox/stream"), "unauthenticated")
        assert_problem(await http.send(_stream_request(http, base, c.fra)), "device-revoked")
    assert world.state.hub.subscribers == 0
