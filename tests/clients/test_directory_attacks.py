"""The verifiable directory against a lying server: the real client against the real server,
one test per attack of issue 13 (protocol 9.9).

The reproduced finding first: with the service stopped, one principal's nation is rewritten
in the server's own database (FRA -> UKR); after a restart, the server lists the French
analyst's device for `SECRET//REL TO UKR, USA`, and the client used to wrap the content key
to it. Now the client decides eligibility from statements the admins signed, proven current
in the map bound to the log, and refuses. Then answers edited in transit (an httpx transport
that rewrites responses, as a compromised proxy or the server itself would): an ineligible
device added, another label's answer replayed, an older statement served, a forked map head,
a device statement with a forged invitation signature; and the enrolment request replayed with
another key (the code never left the device). Finally, honest sends still work, and a member
left out without proof is a warning, not a failure.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from liaison.clients import AsyncClient, KeyStore
from liaison.clients._trust import LogMemory
from liaison.clients.enrol import enrol
from liaison.clients.errors import (
    APIError,
    DirectoryInvalid,
    LabelAltered,
    ServerError,
    UntrustedCheckpoint,
    VerificationFailed,
)
from liaison.crypto import note
from liaison.crypto._primitives import ed25519_sign
from liaison.crypto.encoding import b64url_decode, b64url_encode, jcs
from liaison.crypto.keys import generate_device
from liaison.crypto.statements import SignedStatement, Statement, device_statement, sign_statement
from tests.clients.conftest import FAST_KDF, PASSPHRASE, Liaison, Server, running_server, uid
from tests.clients.test_cli import world

#: A label the French analyst may not read (REL TO), and one it lacks a compartment for.
REL = "SECRET//REL TO UKR, USA"
AIRDEF = "SECRET//AIRDEF//REL TO FRA, UKR, USA"

Rewrite = Callable[[httpx.Request, dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Tamper(httpx.AsyncBaseTransport):
    """The real server's answers, edited on their way (None from `rewrite`: unchanged); every
    request is recorded (method, path, body) so a test can show what was never sent."""

    def __init__(self, cert: str, rewrite: Rewrite | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=cert))
        self.rewrite = rewrite
        self.seen: list[tuple[str, str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, str(request.url), bytes(request.content)))
        response = await self.inner.handle_async_request(request)
        if self.rewrite is None or not response.is_success:
            return response
        data = await response.aread()
        try:
            body = json.loads(data)
        except ValueError:
            return httpx.Response(
                response.status_code, headers=response.headers, content=data, request=request
            )
        new = await self.rewrite(request, body) if isinstance(body, dict) else None
        if new is None:
            return httpx.Response(
                response.status_code, headers=response.headers, content=data, request=request
            )
        return httpx.Response(response.status_code, json=new, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def posted_messages(self) -> int:
        return sum(1 for method, url, _ in self.seen if method == "POST" and url.endswith("/v1/messages"))


def _client(home: Path, profile: str, transport: httpx.AsyncBaseTransport | None = None) -> AsyncClient:
    store = KeyStore(home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    return AsyncClient.from_profile(profile, PASSPHRASE, store=store, transport=transport)


def _recipients(request: httpx.Request) -> bool:
    return request.method == "GET" and request.url.path.endswith("/recipients")


async def _devices_at_one_checkpoint(c: AsyncClient, principals: list[str]) -> dict[str, Any]:
    """The directory listing of several principals' devices, all proven at one checkpoint (the
    shape of a recipients answer's `checkpoint`, `tree_size` and `devices`)."""
    for _ in range(5):
        answers = [await c._json("GET", "/v1/directory/devices", params={"principal": p}) for p in principals]
        if len({a["tree_size"] for a in answers}) == 1:
            devices = [d for a in answers for d in a["devices"] if not d["revoked"]]
            return {
                "checkpoint": answers[0]["checkpoint"],
                "tree_size": answers[0]["tree_size"],
                "devices": devices,
            }
    raise AssertionError("the log kept growing while the devices were listed")


# --- (i) the reproduced bug: a nation rewritten in the database --------------------------------


