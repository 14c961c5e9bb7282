"""Bad input that once crashed the service (a 500, or a 503 from a failed write batch) or was
quietly accepted: each is now a 4xx problem of its own type, and a refused submit leaves its
`message.rejected` entry as every other refusal does. Run against the real app on SQLite and
PostgreSQL (some of these only failed on PostgreSQL, which cannot store U+0000)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from liaison.crypto.keys import generate_device
from liaison.service.api.schemas import MAX_CHANNEL_MEMBERS
from tests.service.harness import (
    NO_KEY,
    OPS,
    Device,
    World,
    assert_problem,
    assert_refused,
    coalition,
    invitation_key,
    world_on,
)

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
#: RFC 3339 times whose instant lies outside the years 1..9999 once converted to UTC.
OUT_OF_RANGE_TIMES = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
JSON = {"content-type": "application/json"}


def _raw(body: str) -> bytes:
    return body.encode()


async def _unchanged(world: World, call: Any, slug: str) -> dict[str, Any]:
    """`call()` is refused as `slug` and nothing at all is written (not even a log entry)."""
    return await assert_refused(world, call, slug, entry=None)


# --- out-of-range times and numbers ------------------------------------------------------------


@pytest.mark.parametrize("created", OUT_OF_RANGE_TIMES)
async def test_enrolment_bundle_with_an_out_of_range_time(world: World, created: str) -> None:
    """Unauthenticated: before, `OverflowError: date value out of range` (a 500)."""
    r = await world.root.post("/v1/admin/principals/root/enrolment-codes")
    code = r.json()["code"]
    signed = generate_device("root").signed_bundle()
    signed["bundle"]["created"] = created
    body = await _unchanged(
        world,
        lambda: world.http.post("/v1/enrol", json={"invitation_key": invitation_key(code), "bundle": signed}),
        "bad-bundle",
    )
    assert "out of range" in body["detail"]


async def test_other_far_times_are_refused_cleanly(world: World) -> None:
    """A five-digit year is not RFC 3339 (a `bad-bundle`, unauthenticated), and a signature
    `created` far from now either way is `stale-request`: no date arithmetic overflows."""
    signed = generate_device("root").signed_bundle()
    signed["bundle"]["created"] = "99999-01-01T00:00:00Z"
    assert_problem(
        await world.http.post("/v1/enrol", json={"invitation_key": NO_KEY, "bundle": signed}), "bad-bundle"
    )
    for created in ("999999999999999", "-999999999999999", "0"):
        req = world.root.build("GET", "/v1/me")
        sig_input = req.headers["signature-input"]
        start = sig_input.index("created=") + len("created=")
        end = sig_input.index(";", start)
        req.headers["signature-input"] = sig_input[:start] + created + sig_input[end:]
        assert_problem(await world.http.send(req), "stale-request")


@pytest.mark.parametrize("created", OUT_OF_RANGE_TIMES)
async def test_envelope_with_an_out_of_range_time(world: World, created: str) -> None:
    """Before: a 500 from the submit path, and no `message.rejected` entry."""
    c = await coalition(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    env["created"] = created
    entry = await assert_refused(world, lambda: c.usa.submit(env), "malformed-envelope")
    assert "out of range" in entry["detail"] and entry["id"] == env["id"]


async def test_inbox_cursor_beyond_what_the_database_holds(world: World) -> None:
    """Before: `OverflowError: Python int too large to convert to SQLite INTEGER` for 2**63 (a
    500), and on PostgreSQL `value out of int32 range` from 2**31 on (the cursor is the
    delivery table's 32-bit serial key there)."""
    c = await coalition(world)
    for after in (2**31, 2**63, 2**64, 10**30):
        body = await _unchanged(world, lambda a=after: c.ukr.get(f"/v1/inbox?after={a}"), "validation")
        assert "after" in body["detail"]
    assert (await c.ukr.get(f"/v1/inbox?after={2**31 - 1}")).status_code == 200


@pytest.mark.parametrize("since", OUT_OF_RANGE_TIMES)
async def test_audit_entries_since_an_out_of_range_time(world: World, since: str) -> None:
    """Before: `OverflowError` (a 500)."""
    body = await _unchanged(
        world, lambda: world.root.get(f"/v1/audit/entries?since={quote(since)}"), "validation"
    )
    assert "out of range" in body["detail"]


# --- nesting -----------------------------------------------------------------------------------


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def test_deeply_nested_label_json(world: World) -> None:
    """A channel ceiling given as a JSON string nested deeper than the recursion limit: before,
    a RecursionError (a 500). Label JSON of any depth is now a `malformed-label`."""
    await coalition(world)
    for depth in (40, 5_000):
        body = {"id": "deep", "ceiling": _deep_object(depth)}
        problem = await _unchanged(
            world, lambda b=body: world.root.post("/v1/admin/channels", b), "malformed-label"
        )
        assert "nested" in problem["detail"]
    label = quote(_deep_object(150))  # a query string is bounded: 1,024 characters
    r = await world.root.get(f"/v1/channels/{OPS}/recipients?label={label}")
    assert "nested" in assert_problem(r, "malformed-label")["detail"]


@pytest.mark.parametrize("depth", [33, 900, 5_000])
async def test_deeply_nested_request_bodies(world: World, depth: int) -> None:
    """A body nested deeper than 32 levels is refused as such, on every path that takes JSON
    (the submit path included), whatever the nesting holds."""
    c = await coalition(world)
    nested = "[" * depth + "]" * depth
    cases = [
        (c.usa, "POST", "/v1/messages", '{"envelope": {"label": NEST}}'.replace("NEST", nested)),
        (
            world.root,
            "POST",
            "/v1/admin/channels",
            '{"id": "deep", "ceiling": {"a": NEST}}'.replace("NEST", nested),
        ),
        (
            world.root,
            "PATCH",
            "/v1/admin/principals/usa-analyst",
            '{"compartments": NEST}'.replace("NEST", nested),
        ),
    ]
    for device, method, path, raw in cases:
        await _unchanged(
            world, lambda d=device, m=method, p=path, b=raw: d.request(m, p, raw=_raw(b)), "json-too-deep"
        )
    r = await world.http.post(
        "/v1/enrol",
        content=_raw(
            '{"invitation_key": "KEY", "bundle": NEST}'.replace("KEY", NO_KEY).replace("NEST", nested)
        ),
        headers=JSON,
    )
    assert_problem(r, "json-too-deep")


# --- characters no database column can hold ---------------------------------------------------


async def test_nul_and_lone_surrogates_in_json_strings(world: World) -> None:
    """Before: U+0000 in a display or channel name was a 500 on PostgreSQL (its text type has
    no NUL), and an envelope id of U+0000 or a lone surrogate failed the refusal's own write
    batch (a 503); a lone surrogate in a content type was a 500 on both databases."""
    c = await coalition(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    good = json.dumps({"envelope": env})
    cases = [
        (
            world.root,
            "POST",
            "/v1/admin/principals",
            '{"id": "p1", "display_name": "a\\u0000b", "nation": "USA", "clearance": "SECRET"}',
        ),
        (
            world.root,
            "POST",
            "/v1/admin/channels",
            '{"id": "c1", "name": "\\u0000", "ceiling": "SECRET//REL TO USA"}',
        ),
        (world.root, "PATCH", "/v1/admin/principals/usa-analyst", '{"display_name": "\\ud800"}'),
        (c.usa, "POST", "/v1/messages", '{"envelope": {"id": "\\u0000"}}'),
        (c.usa, "POST", "/v1/messages", '{"envelope": {"id": "\\udfff"}}'),
        (c.usa, "POST", "/v1/messages", good.replace(json.dumps(env["channel"]), '"\\ud800"')),
    ]
    for device, method, path, raw in cases:
        await _unchanged(
            world, lambda d=device, m=method, p=path, b=raw: d.request(m, p, raw=_raw(b)), "invalid-character"
        )
    # A lone surrogate written as raw (CESU-style) bytes is not UTF-8 at all.
    raw = b'{"display_name": "\xed\xa0\x80"}'
    r = await world.root.request("PATCH", "/v1/admin/principals/usa-analyst", raw=raw)
    assert_problem(r, "malformed-request")
    # A surrogate pair is one character, and welcome.
    r = await world.root.request(
        "PATCH", "/v1/admin/principals/usa-analyst", raw=b'{"display_name": "\\ud83d\\ude00"}'
    )
    assert r.status_code == 200 and r.json()["display_name"] == "\U0001f600"


async def test_control_characters_in_names(world: World) -> None:
    """Names are shown to people: no control characters (U+0001 and the like were accepted)."""
    await coalition(world)
    for name in ("a\x01b", "tab\there", "\x1b[2J", "c1\x85"):
        r = await world.root.request("PATCH", "/v1/admin/principals/usa-analyst", {"display_name": name})
        assert_problem(r, "validation")


async def test_nul_in_paths_and_queries(world: World) -> None:
    """U+0000 in a path or query value (now verified as sent, so a signed %00 reaches the
    route): before, a 500 on PostgreSQL for the audit filters."""
    c = await coalition(world)
    for device, path in [
        (world.root, "/v1/audit/entries?actor=%00"),
        (world.root, "/v1/audit/entries?type=%00"),
        (c.usa, "/v1/messages/%00"),
        (world.root, "/v1/admin/devices?principal=%00"),
        (c.usa, f"/v1/channels/{OPS}/recipients?label=SECRET&suite=%00"),
    ]:
        await _unchanged(world, lambda d=device, p=path: d.get(p), "invalid-character")
    for method, path in [
        ("POST", "/v1/messages/%00/ack"),
        ("PATCH", "/v1/admin/principals/%00"),
        ("PUT", "/v1/admin/channels/%00/members"),
        ("POST", "/v1/admin/devices/%00/revoke"),
    ]:
        body = {"display_name": "x"} if method == "PATCH" else {"principals": []} if method == "PUT" else {}
        await _unchanged(
            world, lambda m=method, p=path, b=body: world.root.request(m, p, b), "invalid-character"
        )


# --- the size of an audit entry ------------------------------------------------------------------


@pytest.fixture
async def roomy(backend: str, tmp_path: Path) -> AsyncIterator[World]:
    """A world whose rate limit lets set-up create principals in bulk."""
    async with world_on(backend, tmp_path, rate_limit_per_second=10_000.0, rate_limit_burst=10_000) as w:
        yield w


async def _principals(world: World, ids: list[str]) -> None:
    async def one(pid: str) -> None:
        body = {"id": pid, "display_name": "x", "nation": "USA", "clearance": "SECRET"}
        r = await world.root.post("/v1/admin/principals", body)
        assert r.status_code == 201, r.text

    for start in range(0, len(ids), 100):
        await asyncio.gather(*(one(p) for p in ids[start : start + 100]))


def _long_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}".ljust(64, "x") for i in range(n)]  # 64 characters: the longest id


async def test_channel_members_past_what_one_audit_entry_holds(roomy: World) -> None:
    """Before: 520 members of 64-character ids made a `channel.members` entry over 65,535 bytes
    (the C2SP entry-bundle limit) and the request failed with a 500. Now the cap refuses one
    past it, and the worst case it allows fits one entry."""
    world = roomy
    await world.channel(OPS, "SECRET//REL TO USA", [])
    first = _long_ids("a", MAX_CHANNEL_MEMBERS + 1)  # 64 characters each: the longest ids
    await _principals(world, first)
    body = {"principals": first}
    problem = await _unchanged(
        world,
        lambda: world.root.request("PUT", f"/v1/admin/channels/{OPS}/members", body),
        "too-many-members",
    )
    assert str(MAX_CHANNEL_MEMBERS) in problem["detail"]
    # Repeats count once: the cap is on distinct members.
    body = {"principals": first[:MAX_CHANNEL_MEMBERS] * 2}
    assert (await world.root.request("PUT", f"/v1/admin/channels/{OPS}/members", body)).status_code == 200
    # The worst case the cap allows fits one entry: a full channel of the longest ids replaced
    # by as many others (members, added and removed each list MAX_CHANNEL_MEMBERS ids, 900 ids
    # of 64 characters: more than the 520 that once overflowed).
    others = _long_ids("b", MAX_CHANNEL_MEMBERS)
    await _principals(world, others)
    r = await world.root.request("PUT", f"/v1/admin/channels/{OPS}/members", {"principals": others})
    assert r.status_code == 200, r.text
    entry = (await world.entries("channel.members"))[-1]
    assert len(entry["members"]) == len(entry["added"]) == len(entry["removed"]) == MAX_CHANNEL_MEMBERS


# --- duplicate object keys (issue 10, finding 17) ------------------------------------------------


async def test_a_submit_with_a_duplicated_key_is_refused(world: World) -> None:
    """The Content-Digest and the signature cover the body's bytes; a body whose meaning
    depends on which of two equal keys a parser keeps is ambiguous. Before: accepted (201),
    the last `envelope` winning."""
    c = await coalition(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    decoy = dict(env, label={"classification": "UNCLASSIFIED"})
    raw = f'{{"envelope": {json.dumps(decoy)}, "envelope": {json.dumps(env)}}}'
    problem = await _unchanged(
        world, lambda: c.usa.request("POST", "/v1/messages", raw=_raw(raw)), "duplicate-key"
    )
    assert "envelope" in problem["detail"]
    # A repeat inside the envelope (here, in its label) is refused the same way.
    inner = json.dumps({"envelope": env}).replace(
        '"classification"', '"classification": "SECRET", "classification"', 1
    )
    await _unchanged(world, lambda: c.usa.request("POST", "/v1/messages", raw=_raw(inner)), "duplicate-key")
    # Unchanged, the same envelope is accepted.
    assert (await c.usa.submit(env)).status_code == 201


async def test_duplicated_keys_are_refused_on_every_json_path(world: World) -> None:
    """Before: each was accepted, the last copy winning."""
    c = await coalition(world)
    cases: list[tuple[Device, str, str, str]] = [
        (
            world.root,
            "PATCH",
            "/v1/admin/principals/usa-analyst",
            '{"clearance": "TOP SECRET", "clearance": "SECRET"}',
        ),
        (
            world.root,
            "PUT",
            f"/v1/admin/channels/{OPS}/members",
            '{"principals": [], "principals": ["usa-analyst"]}',
        ),
        (
            world.root,
            "POST",
            "/v1/admin/channels",
            '{"id": "c2", "ceiling": "SECRET//REL TO USA", "id": "c3"}',
        ),
    ]
    for device, method, path, raw in cases:
        await _unchanged(
            world, lambda d=device, m=method, p=path, b=raw: d.request(m, p, raw=_raw(b)), "duplicate-key"
        )
    # Unauthenticated enrolment too: the signed bundle is JSON a signature covers.
    code = (await world.root.post("/v1/admin/principals/usa-analyst/enrolment-codes")).json()["code"]
    signed = generate_device("usa-analyst").signed_bundle()
    raw = json.dumps({"invitation_key": invitation_key(code), "bundle": signed}).replace(
        '"principal"', '"principal": "root", "principal"', 1
    )
    r = await world.http.post("/v1/enrol", content=_raw(raw), headers=JSON)
    assert_problem(r, "duplicate-key")
    # Label JSON in a query string, too.
    label = '{"policy": "x", "policy": "y", "classification": "SECRET", "rel": ["USA"], "compartments": []}'
    r = await c.usa.get(f"/v1/channels/{OPS}/recipients?label={quote(label)}")
    assert_problem(r, "malformed-label")
