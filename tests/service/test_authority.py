"""What an admin may grant and which channels it may manage, attacked as a nation admin would.

Issue 10, findings 5 and 6: a SECRET USA admin added itself to a `TOP SECRET//HUMINT` channel,
posted into it and removed root and the TOP SECRET member; and granted the `auditor` role it
does not hold. Each attack is made through the running service, and each refusal must be
logged (`access.denied`) with nothing else changed.
"""

from __future__ import annotations

from typing import Any

from tests.service.harness import Device, World, assert_problem, assert_refused

NIGHTJAR = "nightjar"
TS_HUMINT = "TOP SECRET//HUMINT//REL TO USA"


def _principal(pid: str, nation: str, clearance: str, roles: list[str]) -> dict[str, Any]:
    return {
        "id": pid,
        "display_name": pid,
        "nation": nation,
        "clearance": clearance,
        "compartments": [],
        "roles": roles,
        "kind": "person",
    }


async def _usa_admin(world: World) -> Device:
    return await world.principal("usa-admin", "USA", "SECRET", roles=["admin"])


async def _members(world: World, channel: str) -> list[str]:
    r = await world.root.get("/v1/channels")
    return next(c["members"] for c in r.json()["channels"] if c["id"] == channel)


# --- finding 6: roles --------------------------------------------------------------------------


async def test_nation_admin_cannot_grant_a_role_it_does_not_hold(world: World) -> None:
    admin = await _usa_admin(world)
    # Creating an auditor, or making an analyst one, is granting a role the admin lacks.
    entry = await assert_refused(
        world,
        lambda: admin.post("/v1/admin/principals", _principal("usa-aud", "USA", "SECRET", ["auditor"])),
        "grant-above-own",
        "access.denied",
    )
    assert entry["who"] == admin.id
    analyst = await world.principal("usa-a1", "USA", "CONFIDENTIAL", admin=admin)
    await assert_refused(
        world,
        lambda: admin.request("PATCH", "/v1/admin/principals/usa-a1", {"roles": ["analyst", "auditor"]}),
        "grant-above-own",
        "access.denied",
    )
    # The analyst stays an analyst: it still cannot read the audit log.
    assert_problem(await analyst.get("/v1/audit/entries"), "not-auditor")
    r = await world.root.get("/v1/admin/devices?principal=usa-aud")
    assert r.json()["devices"] == []


async def test_admin_holding_a_role_may_grant_it_and_only_root_makes_admins(world: World) -> None:
    both = await world.principal("usa-admin", "USA", "SECRET", roles=["admin", "auditor"])
    r = await both.post("/v1/admin/principals", _principal("usa-aud", "USA", "SECRET", ["auditor"]))
    assert r.status_code == 201, r.text
    for roles in (["admin"], ["analyst", "admin"]):
        await assert_refused(
            world,
            lambda roles=roles: both.post(
                "/v1/admin/principals", _principal("usa-adm", "USA", "SECRET", roles)
            ),
            "grant-above-own",
            "access.denied",
        )
    r = await world.root.post("/v1/admin/principals", _principal("fra-adm", "FRA", "SECRET", ["admin"]))
    assert r.status_code == 201, r.text


async def test_nation_admin_cannot_manage_an_auditor_it_is_not(world: World) -> None:
    """An auditor created by root is above a plain nation admin: no code, no change, no revoke."""
    admin = await _usa_admin(world)
    auditor = await world.principal("usa-aud", "USA", "CONFIDENTIAL", roles=["auditor"])
    for call in (
        lambda: admin.request("PATCH", "/v1/admin/principals/usa-aud", {"roles": ["analyst"]}),
        lambda: admin.request("PATCH", "/v1/admin/principals/usa-aud", {"status": "suspended"}),
        lambda: admin.post("/v1/admin/principals/usa-aud/enrolment-codes"),
        lambda: admin.post(f"/v1/admin/devices/{auditor.id}/revoke"),
    ):
        await assert_refused(world, call, "grant-above-own", "access.denied")
    assert (await auditor.get("/v1/audit/entries?end=1")).status_code == 200