def test_i_a_nation_rewritten_in_the_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_server(tmp_path / "srv") as srv:
        run = Liaison(tmp_path / "home", srv, monkeypatch)
        run.enrol("root", srv.init["root_invitation"], principal="root")
        n = world(run)
        # Honest: the French analyst is not a reader of REL TO UKR, USA.
        sent = json.loads(
            run("-p", n["usa"], "--json", "send", "--channel", n["chan"], "--label", REL, input="x").stdout
        )
        assert sent["recipients"] >= 2
        # The operator, with the service stopped, rewrites the French analyst's nation.
        srv.stop()
        srv.sql("UPDATE principal SET nation = 'UKR' WHERE id = ?", n["fra"])
        srv.start()
        asyncio.run(_nation_rewrite(run, srv, n))
        # The CLI: one line naming the device's principal and why; exit 1; nothing sent.
        line = run.refused("-p", n["usa"], "send", "--channel", n["chan"], "--label", REL, input="hello")
        assert "directory-invalid" in line and n["fra"] in line and "releasability" in line, line
        line = run.refused("-p", n["usa"], "send", "--dry-run", "--channel", n["chan"], "--label", REL)
        assert "directory-invalid" in line, line


async def _nation_rewrite(run: Liaison, srv: Server, n: dict[str, str]) -> None:
    tamper = Tamper(srv.cert)  # records only
    async with _client(run.home, n["usa"], tamper) as usa:
        raw = await usa._json("GET", f"/v1/channels/{n['chan']}/recipients", params={"label": REL})
        french = [d["device"] for d in raw["devices"] if d["principal"] == n["fra"]]
        assert french, "the rewritten server lists the French analyst's device"
        with pytest.raises(DirectoryInvalid) as caught:
            await usa.send(n["chan"], REL, b"for UKR and USA only")
        assert caught.value.why == "ineligible"
        assert french[0] in str(caught.value) and "(FRA)" in str(caught.value)
        assert tamper.posted_messages() == 0  # the key was never wrapped, nothing submitted
    rows = srv.sql("SELECT count(*) FROM delivery WHERE device_id = ?", french[0])
    assert rows == [(0,)]


# --- (ii) an ineligible device added in transit ----------------------------------------------


