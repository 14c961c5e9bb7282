"""Operations paths: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..problems import Problem
from ..storage.db import RETRY_AFTER
from ..storage.logstore import LogReader
from ..storage.migrate import schema_state
from .deps import State
from .errors import problem_response

router = APIRouter()


@router.get("/healthz", include_in_schema=True, summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and schema current")
async def readyz(state: State) -> Response:
    try:
        await state.db.ping()
        schema = await schema_state(state.db)
    except Exception:  # a restart, a lost connection, a timeout: ready again once it answers
        return problem_response(
            Problem("unavailable", "the database is unreachable", retry_after=RETRY_AFTER["unavailable"])
        )
    if not schema.is_current:
        return problem_response(Problem("unavailable", schema.problem() or "schema"))
    return JSONResponse({"status": "ready", "schema": schema.current})


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(state: State) -> Response:
    async with state.db.sessions() as s:
        state.metrics.log_size.set(await LogReader(s).size())
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
