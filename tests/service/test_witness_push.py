"""Item 23: the service pushes each new checkpoint to its witnesses (c2sp.org/tlog-witness).

Two real witnesses (`liaison.clients._witness`, the code behind `liaison audit witness
--serve`) run on loopback ports; the real service, on SQLite and on PostgreSQL, is configured
with their keys and URLs. Messages are sent; within seconds both witnesses have cosigned a
checkpoint that covers them, the service serves it (`?cosigned=2`), and the client's receipt
checks report "witnessed by 2 of 2". A second service with another database but the same log
key (a forked log) is refused by the witnesses, and nothing of it is cosigned.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from liaison.clients import AsyncClient, LogMemory, WitnessPolicy, WitnessPolicyFile
from liaison.clients._witness import Witness, WitnessState, witness_app
from liaison.crypto import note, transparency
from liaison.service.app import create_app
from liaison.service.config import SettingsError, load_settings
from liaison.service.ops.bootstrap import init_database, write_files
from liaison.service.state import AppState
from liaison.service.storage.logstore import LogReader
from liaison.service.tlog.verify import verify_log as verify_stored_log
from tests.service.harness import (
    BASE,
    OPS,
    Device,
    World,
    anchor_profile,
    another_service,
    coalition,
    free_port,
    genesis,
    postgres_database,
    serve_app,
)

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


@dataclass
class Configured:
    """A witness as the service is configured with it: key name, URL, verifier key."""

    name: str
    url: str
    key: str


@dataclass
class RunningWitness(Configured):
    witness: Witness


@asynccontextmanager
async def witness_on(tmp: Path, name: str, log_key: note.Verifier) -> AsyncIterator[RunningWitness]:
    skey, vkey = note.generate_signer_key(name, sig_type=note.SIG_COSIGNATURE_V1)
    w = Witness(note.parse_signer_key(skey), [log_key], WitnessState(tmp / f"{name}.json"))
    async with serve_app(witness_app(w)) as url:
        yield RunningWitness(name, url, vkey, w)


def new_data_dir(tmp: Path, log_signer: str | None = None) -> Path:
    data = tmp / f"data-{uuid.uuid4().hex[:6]}"
    write_files(data)
    if log_signer is not None:  # the same log key as another service: a fork of its log
        (data / "log-signer.key").write_text(log_signer, "ascii")
        verifier = note.parse_signer_key(log_signer.strip()).verifier.key_string
        (data / "log-verifier.key").write_text(verifier + "\n", "ascii")
    return data


@asynccontextmanager
async def service(data: Path, database_url: str | None, witnesses: list[Configured]) -> AsyncIterator[World]:
    code = await init_database(data, database_url)
    overrides: dict[str, Any] = {"database_url": database_url} if database_url else {}
    cfg = load_settings(
        data,
        public_url=BASE,
        witness_keys=[w.key for w in witnesses],
        witness_urls={w.name: w.url for w in witnesses},
        witness_poll_seconds=0.2,
        **overrides,
    )
    app = create_app(cfg)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
    ):
        state: AppState = app.state.liaison
        world = World(state, http, state.policy, app)
        world.root = await world.enrol_with_code("root", code)
        await genesis(world)
        yield world


@asynccontextmanager
async def database(backend: str) -> AsyncIterator[str | None]:
    if backend == "sqlite":
        yield None
    else:
        async with postgres_database() as url:
            yield url


async def cosigned_size(world: World, k: int) -> int:
    r = await world.http.get(f"/v1/audit/checkpoint?cosigned={k}")
    if r.status_code == 404:
        return -1
    assert r.status_code == 200, r.text
    return note.open_checkpoint(r.content, world.state.log.signer.verifier).size


async def wait_cosigned(world: World, k: int, size: int, seconds: float = 20) -> float:
    """Seconds until the service serves a checkpoint of at least `size` with k cosignatures."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if await cosigned_size(world, k) >= size:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint of size >= {size} with {k} cosignatures after {seconds} s")


