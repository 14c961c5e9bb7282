"""Test harness: a live app per test on a fresh database, and devices that sign their requests."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, text

from liaison.clients._directory import DirectoryMemory
from liaison.crypto import merkle, note
from liaison.crypto.encoding import b64decode, b64url_decode, b64url_encode
from liaison.crypto.envelope import seal
from liaison.crypto.httpsig import sign_request
from liaison.crypto.keys import DeviceKeys, PublicBundle, generate_device
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.policy import Policy
from liaison.crypto.statements import invitation_public
from liaison.service.app import create_app
from liaison.service.config import load_settings
from liaison.service.ops.bootstrap import init_database, write_files
from liaison.service.problems import PROBLEM_BASE, PROBLEM_TYPES
from liaison.service.state import AppState
from liaison.service.storage import models
from liaison.service.storage.logstore import LogReader
from liaison.service.tlog.entries import Opening
from liaison.service.tlog.entries import view as entry_view
from tests.service.directory_kit import anchors_of, bootstrap_statements, device_enrolment, with_statement

PG_ENV = "LIAISON_TEST_POSTGRES_URL"
BASE = "https://liaison.test"

#: Tables whose row counts `World.counts` reports (to prove nothing was partially written).
TABLES: dict[str, Any] = {
    "principal": models.Principal,
    "device": models.Device,
    "code": models.EnrolmentCode,
    "channel": models.Channel,
    "member": models.ChannelMember,
    "message": models.Message,
    "delivery": models.Delivery,
    "log": models.AuditEntry,
    "checkpoint": models.Checkpoint,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_problem(r: httpx.Response, slug: str) -> dict[str, Any]:
    """`r` is an RFC 9457 problem of type `slug`, with that type's status; returns the body."""
    assert r.headers.get("content-type", "").startswith("application/problem+json"), (
        r.status_code,
        r.headers.get("content-type"),
        r.text[:300],
    )
    body = r.json()
    assert body["type"] == PROBLEM_BASE + slug, (r.status_code, body)
    assert r.status_code == body["status"] == PROBLEM_TYPES[slug][0], (r.status_code, body)
    assert body["title"] == PROBLEM_TYPES[slug][1]
    assert "Traceback" not in r.text
    return body


def _pg_admin_dsn() -> str:
    from sqlalchemy.engine.url import make_url

    return make_url(os.environ[PG_ENV]).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_pg_database(*, migrated: bool = False) -> str:
    """A new PostgreSQL database, empty or (`migrated`) holding the schema and nothing else:
    a copy of this process's template (`_pg_template`); returns its SQLAlchemy URL (asyncpg
    driver)."""
    import asyncpg
    from sqlalchemy.engine.url import make_url

    template = f' TEMPLATE "{await _pg_template()}"' if migrated else ""
    name = f"liaison_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{template}')
    finally:
        await conn.close()
    return make_url(os.environ[PG_ENV]).set(database=name).render_as_string(hide_password=False)


# Migrating a database takes longer than all else a world's start does (SQLite 0.1 s,
# PostgreSQL 0.3 s, nearly 1,000 worlds a run), so each test process migrates one database
# of each kind once and gives each world a copy: what `init` does then is what it does to a
# database its owner migrated beforehand (`bootstrap._prepared`). tests/service/test_schema.py
# and the init tests migrate empty databases as before.
_templates: dict[str, str] = {}


async def _pg_template() -> str:
    """This process's migrated, otherwise empty PostgreSQL database (dropped at exit)."""
    if "postgres" not in _templates:
        from liaison.service.storage.db import Database
        from liaison.service.storage.migrate import upgrade

        url = await create_pg_database()
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()  # CREATE DATABASE ... TEMPLATE needs it unused
        _templates["postgres"] = url
        atexit.register(lambda: asyncio.run(drop_pg_database(url)))
    from sqlalchemy.engine.url import make_url

    return str(make_url(_templates["postgres"]).database)


async def _copy_sqlite_template(dest: Path) -> None:
    """Put a copy of this process's migrated, otherwise empty SQLite database at `dest`."""
    if "sqlite" not in _templates:
        from liaison.service.storage.db import Database
        from liaison.service.storage.migrate import upgrade

        path = Path(tempfile.mkdtemp(prefix="liaison-template-")) / "template.db"
        atexit.register(shutil.rmtree, path.parent, True)
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(db)
        finally:
            await db.dispose()  # the last connection folds the WAL into the file
        assert not path.with_name(path.name + "-wal").exists()
        _templates["sqlite"] = str(path)
    shutil.copyfile(_templates["sqlite"], dest)


