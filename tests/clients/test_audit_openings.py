"""`liaison audit verify` with entries v2 (protocol 10.6), against a real server: every opening
it is given is recomputed, what stays sealed is counted, a message's openings shredded at
expiry under policy are explained by the `audit.shredded` entry that names them, and root's
auditor (entitled to every field) refuses a log whose operator withheld an opening."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from liaison.service.app import close_state, open_state
from liaison.service.config import load_settings
from liaison.service.writer import Tx
from tests.clients.conftest import Liaison, Server, running_server

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, whose policy shreds SECRET messages' openings at expiry
    (set before its first start, so the root signs that policy at genesis)."""
    with running_server(tmp_path, policy=_shred_secret) as srv:
        yield srv


def _shred_secret(text: str) -> str:
    marker = 'name = "SECRET"\n'
    assert marker in text
    return text.replace(marker, marker + "shred_audit = true\n")


@pytest.mark.slow
def test_verify_counts_sealed_fields_explains_shredding_and_refuses_withholding(
    own_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Liaison(tmp_path / "home", own_server, monkeypatch)
    run.enrol("root", own_server.init["root_invitation"], principal="root")
    run.principal("usa-a", "USA", "SECRET", "--compartment", "AIRDEF")
    run.principal("ukr-a", "UKR", "SECRET", "--compartment", "AIRDEF")
    run.principal("pol-aud", "POL", "UNCLASSIFIED", "--role", "auditor")
    run("-p", "root", "admin", "channel", "create", "ops", "--ceiling", LABEL)
    run("-p", "root", "admin", "channel", "members", "ops", "usa-a", "ukr-a")
    sent = run("-p", "usa-a", "--json", "send", "--channel", "ops", "--label", LABEL, input="x").json()
    run("-p", "ukr-a", "--json", "read", sent["id"])

    # Root's auditor opens every committed field of every entry, each recomputed.
    v = run("-p", "root", "--json", "audit", "verify").json()
    assert v["fields_opened"] > 0 and v["fields_sealed"] == 0 and v["shredded"] == 0
    assert "committed fields opened and recomputed" in run("-p", "root", "audit", "verify").stdout
    # An UNCLASSIFIED POL auditor: the SECRET message and other nations' people stay sealed,
    # counted, not refused (it cannot tell need-to-know from withholding).
    pol = run("-p", "pol-aud", "--json", "audit", "verify").json()
    assert pol["fields_sealed"] > 0 and pol["entries_sealed"] > 0 and pol["fields_opened"] > 0

    # The message expires (moved back in time by the operator's hand): its accepted,
    # delivered and acked entries (`read` acknowledges) lose their openings, logged by one
    # audit.shredded entry.
    own_server.stop()
    own_server.sql("UPDATE message SET expires_at = accepted_at WHERE id = ?", sent["id"])
    own_server.start()
    shredded = _wait_for_shredding(run)
    v = run("-p", "root", "--json", "audit", "verify").json()
    assert v["shredded"] == len(shredded) == 3 and v["fields_sealed"] > 0
    assert v["counts"]["audit.shredded"] == 1

    # An opening deleted with no shredding logged: root's verify names it withheld.
    (victim,) = own_server.sql(
        "SELECT min(e.idx) FROM audit_entry e JOIN audit_opening o ON o.idx = e.idx "
        "WHERE e.type = 'principal.created'"
    )[0]
    own_server.sql("DELETE FROM audit_opening WHERE idx = ?", victim)
    line = run.refused("-p", "root", "audit", "verify")
    assert "withheld the openings of 1 entries from root's auditor" in line and str(victim) in line
    # The POL auditor still only counts what it cannot open.
    assert run("-p", "pol-aud", "--json", "audit", "verify").json()["fields_sealed"] >= pol["fields_sealed"]

    # The operator, with the server's own code, then logs that record as shredded, to explain
    # the missing opening away: root's verify names the shredding of a non-message entry.
    own_server.stop()
    asyncio.run(_forge_shredding(own_server, victim))
    own_server.start()
    line = run.refused("-p", "root", "audit", "verify")
    assert f"names entry {victim}, a 'principal.created', which is never shredded" in line


async def _forge_shredding(server: Server, index: int) -> None:
    state = await open_state(load_settings(server.data))
    try:

        def job(tx: Tx) -> None:
            tx.audit("audit.shredded", "system", None, indexes=[index], reason="message.expired")

        await state.writer.run(job)
    finally:
        await close_state(state)


def _wait_for_shredding(run: Liaison) -> list[int]:
    """The indexes the server's retention pass (run at start) logged as shredded."""
    for _ in range(100):
        entries = run("-p", "root", "--json", "audit", "entries", "--type", "audit.shredded").json()
        if entries:
            indexes = entries[0]["fields"]["indexes"]
            assert isinstance(indexes, list)
            return [int(i) for i in indexes]
        time.sleep(0.1)
    raise AssertionError("the retention pass logged no audit.shredded entry")
