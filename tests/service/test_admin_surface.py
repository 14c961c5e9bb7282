"""The admin surface of issue 11 (item 5) on both databases: principals listed and searched,
single channel members added and removed, a device's own inventory, enrolment codes listed
and cancelled; each scoped like the act it precedes, refusals logged, bad input a problem."""

from __future__ import annotations

import json
from typing import Any

from liaison.crypto.keys import generate_device
from liaison.service.usecases.admin import MAX_CHANNEL_MEMBERS, code_id
from liaison.service.usecases.statements import invitation_hash
from tests.service.harness import (
    Device,
    World,
    assert_problem,
    assert_refused,
    enrol_device,
    invitation_key,
)


async def _people(world: World) -> tuple[Device, Device, Device]:
    """A USA admin (SECRET, AIRDEF), a UKR admin and a USA analyst, plus a few principals."""
    usa = await world.principal("usa-admin", "USA", "SECRET", compartments=["AIRDEF"], roles=["admin"])
    ukr = await world.principal("ukr-admin", "UKR", "SECRET", compartments=["AIRDEF"], roles=["admin"])
    analyst = await world.principal("usa-analyst", "USA", "SECRET")
    for pid, nation, roles in (
        ("usa-bravo", "USA", ["analyst", "auditor"]),
        ("usa-charlie", "USA", ["analyst"]),
        ("ukr-delta", "UKR", ["analyst"]),
    ):
        r = await world.root.post(
            "/v1/admin/principals",
            {
                "id": pid,
                "display_name": f"Officer {pid.split('-')[1].title()}",
                "nation": nation,
                "clearance": "CONFIDENTIAL",
                "roles": roles,
            },
        )
        assert r.status_code == 201, r.text
    r = await world.root.request("PATCH", "/v1/admin/principals/usa-charlie", {"status": "suspended"})
    assert r.status_code == 200
    return usa, ukr, analyst


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["principals"]]


# --- principals ------------------------------------------------------------------------------


async def test_principals_are_listed_filtered_searched_and_paged(world: World) -> None:
    usa, ukr, _ = await _people(world)
    everyone = _ids(await world.root.get("/v1/admin/principals"))
    assert everyone == sorted(everyone)
    assert {"root", "usa-admin", "ukr-admin", "usa-analyst", "usa-bravo", "ukr-delta"} <= set(everyone)
    body = (await world.root.get("/v1/admin/principals?q=usa-bravo")).json()
    assert body["next"] is None
    [bravo] = body["principals"]
    assert bravo["roles"] == ["analyst", "auditor"] and bravo["clearance"] == "CONFIDENTIAL"
    assert bravo["created_at"].endswith("Z") and bravo["status"] == "active"

    assert _ids(await world.root.get("/v1/admin/principals?nation=UKR")) == ["ukr-admin", "ukr-delta"]
    assert _ids(await world.root.get("/v1/admin/principals?role=auditor")) == ["root", "usa-bravo"]
    assert _ids(await world.root.get("/v1/admin/principals?status=suspended")) == ["usa-charlie"]
    assert _ids(await world.root.get("/v1/admin/principals?kind=system")) == []
    # Search: a prefix of the id or of the display name, case-insensitive; wildcards are text.
    assert _ids(await world.root.get("/v1/admin/principals?q=OFFICER%20d")) == ["ukr-delta"]
    assert _ids(await world.root.get("/v1/admin/principals?q=usa-b")) == ["usa-bravo"]
    assert _ids(await world.root.get("/v1/admin/principals?q=%25")) == []
    assert _ids(await world.root.get("/v1/admin/principals?q=_")) == []
    both = await world.root.get("/v1/admin/principals?nation=USA&role=analyst&status=active&q=usa")
    assert _ids(both) == ["usa-analyst", "usa-bravo"]

    # Pages of two, following `next`, give everyone once, in order.
    seen, after = [], None
    while True:
        r = await world.root.get("/v1/admin/principals?limit=2" + (f"&after={after}" if after else ""))
        page = _ids(r)
        assert len(page) <= 2
        seen += page
        after = r.json()["next"]
        if after is None:
            break
        assert after == page[-1]
    assert seen == everyone

    # A nation admin sees its own nation only, and may not ask for another.
    assert set(_ids(await usa.get("/v1/admin/principals"))) == {
        "root",
        "usa-admin",
        "usa-analyst",
        "usa-bravo",
        "usa-charlie",
    }
    assert _ids(await ukr.get("/v1/admin/principals?q=usa")) == []
    entry = await assert_refused(
        world, lambda: usa.get("/v1/admin/principals?nation=UKR"), "other-nation", "access.denied"
    )
    assert entry["who"] == usa.id


