"""Authentication before validation (issue 10, finding 8): on every path that needs a request
signature, a caller without a valid one gets 401 and learns nothing about what else is wrong
with its request. The paths are read from the service's own OpenAPI document, so a new route
is covered the day it is added."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import APIRoute

from liaison.service.api.routing import AuthFirstRoute
from tests.service.harness import World, assert_problem, coalition

#: Bodies that fail before any model sees them, or fail its validation.
BAD_BODIES: dict[str, bytes] = {
    "invalid JSON": b'{"x": ',
    "not an object": b"[1, 2]",
    "duplicate keys": b'{"a": 1, "a": 2}',
    "too deep": b"[" * 100 + b"]" * 100,
    "not UTF-8": b'{"a": "\xff"}',
    "unknown field": b'{"surely-not-a-field": 1}',
    "wrong types": b'{"envelope": 1, "principals": 2, "display_name": 3, "id": 4, "size": "x"}',
}
#: Query values that fail validation wherever they go.
BAD_QUERY_VALUES = ("-1", "x" * 2_000, "%00", str(2**70))
JUNK_SIGNATURE = "liaison=:" + "A" * 86 + "==:"


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _path(template: str) -> str:
    """The template with each parameter filled with a value no resource has."""
    out = template
    while "{" in out:
        start = out.index("{")
        out = out[:start] + "nothing-here" + out[out.index("}", start) + 1 :]
    return out


def _bad_requests(method: str, path: str, op: dict[str, Any]) -> list[tuple[str, str, bytes | None]]:
    """(what, url, body): each malformed in one way."""
    url = _path(path)
    out: list[tuple[str, str, bytes | None]] = [("no query or body", url, None)]
    if "requestBody" in op:
        out += [(f"body: {name}", url, raw) for name, raw in BAD_BODIES.items()]
    for param in op.get("parameters", []):
        if param["in"] == "query":
            out += [
                (f"query {param['name']}={v[:10]}", f"{url}?{param['name']}={v}", None)
                for v in BAD_QUERY_VALUES
            ]
    return out


async def _send(
    world: World, method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> httpx.Response:
    h = {"content-type": "application/json", **headers} if body is not None else headers
    return await world.http.request(method, url, content=body, headers=h)


async def test_every_signed_path_refuses_before_it_validates(world: World) -> None:
    c = await coalition(world)
    doc = (await world.http.get("/openapi.json")).json()
    assert "RequestSignature" in doc["components"]["securitySchemes"]
    secured = [(m, p, op) for m, p, op in _operations(doc) if op.get("security")]
    # Every path but the public ones (policy, enrolment, the log's public tiles and checkpoint,
    # health) is marked as needing a signature; and those are the paths that answer 401.
    public = {(m, p) for m, p, op in _operations(doc) if not op.get("security")}
    for method, path, _ in _operations(doc):
        if path.endswith("/stream"):
            continue  # an unsigned stream request is refused like any other, see test_stream
        r = await _send(world, method, _path(path), b"{}" if method != "GET" else None, {})
        assert (r.status_code == 401) == ((method, path) not in public), (method, path, r.status_code, r.text)
    assert len(secured) >= 20, [p for _, p, _ in secured]
    assert ("POST", "/v1/messages") in {(m, p) for m, p, _ in secured}

    # A device id that exists, named in a signature that does not verify.
    params = f'created=1;keyid="{c.usa.id}";nonce="{"n" * 22}"'
    forged = {"signature-input": f'liaison=("@method" "@target-uri");{params}', "signature": JUNK_SIGNATURE}
    for method, path, op in secured:
        for what, url, body in _bad_requests(method, path, op):
            r = await _send(world, method, url, body, {})
            problem = assert_problem(r, "unauthenticated")
            assert "signed" in problem["detail"], (method, url, what, problem)
            r = await _send(world, method, url, body, {"signature-input": "garbage((", "signature": "x"})
            assert_problem(r, "unauthenticated")
            r = await _send(world, method, url, body, forged)
            assert r.status_code == 401, (method, url, what, r.status_code, r.text)
            world.state.auth_failure_limiter.reset()  # the failures are limited per address


async def test_every_route_authenticates_first(world: World) -> None:
    """Every FastAPI route of the app is an `AuthFirstRoute` (a router added without
    `route_class=AuthFirstRoute` would parse a body before checking its signature)."""
    routes, pending = [], list(world.app.routes)
    while pending:  # FastAPI keeps an included router whole, as one route that holds it
        route = pending.pop()
        included = getattr(route, "original_router", None)
        pending.extend(included.routes if included is not None else ())
        if isinstance(route, APIRoute):
            routes.append(route)
    assert len(routes) > 20
    assert [r.path for r in routes if not isinstance(r, AuthFirstRoute)] == []
