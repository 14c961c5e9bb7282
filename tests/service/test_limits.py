"""Limits and bad input: body size (before reading), rate limits, strict models, problem+json
everywhere, no 500 for malformed input, and nothing partially written when a request fails."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from liaison.service.api.middleware import RequestMiddleware
from liaison.service.metrics import Metrics
from tests.service.harness import (
    BASE,
    NO_KEY,
    OPS,
    World,
    assert_problem,
    assert_refused,
    coalition,
    world_on,
)

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
BAD_SIGNATURE = "liaison=:" + "A" * 86 + "==:"  # well-formed, verifies for no key


# --- the request body limit ----------------------------------------------------------------


async def test_declared_oversize_body_is_refused_without_reading_it() -> None:
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append("app")

    async def receive() -> Any:
        called.append("receive")
        raise AssertionError("the body must not be read")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mw = RequestMiddleware(app, max_body=1000, metrics=Metrics())
    for length in (b"1001", b"99999999999999999999", b"-1", b"12abc"):
        sent.clear()
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/messages",
            "headers": [(b"content-length", length)],
        }
        await mw(scope, receive, send)
        assert called == [] and sent[0]["status"] == 413
        assert json.loads(sent[1]["body"])["type"] == "urn:liaison:problem:body-too-large"


async def test_oversize_body_over_http(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with world_on(backend, tmp_path, max_body_bytes=64 * 1024) as world:
        c = await coalition(world)
        big = await c.usa.envelope(OPS, SECRET_AIRDEF, b"x" * 70_000)
        # Refused before the body is read, so before anyone is authenticated: not an audit
        # entry (there is no actor), but the access log and the metrics record it.
        with caplog.at_level(logging.INFO, logger="liaison.access"):
            await assert_refused(world, lambda: c.usa.submit(big), "body-too-large", entry=None)
        logged = [r.fields for r in caplog.records if r.name == "liaison.access"]
        assert [(e["path"], e["status"]) for e in logged] == [("/v1/messages", 413)]
        small = await c.usa.envelope(OPS, SECRET_AIRDEF, b"x" * 30_000)
        assert (await c.usa.submit(small)).status_code == 201
        async with world.served() as url:
            host, port = url.removeprefix("http://").split(":")
            # A declared length far over the limit, and no body at all: the server answers at
            # once instead of waiting for 50 MB that will never come.
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: "
                b"application/json\r\ncontent-length: 50000000\r\n\r\n{"
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.read(4096), timeout=5)
            writer.close()
            assert head.startswith(b"HTTP/1.1 413") and b"application/problem+json" in head
            # A streamed (chunked) body is counted as it arrives and cut at the limit.

            async def chunks() -> Any:
                for _ in range(100):
                    yield b" " * 4096

            async with httpx.AsyncClient(base_url=url) as http:
                r = await http.post(
                    "/v1/enrol", content=chunks(), headers={"content-type": "application/json"}
                )
            assert_problem(r, "body-too-large")
        assert (await world.counts())["message"] == 1


# --- rate limits ---------------------------------------------------------------------------


async def test_per_device_rate_limit(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, rate_limit_per_second=0.2, rate_limit_burst=40) as w:
        a = await w.principal("usa-a1", "USA", "SECRET")
        b = await w.principal("usa-a2", "USA", "SECRET")
        statuses = [(await a.get("/v1/me")).status_code for _ in range(41)]
        assert statuses == [200] * 40 + [429]
        r = await a.get("/v1/me")
        body = assert_problem(r, "rate-limited")
        assert int(r.headers["retry-after"]) >= 1 and "device" in body["detail"]
        assert (await b.get("/v1/me")).status_code == 200  # per device, not global
        # Forged requests in a device's name (anyone can read device ids in the directory)
        # do not spend that device's allowance.
        for _ in range(45):
            forged = b.build("GET", "/v1/me")
            forged.headers["signature"] = BAD_SIGNATURE
            assert (await w.http.send(forged)).status_code in (401, 429)
        assert (await b.get("/v1/me")).status_code == 200


async def test_failed_signatures_are_rate_limited_per_client(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, auth_failure_rate_per_second=0.2, auth_failure_burst=5) as w:
        a = await w.principal("usa-a1", "USA", "SECRET")
        bad = []
        for _ in range(7):
            req = a.build("GET", "/v1/me")
            req.headers["signature"] = BAD_SIGNATURE
            bad.append((await w.http.send(req)).status_code)
        assert bad == [401] * 5 + [429] * 2
        denied = await w.entries("access.denied")
        assert denied == []  # the log is not flooded either, nor is the device blamed


async def test_enrolment_attempts_are_rate_limited(world: World) -> None:
    statuses = []
    for _ in range(22):
        r = await world.http.post("/v1/enrol", json={"invitation_key": NO_KEY, "bundle": {}})
        statuses.append(r.status_code)
    first = statuses.index(429)
    # A burst of 20 per address: root's enrolment took two (its invitation's lookup and its
    # challenge; the enrolment itself is refunded).
    assert first == 18 and set(statuses[:first]) == {422} and set(statuses[first:]) == {429}


# --- strict models, problem+json -----------------------------------------------------------


async def test_strict_models_refuse_unknown_fields(world: World) -> None:
    c = await coalition(world)
    root = world.root
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    cases = [
        (
            "POST",
            "/v1/admin/principals",
            {"id": "usa-x", "display_name": "x", "nation": "USA", "clearance": "SECRET", "admin": True},
        ),
        ("PATCH", "/v1/admin/principals/usa-analyst", {"clearance": "SECRET", "nation": "UKR"}),
        ("POST", "/v1/admin/channels", {"id": "c9", "ceiling": "SECRET//REL TO USA", "x": 1}),
        ("PUT", f"/v1/admin/channels/{OPS}/members", {"principals": [], "owner": "root"}),
        ("POST", "/v1/messages", {"envelope": env, "priority": "flash"}),
    ]
    for method, path, body in cases:
        problem = await assert_refused(
            world, lambda m=method, p=path, b=body: root.request(m, p, b), "unknown-field", entry=None
        )
        assert "unknown field" in problem["detail"]
    r = await world.http.post("/v1/enrol", json={"invitation_key": NO_KEY, "bundle": {}, "admin": True})
    assert_problem(r, "unknown-field")


async def test_malformed_input_is_a_problem_never_a_500(world: World) -> None:
    c = await coalition(world)
    root = world.root
    checks: list[tuple[httpx.Response, str]] = [
        (await root.request("POST", "/v1/admin/principals", raw=b"{not json"), "malformed-request"),
        (await root.request("POST", "/v1/admin/principals", raw=b"[1, 2]"), "malformed-request"),
        (
            await root.request(
                "POST",
                "/v1/admin/principals",
                {"id": "X Y", "display_name": "x", "nation": "USA", "clearance": "SECRET"},
            ),
            "validation",
        ),
        (
            await root.request(
                "POST",
                "/v1/admin/principals",
                {"id": "ok", "display_name": "x", "nation": "ZZZ", "clearance": "SECRET"},
            ),
            "unknown-nation",
        ),
        (
            await root.request(
                "POST",
                "/v1/admin/principals",
                {"id": "ok", "display_name": "x", "nation": "USA", "clearance": "COSMIC"},
            ),
            "unknown-level",
        ),
        (await root.request("PATCH", "/v1/admin/principals/usa-analyst", {}), "validation"),
        (await root.request("PATCH", "/v1/admin/principals/nobody", {"display_name": "x"}), "not-found"),
        (
            await root.request("POST", "/v1/admin/channels", {"id": "c1", "ceiling": "SECRET"}),
            "malformed-label",
        ),
        (
            await root.request("POST", "/v1/admin/channels", {"id": OPS, "ceiling": "SECRET//REL TO USA"}),
            "conflict",
        ),
        (await root.request("POST", "/v1/messages", {"envelope": "x"}), "validation"),
        (await root.request("POST", "/v1/messages", {"envelope": {}}), "malformed-envelope"),
        (await root.request("POST", "/v1/messages", {}), "validation"),
        (await root.request("GET", "/v1/messages/not-a-uuid"), "not-recipient"),
        (await root.request("GET", "/v1/directory/devices"), "validation"),
        (await root.request("GET", "/v1/directory/devices?device=nope"), "validation"),
        (await root.request("DELETE", "/v1/inbox"), "method-not-allowed"),
        (await root.request("GET", "/v1/nowhere"), "not-found"),
        (await world.http.get("/v1/inbox"), "unauthenticated"),
        (
            await world.http.get("/v1/inbox", headers={"signature-input": "garbage((", "signature": "x"}),
            "unauthenticated",
        ),
        (
            await world.http.post("/v1/enrol", json={"invitation_key": NO_KEY, "bundle": {"bundle": 1}}),
            "bad-bundle",
        ),
        (
            await world.http.post(
                "/v1/enrol", content=b"\xff\xfe", headers={"content-type": "application/json"}
            ),
            "malformed-request",
        ),
    ]
    for r, slug in checks:
        assert_problem(r, slug)
    # An unknown device id in a well-formed signature is unauthenticated, and not logged.
    other = c.usa.build("GET", "/v1/inbox")
    other.headers["signature-input"] = other.headers["signature-input"].replace(c.usa.id, "d_" + "a" * 26)
    await assert_refused(world, lambda: world.http.send(other), "unauthenticated", entry=None)


async def test_huge_paths_and_ids_are_refused_cleanly(world: World) -> None:
    c = await coalition(world)
    long_id = "a" * 65_000  # httpx's limit is 65536
    assert_problem(await c.usa.get(f"/v1/messages/{long_id}"), "not-recipient")
    # A bad signature naming a real device, on a huge path (of control characters, which JSON
    # escapes to six bytes each): refused, and (unverified) logged nowhere.
    req = c.usa.build("GET", "/v1/messages/" + "%01" * 21_000)
    req.headers["signature"] = BAD_SIGNATURE
    await assert_refused(world, lambda: world.http.send(req), "bad-request-signature", entry=None)
    assert (await c.usa.send(OPS, SECRET_AIRDEF)).status_code == 201  # the service is fine


# --- nothing partially written -------------------------------------------------------------


async def test_refused_admin_changes_leave_no_trace(world: World) -> None:
    await coalition(world)
    before = await world.counts()
    r = await world.root.request(
        "PUT", f"/v1/admin/channels/{OPS}/members", {"principals": ["usa-analyst", "nobody"]}
    )
    assert_problem(r, "not-found")
    r = await world.root.request(
        "PATCH", "/v1/admin/principals/ukr-analyst", {"clearance": "SECRET", "compartments": ["NOPE"]}
    )
    assert_problem(r, "unknown-compartment")
    assert await world.counts() == {
        **before,
        "log": before["log"] + 2,
        "checkpoint": before["checkpoint"] + 1,
    }  # the denial only, and its batch's map.head
    members = (await world.root.get("/v1/channels")).json()["channels"][0]["members"]
    assert members == ["fra-analyst", "ukr-analyst", "ukr-sensor", "usa-analyst"]
    me = (await world.root.get("/v1/admin/devices?principal=ukr-analyst")).json()
    assert me["devices"][0]["principal"] == "ukr-analyst"


async def test_refusals_in_a_batch_do_not_touch_their_neighbours(world: World) -> None:
    c = await coalition(world)
    good = [await c.usa.envelope(OPS, SECRET_AIRDEF, f"ok {i}".encode()) for i in range(6)]
    bad = [await c.usa.envelope(OPS, SECRET_AIRDEF, recipients=[c.usa.keys.public]) for _ in range(6)]
    before = await world.counts()
    batches = world.state.writer.batches
    results = await asyncio.gather(*(c.usa.submit(e) for pair in zip(good, bad, strict=True) for e in pair))
    assert [r.status_code for r in results] == [201, 422] * 6
    after = await world.counts()
    assert after["message"] == before["message"] + 6
    assert after["delivery"] == before["delivery"] + 12
    # Each batch ends with its map.head (protocol 9.6).
    assert after["log"] == before["log"] + 12 + (world.state.writer.batches - batches)
    assert world.state.writer.batches - batches < 24  # they really shared transactions
    accepted = {e["id"] for e in await world.entries("message.accepted", before["log"])}
    rejected = {e["id"] for e in await world.entries("message.rejected", before["log"])}
    assert accepted == {e["id"] for e in good} and rejected == {e["id"] for e in bad}


async def test_public_paths_need_no_signature(world: World) -> None:
    for path in ("/healthz", "/readyz", "/v1/policy"):  # /metrics: on its own listener
        assert (await world.http.get(BASE + path)).status_code == 200
