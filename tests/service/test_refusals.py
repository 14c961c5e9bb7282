"""Every refusal of SPEC 4 and 5 over HTTP: the right problem type, one audit entry saying why,
and nothing else written (no message, no delivery, no other log entry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from liaison.crypto.content import frame_size
from liaison.crypto.envelope import seal
from liaison.crypto.labels import parse_label
from tests.service.harness import (
    OPS,
    Coalition,
    World,
    assert_problem,
    assert_refused,
    coalition,
)

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"


async def _setup(world: World) -> Coalition:
    return await coalition(world)


async def test_release_outside_rel_to(world: World) -> None:
    c = await _setup(world)
    # The sender's own nation is not in REL TO: it may not write (or release) at that label.
    # (Its client could not even ask for the recipients: the envelope is sealed to keys it
    # knows, as a hostile client would, so that the server's own check is what is tested.)
    env = await c.fra.envelope(OPS, "CONFIDENTIAL//REL TO UKR, USA", recipients=[c.ukr.keys.public])
    await assert_refused(world, lambda: c.fra.submit(env), "releasability")
    # A device of a nation outside REL TO among the recipients: a release outside REL TO.
    bundles = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=[*bundles, c.fra.keys.public])
    entry = await assert_refused(world, lambda: c.usa.submit(env), "ineligible-recipient")
    assert c.fra.id in entry["detail"] and entry["id"] == env["id"]


async def test_compartment_missing(world: World) -> None:
    c = await _setup(world)
    # UKR lacks CYBER (so it may not ask who may read it; it seals to the keys it knows)
    env = await c.ukr.envelope(OPS, "SECRET//CYBER//REL TO UKR, USA", recipients=[c.usa.keys.public])
    await assert_refused(world, lambda: c.ukr.submit(env), "compartment")


async def test_label_above_the_channel_ceiling(world: World) -> None:
    c = await _setup(world)
    await world.channel(
        "lowside", "CONFIDENTIAL//REL TO FRA, UKR, USA", ["usa-analyst", "ukr-analyst", "fra-analyst"]
    )
    for label in (
        SECRET_AIRDEF,  # level above
        "CONFIDENTIAL//AIRDEF//REL TO UKR, USA",  # compartment outside
        "CONFIDENTIAL//REL TO GBR, UKR, USA",
    ):  # nation outside
        # (nobody may ask for the recipients of a label above the ceiling: the keys it knows)
        env = await c.usa.envelope("lowside", label, recipients=[c.usa.keys.public, c.ukr.keys.public])
        await assert_refused(world, lambda env=env: c.usa.submit(env), "above-ceiling")


async def test_sender_writing_above_its_clearance(world: World) -> None:
    c = await _setup(world)
    env = await c.fra.envelope(OPS, "SECRET//REL TO FRA, UKR, USA", recipients=[c.usa.keys.public])
    entry = await assert_refused(world, lambda: c.fra.submit(env), "clearance")
    assert entry["actor"] == c.fra.id


async def test_systems_may_not_handle_levels_that_exclude_them(world: World) -> None:
    c = await _setup(world)
    # The sensor holds SECRET and AIRDEF, but the policy keeps systems out of SECRET.
    bundles = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    env = seal(
        b"x",
        channel=OPS,
        label=parse_label(SECRET_AIRDEF, world.policy),
        sender=c.sensor.keys,
        recipients=bundles,
    )
    await assert_refused(world, lambda: c.sensor.submit(env), "system-level")
    r = await c.usa.get(f"/v1/channels/{OPS}/recipients?label={SECRET_AIRDEF}")
    assert {"principal": "ukr-sensor", "reason": "system-level"} in r.json()["excluded"]
    # ...and a sensor among the recipients of a SECRET message is an ineligible recipient.
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=[*bundles, c.sensor.keys.public])
    await assert_refused(world, lambda: c.usa.submit(env), "ineligible-recipient")


async def test_missing_eligible_recipient(world: World) -> None:
    c = await _setup(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=[c.usa.keys.public])
    entry = await assert_refused(world, lambda: c.usa.submit(env), "missing-recipient")
    assert c.ukr.id in entry["detail"]


async def test_extra_ineligible_recipient(world: World) -> None:
    c = await _setup(world)
    outsider = await world.principal("usa-outsider", "USA", "SECRET", compartments=["AIRDEF"])
    bundles = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=[*bundles, outsider.keys.public])
    await assert_refused(world, lambda: c.usa.submit(env), "ineligible-recipient")
    # `to` naming a principal that is not eligible is refused the same way.
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, to=["ukr-analyst"])
    await assert_refused(
        world, lambda: c.usa.submit(env, to=["ukr-analyst", "fra-analyst"]), "ineligible-recipient"
    )
    # `to` with recipients that are not exactly its devices.
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    await assert_refused(world, lambda: c.usa.submit(env, to=["ukr-analyst"]), "ineligible-recipient")


async def test_replayed_request(world: World) -> None:
    c = await _setup(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    request = c.usa.build("POST", "/v1/messages", {"envelope": env})
    assert (await world.http.send(request)).status_code == 201
    replay = c.usa.build("POST", "/v1/messages", {"envelope": env})
    replay.headers.update({k: request.headers[k] for k in ("signature-input", "signature", "content-digest")})
    await assert_refused(world, lambda: world.http.send(replay), "replayed-request", "access.denied")
    # The same nonce on a new, validly signed request is a replay too.
    nonce = "n" * 22
    assert (await c.usa.get("/v1/inbox", nonce=nonce)).status_code == 200
    await assert_refused(
        world, lambda: c.usa.get("/v1/channels", nonce=nonce), "replayed-request", "access.denied"
    )
    # Nonces are per device: another device may use the same one.
    assert (await c.ukr.get("/v1/inbox", nonce=nonce)).status_code == 200


async def test_seen_nonces_are_forgotten_only_once_stale(world: World) -> None:
    from liaison.service.usecases.auth import purge_nonces

    c = await _setup(world)
    old, fresh = "o" * 22, "f" * 22
    assert (await c.usa.get("/v1/inbox", nonce=old)).status_code == 200
    assert (await c.usa.get("/v1/inbox", nonce=fresh)).status_code == 200
    await world.sql("UPDATE request_nonce SET expires_at = '2000-01-01 00:00:00' WHERE nonce = :n", n=old)
    assert await purge_nonces(world.state) == 1
    left = (await world.sql("SELECT nonce FROM request_nonce WHERE keyid = :k", k=c.usa.id)).all()
    assert fresh in {r[0] for r in left} and old not in {r[0] for r in left}
    await assert_refused(
        world, lambda: c.usa.get("/v1/inbox", nonce=fresh), "replayed-request", "access.denied"
    )


async def test_replayed_envelope_id(world: World) -> None:
    c = await _setup(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    assert (await c.usa.submit(env)).status_code == 201
    entry = await assert_refused(world, lambda: c.usa.submit(env), "duplicate-envelope")
    assert entry["id"] == env["id"]
    # A new envelope reusing the id (new content, new signatures) is refused too.
    again = await c.usa.envelope(OPS, SECRET_AIRDEF, b"other", envelope_id=env["id"])
    await assert_refused(world, lambda: c.usa.submit(again), "duplicate-envelope")


async def test_stale_created(world: World) -> None:
    c = await _setup(world)
    for delta in (timedelta(minutes=-6), timedelta(minutes=6)):
        env = await c.usa.envelope(OPS, SECRET_AIRDEF, created=datetime.now(UTC) + delta)
        await assert_refused(world, lambda env=env: c.usa.submit(env), "stale-envelope")
    # A stale request signature is refused before anything is read (and, unverified, is not
    # logged against the device it names: tests/service/test_forged_requests.py).
    old = datetime.now(UTC) - timedelta(minutes=6)
    await assert_refused(world, lambda: c.usa.get("/v1/inbox", now=old), "stale-request", entry=None)


async def test_bad_signatures(world: World) -> None:
    c = await _setup(world)
    # Request signature: one byte of the signature changed.
    req = c.usa.build("GET", "/v1/inbox")
    sig = req.headers["signature"]
    i = sig.index(":") + 5
    req.headers["signature"] = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
    await assert_refused(world, lambda: world.http.send(req), "bad-request-signature", entry=None)
    # Request signed by another device's key under this device's id.
    req = c.ukr.build("GET", "/v1/inbox")
    req.headers["signature-input"] = req.headers["signature-input"].replace(c.ukr.id, c.usa.id)
    await assert_refused(world, lambda: world.http.send(req), "bad-request-signature", entry=None)
    # The body changed after signing: Content-Digest no longer matches.
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    req = c.usa.build("POST", "/v1/messages", {"envelope": env})
    tampered = c.usa.world.http.build_request(
        "POST", req.url, headers=req.headers, content=req.content + b" "
    )
    await assert_refused(world, lambda: world.http.send(tampered), "content-digest", entry=None)

    # Envelope signatures: the ciphertext, the label, or only the ML-DSA signature changed.
    def flip_ciphertext(env: dict[str, Any]) -> None:
        # A character of the sealed chunks (the first 75 carry the salt and the commitment,
        # which the header repeats: changing those is malformed before any signature).
        ct = env["ciphertext"]
        env["ciphertext"] = ct[:100] + ("A" if ct[100] != "A" else "B") + ct[101:]

    def relabel(env: dict[str, Any]) -> None:
        env["label"] = parse_label("SECRET//AIRDEF//REL TO USA", world.policy).to_json()

    def swap_mldsa(env: dict[str, Any]) -> None:
        other = seal(
            b"x",
            channel=OPS,
            label=parse_label(SECRET_AIRDEF, world.policy),
            sender=c.usa.keys,
            recipients=[c.usa.keys.public],
        )
        env["signatures"]["mldsa65"] = other["signatures"]["mldsa65"]

    for mutate in (flip_ciphertext, relabel, swap_mldsa):
        env = await c.usa.envelope(OPS, SECRET_AIRDEF)
        mutate(env)
        await assert_refused(world, lambda env=env: c.usa.submit(env), "bad-envelope-signature")


async def test_envelope_of_another_device(world: World) -> None:
    c = await _setup(world)
    env = await c.ukr.envelope(OPS, SECRET_AIRDEF)  # validly signed, but by UKR's device
    await assert_refused(world, lambda: c.usa.submit(env), "sender-mismatch")


async def test_not_a_member_of_the_channel(world: World) -> None:
    await _setup(world)
    outsider = await world.principal("usa-outsider", "USA", "SECRET", compartments=["AIRDEF"])
    r = await outsider.get(f"/v1/channels/{OPS}/recipients?label={SECRET_AIRDEF}")
    assert_problem(r, "not-member")
    env = seal(
        b"x",
        channel=OPS,
        label=parse_label(SECRET_AIRDEF, world.policy),
        sender=outsider.keys,
        recipients=[outsider.keys.public],
    )
    await assert_refused(world, lambda: outsider.submit(env), "not-member")


async def test_revoked_device(world: World) -> None:
    c = await _setup(world)
    usa2 = await world.enrol("usa-analyst")
    r = await c.usa.send(OPS, SECRET_AIRDEF, b"before")
    assert r.status_code == 201
    old = r.json()["id"]
    stale_bundles = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    assert usa2.id in {b.device_id for b in stale_bundles}
    r = await world.root.post(f"/v1/admin/devices/{usa2.id}/revoke")
    assert r.status_code == 200 and r.json()["receipt"]["log_index"] == r.json()["log_index"]
    assert (await world.entries("device.revoked"))[-1]["device"] == usa2.id
    # From that moment the device can neither send, fetch, list nor be encrypted to.
    env = seal(
        b"x",
        channel=OPS,
        label=parse_label(SECRET_AIRDEF, world.policy),
        sender=usa2.keys,
        recipients=stale_bundles,
    )
    await assert_refused(world, lambda: usa2.submit(env), "device-revoked", "access.denied")
    await assert_refused(world, lambda: usa2.get(f"/v1/messages/{old}"), "device-revoked", "access.denied")
    await assert_refused(world, lambda: usa2.get("/v1/inbox"), "device-revoked", "access.denied")
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=stale_bundles)
    await assert_refused(world, lambda: c.usa.submit(env), "ineligible-recipient")
    fresh = await c.usa.recipients(OPS, parse_label(SECRET_AIRDEF, world.policy))
    assert {b.device_id for b in fresh} == {c.usa.id, c.ukr.id}
    # The principal's other device is unaffected.
    assert (await c.usa.get(f"/v1/messages/{old}")).status_code == 200


async def test_suspended_principal(world: World) -> None:
    c = await _setup(world)
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"status": "suspended"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    assert c.ukr.id not in {d["device"] for d in env["recipients"]}
    await assert_refused(world, lambda: c.ukr.get("/v1/inbox"), "principal-suspended", "access.denied")
    r = await c.usa.get(f"/v1/channels/{OPS}/recipients?label={SECRET_AIRDEF}")
    assert {"principal": "ukr-analyst", "reason": "principal-suspended"} in r.json()["excluded"]
    # The suspended principal's device is no longer an eligible recipient.
    with_ukr = await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=[c.usa.keys.public, c.ukr.keys.public])
    await assert_refused(world, lambda: c.usa.submit(with_ukr), "ineligible-recipient")
    assert (await c.usa.submit(env)).status_code == 201
    # Reinstated, it is back.
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"status": "active"})
    assert r.status_code == 200
    assert (await c.ukr.get("/v1/inbox")).status_code == 200


async def test_unknown_fields(world: World) -> None:
    c = await _setup(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    # In the envelope: a malformed envelope, logged as a rejection.
    extra = {**env, "note": "x"}
    entry = await assert_refused(world, lambda: c.usa.submit(extra), "malformed-envelope")
    assert entry["id"] == env["id"]
    # In the request around it: refused by the strict request model, before any use case.
    await assert_refused(
        world, lambda: c.usa.post("/v1/messages", {"envelope": env, "cc": []}), "unknown-field", entry=None
    )
    assert (await c.usa.submit(env)).status_code == 201  # nothing of the above was kept


async def test_wrong_suite_or_missing_signature_for_the_level(world: World) -> None:
    c = await _setup(world)
    # Partner gateways with classical X25519 keys and no ML-DSA key.
    gw_usa = await world.principal("usa-gateway", "USA", "CONFIDENTIAL", kind="system", suite="X25519")
    gw_ukr = await world.principal("ukr-gateway", "UKR", "CONFIDENTIAL", kind="system", suite="X25519")
    await world.channel("gateways", "CONFIDENTIAL//REL TO UKR, USA", ["usa-gateway", "ukr-gateway"])
    r = await gw_usa.send("gateways", "RESTRICTED//REL TO UKR, USA", suite="X25519")
    assert r.status_code == 201, r.text  # X25519 is allowed up to RESTRICTED
    # The recipients list refuses a suite the level does not allow ...
    r = await gw_usa.get("/v1/channels/gateways/recipients?label=CONFIDENTIAL//REL TO UKR, USA&suite=X25519")
    assert r.status_code == 422 and r.json()["type"].endswith("suite-not-allowed")
    # ... and an envelope sealed with it anyway is refused and logged.
    env = await gw_usa.envelope(
        "gateways",
        "CONFIDENTIAL//REL TO UKR, USA",
        suite="X25519",
        recipients=[gw_usa.keys.public, gw_ukr.keys.public],
    )
    await assert_refused(world, lambda: gw_usa.submit(env), "suite-not-allowed")
    # SECRET needs ML-DSA-65 as well as Ed25519: a device without it cannot send there.
    legacy = await world.principal("usa-legacy", "USA", "SECRET", compartments=["AIRDEF"], suite="X25519")
    r = await world.root.request(
        "PUT",
        f"/v1/admin/channels/{OPS}/members",
        {"principals": ["usa-analyst", "ukr-analyst", "fra-analyst", "ukr-sensor", "usa-legacy"]},
    )
    assert r.status_code == 200
    env = await legacy.envelope(OPS, SECRET_AIRDEF, to=["ukr-analyst"])
    await assert_refused(world, lambda: legacy.submit(env, to=["ukr-analyst"]), "signature-required")
    assert c.usa.id  # the coalition is untouched


TEXT = "text/plain; charset=utf-8"


async def test_message_larger_than_its_level_allows(world: World) -> None:
    c = await _setup(world)
    limit = world.policy.rule("SECRET").max_bytes
    # max_bytes limits the padded size (protocol 5.2): find the largest content that fits.
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if frame_size(b"x" * mid, TEXT) <= limit else (lo, mid - 1)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, b"x" * (lo + 1))
    entry = await assert_refused(world, lambda: c.usa.submit(env), "too-large")
    assert str(limit) in entry["detail"] and str(frame_size(b"x" * (lo + 1), TEXT)) in entry["detail"]
    env = await c.usa.envelope(OPS, SECRET_AIRDEF, b"x" * lo)
    assert (await c.usa.submit(env)).status_code == 201