def test_ii_an_ineligible_device_added_to_the_answer_is_refused(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    asyncio.run(_added_device(liaison, server, n))


async def _added_device(liaison: Liaison, server: Server, n: dict[str, str]) -> None:
    async with _client(liaison.home, "root") as root:

        async def add_french(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
            if not _recipients(request):
                return None
            # Everything the server can prove, at the answer's own checkpoint: the French
            # analyst's principal (all facts: root sees them) and device records...
            size = body["directory"]["tree_size"]
            fra_devices = (await root._json("GET", "/v1/directory/devices", params={"principal": n["fra"]}))[
                "devices"
            ]
            for record in (f"principal:{n['fra']}", f"device:{fra_devices[0]['device']}"):
                proven = await root._json(
                    "GET", "/v1/directory/records", params={"record": record, "at": size}
                )
                body["directory"]["records"][record] = proven["records"][record]
            # ...and the device listed, with its enrolment proven in the log.
            listed = sorted({d["principal"] for d in body["devices"]} | {n["fra"]})
            body.update(await _devices_at_one_checkpoint(root, listed))
            body["excluded"] = [e for e in body["excluded"] if e["principal"] != n["fra"]]
            return body

        tamper = Tamper(server.cert, add_french)
        async with _client(liaison.home, n["usa"], tamper) as usa:
            with pytest.raises(DirectoryInvalid) as caught:
                await usa.send(n["chan"], AIRDEF, b"air defence")
            assert caught.value.why == "ineligible", caught.value
            assert n["fra"] in str(caught.value) and "compartment" in str(caught.value)
            assert tamper.posted_messages() == 0


# --- (iii) another label's answer replayed -------------------------------------------------------


def test_iii_an_answer_for_a_lower_label_is_refused(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    asyncio.run(_lower_label(liaison, server, n))


async def _lower_label(liaison: Liaison, server: Server, n: dict[str, str]) -> None:
    high = "SECRET//AIRDEF//REL TO UKR, USA"
    async with _client(liaison.home, n["usa"]) as honest:

        async def lower(relabel: bool) -> Rewrite:
            async def rewrite(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
                if not _recipients(request):
                    return None
                # A fresh answer for the label without the compartment (the same asker).
                other = await honest._json(
                    "GET", f"/v1/channels/{n['chan']}/recipients", params={"label": REL}
                )
                if relabel:  # and its label said to be the one asked for
                    other["label"], other["label_text"] = body["label"], body["label_text"]
                return other

            return rewrite

        for relabel, error in ((False, LabelAltered), (True, DirectoryInvalid)):
            tamper = Tamper(server.cert, await lower(relabel))
            async with _client(liaison.home, n["usa"], tamper) as usa:
                with pytest.raises(error) as caught:
                    await usa.send(n["chan"], high, b"air defence")
                if relabel:
                    assert isinstance(caught.value, DirectoryInvalid) and caught.value.why == "ineligible"
                    assert "not-disclosed" in str(caught.value), caught.value
                assert tamper.posted_messages() == 0


# --- (iv) an older statement served ----------------------------------------------------------------


def test_iv_an_older_statement_of_a_record_is_refused(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    late = uid("ukr2")
    liaison.principal(late, "UKR", "SECRET", "--compartment", "AIRDEF")
    liaison("-p", "root", "admin", "channel", "add", n["chan"], late)
    old = asyncio.run(_capture(liaison, server, n, late))
    # The admin downgrades the principal: its statement seq 2 says CONFIDENTIAL.
    liaison("-p", "root", "admin", "principal", "update", late, "--clearance", "CONFIDENTIAL")
    asyncio.run(_older_statement(liaison, server, n, late, old))


_HIGH = "SECRET//AIRDEF//REL TO UKR, USA"


async def _capture(liaison: Liaison, server: Server, n: dict[str, str], late: str) -> dict[str, Any]:
    captured: list[dict[str, Any]] = []

    async def keep(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        if _recipients(request):
            captured.append(json.loads(json.dumps(body)))
        return None

    async with _client(liaison.home, n["usa"], Tamper(server.cert, keep)) as usa:
        plan = await usa.plan(n["chan"], _HIGH)
        assert late in {r.principal for r in plan.recipients}
    return captured[-1]


async def _older_statement(
    liaison: Liaison, server: Server, n: dict[str, str], late: str, old: dict[str, Any]
) -> None:
    label = _HIGH
    async with _client(liaison.home, n["usa"]) as usa:
        plan = await usa.plan(n["chan"], label)  # honest: left out, proven (clearance)
        assert late not in {r.principal for r in plan.recipients} and not plan.warnings
        assert usa.directory_memory.known_seq(f"principal:{late}") == 2

    async with _client(liaison.home, "root") as root:
        old_device = next(d for d in old["devices"] if d["principal"] == late)["device"]

        async def splice(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
            # The fresh answer, with the old statement of the principal (its old disclosures
            # and map proof) and its device listed again.
            if not _recipients(request):
                return None
            for record in (f"principal:{late}", f"device:{old_device}"):
                body["directory"]["records"][record] = old["directory"]["records"][record]
            listed = sorted({d["principal"] for d in body["devices"]} | {late})
            body.update(await _devices_at_one_checkpoint(root, listed))
            return body

        async def replay(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
            return old if _recipients(request) else None  # the whole earlier answer

        for rewrite, why in ((splice, "map-proof"), (replay, "stale")):
            tamper = Tamper(server.cert, rewrite)
            async with _client(liaison.home, n["usa"], tamper) as usa:
                with pytest.raises(DirectoryInvalid) as caught:
                    await usa.send(n["chan"], label, b"air defence")
                assert caught.value.why == why, caught.value
                assert tamper.posted_messages() == 0

    # A client that lost its log memory (the saved checkpoint forgotten) still remembers the
    # seq it relied on: the whole old answer is a rollback.
    LogMemory(liaison.home / "state" / n["usa"] / "log.json").reset()
    tamper = Tamper(server.cert, replay)
    async with _client(liaison.home, n["usa"], tamper) as usa:
        with pytest.raises(DirectoryInvalid) as caught:
            await usa.send(n["chan"], label, b"air defence")
        assert caught.value.why == "rollback" and f"principal:{late}" in str(caught.value), caught.value
        assert tamper.posted_messages() == 0


# --- (v) a map head from a forked checkpoint -----------------------------------------------------


def test_v_a_forked_map_head_is_refused(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    asyncio.run(_forked_head(liaison, server, n))


def _resigned(text: str) -> str:
    """The same checkpoint, signed by another key of the same name (a forked log's)."""
    body = note.parse_checkpoint(text.split("\n\n", 1)[0] + "\n")
    signer, _ = note.generate_signer_key(body.origin)
    return note.sign_checkpoint(body, note.parse_signer_key(signer)).decode()


async def _forked_head(liaison: Liaison, server: Server, n: dict[str, str]) -> None:
    async def other_signer(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        if _recipients(request):
            body["directory"]["checkpoint"] = _resigned(body["directory"]["checkpoint"])
            return body
        return None

    async def other_root(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        if not _recipients(request):
            return None
        head = body["directory"]["map_head"]
        entry = json.loads(base64.b64decode(head["entry"]))
        entry["root"] = b64url_encode(bytes(32))  # the head of another map
        head["entry"] = base64.b64encode(jcs(entry)).decode()
        return body

    async def not_last(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        if not _recipients(request):
            return None
        body["directory"]["map_head"]["log_index"] -= 1  # an older head is not this checkpoint's
        return body

    cases: list[tuple[Rewrite, type[VerificationFailed], str | None]] = [
        (other_signer, UntrustedCheckpoint, None),
        (other_root, DirectoryInvalid, "map-head"),
        (not_last, DirectoryInvalid, "map-head"),
    ]
    for rewrite, error, why in cases:
        tamper = Tamper(server.cert, rewrite)
        async with _client(liaison.home, n["usa"], tamper) as usa:
            with pytest.raises(error) as caught:
                await usa.send(n["chan"], AIRDEF, b"air defence")
            if why is not None:
                assert isinstance(caught.value, DirectoryInvalid) and caught.value.why == why, caught.value
            assert tamper.posted_messages() == 0


# --- (vi) a device the server vouches for without the invitation key -------------------------------


def test_vi_a_device_statement_without_a_valid_invitation_signature_is_refused(
    liaison: Liaison, server: Server
) -> None:
    n = world(liaison)
    asyncio.run(_forged_invitation(liaison, server, n))


async def _forged_invitation(liaison: Liaison, server: Server, n: dict[str, str]) -> None:
    attacker = generate_device(n["ukr"])

    def ukr_device(body: dict[str, Any]) -> dict[str, Any]:
        dev = next(d["device"] for d in body["devices"] if d["principal"] == n["ukr"])
        return body["directory"]["records"][f"device:{dev}"]  # type: ignore[no-any-return]

    async def wrong_signature(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        # The statement in the map (its digest does not cover signatures), with an invitation
        # signature by a key that is not the invitation's: what a server that enrolled a
        # device without the code would have to show.
        if not _recipients(request):
            return None
        record = ukr_device(body)
        st = SignedStatement.from_json(record["statement"]).statement
        forged = _wrong_key_signature(st)
        record["statement"]["invitation_signature"] = b64url_encode(forged)
        return body

    async def no_signature(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        if not _recipients(request):
            return None
        del ukr_device(body)["statement"]["invitation_signature"]
        return body

    async def own_device(request: httpx.Request, body: dict[str, Any]) -> dict[str, Any] | None:
        # The server's own key for the UKR analyst, with the real invitation and a signature it
        # could make without the code: not in the map, so not proven.
        if not _recipients(request):
            return None
        record = ukr_device(body)
        real = SignedStatement.from_json(record["statement"]).statement
        st = device_statement(
            real.origin,
            bundle=attacker.public,
            principal=n["ukr"],
            nation="UKR",
            status="active",
            seq=1,
            prev=None,
            signer=attacker.device_id,
            invitation=real.invitation,
        )
        signed = sign_statement(attacker, st)
        body["directory"]["records"][f"device:{attacker.device_id}"] = {
            "statement": signed.to_json() | {"invitation_signature": b64url_encode(bytes(64))},
            "proof": record["proof"],
            "disclosures": {},
        }
        return body

    for rewrite, why in ((wrong_signature, "authority"), (no_signature, "malformed")):
        tamper = Tamper(server.cert, rewrite)
        async with _client(liaison.home, n["usa"], tamper) as usa:
            with pytest.raises(DirectoryInvalid) as caught:
                await usa.send(n["chan"], AIRDEF, b"air defence")
            assert caught.value.why == why, caught.value
            if why == "authority":
                assert "invitation-signature" in str(caught.value), caught.value
            assert tamper.posted_messages() == 0
    tamper = Tamper(server.cert, own_device)
    async with _client(liaison.home, n["usa"], tamper) as usa:
        with pytest.raises(DirectoryInvalid) as caught:
            await usa.send(n["chan"], AIRDEF, b"air defence")
        assert caught.value.why in ("map-proof", "malformed"), caught.value


def _wrong_key_signature(st: Statement) -> bytes:
    """An invitation signature over `st` by a key that is not its invitation's."""
    return ed25519_sign(bytes(range(32)), st.invitation_message())


def _as_signer(st: Any, keys: Any) -> Any:
    """`st` as if `keys` had made it (to get an invitation signature over its own bytes)."""
    return device_statement(
        st.origin,
        bundle=keys.public,
        principal=keys.public.principal,
        nation=st.nation,
        status="active",
        seq=1,
        prev=None,
        signer=keys.device_id,
        invitation=st.invitation,
    )


# --- (vii) enrolment: the request replayed with another key ---------------------------------------


def test_vii_a_captured_enrolment_cannot_enrol_another_key(liaison: Liaison, server: Server) -> None:
    pid = uid("ukr")
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        pid,
        "--name",
        "x",
        "--nation",
        "UKR",
        "--clearance",
        "SECRET",
    )
    issued = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()
    assert issued["invitation"].startswith("LIAISON2-")
    asyncio.run(_captured_enrolment(liaison, server, pid, issued))
    # The code was never spent nor sent: its owner enrols with it.
    enrolled = liaison.enrol(pid, issued["invitation"])
    assert enrolled["principal"] == pid


async def _captured_enrolment(liaison: Liaison, server: Server, pid: str, issued: dict[str, Any]) -> None:
    class Capture(Tamper):
        """Passes everything but the final enrolment, which it keeps (and answers 503)."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and request.url.path == "/v1/enrol":
                self.seen.append((request.method, str(request.url), bytes(request.content)))
                problem = {
                    "type": "urn:liaison:problem:unavailable",
                    "title": "x",
                    "status": 503,
                    "detail": "x",
                }
                return httpx.Response(503, json=problem, headers={"content-type": "application/problem+json"})
            return await super().handle_async_request(request)

    capture = Capture(server.cert)
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    with pytest.raises(ServerError):
        await enrol(
            server.url,
            issued["invitation"],
            principal=pid,
            passphrase=PASSPHRASE,
            profile=uid("victim"),
            store=store,
            transport=capture,
        )
    # The code is in no request: not in a URL, not in a body.
    code = issued["code"]
    for _, url, body in capture.seen:
        for spelling in (code, code.replace("-", "")):
            assert spelling not in url and spelling.encode() not in body
    request = json.loads(capture.seen[-1][2])
    assert set(request) == {"invitation_key", "bundle", "proof", "statement"}

    # The server (or anything between) now holds the request: it enrols its own key with it.
    thief = generate_device(pid)
    ctx = ssl.create_default_context(cafile=server.cert)
    async with httpx.AsyncClient(base_url=server.url, verify=ctx) as http:
        key = request["invitation_key"]
        r = await _post(http, "/v1/enrol/challenge", {"invitation_key": key, "bundle": thief.signed_bundle()})
        assert r.status_code == 200, r.text
        proof = thief.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
        replayed = {**request, "bundle": thief.signed_bundle(), "proof": proof}
        r = await _post(http, "/v1/enrol", replayed)
        assert r.status_code == 400 and r.json()["type"].endswith("statement-invalid"), r.text
        # Its own statement, with the captured invitation, signed by a key that is not the code's.
        captured = SignedStatement.from_json(request["statement"]).statement
        st = _as_signer(captured, thief)
        own = dataclasses.replace(sign_statement(thief, st), invitation_signature=_wrong_key_signature(st))
        r = await _post(http, "/v1/enrol/challenge", {"invitation_key": key, "bundle": thief.signed_bundle()})
        proof = thief.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
        r = await _post(http, "/v1/enrol", {**replayed, "proof": proof, "statement": own.to_json()})
        assert r.status_code == 400 and "invitation key" in r.json()["detail"], r.text
    rows = liaison.server.sql("SELECT count(*) FROM device WHERE principal_id = ?", pid)
    assert rows == [(0,)]


async def _post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST, waiting as the server asks while enrolments are rate-limited."""
    for _ in range(20):
        r = await http.post(path, json=body)
        if r.status_code != 429:
            return r
        await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
    return r


# --- honest sends, and members left out --------------------------------------------------------


def test_honest_sends_work_and_members_left_out_are_handled(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    ghost = uid("ghost")  # a member without a device: left out, which nothing can prove
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        ghost,
        "--name",
        "g",
        "--nation",
        "UKR",
        "--clearance",
        "SECRET",
        "--compartment",
        "AIRDEF",
    )
    liaison("-p", "root", "admin", "channel", "add", n["chan"], ghost)
    asyncio.run(_honest(liaison, n, ghost))
    r = liaison("-p", n["usa"], "send", "--dry-run", "--channel", n["chan"], "--label", AIRDEF)
    assert f"warning: {ghost} is left out (no-device) without proof" in r.stderr
    r = liaison("-p", n["usa"], "--json", "send", "--channel", n["chan"], "--label", AIRDEF, input="hi")
    assert any(ghost in w for w in r.json()["warnings"])


async def _honest(liaison: Liaison, n: dict[str, str], ghost: str) -> None:
    async with _client(liaison.home, n["usa"]) as usa, _client(liaison.home, n["ukr"]) as ukr:
        plan = await usa.plan(n["chan"], AIRDEF)
        assert {r.principal for r in plan.recipients} >= {n["usa"], n["ukr"]}
        assert n["fra"] in {e.principal for e in plan.excluded}  # proven: holds:AIRDEF false
        assert [w for w in plan.warnings if n["fra"] in w] == []
        assert [w for w in plan.warnings if ghost in w] == [f"{ghost} is left out (no-device) without proof"]
        sent = await usa.send(n["chan"], AIRDEF, b"air defence")
        assert sent.warnings == plan.warnings
        many = await usa.send_many(n["chan"], REL, [b"1", b"2"])
        assert len(many) == 2
        assert (await ukr.read(sent.id)).plaintext == b"air defence"
        own = await ukr.check_own_records()
        assert (own.principal, own.device, own.device_seq, own.principal_seq) == (
            n["ukr"],
            ukr.device_id,
            1,
            1,
        )
        assert own.facts["holds:AIRDEF"] is True and own.facts["active"] is True
        with pytest.raises(APIError):
            await usa.plan("no-such-channel", AIRDEF)


# --- the policy: root-signed and versioned (protocol 9.7) ----------------------------------------


def test_a_policy_not_signed_by_root_or_older_than_seen_is_refused(liaison: Liaison, server: Server) -> None:
    """The server serves a policy the root never signed (an operator's edit, or an answer
    edited in transit), or rolls back to an older version than this profile has seen: the
    client refuses before it seals anything."""
    n = world(liaison)
    asyncio.run(_policy_attacks(liaison, server, n))


class EditedPolicy(Tamper):
    """The policy file the server serves, edited: one more nation in its release universe."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path != "/v1/policy/file":
            return response
        text = (await response.aread()).decode()
        text = text.replace('"POL"]', '"POL", "RUS"]', 1)
        assert "RUS" in text
        return httpx.Response(200, content=text.encode(), request=request)


async def _policy_attacks(liaison: Liaison, server: Server, n: dict[str, str]) -> None:
    edited = EditedPolicy(server.cert)
    async with _client(liaison.home, n["usa"], edited) as usa:
        with pytest.raises(DirectoryInvalid) as caught:
            await usa.send(n["chan"], REL, b"under a policy nobody signed")
    assert caught.value.why == "policy" and edited.posted_messages() == 0

    edited = Tamper(server.cert)
    async with _client(liaison.home, n["usa"], edited) as usa:
        # This profile saw version 2 before (the server has since rolled back to version 1).
        usa.directory_memory.advance(policy_version=2)
        with pytest.raises(DirectoryInvalid, match="below version 2") as caught:
            await usa.send(n["chan"], REL, b"under an older policy")
    assert caught.value.why == "policy" and edited.posted_messages() == 0


# --- monitoring: a device of one's own principal nobody expected (issue 13 item 8) -----------


def test_a_device_enrolled_for_ones_principal_raises_an_alarm(
    liaison: Liaison, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin (or a stolen admin device) enrols a second device for an analyst's principal:
    the authority table allows it, so only the owner can tell it is not theirs. The analyst's
    device sees it at the next checkpoint it accepts, in its next send's
    directory proofs and in `check_own_records`, once each; never a traceback."""
    pid = uid("usa")
    liaison.principal(pid, "USA", "SECRET")
    chan = uid("chan")
    liaison("-p", "root", "admin", "channel", "create", chan, "--ceiling", "SECRET//REL TO USA")
    liaison("-p", "root", "admin", "channel", "members", chan, pid)
    # Within the default interval after enrolment nothing is checked again by itself.
    assert "alarm:" not in liaison("-p", pid, "audit", "checkpoint").stderr
    rogue = liaison.enrol(
        pid + "-rogue",
        liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"],
        principal=pid,
    )
    monkeypatch.setenv("LIAISON_MONITOR_INTERVAL", "0")
    r = liaison("-p", pid, "audit", "checkpoint")
    alarm = [line for line in r.stderr.splitlines() if line.startswith("alarm:")]
    assert len(alarm) == 1 and rogue["device"] in alarm[0] and "invited by d_" in alarm[0], r.stderr
    assert "alarm:" not in liaison("-p", pid, "audit", "checkpoint").stderr  # raised once
    # A third device: the send's own proofs name it (its recipients include it).
    third = liaison.enrol(
        pid + "-third",
        liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"],
        principal=pid,
    )
    monkeypatch.setenv("LIAISON_MONITOR_INTERVAL", "off")
    r = liaison("-p", pid, "send", "--channel", chan, "--label", "SECRET//REL TO USA", input="hi")
    assert [line for line in r.stderr.splitlines() if line.startswith("alarm:")] == [
        line for line in r.stderr.splitlines() if third["device"] in line
    ] and third["device"] in r.stderr
    # The library reports it too, on a profile that had not seen either.
    monkeypatch.setenv("LIAISON_MONITOR_INTERVAL", "nonsense")
    r = liaison("-p", pid, "audit", "checkpoint", ok=False)
    assert r.code == 1 and "LIAISON_MONITOR_INTERVAL must be a number" in r.stderr
    assert "Traceback" not in r.stderr
    monkeypatch.delenv("LIAISON_MONITOR_INTERVAL")
    fourth = liaison.enrol(
        pid + "-fourth",
        liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"],
        principal=pid,
    )

    async def library() -> None:
        async with _client(liaison.home, pid) as c:
            own = await c.check_own_records()
            assert [x["device"] for x in own.new_devices] == [fourth["device"]]
            assert own.new_devices[0]["invited_by"].startswith("d_") and c.alarms
            assert (await c.check_own_records()).new_devices == []

    asyncio.run(library())
