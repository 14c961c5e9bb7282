"""A confidential audit log (issue 14): entries v2 commit to every sensitive field, and each
reader opens only what it is entitled to (protocol 10). The finding first, as each leaking
caller: an anonymous reader with LIAISON_AUDIT_PUBLIC, an UNCLASSIFIED POL auditor and a
SECRET UKR admin read nothing of a `TOP SECRET//HUMINT//REL TO USA` message on "Operation
NIGHTJAR" or of the HUMINT handler's record; a USA auditor cleared for it, and root's, do.
Then the operator's `audit verify` holds every opening and names one that is missing or
does not open. Last, shredding at expiry (protocol 10.7), explained to the verifier only by
the entry that logs it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison.crypto import tiles
from liaison.crypto.keys import generate_device
from liaison.service.tlog.verify import verify_log
from liaison.service.usecases import messaging
from liaison.service.writer import Tx
from tests.service.harness import OPS, Device, World, assert_problem, coalition, world_on

LABEL = "TOP SECRET//HUMINT//REL TO USA"
SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
SECRETS = ("TOP SECRET", "HUMINT", "NIGHTJAR", "nightjar", "Smith", "handler")


@pytest.fixture
async def public_world(backend: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(backend, tmp_path, audit_public=True) as w:
        yield w


async def _nightjar(world: World) -> dict[str, Device]:
    r = await world.root.post(
        "/v1/admin/principals",
        {
            "id": "usa-handler",
            "display_name": "Maj. J. Smith (HUMINT handler)",
            "nation": "USA",
            "clearance": "TOP SECRET",
            "compartments": ["HUMINT"],
            "roles": ["analyst"],
        },
    )
    assert r.status_code == 201, r.text
    handler = await world.enrol("usa-handler", generate_device("usa-handler"))
    people = {
        "handler": handler,
        "reader": await world.principal("usa-reader", "USA", "TOP SECRET", compartments=["HUMINT"]),
        "pol": await world.principal("pol-auditor", "POL", "UNCLASSIFIED", roles=["auditor"]),
        "ukr": await world.principal("ukr-admin", "UKR", "SECRET", roles=["admin"]),
        "usa": await world.principal(
            "usa-auditor", "USA", "TOP SECRET", compartments=["HUMINT"], roles=["auditor"]
        ),
    }
    r = await world.root.post(
        "/v1/admin/channels", {"id": "nightjar", "ceiling": LABEL, "name": "Operation NIGHTJAR"}
    )
    assert r.status_code == 201, r.text
    r = await world.root.request(
        "PUT", "/v1/admin/channels/nightjar/members", {"principals": ["usa-handler", "usa-reader"]}
    )
    assert r.status_code == 200, r.text
    sent = await handler.send("nightjar", LABEL, b"the source is in place")
    assert sent.status_code == 201, sent.text
    return people


def _leaks(text: str, devices: list[str]) -> list[str]:
    return [s for s in (*SECRETS, *devices) if s in text]


def _answer_leaks(body: dict[str, object], devices: list[str]) -> list[str]:
    """What an entries answer shows of the secrets, outside the directory's clear statements."""
    entries = body["entries"]
    assert isinstance(entries, list)
    return [
        leak
        for e in entries
        if e["json"]["type"] != "directory.statement"
        for leak in _leaks(json.dumps(e), devices)
    ]


async def test_nobody_below_the_message_reads_it_in_the_log(public_world: World) -> None:
    world = public_world
    p = await _nightjar(world)
    devices = [p["handler"].id, p["reader"].id]
    # The entry bundles, public here, hold commitments only, but for the directory's signed
    # statements (clear by design, protocol 10.4: principal and device ids, a channel's id,
    # ceiling and members), which name no message, display name or channel name.
    size = await world.log_size()
    for t in tiles.tiles_for_size(size):
        if t.level:
            continue
        bundle = tiles.Tile(0, t.n, t.width, entries=True)
        r = await world.http.get(f"/v1/audit/{bundle.path}")
        assert r.status_code == 200, r.text
        for data in tiles.decode_entry_bundle(r.content):
            entry = json.loads(data)
            if entry["type"] == "directory.statement":
                assert [x for x in ("NIGHTJAR", "Smith", "handler)") if x in data.decode()] == []
            else:
                assert _leaks(data.decode(), devices) == [], entry["type"]
    # Anonymous, then the POL auditor and the UKR admin: the entries API opens nothing of it.
    r = await world.http.get(f"/v1/audit/entries?start=0&end={size}")
    assert r.status_code == 200, r.text
    assert _answer_leaks(r.json(), devices) == []
    assert all(e.get("opening") == {} for e in r.json()["entries"])
    for who in ("pol", "ukr"):
        r = await p[who].get(f"/v1/audit/entries?start=0&end={size}")
        assert r.status_code == 200, r.text
        assert _answer_leaks(r.json(), devices) == [], who
        accepted = [e for e in r.json()["entries"] if e["json"]["type"] == "message.accepted"]
        assert accepted and set(accepted[0]["sealed"]) >= {"label", "channel", "recipients", "sender"}
    # The USA auditor cleared for it opens the message's fields; the handler's record too.
    r = await p["usa"].get(f"/v1/audit/entries?start=0&end={size}")
    entries = r.json()["entries"]
    accepted = next(e for e in entries if e["json"]["type"] == "message.accepted")
    assert accepted["json"]["channel"] == "nightjar" and accepted["sealed"] == []
    assert accepted["json"]["label"]["classification"] == "TOP SECRET"
    created = [e for e in entries if e["json"]["type"] == "principal.created"]
    assert any("Smith" in json.dumps(e["json"]) for e in created)
    # Root's auditor opens everything; every answer that opened something was logged.
    r = await world.root.get(f"/v1/audit/entries?start=0&end={size}")
    assert all(e["sealed"] == [] for e in r.json()["entries"])
    opened = await world.entries("audit.opened")
    assert {e["actor"] for e in opened} >= {p["usa"].id, world.root.id}


