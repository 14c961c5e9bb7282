"""The OpenAPI document, told truthfully, and its viewers served from local files.

Each route says what it answers with `documented(Model, *slugs)`: its success model (from
`responses`) and the problem types particular to it. `complete` then adds, to every
operation, the problems every path of its kind can answer (a signed path the authentication
problems, a path with a body the body problems, every path the transport's), groups them by
status as `application/problem+json` with the RFC 9457 schema and one example per type, and
describes the RFC 9421 request signature as the security scheme it is. Nothing here changes
what a route answers: tests/service/test_openapi.py and the schemathesis run check the
document against real answers.

`install_viewers` serves Swagger UI and ReDoc (`/docs`, `/redoc`) with their scripts from
`/docs/assets/`, read from the installed `fastapi-offline` package: no CDN is contacted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..problems import PROBLEM_BASE, PROBLEM_TYPES, Problem
from .responses import Doc, ProblemDocument

__all__ = ["ASSETS", "complete", "documented", "install_viewers"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_EXTRA = "x-problems"
_REF = "#/components/schemas/"

#: What any request can meet before its route: the HTTP server's limits (api/server.py), a
#: NUL in the path or query (api/routing.py), the database being down or full.
_TRANSPORT = ("malformed-request", "invalid-character", "request-timeout", "headers-too-large")
_DATABASE = ("unavailable",)
#: A signed request (docs/api.md, section 2).
_SIGNED = (
    "misdirected-request",
    "unauthenticated",
    "duplicate-signature-field",
    "bad-request-signature",
    "stale-request",
    "replayed-request",
    "content-digest",
    "rate-limited",
    "device-revoked",
    "principal-suspended",
)
#: A request with a JSON body (docs/api.md, section 1).
_BODY = (
    "malformed-request",
    "duplicate-key",
    "json-too-deep",
    "invalid-character",
    "body-too-large",
    "unknown-field",
    "validation",
)
#: Parameters in the query or path, each with a type or bounds.
_PARAMS = ("validation",)

#: The details used in the examples: what a client typically sees for each type.
_EXAMPLE_DETAIL = {
    "unauthenticated": "the request is not signed (Signature-Input and Signature are missing)",
    "rate-limited": "too many requests from this device",
    "validation": "limit: Input should be less than or equal to 500",
    "not-found": "no such channel",
    "unavailable": "the database is unreachable",
}

SECURITY_SCHEME = "RequestSignature"
SECURITY_INPUT = "RequestSignatureInput"
#: The request-signing profile, as data (docs/api.md section 2 says the same in words).
SIGNATURE_PROFILE: dict[str, Any] = {
    "standard": "RFC 9421 HTTP Message Signatures",
    "label": "liaison",
    "alg": "ed25519",
    "keyid": "the device id: d_ followed by 26 base32 characters",
    "created": "Unix seconds, within 300 s of the server's clock",
    "nonce": "16-64 characters of [A-Za-z0-9_-], fresh for every request (accepted once)",
    "covered_components": ["@method", "@target-uri", "content-digest (on every request with a body)"],
    "content_digest": "RFC 9530 sha-256 over the exact body bytes",
    "target_uri": "scheme, authority, path and query exactly as sent (LIAISON_PUBLIC_URL's base when set)",
}
_SIGNATURE_DESCRIPTION = (
    "An RFC 9421 HTTP message signature by an enrolled device's Ed25519 key. A signed request "
    "carries three header fields, each exactly once: `Signature-Input` (label `liaison`: the "
    'covered components `("@method" "@target-uri")`, plus `"content-digest"` on every request '
    "with a body, and the parameters `created` (Unix seconds, within 300 s of the server's clock), "
    '`keyid` (the device id), `alg="ed25519"` (optional) and `nonce` (16-64 characters of '
    "`[A-Za-z0-9_-]`, fresh for every request: a nonce is accepted once)), `Signature` "
    "(`liaison=:<base64 Ed25519 signature over the RFC 9421 signature base>:`) and, with a body, "
    "`Content-Digest` (RFC 9530, `sha-256=:<base64>:` of the exact body bytes). The signed "
    "`@target-uri` is the scheme, authority, path and query exactly as sent. Nothing outside this "
    "profile is interpreted. docs/api.md, section 2, gives an example signature base; "
    "`x-liaison-signature-profile` gives the same profile as data."
)


def documented(
    ok: type[Doc] | None = None,
    *slugs: str,
    status: int = 200,
    media_type: str = "application/json",
    description: str = "Success",
) -> dict[str, Any]:
    """The keyword arguments of a route decorator that document it: its answer on success
    (`ok`'s schema and example, or a `media_type` that is not JSON) and the problem types
    particular to it. Returned values are not validated at run time (`response_model=None`)."""
    for slug in slugs:
        if slug not in PROBLEM_TYPES:
            raise KeyError(f"unknown problem type {slug}")
    success: dict[str, Any] = {"description": description}
    if ok is not None:
        success["model"] = ok  # its example is added by `complete` (FastAPI drops its nulls)
    elif media_type == "application/octet-stream":
        success["content"] = {media_type: {"schema": {"type": "string", "format": "binary"}}}
    else:
        success["content"] = {media_type: {"schema": {"type": "string"}}}
    return {
        "response_model": None,
        "status_code": status,
        "responses": {status: success},
        "openapi_extra": {_EXTRA: list(slugs)},
    }


def _example(slug: str, path: str) -> dict[str, Any]:
    detail = _EXAMPLE_DETAIL.get(slug, PROBLEM_TYPES[slug][1].lower())
    return Problem(slug, detail).to_json(path)


def _problem_responses(slugs: Iterable[str], path: str) -> dict[str, Any]:
    """The error responses for `slugs`, by status, each listing its types with an example."""
    by_status: dict[int, list[str]] = {}
    for slug in slugs:
        status = PROBLEM_TYPES[slug][0]
        if slug not in by_status.setdefault(status, []):
            by_status[status].append(slug)
    out: dict[str, Any] = {}
    for status in sorted(by_status):
        kinds = by_status[status]
        lines = "; ".join(f"`{s}`: {PROBLEM_TYPES[s][1]}" for s in kinds)
        headers = {}
        if status in (429, 503, 507):
            headers["Retry-After"] = {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 0},
            }
        out[str(status)] = {
            "description": f"Problem types: {lines}. Branch on `type` ({PROBLEM_BASE}<slug>).",
            **({"headers": headers} if headers else {}),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": _REF + "Problem"},
                    "examples": {
                        s: {"summary": PROBLEM_TYPES[s][1], "value": _example(s, path)} for s in kinds
                    },
                }
            },
        }
    return out


def _slugs_of(path: str, op: dict[str, Any]) -> list[str]:
    """Every problem type the operation can answer: its own, then those of its kind."""
    own = list(op.pop(_EXTRA, []))
    kinds: list[str] = list(_TRANSPORT)
    if op.get("security"):
        kinds += [*_SIGNED, *_DATABASE]
    if "requestBody" in op:
        kinds += _BODY
    if op.get("parameters"):
        kinds += _PARAMS
    return list(dict.fromkeys(own + kinds))


def _subclasses(cls: type[Doc]) -> list[type[Doc]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def complete(document: dict[str, Any], unsigned: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """The document FastAPI generated, made true: problem responses, the problem schema and
    the signature's security scheme (see the module doc). `unsigned`: (method, path) of the
    operations that FastAPI marks as signed but that this server serves without a signature
    (the log's entries with `LIAISON_AUDIT_PUBLIC`). Returns a new document."""
    doc = copy.deepcopy(document)
    public = {(method.lower(), path) for method, path in unsigned}
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = ProblemDocument.model_json_schema(ref_template=_REF + "{model}")
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's, never answered
        schemas.pop(unused, None)
    schemes = components.setdefault("securitySchemes", {})
    schemes[SECURITY_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": _SIGNATURE_DESCRIPTION,
        "x-liaison-signature-profile": SIGNATURE_PROFILE,
    }
    schemes[SECURITY_INPUT] = {
        "type": "apiKey",
        "in": "header",
        "name": "Signature-Input",
        "description": f"The `Signature-Input` of the same signature: see `{SECURITY_SCHEME}`.",
    }
    examples = {cls.__name__: cls.EXAMPLE for cls in _subclasses(Doc) if cls.EXAMPLE}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if (method, path) in public:
                op.pop("security", None)
            for response in op["responses"].values():
                body = response.get("content", {}).get("application/json", {})
                name = body.get("schema", {}).get("$ref", "").removeprefix(_REF)
                if name in examples:
                    body["example"] = copy.deepcopy(examples[name])
            if op.get("security"):
                op["security"] = [{SECURITY_SCHEME: [], SECURITY_INPUT: []}]
            responses = op["responses"]
            for status in [s for s in responses if s.startswith(("4", "5"))]:
                del responses[status]  # FastAPI's own 422 (never answered: ours is a problem)
            responses.update(_problem_responses(_slugs_of(path, op), path))
    return doc


# --- the viewers, from local files -----------------------------------------------------------

#: The viewers' files, by the name they are served under: (file in fastapi_offline/static,
#: media type). Nothing else is served from the package.
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "redoc.standalone.js": ("redoc.standalone.js", "text/javascript; charset=utf-8"),
    "favicon.png": ("favicon.png", "image/png"),
}
_ASSET_PREFIX = "/docs/assets/"


def _read_asset(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", ASSETS[name][0]).read_bytes()


def install_viewers(app: FastAPI, openapi_url: str) -> None:
    """Serve /docs (Swagger UI) and /redoc (ReDoc) and their assets under /docs/assets/."""
    cache: dict[str, bytes] = {}

    async def swagger(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=_ASSET_PREFIX + "swagger-ui-bundle.js",
            swagger_css_url=_ASSET_PREFIX + "swagger-ui.css",
            swagger_favicon_url=_ASSET_PREFIX + "favicon.png",
        )

    async def redoc(request: Request) -> Response:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=_ASSET_PREFIX + "redoc.standalone.js",
            redoc_favicon_url=_ASSET_PREFIX + "favicon.png",
            with_google_fonts=False,
        )

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            raise Problem("not-found", "no such file")
        if name not in cache:
            cache[name] = _read_asset(name)
        return Response(
            cache[name],
            media_type=ASSETS[name][1],
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    app.router.routes.extend(
        [
            Route("/docs", swagger, methods=["GET"], include_in_schema=False),
            Route("/redoc", redoc, methods=["GET"], include_in_schema=False),
            Route(_ASSET_PREFIX + "{name}", asset, methods=["GET"], include_in_schema=False),
        ]
    )
