"""Message paths: submit, fetch, ack, the inbox and its live stream. Thin: parse, call, return.

POST /v1/messages is answered ahead of FastAPI by `hot.HotPaths`; its route here documents the
path in OpenAPI and serves it when the hot path is off (the tests compare the two).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from ..usecases import messaging, streams
from . import responses as r
from .deps import CurrentCaller, Signed, State
from .openapi import documented
from .routing import AuthFirstRoute
from .schemas import SubmitRequest, plain

#: The principal does not (or no longer) dominate the label.
_DOMINANCE = ("clearance", "releasability", "compartment", "system-level")

router = APIRouter(prefix="/v1", route_class=AuthFirstRoute)

#: An inbox cursor is a delivery's serial key: a 32-bit integer on PostgreSQL (a larger `after`
#: failed the query there, as one of 2**63 did on SQLite).
MAX_CURSOR = (1 << 31) - 1


@router.post(
    "/messages",
    summary="Submit an envelope",
    response_class=JSONResponse,
    **documented(
        r.Submitted,
        "malformed-envelope",
        "unsupported-suite",
        "malformed-label",
        "sender-mismatch",
        "suite-not-allowed",
        "signature-required",
        "bad-envelope-signature",
        "too-large",
        "stale-envelope",
        *_DOMINANCE,
        "not-found",
        "not-member",
        "above-ceiling",
        "duplicate-envelope",
        "ineligible-recipient",
        "missing-recipient",
        "storage-full",
        status=201,
    ),
)
async def post_message(body: SubmitRequest, signed: Signed, state: State) -> JSONResponse:
    accepted, receipt = await messaging.submit(state, signed, body.envelope, body.to)
    return plain({"id": accepted.id, "recipients": accepted.recipients, **receipt}, 201)


@router.get(
    "/messages/{message_id}",
    summary="One message for this device",
    response_class=JSONResponse,
    **documented(r.Fetched, "not-recipient", "not-found", *_DOMINANCE, "storage-full"),
)
async def get_message(message_id: str, signed: Signed, state: State) -> JSONResponse:
    return plain(await messaging.fetch(state, signed, message_id))


@router.post(
    "/messages/{message_id}/ack",
    summary="Acknowledge a message",
    **documented(r.Acked, "not-recipient", *_DOMINANCE, "storage-full"),
)
async def post_ack(message_id: str, caller: CurrentCaller, state: State) -> dict[str, Any]:
    return await messaging.ack(state, caller, message_id)


@router.get(
    "/inbox",
    summary="This device's messages, cursor-paginated",
    response_class=JSONResponse,
    **documented(r.Inbox),
)
async def get_inbox(
    caller: CurrentCaller,
    state: State,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    return plain(await messaging.inbox(state, caller, after, limit))


@router.get(
    "/inbox/stream",
    summary="Server-sent events: new messages for this device",
    response_class=StreamingResponse,
    **documented(None, "too-many-streams", media_type="text/event-stream", description="The event stream"),
)
async def get_stream(caller: CurrentCaller, state: State, request: Request) -> StreamingResponse:
    sub = streams.open_stream(state, caller)
    state.metrics.streams.inc()
    released = False

    def release() -> None:  # once, whichever of the stream's end or the response's comes first
        nonlocal released
        if not released:
            released = True
            state.hub.unsubscribe(sub)
            state.metrics.streams.dec()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await sub.next(idle=15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                if event is None:  # the server closed it: say why, then end the stream
                    yield f"event: closed\ndata: {json.dumps({'reason': sub.closed})}\n\n".encode()
                    return
                yield f"event: message\nid: {event['id']}\ndata: {json.dumps(event)}\n\n".encode()
        finally:
            release()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also when the client went before the stream started (the generator never ran).
        background=BackgroundTask(release),
    )
