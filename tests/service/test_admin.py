"""Admins are scoped to their nation and their own clearance; enrolment codes are single use and
expire; the device inventory is scoped like the admin."""

from __future__ import annotations

from typing import Any

from liaison.crypto.encoding import b64url_encode
from liaison.crypto.keys import generate_device
from liaison.crypto.statements import invitation_public
from liaison.service.usecases.statements import invitation_hash
from tests.service.harness import Device, World, assert_problem, assert_refused, enrol_device


def _principal(
    pid: str,
    nation: str,
    clearance: str,
    comps: list[str] | None = None,
    roles: list[str] | None = None,
    kind: str = "person",
) -> dict[str, Any]:
    return {
        "id": pid,
        "display_name": pid.upper(),
        "nation": nation,
        "clearance": clearance,
        "compartments": comps or [],
        "roles": roles or ["analyst"],
        "kind": kind,
    }


async def _nation_admins(world: World) -> tuple[Device, Device]:
    usa = await world.principal("usa-admin", "USA", "SECRET", compartments=["AIRDEF"], roles=["admin"])
    ukr = await world.principal(
        "ukr-admin", "UKR", "SECRET", compartments=["AIRDEF", "CYBER"], roles=["admin"]
    )
    return usa, ukr


async def test_nation_admin_manages_its_own_nation_within_its_own_access(world: World) -> None:
    usa_admin, _ = await _nation_admins(world)
    # Within scope: a USA analyst at or below SECRET, AIRDEF at most; enrolled, put in a channel.
    r = await usa_admin.post("/v1/admin/principals", _principal("usa-a1", "USA", "SECRET", ["AIRDEF"]))
    assert r.status_code == 201, r.text
    created = (await world.entries("principal.created"))[-1]
    assert created["actor"] == usa_admin.id and created["principal"]["id"] == "usa-a1"
    dev = await world.enrol("usa-a1", admin=usa_admin)
    r = await usa_admin.request(
        "PATCH", "/v1/admin/principals/usa-a1", {"clearance": "CONFIDENTIAL", "compartments": []}
    )
    assert r.status_code == 200 and r.json()["clearance"] == "CONFIDENTIAL"
    r = await usa_admin.post("/v1/admin/channels", {"id": "usa-air", "ceiling": "SECRET//AIRDEF//REL TO USA"})
    assert r.status_code == 201, r.text
    r = await usa_admin.request(
        "PUT", "/v1/admin/channels/usa-air/members", {"principals": ["usa-admin", "usa-a1"]}
    )
    assert r.status_code == 200, r.text
    r = await usa_admin.post(f"/v1/admin/devices/{dev.id}/revoke")
    assert r.status_code == 200, r.text


async def test_nation_admin_acting_on_another_nation_is_refused_and_logged(world: World) -> None:
    usa_admin, ukr_admin = await _nation_admins(world)
    ukr = await world.principal("ukr-a1", "UKR", "CONFIDENTIAL", admin=ukr_admin)
    await world.channel("mixed", "SECRET//AIRDEF//REL TO UKR, USA", ["usa-admin", "ukr-admin"])
    calls = [
        lambda: usa_admin.post("/v1/admin/principals", _principal("ukr-a2", "UKR", "SECRET")),
        lambda: usa_admin.request("PATCH", "/v1/admin/principals/ukr-a1", {"display_name": "renamed"}),
        lambda: usa_admin.request("PATCH", "/v1/admin/principals/ukr-a1", {"status": "suspended"}),
        lambda: usa_admin.post("/v1/admin/principals/ukr-a1/enrolment-codes"),
        lambda: usa_admin.post(f"/v1/admin/devices/{ukr.id}/revoke"),
        lambda: usa_admin.request(
            "PUT", "/v1/admin/channels/mixed/members", {"principals": ["usa-admin"]}
        ),  # would remove ukr-admin
    ]
    for call in calls:
        entry = await assert_refused(world, call, "other-nation", "access.denied")
        assert entry["who"] == usa_admin.id
    # Nothing changed: the UKR principal is as it was, its device still works.
    r = await world.root.get("/v1/admin/devices?principal=ukr-a1")
    assert [d["revoked"] for d in r.json()["devices"]] == [False]
    assert (await ukr.get("/v1/inbox")).status_code == 200


