"""Directory paths: the policy, enrolment, who am I, devices with proofs, channels, recipients.

Thin: parse, call one use case, return.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..usecases import admin, directory
from .deps import CurrentCaller, Signed, State
from .routing import AuthFirstRoute
from .schemas import EnrolRequest, SlugQuery, label_param, plain

router = APIRouter(prefix="/v1", route_class=AuthFirstRoute)


@router.get("/policy", summary="The loaded policy and its SHA-256")
async def get_policy(state: State) -> dict[str, Any]:
    return state.policy.to_json()


@router.post("/enrol", status_code=201, summary="Enrol a device with a one-time code")
async def post_enrol(body: EnrolRequest, state: State, request: Request) -> dict[str, Any]:
    state.enrol_limiter.check(
        request.client.host if request.client else "unknown", "too many enrolment attempts"
    )
    return await admin.enrol(state, body.code, body.bundle)


@router.get("/me", summary="The authenticated principal and device")
async def get_me(caller: CurrentCaller) -> dict[str, Any]:
    return {"principal": caller.principal.to_json(), "device": caller.device_id}


@router.get("/directory/devices", summary="Devices of a principal the caller may see, with enrolment proofs")
async def get_directory(
    caller: CurrentCaller,
    state: State,
    principal: SlugQuery | None = None,
    device: Annotated[str | None, Query(pattern=r"^d_[a-z2-7]{26}$")] = None,
) -> dict[str, Any]:
    return await directory.devices(state, caller, principal, device)


@router.get("/channels", summary="Channels the caller belongs to")
async def get_channels(caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.list_channels(state, caller)


@router.get(
    "/channels/{channel_id}/recipients",
    summary="Exactly the device bundles to encrypt to for a label",
    response_class=JSONResponse,
)
async def get_recipients(
    channel_id: str,
    signed: Signed,
    state: State,
    label: Annotated[str, Query(max_length=1024)],
    suite: Annotated[str | None, Query(max_length=32)] = None,
) -> JSONResponse:
    return plain(
        await directory.recipients(state, signed, channel_id, label_param(state.policy, label), suite)
    )