# --- finding 5: channels above the admin ---------------------------------------------------------


async def _nightjar(world: World) -> tuple[Device, Device]:
    """Root's `TOP SECRET//HUMINT//REL TO USA` channel with its TOP SECRET member; a SECRET
    USA admin outside it."""
    admin = await _usa_admin(world)
    r = await world.root.post(
        "/v1/admin/principals",
        {**_principal("usa-top", "USA", "TOP SECRET", ["analyst"]), "compartments": ["HUMINT"]},
    )
    assert r.status_code == 201, r.text
    top = await world.enrol("usa-top")
    await world.channel(NIGHTJAR, TS_HUMINT, ["root", "usa-top"])
    return admin, top


async def test_nation_admin_cannot_take_over_a_channel_above_it(world: World) -> None:
    admin, top = await _nightjar(world)
    put = "/v1/admin/channels/nightjar/members"
    # The attack: join the channel, post into it, then remove root and the TOP SECRET member.
    entry = await assert_refused(
        world,
        lambda: admin.request("PUT", put, {"principals": ["root", "usa-top", "usa-admin"]}),
        "grant-above-own",
        "access.denied",
    )
    assert entry["who"] == admin.id and NIGHTJAR in entry["what"]
    r = await admin.get(f"/v1/channels/{NIGHTJAR}/recipients?label=SECRET//REL TO USA")
    assert_problem(r, "not-member")  # so it cannot post into it either
    await assert_refused(
        world,
        lambda: admin.request("PUT", put, {"principals": ["usa-admin"]}),
        "grant-above-own",
        "access.denied",
    )
    # Even a no-op is managing the channel, and would show its members.
    await assert_refused(
        world,
        lambda: admin.request("PUT", put, {"principals": ["root", "usa-top"]}),
        "grant-above-own",
        "access.denied",
    )
    assert await _members(world, NIGHTJAR) == ["root", "usa-top"]
    # The channel still works for its members.
    r = await top.send(NIGHTJAR, TS_HUMINT, b"still ours")
    assert r.status_code == 201, r.text


async def test_nobody_but_root_removes_root(world: World) -> None:
    admin = await _usa_admin(world)
    analyst = await world.principal("usa-a1", "USA", "SECRET", admin=admin)
    await world.channel("usa-ops", "SECRET//REL TO USA", ["root", "usa-admin", "usa-a1"])
    put = "/v1/admin/channels/usa-ops/members"
    # The admin dominates the ceiling and root is of its nation (the policy's first): still no.
    await assert_refused(
        world,
        lambda: admin.request("PUT", put, {"principals": ["usa-admin", "usa-a1"]}),
        "forbidden",
        "access.denied",
    )
    # It may change its own nation's members as long as root stays.
    r = await admin.request("PUT", put, {"principals": ["root", "usa-admin"]})
    assert r.status_code == 200, r.text
    assert analyst.id  # (its membership was the admin's to change)
    # Root may leave a channel itself, and come back.
    r = await world.root.request("PUT", put, {"principals": ["usa-admin"]})
    assert r.status_code == 200, r.text
    r = await world.root.request("PUT", put, {"principals": ["root", "usa-admin"]})
    assert r.status_code == 200, r.text


async def test_nation_admin_sees_only_channels_it_may_manage_or_belongs_to(world: World) -> None:
    admin, _ = await _nightjar(world)
    await world.channel("usa-ops", "SECRET//REL TO USA", ["usa-top"])
    await world.channel("joined", "TOP SECRET//REL TO USA", ["usa-admin"])
    r = await admin.get("/v1/channels")
    assert [c["id"] for c in r.json()["channels"]] == ["joined", "usa-ops"]
    r = await world.root.get("/v1/channels")
    assert [c["id"] for c in r.json()["channels"]] == ["joined", NIGHTJAR, "usa-ops"]
