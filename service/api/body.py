"""Request bodies as JSON: one strict parser (I-JSON: no repeated member names, no lone
surrogates, bounded nesting, and no U+0000) for the submit fast path and every FastAPI route.

FastAPI parses a JSON body with `json.loads` itself, which keeps the last of two equal member
names; `StrictRequest` gives it our parse instead (FastAPI's documented "custom Request class"
pattern), and `json_body` decides JSON or not by the content type exactly as FastAPI does, so
the fast path and the routes answer alike (tests/service/test_hot_path.py).
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from liaison.crypto.encoding import loads_strict
from liaison.crypto.errors import JSONRefused, MalformedError

from ..problems import Problem
from .errors import validation_problem

__all__ = ["StrictRequest", "is_json", "json_body", "strict_json"]


def strict_json(raw: bytes) -> Any:
    """The body's JSON value, or the problem that refuses it."""
    try:
        # U+0000 is refused in every request body: no field needs it and PostgreSQL's text type
        # cannot store it (a name or a refused envelope's id holding it failed the write).
        return loads_strict(raw, forbid_nul=True)
    except JSONRefused as e:
        raise Problem(e.reason, e.detail) from None
    except MalformedError as e:
        raise Problem("malformed-request", f"the body is not valid JSON: {e}"[:300]) from None


class StrictRequest(Request):
    """A request whose `json()` is `strict_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON: the type as email.message
    reads it (before any ";", trimmed, lower-cased, text/plain unless it has exactly one "/"),
    application/json or application/*+json."""
    if not content_type:
        return False
    mime = content_type.partition(";")[0].strip().lower()
    maintype, _, subtype = mime.partition("/") if mime.count("/") == 1 else ("text", "", "")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


async def json_body(request: StrictRequest) -> Any:
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
    if is_json(request.headers.get("content-type")):
        return await request.json()
    return body
