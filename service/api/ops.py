"""Operations paths: liveness and readiness on the API; Prometheus metrics on their own app.

Metrics are not served on the API port: they tell anyone who can reach it the traffic, the
refusal reasons and the log's growth. `metrics_app` is served by `liaison-server run` on its own
listener (`LIAISON_METRICS_PORT`, loopback by default) for the operator's scraper.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from ..problems import Problem
from ..state import AppState
from ..storage.db import RETRY_AFTER
from ..storage.logstore import LogReader
from ..storage.migrate import schema_state
from . import responses as r
from .deps import State
from .errors import problem_response
from .openapi import documented
from .routing import AuthFirstRoute

router = APIRouter(route_class=AuthFirstRoute)


@router.get("/healthz", summary="Liveness", **documented(r.Health))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable and schema current",
    **documented(r.Ready, "unavailable"),
)
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


async def render_metrics(state: AppState) -> Response:
    async with state.db.sessions() as s:
        state.metrics.log_size.set(await LogReader(s).size())
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


def metrics_app(state: Callable[[], AppState]) -> Starlette:
    """GET /metrics (Prometheus text) of the service whose state `state()` returns; any other
    path is a plain 404."""

    async def prometheus(request: Request) -> Response:
        return await render_metrics(state())

    return Starlette(routes=[Route("/metrics", prometheus, methods=["GET"])])
