"""Test harness: a live app per test on a fresh database, and devices that sign their requests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from liaison.crypto.envelope import seal
from liaison.crypto.httpsig import sign_request
from liaison.crypto.keys import DeviceKeys, PublicBundle, generate_device
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.policy import Policy
from liaison.service.app import create_app
from liaison.service.bootstrap import init_database, write_files
from liaison.service.settings import load_settings
from liaison.service.state import AppState

PG_ENV = "LIAISON_TEST_POSTGRES_URL"
BASE = "https://liaison.test"


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import asyncpg
    from sqlalchemy.engine.url import make_url

    url = make_url(os.environ[PG_ENV])
    name = f"liaison_t_{uuid.uuid4().hex[:12]}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@dataclass
class Device:
    """An enrolled device: its keys and a way to send signed requests."""

    world: World
    principal: str
    keys: DeviceKeys

    @property
    def id(self) -> str:
        return self.keys.device_id

    async def request(self, method: str, path: str, json_body: Any = None, *,
                      raw: bytes | None = None, headers: dict[str, str] | None = None,
                      sign: bool = True, nonce: str | None = None, now: Any = None
                      ) -> httpx.Response:
        import json as _json

        body = raw if raw is not None else (
            _json.dumps(json_body).encode() if json_body is not None else b"")
        h = {"content-type": "application/json"} if body else {}
        h.update(headers or {})
        url = httpx.URL(BASE + path)  # sign exactly the encoded URL that goes on the wire
        if sign:
            h.update(sign_request(method, str(url), h, body or None, self.keys, nonce=nonce,
                                  now=now))
        return await self.world.http.request(method, url, content=body or None, headers=h)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, body if body is not None else {}, **kw)

    async def recipients(self, channel: str, label: Label) -> list[PublicBundle]:
        r = await self.get(f"/v1/channels/{channel}/recipients?label={label.text()}")
        assert r.status_code == 200, r.text
        return [PublicBundle.from_signed(d["signed_bundle"]) for d in r.json()["devices"]]

    async def send(self, channel: str, label: Label | str, text: bytes = b"hello", *,
                   to: list[str] | None = None, recipients: list[PublicBundle] | None = None,
                   suite: str = "MLKEM768-X25519", mutate: Any = None) -> httpx.Response:
        lab = parse_label(label, self.world.policy) if isinstance(label, str) else label
        if recipients is None:
            recipients = await self.recipients(channel, lab)
            if to is not None:
                recipients = [b for b in recipients if b.principal in to]
        env = seal(text, channel=channel, label=lab, sender=self.keys, recipients=recipients,
                   suite=suite)
        if mutate:
            mutate(env)
        body: dict[str, Any] = {"envelope": env}
        if to is not None:
            body["to"] = to
        return await self.post("/v1/messages", body)


@dataclass
class World:
    """One running service (its own data dir and database) and its enrolled devices."""

    state: AppState
    http: httpx.AsyncClient
    policy: Policy
    root: Device = field(init=False)

    async def enrol(self, principal: str, keys: DeviceKeys | None = None,
                    admin: Device | None = None) -> Device:
        admin = admin or self.root
        r = await admin.post(f"/v1/admin/principals/{principal}/enrolment-codes")
        assert r.status_code == 201, r.text
        return await self.enrol_with_code(principal, r.json()["code"], keys)

    async def enrol_with_code(self, principal: str, code: str,
                              keys: DeviceKeys | None = None) -> Device:
        keys = keys or generate_device(principal)
        r = await self.http.post("/v1/enrol", json={"code": code, "bundle": keys.signed_bundle()})
        assert r.status_code == 201, r.text
        return Device(self, principal, keys)

    async def principal(self, pid: str, nation: str, clearance: str, *,
                        compartments: list[str] | None = None, roles: list[str] | None = None,
                        kind: str = "person", admin: Device | None = None,
                        suite: str = "MLKEM768-X25519") -> Device:
        admin = admin or self.root
        r = await admin.post("/v1/admin/principals", {
            "id": pid, "display_name": pid, "nation": nation, "clearance": clearance,
            "compartments": compartments or [], "roles": roles or ["analyst"], "kind": kind})
        assert r.status_code == 201, r.text
        keys = generate_device(pid, suite=suite, mldsa65=suite != "X25519")
        return await self.enrol(pid, keys, admin=admin)

    async def channel(self, cid: str, ceiling: str, members: list[str],
                      admin: Device | None = None) -> None:
        admin = admin or self.root
        r = await admin.post("/v1/admin/channels", {"id": cid, "ceiling": ceiling})
        assert r.status_code == 201, r.text
        r = await admin.request("PUT", f"/v1/admin/channels/{cid}/members",
                                {"principals": members})
        assert r.status_code == 200, r.text


@asynccontextmanager
async def running_world(tmp: Path, database_url: str | None, **settings: Any
                        ) -> AsyncIterator[World]:
    data_dir = tmp / f"data-{uuid.uuid4().hex[:6]}"
    write_files(data_dir)
    code = await init_database(data_dir, database_url)
    overrides = {"database_url": database_url} if database_url else {}
    cfg = load_settings(data_dir, public_url=BASE, **overrides, **settings)
    app = create_app(cfg)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            state: AppState = app.state.liaison
            world = World(state, http, state.policy)
            world.root = await world.enrol_with_code("root", code)
            yield world
