"""The verifiable directory on the server (protocol 9): statements checked on write, map heads
in the log, proofs at a checkpoint, and a replay that catches a map the statements do not give.

The attacks through the real client (a rewritten database, edited answers) are in
tests/clients/test_directory_attacks.py; these are the server's own guarantees.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from liaison.crypto.commitments import parse_disclosures
from liaison.crypto.directory_replay import DirectoryReplay
from liaison.crypto.encoding import b64url_decode
from liaison.crypto.errors import ProofError
from liaison.crypto.keys import generate_device
from liaison.crypto.statements import SignedStatement, leaf_value, principal_statement, sign_statement
from liaison.crypto.transparency import parse_entry
from liaison.crypto.vmap import MapProof, map_key, verify_proof, verify_range
from liaison.service.tlog.verify import verify_log
from liaison.service.usecases import statements
from liaison.service.writer import Tx
from tests.service.directory_kit import device_enrolment
from tests.service.harness import (
    OPS,
    Device,
    World,
    another_service,
    assert_problem,
    assert_refused,
    coalition,
    invitation_key,
)


def _principal_body(pid: str, nation: str = "USA", clearance: str = "SECRET") -> dict[str, Any]:
    return {
        "id": pid,
        "display_name": pid,
        "nation": nation,
        "clearance": clearance,
        "compartments": ["AIRDEF"],
    }


def _head(proven: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = parse_entry(base64.b64decode(proven["map_head"]["entry"]))
    return head


def _value(proven: dict[str, Any], record: str, nation: str) -> bytes | None:
    """The record's leaf, proven against the map head the answer carries (its statement's
    digest and the version it was written in, protocol 9.5)."""
    root = b64url_decode(_head(proven)["root"])
    return verify_proof(root, map_key(nation, record), MapProof.from_json(proven["records"][record]["proof"]))


async def test_every_checkpoint_ends_with_the_map_head(world: World) -> None:
    await coalition(world)
    entries = await world.entries(heads=True)
    checkpoints = (await world.sql("SELECT size FROM checkpoint ORDER BY size")).scalars().all()
    assert checkpoints and all(entries[size - 1]["type"] == "map.head" for size in checkpoints)
    versions = [e["version"] for e in entries if e["type"] == "map.head"]
    assert versions == sorted(versions) and versions[-1] > 0
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok, report.failures
    assert report.statements >= 12 and report.map_heads == len(checkpoints)
    # The operator's replay holds every disclosure: every statement's authority is checked.
    assert report.authority_checked == report.statements


async def test_a_statement_without_authority_is_found_by_the_replay(world: World) -> None:
    """A statement the server should have refused is stored anyway (a bug, or an operator
    writing past the API): a UKR analyst signs its own principal TOP SECRET. Its signature and
    chain are in order, so only authority replay (protocol 9.10, issue 13 item 9) names it;
    an auditor without the disclosures counts it sealed rather than guessing."""
    c = await coalition(world)
    row = await world.sql(
        "SELECT seq, digest FROM directory_statement WHERE record = 'principal:ukr-analyst'"
    )
    seq, digest = max(row.all())
    st, disclosures = principal_statement(
        world.state.log.origin,
        world.state.policy,
        principal="ukr-analyst",
        nation="UKR",
        kind="person",
        clearance="TOP SECRET",
        compartments=["AIRDEF"],
        roles=["analyst"],
        active=True,
        seq=seq + 1,
        prev=b64url_decode(digest),
        signer=c.ukr.id,
    )
    signed = sign_statement(c.ukr.keys, st)
    await world.state.writer.run(lambda tx: statements.store(tx, signed, disclosures))
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert not report.ok
    bad = [f for f in report.failures if "directory:" in f and "had no authority" in f]
    assert len(bad) == 1 and "principal:ukr-analyst" in bad[0] and c.ukr.id in bad[0], report.failures
    assert report.authority_checked == report.statements - 1
    # Without that statement's disclosures (sealed to this auditor), it is counted, not judged.
    replay, sealed = DirectoryReplay(authority=True), DirectoryReplay(authority=True)
    for i, entry in enumerate(await world.entries(heads=True)):
        if entry["type"] != "directory.statement":
            replay.feed(i, entry)
            sealed.feed(i, entry)
            continue
        found = await world.sql(f"SELECT disclosures FROM directory_statement WHERE log_index = {i}")
        opened = parse_disclosures(json.loads(found.scalar_one()))
        replay.feed(i, entry, opened)
        mine = entry["record"] == "principal:ukr-analyst" and entry["seq"] == seq + 1
        sealed.feed(i, entry, None if mine else opened)
    assert any("had no authority" in f for f in replay.findings)
    assert sealed.ok and sealed.authority_sealed == 1


async def test_a_leaf_set_without_a_statement_is_found_by_the_replay(world: World) -> None:
    """The server (or its operator) changes a map leaf with no statement behind it, and signs
    the map head: every checkpoint after is consistent, but the replay names that head."""
    await coalition(world)

    def forge(tx: Tx) -> None:
        tx.set_leaf(map_key("FRA", "principal:fra-analyst"), b"\x01" * 32)
        tx.audit("test.filler", "system")

    await world.state.writer.run(forge)
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert not report.ok
    assert any("directory:" in f and "map.head says version" in f for f in report.failures), report.failures


async def test_statements_must_say_exactly_what_the_request_does(world: World) -> None:
    root = world.root
    origin = world.state.log.origin
    before = await world.counts()

    def signed_for(**kw: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "principal": "usa-x",
            "nation": "USA",
            "kind": "person",
            "clearance": "SECRET",
            "compartments": ["AIRDEF"],
            "roles": ["analyst"],
            "active": True,
            "seq": 1,
            "prev": None,
            "signer": root.id,
        } | kw
        signer = args.pop("keys", root.keys)
        st, disc = principal_statement(args.pop("origin", origin), world.policy, **args)
        return {
            "statement": sign_statement(signer, st).to_json(),
            "disclosures": {k: d.to_json() for k, d in disc.items()},
        }

    async def post(extra: dict[str, Any]) -> Any:
        return await root.post(
            "/v1/admin/principals", {**_principal_body("usa-x"), **extra}, statements=False
        )

    other = generate_device("root")
    cases = [
        ({}, "needs the statement"),
        (signed_for(clearance="TOP SECRET"), "facts are not the record"),  # says more than done
        (signed_for(origin="other.example/audit"), "for log"),  # another deployment's
        (signed_for(seq=2, prev=b"\0" * 32), "next statement"),  # not the record's next
        (signed_for(principal="usa-y"), "for principal"),  # another record
        (signed_for(keys=other, signer=other.device_id), "names signer"),  # not the caller's
    ]
    for extra, why in cases:
        body = assert_problem(await post(extra), "statement-invalid")
        assert why in body["detail"], (why, body["detail"])
    # Withheld disclosures: the server must see every fact it is asked to prove later.
    partial = signed_for()
    partial["disclosures"].pop("active")
    assert "missing: active" in assert_problem(await post(partial), "statement-invalid")["detail"]
    # None of them wrote anything, not even a log entry.
    assert await world.counts() == before
    r = await post(signed_for())
    assert r.status_code == 201, r.text
    # The answer proves the new leaf at the receipt's checkpoint.
    value = _value(r.json()["directory"], "principal:usa-x", "USA")
    assert (
        value == SignedStatement.from_json(signed_for()["statement"]).statement.digest() or value is not None
    )


async def test_the_leaf_proof_in_the_answer_is_the_new_statement(world: World) -> None:
    r = await world.root.post("/v1/admin/principals", _principal_body("usa-x"))
    assert r.status_code == 201, r.text
    proven = r.json()["directory"]
    stmt = SignedStatement.from_json(proven["records"]["principal:usa-x"]["statement"]).statement
    version = proven["records"]["principal:usa-x"]["version"]
    assert stmt.seq == 1 and _value(proven, "principal:usa-x", "USA") == leaf_value(stmt.digest(), version)


async def test_lookups_at_an_older_checkpoint_show_the_statement_then_current(world: World) -> None:
    c = await coalition(world)
    old = await world.root.get("/v1/directory/records?record=principal:ukr-analyst")
    size = old.json()["tree_size"]
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"clearance": "CONFIDENTIAL"})
    assert r.status_code == 200, r.text
    then = (await c.ukr.get(f"/v1/directory/records?record=principal:ukr-analyst&at={size}")).json()
    now = (await c.ukr.get("/v1/directory/records?record=principal:ukr-analyst")).json()
    seq = {
        name: SignedStatement.from_json(p["records"]["principal:ukr-analyst"]["statement"]).statement.seq
        for name, p in (("then", then), ("now", now))
    }
    assert then["tree_size"] == size < now["tree_size"] and seq == {"then": 1, "now": 2}
    for proven in (then, now):  # each proven against its own checkpoint's map head
        rec = proven["records"]["principal:ukr-analyst"]
        st = SignedStatement.from_json(rec["statement"]).statement
        assert _value(proven, "principal:ukr-analyst", "UKR") == leaf_value(st.digest(), rec["version"])
    # Its own principal's facts are all disclosed to it; another's are not shown to a stranger.
    assert len(now["records"]["principal:ukr-analyst"]["disclosures"]) > 10
    r = await c.fra.get("/v1/directory/records?record=principal:usa-nobody")
    assert_problem(r, "not-found")


async def test_recipients_answers_carry_the_proofs_of_every_record_relied_on(world: World) -> None:
    c = await coalition(world)
    r = await c.usa.get(f"/v1/channels/{OPS}/recipients?label=SECRET//AIRDEF//REL%20TO%20UKR,%20USA")
    assert r.status_code == 200, r.text
    body = r.json()
    records = body["directory"]["records"]
    listed = {d["device"] for d in body["devices"]}
    assert {f"device:{d}" for d in listed} <= set(records)
    assert {
        "channel:ops",
        "principal:usa-analyst",
        "principal:ukr-analyst",
        f"device:{world.root.id}",
    } <= set(records)
    # A recipient opens exactly what the label needs: active, person, level, compartment.
    assert set(records["principal:ukr-analyst"]["disclosures"]) == {
        "active",
        "level>=SECRET",
        "holds:AIRDEF",
    } | ({"person"} & set(records["principal:ukr-analyst"]["disclosures"]))
    # The French analyst is excluded, and its disclosures prove why (level>=SECRET false).
    fra = records["principal:fra-analyst"]["disclosures"]
    assert fra["level>=SECRET"]["value"] is False


async def test_a_captured_enrolment_cannot_enrol_another_key(world: World) -> None:
    """The code never reaches the server (protocol 9.8): whoever sees an enrolment request (the
    server itself, a proxy) cannot turn it into an enrolment of a key of its own."""
    r = await world.root.post("/v1/admin/principals", _principal_body("usa-x"))
    code = (await world.root.post("/v1/admin/principals/usa-x/enrolment-codes")).json()["code"]
    key = invitation_key(code)
    honest = generate_device("usa-x")
    doc = (await world.http.get(f"/v1/enrol/invitations/{key}")).json()
    captured = device_enrolment(doc, code, honest, world.state.log.origin)
    assert code not in json.dumps(captured) and code not in json.dumps(doc)
    # The interceptor puts its own bundle in, with the captured statement: refused.
    thief = generate_device("usa-x")
    r = await world.http.post(
        "/v1/enrol/challenge", json={"invitation_key": key, "bundle": thief.signed_bundle()}
    )
    assert r.status_code == 200, r.text
    proof = thief.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
    r = await world.http.post(
        "/v1/enrol",
        json={"invitation_key": key, "bundle": thief.signed_bundle(), "proof": proof, "statement": captured},
    )
    assert_problem(r, "statement-invalid")
    # Its own statement for its own bundle, without the invitation key's signature: refused.
    mine = SignedStatement.from_json(device_enrolment(doc, code, thief, world.state.log.origin))
    forged = SignedStatement(mine.statement, mine.signatures, os.urandom(64)).to_json()
    r = await world.http.post(
        "/v1/enrol",
        json={"invitation_key": key, "bundle": thief.signed_bundle(), "proof": proof, "statement": forged},
    )
    assert "invitation key" in assert_problem(r, "statement-invalid")["detail"]
    assert not (await world.sql("SELECT id FROM device WHERE principal_id = 'usa-x'")).all()


async def test_another_process_builds_on_the_same_map(world: World) -> None:
    """A second service on the same database (another replica or a restart) loads the map from
    the leaf history and continues it: both agree, and the replay agrees with both."""
    await coalition(world)
    async with another_service(world) as other:
        r = await other.root.post("/v1/admin/principals", _principal_body("usa-late"))
        assert r.status_code == 201, r.text
        there = _head(r.json()["directory"])
    r = await world.root.post("/v1/admin/principals", _principal_body("usa-later"))
    assert r.status_code == 201, r.text
    here = _head(r.json()["directory"])
    assert here["version"] == there["version"] + 1
    proven = (await world.root.get("/v1/directory/records?record=principal:usa-late")).json()
    assert _value(proven, "principal:usa-late", "USA") is not None
    replay = DirectoryReplay()
    for i, e in enumerate(await world.entries(heads=True)):
        replay.feed(i, e)
    assert replay.ok, replay.findings
    assert replay.version == here["version"]


async def test_a_nation_admin_proves_its_whole_range(world: World) -> None:
    """A nation admin gets every record of its nation's range and checks it is complete: a
    leaf the server set with no statement (a device it slipped in) fails the range proof."""
    await coalition(world)
    ukr_admin = await world.principal("ukr-admin", "UKR", "SECRET", compartments=["AIRDEF"], roles=["admin"])

    async def check(who: Device) -> dict[str, Any]:
        r = await who.get("/v1/directory/range?nation=UKR")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        items = {
            map_key("UKR", rec): leaf_value(
                SignedStatement.from_json(x["statement"]).statement.digest(), x["version"]
            )
            for rec, x in body["records"].items()
        }
        root = b64url_decode(_head(body)["root"])
        verify_range(root, map_key("UKR", "")[:2], items, [b64url_decode(x) for x in body["siblings"]])
        return body

    body = await check(ukr_admin)
    assert {"principal:ukr-analyst", "principal:ukr-sensor", "principal:ukr-admin"} <= set(body["records"])
    await check(world.root)
    # Another nation's admin, or an analyst, is refused (and logged).
    usa_admin = await world.principal("usa-admin", "USA", "SECRET", compartments=["AIRDEF"], roles=["admin"])
    await assert_refused(
        world, lambda: usa_admin.get("/v1/directory/range?nation=UKR"), "other-nation", "access.denied"
    )

    def slip(tx: Tx) -> None:  # the operator adds a UKR leaf behind the directory's back
        tx.set_leaf(map_key("UKR", "device:d_slippedinbytheoperator00"), b"\x05" * 32)
        tx.audit("test.filler", "system")

    await world.state.writer.run(slip)
    with pytest.raises(ProofError):
        await check(ukr_admin)


async def test_a_channel_record_is_not_shown_to_a_nation_admin_below_its_ceiling(world: World) -> None:
    """As GET /v1/channels: a nation admin sees the records of channels it may manage, never
    one above it (its members would otherwise show)."""
    await coalition(world)
    await world.channel("ts", "TOP SECRET//HUMINT//REL TO USA", ["usa-analyst"])
    fra_admin = await world.principal("fra-admin", "FRA", "SECRET", roles=["admin"])
    assert_problem(await fra_admin.get("/v1/directory/records?record=channel:ts"), "not-found")
    r = await world.root.get("/v1/directory/records?record=channel:ts")
    assert r.status_code == 200 and r.json()["records"]["channel:ts"]["statement"] is not None


async def test_disclosures_for_the_authority_replay_follow_entitlement(world: World) -> None:
    """`GET /v1/audit/disclosures` (9.10): root's auditors open every statement's commitments,
    an analyst none (refused and logged); each answer is logged as `audit.disclosed`."""
    c = await coalition(world)
    size = len(await world.entries(heads=True))
    await assert_refused(
        world,
        lambda: c.usa.get(f"/v1/audit/disclosures?start=0&end={size}"),
        "not-auditor",
        "access.denied",
    )
    r = await world.root.get(f"/v1/audit/disclosures?start=0&end={size}")
    assert r.status_code == 200, r.text
    body = r.json()
    principals = await world.entries("directory.statement")
    with_facts = [e for e in principals if e["statement"]["statement"]["facts"]]
    assert body["next"] == size and body["sealed"] == [] and len(body["disclosures"]) == len(with_facts)
    logged = await world.entries("audit.disclosed")
    assert logged[-1]["opened"] == len(with_facts) and logged[-1]["actor"] == world.root.id
    assert_problem(await world.root.get("/v1/audit/disclosures?start=9&end=3"), "validation")
    # A bound past JSON's exact integers (2^53 - 1, what a log index can be) is refused as
    # such, not logged into an entry that cannot hold it (found by schemathesis: a 500).
    huge = 29009973330138492
    assert_problem(await world.root.get(f"/v1/audit/disclosures?start=34&end={huge}"), "validation")
    top = (1 << 53) - 1
    assert (await world.root.get(f"/v1/audit/disclosures?start=34&end={top}")).status_code == 200