async def test_nation_admin_never_grants_above_its_own(world: World) -> None:
    usa_admin, _ = await _nation_admins(world)
    refused = [
        _principal("usa-ts", "USA", "TOP SECRET"),  # clearance above own
        _principal("usa-hum", "USA", "SECRET", ["HUMINT"]),  # compartment not held
        _principal("usa-adm", "USA", "SECRET", roles=["admin"]),  # only root makes admins
    ]
    for body in refused:
        await assert_refused(
            world,
            lambda body=body: usa_admin.post("/v1/admin/principals", body),
            "grant-above-own",
            "access.denied",
        )
    r = await usa_admin.post("/v1/admin/principals", _principal("usa-a1", "USA", "CONFIDENTIAL"))
    assert r.status_code == 201
    for change in ({"clearance": "TOP SECRET"}, {"compartments": ["CYBER"]}, {"roles": ["analyst", "admin"]}):
        await assert_refused(
            world,
            lambda change=change: usa_admin.request("PATCH", "/v1/admin/principals/usa-a1", change),
            "grant-above-own",
            "access.denied",
        )
    # Not even by raising itself, or by managing a principal above it made by root.
    await assert_refused(
        world,
        lambda: usa_admin.request("PATCH", "/v1/admin/principals/usa-admin", {"clearance": "TOP SECRET"}),
        "forbidden",
        "access.denied",
    )
    r = await world.root.post("/v1/admin/principals", _principal("usa-top", "USA", "TOP SECRET", ["HUMINT"]))
    assert r.status_code == 201
    top = await world.enrol("usa-top")
    peer = await world.principal("usa-admin2", "USA", "CONFIDENTIAL", roles=["admin"])
    for call in (
        lambda: usa_admin.request("PATCH", "/v1/admin/principals/usa-top", {"clearance": "SECRET"}),
        lambda: usa_admin.post("/v1/admin/principals/usa-top/enrolment-codes"),
        lambda: usa_admin.post(f"/v1/admin/devices/{top.id}/revoke"),
        # the root admin (of the policy's first nation, USA) and a peer admin too
        lambda: usa_admin.post(f"/v1/admin/devices/{world.root.id}/revoke"),
        lambda: usa_admin.post(f"/v1/admin/devices/{peer.id}/revoke"),
        lambda: usa_admin.post("/v1/admin/principals/usa-admin2/enrolment-codes"),
        lambda: usa_admin.request("PATCH", "/v1/admin/principals/usa-admin2", {"status": "suspended"}),
    ):
        await assert_refused(world, call, "grant-above-own", "access.denied")
    assert (await world.root.get("/v1/me")).status_code == 200
    # Nor open a channel above what it may read.
    await assert_refused(
        world,
        lambda: usa_admin.post(
            "/v1/admin/channels", {"id": "humint", "ceiling": "SECRET//HUMINT//REL TO USA"}
        ),
        "grant-above-own",
        "access.denied",
    )
    r = await world.root.get("/v1/admin/devices?principal=usa-a1")
    assert r.json()["devices"] == []


async def test_analysts_are_not_admins(world: World) -> None:
    analyst = await world.principal("usa-a1", "USA", "SECRET")
    other = await world.principal("usa-a2", "USA", "SECRET")
    await world.channel("c1", "SECRET//REL TO USA", ["usa-a1"])
    calls = [
        lambda: analyst.post("/v1/admin/principals", _principal("usa-a3", "USA", "UNCLASSIFIED")),
        lambda: analyst.request("PATCH", "/v1/admin/principals/usa-a2", {"display_name": "x"}),
        lambda: analyst.post("/v1/admin/principals/usa-a2/enrolment-codes"),
        lambda: analyst.post(f"/v1/admin/devices/{other.id}/revoke"),
        lambda: analyst.post("/v1/admin/channels", {"id": "c2", "ceiling": "SECRET//REL TO USA"}),
        lambda: analyst.request("PUT", "/v1/admin/channels/c1/members", {"principals": []}),
    ]
    for call in calls:
        await assert_refused(world, call, "not-admin", "access.denied")
    assert_problem(await analyst.get("/v1/admin/devices"), "not-admin")


def _key(code: str) -> str:
    return b64url_encode(invitation_public(code))


def _row(code: str) -> str:
    return invitation_hash(_key(code))


