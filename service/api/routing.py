"""The route class of every router: authentication first, then the request's shape.

FastAPI parses a JSON body before it solves any dependency (a malformed body answered 422 to
anyone), and would validate the query and body of a route whose signature is checked inside
it. `AuthFirstRoute` runs, before FastAPI's own handler, in this order:

1. on a route that needs a signature (it depends on `deps.Signed`, `CurrentCaller` or
   `AuditReader`), the RFC 9421 check over the raw body: a caller without a valid signature
   gets its 401 and learns nothing else about its request;
2. U+0000 in the path or query is refused (`invalid-character`): no id or filter holds it,
   and PostgreSQL's text type cannot;
3. a JSON body is parsed by the strict parser (`body.strict_json`), so that FastAPI validates
   that value, not its own `json.loads` of the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from ..problems import Problem
from ..state import AppState
from .body import StrictRequest, json_body
from .deps import audit_reader, current_caller, signed_request, verified

__all__ = ["AuthFirstRoute", "needs", "refuse_nul"]

_SIGNED = (signed_request, current_caller)


def needs(dependant: Dependant) -> str | None:
    """ "signed" if the route needs a signature always, "audit" if unless the log is public."""
    kind = None
    for dep in dependant.dependencies:
        below = needs(dep)
        if dep.call in _SIGNED or below == "signed":
            return "signed"
        if dep.call is audit_reader or below == "audit":
            kind = "audit"
    return kind


def refuse_nul(request: Request) -> None:
    """U+0000 in the (decoded) path or the query string names nothing: refused."""
    query = request.scope.get("query_string", b"")
    if "\x00" in request.scope["path"] or b"%00" in query or b"\x00" in query:
        raise Problem("invalid-character", "the request's path or query holds U+0000")


class AuthFirstRoute(APIRoute):
    """An APIRoute that verifies the signature, then checks and parses, before FastAPI."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs_signature = needs(self.dependant)
        takes_json = self.body_field is not None

        async def auth_first(request: Request) -> Response:
            strict = StrictRequest(request.scope, request.receive)
            if needs_signature is not None:
                state: AppState = request.app.state.liaison
                if needs_signature == "signed" or not state.settings.audit_public:
                    await verified(state, strict)
            refuse_nul(strict)
            if takes_json and await strict.body():
                await json_body(strict)  # parsed (or refused) now; FastAPI reads it back
            return await handler(strict)

        return auth_first
