"""The audit log's read API under /v1/audit/ (C2SP tlog-tiles, JSON conveniences, witnesses).

Thin: parse, call one use case of `usecases.audit`, return. Checkpoints, hash tiles and the
proofs (hashes only) are public; who may read entries is decided by one dependency,
`deps.AuditReader`; a message's proof by its use case (see `usecases.audit`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from liaison.crypto import tiles
from liaison.crypto.errors import MalformedError

from ..problems import Problem
from ..usecases import audit, statements
from . import responses as r
from .deps import AuditReader, CurrentCaller, Signed, State
from .openapi import documented
from .routing import AuthFirstRoute

router = APIRouter(prefix="/v1/audit", route_class=AuthFirstRoute)

#: The largest index or size a query names: JSON's exact integers (RFC 8785 refuses more),
#: which every log index and tree size is, and which the log entries that record a query hold.
_MAX = (1 << 53) - 1
Size = Annotated[int, Query(ge=0, le=_MAX)]
#: An optional number or filter; an empty value (`?end=`, as some clients send for None) is
#: the same as leaving it out.
OptInt = Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]*$")]
_IMMUTABLE = "max-age=31536000, immutable"
_PARTIAL = "max-age=5"
_TILE_TYPE = "application/octet-stream"


def _opt_int(value: str | None, minimum: int = 0) -> int | None:
    if not value:
        return None
    number = int(value)
    if not minimum <= number <= _MAX:
        raise Problem("validation", f"{value} is out of range")
    return number


def _opt(value: str | None) -> str | None:
    return value or None


def _tile(path: str) -> tiles.Tile:
    try:
        return tiles.parse_tile_path(path)
    except MalformedError as e:
        # A non-canonical spelling names no resource: one tile, one path.
        raise Problem("not-found", str(e)) from None


def _tile_response(body: audit.TileBody, public: bool) -> Response:
    scope = "public" if public else "private"
    cache = f"{scope}, {_IMMUTABLE if body.full else _PARTIAL}"
    return Response(body.data, media_type=_TILE_TYPE, headers={"Cache-Control": cache})


@router.get(
    "/checkpoint",
    summary="The latest signed checkpoint (C2SP tlog-checkpoint)",
    response_class=Response,
    **documented(
        None,
        "not-found",
        "proof",
        "unavailable",
        media_type="text/plain; charset=utf-8",
        description="The signed note (C2SP signed-note)",
    ),
)
async def get_checkpoint(
    state: State, size: OptInt = None, cosigned: Annotated[int, Query(ge=0, le=100)] = 0
) -> Response:
    """The latest checkpoint with its cosignatures; `?size=` an older one, `?cosigned=K`
    the newest one that carries at least K witness cosignatures."""
    text = await audit.signed_checkpoint(state, _opt_int(size), cosigned)
    return Response(
        text,
        media_type="text/plain; charset=utf-8",
        # Cosignatures may still be added to any size, so never cache for long.
        headers={"Cache-Control": "no-store" if not size and not cosigned else "no-cache"},
    )


@router.get(
    "/tile/entries/{rest:path}",
    summary="An entry bundle (C2SP tlog-tiles)",
    response_class=Response,
    **documented(None, "not-found", "not-auditor", media_type=_TILE_TYPE, description="The entry bundle"),
)
async def get_entry_bundle(rest: str, state: State, reader: AuditReader) -> Response:
    tile = _tile(f"tile/entries/{rest}")
    return _tile_response(await audit.entry_bundle(state, tile), reader is None)


@router.get(
    "/tile/{rest:path}",
    summary="A hash tile (C2SP tlog-tiles, height 8)",
    response_class=Response,
    **documented(None, "not-found", "unavailable", media_type=_TILE_TYPE, description="The tile's hashes"),
)
async def get_hash_tile(rest: str, state: State) -> Response:
    tile = _tile(f"tile/{rest}")
    return _tile_response(await audit.hash_tile(state, tile), True)


@router.get(
    "/entries",
    summary="Log entries in [start, end), at most 1000 per call",
    **documented(r.AuditEntries, "not-auditor", "proof"),
)
async def get_entries(
    state: State,
    reader: AuditReader,
    start: Size = 0,
    end: OptInt = None,
    type_: Annotated[str | None, Query(alias="type", max_length=32)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    return await audit.entries(
        state,
        start,
        _opt_int(end),
        caller=reader,
        type_=_opt(type_),
        actor=_opt(actor),
        since=_opt(since),
    )


@router.get(
    "/disclosures",
    summary="Disclosures of the directory statements in [start, end) the caller may open (9.10)",
    **documented(r.AuditDisclosures, "not-auditor", "validation"),
)
async def get_disclosures(caller: CurrentCaller, state: State, start: Size, end: Size) -> dict[str, Any]:
    return await statements.disclosures_for_audit(state, caller, start, end)


@router.get(
    "/proof/inclusion",
    summary="Inclusion proof of one entry (public: hashes only)",
    **documented(r.Inclusion, "proof", "not-found", "unavailable"),
)
async def get_inclusion(state: State, index: Size, size: OptInt = None) -> dict[str, Any]:
    return await audit.inclusion(state, index, _opt_int(size, 1))


@router.get(
    "/proof/consistency",
    summary="Consistency proof between two tree sizes (public)",
    **documented(r.Consistency, "proof", "not-found", "unavailable"),
)
async def get_consistency(state: State, old: Size, new: OptInt = None) -> dict[str, Any]:
    return await audit.consistency(state, old, _opt_int(new))


@router.get(
    "/messages/{message_id}",
    summary="A message's log entry and inclusion proof",
    **documented(r.MessageProof, "not-found", "storage-full"),
)
async def get_message_proof(message_id: str, signed: Signed, state: State) -> dict[str, Any]:
    return await audit.message_proof(state, signed, message_id)


class CosignatureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=1, le=_MAX)
    cosignature: str = Field(min_length=1, max_length=1024)


@router.post(
    "/cosignatures",
    summary="Submit a witness cosignature",
    **documented(
        r.Cosigned,
        "not-auditor",
        "bad-cosignature",
        "unknown-witness",
        "proof",
        "not-found",
        "conflict",
        "storage-full",
        status=201,
    ),
)
async def post_cosignature(body: CosignatureRequest, caller: CurrentCaller, state: State) -> JSONResponse:
    await audit.require_auditor(state, caller, "POST /v1/audit/cosignatures")
    result = await audit.add_cosignature(state, caller, body.size, body.cosignature)
    return JSONResponse(result, status_code=201)
