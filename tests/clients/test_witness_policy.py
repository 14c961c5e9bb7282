"""Item 13: the client trusts only the witnesses its profile pins (k of n), never a served name.

A malicious server appends a forged "— evil.witness ..." line to its checkpoints (here: a row
in its own cosignature table, exactly what the server then serves). The client must not print
it as a cosigner, must say how many unverifiable lines it ignored, and must count only pinned
witnesses' valid cosignatures towards the policy's quorum.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liaison.crypto import note
from tests.clients.conftest import BIN, Liaison, Server

#: A line a server can forge: a well-formed signature line from a key nobody pinned.
FORGED = "\u2014 evil.witness " + base64.b64encode(b"\x01\x02\x03\x04" + bytes(72)).decode() + "\n"


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module only: its cosignature table is tampered with below."""
    base = tmp_path_factory.mktemp("witness-policy-server")
    data = base / "data"
    r = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    srv = Server(data, json.loads(r.stdout))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def own_root_home(own_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("witness-policy-root")
    mp = pytest.MonkeyPatch()
    try:
        Liaison(home, own_server, mp).enrol("root", own_server.init["root_enrolment_code"], principal="root")
    finally:
        mp.undo()
    return home


@pytest.fixture
def cli(own_server: Server, own_root_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Liaison:
    home = tmp_path / "home"
    shutil.copytree(own_root_home, home)
    return Liaison(home, own_server, monkeypatch)


def forge(server: Server, size: int, line: str = FORGED, witness: str = "evil.witness") -> None:
    """Play the malicious server: store a cosignature line that no witness made."""
    server.sql(
        "INSERT INTO cosignature (size, witness, line, created_at) VALUES (?, ?, ?, ?)",
        size,
        witness,
        line,
        "2026-01-01 00:00:00.000000",
    )


def latest(cli: Liaison) -> dict[str, Any]:
    out: dict[str, Any] = cli("-p", "root", "--json", "audit", "checkpoint").json()
    return out


def test_forged_cosigner_is_not_printed(cli: Liaison, own_server: Server) -> None:
    size = latest(cli)["size"]
    forge(own_server, size)
    shown = cli("-p", "root", "audit", "checkpoint").stdout
    assert "evil.witness" not in shown, shown
    assert "1 unverifiable signature line ignored" in shown, shown
    as_json = latest(cli)
    assert as_json["size"] == size and as_json["cosigners"] == [] and as_json["ignored"] == 1, as_json
    # --cosigned asks the server for a checkpoint with K cosignatures: only pinned witnesses can
    # vouch for one, so without a policy the request is refused, whatever the server appended.
    line = cli.refused("-p", "root", "audit", "checkpoint", "--cosigned", "1")
    assert "witness policy" in line and "evil.witness" not in line, line


def _env(cli: Liaison) -> dict[str, str]:
    return {**os.environ, "LIAISON_HOME": str(cli.home), "LIAISON_PASSPHRASE": cli.passphrase}


def test_only_pinned_witnesses_count(cli: Liaison, own_server: Server) -> None:
    """A real witness key pinned 1 of 1: its cosignature counts, the forged line never does."""
    skey, vkey = note.generate_signer_key("real.witness.example", sig_type=note.SIG_COSIGNATURE_V1)
    signer = note.parse_signer_key(skey)
    cp_json = latest(cli)
    cp = note.parse_checkpoint(cp_json["note"].split("\n\n")[0] + "\n")
    forge(own_server, cp.size, note.cosign_checkpoint(cp, signer, int(time.time())), "real.witness.example")
    forge(own_server, cp.size, FORGED.replace("evil.witness", "evil2.witness"), "evil2.witness")

    set_out = cli("-p", "root", "audit", "witnesses", "set", "--key", vkey, "--k", "1").stdout
    assert "real.witness.example" in set_out and "1 of 1" in set_out, set_out
    shown = cli("-p", "root", "audit", "checkpoint", "--cosigned", "1").stdout
    assert "real.witness.example" in shown and "evil" not in shown, shown
    got = cli("-p", "root", "--json", "audit", "checkpoint", "--cosigned", "1").json()
    assert got["cosigners"] == ["real.witness.example"] and got["witnessed"] is True, got
    assert got["ignored"] >= 1

    # Two required, one pinned witness signed: refused, and the forged lines do not help.
    _, other = note.generate_signer_key("other.witness.example", sig_type=note.SIG_COSIGNATURE_V1)
    changed = cli("-p", "root", "audit", "witnesses", "set", "--key", vkey, "--key", other, "--k", "2").stdout
    assert "changed" in changed and "2 of 2" in changed, changed
    line = cli.refused("-p", "root", "audit", "checkpoint", "--cosigned", "1")
    assert "1 of 2" in line and "evil" not in line, line
