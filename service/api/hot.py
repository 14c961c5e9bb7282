"""POST /v1/messages without FastAPI's router: the one path that carries the traffic.

The route stays declared in `routes` (it documents the path in OpenAPI and is what this
replaces); this ASGI layer, outermost but for the request middleware (see `app.LiaisonApp`),
answers it first with the same steps as `routing.AuthFirstRoute` and the route: the request's
signature over the raw body, the body parsed by the strict parser, strict validation of the
wrapper by the same pydantic model, `messaging.submit`, and problem+json for every refusal.
FastAPI's route matching, dependency solving and response wrapping cost more per request than
the envelope's parsing (see bench/service.py); everything else still goes through FastAPI.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ..problems import Problem
from ..state import AppState
from ..usecases import messaging
from .body import StrictRequest, json_body
from .deps import verified
from .errors import problem_response, validation_problem
from .middleware import _TooLarge
from .schemas import SubmitRequest

__all__ = ["HotPaths"]

log = logging.getLogger("liaison.api")

_PATH = "/v1/messages"


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
        request = StrictRequest(scope, receive)
        state: AppState = self.fastapi.state.liaison
        try:
            response = await self._submit(state, request)
        except Problem as p:
            response = problem_response(p, _PATH)
        except (_TooLarge, ClientDisconnect):
            raise  # the request middleware answers (or logs) it
        except Exception:  # what FastAPI's error middleware would catch: answered, logged
            log.exception("POST %s failed", _PATH)
            response = problem_response(Problem("internal", "the request could not be processed"), _PATH)
        await response(scope, receive, send)

    @staticmethod
    async def _submit(state: AppState, request: StrictRequest) -> JSONResponse:
        # The signature first, over the raw body: an unsigned caller learns nothing more.
        signed = await verified(state, request)
        try:
            # from_attributes, as FastAPI validates: a body that is not an object is refused
            # as such ("model_attributes_type"), not as a wrong instance.
            payload = SubmitRequest.model_validate(await json_body(request), from_attributes=True)
        except ValidationError as e:
            raise validation_problem(
                RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()])
            ) from None
        accepted, receipt = await messaging.submit(state, signed, payload.envelope, payload.to)
        return JSONResponse(
            {"id": accepted.id, "recipients": accepted.recipients, **receipt}, status_code=201
        )