async def test_enrolment_codes_are_single_use_hashed_and_expiring(world: World) -> None:
    r = await world.root.post("/v1/admin/principals", _principal("usa-a1", "USA", "SECRET"))
    assert r.status_code == 201
    r = await world.root.post("/v1/admin/principals/usa-a1/enrolment-codes")
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    code = r.json()["code"]
    issued = (await world.entries("enrolment.code_issued"))[-1]
    assert code not in str(issued)
    stored = (await world.sql("SELECT code_hash FROM enrolment_code")).scalars().all()
    # The server holds only a hash of the invitation key (protocol 9.8): the code never left
    # the admin's client.
    assert _row(code) in stored and not any(code in s for s in stored)

    first = generate_device("usa-a1")
    r = await enrol_device(world.http, code, first)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["device"] == first.device_id and body["log_verifier_key"]
    world.verify_receipt(body["receipt"], await world.entry_bytes(body["log_index"]))
    enrolled = (await world.entries("device.enrolled"))[-1]
    assert enrolled["device"] == first.device_id and enrolled["principal"] == "usa-a1"

    async def enrol(code: str, principal: str = "usa-a1") -> Any:
        return await enrol_device(world.http, code, generate_device(principal))

    await assert_refused(world, lambda: enrol(code), "enrolment-code", entry=None)  # used
    await assert_refused(world, lambda: enrol("AAAAA-BBBBB-CCCCC-DDDDD"), "enrolment-code", entry=None)
    r = await world.root.post("/v1/admin/principals/usa-a1/enrolment-codes")
    late = r.json()["code"]
    await world.sql("UPDATE enrolment_code SET expires_at = created_at WHERE code_hash = :h", h=_row(late))
    await assert_refused(world, lambda: enrol(late), "enrolment-code", entry=None)
    # A code for one principal cannot enrol a device of another.
    r = await world.root.post("/v1/admin/principals", _principal("usa-a2", "USA", "SECRET"))
    r = await world.root.post("/v1/admin/principals/usa-a1/enrolment-codes")
    await assert_refused(world, lambda: enrol(r.json()["code"], "usa-a2"), "bad-bundle", entry=None)
    # A bundle whose self-signature does not verify proves no key possession.
    keys = generate_device("usa-a1")
    signed = keys.signed_bundle()
    signed["bundle"] = generate_device("usa-a1").public.to_json()
    r2 = await world.root.post("/v1/admin/principals/usa-a1/enrolment-codes")
    await assert_refused(
        world,
        lambda: world.http.post(
            "/v1/enrol", json={"invitation_key": _key(r2.json()["code"]), "bundle": signed}
        ),
        "bad-bundle",
        entry=None,
    )
    # ...and that code is still good for a proper bundle (the failure consumed nothing).
    assert (await enrol(r2.json()["code"])).status_code == 201


async def test_device_inventory_is_scoped(world: World) -> None:
    usa_admin, ukr_admin = await _nation_admins(world)
    usa = await world.principal("usa-a1", "USA", "SECRET")
    usa2 = await world.enrol("usa-a1")
    ukr = await world.principal("ukr-a1", "UKR", "SECRET")
    await world.root.post(f"/v1/admin/devices/{usa2.id}/revoke")
    assert (await usa.get("/v1/me")).json()["device"] == usa.id
    r = await usa_admin.get("/v1/admin/devices?principal=usa-a1")
    assert r.status_code == 200
    devices = {d["device"]: d for d in r.json()["devices"]}
    assert set(devices) == {usa.id, usa2.id}
    assert devices[usa2.id]["revoked"] is True and devices[usa2.id]["revoked_at"]
    assert devices[usa.id]["revoked"] is False and devices[usa.id]["enrolled_at"]
    assert devices[usa.id]["last_seen_at"] is not None  # it made a request
    assert devices[usa2.id]["last_seen_at"] is None  # it never did
    assert devices[usa2.id]["revocation"]["log_index"] > devices[usa2.id]["enrolment"]["log_index"]
    # Scoped: a USA admin sees no UKR device, even when asking for one.
    r = await usa_admin.get("/v1/admin/devices?principal=ukr-a1")
    assert r.json()["devices"] == []
    everything = {d["device"] for d in (await usa_admin.get("/v1/admin/devices")).json()["devices"]}
    assert everything == {usa_admin.id, usa.id, usa2.id, world.root.id}  # root is USA's (first)
    r = await ukr_admin.get("/v1/admin/devices?principal=ukr-a1")
    assert [d["device"] for d in r.json()["devices"]] == [ukr.id]
    r = await world.root.get("/v1/admin/devices")
    assert {usa.id, usa2.id, ukr.id, usa_admin.id, ukr_admin.id, world.root.id} == {
        d["device"] for d in r.json()["devices"]
    }
    assert_problem(await usa_admin.get("/v1/admin/devices?principal=Not%20A%20Slug"), "validation")
