"""End to end over HTTP: three nations' analysts and a system exchange messages at several labels.

Every message is checked from both ends: the sender's receipt proves the `message.accepted`
entry is in the signed log, every eligible device opens the envelope, every other device is
refused it.
"""

from __future__ import annotations

import json

from liaison.crypto.encoding import jcs
from liaison.crypto.envelope import envelope_digest, open_envelope
from liaison.crypto.labels import parse_label
from liaison.service.storage.models import Message
from tests.service.harness import OPS, Device, World, assert_problem, coalition

LABELS = {
    "u": "UNCLASSIFIED//REL TO FRA, UKR, USA",
    "r": "RESTRICTED//REL TO FRA, USA",
    "c": "CONFIDENTIAL//REL TO FRA, UKR, USA",
    "ca": "CONFIDENTIAL//AIRDEF//REL TO UKR, USA",
    "s": "SECRET//AIRDEF//REL TO UKR, USA",
    "sc": "SECRET//AIRDEF/CYBER//REL TO USA",
}


async def _check_delivered(
    world: World, sender: Device, mid: str, text: bytes, expected: list[Device], everyone: list[Device]
) -> None:
    for dev in everyone:
        got = await dev.get(f"/v1/messages/{mid}")
        inbox = (await dev.get("/v1/inbox")).json()["messages"]
        if dev in expected:
            assert got.status_code == 200, (dev.principal, got.text)
            rule = world.policy.rule(got.json()["envelope"]["label"]["classification"])
            opened = open_envelope(
                got.json()["envelope"], dev.keys, sender.keys.public, required=rule.signatures
            )
            assert opened.plaintext == text
            assert mid in [m["id"] for m in inbox]
        else:
            assert_problem(got, "not-recipient")
            assert mid not in [m["id"] for m in inbox]


async def test_three_nations_and_a_system_exchange_at_several_labels(world: World) -> None:
    c = await coalition(world)
    cases = [
        (c.usa, LABELS["u"], c.all),
        (c.ukr, LABELS["c"], c.all),
        (c.fra, LABELS["r"], [c.usa, c.fra]),
        (c.sensor, LABELS["ca"], [c.usa, c.ukr, c.sensor]),  # systems may use CONFIDENTIAL
        (c.usa, LABELS["s"], [c.usa, c.ukr]),  # FRA not in REL TO, the system stops below SECRET
        (c.usa, LABELS["sc"], [c.usa]),  # only the USA analyst holds CYBER
    ]
    for i, (sender, label, expected) in enumerate(cases):
        text = f"message {i} at {label}".encode()
        env = await sender.envelope(OPS, label, text)
        r = await sender.submit(env)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["id"] == env["id"] and body["recipients"] == len(expected)
        # The receipt proves the exact `message.accepted` entry is in the signed tree.
        entry_bytes = await world.entry_bytes(body["log_index"])
        world.verify_receipt(body, entry_bytes)
        entry = (await world.entries("message.accepted"))[-1]
        assert entry == await world.entry(body["log_index"]) and entry["v"] == 2
        # None of them in the clear: never a JSON string of the entry (as a bare substring,
        # "ops" turned up by chance in a commitment's base64 about once in a hundred runs).
        assert all(json.dumps(v) not in entry_bytes.decode() for v in (OPS, sender.id, env["id"]))
        assert entry["id"] == env["id"] and entry["channel"] == OPS
        assert entry["sender"] == sender.id and entry["actor"] == sender.id
        assert entry["label"] == parse_label(label, world.policy).to_json()
        assert entry["recipients"] == sorted(d.id for d in expected)
        assert entry["envelope_digest"] == envelope_digest(env).hex()
        await _check_delivered(world, sender, env["id"], text, expected, c.all)


async def test_to_names_an_exact_subset_of_the_eligible(world: World) -> None:
    c = await coalition(world)
    r = await c.usa.send(OPS, LABELS["c"], b"just for fra", to=["fra-analyst"])
    assert r.status_code == 201, r.text
    assert (await world.entries("message.accepted"))[-1]["recipients"] == [c.fra.id]
    await _check_delivered(world, c.usa, r.json()["id"], b"just for fra", [c.fra], c.all)


async def test_every_eligible_device_of_a_principal_including_the_senders_others(world: World) -> None:
    c = await coalition(world)
    usa2 = await world.enrol("usa-analyst")
    ukr2 = await world.enrol("ukr-analyst")
    r = await c.usa.send(OPS, LABELS["s"], b"to all my devices too")
    assert r.status_code == 201, r.text
    assert (await world.entries("message.accepted"))[-1]["recipients"] == sorted(
        [c.usa.id, usa2.id, c.ukr.id, ukr2.id]
    )
    await _check_delivered(
        world,
        c.usa,
        r.json()["id"],
        b"to all my devices too",
        [c.usa, usa2, c.ukr, ukr2],
        [*c.all, usa2, ukr2],
    )


async def test_first_fetch_is_logged_as_delivered_once(world: World) -> None:
    c = await coalition(world)
    r = await c.usa.send(OPS, LABELS["s"])
    mid = r.json()["id"]
    for _ in range(2):
        assert (await c.ukr.get(f"/v1/messages/{mid}")).status_code == 200
    delivered = await world.entries("message.delivered")
    assert [(e["id"], e["device"]) for e in delivered] == [(mid, c.ukr.id)]


async def test_the_server_stores_and_serves_the_envelope_exactly(world: World) -> None:
    c = await coalition(world)
    env = await c.ukr.envelope(OPS, LABELS["s"], b"\x00binary\xff")
    r = await c.ukr.submit(env)
    assert r.status_code == 201, r.text
    got = (await c.usa.get(f"/v1/messages/{env['id']}")).json()
    assert got["envelope"] == env and got["sender"] == "ukr-analyst" and got["channel"] == OPS
    async with world.state.db.sessions() as s:
        row = await s.get(Message, env["id"])
        assert row is not None and row.envelope == jcs(env)
        assert row.digest == envelope_digest(env).hex()
