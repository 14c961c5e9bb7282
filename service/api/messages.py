"""Message paths: submit, fetch, ack, the inbox and its live stream. Thin: parse, call, return.

POST /v1/messages is answered ahead of FastAPI by `hot.HotPaths`; its route here documents the
path in OpenAPI and serves it when the hot path is off (the tests compare the two).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from liaison.crypto.encoding import parse_time
from liaison.crypto.errors import MalformedError

from ..problems import Problem
from ..state import AppState
from ..usecases import inbox, messaging, streams
from ..usecases.auth import Caller
from ..usecases.inbox import InboxQuery
from . import responses as r
from .deps import CurrentCaller, Signed, State
from .openapi import documented
from .routing import AuthFirstRoute
from .schemas import SlugQuery, SubmitRequest, plain

#: The principal does not (or no longer) dominate the label.
_DOMINANCE = ("clearance", "releasability", "compartment", "system-level")

router = APIRouter(prefix="/v1", route_class=AuthFirstRoute)

#: An inbox cursor is a delivery's serial key: a 32-bit integer on PostgreSQL (a larger `after`
#: failed the query there, as one of 2**63 did on SQLite).
MAX_CURSOR = (1 << 31) - 1
#: Deliveries read per query while a resumed stream catches up.
_CATCH_UP_PAGE = 200


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


#: A message id prefix: lower-case hex and hyphens, as UUIDs are written; 8 characters at least.
_PREFIX = r"^[0-9a-f-]{8,36}$"


@router.get(
    "/inbox",
    summary="This device's messages, cursor-paginated",
    response_class=JSONResponse,
    **documented(r.Inbox),
)
async def get_inbox(
    caller: CurrentCaller,
    state: State,
    after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR)] = None,
    before: Annotated[int | None, Query(ge=0, le=MAX_CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    order: Annotated[Literal["oldest", "newest"], Query()] = "oldest",
    channel: SlugQuery | None = None,
    unread: bool = False,
    since: Annotated[str | None, Query(max_length=40)] = None,
    prefix: Annotated[str | None, Query(pattern=_PREFIX)] = None,
    totals: bool = False,
) -> JSONResponse:
    """Oldest first after the cursor `after` (`next` continues), or with `order=newest` newest
    first below `before`; filtered by `channel`, `unread` (not acknowledged), `since` (accepted
    at or after an RFC 3339 time) and id `prefix`. `withheld` counts this page's messages the
    principal may no longer read; `totals=true` adds `total` and `withheld_total` over every
    matching message."""
    try:
        since_time = parse_time(since, field="since") if since is not None else None
    except MalformedError as e:
        raise Problem("validation", str(e)) from None
    query = InboxQuery(
        after=after,
        before=before,
        limit=limit,
        newest_first=order == "newest",
        channel=channel,
        unread=unread,
        since=since_time,
        prefix=prefix,
        totals=totals,
    )
    return plain(await inbox.inbox(state, caller, query))


@router.get(
    "/inbox/stream",
    summary="Server-sent events: new messages for this device",
    response_class=StreamingResponse,
    **documented(None, "too-many-streams", media_type="text/event-stream", description="The event stream"),
)
async def get_stream(
    caller: CurrentCaller,
    state: State,
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR)] = None,
) -> StreamingResponse:
    """Each `message` event is the message's inbox item (with its `cursor`) and `"type":
    "message"`. With `after` (the last cursor a client saw), the messages delivered since are
    sent first, oldest first, then the live ones: each once, in cursor order."""
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
        # Subscribed before the catch-up is read, so nothing accepted in between is missed;
        # `last` (the highest cursor sent) drops a live event the catch-up already sent.
        last = after
        try:
            yield b": connected\n\n"
            if after is not None:
                async for old in _since(state, caller, after):
                    last = old["cursor"]
                    yield _message_event(old)
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
                item = await inbox.delivered(state, caller, str(event["id"]))
                if item is None or (last is not None and item["cursor"] <= last):
                    continue
                last = item["cursor"]
                yield _message_event(item)
        finally:
            release()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also when the client went before the stream started (the generator never ran).
        background=BackgroundTask(release),
    )


async def _since(state: AppState, caller: Caller, after: int) -> AsyncIterator[dict[str, Any]]:
    """Every readable delivery after the cursor `after`, oldest first, a page at a time."""
    cursor = after
    while True:
        page = await inbox.inbox(state, caller, InboxQuery(after=cursor, limit=_CATCH_UP_PAGE))
        for item in page["messages"]:
            yield item
        if not page["more"]:
            return
        cursor = page["next"]


def _message_event(item: dict[str, Any]) -> bytes:
    return f"event: message\nid: {item['id']}\ndata: {json.dumps({'type': 'message', **item})}\n\n".encode()