async def drop_pg_database(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine.url import make_url

    name = make_url(url).database
    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_database(*, migrated: bool = False) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test (`migrated`: see `create_pg_database`),
    dropped afterwards."""
    url = await create_pg_database(migrated=migrated)
    try:
        yield url
    finally:
        await drop_pg_database(url)


async def assert_refused(
    world: World,
    call: Callable[[], Awaitable[httpx.Response]],
    slug: str,
    entry: str | None = "message.rejected",
    why: str | None = None,
) -> dict[str, Any]:
    """`call()` is refused as problem `slug`; the refusal is the one audit entry appended (of
    type `entry`, giving `why` or `slug` as its reason) and no other table changes.
    Returns the entry (or the problem body when `entry` is None: nothing may be logged)."""
    before = await world.counts()
    r = await call()
    body = assert_problem(r, slug)
    after = await world.counts()
    new = await world.entries(start=before["log"])
    if entry is None:
        assert new == [] and after == before, (new, before, after)
        return body
    assert [e["type"] for e in new] == [entry], new
    assert new[0]["reason" if entry == "message.rejected" else "why"] == (why or slug), new[0]
    # The entry and its batch's map.head (protocol 9.6), under one new checkpoint.
    assert after == {**before, "log": before["log"] + 2, "checkpoint": before["checkpoint"] + 1}, (
        before,
        after,
    )
    return new[0]


@dataclass
class Device:
    """An enrolled device: its keys and a way to send signed requests."""

    world: World
    principal: str
    keys: DeviceKeys

    @property
    def id(self) -> str:
        return self.keys.device_id

    def on(self, world: World) -> Device:
        """The same device, sending to another service."""
        return Device(world, self.principal, self.keys)

    def build(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        nonce: str | None = None,
        now: Any = None,
    ) -> httpx.Request:
        """A signed request, not sent (so a test can replay or tamper with it)."""
        body = raw if raw is not None else (json.dumps(json_body).encode() if json_body is not None else b"")
        h = {"content-type": "application/json"} if body else {}
        h.update(headers or {})
        url = httpx.URL(self.world.base + path)  # sign exactly the encoded URL that goes on the wire
        if sign:
            h.update(sign_request(method, str(url), h, body or None, self.keys, nonce=nonce, now=now))
        return self.world.http.build_request(method, url, content=body or None, headers=h)

    async def request(
        self, method: str, path: str, json_body: Any = None, *, statements: bool = True, **kw: Any
    ) -> httpx.Response:
        """Send a signed request. Admin changes carry the statement a real client signs
        (`directory_kit.with_statement`) unless `statements=False`; an enrolment code made
        for the request is added to a successful answer (a real client keeps it)."""
        code = None
        if statements and kw.get("raw") is None:
            json_body, code = await with_statement(self.world.state, self.keys, method, path, json_body)
        r = await self.world.http.send(self.build(method, path, json_body, **kw))
        if code is not None and r.status_code == 201:
            r = httpx.Response(201, json={**r.json(), "code": code}, headers=r.headers, request=r.request)
        return r

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, body if body is not None else {}, **kw)

    async def recipients(self, channel: str, label: Label, suite: str | None = None) -> list[PublicBundle]:
        query = f"label={label.text()}" + (f"&suite={suite}" if suite else "")
        r = await self.get(f"/v1/channels/{channel}/recipients?{query}")
        assert r.status_code == 200, r.text
        return [PublicBundle.from_signed(d["signed_bundle"]) for d in r.json()["devices"]]

    async def envelope(
        self,
        channel: str,
        label: Label | str,
        text: bytes = b"hello",
        *,
        to: list[str] | None = None,
        recipients: list[PublicBundle] | None = None,
        suite: str = "MLKEM768-X25519",
        **seal_kw: Any,
    ) -> dict[str, Any]:
        lab = parse_label(label, self.world.policy) if isinstance(label, str) else label
        if recipients is None:
            recipients = await self.recipients(channel, lab, suite)
            if to is not None:
                recipients = [b for b in recipients if b.principal in to]
        return seal(
            text, channel=channel, label=lab, sender=self.keys, recipients=recipients, suite=suite, **seal_kw
        )

    async def submit(self, env: dict[str, Any], to: list[str] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"envelope": env}
        if to is not None:
            body["to"] = to
        return await self.post("/v1/messages", body)

    async def send(
        self,
        channel: str,
        label: Label | str,
        text: bytes = b"hello",
        *,
        to: list[str] | None = None,
        recipients: list[PublicBundle] | None = None,
        suite: str = "MLKEM768-X25519",
        mutate: Any = None,
        **seal_kw: Any,
    ) -> httpx.Response:
        env = await self.envelope(channel, label, text, to=to, recipients=recipients, suite=suite, **seal_kw)
        if mutate:
            mutate(env)
        return await self.submit(env, to)


@dataclass
class World:
    """One running service (its own data dir and database) and its enrolled devices."""

    state: AppState
    http: httpx.AsyncClient
    policy: Policy
    app: FastAPI
    root: Device = field(init=False)
    #: The authority requests are signed for: the public URL, else the server's own.
    base: str = BASE

    # --- looking into the database (read-only, for assertions) ----------------------------

    async def counts(self) -> dict[str, int]:
        """Row counts of the tables that matter (see TABLES)."""
        async with self.state.db.sessions() as s:
            return {
                name: int(await s.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in TABLES.items()
            }

    async def log_size(self) -> int:
        async with self.state.db.sessions() as s:
            return await LogReader(s).size()

    async def entries(
        self, type_: str | None = None, start: int = 0, *, heads: bool = False
    ) -> list[dict[str, Any]]:
        """Audit entries from index `start` on (optionally of one type), parsed; without the
        `map.head` that ends every batch (protocol 9.6) unless `heads`."""
        async with self.state.db.sessions() as s:
            q = select(models.AuditEntry.idx, models.AuditEntry.data).where(models.AuditEntry.idx >= start)
            if type_:
                q = q.where(models.AuditEntry.type == type_)
            elif not heads:
                q = q.where(models.AuditEntry.type != "map.head")
            rows = (await s.execute(q.order_by(models.AuditEntry.idx))).all()
            openings = await LogReader(s).openings(i for i, _ in rows)
        # Entries v2 (protocol 10) opened with their stored openings: every field, as root sees.
        return [
            entry_view(bytes(d), Opening.from_row(*openings[i]) if i in openings else None) for i, d in rows
        ]

    async def sql(self, statement: str, **params: Any) -> Any:
        """Run one SQL statement in its own transaction (test set-up, e.g. moving time)."""
        async with self.state.db.engine.begin() as conn:
            return await conn.execute(text(statement), params)

    def verify_receipt(self, receipt: dict[str, Any], entry: bytes | None = None) -> None:
        """The receipt's checkpoint is signed by the log key and proves the entry's inclusion."""
        cp = note.open_checkpoint(receipt["checkpoint"].encode(), self.state.log.signer.verifier)
        assert cp.size == receipt["tree_size"] > receipt["log_index"]
        if entry is not None:
            merkle.verify_inclusion(
                merkle.leaf_hash(entry),
                receipt["log_index"],
                cp.size,
                [b64decode(h) for h in receipt["inclusion_proof"]],
                cp.root_hash,
            )

    async def entry_bytes(self, index: int) -> bytes:
        async with self.state.db.sessions() as s:
            row = await s.get(models.AuditEntry, index)
            assert row is not None
            return bytes(row.data)

    async def entry(self, index: int) -> dict[str, Any]:
        """Entry `index` as root reads it: v1 as written, v2 opened with its stored opening."""
        async with self.state.db.sessions() as s:
            row = await s.get(models.AuditEntry, index)
            assert row is not None
            found = (await LogReader(s).openings([index])).get(index)
        return entry_view(bytes(row.data), Opening.from_row(*found) if found else None)

    @asynccontextmanager
    async def served(self, *, liaison_server: bool = False) -> AsyncIterator[str]:
        """Serve this world's app (already started) over real HTTP on a free loopback port,
        for what the in-memory transport cannot do (streaming responses, bytes that are not
        HTTP: see `serve_app`). Yields the base URL; requests are still signed for BASE,
        which the app takes as its public URL."""
        async with serve_app(self.app, liaison_server=liaison_server) as base:
            yield base

    async def enrol(
        self, principal: str, keys: DeviceKeys | None = None, admin: Device | None = None
    ) -> Device:
        admin = admin or self.root
        r = await admin.post(f"/v1/admin/principals/{principal}/enrolment-codes")
        assert r.status_code == 201, r.text
        return await self.enrol_with_code(principal, r.json()["code"], keys)

    async def enrol_with_code(self, principal: str, code: str, keys: DeviceKeys | None = None) -> Device:
        keys = keys or generate_device(principal)
        r = await enrol_device(self.http, code, keys)
        assert r.status_code == 201, r.text
        return Device(self, principal, keys)

    async def principal(
        self,
        pid: str,
        nation: str,
        clearance: str,
        *,
        compartments: list[str] | None = None,
        roles: list[str] | None = None,
        kind: str = "person",
        admin: Device | None = None,
        suite: str = "MLKEM768-X25519",
    ) -> Device:
        admin = admin or self.root
        r = await admin.post(
            "/v1/admin/principals",
            {
                "id": pid,
                "display_name": pid,
                "nation": nation,
                "clearance": clearance,
                "compartments": compartments or [],
                "roles": roles or ["analyst"],
                "kind": kind,
            },
        )
        assert r.status_code == 201, r.text
        keys = generate_device(pid, suite=suite, mldsa65=suite != "X25519")
        return await self.enrol(pid, keys, admin=admin)

    async def channel(self, cid: str, ceiling: str, members: list[str], admin: Device | None = None) -> None:
        admin = admin or self.root
        r = await admin.post("/v1/admin/channels", {"id": cid, "ceiling": ceiling})
        assert r.status_code == 201, r.text
        r = await admin.request("PUT", f"/v1/admin/channels/{cid}/members", {"principals": members})
        assert r.status_code == 200, r.text


def invitation_key(code: str) -> str:
    """The invitation key an enrolling device derives from its code (protocol 9.8)."""
    return b64url_encode(invitation_public(code))


#: A well-formed invitation key that no code derives (for requests refused before the key).
NO_KEY = "A" * 43


async def enrol_device(
    http: httpx.AsyncClient, code: str, keys: DeviceKeys, base: str = ""
) -> httpx.Response:
    """Enrol `keys` as a device does (protocol 9.8): the invitation by the key the code
    derives, the KEM challenge, its signed answer, the enrolment with the device's own
    statement. Returns the first refusal, or the answer of the enrolment."""
    key = b64url_encode(invitation_public(code))
    doc = await http.get(base + f"/v1/enrol/invitations/{key}")
    if doc.status_code != 200:
        return doc
    bundle = keys.signed_bundle()
    r = await http.post(base + "/v1/enrol/challenge", json={"invitation_key": key, "bundle": bundle})
    if r.status_code != 200:
        return r
    proof = keys.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
    checkpoint = await http.get(base + "/v1/audit/checkpoint")
    if checkpoint.status_code != 200:
        return checkpoint
    origin = checkpoint.text.split("\n", 1)[0]
    statement = device_enrolment(doc.json(), code, keys, origin)
    body = {"invitation_key": key, "bundle": bundle, "proof": proof, "statement": statement}
    return await http.post(base + "/v1/enrol", json=body)


def enrol_device_sync(base: str, code: str, keys: DeviceKeys, cert: str) -> httpx.Response:
    """`enrol_device` for a real server, blocking."""
    with httpx.Client(base_url=base, verify=tls_context(cert), timeout=10) as http:
        key = b64url_encode(invitation_public(code))
        doc = http.get(f"/v1/enrol/invitations/{key}")
        if doc.status_code != 200:
            return doc
        bundle = keys.signed_bundle()
        r = http.post("/v1/enrol/challenge", json={"invitation_key": key, "bundle": bundle})
        if r.status_code != 200:
            return r
        proof = keys.answer_kem_challenge(b64url_decode(r.json()["challenge"]))
        checkpoint = http.get("/v1/audit/checkpoint")
        if checkpoint.status_code != 200:
            return checkpoint
        origin = checkpoint.text.split("\n", 1)[0]
        statement = device_enrolment(doc.json(), code, keys, origin)
        body = {"invitation_key": key, "bundle": bundle, "proof": proof, "statement": statement}
        return http.post("/v1/enrol", json=body)


@asynccontextmanager
async def running_world(
    tmp: Path, database_url: str | None, policy: Callable[[str], str] | None = None, **settings: Any
) -> AsyncIterator[World]:
    """A world whose data directory is fresh; `policy` may rewrite its policy.toml first."""
    data_dir = tmp / f"data-{uuid.uuid4().hex[:6]}"
    write_files(data_dir)
    if policy is not None:
        path = data_dir / "policy.toml"
        path.write_text(policy(path.read_text()))
    if database_url is None and "database_url" not in settings:
        sqlite = load_settings(data_dir).sqlite_path
        assert sqlite is not None
        await _copy_sqlite_template(sqlite)
    code = await init_database(data_dir, database_url)
    overrides = {"database_url": database_url} if database_url else {}
    # public_url=BASE unless a test sets it (None: the server's authority comes from host/port);
    # the OpenAPI document and its viewers are served to tests (off by default in `run`).
    cfg = load_settings(data_dir, **{"public_url": BASE, "api_docs": True, **overrides, **settings})
    app = create_app(cfg)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            state: AppState = app.state.liaison
            world = World(state, http, state.policy, app)
            if cfg.public_url is None:
                world.base = f"https://127.0.0.1:{cfg.port}"
            world.root = await world.enrol_with_code("root", code)
            await genesis(world)
            yield world


async def genesis(world: World) -> None:
    """What the genesis root device's client signs right after enrolling, before anything
    else: the roots, the policy and the root principal (protocol 9.7)."""
    for body in await bootstrap_statements(world.state, world.root.keys):
        r = await world.root.post("/v1/directory/statements", body)
        while r.status_code == 429:  # a test's own low rate limit: wait as a client would
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            r = await world.root.post("/v1/directory/statements", body)
        assert r.status_code == 201, r.text


async def anchor_profile(world: World, log_json: Path) -> None:
    """Anchor a hand-made client profile (its state beside `log_json`) on this world's roots
    and policy, as a LIAISON2 invitation would at enrolment (protocol 9.7)."""
    anchors = await anchors_of(world.state)
    DirectoryMemory.beside(log_json, world.state.log.verifier_key).anchor(anchors)


@asynccontextmanager
async def serve_app(app: Any, *, liaison_server: bool = False) -> AsyncIterator[str]:
    """Serve an app whose state is already open over loopback HTTP; yields the base URL.

    `liaison_server=True` serves it as `liaison-server run` does (`api.server.LiaisonServer`:
    its own protocol, which bounds request heads, keeps deadlines, caps connections per
    address and answers what is not HTTP with problem+json), else with plain uvicorn."""
    import uvicorn

    from liaison.service.api.server import LiaisonServer, Limits, Listen

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then (else
    # Nagle and delayed ACKs add 40 ms to every kept-alive request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server: uvicorn.Server
    if liaison_server:
        sock.close()  # it binds its own listeners (a port just freed: another may take it first)
        server = LiaisonServer(config, [Listen(config, "127.0.0.1", port, None, Limits())])
        task = asyncio.create_task(server.serve())
    else:
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@asynccontextmanager
async def another_service(world: World, *, hot_paths: bool = True) -> AsyncIterator[World]:
    """A second app on `world`'s settings and database, as another process or replica would
    be (its own writer and caches). `hot_paths=False` leaves POST /v1/messages to FastAPI's
    route. Devices of `world` act on it through `Device.on`."""
    app = create_app(world.state.settings)
    app.hot_paths = hot_paths
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
    ):
        state: AppState = app.state.liaison
        other = World(state, http, state.policy, app)
        other.root = world.root.on(other)
        yield other


#: The coalition scenario's channel: its ceiling, and the labels tests send at.
OPS = "ops"
OPS_CEILING = "SECRET//AIRDEF/CYBER//REL TO FRA, UKR, USA"


@dataclass
class Coalition:
    """Three nations' analysts and a system on one channel (see `coalition`)."""

    usa: Device  # USA, SECRET, AIRDEF + CYBER
    ukr: Device  # UKR, SECRET, AIRDEF
    fra: Device  # FRA, CONFIDENTIAL, no compartment
    sensor: Device  # UKR system, SECRET clearance (but systems stop at CONFIDENTIAL), AIRDEF

    @property
    def all(self) -> list[Device]:
        return [self.usa, self.ukr, self.fra, self.sensor]


async def coalition(world: World) -> Coalition:
    c = Coalition(
        usa=await world.principal("usa-analyst", "USA", "SECRET", compartments=["AIRDEF", "CYBER"]),
        ukr=await world.principal("ukr-analyst", "UKR", "SECRET", compartments=["AIRDEF"]),
        fra=await world.principal("fra-analyst", "FRA", "CONFIDENTIAL"),
        sensor=await world.principal("ukr-sensor", "UKR", "SECRET", compartments=["AIRDEF"], kind="system"),
    )
    await world.channel(OPS, OPS_CEILING, [d.principal for d in c.all])
    return c


@asynccontextmanager
async def world_on(backend: str, tmp: Path, **settings: Any) -> AsyncIterator[World]:
    """A world on `backend` ("sqlite" or "postgres") with settings overridden."""
    if backend == "sqlite":
        async with running_world(tmp, None, **settings) as w:
            yield w
    else:
        async with postgres_database(migrated=True) as url, running_world(tmp, url, **settings) as w:
            yield w


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events of a streaming response: {"event", "id", "data" (JSON)} or
    {"comment": ...} for comment lines (": connected", ": keep-alive")."""
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[key] = json.loads(value) if key == "data" else value


async def next_message_event(events: AsyncIterator[dict[str, Any]], seconds: float = 10) -> dict[str, Any]:
    """The next `message` event, skipping comments; fails after `seconds`."""

    async def first() -> dict[str, Any]:
        async for ev in events:
            if ev.get("event") == "message":
                return ev
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(first(), seconds)


def signed(
    http: httpx.AsyncClient, keys: DeviceKeys, method: str, url: str, json_body: Any = None
) -> httpx.Request:
    """A request signed by `keys` for exactly `url` (for servers without a public URL)."""
    body = json.dumps(json_body).encode() if json_body is not None else b""
    headers = {"content-type": "application/json"} if body else {}
    u = httpx.URL(url)
    headers.update(sign_request(method, str(u), headers, body or None, keys))
    return http.build_request(method, u, content=body or None, headers=headers)


# --- `liaison-server run` as a subprocess -------------------------------------------------


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env.update(extra)
    return env


def start_server(data: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("liaison-server")
    return subprocess.Popen(
        [str(exe), "run", "--data-dir", str(data), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_ready(proc: subprocess.Popen[bytes], base: str, cert: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited: {proc.stderr.read().decode()[-2000:]}" if proc.stderr else "server exited"
            )
        try:
            if httpx.get(base + "/readyz", verify=tls_context(cert), timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def tls_context(cert: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert)


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Stop the server with SIGTERM; it must shut down cleanly. Returns its stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the server did not stop on SIGTERM") from None
    # uvicorn re-raises the signal it handled after a graceful shutdown, hence -SIGTERM.
    assert proc.returncode in (0, -15), proc.returncode
    text = err.decode(errors="replace")
    assert "Traceback" not in text and '"level": "error"' not in text, text[-3000:]
    return text


async def in_one_batch(
    world: World, *calls: Callable[[], Awaitable[Any]], in_order: bool = False
) -> list[Any]:
    """Run `calls` concurrently while a job holds the writer, so that every write they queue
    lands in the one batch that runs when it lets go (with `in_order`, each call starts only
    once the one before it is queued, so the batch runs them in this order). Returns their
    results (or errors)."""
    writer = world.state.writer

    async def queued(n: int) -> None:
        for _ in range(3000):
            if writer.pending >= n:
                break
            await asyncio.sleep(0.01)
        assert writer.pending == n, (writer.pending, n)

    release = threading.Event()
    holding = asyncio.ensure_future(writer.run(lambda tx: release.wait(30)))
    await asyncio.sleep(0.05)  # the holding batch is in the writer's thread
    tasks = []
    try:
        for n, call in enumerate(calls, start=1):
            tasks.append(asyncio.ensure_future(call()))
            if in_order:
                await queued(n)
        await queued(len(calls))
        batches = writer.batches
    finally:
        release.set()
    await holding
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert writer.batches == batches + 1  # one batch took them all
    return results
