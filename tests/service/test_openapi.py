"""The OpenAPI document tells the truth (issue 11, item 13): valid OpenAPI 3.1; a success model
and the RFC 9457 problems it can answer on every operation; every example valid against its
schema; the request signature as a security scheme; the viewers from local files only; and the
real answers of a running service (SQLite and PostgreSQL) valid against the declared models.
The schemathesis run (test_schemathesis.py) also checks every answer's status and problem type
against the document, over every operation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from openapi_spec_validator import validate as validate_openapi

from liaison.crypto.labels import parse_label
from liaison.service.api.openapi import ASSETS, SECURITY_SCHEME
from liaison.service.problems import PROBLEM_BASE, PROBLEM_TYPES
from tests.service.harness import OPS, World, assert_problem, coalition, world_on

METHODS = ("get", "put", "post", "patch", "delete")


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for `schema`, its $refs
    resolved in the document's components."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def problems_declared(op: dict[str, Any], status: int) -> set[str]:
    """The problem types an operation declares for `status` (the keys of its examples)."""
    content = op["responses"].get(str(status), {}).get("content", {})
    return set(content.get("application/problem+json", {}).get("examples", {}))


def check_answer(doc: dict[str, Any], method: str, path: str, r: httpx.Response) -> None:
    """`r` is declared for the operation: its status, and for JSON its body against the
    schema; a problem's type among those declared for its status."""
    op = doc["paths"][path][method.lower()]
    declared = op["responses"].get(str(r.status_code))
    assert declared is not None, f"{method} {path} answered {r.status_code}, which it does not declare"
    media = r.headers["content-type"].split(";")[0].strip()
    content = declared.get("content", {})
    assert media in content or r.headers["content-type"] in content, (method, path, media, list(content))
    if media in ("application/json", "application/problem+json"):
        validator(doc, content[media]["schema"]).validate(r.json())
    if r.status_code >= 400:
        slug = r.json()["type"].removeprefix(PROBLEM_BASE)
        assert slug in problems_declared(op, r.status_code), (method, path, slug)


async def _doc(world: World) -> dict[str, Any]:
    r = await world.http.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


async def test_the_document_is_valid_openapi_and_every_operation_is_described(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path) as world:
        doc = await _doc(world)
    validate_openapi(doc)
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    count = 0
    for method, path, op in operations(doc):
        count += 1
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert len(ok) == 1, (method, path, ok)
        content = op["responses"][ok[0]]["content"]
        assert content, (method, path)
        for media, body in content.items():
            assert "schema" in body, (method, path, media)
            if media == "application/json":
                assert body["schema"].get("$ref", "").startswith("#/components/schemas/"), (method, path)
                assert "example" in body, (method, path)
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        assert {"400", "408", "431"} <= errors.keys(), (method, path)  # the transport's, everywhere
        for status, response in errors.items():
            (media,) = response["content"]
            assert media == "application/problem+json", (method, path, status)
            assert response["content"][media]["schema"] == {"$ref": "#/components/schemas/Problem"}
            slugs = problems_declared(op, int(status))
            assert slugs and all(PROBLEM_TYPES[s][0] == int(status) for s in slugs), (method, path, status)
            if status in ("429", "503", "507"):
                assert "Retry-After" in response["headers"], (method, path, status)
        if op.get("security"):
            assert op["security"] == [{SECURITY_SCHEME: [], "RequestSignatureInput": []}]
            assert {"unauthenticated", "bad-request-signature"} <= problems_declared(op, 401), path
            assert "rate-limited" in problems_declared(
                op, 429
            ) and "misdirected-request" in problems_declared(op, 421)
        if "requestBody" in op:
            assert {"unknown-field", "validation"} <= problems_declared(op, 422), (method, path)
            assert "body-too-large" in problems_declared(op, 413) and "duplicate-key" in problems_declared(
                op, 400
            )
    assert count >= 27
    messages = doc["paths"]["/v1/messages"]["post"]
    assert {"duplicate-envelope"} <= problems_declared(messages, 409)
    assert {"too-large", "body-too-large"} <= problems_declared(messages, 413)
    assert "storage-full" in problems_declared(messages, 507)
    assert "not-recipient" in problems_declared(doc["paths"]["/v1/messages/{message_id}"]["get"], 404)


async def test_every_documented_example_is_valid_against_its_schema(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path) as world:
        doc = await _doc(world)
    checked = 0
    for method, path, op in operations(doc):
        for status, response in op["responses"].items():
            for media, body in response.get("content", {}).items():
                examples = [body["example"]] if "example" in body else []
                examples += [e["value"] for e in body.get("examples", {}).values()]
                for example in examples:
                    errors = list(validator(doc, body["schema"]).iter_errors(example))
                    assert not errors, (method, path, status, media, errors[0].message)
                    checked += 1
    assert checked > 300  # a success example on every JSON path, a problem example per type and path

    # The check is not vacuous: an example that breaks its schema is caught.
    policy = doc["paths"]["/v1/policy"]["get"]["responses"]["200"]["content"]["application/json"]
    broken = {**policy["example"], "version": "one"}
    assert list(validator(doc, policy["schema"]).iter_errors(broken))
    problem = {"$ref": "#/components/schemas/Problem"}
    assert list(validator(doc, problem).iter_errors({"type": "about:blank", "title": "t", "status": 400}))


