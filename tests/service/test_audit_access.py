"""Who may read which part of the audit log (findings 19 and 20).

19: a message's proof (`GET /v1/audit/messages/{id}`) and the receipt paths answer "not found"
the same way for a message that does not exist and for one that is not the caller's; an
auditor or admin that does not dominate the message's label is not entitled to it either.
20: checkpoints, hash tiles and proofs over hashes are public always; `LIAISON_AUDIT_PUBLIC`
opens only the entries, and the server warns at start that it does.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from liaison.crypto import transparency
from liaison.service.ops import cli as ops_cli
from tests.service.harness import (
    OPS,
    Device,
    World,
    assert_problem,
    assert_refused,
    coalition,
    free_port,
    server_env,
    start_server,
    stop,
    tls_context,
    wait_ready,
    world_on,
)

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two problems that differ only in the path they answer."""
    assert {k: v for k, v in a.items() if k != "instance"} == {k: v for k, v in b.items() if k != "instance"}


# --- 19: message proofs and receipts -------------------------------------------------------------


async def test_message_proof_is_not_found_alike_for_missing_and_not_entitled(world: World) -> None:
    c = await coalition(world)
    r = await c.usa.send(OPS, SECRET_AIRDEF, b"for ukr")
    assert r.status_code == 201, r.text
    mid, missing = r.json()["id"], str(uuid.uuid4())
    env = (await c.ukr.get(f"/v1/messages/{mid}")).json()["envelope"]
    # An auditor of a nation outside REL TO, and an admin cleared below the label.
    fra_auditor = await world.principal("fra-auditor", "FRA", "TOP SECRET", roles=["auditor"])
    usa_admin = await world.principal("usa-admin", "USA", "CONFIDENTIAL", roles=["admin"])
    outsiders: list[Device] = [c.fra, c.sensor, fra_auditor, usa_admin]
    for dev in outsiders:
        # The attack: learn that the message exists, and read its entry (channel, label, who).
        hidden = await assert_refused(
            world, lambda dev=dev: dev.get(f"/v1/audit/messages/{mid}"), "not-found", "access.denied"
        )
        absent = await assert_refused(
            world, lambda dev=dev: dev.get(f"/v1/audit/messages/{missing}"), "not-found", "access.denied"
        )
        assert hidden["who"] == absent["who"] == dev.id and hidden["why"] == absent["why"] == "not-found"
        _same(
            (await dev.get(f"/v1/audit/messages/{mid}")).json(),
            (await dev.get(f"/v1/audit/messages/{missing}")).json(),
        )
    assert_problem(await c.fra.get(f"/v1/audit/messages/{'x' * 80}"), "not-found")
    assert_problem(await world.http.get(f"/v1/audit/messages/{mid}"), "unauthenticated")
    # Entitled: its sender and recipients (as long as they still dominate the label), an
    # auditor or admin that dominates the label, and root.
    usa_auditor = await world.principal(
        "usa-auditor", "USA", "SECRET", compartments=["AIRDEF"], roles=["auditor"]
    )
    key = world.state.log.verifier_key
    for dev in (c.usa, c.ukr, usa_auditor, world.root):
        r = await dev.get(f"/v1/audit/messages/{mid}")
        assert r.status_code == 200, (dev.principal, r.text)
        assert transparency.verify_message_receipt(r.json(), env, key).entry.json["id"] == mid
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"compartments": []})
    assert r.status_code == 200, r.text
    await assert_refused(world, lambda: c.ukr.get(f"/v1/audit/messages/{mid}"), "not-found", "access.denied")


async def test_fetch_and_ack_answer_alike_for_missing_and_not_yours(world: World) -> None:
    """Checked, and found to hold already: one answer, logged, for both."""
    c = await coalition(world)
    r = await c.usa.send(OPS, SECRET_AIRDEF, b"for ukr")
    mid, missing = r.json()["id"], str(uuid.uuid4())
    for path in ("/v1/messages/{}", "/v1/messages/{}/ack"):
        method = c.fra.get if path.endswith("}") else c.fra.post
        hidden = await assert_refused(
            world, lambda method=method, path=path: method(path.format(mid)), "not-recipient", "access.denied"
        )
        absent = await assert_refused(
            world,
            lambda method=method, path=path: method(path.format(missing)),
            "not-recipient",
            "access.denied",
        )
        assert hidden["why"] == absent["why"] == "not-recipient"
        _same((await method(path.format(mid))).json(), (await method(path.format(missing))).json())


# --- 20: what is public, and what LIAISON_AUDIT_PUBLIC opens --------------------------------------


async def test_hashes_and_proofs_over_hashes_are_public(world: World) -> None:
    size = await world.log_size()
    for path in (
        "/v1/audit/checkpoint",
        f"/v1/audit/tile/0/000.p/{size}",
        "/v1/audit/proof/consistency?old=1",
        "/v1/audit/proof/inclusion?index=0",
    ):
        r = await world.http.get(path)  # no signature: a witness needs nothing more
        assert r.status_code == 200, (path, r.text)
    for path in (f"/v1/audit/tile/entries/000.p/{size}", "/v1/audit/entries?end=1"):
        assert_problem(await world.http.get(path), "unauthenticated")


async def test_audit_public_opens_the_entries_only(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, audit_public=True) as world:
        c = await coalition(world)
        r = await c.usa.send(OPS, SECRET_AIRDEF, b"for ukr")
        mid = r.json()["id"]
        size = await world.log_size()
        r = await world.http.get("/v1/audit/entries?end=2")
        assert r.status_code == 200 and len(r.json()["entries"]) == 2
        r = await world.http.get(f"/v1/audit/tile/entries/000.p/{size}")
        assert r.status_code == 200 and r.headers["cache-control"].startswith("public")
        # A message's proof stays for who is entitled to it: never anonymous, never anyone's.
        assert_problem(await world.http.get(f"/v1/audit/messages/{mid}"), "unauthenticated")
        await assert_refused(
            world, lambda: c.fra.get(f"/v1/audit/messages/{mid}"), "not-found", "access.denied"
        )


async def test_start_up_warns_when_the_audit_log_is_public(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="liaison"):
        async with world_on(backend, tmp_path):
            pass
        assert not [r for r in caplog.records if "LIAISON_AUDIT_PUBLIC" in r.getMessage()]
        async with world_on(backend, tmp_path, audit_public=True):
            pass
    [warning] = [r for r in caplog.records if "LIAISON_AUDIT_PUBLIC" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "every field of every entry" in warning.getMessage()


@pytest.mark.slow
def test_the_real_server_warns_at_start(tmp_path: Path) -> None:
    """`liaison-server run` with LIAISON_AUDIT_PUBLIC=true says so in its start-up log."""
    data = tmp_path / "data"
    result = CliRunner().invoke(ops_cli.app, ["init", "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.stderr
    cert = json.loads(result.stdout)["tls_cert"]
    port = free_port()
    proc = start_server(data, port, server_env(LIAISON_AUDIT_PUBLIC="true"))
    try:
        wait_ready(proc, f"https://127.0.0.1:{port}", cert)
        # ...and then it serves entries to anyone, as it warned.
        r = httpx.get(f"https://127.0.0.1:{port}/v1/audit/entries?end=1", verify=tls_context(cert))
        assert r.status_code == 200, r.text
    finally:
        err = stop(proc)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    warned = [e for e in lines if e["level"] == "warning" and "LIAISON_AUDIT_PUBLIC" in e.get("message", "")]
    assert len(warned) == 1, err[-2000:]
