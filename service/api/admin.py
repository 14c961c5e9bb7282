"""Admin paths: principals, enrolment codes, devices, channels. Thin: parse, call, return."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..problems import Problem
from ..usecases import admin
from .deps import CurrentCaller, State
from .routing import AuthFirstRoute
from .schemas import (
    ChannelCreate,
    MembersRequest,
    PrincipalCreate,
    PrincipalUpdate,
    SlugQuery,
    label_param,
)

router = APIRouter(prefix="/v1/admin", route_class=AuthFirstRoute)


@router.post("/principals", status_code=201, summary="Create a principal")
async def post_principal(body: PrincipalCreate, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.create_principal(state, caller, body.model_dump())


@router.patch("/principals/{principal_id}", summary="Change a principal")
async def patch_principal(
    principal_id: str, body: PrincipalUpdate, caller: CurrentCaller, state: State
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise Problem("validation", "nothing to change")
    return await admin.update_principal(state, caller, principal_id, changes)


@router.post(
    "/principals/{principal_id}/enrolment-codes", status_code=201, summary="Issue a one-time enrolment code"
)
async def post_code(principal_id: str, caller: CurrentCaller, state: State) -> JSONResponse:
    body = await admin.create_enrolment_code(state, caller, principal_id)
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@router.post("/devices/{device_id}/revoke", summary="Revoke a device")
async def post_revoke(device_id: str, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.revoke_device(state, caller, device_id)


@router.get("/devices", summary="Device inventory (admins, scoped to their nation)")
async def get_devices(
    caller: CurrentCaller, state: State, principal: SlugQuery | None = None
) -> dict[str, Any]:
    return await admin.list_devices(state, caller, principal)


@router.post("/channels", status_code=201, summary="Create a channel")
async def post_channel(body: ChannelCreate, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.create_channel(
        state, caller, body.id, body.name or body.id, label_param(state.policy, body.ceiling)
    )


@router.put("/channels/{channel_id}/members", summary="Set a channel's members")
async def put_members(
    channel_id: str, body: MembersRequest, caller: CurrentCaller, state: State
) -> dict[str, Any]:
    return await admin.set_members(state, caller, channel_id, body.members())
