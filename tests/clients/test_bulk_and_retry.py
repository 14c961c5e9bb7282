"""The integrator's library (issue 11, item 14): `send_many` on one recipients plan, retries of
429 and 503 as the server asks, the error classes at the top level, `from_profile` both plain
and awaitable, and every public attribute of the result types documented."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import liaison.clients
from liaison.clients import (
    STIX_CONTENT_TYPE,
    AsyncClient,
    Client,
    InputError,
    KeyStore,
    LogMemory,
    NotRecipient,
    Profile,
    RateLimited,
    Retry,
    SendManyFailed,
    ServerError,
    _models,
    errors,
)
from liaison.clients._retry import parse_retry_after
from liaison.crypto.keys import generate_device
from tests.clients.conftest import FAST_KDF, PASSPHRASE, Liaison
from tests.clients.test_cli import world
from tests.service.harness import BASE, world_on

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "client.md"

# --- Retry: the rules, pure ----------------------------------------------------------------


def _problem(status: int, retry_after: float | None) -> errors.APIError:
    slug = {429: "rate-limited", 503: "unavailable", 507: "storage-full", 500: "internal"}[status]
    e = errors.api_error(slug, status, "d")
    e.retry_after = retry_after
    return e


def test_what_is_retried_and_for_how_long() -> None:
    r = Retry(attempts=3, max_wait=10, budget=12, default_wait=0.5)
    assert r.delay(_problem(429, 2), 1, 0) == 2
    assert r.delay(_problem(429, None), 1, 0) == 0.5  # a 429 without Retry-After: the default
    assert r.delay(_problem(503, 3), 1, 0) == 3
    assert r.delay(_problem(503, None), 1, 0) is None  # a 503 that does not say when
    assert r.delay(_problem(507, 30), 1, 0) is None  # a full disk does not pass by itself
    assert r.delay(_problem(500, 1), 1, 0) is None
    assert r.delay(_problem(429, 2), 3, 0) is None  # the third try was the last
    assert r.delay(_problem(429, 11), 1, 0) is None  # longer than max_wait: raised at once
    assert r.delay(_problem(429, 5), 2, 8) is None  # over the budget
    assert Retry.never().delay(_problem(429, 1), 1, 0) is None
    for bad in ({"attempts": 0}, {"max_wait": -1}, {"budget": float("nan")}, {"default_wait": float("inf")}):
        with pytest.raises(ValueError):
            Retry(**bad)


@given(
    attempts=st.integers(1, 8),
    max_wait=st.floats(0, 100),
    budget=st.floats(0, 200),
    answers=st.lists(st.tuples(st.sampled_from([429, 503, 507, 500]), st.none() | st.floats(0, 300))),
)
def test_retries_are_bounded(
    attempts: int, max_wait: float, budget: float, answers: list[tuple[int, float | None]]
) -> None:
    """Whatever the server answers: at most `attempts` tries, no wait above `max_wait`, no
    more than `budget` of waiting in all."""
    policy = Retry(attempts=attempts, max_wait=max_wait, budget=budget)
    tries, waited = 0, 0.0
    for status, after in answers:
        tries += 1
        wait = policy.delay(_problem(status, after), tries, waited)
        if wait is None:
            break
        assert 0 <= wait <= max_wait
        waited += wait
    assert tries <= attempts and waited <= budget


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("Mon, 30 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 30 Nov 2026 11:00:00 GMT", now) == 0.0  # in the past
    for junk in (None, "", "soon", "-1", "1.5e3", "٣"):
        assert parse_retry_after(junk, now) is None, junk


# --- Retry: against a real service ---------------------------------------------------------


class Faulty(httpx.AsyncBaseTransport):
    """A real service behind a transport that notes every answer and may replace one."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        fault: Callable[[httpx.Request, httpx.Response], Awaitable[httpx.Response | None]] | None = None,
        *,
        instead: Callable[[httpx.Request], httpx.Response | None] | None = None,
    ) -> None:
        self.inner, self.fault, self.instead = inner, fault, instead
        self.seen: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.instead(request) if self.instead is not None else None
        if answer is not None:  # the request never reaches the service
            self.seen.append((request.method, request.url.path, answer.status_code))
            return answer
        response = await self.inner.handle_async_request(request)
        if self.fault is not None:
            await response.aread()
            replaced = await self.fault(request, response)
            response = replaced if replaced is not None else response
        self.seen.append((request.method, request.url.path, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _problem_response(
    request: httpx.Request, slug: str, status: int, retry_after: str | None
) -> httpx.Response:
    headers = {"content-type": "application/problem+json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {"type": f"urn:liaison:problem:{slug}", "title": "t", "status": status, "detail": "injected"}
    return httpx.Response(status, headers=headers, json=body, request=request)


async def test_rate_limited_calls_wait_as_the_server_says_and_are_sent_again(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path, rate_limit_per_second=1, rate_limit_burst=1) as w:
        memory = LogMemory(tmp_path / "log.json")
        memory.pin(w.state.log.verifier_key)
        await asyncio.sleep(1.1)  # the root's genesis statements (protocol 9.7) used the bucket

        def client(retry: Retry | None, transport: httpx.AsyncBaseTransport) -> AsyncClient:
            return AsyncClient(BASE, w.root.keys, memory, transport=transport, retry=retry)

        recorded = Faulty(httpx.ASGITransport(app=w.app))
        async with client(None, recorded) as c:
            await c.channels()
            await c.channels()  # refused (the bucket is empty), then sent again after Retry-After
        statuses = [status for _, path, status in recorded.seen if path == "/v1/channels"]
        assert statuses == [200, 429, 200], recorded.seen

        await asyncio.sleep(1.1)
        async with client(Retry.never(), Faulty(httpx.ASGITransport(app=w.app))) as c:
            await c.channels()
            with pytest.raises(RateLimited) as refused:
                await c.channels()
        assert refused.value.retry_after is not None and refused.value.retry_after >= 1

        await asyncio.sleep(1.1)
        recorded = Faulty(httpx.ASGITransport(app=w.app))
        async with client(Retry(max_wait=0.5), recorded) as c:
            await c.channels()
            with pytest.raises(RateLimited):
                await c.channels()  # the server asks for 1 s: more than max_wait, raised at once
        assert [s for _, p, s in recorded.seen if p == "/v1/channels"] == [200, 429]


def _client(liaison: Liaison, profile: str, transport: httpx.AsyncBaseTransport) -> AsyncClient:
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    return AsyncClient.from_profile(profile, PASSPHRASE, store=store, transport=transport)


def _sync(liaison: Liaison, profile: str) -> Client:
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    return Client.from_profile(profile, PASSPHRASE, store=store)


def _https(liaison: Liaison) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=liaison.server.cert))


def test_a_submit_whose_answer_was_lost_is_proven_from_the_log(liaison: Liaison) -> None:
    """The one case docs/api.md section 5 cannot tell apart: the server stored the message
    but answered 503. The client tries again (signed anew), hears `duplicate-envelope`, and
    proves the message from the log instead of failing or sending it twice."""
    n = world(liaison)
    lost: list[str] = []

    async def lose_first_answer(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if request.method == "POST" and request.url.path == "/v1/messages" and not lost:
            lost.append(response.json()["id"])  # stored by the server; the answer never arrives
            return _problem_response(request, "unavailable", 503, "0")
        return None

    async def go() -> Any:
        transport = Faulty(_https(liaison), lose_first_answer)
        async with _client(liaison, n["usa"], transport) as c:
            sent = await c.send(n["chan"], LABEL, b"stored once", to=[n["ukr"]])
        return sent, transport.seen

    sent, seen = asyncio.run(go())
    assert sent.id == lost[0] and sent.recipients == 1
    posts = [status for method, path, status in seen if (method, path) == ("POST", "/v1/messages")]
    assert posts == [503, 409], seen
    assert ("GET", f"/v1/audit/messages/{sent.id}", 200) in seen
    with _sync(liaison, n["ukr"]) as ukr:
        assert [i.id for i in ukr.inbox() if i.id == sent.id] == [sent.id]  # delivered once
        assert ukr.read(sent.id).text == "stored once"


def test_a_503_without_retry_after_is_not_retried(liaison: Liaison) -> None:
    n = world(liaison)

    async def unavailable(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if request.url.path == "/v1/channels":
            return _problem_response(request, "unavailable", 503, None)
        return None

    async def go() -> list[tuple[str, str, int]]:
        transport = Faulty(_https(liaison), unavailable)
        async with _client(liaison, n["usa"], transport) as c:
            with pytest.raises(ServerError) as e:
                await c.channels()
            assert e.value.slug == "unavailable" and e.value.retry_after is None
        return transport.seen

    assert [s for _, p, s in asyncio.run(go()) if p == "/v1/channels"] == [503]


# --- send_many ------------------------------------------------------------------------------


def test_send_many_uses_one_plan_and_every_message_arrives(liaison: Liaison) -> None:
    n = world(liaison)
    payloads = [f"track {i}".encode() for i in range(6)]
    transport = Faulty(_https(liaison))
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    with Client.from_profile(n["usa"], PASSPHRASE, store=store, transport=transport) as c:
        sent = c.send_many(n["chan"], LABEL, payloads, concurrency=3)
        assert c.send_many(n["chan"], LABEL, []) == []
    assert len({s.id for s in sent}) == 6 and all(s.label_text == LABEL for s in sent)
    assert all(s.recipients == 2 and s.witness is not None for s in sent)  # usa and ukr
    assert all(s.witness.status == "no-policy" for s in sent if s.witness)
    plans = [p for _, p, _ in transport.seen if p.endswith("/recipients")]
    posts = [p for m, p, _ in transport.seen if (m, p) == ("POST", "/v1/messages")]
    assert len(plans) == 1 and len(posts) == 6, transport.seen
    assert len(transport.seen) < 6 * 4  # fewer requests than six single sends
    with _sync(liaison, n["ukr"]) as ukr:
        for s, data in zip(sent, payloads, strict=True):  # in order, each readable as sent
            message = ukr.read(s.id)
            assert message.plaintext == data and message.log_proven  # an analyst's read is proven


def test_send_many_checks_every_payload_before_sending_any(liaison: Liaison) -> None:
    n = world(liaison)
    transport = Faulty(_https(liaison))

    async def go() -> None:
        async with _client(liaison, n["usa"], transport) as c:
            bundles = [b'{"type": "bundle", "id": "bundle--0b5f3a4e-2d35-4b53-9d87-3b0b7d1e6a01"}', b"nope"]
            with pytest.raises(InputError):
                await c.send_many(n["chan"], LABEL, bundles, content_type=STIX_CONTENT_TYPE)
            with pytest.raises(InputError, match="concurrency"):
                await c.send_many(n["chan"], LABEL, [b"x"], concurrency=0)

    asyncio.run(go())
    assert not [p for m, p, _ in transport.seen if m == "POST"], transport.seen


def test_send_many_makes_a_new_plan_when_a_recipient_is_revoked_on_the_way(liaison: Liaison) -> None:
    n = world(liaison)
    ukr_device = liaison("-p", n["ukr"], "--json", "whoami").json()["device"]
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    root = AsyncClient.from_profile("root", PASSPHRASE, store=store)
    posts: list[int] = []

    async def revoke_after_two(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if (request.method, request.url.path) == ("POST", "/v1/messages") and response.status_code == 201:
            posts.append(1)
            if len(posts) == 2:
                await root.revoke_device(ukr_device)  # the plan the rest were sealed on is stale
        return None

    async def go() -> tuple[list[Any], list[tuple[str, str, int]]]:
        transport = Faulty(_https(liaison), revoke_after_two)
        async with root, _client(liaison, n["usa"], transport) as c:
            sent = await c.send_many(n["chan"], LABEL, [b"a", b"b", b"c", b"d"], concurrency=1)
        return sent, transport.seen

    sent, seen = asyncio.run(go())
    assert [s.recipients for s in sent] == [2, 2, 1, 1]
    assert len([p for _, p, _ in seen if p.endswith("/recipients")]) == 2
    refused = [s for m, p, s in seen if (m, p) == ("POST", "/v1/messages") and s != 201]
    assert refused == [422], seen  # ineligible-recipient, once; then sealed on the new plan


def test_send_many_says_what_was_sent_when_it_stops(liaison: Liaison) -> None:
    n = world(liaison)

    posts: list[int] = []

    def full_disk_at_third(request: httpx.Request) -> httpx.Response | None:
        if (request.method, request.url.path) == ("POST", "/v1/messages"):
            posts.append(1)
            if len(posts) == 3:  # nothing is stored, as the server would answer a full disk
                return _problem_response(request, "storage-full", 507, "30")
        return None

    async def go() -> SendManyFailed:
        async with _client(liaison, n["usa"], Faulty(_https(liaison), instead=full_disk_at_third)) as c:
            with pytest.raises(SendManyFailed) as e:
                await c.send_many(n["chan"], LABEL, [b"1", b"2", b"3", b"4", b"5"], concurrency=1)
        return e.value

    failed = asyncio.run(go())
    assert sorted(failed.sent) == [0, 1] and failed.unsent == (2, 3, 4)
    assert isinstance(failed.error, ServerError) and failed.error.slug == "storage-full"
    assert "2 of 5 messages sent" in str(failed) and failed.sent[0].id in str(failed)
    with _sync(liaison, n["ukr"]) as ukr:  # the two that were accepted are real messages
        assert [ukr.read(failed.sent[i].id).text for i in (0, 1)] == ["1", "2"]
        assert len(ukr.inbox()) == 2


# --- the library's surface -----------------------------------------------------------------


def test_every_error_class_is_exported_at_the_top_level() -> None:
    classes = [
        name for name in errors.__all__ if isinstance(getattr(errors, name), type)
    ]  # every exception class (api_error is a function)
    assert len(classes) > 25
    for name in classes:
        assert getattr(liaison.clients, name) is getattr(errors, name), name
        assert name in liaison.clients.__all__, name
    assert issubclass(liaison.clients.SendManyFailed, liaison.clients.ClientError)


def test_from_profile_is_a_plain_call_and_awaiting_its_client_is_harmless(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    keys = generate_device("usa-x")
    profile = Profile("p", "https://liaison.test", None, "usa-x", keys.device_id, "2026-11-30T00:00:00Z")
    store.save(profile, keys, PASSPHRASE)

    async def go() -> None:
        plain = AsyncClient.from_profile("p", PASSPHRASE, store=store)
        assert isinstance(plain, AsyncClient) and plain.device_id == keys.device_id
        assert await plain is plain
        async with await AsyncClient.from_profile("p", PASSPHRASE, store=store) as awaited:
            assert awaited.principal == "usa-x" and awaited.retry == Retry()
        await plain.aclose()

    asyncio.run(go())


def _models_documented() -> list[type]:
    return [getattr(_models, name) for name in _models.__all__]


def test_every_public_attribute_of_every_result_is_documented() -> None:
    """In its class docstring (`Attributes:`) and in docs/client.md's table of results."""
    docs = DOCS.read_text("utf-8")
    section = docs[docs.index("### What the calls return") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    for cls in _models_documented():
        names = [f.name for f in dataclasses.fields(cls)]
        names += [n for n, v in vars(cls).items() if isinstance(v, property)]
        doc = cls.__doc__ or ""
        row = re.search(rf"^\| `{cls.__name__}` \|(.*)$", section, flags=re.M)
        assert row is not None, f"docs/client.md lists no {cls.__name__}"
        for name in names:
            assert re.search(rf"^\s+{name}:", doc, flags=re.M), f"{cls.__name__}.{name} lacks a docstring"
            assert f"`{name}`" in row.group(1), f"docs/client.md does not describe {cls.__name__}.{name}"


def test_a_message_to_another_device_is_still_refused_as_before(liaison: Liaison) -> None:
    """send_many seals exactly to the plan: a device that is not in it cannot read."""
    n = world(liaison)
    with _sync(liaison, n["usa"]) as c:
        (only,) = c.send_many(n["chan"], LABEL, [b"for usa only"], to=[n["usa"]])
    with _sync(liaison, n["ukr"]) as c, pytest.raises(NotRecipient):
        c.read(only.id)
