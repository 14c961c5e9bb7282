"""The audit API: who may read, entries, receipts, directory proofs, witnesses and cosignatures."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from liaison.crypto import note, transparency
from liaison.crypto.errors import BadSignature, CryptoError, PolicyViolation, ProofError
from liaison.crypto.keys import generate_device
from liaison.service.storage.models import Cosignature
from tests import tlog_reference as ref
from tests.service.harness import World, enrol_device, world_on


def problem(r: Any, slug: str, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == f"urn:liaison:problem:{slug}", r.json()


async def pair(world: World) -> tuple[Any, Any]:
    usa = await world.principal("usa-analyst", "USA", "SECRET", compartments=["AIRDEF"])
    ukr = await world.principal("ukr-analyst", "UKR", "SECRET", compartments=["AIRDEF"])
    await world.channel("airdef", "SECRET//AIRDEF//REL TO UKR, USA", ["usa-analyst", "ukr-analyst"])
    return usa, ukr


async def test_who_may_read(world: World) -> None:
    usa, _ = await pair(world)
    auditor = await world.principal("nato-auditor", "FRA", "UNCLASSIFIED", roles=["auditor"])
    size = await world.log_size()
    # Public: the checkpoint, hash tiles and the proofs computed from them reveal only hashes.
    assert (await world.http.get("/v1/audit/checkpoint")).status_code == 200
    r = await world.http.get(f"/v1/audit/tile/0/000.p/{size}")
    assert r.status_code == 200 and len(r.content) == 32 * size
    assert r.headers["cache-control"].startswith("public")
    for p in ("/v1/audit/proof/inclusion?index=0", "/v1/audit/proof/consistency?old=1"):
        assert (await world.http.get(p)).status_code == 200
    paths = [
        "/v1/audit/entries?start=0&end=2",
        f"/v1/audit/tile/entries/000.p/{size}",
    ]
    for p in paths:
        problem(await world.http.get(p), "unauthenticated", 401)
        before = await world.log_size()
        problem(await usa.get(p), "not-auditor", 403)
        denied = await world.entries(start=before)
        assert [(e["type"], e["why"], e["who"]) for e in denied] == [("access.denied", "not-auditor", usa.id)]
        for reader in (auditor, world.root):  # the auditor role, or an admin
            r = await reader.get(p)
            assert r.status_code == 200, (p, r.text)
    r = await auditor.get(f"/v1/audit/tile/entries/000.p/{size}")
    assert r.headers["cache-control"] == "private, max-age=5"
    assert ref.split_bundle(r.content)[0] == await world.entry_bytes(0)


async def test_audit_public_opens_reads(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, audit_public=True) as world:
        r = await world.http.get("/v1/audit/entries?start=0&end=2")
        assert r.status_code == 200 and len(r.json()["entries"]) == 2
        r = await world.http.get("/v1/audit/tile/entries/000.p/1")
        assert r.status_code == 200 and r.headers["cache-control"].startswith("public")


async def test_entries_paging_and_filters(world: World) -> None:
    from tests.service.test_audit_tiles import grow

    start_size = await world.log_size()
    await grow(world.state, start_size + 1101)  # 1,100 fillers and their batch's map.head
    size = await world.log_size()
    root = world.root
    r = (await root.get("/v1/audit/entries")).json()
    assert [e["index"] for e in r["entries"]] == list(range(1000)) and r["next"] == 1000
    for e in r["entries"][:20]:
        raw = base64.b64decode(e["entry"])
        # Root's auditor: every field opened, each recomputed against its commitment.
        assert e["json"] == transparency.parse_entry(raw, e.get("opening")) and e["sealed"] == []
        assert raw == await world.entry_bytes(e["index"])
    # Every answer that opens something is logged (`audit.opened`, protocol 10.6): the log
    # grows by that entry and its batch's map head after each such read.
    size = await world.log_size()
    r = (await root.get(f"/v1/audit/entries?start=1000&end={size + 50}")).json()
    assert [e["index"] for e in r["entries"]] == list(range(1000, size)) and r["next"] == size
    r = (await root.get("/v1/audit/entries?start=2&end=&type=&actor=&since=")).json()
    assert r["entries"][0]["index"] == 2 and r["next"] == 1002  # empty means absent
    r = (await root.get("/v1/audit/entries?start=2&end=4")).json()
    assert [e["index"] for e in r["entries"]] == [2, 3] and r["next"] == 4
    size = await world.log_size()
    r = (await root.get("/v1/audit/entries?type=device.enrolled")).json()
    assert r["entries"] and all(e["json"]["type"] == "device.enrolled" for e in r["entries"])
    assert r["next"] == size
    r = (await root.get("/v1/audit/entries?type=test.filler")).json()
    assert len(r["entries"]) == 1000 and r["next"] == r["entries"][-1]["index"] + 1
    size = await world.log_size()
    r = (await root.get(f"/v1/audit/entries?type=test.filler&start={r['next']}")).json()
    assert len(r["entries"]) == 100 and r["next"] == size
    r = (await root.get("/v1/audit/entries?actor=system&end=5")).json()
    assert all(e["json"]["actor"] == "system" for e in r["entries"])
    size = await world.log_size()
    r = (await root.get("/v1/audit/entries?since=2999-01-01T00:00:00Z")).json()
    assert r == {"entries": [], "next": size}
    r = (await root.get("/v1/audit/entries?since=2000-01-01T00:00:00Z&end=3")).json()
    assert len(r["entries"]) == 3
    problem(await root.get("/v1/audit/entries?since=yesterday"), "validation", 422)
    problem(await root.get("/v1/audit/entries?start=5&end=2"), "validation", 422)
    problem(await root.get("/v1/audit/entries?start=-1"), "validation", 422)
    problem(await root.get("/v1/audit/entries?end=-1"), "validation", 422)
    problem(await root.get(f"/v1/audit/entries?end={1 << 64}"), "validation", 422)


async def test_proof_errors(world: World) -> None:
    root = world.root
    size = await world.log_size()
    problem(await root.get(f"/v1/audit/proof/inclusion?index={size}"), "proof", 422)
    problem(await root.get(f"/v1/audit/proof/inclusion?index=0&size={size + 10}"), "proof", 422)
    problem(await root.get(f"/v1/audit/proof/consistency?old={size + 1}"), "proof", 422)
    problem(await root.get("/v1/audit/messages/nope"), "not-found", 404)
    r = (await root.get(f"/v1/audit/proof/consistency?old={size}&new={size}")).json()
    assert r["consistency_proof"] == [] and r["new"] == size


async def test_receipts_verify(world: World) -> None:
    usa, _ = await pair(world)
    key = world.state.log.verifier_key
    env = await usa.envelope("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"incoming")
    r = await usa.submit(env)
    assert r.status_code == 201, r.text
    sent = r.json()
    got = transparency.verify_message_receipt(sent, env, key)
    assert got.index == sent["log_index"] and got.entry.json["id"] == env["id"]
    cp = ref.open_checkpoint(sent["checkpoint"].encode(), key)  # the independent check too
    ref.verify_inclusion(
        ref.leaf(base64.b64decode(sent["entry"])),
        sent["log_index"],
        cp.size,
        [base64.b64decode(h) for h in sent["inclusion_proof"]],
        cp.root,
    )
    other = await usa.envelope("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"other")
    with pytest.raises(ProofError):
        transparency.verify_message_receipt(sent, other, key)
    forged = {**sent, "entry": base64.b64encode(b'{"v":1}').decode()}
    with pytest.raises(CryptoError):
        transparency.verify_message_receipt(forged, env, key)

    # The same proof, later, from the audit API (`liaison audit prove MESSAGE_ID`).
    proof = (await world.root.get(f"/v1/audit/messages/{env['id']}")).json()
    assert set(proof) == {"id", "log_index", "entry", "opening", "inclusion_proof", "tree_size", "checkpoint"}
    later = transparency.verify_message_receipt(proof, env, key)
    assert later.index == got.index and later.checkpoint.size >= got.checkpoint.size

    # Enrolment and revocation receipts.
    code = (await world.root.post("/v1/admin/principals/ukr-analyst/enrolment-codes")).json()
    keys = generate_device("ukr-analyst")
    r = await enrol_device(world.http, code["code"], keys)
    enrolled = transparency.verify_receipt(r.json()["receipt"], r.json()["log_verifier_key"])
    assert enrolled.entry.json["type"] == "device.enrolled"
    assert enrolled.entry.json["device"] == keys.device_id
    r = await world.root.post(f"/v1/admin/devices/{keys.device_id}/revoke")
    revoked = transparency.verify_receipt(r.json()["receipt"], key)
    assert revoked.entry.json["type"] == "device.revoked"

    # Every checkpoint seen is consistent with every earlier one.
    seen = [got.checkpoint, enrolled.checkpoint, revoked.checkpoint, later.checkpoint]
    trusted = None
    for cp_ in sorted(seen, key=lambda c: c.size):
        old = trusted.size if trusted else 0
        c = (await world.root.get(f"/v1/audit/proof/consistency?old={old}&new={cp_.size}")).json()
        trusted = transparency.advance(trusted, cp_, c["consistency_proof"])
    assert trusted is not None and trusted.size == max(c.size for c in seen)


async def test_directory_proofs(world: World) -> None:
    usa, ukr = await pair(world)
    key = world.state.log.verifier_key
    second = await world.enrol("ukr-analyst")
    answer = (await usa.get("/v1/directory/devices?principal=ukr-analyst")).json()
    cp = transparency.verify_checkpoint(answer["checkpoint"], key)
    assert cp.size == answer["tree_size"]
    bundles = {transparency.verify_device_record(d, cp).device_id for d in answer["devices"]}
    assert bundles == {ukr.id, second.id}

    await world.root.post(f"/v1/admin/devices/{second.id}/revoke")
    answer = (await usa.get("/v1/directory/devices?principal=ukr-analyst")).json()
    cp = transparency.verify_checkpoint(answer["checkpoint"], key)
    recs = {d["device"]: d for d in answer["devices"]}
    status = transparency.inspect_device_record(recs[second.id], cp)
    assert status.revoked and status.revoke_index is not None
    with pytest.raises(PolicyViolation) as e:
        transparency.verify_device_record(recs[second.id], cp)
    assert e.value.reason == "device-revoked"
    assert transparency.verify_device_record(recs[ukr.id], cp) == ukr.keys.public

    # A server swapping in another key, or hiding the proof, is caught.
    swapped = {**recs[ukr.id], "signed_bundle": recs[second.id]["signed_bundle"]}
    with pytest.raises(CryptoError):
        transparency.verify_device_record(swapped, cp)
    swapped = {
        **recs[second.id],
        "revocation": None,
        "revoked": False,
        "enrolment": recs[ukr.id]["enrolment"],
        "device": second.id,
    }
    with pytest.raises(ProofError):
        transparency.verify_device_record(swapped, cp)
    with pytest.raises(ProofError):
        transparency.verify_device_record({**recs[ukr.id], "enrolment": None}, cp)

    # The recipients answer carries the same proofs.
    r = await usa.get("/v1/channels/airdef/recipients?label=SECRET//AIRDEF//REL TO UKR, USA")
    body = r.json()
    cp = transparency.verify_checkpoint(body["checkpoint"], key)
    assert {transparency.verify_device_record(d, cp).device_id for d in body["devices"]} == {usa.id, ukr.id}


async def test_witness_cosignatures(backend: str, tmp_path: Path) -> None:
    w1_skey, w1 = note.generate_signer_key("witness.one.example", sig_type=note.SIG_COSIGNATURE_V1)
    w2_skey, w2 = note.generate_signer_key("witness.two.example", sig_type=note.SIG_COSIGNATURE_V1)
    w3_skey, _ = note.generate_signer_key("witness.rogue", sig_type=note.SIG_COSIGNATURE_V1)
    signers = {k: note.parse_signer_key(s) for k, s in (("w1", w1_skey), ("w2", w2_skey), ("w3", w3_skey))}
    async with world_on(backend, tmp_path, witness_keys=[w1, w2]) as world:
        log_key = world.state.log.signer.verifier
        auditor = await world.principal("nato-auditor", "FRA", "UNCLASSIFIED", roles=["auditor"])
        analyst = await world.principal("analyst", "USA", "SECRET")
        text = (await world.http.get("/v1/audit/checkpoint")).text
        cp = note.open_checkpoint(text.encode(), log_key)
        now = int(time.time())

        def cosign(who: str, c: note.Checkpoint = cp) -> str:
            return note.cosign_checkpoint(c, signers[who], now)

        before = await world.log_size()
        r = await auditor.post("/v1/audit/cosignatures", {"size": cp.size, "cosignature": cosign("w1")})
        assert r.status_code == 201, r.text
        assert r.json() == {"size": cp.size, "witness": "witness.one.example", "log_index": before}
        [entry] = await world.entries(start=before)
        assert entry["type"] == "witness.cosigned" and entry["size"] == cp.size
        assert entry["witness"] == "witness.one.example" and entry["timestamp"] == now

        # The checkpoint of that size now carries the cosignature.
        one_of_two = note.WitnessPolicy((note.parse_verifier_key(w1), note.parse_verifier_key(w2)), 1)
        two_of_two = note.WitnessPolicy(one_of_two.witnesses, 2)
        for path in (f"/v1/audit/checkpoint?size={cp.size}", "/v1/audit/checkpoint?cosigned=1"):
            served = (await world.http.get(path)).content
            assert transparency.verify_checkpoint(served, log_key, policy=one_of_two) == cp
            with pytest.raises(BadSignature):  # fail-closed below the quorum
                transparency.verify_checkpoint(served, log_key, policy=two_of_two)
            ref.open_checkpoint(served, log_key.key_string)  # still a valid note for others
        latest = (await world.http.get("/v1/audit/checkpoint")).content
        with pytest.raises(BadSignature):  # the newest checkpoint has no cosignature yet
            transparency.verify_checkpoint(latest, log_key, policy=one_of_two)
        r = await world.http.get("/v1/audit/checkpoint?cosigned=2")
        problem(r, "not-found", 404)

        # Refusals: unknown key, bad signature, repeat, wrong role, unknown size, malformed.
        cases = [
            (auditor, cp.size, cosign("w3"), "unknown-witness", 403),
            (
                auditor,
                cp.size,
                cosign("w2", note.Checkpoint(cp.origin, cp.size, bytes(32))),
                "bad-cosignature",
                422,
            ),
            (auditor, cp.size, cosign("w1"), "conflict", 409),
            (analyst, cp.size, cosign("w2"), "not-auditor", 403),
            (auditor, cp.size + 1000, cosign("w2"), "not-found", 404),
            (auditor, cp.size, "— witness.two.example AAAA\n", "bad-cosignature", 422),
            (auditor, cp.size, "not a signature line", "bad-cosignature", 422),
        ]
        for device, size, line, slug, status in cases:
            r = await device.post("/v1/audit/cosignatures", {"size": size, "cosignature": line})
            problem(r, slug, status)
        future = note.cosign_checkpoint(cp, signers["w2"], now + 3600)
        problem(
            await auditor.post("/v1/audit/cosignatures", {"size": cp.size, "cosignature": future}),
            "bad-cosignature",
            422,
        )

        # A second witness brings the quorum to two.
        r = await auditor.post("/v1/audit/cosignatures", {"size": cp.size, "cosignature": cosign("w2")})
        assert r.status_code == 201, r.text
        served = (await world.http.get("/v1/audit/checkpoint?cosigned=2")).content
        assert transparency.verify_checkpoint(served, log_key, policy=two_of_two) == cp

        # The plain /checkpoint carries the cosignatures stored for the latest size (stored
        # here directly: posting one through the API logs `witness.cosigned`, a new size).
        latest_cp = note.open_checkpoint((await world.http.get("/v1/audit/checkpoint")).content, log_key)
        line = cosign("w1", latest_cp)
        async with world.state.db.sessions() as s, s.begin():
            s.add(
                Cosignature(
                    size=latest_cp.size,
                    witness="witness.one.example",
                    line=line,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC),
                )
            )
        served = (await world.http.get("/v1/audit/checkpoint")).content
        assert served.endswith(line.encode())
        assert transparency.verify_checkpoint(served, log_key, policy=one_of_two) == latest_cp
