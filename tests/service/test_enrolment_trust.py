"""Enrolment against the real service: possession of the KEM key is proven before a device
exists (finding 17), and the operator's root codes belong to genesis (finding 21)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto.encoding import b64url_decode, b64url_encode, jcs
from liaison.crypto.errors import DecryptionFailed
from liaison.crypto.keys import (
    BUNDLE_DOMAIN,
    KEM_PROOF_DOMAIN,
    DeviceKeys,
    device_id_of,
    generate_device,
    kem_proof_message,
    sign_with,
)
from liaison.crypto.names import MLKEM768_X25519, X25519
from liaison.service.app import create_app
from liaison.service.config import load_settings
from liaison.service.ops.bootstrap import init_database, write_files
from liaison.service.problems import Problem
from liaison.service.state import AppState
from liaison.service.usecases.admin import issue_root_code
from liaison.service.usecases.ratelimit import RateLimiter
from tests.service.directory_kit import device_enrolment
from tests.service.harness import (
    BASE,
    World,
    assert_problem,
    assert_refused,
    enrol_device,
    invitation_key,
    postgres_database,
)


def _principal(pid: str, nation: str = "USA", roles: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": pid,
        "display_name": pid,
        "nation": nation,
        "clearance": "SECRET",
        "roles": roles or ["analyst"],
    }


async def _code(world: World, pid: str, admin: Any = None) -> str:
    r = await (admin or world.root).post(f"/v1/admin/principals/{pid}/enrolment-codes")
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


async def _new_principal(world: World, pid: str) -> str:
    assert (await world.root.post("/v1/admin/principals", _principal(pid))).status_code == 201
    return await _code(world, pid)


def _challenge(world: World, code: str, bundle: dict[str, Any]) -> Any:
    return world.http.post(
        "/v1/enrol/challenge", json={"invitation_key": invitation_key(code), "bundle": bundle}
    )


async def _enrol(
    world: World, code: str, bundle: dict[str, Any], proof: Any, keys: DeviceKeys | None = None
) -> Any:
    """Step 2, with the device's own statement when its keys are given (protocol 9.8)."""
    body = {"invitation_key": invitation_key(code), "bundle": bundle, "proof": proof}
    if keys is not None:
        doc = (await world.http.get(f"/v1/enrol/invitations/{invitation_key(code)}")).json()
        body["statement"] = device_enrolment(doc, code, keys, world.state.log.origin)
    return await world.http.post("/v1/enrol", json=body)


# --- finding 17: proof of possession of the KEM private key ----------------------------------


@pytest.mark.parametrize("suite", [X25519, MLKEM768_X25519])
async def test_a_bundle_with_another_devices_kem_key_is_never_enrolled(world: World, suite: str) -> None:
    victim = await world.principal("usa-victim", "USA", "SECRET", suite=suite)
    code = await _new_principal(world, "usa-mallory")
    # Mallory signs a bundle with her own signing keys and the victim's KEM public key.
    mallory = generate_device("usa-mallory", suite=suite, mldsa65=suite != X25519)
    bundle = mallory.public.to_json()
    bundle["kem"]["pk"] = b64url_encode(victim.keys.public.kem_pk)
    forged = {"bundle": bundle, "signatures": sign_with(mallory, BUNDLE_DOMAIN, jcs(bundle))}
    forged_id = device_id_of(bundle)

    # Without a proof nothing is enrolled (before the fix: 201, and the victim's key holder
    # could open every message sent to Mallory's principal).
    await assert_refused(
        world,
        lambda: world.http.post("/v1/enrol", json={"invitation_key": invitation_key(code), "bundle": forged}),
        "kem-proof",
        entry=None,
    )
    # The challenge is sealed to the victim's key: Mallory's own KEM key does not open it, and
    # the victim's device would not either (it only opens challenges for its own device id).
    r = await _challenge(world, code, forged)
    assert r.status_code == 200 and r.json()["device"] == forged_id, r.text
    sealed = b64url_decode(r.json()["challenge"])
    with pytest.raises(DecryptionFailed):
        mallory.answer_kem_challenge(sealed)
    with pytest.raises(DecryptionFailed):
        victim.keys.answer_kem_challenge(sealed)
    # A guessed answer, properly signed by Mallory, is refused; nothing was enrolled or logged.
    guess = secrets.token_bytes(32)
    proof = {
        "challenge": b64url_encode(guess),
        "signatures": sign_with(mallory, KEM_PROOF_DOMAIN, kem_proof_message(forged_id, guess)),
    }
    await assert_refused(world, lambda: _enrol(world, code, forged, proof), "kem-proof", entry=None)
    assert (await world.root.get("/v1/admin/devices?principal=usa-mallory")).json()["devices"] == []
    # The code is still good for a device that holds its keys.
    honest = await world.enrol_with_code("usa-mallory", code, mallory)
    assert honest.id != forged_id


