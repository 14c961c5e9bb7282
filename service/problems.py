"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every refusal has a stable `type` URI (`urn:liaison:problem:<slug>`), a title, a status and a
one-line detail. No stack traces and no secret material ever go into a problem.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["PROBLEM_TYPES", "Problem", "install_handlers", "problem_response"]

PROBLEM_BASE = "urn:liaison:problem:"

#: slug -> (status, title). Documented in docs/api.md; never change a slug.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The request is malformed"),
    "malformed-envelope": (400, "The envelope is malformed"),
    "malformed-label": (400, "The label is malformed"),
    "unknown-field": (422, "The request has an unknown or invalid field"),
    "validation": (422, "The request failed validation"),
    "unauthenticated": (401, "The request is not signed by a known device"),
    "bad-request-signature": (401, "The request signature does not verify"),
    "stale-request": (401, "The request signature is outside the clock-skew window"),
    "replayed-request": (401, "This request nonce was already used"),
    "content-digest": (400, "Content-Digest is missing or does not match the body"),
    "device-revoked": (403, "The device is revoked"),
    "principal-suspended": (403, "The principal is suspended"),
    "forbidden": (403, "Not permitted"),
    "not-admin": (403, "Only an admin may do this"),
    "other-nation": (403, "A nation admin may only manage its own nation"),
    "grant-above-own": (403, "Cannot grant above one's own clearance or compartments"),
    "not-auditor": (403, "Only an auditor or admin may read this"),
    "clearance": (403, "Clearance is below the label"),
    "releasability": (403, "The principal's nation is not in REL TO"),
    "compartment": (403, "A compartment of the label is missing"),
    "system-level": (403, "Systems may not handle this level"),
    "above-ceiling": (403, "The label is above the channel ceiling"),
    "not-member": (403, "Not a member of the channel"),
    "not-recipient": (404, "No such message for this device"),
    "suite-not-allowed": (422, "The KEM suite is not allowed at this level"),
    "signature-required": (422, "A signature algorithm required at this level is missing"),
    "bad-envelope-signature": (422, "The envelope signature does not verify"),
    "sender-mismatch": (403, "The envelope sender is not the authenticated device"),
    "stale-envelope": (422, "The envelope's created time is outside the clock-skew window"),
    "duplicate-envelope": (409, "An envelope with this id was already accepted"),
    "too-large": (413, "The message is larger than its level allows"),
    "body-too-large": (413, "The request body is too large"),
    "missing-recipient": (422, "An eligible device is missing from the recipients"),
    "ineligible-recipient": (422, "A recipient device is not eligible for this label"),
    "unsupported-suite": (422, "Unsupported KEM suite or algorithm"),
    "wrong-policy": (422, "The label names another policy"),
    "unknown-level": (422, "Unknown classification level"),
    "unknown-nation": (422, "Unknown nation"),
    "unknown-compartment": (422, "Unknown compartment"),
    "not-found": (404, "Not found"),
    "conflict": (409, "The resource already exists"),
    "enrolment-code": (403, "The enrolment code is invalid, used or expired"),
    "bad-bundle": (422, "The device key bundle is invalid"),
    "rate-limited": (429, "Too many requests"),
    "method-not-allowed": (405, "Method not allowed"),
    "unavailable": (503, "The service is not ready"),
    "internal": (500, "Internal error"),
    "bad-cosignature": (422, "The cosignature does not verify"),
    "unknown-witness": (403, "The cosigning key is not a configured witness"),
    "proof": (422, "No such proof"),
}


class Problem(Exception):
    """A refusal with a stable type; raised by use cases, rendered by `problem_response`."""

    def __init__(self, slug: str, detail: str, *, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        if slug not in PROBLEM_TYPES:
            raise KeyError(f"unknown problem type {slug}")
        super().__init__(detail)
        self.slug, self.detail = slug, detail
        self.status, self.title = PROBLEM_TYPES[slug]
        self.headers = headers or {}
        self.extra = extra or {}

    def to_json(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": PROBLEM_BASE + self.slug, "title": self.title,
                                "status": self.status, "detail": self.detail}
        if instance:
            body["instance"] = instance[:200]  # the client's own path, bounded
        body.update(self.extra)
        return body


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    return JSONResponse(problem.to_json(instance), status_code=problem.status,
                        headers=problem.headers, media_type="application/problem+json")


def _validation_detail(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    kind = first.get("type", "")
    slug = "unknown-field" if kind == "extra_forbidden" else \
        "malformed-request" if kind in ("json_invalid", "model_attributes_type") else "validation"
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
            exc.status_code, "malformed-request")
        return problem_response(Problem(slug, str(exc.detail)[:300]), request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
