"""The RFC 9421 profile as the running service enforces it (docs/protocol.md section 6):
one Signature-Input, Signature and Content-Digest field each, the authority the server serves,
and the path exactly as sent. Each test replays a request an attacker could make from one that
a device really signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from liaison.crypto.httpsig import sign_request
from tests.service.harness import BASE, Device, World, assert_problem, world_on

JUNK_SIGNATURE = "liaison=:" + "A" * 86 + "==:"  # well formed, verifies for no key
SIG_FIELDS = ("signature", "signature-input", "content-digest")


def _with_headers(world: World, req: httpx.Request, pairs: list[tuple[str, str]]) -> httpx.Request:
    """`req` with exactly these header fields (repeats kept, in this order)."""
    return world.http.build_request(req.method, req.url, content=req.content, headers=pairs)


def _doubled(world: World, req: httpx.Request, name: str, other: str, *, first: bool) -> httpx.Request:
    """`req` with a second `name` field holding `other`: after the real one, or before it."""
    pairs = [(k.decode(), v.decode()) for k, v in req.headers.raw]
    at = next(i for i, (k, _) in enumerate(pairs) if k.lower() == name)
    pairs.insert(at if first else at + 1, (name, other))
    return _with_headers(world, req, pairs)


def _signed_patch(root: Device) -> httpx.Request:
    """A request with a body (so it carries Content-Digest) that succeeds when it verifies."""
    return root.build("PATCH", "/v1/admin/principals/usa-analyst", {"display_name": "USA analyst"})


def _other_value(req: httpx.Request, name: str) -> str:
    """A well-formed value of `name` that differs from the request's own."""
    if name == "signature":
        return JUNK_SIGNATURE
    if name == "content-digest":
        return "sha-256=:" + "B" * 43 + "=:"
    return req.headers[name].replace('nonce="', 'nonce="x')


@pytest.mark.parametrize("name", SIG_FIELDS)
async def test_a_repeated_signature_field_is_refused_whichever_copy_is_valid(world: World, name: str) -> None:
    """Before: the service read the fields through a dict that kept the first copy, so a valid
    first copy passed whatever followed it (and an intermediary could not tell which copy a
    verifier would use)."""
    await world.principal("usa-analyst", "USA", "SECRET")
    for first in (False, True):
        req = _signed_patch(world.root)
        doubled = _doubled(world, req, name, _other_value(req, name), first=first)
        assert_problem(await world.http.send(doubled), "duplicate-signature-field")
    # Two identical copies are refused too: one field each, as the profile says.
    req = _signed_patch(world.root)
    doubled = _doubled(world, req, name, req.headers[name], first=False)
    assert_problem(await world.http.send(doubled), "duplicate-signature-field")
    # And the request as signed is accepted.
    assert (await world.http.send(_signed_patch(world.root))).status_code == 200


async def test_a_repeated_field_is_refused_on_the_submit_path(world: World) -> None:
    """The same on POST /v1/messages, which `HotPaths` answers ahead of FastAPI."""
    req = world.root.build("POST", "/v1/messages", {"envelope": {}})
    for name in SIG_FIELDS:
        doubled = _doubled(world, req, name, req.headers[name], first=False)
        assert_problem(await world.http.send(doubled), "duplicate-signature-field")


# --- the authority ---------------------------------------------------------------------------

HERE = "https://127.0.0.1:8443"  # the world's host and port (the settings' defaults)


@pytest.fixture
async def own_authority(backend: str, tmp_path: Path) -> AsyncIterator[World]:
    """A service with no public URL: it knows its authority from its host and port."""
    async with world_on(backend, tmp_path, public_url=None) as w:
        yield w


def _signed_for(world: World, root: Device, url: str, host: str | None = None) -> httpx.Request:
    """GET `url` signed by `root` for exactly `url`, sent to `world` with `host` as Host."""
    headers = sign_request("GET", url, {}, None, root.keys)
    headers["host"] = host or httpx.URL(url).netloc.decode()
    return world.http.build_request("GET", url, headers=headers)


