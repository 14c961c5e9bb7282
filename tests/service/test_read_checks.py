"""Every read re-checks dominance, and a refused read says no more than that (finding 11).

`ack` skipped the re-check: a principal whose clearance was lowered could still acknowledge a
message, which the log then recorded as read. And a fetch refused for a lowered clearance or a
removed compartment named the message's level or compartment in the problem's detail.
"""

from __future__ import annotations

from typing import Any

from tests.service.harness import OPS, World, assert_refused, coalition

HUMINT_LABEL = "SECRET//AIRDEF/CYBER//REL TO UKR, USA"
#: The one detail of every refusal of a message its recipient may no longer read.
GENERIC = "this principal may no longer read this message"


async def _patch(world: World, pid: str, **changes: Any) -> None:
    r = await world.root.request("PATCH", f"/v1/admin/principals/{pid}", changes)
    assert r.status_code == 200, r.text


async def test_ack_rechecks_dominance_like_fetch(world: World) -> None:
    c = await coalition(world)
    r = await c.usa.send(OPS, "SECRET//AIRDEF//REL TO UKR, USA", b"for ukr")
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    await _patch(world, "ukr-analyst", clearance="CONFIDENTIAL")
    # The attack: acknowledge (be logged as having read) what one may no longer read.
    entry = await assert_refused(
        world, lambda: c.ukr.post(f"/v1/messages/{mid}/ack"), "clearance", "access.denied"
    )
    assert entry["who"] == c.ukr.id and entry["what"] == f"message {mid}"
    assert await world.entries("message.acked") == []
    await _patch(world, "ukr-analyst", compartments=[], clearance="SECRET")
    await assert_refused(world, lambda: c.ukr.post(f"/v1/messages/{mid}/ack"), "compartment", "access.denied")
    await _patch(world, "ukr-analyst", compartments=["AIRDEF"])
    r = await c.ukr.post(f"/v1/messages/{mid}/ack")
    assert r.status_code == 200, r.text
    assert [e["device"] for e in await world.entries("message.acked")] == [c.ukr.id]


async def test_a_refused_read_does_not_describe_the_message(world: World) -> None:
    c = await coalition(world)
    r = await c.usa.send(OPS, HUMINT_LABEL, b"for ukr", to=["usa-analyst"])
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    # Lower the USA analyst's access two ways; each refusal keeps its reason (for the client and
    # the log) but its detail says nothing of the label: not the level, not the compartments.
    for changes, slug in (
        ({"clearance": "CONFIDENTIAL"}, "clearance"),
        ({"clearance": "SECRET", "compartments": ["AIRDEF"]}, "compartment"),
    ):
        await _patch(world, "usa-analyst", **changes)
        for call in (lambda: c.usa.get(f"/v1/messages/{mid}"), lambda: c.usa.post(f"/v1/messages/{mid}/ack")):
            r = await call()
            body = r.json()
            assert body["type"] == f"urn:liaison:problem:{slug}" and body["detail"] == GENERIC, body
            for word in ("SECRET", "CYBER", "AIRDEF", "UKR"):
                assert word not in r.text, r.text
        denied = (await world.entries("access.denied"))[-2:]
        assert [e["why"] for e in denied] == [slug, slug]
