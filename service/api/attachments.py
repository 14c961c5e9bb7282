"""Attachment paths (protocol 11; docs/api.md, "Attachments"): start, parts, complete, status
(GET, and HEAD: the resumable-upload draft's offset query) and abort for the uploading device;
a ranged download for each recipient device. Thin: parse, call, return; the ciphertext
streams from the store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from liaison.crypto.content import ATTACHMENT_ID_RE
from liaison.crypto.httpsig import digest_sha256

from ..usecases import attachments
from . import responses as r
from .deps import Signed, State
from .openapi import documented
from .routing import AuthFirstRoute
from .schemas import AttachmentComplete, AttachmentStart, plain

router = APIRouter(prefix="/v1", route_class=AuthFirstRoute)

AttachmentId = Annotated[str, Path(pattern=ATTACHMENT_ID_RE.pattern)]
MessageId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
#: The dominance refusals a read of a delivered message can meet.
_DOMINANCE = ("clearance", "releasability", "compartment", "system-level")


def _with_body(kw: dict[str, Any]) -> dict[str, Any]:
    """A route's documentation with a binary request body (FastAPI sees no body parameter)."""
    kw["openapi_extra"]["requestBody"] = {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
    return kw


@router.post(
    "/attachments",
    summary="Start an attachment's upload",
    response_class=JSONResponse,
    **documented(
        r.AttachmentStatus,
        "attachment-too-large",
        "attachment-quota",
        "duplicate-attachment",
        "duplicate-envelope",
        "upload-expired",
        "storage-full",
        status=201,
    ),
)
async def post_attachment(body: AttachmentStart, signed: Signed, state: State) -> JSONResponse:
    """201 with the new upload; 200 with the parts stored so far when this device started
    the same attachment (same message and size) before: resume from there."""
    status, new = await attachments.start(state, signed, body.id, body.message, body.size)
    return plain(status, 201 if new else 200)


@router.get(
    "/attachments/{attachment_id}",
    summary="An upload's state and stored parts (its device only)",
    response_class=JSONResponse,
    **documented(r.AttachmentStatus, "not-found", "upload-expired"),
)
async def get_attachment(attachment_id: AttachmentId, signed: Signed, state: State) -> JSONResponse:
    """`stored` lists the parts stored so far (resume by sending the others); `offset` is
    the bytes stored from the start with no gap."""
    return plain(await attachments.status(state, signed, attachment_id))


@router.head(
    "/attachments/{attachment_id}",
    summary="Where an upload stands, in headers (the resumable-upload draft's offset query)",
    response_class=Response,
    **documented(None, "not-found", "upload-expired", description="No body; the headers say it all"),
)
async def head_attachment(attachment_id: AttachmentId, signed: Signed, state: State) -> Response:
    """`Upload-Offset`: the bytes stored from the start with no part missing (part-aligned:
    resume with the part after it); `Upload-Complete`: `?1` once the chunk tree root was
    checked (draft-ietf-httpbis-resumable-upload, structured-field booleans);
    `Upload-Length`: the upload's size; `Upload-Part-Size`: every part's size but the last.
    Signed like every request; a problem's status without its body, as HEAD has none."""
    st = await attachments.status(state, signed, attachment_id)
    return Response(
        status_code=200,
        headers={
            "upload-offset": str(st["offset"]),
            "upload-complete": "?0" if st["state"] == "uploading" else "?1",
            "upload-length": str(st["size"]),
            "upload-part-size": str(st["part_size"]),
            "cache-control": "no-store",
        },
    )


@router.put(
    "/attachments/{attachment_id}/parts/{number}",
    summary="Store one part of an upload",
    response_class=JSONResponse,
    **_with_body(
        documented(
            r.PartStored,
            "not-found",
            "upload-complete",
            "upload-expired",
            "bad-part",
            "body-too-large",
            "storage-full",
        )
    ),
)
async def put_part(
    attachment_id: AttachmentId,
    number: Annotated[int, Path(ge=1, le=10_000)],
    request: Request,
    signed: Signed,
    state: State,
) -> JSONResponse:
    """The body is the part's ciphertext bytes (any content type; `Content-Digest` covers it
    like every signed body, and its verified SHA-256 is what the store keeps and answers):
    `part_size` bytes, the last part the rest. Idempotent: a part sent again replaces it."""
    body = await request.body()
    sha256 = digest_sha256(request.headers.get("content-digest"))
    return plain(await attachments.put_part(state, signed, attachment_id, number, body, sha256))


@router.post(
    "/attachments/{attachment_id}/complete",
    summary="Join the parts and check the chunk tree root",
    response_class=JSONResponse,
    **documented(
        r.AttachmentStatus,
        "not-found",
        "incomplete-upload",
        "attachment-mismatch",
        "upload-complete",
        "upload-expired",
        "storage-full",
    ),
)
async def post_complete(
    attachment_id: AttachmentId, body: AttachmentComplete, signed: Signed, state: State
) -> JSONResponse:
    return plain(await attachments.complete(state, signed, attachment_id, body.root))


@router.delete(
    "/attachments/{attachment_id}",
    summary="Abandon an upload (not once its message was accepted)",
    response_class=JSONResponse,
    **documented(r.Abandoned, "not-found", "upload-complete", "upload-expired"),
)
async def delete_attachment(attachment_id: AttachmentId, signed: Signed, state: State) -> JSONResponse:
    await attachments.abort(state, signed, attachment_id)
    return plain({"id": attachment_id, "state": "abandoned"})


@router.get(
    "/messages/{message_id}/attachments/{attachment_id}",
    summary="Download an attachment's ciphertext (ranges allowed)",
    response_class=StreamingResponse,
    **documented(
        None,
        "not-recipient",
        "not-found",
        *_DOMINANCE,
        "range-not-satisfiable",
        "storage-full",
        media_type="application/octet-stream",
        description="The ciphertext, or the range of it asked for (206)",
    ),
)
async def get_attachment_bytes(
    message_id: MessageId,
    attachment_id: AttachmentId,
    signed: Signed,
    state: State,
    range_: Annotated[str | None, Header(alias="range", max_length=100)] = None,
) -> StreamingResponse:
    """Access is re-checked as for a message fetch on every request; a device's first
    download is logged (`message.attachment_fetched`). Check the bytes with the chunk tree
    root the signed header carries (`ETag` repeats it)."""
    d = await attachments.download(state, signed, message_id, attachment_id, range_)
    rng = d.range
    headers: dict[str, Any] = {
        "content-length": str(rng.end - rng.start),
        "accept-ranges": "bytes",
        "etag": f'"{d.root}"',
        "cache-control": "no-store",
    }
    if rng.partial:
        headers["content-range"] = f"bytes {rng.start}-{rng.end - 1}/{rng.size}"
    return StreamingResponse(
        d.pieces,
        status_code=206 if rng.partial else 200,
        media_type="application/octet-stream",
        headers=headers,
    )
