"""The library against a live server and a server that lies; its parsers and error mapping."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from liaison.clients import AsyncClient, Client, KeyStore, LogMemory
from liaison.clients._http import check_response
from liaison.clients.errors import (
    AuthenticationFailed,
    ClientError,
    DeviceRevoked,
    InconsistentLog,
    InputError,
    InvalidRequest,
    KeyStoreError,
    LabelAltered,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    PolicyRefused,
    ProofInvalid,
    ProofMissing,
    RateLimited,
    ServerError,
    SignatureInvalid,
    api_error,
)
from liaison.clients.stix import validate_stix_bundle
from liaison.crypto import merkle, note, tiles
from liaison.crypto.keys import generate_device
from liaison.crypto.policy import Policy, parse_policy
from tests.clients.conftest import FAST_KDF, PASSPHRASE, Liaison, Server, uid
from tests.clients.test_cli import STIX, world

# --- error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "status", "cls"),
    [
        ("unauthenticated", 401, AuthenticationFailed),
        ("replayed-request", 401, AuthenticationFailed),
        ("device-revoked", 403, DeviceRevoked),
        ("not-admin", 403, PermissionDenied),
        ("not-auditor", 403, PermissionDenied),
        ("clearance", 403, PolicyRefused),
        ("missing-recipient", 422, PolicyRefused),
        ("not-recipient", 404, NotFound),
        ("rate-limited", 429, RateLimited),
        ("internal", 500, ServerError),
        ("a-future-slug", 422, InvalidRequest),
        ("a-future-slug", 503, ServerError),
    ],
)
def test_problem_types_map_to_specific_errors(slug: str, status: int, cls: type) -> None:
    response = httpx.Response(
        status,
        headers={"content-type": "application/problem+json", "retry-after": "2"},
        json={"type": f"urn:liaison:problem:{slug}", "title": "t", "status": status, "detail": "why\nnot"},
        request=httpx.Request("GET", "https://x/"),
    )
    with pytest.raises(cls) as e:
        check_response(response)
    assert type(e.value) is cls and e.value.slug == slug and e.value.status == status
    assert "\n" not in str(e.value) and "why not" in str(e.value)
    if cls is RateLimited:
        assert e.value.retry_after == 2.0
    assert type(api_error(slug, status, "d")) is cls


def test_non_problem_errors_are_server_errors() -> None:
    response = httpx.Response(
        502, text="<html>bad gateway</html>", request=httpx.Request("GET", "https://x/")
    )
    with pytest.raises(ServerError, match="HTTP 502"):
        check_response(response)


def test_a_request_that_cannot_be_signed_is_an_input_error(tmp_path: Path) -> None:
    """Userinfo in the server URL: no server could verify the signature, so nothing is sent."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async def go() -> None:
        async with AsyncClient(
            "https://user@liaison.test",
            generate_device("x"),
            LogMemory(tmp_path / "log.json"),
            transport=httpx.MockTransport(answer),
        ) as c:
            with pytest.raises(InputError, match=r"cannot sign the request: .*absolute URL"):
                await c.whoami()

    asyncio.run(go())
    assert sent == []


# --- parsers ------------------------------------------------------------------------------


