"""Directory paths: the policy, enrolment, who am I, devices with proofs, channels, recipients.

Thin: parse, call one use case, return.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from liaison.crypto.names import NATION_PATTERN

from ..problems import Problem
from ..usecases import admin, directory, inventory, statements
from . import responses as r
from .deps import CurrentCaller, Signed, State
from .openapi import documented
from .routing import AuthFirstRoute
from .schemas import EnrolChallengeRequest, EnrolRequest, SlugQuery, StatementOnly, label_param, plain

#: Enrolment's problems (both steps).
_ENROL = (
    "enrolment-code",
    "genesis-over",
    "bad-bundle",
    "unsupported-suite",
    "conflict",
    "rate-limited",
    "storage-full",
    "unavailable",
)

router = APIRouter(prefix="/v1", route_class=AuthFirstRoute)


@router.get("/policy", summary="The loaded policy and its SHA-256", **documented(r.PolicyDoc))
async def get_policy(state: State) -> dict[str, Any]:
    return state.policy.to_json()


@router.get(
    "/policy/file",
    summary="The policy file itself, byte for byte (its SHA-256 is what the root signs)",
    response_class=Response,
    responses={
        200: {
            "content": {"application/toml": {"schema": {"type": "string"}}},
            "description": "the loaded policy.toml",
        }
    },
)
async def get_policy_file(state: State) -> Response:
    return Response(state.policy_file, media_type="application/toml")


@router.get(
    "/log-key",
    summary="The log verifier key (pin it only if it matches a digest you trust)",
    **documented(r.LogKey),
)
async def get_log_key(state: State) -> dict[str, Any]:
    return {"log_verifier_key": state.log.verifier_key}


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/enrol/challenge",
    summary="Enrolment, step 1: a challenge sealed to the device's KEM key",
    **documented(r.EnrolChallenge, *_ENROL),
)
async def post_enrol_challenge(body: EnrolChallengeRequest, state: State, request: Request) -> dict[str, Any]:
    state.enrol_limiter.check(_client_address(request), "too many enrolment attempts")
    return await admin.enrol_challenge(state, body.invitation_key, body.bundle)


@router.post(
    "/enrol",
    summary="Enrolment, step 2: enrol a device with a one-time code",
    **documented(r.Enrolled, *_ENROL, "kem-proof", status=201),
)
async def post_enrol(body: EnrolRequest, state: State, request: Request) -> dict[str, Any]:
    address = _client_address(request)
    state.enrol_limiter.check(address, "too many enrolment attempts")
    enrolled = await admin.enrol(state, body.invitation_key, body.bundle, body.proof, body.statement)
    # A completed enrolment costs one token in all (its challenge's); refusals cost one each.
    state.enrol_limiter.refund(address)
    return enrolled


@router.get("/me", summary="The authenticated principal and device", **documented(r.Me))
async def get_me(caller: CurrentCaller) -> dict[str, Any]:
    return {"principal": caller.principal.to_json(), "device": caller.device_id}


@router.get(
    "/me/devices",
    summary="The caller's own devices (revoked ones too), with enrolment proofs",
    **documented(r.MyDevices),
)
async def get_my_devices(caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await inventory.my_devices(state, caller)


@router.get(
    "/directory/devices",
    summary="Devices of a principal the caller may see, with enrolment proofs",
    **documented(r.DeviceList),
)
async def get_directory(
    caller: CurrentCaller,
    state: State,
    principal: SlugQuery | None = None,
    device: Annotated[str | None, Query(pattern=r"^d_[a-z2-7]{26}$")] = None,
) -> dict[str, Any]:
    return await directory.devices(state, caller, principal, device)


@router.get("/channels", summary="Channels the caller belongs to", **documented(r.ChannelList))
async def get_channels(caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.list_channels(state, caller)


@router.get(
    "/channels/{channel_id}/recipients",
    summary="Exactly the device bundles to encrypt to for a label",
    response_class=JSONResponse,
    **documented(
        r.Recipients,
        "malformed-label",
        "duplicate-key",
        "json-too-deep",
        "suite-not-allowed",
        "not-found",
        "not-member",
        "clearance",
        "releasability",
        "compartment",
        "system-level",
        "above-ceiling",
        "storage-full",
    ),
)
async def get_recipients(
    channel_id: str,
    signed: Signed,
    state: State,
    label: Annotated[str, Query(max_length=1024)],
    suite: Annotated[str | None, Query(max_length=32)] = None,
    at: Annotated[
        int | None, Query(ge=1, le=2**62, description="prove at the checkpoint of this size")
    ] = None,
) -> JSONResponse:
    return plain(
        await directory.recipients(state, signed, channel_id, label_param(state.policy, label), suite, at)
    )


@router.get(
    "/directory/records",
    summary="One directory record proven at a checkpoint (protocol 9.9)",
    response_class=JSONResponse,
    **documented(r.Proven, "not-found", "validation"),
)
async def get_record(
    caller: CurrentCaller,
    state: State,
    record: Annotated[str, Query(min_length=4, max_length=200)],
    at: Annotated[
        int | None, Query(ge=1, le=2**62, description="prove at the checkpoint of this size")
    ] = None,
) -> JSONResponse:
    return plain(await directory.record(state, caller, record, at))


@router.get(
    "/directory/range",
    summary="A nation's whole directory range, proven complete (protocol 9.5), for its admins",
    response_class=JSONResponse,
    **documented(r.NationRange, "other-nation", "validation"),
)
async def get_range(
    caller: CurrentCaller,
    state: State,
    nation: Annotated[str, Query(pattern=NATION_PATTERN)],
    at: Annotated[
        int | None, Query(ge=1, le=2**62, description="prove at the checkpoint of this size")
    ] = None,
) -> JSONResponse:
    return plain(await statements.nation_range(state, caller, nation, at))


@router.post(
    "/directory/statements",
    summary="A roots, policy or root-principal statement (protocol 9.3)",
    **documented(r.StatementAccepted, "statement-invalid", "forbidden", "storage-full", status=201),
)
async def post_statement(body: StatementOnly, caller: CurrentCaller, state: State) -> JSONResponse:
    return plain(await statements.post_statement(state, caller, body.statement, body.disclosures), 201)


@router.get(
    "/enrol/invitations/{key}",
    summary="The invitation and anchors an enrolling device embeds and pins (protocol 9.7, 9.8)",
    **documented(r.InvitationDoc, "enrolment-code", "rate-limited"),
)
async def get_invitation(key: str, state: State, request: Request) -> dict[str, Any]:
    state.enrol_limiter.check(_client_address(request), "too many enrolment attempts")
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", key):
        raise Problem("validation", "an invitation key is 43 base64url characters")
    return await statements.invitation_for(state, key)