async def until(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check()` holds within `seconds` (asked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    for _ in itertools.count():
        if check():
            return True
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return False


async def client_for(world: World, device: Device, tmp: Path, witnesses: list[RunningWitness]) -> AsyncClient:
    """The real client library as `device`, with a 2-of-2 policy on the two witnesses."""
    path = tmp / f"state-{device.principal}-{uuid.uuid4().hex[:4]}" / "log.json"
    memory = LogMemory(path)
    log_key = memory.pin(world.state.log.signer.verifier.key_string)
    policy = WitnessPolicy.from_keys([w.key for w in witnesses], 2, wait=20)
    WitnessPolicyFile.beside(memory).save(policy, log_key)
    await anchor_profile(world, path)
    return AsyncClient(BASE, device.keys, memory, transport=httpx.ASGITransport(app=world.app))


async def test_witnesses_cosign_what_the_service_pushes(backend: str, tmp_path: Path) -> None:
    data = new_data_dir(tmp_path)
    log_key = note.parse_signer_key((data / "log-signer.key").read_text("ascii").strip()).verifier
    async with AsyncExitStack() as stack:
        w1 = await stack.enter_async_context(witness_on(tmp_path, "w1.witness.example", log_key))
        w2 = await stack.enter_async_context(witness_on(tmp_path, "w2.witness.example", log_key))
        url = await stack.enter_async_context(database(backend))
        world = await stack.enter_async_context(service(data, url, [w1, w2]))
        c = await coalition(world)
        r = await c.usa.send(OPS, LABEL, b"Convoy at checkpoint 4")
        assert r.status_code == 201, r.text
        sent = r.json()
        took = await wait_cosigned(world, 2, sent["tree_size"])
        assert took < 10, took
        served = (await world.http.get("/v1/audit/checkpoint?cosigned=2")).content
        quorum = note.WitnessPolicy((note.parse_verifier_key(w1.key), note.parse_verifier_key(w2.key)), 2)
        transparency.verify_checkpoint(served, log_key, policy=quorum)
        # A cosignature the service stores from a push is not itself logged: logging it would
        # make a new checkpoint to push, for ever.
        assert await world.entries("witness.cosigned") == []
        # The operator's whole-log check verifies every stored cosignature with the witness keys.
        keys = [note.parse_verifier_key(w.key) for w in (w1, w2)]
        report = await verify_stored_log(world.state.db, log_key, witnesses=keys)
        assert report.ok and report.cosignatures >= 2 and report.cosignatures_unchecked == 0, report

        # The client's receipt checks report the receipt's checkpoint as witnessed by 2 of 2.
        usa = await client_for(world, c.usa, tmp_path, [w1, w2])
        ukr = await client_for(world, c.ukr, tmp_path, [w1, w2])
        async with usa, ukr:
            status = await usa.witnessed(sent["checkpoint"])
            assert status.witnessed and "witnessed by 2 of 2" in status.summary, status
            assert set(status.cosigners) == {w1.name, w2.name}
            again = await usa.send(OPS, LABEL, b"Second convoy")
            assert again.witness is not None and again.witness.witnessed, again.witness
            assert "witnessed by 2 of 2" in again.witness.summary
            message = await ukr.read(again.id)
            assert message.text == "Second convoy"
            assert message.witness is not None and message.witness.witnessed, message.witness

        # A second process on the same database (a replica) starts with no idea of the
        # witnesses' sizes: it offers old 0, gets 409 with the witness's size, and resends
        # with a proof from that size.
        async with another_service(world) as replica:
            before = w1.witness.answers[409]
            r = await c.usa.on(replica).send(OPS, LABEL, b"via the replica")
            assert r.status_code == 201, r.text
            await wait_cosigned(world, 2, r.json()["tree_size"])
            assert await until(lambda: w1.witness.answers[409] > before, 10)
        assert w1.witness.answers[422] == w1.witness.answers[403] == 0


async def test_witnesses_refuse_a_forked_log(backend: str, tmp_path: Path) -> None:
    """Another database under the same log key: the witnesses never cosign its checkpoints."""
    data = new_data_dir(tmp_path)
    signer_text = (data / "log-signer.key").read_text("ascii")
    log_key = note.parse_signer_key(signer_text.strip()).verifier
    async with AsyncExitStack() as stack:
        w1 = await stack.enter_async_context(witness_on(tmp_path, "w1.witness.example", log_key))
        w2 = await stack.enter_async_context(witness_on(tmp_path, "w2.witness.example", log_key))
        url = await stack.enter_async_context(database(backend))
        honest = await stack.enter_async_context(service(data, url, [w1, w2]))
        await coalition(honest)
        size = await honest.log_size()
        await wait_cosigned(honest, 2, size)
        seen = w1.witness.state.get(log_key.name)
        assert seen is not None and seen.size >= size

        fork_url = await stack.enter_async_context(database(backend))
        fork = await stack.enter_async_context(
            service(new_data_dir(tmp_path, signer_text), fork_url, [w1, w2])
        )
        for i in itertools.count():  # grow the fork past what the witnesses hold
            if await fork.log_size() > seen.size:
                break
            await fork.principal(f"fork-{i}", "USA", "SECRET")
        await until(lambda: min(w.witness.answers[422] for w in (w1, w2)) > 0, 15)
        for w in (w1, w2):
            assert w.witness.answers[422] >= 1, w.witness.answers
            kept = w.witness.state.get(log_key.name)
            assert kept is not None and (kept.size, kept.root_hash) == (seen.size, seen.root_hash)
            assert w.witness.evidence.exists()  # the fork's signed checkpoint, kept as evidence
        assert await cosigned_size(fork, 1) == -1

        # By hand, with a proof built from the fork's own tree: 422, never a cosignature.
        fork_note = (await fork.http.get("/v1/audit/checkpoint")).text
        fork_cp = note.open_checkpoint(fork_note.encode(), log_key)
        proof = (
            await fork.root.get(f"/v1/audit/proof/consistency?old={seen.size}&new={fork_cp.size}")
        ).json()
        body = f"old {seen.size}\n" + "".join(h + "\n" for h in proof["consistency_proof"]) + "\n" + fork_note
        async with httpx.AsyncClient() as http:  # the witness runs on this event loop
            r = await http.post(w1.url + "/add-checkpoint", content=body)
        assert r.status_code == 422, r.text


async def test_witness_settings_are_checked(tmp_path: Path) -> None:
    _, vkey = note.generate_signer_key("w.example", sig_type=note.SIG_COSIGNATURE_V1)
    data = new_data_dir(tmp_path)
    await init_database(data)
    for settings, message in (
        ({"witness_urls": {"other.example": "http://127.0.0.1:1"}}, "other.example"),
        ({"witness_keys": [vkey], "witness_urls": {"w.example": "ftp://x"}}, "http"),
    ):
        with pytest.raises(Exception, match=message):
            app = create_app(load_settings(data, **settings))
            async with app.router.lifespan_context(app):
                pass
    with pytest.raises(SettingsError, match="LIAISON_WITNESS_URLS"):  # StartupError is one too
        app = create_app(load_settings(data, witness_urls={"nobody": "http://127.0.0.1:1"}))
        async with app.router.lifespan_context(app):
            pass


@asynccontextmanager
async def serve_on(app: Any, port: int) -> AsyncIterator[str]:
    """Serve an ASGI app on a given loopback port (a witness that comes up late)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        assert await until(lambda: server.started, 10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def test_push_survives_bad_and_absent_witnesses(backend: str, tmp_path: Path) -> None:
    """A witness that is down is retried with backoff until it answers; one that answers 200
    with anything but its own key's valid cosignature gets nothing stored."""
    data = new_data_dir(tmp_path)
    log_key = note.parse_signer_key((data / "log-signer.key").read_text("ascii").strip()).verifier
    _, liar_key = note.generate_signer_key("liar.example", sig_type=note.SIG_COSIGNATURE_V1)
    impostor = note.parse_signer_key(note.generate_signer_key("liar.example", sig_type=4)[0])

    async def liar(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answers 200: junk, and a cosignature by another key under the liar's name."""
        text = (await receive())["body"].decode()
        cp = note.parse_checkpoint(text.split("\n\n")[1] + "\n")
        lines = "garbage\n" + note.cosign_checkpoint(cp, impostor, int(time.time()))
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": lines.encode()})

    late_skey, late_key = note.generate_signer_key("late.example", sig_type=note.SIG_COSIGNATURE_V1)
    late = Witness(note.parse_signer_key(late_skey), [log_key], WitnessState(tmp_path / "late.json"))
    port = free_port()
    async with AsyncExitStack() as stack:
        liar_url = await stack.enter_async_context(serve_app(liar))
        url = await stack.enter_async_context(database(backend))
        witnesses = [
            Configured("late.example", f"http://127.0.0.1:{port}", late_key),
            Configured("liar.example", liar_url, liar_key),
        ]
        world = await stack.enter_async_context(service(data, url, witnesses))
        status = world.app.state.witness_pusher.status
        assert await until(lambda: status["late.example"].failures >= 2, 15)
        assert "unreachable" in (status["late.example"].last_error or "")
        assert await until(lambda: status["liar.example"].failures >= 1, 15)
        assert "without a valid cosignature" in (status["liar.example"].last_error or "")
        # The absent witness comes up on its port: a later retry is cosigned.
        await stack.enter_async_context(serve_on(witness_app(late), port))
        await wait_cosigned(world, 1, await world.log_size(), seconds=90)
        async with world.state.db.sessions() as s:
            rows = await LogReader(s).all_cosignatures()
        assert {witness for _, witness, _ in rows} == {"late.example"}
