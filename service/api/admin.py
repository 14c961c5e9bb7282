"""Admin paths: principals, enrolment codes, devices, channels. Thin: parse, call, return."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from liaison.crypto.names import NATION_PATTERN, SLUG_PATTERN, Role

from ..problems import Problem
from ..usecases import admin, inventory
from ..usecases.admin import CodeStatus
from ..usecases.inventory import MAX_PAGE, CodeQuery, PrincipalQuery
from . import responses as r
from .deps import CurrentCaller, State
from .openapi import documented
from .routing import AuthFirstRoute
from .schemas import (
    ChannelCreate,
    CodeRequest,
    MembersChange,
    MembersRequest,
    PrincipalCreate,
    PrincipalUpdate,
    SlugQuery,
    StatementOnly,
    label_param,
)

#: An admin acting outside its scope (docs/api.md, section 4.4).
_SCOPE = ("not-admin", "other-nation", "grant-above-own", "forbidden")
#: Names the policy must know.
_NAMES = ("unknown-nation", "unknown-level", "unknown-compartment", "unknown-role")
#: A label given as text or JSON.
_LABEL = ("malformed-label", "duplicate-key", "json-too-deep")

router = APIRouter(prefix="/v1/admin", route_class=AuthFirstRoute)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="the most items in this page")]
#: A code's id: the first 16 hex digits of its stored hash (never the code).
CODE_ID = r"^[0-9a-f]{16}$"


@router.get(
    "/principals",
    summary="List and search principals (admins, scoped to their nation)",
    **documented(r.PrincipalList, "not-admin", "other-nation"),
)
async def get_principals(
    caller: CurrentCaller,
    state: State,
    nation: Annotated[str | None, Query(pattern=NATION_PATTERN)] = None,
    role: Role | None = None,
    status: Literal["active", "suspended"] | None = None,
    kind: Literal["person", "system"] | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="id or name prefix")] = None,
    after: Annotated[str | None, Query(pattern=SLUG_PATTERN, description="`next` of the page before")] = None,
    limit: Limit = inventory.DEFAULT_PAGE,
) -> dict[str, Any]:
    query = PrincipalQuery(nation, role, status, kind, q, after, limit)
    return await inventory.list_principals(state, caller, query)


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
async def post_code(principal_id: str, req: CodeRequest, caller: CurrentCaller, state: State) -> JSONResponse:
    body = await admin.create_enrolment_code(state, caller, principal_id, req.invitation, req.anchors)
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@router.get(
    "/enrolment-codes",
    summary="List enrolment codes (never the codes themselves)",
    **documented(r.CodeList, *_SCOPE),
)
async def get_codes(
    caller: CurrentCaller,
    state: State,
    principal: SlugQuery | None = None,
    status: CodeStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=10**9, description="`next` of the page before")] = 0,
    limit: Limit = inventory.DEFAULT_PAGE,
) -> dict[str, Any]:
    return await inventory.list_codes(state, caller, CodeQuery(principal, status, offset, limit))


@router.delete(
    "/enrolment-codes/{code_id}",
    summary="Cancel an unused enrolment code",
    **documented(r.CodeCancelled, *_SCOPE, "not-found", "conflict", "storage-full"),
)
async def delete_code(code_id: str, caller: CurrentCaller, state: State) -> dict[str, Any]:
    if not re.fullmatch(CODE_ID, code_id):
        raise Problem("validation", "a code id is 16 lower-case hex digits (as listed)")
    return await admin.cancel_enrolment_code(state, caller, code_id)


@router.post(
    "/devices/{device_id}/revoke",
    summary="Revoke a device",
    **documented(r.Revoked, *_SCOPE, "not-found", "storage-full"),
)
async def post_revoke(
    device_id: str, caller: CurrentCaller, state: State, body: StatementOnly | None = None
) -> dict[str, Any]:
    return await admin.revoke_device(state, caller, device_id, body.statement if body else None)


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
        state, caller, body.id, body.name or body.id, label_param(state.policy, body.ceiling), body.statement
    )


@router.put(
    "/channels/{channel_id}/members",
    summary="Set a channel's members",
    **documented(r.ChannelView, *_SCOPE, "not-found", "too-many-members", "storage-full"),
)
async def put_members(
    channel_id: str, body: MembersRequest, caller: CurrentCaller, state: State
) -> dict[str, Any]:
    return await admin.set_members(state, caller, channel_id, body.members(), body.statement)


@router.patch(
    "/channels/{channel_id}/members",
    summary="Add or remove single members",
    **documented(r.ChannelView, *_SCOPE, "not-found", "too-many-members", "storage-full"),
)
async def patch_members(
    channel_id: str, body: MembersChange, caller: CurrentCaller, state: State
) -> dict[str, Any]:
    return await admin.change_members(state, caller, channel_id, body.add, body.remove, body.statement)
