"""Enrolment trusts no server on first use: the real `liaison` and `liaison-server` commands
against real servers.

Finding 22: a device pins the log key only from `--log-key` or from the digest in an
invitation its admin's own client made; a server presenting another log key (here: a copy of
the real server whose operator swapped the log signing key) is refused.
"""

from __future__ import annotations

import json
import shutil
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