async def test_the_request_signature_is_a_security_scheme(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path) as world:
        doc = await _doc(world)
    schemes = doc["components"]["securitySchemes"]
    scheme = schemes[SECURITY_SCHEME]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Signature")
    assert schemes["RequestSignatureInput"]["name"] == "Signature-Input"
    for words in ("RFC 9421", "Content-Digest", "nonce", "created", "keyid", "@target-uri", "ed25519"):
        assert words in scheme["description"], words
    profile = scheme["x-liaison-signature-profile"]
    assert profile["label"] == "liaison" and profile["alg"] == "ed25519"
    public = {(m, p) for m, p, op in operations(doc) if not op.get("security")}
    assert ("GET", "/v1/policy") in public and ("POST", "/v1/enrol") in public
    assert ("POST", "/v1/messages") not in public and ("GET", "/v1/inbox") not in public


async def test_the_viewers_load_nothing_from_elsewhere(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path) as world:
        for page in ("/docs", "/redoc"):
            r = await world.http.get(page)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""", r.text)
            assert urls, page
            for url in urls:
                assert url.startswith("/"), (page, url)  # this server's own: no CDN, no fonts
                got = await world.http.get(url)
                assert got.status_code == 200 and got.content, (page, url)
            assert "cdn." not in r.text and "fonts.googleapis" not in r.text
        for name, (_, media) in ASSETS.items():
            r = await world.http.get(f"/docs/assets/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == media and len(r.content) > 1000
            assert r.headers["x-content-type-options"] == "nosniff"
        for bad in ("/docs/assets/../app.py", "/docs/assets/LICENSE", "/docs/assets/core.py"):
            assert_problem(await world.http.get(bad), "not-found")


async def test_real_answers_match_the_declared_models(world: World) -> None:
    """The main paths, answered by the running service, each checked against the document."""
    doc = await _doc(world)
    c = await coalition(world)
    label = parse_label("SECRET//AIRDEF//REL TO UKR, USA", world.policy)
    seen: list[tuple[str, str, int]] = []

    def check(method: str, path: str, r: httpx.Response) -> httpx.Response:
        check_answer(doc, method, path, r)
        seen.append((method, path, r.status_code))
        return r

    check("GET", "/v1/policy", await world.http.get("/v1/policy"))
    check("GET", "/v1/log-key", await world.http.get("/v1/log-key"))
    check("GET", "/healthz", await world.http.get("/healthz"))
    check("GET", "/readyz", await world.http.get("/readyz"))
    check("GET", "/v1/me", await c.ukr.get("/v1/me"))
    check("GET", "/v1/me", await world.http.get("/v1/me"))  # 401 unauthenticated
    check(
        "GET", "/v1/directory/devices", await c.ukr.get(f"/v1/directory/devices?principal={c.usa.principal}")
    )
    check("GET", "/v1/channels", await c.ukr.get("/v1/channels"))
    query = f"label={label.text()}"
    check(
        "GET",
        "/v1/channels/{channel_id}/recipients",
        await c.usa.get(f"/v1/channels/{OPS}/recipients?{query}"),
    )
    check(
        "GET",
        "/v1/channels/{channel_id}/recipients",
        await c.fra.get(f"/v1/channels/{OPS}/recipients?{query}"),
    )  # 403 clearance
    check(
        "GET",
        "/v1/channels/{channel_id}/recipients",
        await c.usa.get(f"/v1/channels/nope/recipients?{query}"),
    )  # 404 not-found
    env = await c.usa.envelope(OPS, label, b"hello")
    sent = check("POST", "/v1/messages", await c.usa.submit(env))
    check("POST", "/v1/messages", await c.usa.submit(env))  # 409 duplicate-envelope
    mid = sent.json()["id"]
    check("GET", "/v1/messages/{message_id}", await c.ukr.get(f"/v1/messages/{mid}"))
    check("GET", "/v1/messages/{message_id}", await c.fra.get(f"/v1/messages/{mid}"))  # 404 not-recipient
    check("POST", "/v1/messages/{message_id}/ack", await c.ukr.post(f"/v1/messages/{mid}/ack"))
    check("GET", "/v1/inbox", await c.ukr.get("/v1/inbox?after=0&limit=10"))
    check("GET", "/v1/inbox", await c.ukr.get("/v1/inbox?limit=501"))  # 422 validation
    check("GET", "/v1/audit/messages/{message_id}", await c.usa.get(f"/v1/audit/messages/{mid}"))
    check("GET", "/v1/audit/checkpoint", await world.http.get("/v1/audit/checkpoint"))
    check("GET", "/v1/audit/entries", await world.root.get("/v1/audit/entries?start=0"))
    check("GET", "/v1/audit/entries", await c.ukr.get("/v1/audit/entries?start=0"))  # 403 not-auditor
    size = await world.log_size()
    check(
        "GET",
        "/v1/audit/proof/inclusion",
        await world.http.get(f"/v1/audit/proof/inclusion?index=1&size={size}"),
    )
    check(
        "GET",
        "/v1/audit/proof/consistency",
        await world.http.get(f"/v1/audit/proof/consistency?old=2&new={size}"),
    )
    check("GET", "/v1/audit/tile/{rest}", await world.http.get("/v1/audit/tile/0/000.p/1"))

    admin = world.root
    person = {"id": "gbr-x", "display_name": "X", "nation": "GBR", "clearance": "SECRET"}
    check("POST", "/v1/admin/principals", await admin.post("/v1/admin/principals", person))
    check("POST", "/v1/admin/principals", await admin.post("/v1/admin/principals", person))  # 409 conflict
    check("POST", "/v1/admin/principals", await c.ukr.post("/v1/admin/principals", person))  # 403 not-admin
    check("POST", "/v1/admin/principals", await admin.post("/v1/admin/principals", {**person, "x": 1}))  # 422
    check(
        "PATCH",
        "/v1/admin/principals/{principal_id}",
        await admin.request("PATCH", "/v1/admin/principals/gbr-x", {"display_name": "Y"}),
    )
    code = check(
        "POST",
        "/v1/admin/principals/{principal_id}/enrolment-codes",
        await admin.post("/v1/admin/principals/gbr-x/enrolment-codes"),
    )
    gbr = await world.enrol_with_code("gbr-x", code.json()["code"])
    check("GET", "/v1/admin/devices", await admin.get("/v1/admin/devices?principal=gbr-x"))
    check(
        "POST", "/v1/admin/devices/{device_id}/revoke", await admin.post(f"/v1/admin/devices/{gbr.id}/revoke")
    )
    check("GET", "/v1/me", await gbr.get("/v1/me"))  # 403 device-revoked
    channel = {"id": "air", "ceiling": "SECRET//AIRDEF//REL TO UKR, USA"}
    check("POST", "/v1/admin/channels", await admin.post("/v1/admin/channels", channel))
    check(
        "POST",
        "/v1/admin/channels",
        await admin.post("/v1/admin/channels", {**channel, "id": "bad", "ceiling": "TOP"}),
    )
    members = {"principals": [c.ukr.principal, c.usa.principal]}
    check(
        "PUT",
        "/v1/admin/channels/{channel_id}/members",
        await admin.request("PUT", "/v1/admin/channels/air/members", members),
    )
    statuses = {status for _, _, status in seen}
    assert {200, 201, 400, 401, 403, 404, 409, 422} <= statuses, statuses


async def test_a_public_log_is_documented_as_public(tmp_path: Path) -> None:
    """With LIAISON_AUDIT_PUBLIC the entries need no signature, and the document says so."""
    async with world_on("sqlite", tmp_path, audit_public=True) as world:
        doc = await _doc(world)
        public = {(m, p) for m, p, op in operations(doc) if not op.get("security")}
        assert {("GET", "/v1/audit/entries"), ("GET", "/v1/audit/tile/entries/{rest}")} <= public
        assert ("GET", "/v1/audit/messages/{message_id}") not in public  # always signed
        check_answer(doc, "GET", "/v1/audit/entries", await world.http.get("/v1/audit/entries?start=0"))
    async with world_on("sqlite", tmp_path) as world:
        doc = await _doc(world)
        assert doc["paths"]["/v1/audit/entries"]["get"]["security"]


def test_the_routers_add_nothing_that_their_shared_routes_would_drop() -> None:
    """`create_app` serves each router's routes as they are, not through `include_router`
    (which built them again for every app): a router's own dependencies, tags, responses,
    callbacks or response class would then be lost without a word, so a router has none."""
    from fastapi.responses import JSONResponse

    from liaison.service import app as service_app

    for router in service_app._ROUTERS:
        assert router.dependencies == [] and router.tags == [] and router.responses == {}, router.prefix
        assert router.callbacks == [] and not router.deprecated and router.include_in_schema, router.prefix
        assert getattr(router.default_response_class, "value", None) is JSONResponse, router.prefix
        # Every route already carries the router's prefix in its path.
        paths = [str(getattr(r, "path", "")) for r in router.routes]
        assert all(p.startswith(router.prefix) for p in paths), router.prefix
