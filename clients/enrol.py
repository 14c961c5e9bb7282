"""Enrolment: new device keys, an invitation (or a code and a log key), a proof of possession of
the KEM key, the device's own statement signed with the code's invitation key (the code never
leaves the device), the pinned log key and anchors, and a verified receipt."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import httpx

from liaison.crypto.anchors import Anchors
from liaison.crypto.encoding import b64url_decode, b64url_encode
from liaison.crypto.errors import CryptoError
from liaison.crypto.keys import generate_device
from liaison.crypto.names import MLKEM768_X25519, SLUG_RE, X25519
from liaison.crypto.statements import SignedStatement, invitation_public

from . import _directory as d
from . import _models as m
from ._http import check_response, json_of, new_http, transport_error
from ._trust import EnrolmentPin, LogMemory, WitnessPolicy, WitnessPolicyFile
from ._verify import open_checkpoint
from .client import AsyncClient
from .errors import (
    DirectoryInvalid,
    InputError,
    MalformedResponse,
    ProfileExists,
    ProofInvalid,
    RateLimited,
    UntrustedCheckpoint,
    VerificationFailed,
)
from .keystore import KeyStore, Profile, check_new_passphrase

__all__ = ["enrol"]

_RETRIES = 10
#: The principal the operator's genesis code is for (protocol 3.3).
_ROOT = "root"


async def _send(
    http: httpx.AsyncClient, method: str, path: str, request: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One enrolment step, waiting as the server asks when enrolments are rate-limited (the
    code is only spent by an enrolment that is processed)."""
    for attempt in range(_RETRIES):
        r = await http.request(method, path, json=request)
        try:
            return json_of(check_response(r), f"{method} {path}")
        except RateLimited as e:
            if attempt == _RETRIES - 1:
                raise
            await asyncio.sleep(min(e.retry_after or 1.0, 5.0))
    raise AssertionError("unreachable")


def _absolute(path: str) -> str:
    # The profile outlives the working directory it was made in.
    return os.path.abspath(os.path.expanduser(path))


def _invitation(
    doc: dict[str, Any], pin: EnrolmentPin, principal: str, key: str, origin: str
) -> SignedStatement | None:
    """The admin's signed invitation the server holds for this code, checked against what the
    device knows: for this principal, this code's key, this log, and (LIAISON2) the anchors
    the invitation names. None for the operator's genesis code (it has none)."""
    raw = doc.get("invitation")
    if raw is None:
        if pin.names_anchors:
            raise DirectoryInvalid("invitation", "the server shows no invitation for this LIAISON2 code")
        return None
    try:
        signed = SignedStatement.from_json(raw)
    except CryptoError as e:
        raise DirectoryInvalid("invitation", f"the server's invitation is malformed: {e}") from None
    st = signed.statement
    public = st.public
    if st.type != "invitation" or public.get("principal") != principal or public.get("key") != key:
        raise DirectoryInvalid("invitation", "the server's invitation is not this code's, for this principal")
    if st.origin != origin:
        raise DirectoryInvalid("invitation", f"the invitation is for log {st.origin!r}, not {origin!r}")
    named = pin.invitation.anchors_digest if pin.invitation is not None else None
    if named is not None and public.get("anchors") != b64url_encode(named):
        raise DirectoryInvalid(
            "invitation", "the invitation names other anchors than the code you were given"
        )
    return signed


