"""Admin paths: principals, enrolment codes, devices, channels. Thin: parse, call, return."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..problems import Problem
from ..usecases import admin
from . import responses as r
from .deps import CurrentCaller, State
from .openapi import documented
from .routing import AuthFirstRoute
from .schemas import (
    ChannelCreate,
    MembersRequest,
    PrincipalCreate,
    PrincipalUpdate,
    SlugQuery,
    label_param,
)

#: An admin acting outside its scope (docs/api.md, section 4.4).
_SCOPE = ("not-admin", "other-nation", "grant-above-own", "forbidden")
#: Names the policy must know.
_NAMES = ("unknown-nation", "unknown-level", "unknown-compartment", "unknown-role")
#: A label given as text or JSON.
_LABEL = ("malformed-label", "duplicate-key", "json-too-deep")

router = APIRouter(prefix="/v1/admin", route_class=AuthFirstRoute)


@router.post(
    "/principals",
    summary="Create a principal",
    **documented(r.PrincipalView, *_SCOPE, *_NAMES, "conflict", "storage-full", status=201),
)
async def post_principal(body: PrincipalCreate, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.create_principal(state, caller, body.model_dump())


@router.patch(
    "/principals/{principal_id}",
    summary="Change a principal",
    **documented(r.PrincipalView, *_SCOPE, *_NAMES, "not-found", "storage-full"),
)
async def patch_principal(
    principal_id: str, body: PrincipalUpdate, caller: CurrentCaller, state: State
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise Problem("validation", "nothing to change")
    return await admin.update_principal(state, caller, principal_id, changes)


@router.post(
    "/principals/{principal_id}/enrolment-codes",
    summary="Issue a one-time enrolment code",
    **documented(r.EnrolmentCode, *_SCOPE, "not-found", "storage-full", status=201),
)
async def post_code(principal_id: str, caller: CurrentCaller, state: State) -> JSONResponse:
    body = await admin.create_enrolment_code(state, caller, principal_id)
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@router.post(
    "/devices/{device_id}/revoke",
    summary="Revoke a device",
    **documented(r.Revoked, *_SCOPE, "not-found", "storage-full"),
)
async def post_revoke(device_id: str, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.revoke_device(state, caller, device_id)


@router.get(
    "/devices",
    summary="Device inventory (admins, scoped to their nation)",
    **documented(r.DeviceList, "not-admin"),
)
async def get_devices(
    caller: CurrentCaller, state: State, principal: SlugQuery | None = None
) -> dict[str, Any]:
    return await admin.list_devices(state, caller, principal)


@router.post(
    "/channels",
    summary="Create a channel",
    **documented(r.ChannelView, *_SCOPE, *_LABEL, "conflict", "storage-full", status=201),
)
async def post_channel(body: ChannelCreate, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.create_channel(
        state, caller, body.id, body.name or body.id, label_param(state.policy, body.ceiling)
    )


@router.put(
    "/channels/{channel_id}/members",
    summary="Set a channel's members",
    **documented(r.ChannelView, *_SCOPE, "not-found", "too-many-members", "storage-full"),
)
async def put_members(
    channel_id: str, body: MembersRequest, caller: CurrentCaller, state: State
) -> dict[str, Any]:
    return await admin.set_members(state, caller, channel_id, body.members())
