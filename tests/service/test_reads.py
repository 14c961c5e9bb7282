"""Reading: no read-up, dominance re-checked on every read, inbox pagination, ack, retention."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from liaison.crypto.envelope import open_envelope
from liaison.crypto.keys import PublicBundle
from liaison.crypto.labels import parse_label
from liaison.service.usecases import messaging
from tests.service.harness import OPS, Coalition, World, assert_problem, assert_refused, coalition

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"


async def _sent(world: World, label: str = SECRET_AIRDEF) -> tuple[Coalition, str]:
    c = await coalition(world)
    r = await c.usa.send(OPS, label, b"for ukr")
    assert r.status_code == 201, r.text
    return c, r.json()["id"]


async def _patch(world: World, pid: str, **changes: Any) -> None:
    r = await world.root.request("PATCH", f"/v1/admin/principals/{pid}", changes)
    assert r.status_code == 200, r.text


async def test_no_read_up(world: World) -> None:
    c, mid = await _sent(world)
    # FRA (CONFIDENTIAL, not in REL TO) and the sensor (a system) were not recipients: they
    # are refused the message, and the attempt is logged.
    for dev in (c.fra, c.sensor):
        entry = await assert_refused(
            world, lambda dev=dev: dev.get(f"/v1/messages/{mid}"), "not-recipient", "access.denied"
        )
        assert entry["who"] == dev.id and mid in entry["what"]
        await assert_refused(
            world, lambda dev=dev: dev.post(f"/v1/messages/{mid}/ack"), "not-recipient", "access.denied"
        )
    # Nor can a device of a dominating principal read a message not addressed to it.
    ukr2 = await world.enrol("ukr-analyst")
    await assert_refused(world, lambda: ukr2.get(f"/v1/messages/{mid}"), "not-recipient", "access.denied")


async def test_lowered_clearance_is_refused_from_that_moment(world: World) -> None:
    c, mid = await _sent(world)
    await _patch(world, "ukr-analyst", clearance="CONFIDENTIAL")
    await assert_refused(world, lambda: c.ukr.get(f"/v1/messages/{mid}"), "clearance", "access.denied")
    inbox = (await c.ukr.get("/v1/inbox")).json()
    assert inbox["messages"] == [] and inbox["withheld"] == 1  # not even the metadata
    await _patch(world, "ukr-analyst", clearance="SECRET")
    got = await c.ukr.get(f"/v1/messages/{mid}")
    assert got.status_code == 200
    assert open_envelope(got.json()["envelope"], c.ukr.keys, c.usa.keys.public).plaintext == b"for ukr"


async def test_removed_compartment_and_suspension_are_refused_on_read(world: World) -> None:
    c, mid = await _sent(world)
    await _patch(world, "ukr-analyst", compartments=[])
    await assert_refused(world, lambda: c.ukr.get(f"/v1/messages/{mid}"), "compartment", "access.denied")
    await _patch(world, "ukr-analyst", compartments=["AIRDEF"])
    assert (await c.ukr.get(f"/v1/messages/{mid}")).status_code == 200
    await _patch(world, "usa-analyst", status="suspended")
    await assert_refused(
        world, lambda: c.usa.get(f"/v1/messages/{mid}"), "principal-suspended", "access.denied"
    )


async def test_revoked_device_is_refused_from_that_moment(world: World) -> None:
    c = await coalition(world)
    ukr2 = await world.enrol("ukr-analyst")
    r = await c.usa.send(OPS, SECRET_AIRDEF)
    mid = r.json()["id"]
    assert (await ukr2.get(f"/v1/messages/{mid}")).status_code == 200
    # A device may revoke itself (a lost laptop reported by its owner, from the other one).
    r = await c.ukr.post(f"/v1/admin/devices/{ukr2.id}/revoke")
    assert r.status_code == 200, r.text
    for call in (
        lambda: ukr2.get(f"/v1/messages/{mid}"),
        lambda: ukr2.get("/v1/inbox"),
        lambda: ukr2.post(f"/v1/messages/{mid}/ack"),
    ):
        await assert_refused(world, call, "device-revoked", "access.denied")
    assert (await c.ukr.get(f"/v1/messages/{mid}")).status_code == 200


async def test_recipients_are_exactly_the_eligible_device_bundles(world: World) -> None:
    c = await coalition(world)
    usa2 = await world.enrol("usa-analyst")
    ukr2 = await world.enrol("ukr-analyst")
    r = await world.root.post(f"/v1/admin/devices/{ukr2.id}/revoke")
    assert r.status_code == 200
    # (asked by a member who could send at that label: FRA may not ask, see test_disclosure.py)
    r = await c.ukr.get(f"/v1/channels/{OPS}/recipients?label={SECRET_AIRDEF}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {d["device"] for d in body["devices"]} == {c.usa.id, usa2.id, c.ukr.id}
    assert body["excluded"] == [
        {"principal": "fra-analyst", "reason": "clearance"},
        {"principal": "ukr-sensor", "reason": "system-level"},
    ]
    assert body["label"] == parse_label(SECRET_AIRDEF, world.policy).to_json()
    for d in body["devices"]:
        # The signed bundle as enrolled, and the proof its enrolment is in the log.
        keys = {c.usa.id: c.usa.keys, usa2.id: usa2.keys, c.ukr.id: c.ukr.keys}[d["device"]]
        assert PublicBundle.from_signed(d["signed_bundle"]) == keys.public  # self-signature ok
        assert d["enrolment"]["log_index"] < body["tree_size"]
    # The label may also be given as JSON, and a label the channel has no one for is empty.
    label_json = (
        '{"policy":"coalition-2026","classification":"SECRET","rel":["USA"],'
        '"compartments":["AIRDEF","CYBER"]}'
    )
    r = await c.usa.get(f"/v1/channels/{OPS}/recipients?label={quote(label_json)}")
    assert {d["device"] for d in r.json()["devices"]} == {c.usa.id, usa2.id}
    for bad in ("SECRET//NOPE//REL TO USA", "SECRET", "{not json", "TOP SECRET//REL TO MARS"):
        assert_problem(
            await c.usa.get(f"/v1/channels/{OPS}/recipients?label={quote(bad)}"), "malformed-label"
        )
    assert_problem(await c.usa.get(f"/v1/channels/nope/recipients?label={SECRET_AIRDEF}"), "not-found")


async def test_inbox_cursor_pagination(world: World) -> None:
    c = await coalition(world)
    sent = []
    for i in range(5):
        r = await c.usa.send(OPS, SECRET_AIRDEF, f"m{i}".encode())
        sent.append(r.json()["id"])
    seen: list[str] = []
    after, pages = 0, 0
    while True:
        r = await c.ukr.get(f"/v1/inbox?after={after}&limit=2")
        assert r.status_code == 200
        page = r.json()
        pages += 1
        seen += [m["id"] for m in page["messages"]]
        assert all(m["cursor"] > after for m in page["messages"])
        if not page["more"]:
            break
        assert page["next"] > after
        after = page["next"]
    assert seen == sent and pages == 3
    last = await c.ukr.get(f"/v1/inbox?after={page['next']}")
    assert last.json()["messages"] == [] and last.json()["next"] == page["next"]
    item = (await c.ukr.get("/v1/inbox?limit=1")).json()["messages"][0]
    assert item["sender"] == "usa-analyst" and item["sender_device"] == c.usa.id
    assert item["label"] == parse_label(SECRET_AIRDEF, world.policy).to_json()
    assert item["read"] is False and item["fetched"] is False and item["expired"] is False
    for bad in ("limit=0", "limit=501", "after=-1", "after=x"):
        assert_problem(await c.ukr.get(f"/v1/inbox?{bad}"), "validation")


async def test_ack(world: World) -> None:
    c, mid = await _sent(world)
    r = await c.ukr.post(f"/v1/messages/{mid}/ack")
    assert r.status_code == 200 and r.json()["id"] == mid
    again = await c.ukr.post(f"/v1/messages/{mid}/ack")
    assert again.json()["acked_at"] == r.json()["acked_at"]  # idempotent
    acked = await world.entries("message.acked")
    assert [(e["id"], e["device"]) for e in acked] == [(mid, c.ukr.id)]
    inbox = (await c.ukr.get("/v1/inbox")).json()["messages"]
    assert [(m["id"], m["read"]) for m in inbox] == [(mid, True)]
    assert (await c.usa.get("/v1/inbox")).json()["messages"][0]["read"] is False


async def test_retention_destroys_expired_ciphertext(world: World) -> None:
    c, mid = await _sent(world)
    r = await c.usa.send(OPS, "CONFIDENTIAL//REL TO FRA, UKR, USA", b"keep")
    keep = r.json()["id"]
    assert await messaging.expire_due(world.state) == 0  # nothing is due yet
    accepted = (await world.entries("message.accepted"))[0]
    size = await world.log_size()
    await world.sql("UPDATE message SET expires_at = accepted_at WHERE id = :id", id=mid)
    assert await messaging.expire_due(world.state) == 1
    assert await messaging.expire_due(world.state) == 0  # once only
    expired = await world.entries("message.expired")
    assert [(e["id"], e["actor"]) for e in expired] == [(mid, "system")]
    assert await world.log_size() == size + 2  # message.expired, and its batch's map.head
    rows = (await world.sql("SELECT id, envelope, expired_at FROM message ORDER BY id")).all()
    state = {row[0]: (row[1] is None, row[2] is not None) for row in rows}
    assert state == {mid: (True, True), keep: (False, False)}
    # The ciphertext is gone for every recipient; the metadata and the log entries stay.
    body = assert_problem(await c.ukr.get(f"/v1/messages/{mid}"), "not-found")
    assert "expired" in body["detail"]
    inbox = {m["id"]: m for m in (await c.ukr.get("/v1/inbox")).json()["messages"]}
    assert inbox[mid]["expired"] is True and inbox[keep]["expired"] is False
    assert (await world.entries("message.accepted"))[0] == accepted
    assert (await c.ukr.get(f"/v1/messages/{keep}")).status_code == 200


async def test_retention_period_follows_the_level(world: World) -> None:
    c = await coalition(world)
    days = {}
    for label in ("UNCLASSIFIED//REL TO FRA, UKR, USA", "CONFIDENTIAL//REL TO FRA, UKR, USA", SECRET_AIRDEF):
        r = await c.usa.send(OPS, label)
        days[r.json()["id"]] = world.policy.rule(label.split("//")[0]).retention_days
    rows = (await world.sql("SELECT id, accepted_at, expires_at FROM message")).all()
    for mid, accepted, expires in rows:
        accepted, expires = (_as_dt(accepted), _as_dt(expires))
        assert (expires - accepted).days == days[mid]


def _as_dt(value: Any) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value) if isinstance(value, str) else value