async def test_non_admins_cannot_list_principals_or_codes(world: World) -> None:
    _, _, analyst = await _people(world)
    for path in ("/v1/admin/principals", "/v1/admin/principals?q=usa", "/v1/admin/enrolment-codes"):
        entry = await assert_refused(world, lambda p=path: analyst.get(p), "not-admin", "access.denied")
        assert entry["who"] == analyst.id


async def test_principal_listing_bad_input_is_a_problem(world: World) -> None:
    for query in (
        "limit=0",
        "limit=1001",
        "limit=ten",
        "nation=usa",
        "role=king",
        "status=gone",
        "kind=robot",
        "after=Not%20A%20Slug",
        "q=",
        "q=" + "x" * 201,
    ):
        assert_problem(await world.root.get(f"/v1/admin/principals?{query}"), "validation")


# --- channel members, one at a time ----------------------------------------------------------


async def test_single_members_are_added_and_removed_with_the_whole_list_entry(world: World) -> None:
    usa, _, _ = await _people(world)
    await world.channel("ops", "SECRET//REL TO UKR, USA", ["root"])
    path = "/v1/admin/channels/ops/members"
    r = await world.root.request("PATCH", path, {"add": ["usa-analyst", "ukr-delta"]})
    assert r.status_code == 200, r.text
    assert r.json()["members"] == ["root", "ukr-delta", "usa-analyst"]
    entry = (await world.entries("channel.members"))[-1]
    assert entry["actor"] == world.root.id and entry["channel"] == "ops"
    assert entry["members"] == ["root", "ukr-delta", "usa-analyst"]
    assert entry["added"] == ["ukr-delta", "usa-analyst"] and entry["removed"] == []

    r = await world.root.request("PATCH", path, {"remove": ["ukr-delta"], "add": ["usa-bravo"]})
    assert r.json()["members"] == ["root", "usa-analyst", "usa-bravo"]
    entry = (await world.entries("channel.members"))[-1]
    assert entry["added"] == ["usa-bravo"] and entry["removed"] == ["ukr-delta"]
    # Adding a member again or removing a non-member changes nothing (logged as the PUT is).
    r = await world.root.request("PATCH", path, {"add": ["usa-bravo"], "remove": ["ukr-delta"]})
    assert r.json()["members"] == ["root", "usa-analyst", "usa-bravo"]
    entry = (await world.entries("channel.members"))[-1]
    assert entry["added"] == entry["removed"] == []
    # A USA admin dominating the ceiling manages its own nation's members of it.
    r = await usa.request("PATCH", path, {"add": ["usa-admin"], "remove": ["usa-bravo"]})
    assert r.status_code == 200, r.text
    assert r.json()["members"] == ["root", "usa-admin", "usa-analyst"]


