"""A first exchange end to end."""

from __future__ import annotations

import pytest

from liaison.crypto.envelope import open_envelope
from liaison.crypto.errors import ProofError
from liaison.crypto.transparency import verify_message_receipt
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


async def test_fetched_message_carries_a_verifiable_receipt(world: World) -> None:
    """A reader gets proof that the log holds this exact envelope's acceptance."""
    usa = await world.principal("usa-analyst", "USA", "SECRET")
    ukr = await world.principal("ukr-analyst", "UKR", "SECRET")
    await world.channel("ops", "SECRET//REL TO UKR, USA", ["usa-analyst", "ukr-analyst"])
    sent = await usa.send("ops", "SECRET//REL TO UKR, USA", b"x")
    assert sent.status_code == 201, sent.text
    for _ in range(3):  # later entries grow the log: the receipt is against the latest size
        await usa.send("ops", "SECRET//REL TO UKR, USA", b"y")
    got = (await ukr.get(f"/v1/messages/{sent.json()['id']}")).json()
    assert got["label"] == {
        "policy": "coalition-2026",
        "classification": "SECRET",
        "rel": ["UKR", "USA"],
        "compartments": [],
    }
    receipt = got["receipt"]
    assert receipt["log_index"] == sent.json()["log_index"]
    assert receipt["tree_size"] > sent.json()["tree_size"]
    verified = verify_message_receipt(receipt, got["envelope"], world.state.log.verifier_key)
    assert verified.index == sent.json()["log_index"]
    other = (await ukr.get("/v1/inbox")).json()["messages"][1]["id"]
    other_env = (await ukr.get(f"/v1/messages/{other}")).json()["envelope"]
    with pytest.raises(ProofError):  # the receipt of one message does not prove another
        verify_message_receipt(receipt, other_env, world.state.log.verifier_key)