async def test_the_challenge_is_bound_to_its_device_and_answered_once(world: World) -> None:
    code = await _new_principal(world, "usa-a1")
    a, b = generate_device("usa-a1"), generate_device("usa-a1", suite=X25519, mldsa65=False)
    bundle_a, bundle_b = a.signed_bundle(), b.signed_bundle()

    async def answer(keys: DeviceKeys, bundle: dict[str, Any]) -> dict[str, Any]:
        r = await _challenge(world, code, bundle)
        assert r.status_code == 200, r.text
        return keys.answer_kem_challenge(b64url_decode(r.json()["challenge"]))

    first = await answer(a, bundle_a)
    # A's answer does not enrol B (its signatures are A's, and B's challenge is not A's).
    await assert_refused(world, lambda: _enrol(world, code, bundle_b, first), "kem-proof", entry=None)
    # Another challenge for the same code replaces the first: its answer is stale now.
    second = await answer(b, bundle_b)
    await assert_refused(world, lambda: _enrol(world, code, bundle_a, first), "kem-proof", entry=None)
    # An expired challenge is refused too.
    await world.sql(
        "UPDATE enrolment_code SET challenge_expires_at = created_at WHERE challenge_hash IS NOT NULL"
    )
    await assert_refused(world, lambda: _enrol(world, code, bundle_b, second), "kem-proof", entry=None)
    # A live one is accepted, once.
    third = await answer(b, bundle_b)
    r = await _enrol(world, code, bundle_b, third, b)
    assert r.status_code == 201, r.text
    entry = (await world.entries("device.enrolled"))[-1]
    assert entry["device"] == b.device_id and entry["issued_by"] == world.root.id
    await assert_refused(world, lambda: _enrol(world, code, bundle_b, third), "enrolment-code", entry=None)


async def test_malformed_proofs_are_refused_cleanly(world: World) -> None:
    code = await _new_principal(world, "usa-a1")
    keys = generate_device("usa-a1")
    bundle = keys.signed_bundle()
    r = await _challenge(world, code, bundle)
    good = keys.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
    ed_only = {"challenge": good["challenge"], "signatures": {"ed25519": good["signatures"]["ed25519"]}}
    cases: list[tuple[Any, str]] = [
        ([], "validation"),
        ("x" * 100, "validation"),
        ({}, "kem-proof"),
        ({**good, "extra": 1}, "kem-proof"),
        ({"challenge": 7, "signatures": good["signatures"]}, "kem-proof"),
        ({"challenge": "!" * 43, "signatures": good["signatures"]}, "kem-proof"),
        ({"challenge": "A" * 5000, "signatures": good["signatures"]}, "kem-proof"),
        ({"challenge": b64url_encode(b"\x00" * 31), "signatures": good["signatures"]}, "kem-proof"),
        ({"challenge": good["challenge"], "signatures": "sig"}, "kem-proof"),
        (ed_only, "kem-proof"),  # the device's ML-DSA-65 signature cannot be stripped
    ]
    for proof, slug in cases:
        await assert_refused(world, lambda p=proof: _enrol(world, code, bundle, p), slug, entry=None)
    assert (await _enrol(world, code, bundle, good, keys)).status_code == 201


# --- finding 21: root codes at genesis only --------------------------------------------------


async def test_the_operator_mints_no_root_code_after_genesis(world: World) -> None:
    with pytest.raises(Problem) as refused:
        await issue_root_code(world.state)
    assert refused.value.slug == "genesis-over"
    # A revoked root device counts: with every root device revoked it is still refused.
    spare = await world.enrol("root")
    for device in (spare, world.root):
        r = await device.post(f"/v1/admin/devices/{device.id}/revoke")
        assert r.status_code == 200, r.text
    with pytest.raises(Problem) as refused:
        await issue_root_code(world.state)
    assert refused.value.slug == "genesis-over"
    assert (await world.sql("SELECT count(*) FROM enrolment_code WHERE issued_by = 'system'")).scalar() == 1