async def test_a_request_signed_for_another_server_is_refused(own_authority: World) -> None:
    """Before: without LIAISON_PUBLIC_URL the service rebuilt "@target-uri" from the request's
    own Host header, so a request signed for another server (a test instance, a partner's
    deployment) verified when replayed here with its Host header as signed."""
    w = own_authority
    replay = _signed_for(w, w.root, "https://other.example:8443/v1/me")
    assert_problem(await w.http.send(replay), "misdirected-request")
    # Sent with this server's Host instead, the signature (made for the other authority) fails.
    replay = _signed_for(w, w.root, "https://other.example:8443/v1/me", host="127.0.0.1:8443")
    assert_problem(await w.http.send(replay), "bad-request-signature")
    # The names this server answers to on loopback are accepted, each as signed.
    for base in (HERE, "https://localhost:8443", "https://[::1]:8443"):
        r = await w.http.send(_signed_for(w, w.root, f"{base}/v1/me"))
        assert r.status_code == 200, (base, r.text)
    # Another port is another authority; and the scheme is the connection's own, so a request
    # signed for plain http does not verify over TLS.
    assert_problem(
        await w.http.send(_signed_for(w, w.root, "https://127.0.0.1:9443/v1/me")), "misdirected-request"
    )
    plain = _signed_for(w, w.root, "http://127.0.0.1:8443/v1/me")
    plain.url = httpx.URL(f"{HERE}/v1/me")
    assert_problem(await w.http.send(plain), "bad-request-signature")
    # A request without Host (HTTP/1.0 style) names no authority of ours.
    req = _signed_for(w, w.root, f"{HERE}/v1/me")
    del req.headers["host"]
    assert_problem(await w.http.send(req), "misdirected-request")


async def test_with_a_public_url_the_host_header_plays_no_part(world: World) -> None:
    """With LIAISON_PUBLIC_URL (as the harness runs) the signed authority is that URL's,
    whatever Host the request carries (a proxy may rewrite it)."""
    ok = world.root.build("GET", "/v1/me")
    ok.headers["host"] = "internal-name:8080"
    assert (await world.http.send(ok)).status_code == 200
    replay = _signed_for(world, world.root, "https://other.example/v1/me")
    replay.headers["host"] = "liaison.test"
    assert_problem(await world.http.send(replay), "bad-request-signature")


# --- the path as sent -----------------------------------------------------------------------


def _resent_as(world: World, req: httpx.Request, path: str) -> httpx.Request:
    """`req`, headers and body unchanged, sent to `path` (raw, as it goes on the wire)."""
    return world.http.build_request(req.method, BASE + path, content=req.content, headers=req.headers)


async def test_the_path_is_verified_as_sent_not_as_decoded(world: World) -> None:
    """Before: the service verified the percent-decoded path, so a request signed for one
    spelling verified under another (and one signed as sent, with an encoded character,
    did not)."""
    me = world.root.build("GET", "/v1/me")
    respelled = _resent_as(world, me, "/v1/%6De")  # %6D is "m": the same route once decoded
    assert_problem(await world.http.send(respelled), "bad-request-signature")
    # Signed as it is sent, the encoded spelling verifies (and routes as /v1/me).
    r = await world.root.get("/v1/%6De")
    assert r.status_code == 200, r.text
    # The submit path too.
    req = world.root.build("POST", "/v1/messages", {"envelope": {}})
    assert_problem(await world.http.send(_resent_as(world, req, "/v1/%6Dessages")), "bad-request-signature")


async def test_the_query_is_verified_as_sent(world: World) -> None:
    """The query string was already taken raw; kept so (a decoded `%30` is not `0`)."""
    req = world.root.build("GET", "/v1/inbox?after=0")
    assert_problem(
        await world.http.send(_resent_as(world, req, "/v1/inbox?after=%30")), "bad-request-signature"
    )
    assert (await world.root.get("/v1/inbox?after=%30")).status_code == 200
