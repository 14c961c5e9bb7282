"""The audit log's read API under /v1/audit/ (C2SP tlog-tiles, JSON conveniences, witnesses)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..auth import State
from ..problems import Problem

router = APIRouter(prefix="/v1/audit")


@router.get("/checkpoint", summary="The latest signed checkpoint (C2SP tlog-checkpoint)")
async def get_checkpoint(state: State) -> Response:
    async with state.db.sessions() as s:
        cp = await state.log.latest_checkpoint(s)
    if cp is None:
        raise Problem("unavailable", "the log has no checkpoint yet")
    return Response(cp.note, media_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-store"})