@asynccontextmanager
async def _genesis(backend: str, tmp: Path) -> AsyncIterator[tuple[World, list[str]]]:
    """A service after `init` and one `root-code`: two operator root codes, no root device."""
    url_cm = postgres_database() if backend == "postgres" else None
    url = await url_cm.__aenter__() if url_cm else None
    try:
        data = tmp / f"data-{uuid.uuid4().hex[:6]}"
        write_files(data)
        codes = [await init_database(data, url)]
        cfg = load_settings(data, public_url=BASE, **({"database_url": url} if url else {}))
        app = create_app(cfg)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
        ):
            state: AppState = app.state.liaison
            codes.append(await issue_root_code(state))  # what `liaison-server root-code` does
            yield World(state, http, state.policy, app), codes
    finally:
        if url_cm:
            await url_cm.__aexit__(None, None, None)


async def test_operator_root_codes_die_at_genesis(backend: str, tmp_path: Path) -> None:
    async with _genesis(backend, tmp_path) as (world, (first, second)):
        world.root = await world.enrol_with_code("root", first)
        entry = (await world.entries("device.enrolled"))[-1]
        assert entry["issued_by"] == "system"
        # The operator's other code, issued during genesis, died with it.
        body = await assert_refused(
            world,
            lambda: enrol_device(world.http, second, generate_device("root")),
            "genesis-over",
            entry=None,
        )
        assert "root device" in body["detail"]
        # A root code issued by the root device enrols a second root device.
        spare = await world.enrol("root")
        entry = (await world.entries("device.enrolled"))[-1]
        assert entry["device"] == spare.id and entry["issued_by"] == world.root.id


async def test_only_a_root_device_issues_root_codes(world: World) -> None:
    usa_admin = await world.principal("usa-admin", "USA", "SECRET", roles=["admin"])
    analyst = await world.principal("usa-a1", "USA", "SECRET")
    await assert_refused(
        world,
        lambda: usa_admin.post("/v1/admin/principals/root/enrolment-codes"),
        "grant-above-own",
        "access.denied",
    )
    await assert_refused(
        world, lambda: analyst.post("/v1/admin/principals/root/enrolment-codes"), "not-admin", "access.denied"
    )
    assert (await world.enrol("root")).principal == "root"


async def test_a_code_dies_with_the_device_that_issued_it(world: World) -> None:
    usa_admin = await world.principal("usa-admin", "USA", "SECRET", roles=["admin"])
    assert (await usa_admin.post("/v1/admin/principals", _principal("usa-a1"))).status_code == 201
    code = await _code(world, "usa-a1", usa_admin)
    # The admin's device is stolen and revoked: the codes it handed out are void.
    assert (await world.root.post(f"/v1/admin/devices/{usa_admin.id}/revoke")).status_code == 200
    body = await assert_refused(
        world, lambda: enrol_device(world.http, code, generate_device("usa-a1")), "enrolment-code", entry=None
    )
    assert "revoked" in body["detail"]
    assert_problem(await enrol_device(world.http, code, generate_device("usa-a1")), "enrolment-code")


FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(data=st.data())
async def test_fuzz_both_enrolment_steps(world: World, data: st.DataObject) -> None:
    """Whatever the bundle and the proof, each step answers a 4xx problem (or succeeds), never a
    server error, and only a device holding its keys is ever enrolled."""
    replace_bundle, proof, tamper = data.draw(st.booleans()), data.draw(json_values), data.draw(st.booleans())
    field, value = data.draw(st.sampled_from(["challenge", "signatures", "x"])), data.draw(json_values)
    # Forty examples of two refused steps each: more than one address's enrolment burst.
    world.state.enrol_limiter = RateLimiter(1000.0, 100_000)
    keys = generate_device("root", suite=X25519, mldsa65=False)
    code = await _code(world, "root")
    bundle: Any = data.draw(json_values) if replace_bundle else keys.signed_bundle()
    r = await _challenge(world, code, bundle)
    assert r.status_code in (200, 403, 409, 422), r.text
    if r.status_code == 200 and tamper:
        good = keys.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
        proof = {**good, field: value}
    r = await _enrol(world, code, bundle, proof)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await world.root.get("/v1/me")).status_code == 200
