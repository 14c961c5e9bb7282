"""A first exchange end to end."""

from __future__ import annotations

from liaison.crypto.envelope import open_envelope
from tests.service.harness import World


async def test_exchange(world: World) -> None:
    usa = await world.principal("usa-analyst", "USA", "SECRET", compartments=["AIRDEF"])
    ukr = await world.principal("ukr-analyst", "UKR", "SECRET", compartments=["AIRDEF"])
    await world.channel("airdef", "SECRET//AIRDEF//REL TO UKR, USA", ["usa-analyst", "ukr-analyst"])
    r = await usa.send("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"incoming")
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    inbox = (await ukr.get("/v1/inbox")).json()
    assert [m["id"] for m in inbox["messages"]] == [mid]
    got = await ukr.get(f"/v1/messages/{mid}")
    assert got.status_code == 200, got.text
    opened = open_envelope(got.json()["envelope"], ukr.keys, usa.keys.public)
    assert opened.plaintext == b"incoming"
