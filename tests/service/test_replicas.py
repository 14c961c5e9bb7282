"""Two `liaison-server run` processes on one PostgreSQL database (and one data dir) behave as one
service: a message sent through one is pushed to a device streaming from the other, and the
log stays one consecutive, verifiable log."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from liaison.clients._directory import (
    PrincipalState,
    genesis_statements,
    invitation_change,
    new_code,
    principal_change,
)
from liaison.crypto import note
from liaison.crypto.anchors import Anchors
from liaison.crypto.directory_replay import DirectoryReplay
from liaison.crypto.encoding import b64url_decode
from liaison.crypto.envelope import open_envelope, seal
from liaison.crypto.keys import DeviceKeys, PublicBundle, generate_device
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.policy import Policy
from liaison.crypto.statements import channel_statement, leaf_value, sign_statement
from liaison.crypto.transparency import parse_entry
from liaison.crypto.vmap import MapProof, map_key, verify_proof
from liaison.service.ops.cli import app
from tests.service.harness import (
    PG_ENV,
    create_pg_database,
    drop_pg_database,
    enrol_device,
    free_port,
    next_message_event,
    server_env,
    signed,
    sse_events,
    start_server,
    stop,
    tls_context,
    wait_ready,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


@pytest.fixture
def pg_url() -> Any:
    if not os.environ.get(PG_ENV):
        pytest.skip(
            f"the multi-replica test needs PostgreSQL: set {PG_ENV} (e.g. "
            "postgresql+asyncpg://postgres@127.0.0.1:5432/test)"
        )
    url = asyncio.run(create_pg_database())
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(url))


def test_a_message_sent_through_one_replica_is_pushed_from_the_other(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("LIAISON_DATABASE_URL", pg_url)
    result = CliRunner().invoke(app, ["init", "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.stderr
    exchange_through_two_servers(data, server_env(LIAISON_DATABASE_URL=pg_url), json.loads(result.stdout))


def exchange_through_two_servers(data: Path, env: dict[str, str], init: dict[str, str]) -> list[str]:
    """Two `liaison-server run` on `data` (ports of their own), the whole scenario through
    both (`_exchange`), both stopped cleanly; their stderr."""
    ports = free_port(), free_port()
    procs = [start_server(data, port, env) for port in ports]
    try:
        bases = [f"https://127.0.0.1:{p}" for p in ports]
        for proc, base in zip(procs, bases, strict=True):
            wait_ready(proc, base, init["tls_cert"])
        asyncio.run(_exchange(bases, init))
    finally:
        errors = [stop(proc) for proc in procs]
    return errors


async def _exchange(bases: list[str], init: dict[str, str]) -> None:
    a, b = bases
    async with httpx.AsyncClient(verify=tls_context(init["tls_cert"]), timeout=15) as http:

        async def call(
            base: str, keys: DeviceKeys, method: str, path: str, body: Any = None, status: int = 200
        ) -> Any:
            r = await http.send(signed(http, keys, method, base + path, body))
            assert r.status_code == status, r.text
            return r.json()

        async def enrol(base: str, keys: DeviceKeys, code: str) -> None:
            r = await enrol_device(http, code, keys, base)
            assert r.status_code == 201, r.text

        # Set up through both replicas, each change with its statement (protocol 9.3): the
        # directory's map is one, whichever replica wrote a leaf.
        origin = init["log_verifier_key"].split("+", 1)[0]
        policy = Policy.from_json((await http.get(a + "/v1/policy")).json())
        root = generate_device("root")
        await enrol(a, root, init["root_enrolment_code"])
        me = (await call(a, root, "GET", "/v1/me"))["principal"]
        state = PrincipalState(
            me["nation"], me["kind"], me["clearance"], tuple(me["compartments"]), tuple(me["roles"]), True
        )
        roots, pol, rootp = genesis_statements(root, origin, policy, state)
        for item in ({"statement": roots.to_json()}, {"statement": pol.to_json()}, rootp):
            await call(a, root, "POST", "/v1/directory/statements", item, status=201)
        anchors = Anchors(init["log_verifier_key"], 1, roots.statement.digest(), policy.version)
        devices = {}
        for pid, nation in (("usa-analyst", "USA"), ("ukr-analyst", "UKR")):
            grant = PrincipalState(nation, "person", "SECRET", ("AIRDEF",), ("analyst",), True)
            body = {"id": pid, "display_name": pid, "nation": nation, "clearance": "SECRET"}
            body |= {"compartments": ["AIRDEF"], **principal_change(root, origin, policy, None, pid, grant)}
            await call(a, root, "POST", "/v1/admin/principals", body, status=201)
            code = new_code()
            invitation = invitation_change(
                root,
                origin,
                principal=pid,
                nation=nation,
                code=code,
                expires=datetime.now(UTC) + timedelta(hours=1),
                anchors=anchors.to_json(),
                digest=anchors.digest,
            )
            await call(b, root, "POST", f"/v1/admin/principals/{pid}/enrolment-codes", invitation, status=201)
            devices[pid] = generate_device(pid)
            await enrol(b, devices[pid], code)  # enrolled through B: same directory
        usa, ukr = devices["usa-analyst"], devices["ukr-analyst"]
        ceiling = parse_label(LABEL, policy)
        first = sign_statement(
            root,
            channel_statement(
                origin, channel="ops", ceiling=ceiling, members=[], seq=1, prev=None, signer=root.device_id
            ),
        )
        body = {"id": "ops", "ceiling": LABEL, "statement": first.to_json()}
        await call(b, root, "POST", "/v1/admin/channels", body, status=201)
        members = ["ukr-analyst", "usa-analyst"]
        second = channel_statement(
            origin,
            channel="ops",
            ceiling=ceiling,
            members=members,
            seq=2,
            prev=first.statement.digest(),
            signer=root.device_id,
        )
        body = {"principals": members, "statement": sign_statement(root, second).to_json()}
        await call(a, root, "PUT", "/v1/admin/channels/ops/members", body)
        # Both replicas now answer with the same map: the channel's leaf, written through A
        # on top of leaves written through B, proven at one checkpoint by either.
        heads = []
        for base in (a, b):
            proven = await call(base, usa, "GET", "/v1/directory/records?record=channel:ops")
            head = parse_entry(base64.b64decode(proven["map_head"]["entry"]))
            heads.append((proven["tree_size"], head["version"], head["root"]))
            leaf = MapProof.from_json(proven["records"]["channel:ops"]["proof"])
            value = verify_proof(b64url_decode(head["root"]), map_key("*", "channel:ops"), leaf)
            assert value == leaf_value(second.digest(), proven["records"]["channel:ops"]["version"])
        assert heads[0] == heads[1], heads

        # UKR streams from replica B; USA sends through replica A.
        stream = await http.send(signed(http, ukr, "GET", b + "/v1/inbox/stream"), stream=True)
        try:
            assert stream.status_code == 200
            events = sse_events(stream)
            assert await anext(events) == {"comment": "connected"}
            found = await call(a, usa, "GET", f"/v1/channels/ops/recipients?label={quote(LABEL)}")
            bundles = [PublicBundle.from_signed(d["signed_bundle"]) for d in found["devices"]]
            assert {x.device_id for x in bundles} == {usa.device_id, ukr.device_id}
            label = Label.from_json(found["label"])
            sent = []
            for i in range(3):
                env = seal(
                    f"over replicas {i}".encode(), channel="ops", label=label, sender=usa, recipients=bundles
                )
                accepted = await call(a, usa, "POST", "/v1/messages", {"envelope": env}, status=201)
                sent.append((env["id"], accepted["log_index"]))
                ev = await next_message_event(events, seconds=10)
                assert (ev["id"], ev["data"]["log_index"]) == sent[-1]
        finally:
            await stream.aclose()
        # Either replica serves the message, and both serve one consistent, signed log.
        got = await call(b, ukr, "GET", f"/v1/messages/{sent[0][0]}")
        assert (
            open_envelope(got["envelope"], ukr, usa.public, required=("ed25519", "mldsa65")).plaintext
            == b"over replicas 0"
        )
        verifier = note.parse_verifier_key(init["log_verifier_key"])
        sizes = []
        for base in (a, b):
            cp = note.open_checkpoint((await http.get(base + "/v1/audit/checkpoint")).content, verifier)
            sizes.append(cp.size)
        assert sizes[0] == sizes[1] > max(i for _, i in sent)
        # ...whose every map head follows from the statements logged before it.
        replay = DirectoryReplay()
        entries = (await call(a, root, "GET", f"/v1/audit/entries?end={sizes[0]}"))["entries"]
        for e in entries:
            replay.feed(e["index"], e["json"])
        assert replay.ok and replay.map_heads > 0 and replay.statements >= 9, replay.findings
