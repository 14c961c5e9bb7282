"""POST /v1/messages is answered by `HotPaths` ahead of FastAPI's router. These tests send the
same requests to the service with and without that layer (FastAPI's own route behind it) and
demand the same answers: status, problem type and detail, headers that matter, and what was
written."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.service.harness import OPS, Coalition, World, another_service, coalition

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


def shape(r: httpx.Response) -> tuple[int, str | None, Any, str | None]:
    """What must be equal: the status, the content type, the problem (without `instance`,
    which must name the path) or the success body's keys, and Retry-After."""
    body = r.json()
    if r.headers["content-type"].startswith("application/problem+json"):
        body = {k: v for k, v in body.items() if k != "instance"}
        assert r.json()["instance"] == "/v1/messages"
    else:
        body = sorted(body)
    return r.status_code, r.headers.get("content-type"), body, r.headers.get("retry-after")


def unchanged(before: dict[str, int], after: dict[str, int]) -> bool:
    """Nothing written but (perhaps) the refusal's audit entry and its checkpoint."""

    def skip(d: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in d.items() if k not in ("log", "checkpoint")}

    return skip(before) == skip(after)


async def _submit_body(c: Coalition, to: list[str] | None = None) -> dict[str, Any]:
    env = await c.usa.envelope(OPS, LABEL, to=["ukr-analyst"])
    return {"envelope": env, **({"to": to} if to is not None else {})}


RAW_BODIES: dict[str, tuple[bytes, dict[str, str]]] = {
    "invalid JSON": (b'{"envelope": ', {"content-type": "application/json"}),
    "JSON array": (b"[1, 2]", {"content-type": "application/json"}),
    "JSON string": (b'"envelope"', {"content-type": "application/json"}),
    "not UTF-8": (b'{"envelope": "\xff\xfe"}', {"content-type": "application/json"}),
    "too deep": (b"[" * 100_000 + b"]" * 100_000, {"content-type": "application/json"}),
    "empty body": (b"", {"content-type": "application/json"}),
    "text/plain": (b'{"envelope": {}}', {"content-type": "text/plain"}),
    "no content type": (b'{"envelope": {}}', {}),
    "+json subtype": (b'{"envelope": 1}', {"content-type": "application/merge-patch+json"}),
    "JSON with parameters": (b'{"envelope": 1}', {"content-type": " Application/JSON ; charset=utf-8"}),
    "two slashes": (b'{"envelope": 1}', {"content-type": "application/json/x"}),
    "no subtype": (b'{"envelope": 1}', {"content-type": "application"}),
    "empty subtype": (b'{"envelope": 1}', {"content-type": "application/"}),
    "json-ish": (b'{"envelope": 1}', {"content-type": "application/jsonx"}),
    "unknown field": (b'{"envelope": {}, "extra": 1}', {"content-type": "application/json"}),
    "missing envelope": (b'{"to": ["ukr-analyst"]}', {"content-type": "application/json"}),
    "envelope not an object": (b'{"envelope": [1]}', {"content-type": "application/json"}),
    "bad to": (b'{"envelope": {}, "to": ["NOT A SLUG"]}', {"content-type": "application/json"}),
    "to not a list": (b'{"envelope": {}, "to": "ukr-analyst"}', {"content-type": "application/json"}),
    "malformed envelope": (b'{"envelope": {"v": 1}}', {"content-type": "application/json"}),
}


async def test_bad_bodies_get_the_same_answer(world: World) -> None:
    """Every case in turn on one world: each is refused and leaves at most its refusal's audit
    entry (checked), which changes nothing the next case meets; a world, a coalition and a
    second app per case cost 20 times the set-up (40 tests, ~51 s, against ~5 s)."""
    c = await coalition(world)
    async with another_service(world, hot_paths=False) as plain:
        for case in sorted(RAW_BODIES):
            raw, headers = RAW_BODIES[case]
            answers = []
            for w in (world, plain):
                before = await w.counts()
                r = await c.usa.on(w).request(
                    "POST", "/v1/messages", raw=raw, headers={**headers, "x-request-id": "same-id"}
                )
                assert 400 <= r.status_code < 500, (case, r.text)
                assert r.headers["x-request-id"] == "same-id", case
                assert unchanged(before, await w.counts()), case
                answers.append(shape(r))
            assert answers[0] == answers[1], (case, answers)


async def test_accepted_and_refused_submits_match(world: World) -> None:
    c = await coalition(world)
    async with another_service(world, hot_paths=False) as plain:
        for w in (world, plain):
            r = await c.usa.on(w).submit((await _submit_body(c))["envelope"], ["ukr-analyst"])
            assert r.status_code == 201, r.text
            assert r.headers["content-type"] == "application/json"
            w.verify_receipt(r.json(), await w.entry_bytes(r.json()["log_index"]))
        routed, hot = [], []
        for w, out in ((world, hot), (plain, routed)):
            # Refusals from each stage: the request signature, the envelope, the database.
            body = await _submit_body(c, ["ukr-analyst"])
            unsigned = await c.usa.on(w).request("POST", "/v1/messages", body, sign=False)
            replay = c.usa.on(w).build("POST", "/v1/messages", body)
            first = await w.http.send(replay)
            again = await w.http.send(c.usa.on(w).build("POST", "/v1/messages", body))
            replayed = await w.http.send(replay)
            tampered = dict(body["envelope"], channel="elsewhere")
            bad_env = await c.usa.on(w).submit(tampered, ["ukr-analyst"])
            eid = body["envelope"]["id"]  # each service gets its own envelope (one database)
            out += [
                json.loads(json.dumps(shape(x)).replace(eid, "ID"))
                for x in (unsigned, first, again, replayed, bad_env)
            ]
            assert first.status_code == 201
        assert hot == routed
    types = [b["type"].rpartition(":")[2] if isinstance(b, dict) else s for s, _, b, _ in hot]
    assert types == [
        "unauthenticated",
        201,
        "duplicate-envelope",
        "replayed-request",
        "bad-envelope-signature",
    ], types


async def test_oversize_body_is_refused_before_it_is_read(world: World) -> None:
    c = await coalition(world)
    limit = world.state.settings.max_body_bytes
    raw = json.dumps({"envelope": {"pad": "x" * limit}}).encode()
    answers = []
    async with another_service(world, hot_paths=False) as plain:
        for w in (world, plain):
            r = await c.usa.on(w).request(
                "POST", "/v1/messages", raw=raw, headers={"content-type": "application/json"}
            )
            answers.append((r.status_code, r.json()["type"]))
    assert answers[0] == answers[1] == (413, answers[0][1])
    assert answers[0][1].endswith("body-too-large")
