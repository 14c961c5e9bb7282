"""The one place where errors become HTTP responses: RFC 9457 problem+json for every refusal."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..problems import Problem
from ..storage.db import fault_of, fault_problem

__all__ = ["install_handlers", "problem_response", "validation_problem"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("liaison.api")

#: What a read meets when the database fails (writes go through the writer, which answers
#: its own): mapped by `storage.db.fault_of`.
_DATABASE_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else {}
    return JSONResponse(
        problem.to_json(instance), status_code=problem.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _validation_detail(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    kind = first.get("type", "")
    slug = (
        "unknown-field"
        if kind == "extra_forbidden"
        else "malformed-request"
        if kind in ("json_invalid", "model_attributes_type")
        else "validation"
    )
    msg = first.get("msg", "invalid request")
    if kind == "extra_forbidden":
        msg = "unknown field"
    return slug, f"{where}: {msg}" if where else msg


def validation_problem(exc: RequestValidationError) -> Problem:
    """The problem for a request that failed its model's validation."""
    slug, detail = _validation_detail(exc)
    return Problem(slug, detail[:300])


def install_handlers(app: FastAPI) -> None:
    """Map every error to problem+json in this one place."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc), request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
            exc.status_code, "malformed-request"
        )
        return problem_response(Problem(slug, str(exc.detail)[:300]), request.url.path)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        kind = fault_of(exc)
        if kind is None:  # a bug, not an outage: logged, answered without detail
            log.error("%s %s failed", request.method, request.url.path[:200], exc_info=exc)
            return problem_response(Problem("internal", "the request could not be processed"))
        log.warning("%s %s: the database failed (%s)", request.method, request.url.path[:200], kind)
        return problem_response(fault_problem(kind), request.url.path)

    app.add_exception_handler(Problem, on_problem)
    for error in _DATABASE_ERRORS:
        app.add_exception_handler(error, on_database)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
