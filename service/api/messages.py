"""The v1 paths of SPEC 5 (audit paths live in `audit_routes`). Thin: parse, call, return."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import select

from liaison.crypto.errors import LabelSyntaxError
from liaison.crypto.labels import Label, parse_label

from ..problems import Problem
from ..state import AppState
from ..storage.models import Channel, ChannelMember, Device
from ..usecases import admin, messaging
from ..usecases.auth import CurrentCaller, State
from ..usecases.directory import default_suite, device_records, eligibility
from .schemas import (
    ChannelCreate,
    EnrolRequest,
    MembersRequest,
    PrincipalCreate,
    PrincipalUpdate,
    SubmitRequest,
)

router = APIRouter(prefix="/v1")
Slug = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


def _plain(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON answer built from plain JSON values. The busy and large answers (submit, fetch,
    inbox, recipients) use it: FastAPI's generic serialisation of a returned value (validation
    against the annotation, then jsonable_encoder over every nested field) cost more than the
    rest of a submit's framework work together."""
    return JSONResponse(body, status_code=status)


def _label(state: AppState, value: str | dict[str, Any]) -> Label:
    """A label from its text form or its JSON (as an object or a JSON string)."""
    try:
        if isinstance(value, dict):
            return Label.from_json(value, state.policy)
        if value.lstrip().startswith("{"):
            return Label.from_json(json.loads(value), state.policy)
        return parse_label(value, state.policy)
    except (LabelSyntaxError, ValueError) as e:
        raise Problem("malformed-label", str(e)) from None


@router.get("/policy", summary="The loaded policy and its SHA-256")
async def get_policy(state: State) -> dict[str, Any]:
    return state.policy.to_json()