async def test_member_changes_keep_the_authority_of_the_whole_list(world: World) -> None:
    usa, ukr, analyst = await _people(world)
    await world.channel("mixed", "SECRET//REL TO UKR, USA", ["root", "usa-admin", "ukr-admin"])
    await world.channel("high", "TOP SECRET//REL TO USA", ["root"])
    path = "/v1/admin/channels/mixed/members"

    def patch(who: Device, body: dict[str, Any], channel: str = "mixed") -> Any:
        return lambda: who.request("PATCH", f"/v1/admin/channels/{channel}/members", body)

    await assert_refused(world, patch(analyst, {"add": ["usa-analyst"]}), "not-admin", "access.denied")
    await assert_refused(world, patch(usa, {"add": ["ukr-delta"]}), "other-nation", "access.denied")
    await assert_refused(world, patch(usa, {"remove": ["ukr-admin"]}), "other-nation", "access.denied")
    await assert_refused(world, patch(usa, {"remove": ["root"]}), "forbidden", "access.denied")
    await assert_refused(
        world, patch(usa, {"add": ["usa-analyst"]}, "high"), "grant-above-own", "access.denied"
    )
    # An admin who may not manage the channel learns nothing, not even that a name is unknown.
    await assert_refused(world, patch(ukr, {"add": ["nobody"]}, "high"), "grant-above-own", "access.denied")
    # Not found, nothing logged: an unknown channel or principal (added or removed).
    await assert_refused(world, patch(world.root, {"add": ["x"]}, "nope"), "not-found", None)
    await assert_refused(world, patch(world.root, {"add": ["nobody"]}), "not-found", None)
    await assert_refused(world, patch(world.root, {"remove": ["nobody"]}), "not-found", None)
    # Bad requests.
    for body in (
        {},
        {"add": [], "remove": []},
        {"add": ["usa-analyst"], "remove": ["usa-analyst"]},
        {"add": "usa-analyst"},
        {"add": ["Not A Slug"]},
    ):
        assert_problem(await world.root.request("PATCH", path, body), "validation")
    assert_problem(await world.root.request("PATCH", path, {"members": ["root"]}), "unknown-field")
    r = await world.root.request("PATCH", path, {"add": ["a"] * (MAX_CHANNEL_MEMBERS + 1)})
    assert_problem(r, "validation")
    members = (await world.root.get("/v1/channels")).json()["channels"]
    assert [c["members"] for c in members if c["id"] == "mixed"] == [["root", "ukr-admin", "usa-admin"]]


async def test_adding_past_the_member_limit_is_refused(world: World) -> None:
    await world.channel("big", "SECRET//REL TO USA", ["root"])
    ids = [f"p{i:03d}" for i in range(MAX_CHANNEL_MEMBERS)]
    for pid in ids:
        r = await world.root.post(
            "/v1/admin/principals",
            {"id": pid, "display_name": pid, "nation": "USA", "clearance": "SECRET"},
        )
        assert r.status_code == 201
    r = await world.root.request("PATCH", "/v1/admin/channels/big/members", {"add": ids[:-1]})
    assert r.status_code == 200 and len(r.json()["members"]) == MAX_CHANNEL_MEMBERS
    r = await world.root.request("PATCH", "/v1/admin/channels/big/members", {"add": ids[-1:]})
    assert_problem(r, "too-many-members")


# --- a device's own inventory ----------------------------------------------------------------


async def test_an_analyst_lists_its_own_devices(world: World) -> None:
    _, _, analyst = await _people(world)
    second = await world.enrol("usa-analyst")
    other = await world.principal("usa-other", "USA", "SECRET")
    await second.post(f"/v1/admin/devices/{second.id}/revoke")  # anyone revokes its own
    r = await analyst.get("/v1/me/devices")
    assert r.status_code == 200, r.text
    devices = {d["device"]: d for d in r.json()["devices"]}
    assert set(devices) == {analyst.id, second.id}
    assert devices[analyst.id]["current"] is True and devices[second.id]["current"] is False
    assert devices[second.id]["revoked"] is True and devices[analyst.id]["revoked"] is False
    assert devices[analyst.id]["enrolment"]["log_index"] >= 0 and r.json()["checkpoint"]
    assert [d["device"] for d in (await other.get("/v1/me/devices")).json()["devices"]] == [other.id]
    assert_problem(await world.http.get("/v1/me/devices"), "unauthenticated")


