"""Forged requests frame nobody and flood nothing (hardening issue, item 9).

Device ids are public (the directory lists them), so anyone can send requests that *name* a
real device and carry a signature that does not verify. 1,000 of them once wrote 1,000
permanent `access.denied` entries blaming that device, without a single 429. A request whose
signature does not verify is now never attributed to the device it names: nothing is written
to the audit log for it (the operator sees a counter and a bounded log line), and failures
are limited per client address before anything else happens.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from liaison.service.app import create_metrics_app
from tests.service.harness import OPS, World, assert_problem, coalition, world_on

BAD_SIGNATURE = "liaison=:" + "A" * 86 + "==:"  # well-formed, verifies for no key
SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
#: `LIAISON_AUTH_FAILURE_BURST`'s and `..._RATE_PER_SECOND`'s documented defaults.
BURST, RATE = 20, 1.0


async def test_1000_forged_requests_write_nothing_and_are_throttled(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    c = await coalition(world)
    before = await world.counts()
    statuses = []
    start = time.monotonic()
    with caplog.at_level(logging.INFO):
        for _ in range(1000):
            forged = c.usa.build("GET", "/v1/me")  # names USA's device, signed by nobody
            forged.headers["signature"] = BAD_SIGNATURE
            statuses.append((await world.http.send(forged)).status_code)
    elapsed = time.monotonic() - start
    # Not one entry: none names the device (as actor or `who`), none names anybody.
    assert await world.counts() == before
    # Throttled per client address: a burst of 401s, then 429s (a few more 401s as the bucket
    # refills during the run).
    assert statuses[:BURST] == [401] * BURST, statuses[: BURST + 5]
    assert statuses.count(401) <= BURST + RATE * elapsed + 1, statuses.count(401)
    assert set(statuses) == {401, 429}
    # Each failure that was not throttled is one warning line for the operator, naming the
    # address and the reason, never the device the request claimed to be.
    lines = [r for r in caplog.records if r.name == "liaison.auth"]
    assert len(lines) == statuses.count(401)
    for r in lines:
        assert r.levelno == logging.WARNING
        assert c.usa.id not in r.getMessage() + json.dumps(getattr(r, "fields", {}))
    # And a counter of every failure, throttled or not, by reason.
    transport = httpx.ASGITransport(app=create_metrics_app(world.app))  # its own listener
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as http:
        metrics = (await http.get("/metrics")).text
    assert 'liaison_request_signature_failures_total{reason="bad-request-signature"} 1000.0' in metrics
    # The named device is not locked out, nor is anyone else at that address.
    assert (await c.usa.get("/v1/me")).status_code == 200
    assert (await c.usa.send(OPS, SECRET_AIRDEF)).status_code == 201


async def test_no_kind_of_unverified_request_is_attributed(world: World) -> None:
    c = await coalition(world)
    # Signed by another device's key under USA's id.
    other_key = c.ukr.build("GET", "/v1/inbox")
    other_key.headers["signature-input"] = other_key.headers["signature-input"].replace(c.ukr.id, c.usa.id)
    # USA's own signature, one byte changed.
    flipped = c.usa.build("GET", "/v1/inbox")
    sig = flipped.headers["signature"]
    i = sig.index(":") + 5
    flipped.headers["signature"] = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
    # A body changed after signing.
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    req = c.usa.build("POST", "/v1/messages", {"envelope": env})
    tampered = world.http.build_request("POST", req.url, headers=req.headers, content=req.content + b" ")
    # A signature from outside the clock-skew window (its `created` is a claim too).
    stale = c.usa.build("GET", "/v1/inbox", now=datetime.now(UTC) - timedelta(minutes=6))
    before = await world.counts()  # (sealing asked for the recipients: a logged question)
    for req, slug in (
        (other_key, "bad-request-signature"),
        (flipped, "bad-request-signature"),
        (tampered, "content-digest"),
        (stale, "stale-request"),
    ):
        assert_problem(await world.http.send(req), slug)
    assert await world.counts() == before
    assert (await c.usa.get("/v1/me")).status_code == 200


async def test_the_failure_limit_is_per_address_and_a_setting(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, auth_failure_burst=3, auth_failure_rate_per_second=0.01) as w:
        c = await coalition(w)

        async def forged(client: httpx.AsyncClient) -> int:
            req = c.usa.build("GET", "/v1/me")
            req.headers["signature"] = BAD_SIGNATURE
            return (await client.send(req)).status_code

        assert [await forged(w.http) for _ in range(5)] == [401, 401, 401, 429, 429]
        r = c.usa.build("GET", "/v1/me")
        r.headers["signature"] = BAD_SIGNATURE
        refused = await w.http.send(r)
        body = assert_problem(refused, "rate-limited")
        assert "address" in body["detail"] and int(refused.headers["retry-after"]) >= 1
        # Another client address has its own allowance.
        transport = httpx.ASGITransport(app=w.app, client=("192.0.2.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url=str(w.http.base_url)) as elsewhere:
            assert await forged(elsewhere) == 401
