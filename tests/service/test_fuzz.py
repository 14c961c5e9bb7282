"""Fuzzing a few endpoints with hypothesis: malformed input is always a problem+json 4xx, never
a 500 (or a 503 from a failed write batch), and the service keeps working afterwards."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from liaison.service.problems import PROBLEM_BASE
from tests.service.harness import OPS, World, coalition

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither (httpx refuses them)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ENVELOPE_FIELDS = [
    "v",
    "id",
    "channel",
    "sender",
    "created",
    "label",
    "content_type",
    "suite",
    "ciphertext",
    "recipients",
    "signatures",
]


def _is_problem(status: int, headers: Any, text: str) -> None:
    assert 400 <= status < 500, (status, text[:300])
    assert headers["content-type"].startswith("application/problem+json")
    body = json.loads(text)
    assert body["type"].startswith(PROBLEM_BASE) and body["status"] == status
    assert "Traceback" not in text


async def _still_works(world: World) -> None:
    assert (await world.root.get("/v1/me")).status_code == 200
    assert (await world.http.get("/readyz")).status_code == 200


@FUZZ
@given(data=st.data())
async def test_fuzz_submit(world: World, data: st.DataObject) -> None:
    if not hasattr(world, "_fuzz"):
        world._fuzz = await coalition(world)  # type: ignore[attr-defined]
        world._env = await world._fuzz.usa.envelope(  # type: ignore[attr-defined]
            OPS, "SECRET//AIRDEF//REL TO UKR, USA"
        )
    usa = world._fuzz.usa  # type: ignore[attr-defined]
    env = dict(world._env)  # type: ignore[attr-defined]
    # Start from a valid envelope and break one or two fields, or add one, or drop one.
    for _ in range(data.draw(st.integers(1, 2))):
        field = data.draw(st.sampled_from([*ENVELOPE_FIELDS, "extra"]))
        if data.draw(st.booleans()):
            env[field] = data.draw(json_values)
        else:
            env.pop(field, None)
    assume(env != world._env)  # type: ignore[attr-defined]  # dropping an absent field breaks nothing
    body: Any = {"envelope": env}
    if data.draw(st.booleans()):
        body["to"] = data.draw(json_values)
    if data.draw(st.integers(0, 9)) == 0:
        body = data.draw(json_values)
    # Dropping a field the envelope lacks (`extra`) leaves it valid: not a malformed input.
    assume(body != {"envelope": world._env})  # type: ignore[attr-defined]
    r = await usa.post("/v1/messages", body)
    _is_problem(r.status_code, r.headers, r.text)


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(
            ["id", "display_name", "nation", "clearance", "compartments", "roles", "kind", "status", "x"]
        ),
        json_values,
        max_size=8,
    )
)
async def test_fuzz_admin_principals(world: World, body: dict[str, Any]) -> None:
    r = await world.root.post("/v1/admin/principals", body)
    if r.status_code == 201:  # a valid principal by chance: fine, and made exactly so
        assert r.json()["id"] == body["id"]
        return
    _is_problem(r.status_code, r.headers, r.text)
    r = await world.root.request("PATCH", "/v1/admin/principals/root", body)
    _is_problem(r.status_code, r.headers, r.text)


@FUZZ
@given(body=json_values, raw=st.binary(max_size=200))
async def test_fuzz_enrol(world: World, body: Any, raw: bytes) -> None:
    r = await world.http.post("/v1/enrol", json={"code": "ABCDE-FGHIJ", "bundle": body})
    _is_problem(r.status_code, r.headers, r.text)
    r = await world.http.post("/v1/enrol", content=raw, headers={"content-type": "application/json"})
    _is_problem(r.status_code, r.headers, r.text)
    world.state.enrol_limiter.reset()  # stay under the enrolment rate limit


@FUZZ
@given(
    label=st.text(max_size=120),
    after=st.text(max_size=30),
    limit=st.text(max_size=30),
    mid=st.text(min_size=1, max_size=80).filter(lambda m: m.strip(".")),  # not "." or ".."
    sig=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
)
async def test_fuzz_queries_paths_and_signature_headers(
    world: World, label: str, after: str, limit: str, mid: str, sig: str
) -> None:
    if not hasattr(world, "_fuzz"):
        world._fuzz = await coalition(world)  # type: ignore[attr-defined]
    usa = world._fuzz.usa  # type: ignore[attr-defined]
    r = await usa.get(f"/v1/channels/{OPS}/recipients?label={quote(label)}")
    assert r.status_code == 200 or _is_problem(r.status_code, r.headers, r.text) is None
    r = await usa.get(f"/v1/inbox?after={quote(after)}&limit={quote(limit)}")
    assert r.status_code == 200 or _is_problem(r.status_code, r.headers, r.text) is None
    r = await usa.get(f"/v1/messages/{quote(mid, safe='')}")
    _is_problem(r.status_code, r.headers, r.text)
    r = await usa.post(f"/v1/messages/{quote(mid, safe='')}/ack")
    _is_problem(r.status_code, r.headers, r.text)
    headers = {"signature-input": sig, "signature": "liaison=:AAAA:"}
    r = await world.http.get("/v1/inbox", headers=headers)
    _is_problem(r.status_code, r.headers, r.text)
    world.state.limiter.reset()  # stay under the per-device rate limit


async def test_after_fuzzing_the_service_still_works(world: World) -> None:
    await _still_works(world)
