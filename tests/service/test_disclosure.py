"""What the directory, the recipients answer and the device inventory disclose (finding 18).

The recipients (and the client's dry-run) answer told any member who on a channel holds which
clearance and compartments, for any label, and nobody could see who asked. The directory
showed any principal's devices to any device. Each is now attacked as an insider would.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.service.harness import OPS, Device, World, assert_problem, assert_refused, coalition

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"


def _recipients(dev: Device, label: str, channel: str = OPS) -> Any:
    return dev.get(f"/v1/channels/{channel}/recipients?label={quote(label)}")


# --- the recipients (dry-run) answer -----------------------------------------------------------


async def test_recipients_only_for_labels_the_caller_dominates(world: World) -> None:
    c = await coalition(world)
    # FRA is CONFIDENTIAL: asking who may read SECRET//AIRDEF would tell it who is cleared for
    # SECRET and holds AIRDEF. It may not write there, so it has no question to ask.
    entry = await assert_refused(
        world, lambda: _recipients(c.fra, SECRET_AIRDEF), "clearance", "access.denied"
    )
    assert entry["who"] == c.fra.id and entry["what"] == f"recipients {OPS}"
    await assert_refused(
        world,
        lambda: _recipients(c.ukr, "SECRET//AIRDEF/CYBER//REL TO UKR, USA"),
        "compartment",
        "access.denied",
    )
    await assert_refused(
        world, lambda: _recipients(c.fra, "CONFIDENTIAL//REL TO UKR, USA"), "releasability", "access.denied"
    )
    # Above the channel's ceiling nothing can be sent, whoever asks.
    await assert_refused(
        world, lambda: _recipients(c.usa, "SECRET//HUMINT//REL TO USA"), "compartment", "access.denied"
    )
    await assert_refused(
        world, lambda: _recipients(c.usa, "SECRET//REL TO GBR, USA"), "above-ceiling", "access.denied"
    )
    await assert_refused(
        world, lambda: _recipients(world.root, "TOP SECRET//REL TO USA"), "not-member", "access.denied"
    )


async def test_every_recipients_question_is_logged(world: World) -> None:
    c = await coalition(world)
    before = await world.counts()
    r = await _recipients(c.usa, SECRET_AIRDEF)
    assert r.status_code == 200, r.text
    assert {d["principal"] for d in r.json()["devices"]} == {"usa-analyst", "ukr-analyst"}
    [entry] = await world.entries(start=before["log"])
    assert entry["type"] == "recipients.queried" and entry["actor"] == c.usa.id
    assert set(entry) == {"v", "type", "hour", "time", "actor", "channel", "label"}
    assert entry["channel"] == OPS and entry["label"] == r.json()["label"]
    after = await world.counts()
    # The entry and its batch's map.head (protocol 9.6).
    assert after == {**before, "log": before["log"] + 2, "checkpoint": before["checkpoint"] + 1}
    # Refusals before the question is even asked: not signed, a bad label, a suite the level
    # does not allow. Nothing is logged for them (they say nothing about the channel).
    assert_problem(await world.http.get(f"/v1/channels/{OPS}/recipients?label=x"), "unauthenticated")
    await assert_refused(world, lambda: _recipients(c.usa, "SECRET//NOPE"), "malformed-label", None)
    await assert_refused(
        world,
        lambda: c.usa.get(f"/v1/channels/{OPS}/recipients?label={quote(SECRET_AIRDEF)}&suite=X25519"),
        "suite-not-allowed",
        None,
    )


# --- the directory -----------------------------------------------------------------------------


async def _directory(dev: Device, **query: str) -> Any:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = await dev.get(f"/v1/directory/devices?{q}")
    assert r.status_code == 200, r.text
    return r.json()


async def test_directory_shows_only_co_members_devices(world: World) -> None:
    c = await coalition(world)
    outsider = await world.principal("pol-analyst", "POL", "SECRET")
    nobody = await _directory(outsider, principal="no-such-principal")
    assert nobody["devices"] == []
    # The attack: an insider maps who has which devices on channels it is not on.
    for pid, dev in (("ukr-analyst", c.ukr), ("usa-analyst", c.usa)):
        assert await _directory(outsider, principal=pid) == nobody
        assert await _directory(outsider, device=dev.id) == nobody
    # Its own devices, and its co-members' (revoked ones too), it sees.
    assert [d["device"] for d in (await _directory(outsider, principal="pol-analyst"))["devices"]] == [
        outsider.id
    ]
    assert [d["device"] for d in (await _directory(c.fra, device=c.ukr.id))["devices"]] == [c.ukr.id]
    assert {d["device"] for d in (await _directory(c.fra, principal="usa-analyst"))["devices"]} == {c.usa.id}


async def test_directory_for_admins_and_past_senders(world: World) -> None:
    c = await coalition(world)
    ukr_admin = await world.principal("ukr-admin", "UKR", "SECRET", roles=["admin"])
    # A nation admin sees its own nation's principals, not others' it shares no channel with.
    assert [d["device"] for d in (await _directory(ukr_admin, principal="ukr-sensor"))["devices"]] == [
        c.sensor.id
    ]
    assert (await _directory(ukr_admin, principal="usa-analyst"))["devices"] == []
    # Root sees everyone.
    assert [d["device"] for d in (await _directory(world.root, principal="fra-analyst"))["devices"]] == [
        c.fra.id
    ]
    # A reader can still check the key of whoever sent it a message, after the sender left.
    r = await c.usa.send(OPS, SECRET_AIRDEF, b"before leaving")
    assert r.status_code == 201, r.text
    r = await world.root.request(
        "PUT", f"/v1/admin/channels/{OPS}/members", {"principals": ["ukr-analyst", "fra-analyst"]}
    )
    assert r.status_code == 200, r.text
    assert [d["device"] for d in (await _directory(c.ukr, device=c.usa.id))["devices"]] == [c.usa.id]
    assert (await _directory(c.fra, device=c.usa.id))["devices"] == []  # FRA was not a recipient


async def test_device_inventory_is_the_admins_nation_only(world: World) -> None:
    """Checked, and found already scoped: `principal=` of another nation answers as nobody."""
    c = await coalition(world)
    ukr_admin = await world.principal("ukr-admin", "UKR", "SECRET", roles=["admin"])
    nobody = (await ukr_admin.get("/v1/admin/devices?principal=no-such-principal")).json()
    assert nobody["devices"] == []
    assert (await ukr_admin.get("/v1/admin/devices?principal=usa-analyst")).json() == nobody
    listed = {d["principal"] for d in (await ukr_admin.get("/v1/admin/devices")).json()["devices"]}
    assert listed == {"ukr-admin", "ukr-analyst", "ukr-sensor"}
    # A non-admin is refused, and the refusal is logged like every other admin refusal.
    entry = await assert_refused(world, lambda: c.usa.get("/v1/admin/devices"), "not-admin", "access.denied")
    assert entry["who"] == c.usa.id