async def test_the_operators_verify_names_a_missing_or_wrong_opening(world: World) -> None:
    await world.principal("usa-x", "USA", "SECRET")
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok, report.failures
    rows = (await world.sql("SELECT idx FROM audit_opening ORDER BY idx")).scalars().all()
    victim, other = rows[3], rows[4]
    await world.sql(f"DELETE FROM audit_opening WHERE idx = {victim}")
    await world.sql(
        f"UPDATE audit_opening SET fields = (SELECT fields FROM audit_opening WHERE idx = {rows[5]}) "
        f"WHERE idx = {other}"
    )
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert any(f"entry {victim}: its opening is missing" in f for f in report.failures), report.failures
    assert any(f"entry {other}:" in f for f in report.failures), report.failures


def _shred_secret(text: str) -> str:
    """The default policy with `shred_audit` on SECRET only."""
    marker = 'name = "SECRET"\n'
    assert marker in text
    return text.replace(marker, marker + "shred_audit = true\n")


@pytest.fixture
async def shredding_world(backend: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(backend, tmp_path, policy=_shred_secret) as w:
        yield w


async def _message_entries(world: World, mid: str) -> dict[str, int]:
    rows = await world.sql("SELECT type, idx FROM audit_entry WHERE subject = :mid ORDER BY idx", mid=mid)
    return {t: int(i) for t, i in rows.all()}


async def test_expiry_shreds_a_messages_openings_under_policy(shredding_world: World) -> None:
    world = shredding_world
    c = await coalition(world)
    r = await c.usa.send(OPS, SECRET_AIRDEF, b"shred me")
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    r = await c.usa.send(OPS, "CONFIDENTIAL//REL TO FRA, UKR, USA", b"keep me")
    keep = r.json()["id"]
    assert (await c.ukr.get(f"/v1/messages/{mid}")).status_code == 200
    assert (await c.ukr.post(f"/v1/messages/{mid}/ack")).status_code == 200
    assert "opening" in (await c.usa.get(f"/v1/audit/messages/{mid}")).json()
    await world.sql("UPDATE message SET expires_at = accepted_at")
    assert await messaging.expire_due(world.state) == 2
    # The SECRET message's accepted, delivered and acked entries lost their openings, listed
    # in the clear by one audit.shredded entry; its message.expired entry and the
    # CONFIDENTIAL message's entries (no shred_audit at that level) keep theirs.
    mine, kept = await _message_entries(world, mid), await _message_entries(world, keep)
    shredded = [mine["message.accepted"], mine["message.delivered"], mine["message.acked"]]
    logged = await world.entries("audit.shredded")
    assert [(e["indexes"], e["reason"], e["actor"]) for e in logged] == [
        (shredded, "message.expired", "system")
    ]
    stored = set((await world.sql("SELECT idx FROM audit_opening")).scalars().all())
    assert not stored & set(shredded)
    assert {mine["message.expired"], *kept.values()} <= stored
    # Root's auditor now reads those entries sealed, field by field; the rest still open.
    size = await world.log_size()
    body = (await world.root.get(f"/v1/audit/entries?start=0&end={size}")).json()
    by_index = {e["index"]: e for e in body["entries"]}
    for i in shredded:
        assert by_index[i]["opening"] == {} and {"actor", "id"} <= set(by_index[i]["sealed"]), by_index[i]
    assert by_index[kept["message.accepted"]]["sealed"] == []
    # A party's proof of the message is refused with the reason, not with a broken proof.
    r = await c.usa.get(f"/v1/audit/messages/{mid}")
    assert "shredded" in assert_problem(r, "not-found")["detail"]
    assert (await c.usa.get(f"/v1/audit/messages/{keep}")).status_code == 200
    # The operator's verify explains the missing openings by the logged shredding...
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok, report.failures
    assert report.shredded == 3
    # ...and still names an opening deleted without one.
    await world.sql("DELETE FROM audit_opening WHERE idx = :i", i=kept["message.accepted"])
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.failures == [
        f"entry {kept['message.accepted']}: its opening is missing and no audit.shredded entry names it"
    ]


async def test_verify_refuses_a_shredding_beyond_messages(world: World) -> None:
    """A directory statement is never shredded, and a shredding must have destroyed what it
    names: an operator who deletes a statement's opening and logs it as shredded is caught."""
    await world.principal("usa-x", "USA", "SECRET")
    rows = await world.sql("SELECT idx, type FROM audit_entry ORDER BY idx")
    by_type: dict[str, list[int]] = {}
    for i, t in rows.all():
        by_type.setdefault(t, []).append(int(i))
    created, policy = by_type["principal.created"][0], by_type["policy.loaded"][0]
    await world.sql("DELETE FROM audit_opening WHERE idx = :i", i=created)

    def job(tx: Tx) -> None:
        tx.audit("audit.shredded", "system", None, indexes=[created, policy], reason="message.expired")

    await world.state.writer.run(job)
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert any(
        f"names entry {created}, a principal.created, which is never shredded" in f for f in report.failures
    )
    assert any(f"names entry {policy}, whose opening is still stored" in f for f in report.failures)
    assert report.shredded == 0
