"""Enrolment trusts no server on first use, and root codes belong to genesis: the real `liaison`
and `liaison-server` commands against real servers.

Finding 22: a device pins the log key only from `--log-key` or from the digest in an
invitation its admin's own client made; a server presenting another log key (here: a copy of
the real server whose operator swapped the log signing key) is refused.
Finding 21: `liaison-server root-code` works only until the first root device enrols; after
that, only a root device can issue a root code (the recovery path).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from liaison.crypto import note
from tests.clients.conftest import BIN, Liaison, Server, uid


def _init(tmp: Path, name: str) -> Server:
    data = tmp / name / "data"
    r = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return Server(data, json.loads(r.stdout))


def _root_code(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "liaison-server"), "root-code", "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Server]:
    """A server of its own (this file stops, copies and restarts servers)."""
    srv = _init(tmp_path, "real")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _enrol_args(srv: Server, code: str, profile: str, *extra: str) -> list[str]:
    return ["enrol", "--server", srv.url, "--code", code, "--ca-cert", srv.cert, "--profile", profile, *extra]


def _root(run: Liaison, srv: Server) -> None:
    """The root enrols with the code init printed and the log key init printed (an explicit pin:
    it works with or without invitations)."""
    run(
        *_enrol_args(srv, srv.init["root_enrolment_code"], "root", "--principal", "root"),
        "--log-key",
        srv.init["log_verifier_key"],
    )


def test_a_server_with_another_log_key_is_never_pinned(
    fresh: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Liaison(tmp_path / "home", fresh, monkeypatch)
    _root(run, fresh)
    pid = uid("usa")
    run(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        pid,
        "--name",
        "x",
        "--nation",
        "USA",
        "--clearance",
        "SECRET",
    )
    plain = run("-p", "root", "--json", "admin", "enrol-code", pid).json()
    invited = run("-p", "root", "--json", "admin", "enrol-code", pid).json()

    # The forged server: the same database and TLS certificate, another log signing key.
    fresh.stop()
    forged_data = tmp_path / "forged" / "data"
    shutil.copytree(fresh.data, forged_data)
    signer, verifier = note.generate_signer_key("liaison.example/audit")
    (forged_data / "log-signer.key").write_text(signer + "\n")
    (forged_data / "log-verifier.key").write_text(verifier + "\n")
    # The server refuses a database whose log another key signed: the forger re-signs the
    # checkpoints with its key first (an attacker with the database can).
    forger = note.parse_signer_key(signer)
    with sqlite3.connect(forged_data / "liaison.db") as db:
        db.execute("DROP TRIGGER checkpoint_no_update")
        for size, text in db.execute("SELECT size, note FROM checkpoint").fetchall():
            body = note.parse_checkpoint(text.split("\n\n", 1)[0] + "\n")
            db.execute(
                "UPDATE checkpoint SET note = ? WHERE size = ?",
                (note.sign_checkpoint(body, forger).decode(), size),
            )
    forged = Server(forged_data, {**fresh.init, "tls_cert": str(forged_data / "tls" / "cert.pem")})
    forged.start()
    fresh.start()
    try:
        # Trust on first use: a plain code and no --log-key is refused before anything is sent.
        line = run.refused(*_enrol_args(forged, plain["code"], pid))
        assert "invitation" in line and "--log-key" in line, line
        assert not (run.home / "profiles" / f"{pid}.json").exists()
        # The invitation names the real key: the forged one is refused, the code not spent.
        line = run.refused(*_enrol_args(forged, invited["invitation"], pid))
        assert "log-key-mismatch" in line, line
        assert forged.sql("SELECT used_at FROM enrolment_code WHERE principal_id = ?", pid) == [
            (None,),
            (None,),
        ]
    finally:
        forged.stop()
    # The same invitation on the real server: accepted, and the real key is pinned.
    enrolled = run("--json", *_enrol_args(fresh, invited["invitation"], pid)).json()
    assert enrolled["log_key"] == fresh.init["log_verifier_key"]
    # A plain code still works with an explicit pin (and only with it).
    second = run(
        "--json",
        *_enrol_args(
            fresh, plain["code"], uid("usa-2"), "--principal", pid, "--log-key", enrolled["log_key"]
        ),
    ).json()
    assert second["log_key"] == fresh.init["log_verifier_key"]
    saved = json.loads((run.home / "state" / pid / "log.json").read_text())
    assert saved["log_key"] == fresh.init["log_verifier_key"]


def test_init_and_root_code_print_the_roots_invitation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = _init(tmp_path, "genesis")
    assert srv.init["root_invitation"].startswith("LIAISON1-")
    second = _root_code(srv.data)  # no root device yet: still genesis
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert (
        again["root_invitation"].startswith("LIAISON1-")
        and again["root_invitation"] != srv.init["root_invitation"]
    )
    srv.start()
    try:
        run = Liaison(tmp_path / "home", srv, monkeypatch)
        root = run(
            "--json", *_enrol_args(srv, srv.init["root_invitation"], "root", "--principal", "root")
        ).json()
        assert root["log_key"] == srv.init["log_verifier_key"]
        # Genesis is over: the operator's other root code (issued before) is void...
        line = run.refused(*_enrol_args(srv, again["root_invitation"], "root-op", "--principal", "root"))
        assert "genesis-over" in line, line
        # ...and no new one can be minted.
        third = _root_code(srv.data)
        assert third.returncode == 2, third.stdout
        lines = third.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("liaison-server: ") and "root device" in lines[0], (
            third.stderr
        )
        assert "Traceback" not in third.stderr
    finally:
        srv.stop()


def test_a_root_device_replaces_a_lost_root_device(
    fresh: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Liaison(tmp_path / "home", fresh, monkeypatch)
    _root(run, fresh)
    # Keep two root devices: the second is enrolled with a root code issued by the first.
    code = run("-p", "root", "--json", "admin", "enrol-code", "root").json()
    spare = run("--json", *_enrol_args(fresh, code["invitation"], "root-spare", "--principal", "root")).json()
    lost = run("-p", "root", "--json", "whoami").json()["device"]
    # The first is lost: the spare revokes it and enrols a replacement.
    run("-p", "root-spare", "admin", "device", "revoke", lost)
    code = run("-p", "root-spare", "--json", "admin", "enrol-code", "root").json()
    new = run("--json", *_enrol_args(fresh, code["invitation"], "root-new", "--principal", "root")).json()
    assert new["device"] not in (lost, spare["device"])
    assert run("-p", "root-new", "--json", "whoami").json()["principal"] == "root"
    # The operator cannot step in, even though a root device was revoked.
    refused = _root_code(fresh.data)
    assert refused.returncode == 2 and "root device" in refused.stderr, refused.stderr


def test_unusable_invitations_are_refused_before_anything_is_sent(liaison: Liaison, server: Server) -> None:
    pid = uid("fra")
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
        "FRA",
        "--clearance",
        "SECRET",
    )
    issued = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()
    assert issued["invitation"] == f"LIAISON2-{issued['code']}-" + issued["invitation"].rsplit("-", 1)[1]
    # The human output shows the invitation, not the bare code.
    shown = liaison("-p", "root", "admin", "enrol-code", pid).stdout
    assert "LIAISON2-" in shown and "Enrolment invitation for" in shown
    mangled = issued["invitation"][:-1] + "B"  # non-zero unused bits
    line = liaison.refused(*_enrol_args(server, mangled, pid))
    assert "invitation does not parse" in line
    _, other = note.generate_signer_key("liaison.example/audit")
    line = liaison.refused(*_enrol_args(server, issued["invitation"], pid, "--log-key", other))
    assert "not the log key the invitation names" in line
    assert server.sql(
        "SELECT count(*) FROM enrolment_code WHERE principal_id = ? AND challenge_hash IS NOT NULL", pid
    ) == [(0,)]
    # --invitation is the same option; with the matching --log-key too, it enrols.
    enrolled = liaison(
        "--json",
        "enrol",
        "--server",
        server.url,
        "--invitation",
        issued["invitation"].lower(),
        "--ca-cert",
        server.cert,
        "--profile",
        pid,
        "--log-key",
        server.init["log_verifier_key"],
    ).json()
    assert enrolled["log_key"] == server.init["log_verifier_key"]