async def enrol(
    server: str,
    code: str,
    *,
    principal: str,
    passphrase: str,
    profile: str,
    store: KeyStore | None = None,
    ca_cert: str | None = None,
    log_key: str | None = None,
    suite: str = MLKEM768_X25519,
    transport: httpx.AsyncBaseTransport | None = None,
) -> m.Enrolled:
    """Enrol a new device of `principal` and save it as `profile`.

    `code` is the invitation an admin's client printed: `LIAISON2-...` (the one-time code and
    the digest of the anchors the admin's client verified: log key, roots, policy version,
    witness policy), `LIAISON1-...` (the code and the log key's digest: the operator's genesis
    code), or a plain code together with `log_key`. Nothing is posted before the server's log
    key (and, for LIAISON2, the anchors it serves, by their digest) match: no trust on first
    use. The code itself never goes to the server: the device derives the invitation key from
    it (protocol 9.8), proves it holds its KEM key (the server's challenge, answered and
    signed), and posts its own statement signed by its keys and by the invitation key. The
    genesis root device then signs the roots, the policy and the root principal. Before
    returning, its own records are checked: its `device.enrolled` entry proven in the log and
    its directory records proven current (`check_own_records`).
    """
    store = store or KeyStore.default()
    if not SLUG_RE.fullmatch(profile) or not SLUG_RE.fullmatch(principal):
        raise InputError("profile and principal must be 1-64 of a-z 0-9 . _ -")
    if store.exists(profile):
        raise ProfileExists(f"profile {profile!r} already exists; choose another with --profile")
    # Before the one-time code is spent: a refusal at `store.save` would lose the enrolment.
    check_new_passphrase(passphrase, profile=profile, principal=principal, server=server)
    pin = EnrolmentPin.of(code, log_key)
    if not server.startswith(("https://", "http://")):
        raise InputError("--server must be an https:// URL")
    ca = _absolute(ca_cert) if ca_cert else None
    keys = generate_device(principal, suite=suite, mldsa65=suite != X25519)
    signed_bundle = keys.signed_bundle()
    key = b64url_encode(invitation_public(pin.code))
    async with new_http(server, ca, transport=transport) as http:
        try:
            # Check the log key (and the anchors) before anything goes to a server not ours.
            served = await _send(http, "GET", "/v1/log-key")
            if not isinstance(served.get("log_verifier_key"), str):
                raise MalformedResponse("the server's log key answer carries no key")
            doc = await _send(http, "GET", f"/v1/enrol/invitations/{key}")
            pinned, anchors = pin.check(str(served["log_verifier_key"]), doc.get("anchors"))
            answer = await http.get("/v1/audit/checkpoint")
            origin = open_checkpoint(check_response(answer).text, pinned).origin
            if doc.get("principal") != principal:
                raise InputError(
                    f"this invitation is for principal {doc.get('principal')}, not {principal} (--principal)"
                )
            nation = doc.get("nation")
            if not isinstance(nation, str):
                raise MalformedResponse("the server's invitation answer names no nation")
            invitation = _invitation(doc, pin, principal, key, origin)
            if invitation is not None and invitation.statement.nation != nation:
                raise DirectoryInvalid(
                    "invitation", f"the invitation is for {invitation.statement.nation}, not {nation}"
                )
            request: dict[str, Any] = {"invitation_key": key, "bundle": signed_bundle}
            challenge = await _send(http, "POST", "/v1/enrol/challenge", request)
            sealed = challenge.get("challenge")
            if challenge.get("device") != keys.device_id or not isinstance(sealed, str):
                raise MalformedResponse("the enrolment challenge is for another device")
            try:
                proof = keys.answer_kem_challenge(b64url_decode(sealed, field="challenge"))
                statement = d.device_enrolment(keys, origin, nation, invitation, pin.code)
            except CryptoError as e:
                raise MalformedResponse(f"the enrolment challenge does not open: {e}") from None
            body = await _send(
                http, "POST", "/v1/enrol", {**request, "proof": proof, "statement": statement.to_json()}
            )
        except httpx.TransportError as e:
            raise transport_error(server, e) from None
    if (body.get("device"), body.get("principal")) != (keys.device_id, principal):
        raise MalformedResponse("the enrolment answer is for another device")
    served_key = body.get("log_verifier_key")
    if not isinstance(served_key, str):
        raise MalformedResponse("the enrolment answer carries no log verifier key")
    if served_key != pinned.key_string:
        raise UntrustedCheckpoint("the enrolment answer names another log key than the server did")
    receipt = body.get("receipt")
    if not isinstance(receipt, dict) or not isinstance(receipt.get("checkpoint"), str):
        raise MalformedResponse("the enrolment answer carries no receipt")
    cp = open_checkpoint(receipt["checkpoint"], pinned)
    index = body.get("log_index")
    if type(index) is not int or index >= cp.size:
        raise ProofInvalid("the enrolment receipt's checkpoint does not include the enrolment")

    memory = _fresh_memory(store, profile)
    memory.pin(pinned.key_string)
    memory.save(receipt["checkpoint"])
    if anchors is not None:
        _pin_anchors(memory, anchors)
    store.save(Profile.for_keys(profile, server.rstrip("/"), keys, ca_cert=ca), keys, passphrase)

    async with AsyncClient(server, keys, memory, ca_cert=ca, profile=profile, transport=transport) as client:
        if invitation is None and anchors is None and principal == _ROOT:
            await _genesis(client)
        mine = await client.device(keys.device_id)
        if mine.bundle != keys.public or mine.enrol_index != index:
            raise ProofInvalid(
                f"the log does not show this device's key as enrolled at {index}; "
                f"profile {profile!r} was saved, but do not use it"
            )
        try:
            # The principal's devices enrolled before this one are its baseline, not alarms.
            await client.check_own_records()
            client.alarms.clear()
        except VerificationFailed as e:
            e.args = (f"{e}; profile {profile!r} was saved, but do not use it",)
            e.detail = str(e.args[0])
            raise
    return m.Enrolled(profile, principal, keys.device_id, index, pinned.key_string, server.rstrip("/"))


def _fresh_memory(store: KeyStore, profile: str) -> LogMemory:
    """The profile's state, without leftovers of a deleted profile of the same name."""
    state = store.state_dir(profile)
    for name in ("log.json", "directory.json", "witnesses.json"):
        with contextlib.suppress(FileNotFoundError):
            (state / name).unlink()
    return LogMemory(state / "log.json")


def _pin_anchors(memory: LogMemory, anchors: Anchors) -> None:
    """Pin what the invitation's anchors name: the roots and policy floor (the directory's
    memory), and the admin's witness policy (the profile's, which the user may change)."""
    d.DirectoryMemory.beside(memory.path, memory.log_key.key_string).anchor(anchors)
    if anchors.witness_k:
        policy = WitnessPolicy.from_keys(
            list(anchors.witness_keys), anchors.witness_k, max_age=anchors.max_age
        )
        WitnessPolicyFile.beside(memory).save(policy, memory.log_key)


async def _genesis(client: AsyncClient) -> None:
    """The genesis root device's statements (protocol 9.7): `roots` seq 1 listing itself (the
    anchor every later invitation names), the policy and the root principal, each posted as a
    signed request and its receipt's checkpoint trusted like any other."""
    me = await client.whoami()
    state = d.PrincipalState(
        me.nation, me.kind, me.clearance, me.compartments, me.roles, me.status == "active"
    )
    policy = await client.policy()
    roots, pol, principal = d.genesis_statements(client.keys, await client._origin(), policy, state)
    for body in ({"statement": roots.to_json()}, {"statement": pol.to_json()}, principal):
        answer = await client._json("POST", "/v1/directory/statements", body=body)
        receipt = answer.get("receipt")
        if not isinstance(receipt, dict):
            raise MalformedResponse(f"the genesis statement {answer.get('record')} has no receipt")
        await client.trusted_checkpoint(receipt.get("checkpoint"))
    client.directory_memory.advance(roots.statement, policy.version)
