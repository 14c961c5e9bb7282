"""POST /v1/messages without FastAPI's router: the one path that carries the traffic.

The route stays declared in `routes` (it documents the path in OpenAPI and is what this
replaces); this ASGI layer, outermost but for the request middleware (see `app.LiaisonApp`),
answers it first with the same steps: strict validation of the
wrapper by the same pydantic model, the request's signature, `messaging.submit`, and
problem+json for every refusal.
FastAPI's route matching, dependency solving and response wrapping cost more per request than
the envelope's parsing (see bench/service.py); everything else still goes through FastAPI.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..problems import Problem
from ..state import AppState
from ..usecases import messaging
from .deps import signed_request
from .errors import problem_response, validation_problem
from .middleware import _TooLarge
from .schemas import SubmitRequest

__all__ = ["HotPaths"]

log = logging.getLogger("liaison.api")

_PATH = "/v1/messages"


async def _json_body(request: Request) -> Any:
    """The body as FastAPI gives it to a model parameter (strict content type): the parsed
    JSON when the request says it is JSON, else the raw bytes (which the model refuses), and
    an empty body refused as missing."""
    body = await request.body()
    if not body:
        raise validation_problem(
            RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
            )
        )
    content_type = request.headers.get("content-type")
    if content_type:
        # The type as email.message reads it (what FastAPI asks): before any ";", trimmed,
        # lower-cased, and text/plain unless it has exactly one "/".
        mime = content_type.partition(";")[0].strip().lower()
        maintype, _, subtype = mime.partition("/") if mime.count("/") == 1 else ("text", "", "")
        if maintype == "application" and (subtype == "json" or subtype.endswith("+json")):
            try:
                return json.loads(body)
            except json.JSONDecodeError as e:
                raise validation_problem(
                    RequestValidationError(
                        [
                            {
                                "type": "json_invalid",
                                "loc": ("body", e.pos),
                                "msg": "JSON decode error",
                                "input": {},
                                "ctx": {"error": e.msg},
                            }
                        ]
                    )
                ) from None
            except Exception:  # not UTF-8, nested too deep: what FastAPI answers too
                raise Problem("malformed-request", "There was an error parsing the body") from None
    return body


class HotPaths:
    """ASGI middleware: serves POST /v1/messages itself, passes everything else on."""

    def __init__(self, app: ASGIApp, *, fastapi: Any, route: Any) -> None:
        self.app = app
        self.fastapi = fastapi  # the application (its state)
        self.route = route  # the documented APIRoute, for the metrics' route label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != _PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        scope["app"] = self.fastapi  # as FastAPI sets it, for Request.app
        request = Request(scope, receive)
        state: AppState = self.fastapi.state.liaison
        try:
            response = await self._submit(state, request)
        except Problem as p:
            response = problem_response(p, _PATH)
        except _TooLarge:
            raise  # the request middleware answers it
        except Exception:  # what FastAPI's error middleware would catch: answered, logged
            log.exception("POST %s failed", _PATH)
            response = problem_response(Problem("internal", "the request could not be processed"), _PATH)
        await response(scope, receive, send)

    @staticmethod
    async def _submit(state: AppState, request: Request) -> JSONResponse:
        try:
            # from_attributes, as FastAPI validates: a body that is not an object is refused
            # as such ("model_attributes_type"), not as a wrong instance.
            payload = SubmitRequest.model_validate(await _json_body(request), from_attributes=True)
        except ValidationError as e:
            raise validation_problem(
                RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()])
            ) from None
        signed = await signed_request(request, state)
        accepted, receipt = await messaging.submit(state, signed, payload.envelope, payload.to)
        return JSONResponse(
            {"id": accepted.id, "recipients": accepted.recipients, **receipt}, status_code=201
        )