def _served_policy(tmp_path: Path, served: bytes) -> Policy:
    """What AsyncClient.policy() makes of `served` as the body of GET /v1/policy/file."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/policy/file"
        return httpx.Response(200, content=served, headers={"content-type": "application/toml"})

    async def go() -> Policy:
        async with AsyncClient(
            "https://liaison.test",
            generate_device("x"),
            LogMemory(tmp_path / "log.json"),
            transport=httpx.MockTransport(answer),
        ) as c:
            return await c.policy()

    return asyncio.run(go())


_POLICY_FILE = (Path(__file__).resolve().parents[2] / "service" / "default_policy.toml").read_bytes()


def test_the_served_policy_file_is_parsed_and_hashed_here(tmp_path: Path) -> None:
    """The client parses the file with the server's parser and computes its SHA-256 itself
    from the very bytes it uses (protocol 4, 9.7): a server cannot claim another hash."""
    parsed = _served_policy(tmp_path, _POLICY_FILE)
    assert parsed.sha256 == hashlib.sha256(_POLICY_FILE).hexdigest()
    assert parsed == parse_policy(_POLICY_FILE)
    edited = _POLICY_FILE.replace(b'"POL"]', b'"POL", "RUS"]', 1)
    assert _served_policy(tmp_path, edited).sha256 != parsed.sha256


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'id = "coalition-2026"', b'id = "Not A Slug"', "id must be"),
        (b'kem = ["X25519", "MLKEM768-X25519"]', b'kem = ["RSA"]', "kem may only"),
        (b'nations = ["USA", "UKR", "FRA", "GBR", "DEU", "POL"]', b"nations = [1, 2]", "nations must be"),
        (b'id = "coalition-2026"', b'id = "coalition-2026"\nextra = 1', "unknown keys"),
        (b'id = "coalition-2026"', b"id = = =", "not valid TOML"),
    ],
)
def test_a_malformed_served_policy_is_refused(tmp_path: Path, old: bytes, new: bytes, message: str) -> None:
    assert old in _POLICY_FILE
    with pytest.raises(MalformedResponse, match=f"^the served policy: .*{message}"):
        _served_policy(tmp_path, _POLICY_FILE.replace(old, new, 1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON"),
        (json.dumps({"type": "indicator"}).encode(), "must be a bundle"),
        (
            json.dumps({**STIX, "objects": [{**STIX["objects"][0], "spec_version": "2.0"}]}).encode(),
            "spec_version 2.1",
        ),
        (
            json.dumps(
                {**STIX, "objects": [{k: v for k, v in STIX["objects"][0].items() if k != "pattern"}]}
            ).encode(),
            "invalid STIX",
        ),
    ],
)
def test_stix_validation_refuses(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_stix_bundle(data)
    assert validate_stix_bundle(json.dumps(STIX).encode())["type"] == "bundle"


# --- the log memory -----------------------------------------------------------------------


def test_log_memory_pins_once_and_only_moves_forward(tmp_path: Path, server: Server) -> None:
    signer = note.parse_signer_key((server.data / "log-signer.key").read_text().strip())
    memory = LogMemory(tmp_path / "log.json")
    with pytest.raises(KeyStoreError, match="no pinned log key"):
        _ = memory.log_key
    memory.pin(signer.verifier.key_string)
    memory.pin(signer.verifier.key_string)  # the same key again is fine
    with pytest.raises(KeyStoreError, match="another log key"):
        memory.pin(note.generate_signer_key("liaison.example/audit")[1])
    big = note.sign_checkpoint(note.Checkpoint(signer.name, 10, b"\x01" * 32), signer).decode()
    small = note.sign_checkpoint(note.Checkpoint(signer.name, 5, b"\x02" * 32), signer).decode()
    memory.save(big)
    memory.save(small)
    saved = memory.last()
    assert saved is not None and saved.checkpoint.size == 10
    (tmp_path / "log.json").write_text("{not json")
    with pytest.raises(KeyStoreError, match="damaged"):
        memory.last()


# --- against the live server ------------------------------------------------------------


def _client(liaison: Liaison, profile: str, transport: httpx.AsyncBaseTransport | None = None) -> AsyncClient:
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    client = AsyncClient.from_profile(profile, PASSPHRASE, store=store)
    if transport is None:
        return client
    return AsyncClient(client.server, client.keys, client.memory, transport=transport)


class Tampering(httpx.AsyncBaseTransport):
    """A server that lies: real answers from the live server, rewritten on the way back."""

    def __init__(self, cert: str, path: str, rewrite: Callable[[dict[str, Any]], None]) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=cert))
        self.path, self.rewrite = path, rewrite

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.startswith(self.path) or response.status_code >= 300:
            return response
        body = json.loads(await response.aread())
        self.rewrite(body)
        return httpx.Response(response.status_code, json=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


def test_swapped_recipient_key_is_refused(liaison: Liaison) -> None:
    """The server offers its own key for a recipient: not in the log, so nobody encrypts to it."""
    n = world(liaison)
    mitm = generate_device(n["ukr"])
    asyncio.run(_swapped(liaison, n, mitm))


async def _swapped(liaison: Liaison, n: dict[str, str], mitm: Any) -> None:

    def swap(body: dict[str, Any]) -> None:
        for d in body["devices"]:
            if d["principal"] == n["ukr"]:
                d["signed_bundle"], d["device"] = mitm.signed_bundle(), mitm.device_id

    async with _client(liaison, n["usa"], Tampering(liaison.server.cert, "/v1/channels/", swap)) as c:
        with pytest.raises(ProofInvalid, match="is not its enrolment"):
            await c.send(n["chan"], LABEL, b"for ukr only")

    def swap_bundle_only(body: dict[str, Any]) -> None:
        for d in body["devices"]:
            if d["principal"] == n["ukr"]:
                d["signed_bundle"] = mitm.signed_bundle()

    async with _client(
        liaison, n["usa"], Tampering(liaison.server.cert, "/v1/channels/", swap_bundle_only)
    ) as c:
        with pytest.raises(ClientError, match="key bundle"):
            await c.send(n["chan"], LABEL, b"for ukr only")

    def drop(body: dict[str, Any]) -> None:
        for d in body["devices"]:
            d.pop("enrolment")

    async with _client(liaison, n["usa"], Tampering(liaison.server.cert, "/v1/channels/", drop)) as c:
        with pytest.raises(ProofMissing):
            await c.plan(n["chan"], LABEL)

    def relabel(body: dict[str, Any]) -> None:
        body["label"]["rel"] = ["FRA", "UKR", "USA"]

    async with _client(liaison, n["usa"], Tampering(liaison.server.cert, "/v1/channels/", relabel)) as c:
        with pytest.raises(LabelAltered):
            await c.plan(n["chan"], LABEL)


def test_forged_sender_is_refused(liaison: Liaison) -> None:
    n = world(liaison)
    sent = liaison("-p", n["usa"], "--json", "send", "-c", n["chan"], "-l", LABEL, input="hi").json()
    asyncio.run(_forged(liaison, n, sent))


async def _forged(liaison: Liaison, n: dict[str, str], sent: dict[str, Any]) -> None:
    def forge(body: dict[str, Any]) -> None:
        body["sender"] = n["fra"]

    async with _client(liaison, n["ukr"], Tampering(liaison.server.cert, "/v1/messages/", forge)) as c:
        with pytest.raises(SignatureInvalid, match="names sender"):
            await c.read(sent["id"])


def test_label_shown_differs_from_signed_label(liaison: Liaison, server: Server) -> None:
    """The server's index (the inbox) shows a lower label than the sender signed: refused."""
    n = world(liaison)
    sent = liaison("-p", n["usa"], "--json", "send", "-c", n["chan"], "-l", LABEL, input="hi").json()
    lowered = {
        "policy": "coalition-2026",
        "classification": "UNCLASSIFIED",
        "rel": ["UKR", "USA"],
        "compartments": [],
    }
    server.sql(
        "UPDATE message SET label = ?, classification = 'UNCLASSIFIED' WHERE id = ?",
        json.dumps(lowered, separators=(",", ":")),
        sent["id"],
    )
    asyncio.run(_lowered(liaison, n, sent))