# --- enrolment codes -------------------------------------------------------------------------


async def _code(world: World, admin: Device, pid: str) -> dict[str, Any]:
    r = await admin.post(f"/v1/admin/principals/{pid}/enrolment-codes")
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["id"] == code_id(invitation_hash(body["invitation_key"]))
    return body


async def test_codes_are_listed_with_their_status_never_the_code(world: World) -> None:
    usa, _, _ = await _people(world)
    r = await world.root.post(
        "/v1/admin/principals",
        {"id": "usa-echo", "display_name": "E", "nation": "USA", "clearance": "SECRET"},
    )
    assert r.status_code == 201
    used = await _code(world, world.root, "usa-echo")
    assert (await enrol_device(world.http, used["code"], generate_device("usa-echo"))).status_code == 201
    expired = await _code(world, world.root, "usa-echo")
    await world.sql(
        "UPDATE enrolment_code SET expires_at = created_at WHERE code_hash = :h",
        h=invitation_hash(expired["invitation_key"]),
    )
    void = await _code(world, usa, "usa-echo")
    pending = await _code(world, world.root, "usa-echo")
    cancelled = await _code(world, world.root, "usa-echo")
    r = await world.root.request("DELETE", f"/v1/admin/enrolment-codes/{cancelled['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    await world.root.post(f"/v1/admin/devices/{usa.id}/revoke")  # voids the codes it issued

    r = await world.root.get("/v1/admin/enrolment-codes?principal=usa-echo")
    assert r.status_code == 200, r.text
    text = r.text
    listed = {c["id"]: c for c in r.json()["codes"]}
    for body in (used, expired, void, pending, cancelled):
        assert body["code"] not in text and body["code"].replace("-", "") not in text
    assert {k: c["status"] for k, c in listed.items()} == {
        used["id"]: "used",
        expired["id"]: "expired",
        void["id"]: "void",
        pending["id"]: "pending",
        cancelled["id"]: "cancelled",
    }
    assert list(listed) == [cancelled["id"], pending["id"], void["id"], expired["id"], used["id"]]
    first = listed[pending["id"]]
    assert set(first) == {
        "id",
        "principal",
        "status",
        "created_at",
        "expires_at",
        "issued_by",
        "used_at",
        "cancelled_at",
    }
    assert first["principal"] == "usa-echo" and first["issued_by"] == world.root.id
    assert listed[void["id"]]["issued_by"] == usa.id and listed[used["id"]]["used_at"]
    for status, code in (("pending", pending), ("void", void), ("used", used), ("expired", expired)):
        r = await world.root.get(f"/v1/admin/enrolment-codes?principal=usa-echo&status={status}")
        assert [c["id"] for c in r.json()["codes"]] == [code["id"]], status
    # Paged newest first, by offset.
    r = await world.root.get("/v1/admin/enrolment-codes?principal=usa-echo&limit=2")
    assert [c["id"] for c in r.json()["codes"]] == [cancelled["id"], pending["id"]]
    assert r.json()["next"] == 2
    r = await world.root.get("/v1/admin/enrolment-codes?principal=usa-echo&limit=2&offset=4")
    assert [c["id"] for c in r.json()["codes"]] == [used["id"]] and r.json()["next"] is None
    # The genesis root code, used: the operator's.
    root_codes = (await world.root.get("/v1/admin/enrolment-codes?principal=root")).json()["codes"]
    assert [(c["issued_by"], c["status"]) for c in root_codes] == [("system", "used")]


async def test_a_cancelled_code_enrols_nothing_and_cancelling_is_logged(world: World) -> None:
    await _people(world)
    code = await _code(world, world.root, "usa-bravo")
    keys = generate_device("usa-bravo")
    r = await world.http.post(
        "/v1/enrol/challenge",
        json={"invitation_key": invitation_key(code["code"]), "bundle": keys.signed_bundle()},
    )
    assert r.status_code == 200, r.text
    r = await world.root.request("DELETE", f"/v1/admin/enrolment-codes/{code['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_at"] and r.json()["principal"] == "usa-bravo"
    entry = (await world.entries("enrolment.code_cancelled"))[-1]
    assert entry["actor"] == world.root.id and entry["code_id"] == code["id"]
    assert entry["principal"] == "usa-bravo" and code["code"] not in json.dumps(entry)
    issued = (await world.entries("enrolment.code_issued"))[-1]
    assert issued["code_id"] == code["id"]
    await assert_refused(world, lambda: enrol_device(world.http, code["code"], keys), "enrolment-code", None)
    # Cancelling again answers the same and logs nothing more; a used code cannot be cancelled.
    before = await world.log_size()
    r = await world.root.request("DELETE", f"/v1/admin/enrolment-codes/{code['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await world.log_size() == before
    used = await _code(world, world.root, "usa-bravo")
    assert (await enrol_device(world.http, used["code"], generate_device("usa-bravo"))).status_code == 201
    r = await world.root.request("DELETE", f"/v1/admin/enrolment-codes/{used['id']}")
    assert_problem(r, "conflict")


async def test_codes_are_scoped_like_issuing_them(world: World) -> None:
    usa, ukr, analyst = await _people(world)
    ukr_code = await _code(world, world.root, "ukr-delta")
    usa_code = await _code(world, world.root, "usa-analyst")
    root_code = await _code(world, world.root, "root")
    own = await _code(world, usa, "usa-admin")  # an admin issues codes for itself
    # A USA admin sees only codes of principals it may manage: not UKR's, not root's.
    listed = {c["id"] for c in (await usa.get("/v1/admin/enrolment-codes")).json()["codes"]}
    assert usa_code["id"] in listed and own["id"] in listed
    assert ukr_code["id"] not in listed and root_code["id"] not in listed
    ukr_listed = {c["id"]: c for c in (await ukr.get("/v1/admin/enrolment-codes")).json()["codes"]}
    assert ukr_code["id"] in ukr_listed  # with the (used) code of its own enrolment
    assert {c["principal"] for c in ukr_listed.values()} == {"ukr-delta", "ukr-admin"}
    # ...and may not cancel them, nor list them by name; the refusals are logged.
    delete = "/v1/admin/enrolment-codes/{}"
    e = await assert_refused(
        world, lambda: usa.request("DELETE", delete.format(ukr_code["id"])), "other-nation", "access.denied"
    )
    assert e["who"] == usa.id
    await assert_refused(
        world,
        lambda: usa.request("DELETE", delete.format(root_code["id"])),
        "grant-above-own",
        "access.denied",
    )
    await assert_refused(
        world, lambda: usa.get("/v1/admin/enrolment-codes?principal=ukr-delta"), "forbidden", "access.denied"
    )
    await assert_refused(
        world, lambda: analyst.request("DELETE", delete.format(usa_code["id"])), "not-admin", "access.denied"
    )
    # Within scope: cancelled by the USA admin, its own code too.
    for body in (usa_code, own):
        r = await usa.request("DELETE", delete.format(body["id"]))
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


async def test_code_bad_input_is_a_problem(world: World) -> None:
    for query in ("status=lost", "offset=-1", "limit=0", "principal=Not%20A%20Slug"):
        assert_problem(await world.root.get(f"/v1/admin/enrolment-codes?{query}"), "validation")
    for bad in ("XYZ", "0123456789ABCDEF", "0" * 17, "0" * 15):
        r = await world.root.request("DELETE", f"/v1/admin/enrolment-codes/{bad}")
        assert_problem(r, "validation")
    assert_problem(await world.root.request("DELETE", "/v1/admin/enrolment-codes/" + "0" * 16), "not-found")
