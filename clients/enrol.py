"""Enrolment: new device keys, an invitation (or a code and a log key), a proof of possession of
the KEM key, the pinned log key and a verified receipt."""

from __future__ import annotations

import asyncio
import contextlib
import os

import httpx

from liaison.crypto.encoding import b64url_decode
from liaison.crypto.errors import CryptoError
from liaison.crypto.keys import generate_device
from liaison.crypto.names import MLKEM768_X25519, SLUG_RE, X25519

from . import _models as m
from ._http import check_response, json_of, new_http, transport_error
from ._trust import EnrolmentPin, LogMemory
from ._verify import open_checkpoint
from .client import AsyncClient
from .errors import (
    InputError,
    MalformedResponse,
    ProfileExists,
    ProofInvalid,
    RateLimited,
    UntrustedCheckpoint,
)
from .keystore import KeyStore, Profile, check_new_passphrase

__all__ = ["enrol"]

_RETRIES = 10


async def _post(http: httpx.AsyncClient, path: str, request: dict[str, object]) -> dict[str, object]:
    """POST an enrolment step, waiting as the server asks when enrolments are rate-limited (the
    code is only spent by an enrolment that is processed)."""
    for attempt in range(_RETRIES):
        r = await http.post(path, json=request)
        try:
            return json_of(check_response(r), f"POST {path}")
        except RateLimited as e:
            if attempt == _RETRIES - 1:
                raise
            await asyncio.sleep(min(e.retry_after or 1.0, 5.0))
    raise AssertionError("unreachable")


def _absolute(path: str) -> str:
    # The profile outlives the working directory it was made in.
    return os.path.abspath(os.path.expanduser(path))


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

    `code` is the invitation an admin's client printed (`LIAISON1-...`: the one-time code and
    the digest of the log key the admin has pinned), or a plain code together with `log_key`.
    The server's log key is pinned only if it is `log_key`, or if its digest is the
    invitation's; a plain code without `log_key` is refused before anything is sent (no trust
    on first use). The key is checked before the code is used; then the device proves it holds
    its KEM key (the server's challenge, answered and signed), and before returning, its own
    directory record is checked: its bundle must be the one just made and its
    `device.enrolled` entry proven in a checkpoint signed by the pinned key.
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
    async with new_http(server, ca, transport=transport) as http:
        try:
            # Check the log key before the code goes anywhere near a server that is not ours.
            served = json_of(check_response(await http.get("/v1/log-key")), "GET /v1/log-key")
            if not isinstance(served.get("log_verifier_key"), str):
                raise MalformedResponse("the server's log key answer carries no key")
            pinned = pin.check(str(served["log_verifier_key"]))
            answer = await http.get("/v1/audit/checkpoint")
            open_checkpoint(check_response(answer).text, pinned)
            request: dict[str, object] = {"code": pin.code, "bundle": signed_bundle}
            challenge = await _post(http, "/v1/enrol/challenge", request)
            sealed = challenge.get("challenge")
            if challenge.get("device") != keys.device_id or not isinstance(sealed, str):
                raise MalformedResponse("the enrolment challenge is for another device")
            try:
                proof = keys.answer_kem_challenge(b64url_decode(sealed, field="challenge"))
            except CryptoError as e:
                raise MalformedResponse(f"the enrolment challenge does not open: {e}") from None
            body = await _post(http, "/v1/enrol", {**request, "proof": proof})
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

    state = store.state_dir(profile) / "log.json"
    with contextlib.suppress(FileNotFoundError):
        state.unlink()  # leftovers of a deleted profile of the same name: start afresh
    memory = LogMemory(state)
    memory.pin(pinned.key_string)
    memory.save(receipt["checkpoint"])
    store.save(Profile.for_keys(profile, server.rstrip("/"), keys, ca_cert=ca), keys, passphrase)

    async with AsyncClient(server, keys, memory, ca_cert=ca, profile=profile, transport=transport) as client:
        mine = await client.device(keys.device_id)
    if mine.bundle != keys.public or mine.enrol_index != index:
        raise ProofInvalid(
            f"the log does not show this device's key as enrolled at {index}; "
            f"profile {profile!r} was saved, but do not use it"
        )
    return m.Enrolled(profile, principal, keys.device_id, index, pinned.key_string, server.rstrip("/"))