async def _lowered(liaison: Liaison, n: dict[str, str], sent: dict[str, Any]) -> None:
    async with _client(liaison, n["ukr"]) as c:
        (item,) = [i for i in await c.inbox() if i.id == sent["id"]]
        assert item.label_text == "UNCLASSIFIED//REL TO UKR, USA"
        with pytest.raises(LabelAltered, match="not the label the sender signed"):
            await c.read(item.id, expected_label=item.label)
        # The fetch answer carries the server's stored label too: it must also be the signed one.
        with pytest.raises(LabelAltered, match="not the label the sender signed"):
            await c.read(item.id)


def test_inconsistent_receipt_checkpoint_is_refused(liaison: Liaison, server: Server) -> None:
    """A receipt signed by the log key for a tree that is not an extension: refused."""
    n = world(liaison)
    signer = note.parse_signer_key((server.data / "log-signer.key").read_text().strip())
    asyncio.run(_forked(liaison, n, signer))


async def _forked(liaison: Liaison, n: dict[str, str], signer: note.Signer) -> None:

    def fork(body: dict[str, Any]) -> None:
        cp = note.Checkpoint(signer.name, body["tree_size"], b"\x07" * 32)
        body["checkpoint"] = note.sign_checkpoint(cp, signer).decode()

    async with _client(liaison, n["usa"], Tampering(liaison.server.cert, "/v1/messages", fork)) as c:
        with pytest.raises(InconsistentLog):
            await c.send(n["chan"], LABEL, b"x")


def test_async_watch(liaison: Liaison) -> None:
    n = world(liaison)

    async def go() -> None:
        async with _client(liaison, n["ukr"]) as c, _client(liaison, n["usa"]) as sender:
            stream = c.watch()
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.5)  # let the stream connect: it carries only new messages
            sent = await sender.send(n["chan"], LABEL, b"live")
            event = await asyncio.wait_for(first, timeout=20)
            assert (event.id, event.channel, event.log_index) == (sent.id, n["chan"], sent.log_index)
            await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(go())