@router.post("/enrol", status_code=201, summary="Enrol a device with a one-time code")
async def post_enrol(body: EnrolRequest, state: State, request: Request) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    wait = state.enrol_limiter.take(client)
    if wait:
        raise Problem("rate-limited", "too many enrolment attempts",
                      headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    return await admin.enrol(state, body.code, body.bundle)


@router.get("/me", summary="The authenticated principal and device")
async def get_me(caller: CurrentCaller) -> dict[str, Any]:
    return {"principal": caller.principal.to_json(), "device": caller.device_id}


@router.get("/directory/devices", summary="Devices of a principal, with enrolment proofs")
async def get_directory(caller: CurrentCaller, state: State,
                        principal: Slug | None = None,
                        device: Annotated[str | None, Query(pattern=r"^d_[a-z2-7]{26}$")] = None,
                        ) -> dict[str, Any]:
    if principal is None and device is None:
        raise Problem("validation", "give principal= or device=")
    async with state.db.sessions() as s:
        q = select(Device)
        q = q.where(Device.principal_id == principal) if principal else q.where(Device.id == device)
        rows = (await s.execute(q.order_by(Device.enrolled_at).limit(100))).scalars().all()
        return await device_records(s, state.log, rows)


@router.get("/channels", summary="Channels the caller belongs to")
async def get_channels(caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.list_channels(state, caller)


@router.get("/channels/{channel_id}/recipients",
            summary="Exactly the device bundles to encrypt to for a label",
            response_class=JSONResponse)
async def get_recipients(channel_id: str, caller: CurrentCaller, state: State,
                         label: Annotated[str, Query(max_length=1024)],
                         suite: Annotated[str | None, Query(max_length=32)] = None
                         ) -> JSONResponse:
    lab = _label(state, label)
    suite = suite or default_suite(state.policy, lab)
    allowed = state.policy.rule(lab.classification).kem
    if suite not in allowed:
        raise Problem("suite-not-allowed", f"suite {suite} is not allowed at "
                      f"{lab.classification} ({', '.join(allowed)})")
    async with state.db.sessions() as s:
        if await s.get(Channel, channel_id) is None:
            raise Problem("not-found", f"no channel {channel_id}")
        if await s.get(ChannelMember, (channel_id, caller.principal.id)) is None:
            raise Problem("not-member", f"{caller.principal.id} is not a member of {channel_id}")
        elig = await s.run_sync(lambda ss: eligibility(ss, state.policy, channel_id, lab, suite))
        rows = (await s.execute(select(Device).where(Device.id.in_(list(elig.devices)))
                                .order_by(Device.id))).scalars().all()
        records = await device_records(s, state.log, rows)
    return _plain({"channel": channel_id, "label": lab.to_json(), "label_text": lab.text(),
                   **records, **elig.to_json()})


@router.post("/messages", status_code=201, summary="Submit an envelope",
             response_class=JSONResponse)
async def post_message(body: SubmitRequest, request: Request, state: State) -> JSONResponse:
    accepted, receipt = await messaging.submit(state, request, body.envelope, body.to)
    return _plain({"id": accepted.id, "recipients": accepted.recipients, **receipt}, 201)


@router.get("/messages/{message_id}", summary="One message for this device",
            response_class=JSONResponse)
async def get_message(message_id: str, request: Request, state: State) -> JSONResponse:
    return _plain(await messaging.fetch(state, request, message_id))


@router.post("/messages/{message_id}/ack", summary="Acknowledge a message")
async def post_ack(message_id: str, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await messaging.ack(state, caller, message_id)


@router.get("/inbox", summary="This device's messages, cursor-paginated",
            response_class=JSONResponse)
async def get_inbox(caller: CurrentCaller, state: State,
                    after: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100) -> JSONResponse:
    return _plain(await messaging.inbox(state, caller, after, limit))


@router.get("/inbox/stream", summary="Server-sent events: new messages for this device")
async def get_stream(caller: CurrentCaller, state: State, request: Request) -> StreamingResponse:
    queue = state.hub.subscribe(caller.device_id)
    state.metrics.streams.inc()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                data = {k: v for k, v in event.items() if k != "devices"}
                yield f"event: message\nid: {event['id']}\ndata: {json.dumps(data)}\n\n".encode()
        finally:
            state.hub.unsubscribe(caller.device_id, queue)
            state.metrics.streams.dec()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- admin ---------------------------------------------------------------------------------


@router.post("/admin/principals", status_code=201, summary="Create a principal")
async def post_principal(body: PrincipalCreate, caller: CurrentCaller, state: State
                         ) -> dict[str, Any]:
    return await admin.create_principal(state, caller, body.model_dump())


@router.patch("/admin/principals/{principal_id}", summary="Change a principal")
async def patch_principal(principal_id: str, body: PrincipalUpdate, caller: CurrentCaller,
                          state: State) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise Problem("validation", "nothing to change")
    return await admin.update_principal(state, caller, principal_id, changes)


@router.post("/admin/principals/{principal_id}/enrolment-codes", status_code=201,
             summary="Issue a one-time enrolment code")
async def post_code(principal_id: str, caller: CurrentCaller, state: State) -> JSONResponse:
    body = await admin.create_enrolment_code(state, caller, principal_id)
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@router.post("/admin/devices/{device_id}/revoke", summary="Revoke a device")
async def post_revoke(device_id: str, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.revoke_device(state, caller, device_id)


@router.get("/admin/devices", summary="Device inventory (admins, scoped to their nation)")
async def get_devices(caller: CurrentCaller, state: State, principal: Slug | None = None
                      ) -> dict[str, Any]:
    return await admin.list_devices(state, caller, principal)


@router.post("/admin/channels", status_code=201, summary="Create a channel")
async def post_channel(body: ChannelCreate, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await admin.create_channel(state, caller, body.id, body.name or body.id,
                                      _label(state, body.ceiling))


@router.put("/admin/channels/{channel_id}/members", summary="Set a channel's members")
async def put_members(channel_id: str, body: MembersRequest, caller: CurrentCaller,
                      state: State) -> dict[str, Any]:
    return await admin.set_members(state, caller, channel_id, body.principals)