def test_sync_client(liaison: Liaison) -> None:
    n = world(liaison)
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    with Client.from_profile(n["usa"], PASSPHRASE, store=store) as c:
        assert c.whoami().principal == n["usa"]
        plan = c.plan(n["chan"], LABEL)
        assert {r.principal for r in plan.recipients} == {n["usa"], n["ukr"]}
        sent = c.send(n["chan"], LABEL, b"sync", to=[n["ukr"]])
        assert sent.recipients == 1
        assert c.checkpoint().size > sent.log_index
        assert [ch.id for ch in c.channels()] == [n["chan"]]
    with Client.from_profile(n["ukr"], PASSPHRASE, store=store) as c:
        message = c.read(sent.id)
        assert (message.text, message.sender, message.label_text) == ("sync", n["usa"], LABEL)
        c.ack(sent.id)
        assert c.inbox()[0].read
    with pytest.raises(ClientError, match="wrong passphrase"):
        Client.from_profile(n["ukr"], "wrong", store=store)


class Recording(httpx.AsyncBaseTransport):
    """The live server, with the path of every request noted."""

    def __init__(self, cert: str) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=cert))
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_sync_twins_of_label_log_admin_and_audit_calls(liaison: Liaison) -> None:
    """The blocking twins that were missing or had lost their signatures, against the server."""
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    recording = Recording(liaison.server.cert)
    with Client.from_profile("root", PASSPHRASE, store=store, transport=recording) as c:
        label = c.parse_label("secret//airdef//rel to usa, ukr")
        assert label.text() == LABEL and c.parse_label(label) == label
        before = c.checkpoint()
        pid = uid("gbr")
        made = c.create_principal(
            pid, name="GBR analyst", nation="gbr", clearance="SECRET", compartments=["airdef"]
        )
        assert (made["id"], made["nation"], made["compartments"], made["roles"]) == (
            pid,
            "GBR",
            ["AIRDEF"],
            ["analyst"],
        )
        found = c.audit_entries(start=before.size, type="principal.created", limit=5)
        assert [e.fields["principal"]["id"] for e in found] == [pid]
        assert found[0].actor == c.device_id and found[0].index >= before.size

        cp = c.trusted_checkpoint(c.checkpoint().note)
        assert cp.size > before.size
        wanted = tiles.tiles_for_size(cp.size)
        assert len(c.fetch_tile(wanted[0])) == wanted[0].width * merkle.HASH_SIZE
        reader = c.verified_tiles(cp, wanted)
        assert merkle.root_from(reader, cp.size) == cp.root_hash
    assert "/v1/admin/principals" in recording.paths and "/v1/audit/entries" in recording.paths

    with (
        Client.from_profile("root", PASSPHRASE, store=store) as c,
        Client.connect(
            c.aio.server, c.aio.keys, c.aio.memory, ca_cert=liaison.server.cert, profile="root"
        ) as twin,
    ):
        assert twin.aio.profile == "root" and twin.whoami() == c.whoami()


def test_sync_watch(liaison: Liaison) -> None:
    n = world(liaison)
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    sent: list[str] = []
    received = threading.Event()

    def sender() -> None:  # sends until the watcher has an event (the stream needs to connect)
        with Client.from_profile(n["usa"], PASSPHRASE, store=store) as c:
            for _ in range(20):
                time.sleep(0.5)
                sent.append(c.send(n["chan"], LABEL, b"live", to=[n["ukr"]]).id)
                if received.wait(1.0):
                    return

    with Client.from_profile(n["ukr"], PASSPHRASE, store=store) as c:
        events = c.watch()
        thread = threading.Thread(target=sender)
        thread.start()
        try:
            event = next(events)
        finally:
            received.set()
            thread.join()
        assert event.id in sent and event.channel == n["chan"]
        events.close()  # closes the stream on the client's loop
        assert c.whoami().principal == n["ukr"]  # the loop still serves after the stream


def test_malformed_answers_are_refused(liaison: Liaison) -> None:
    n = world(liaison)
    asyncio.run(_garbled(liaison, n))


async def _garbled(liaison: Liaison, n: dict[str, str]) -> None:

    def garble(body: dict[str, Any]) -> None:
        body["devices"] = "nope"

    async with _client(liaison, n["usa"], Tampering(liaison.server.cert, "/v1/channels/", garble)) as c:
        with pytest.raises(MalformedResponse):
            await c.plan(n["chan"], LABEL)
