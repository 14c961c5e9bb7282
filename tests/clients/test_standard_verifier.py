"""docs/audit.md's standard verifier (issue 11, item 17): the exact commands of its "A standard
verifier" block, run as written against a live server (only the first line's values are this
test's), then again after the server's log was forked, where they must fail."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.conftest import BIN, Liaison, Server

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "audit.md"
GO_MOD = Path("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog")
HAVE_GO = shutil.which("go") is not None and GO_MOD.is_dir()

pytestmark = pytest.mark.slow


def doc_commands() -> list[str]:
    """The lines of the block under "A standard verifier", as the doc shows them."""
    section = DOC.read_text("utf-8").split("### A standard verifier", 1)[1]
    block = re.search(r"```bash[^\n]*\n(.*?)```", section, flags=re.S)
    assert block is not None
    return block.group(1).strip().splitlines()


def test_the_doc_names_the_tool_and_its_commands() -> None:
    lines = doc_commands()
    assert lines[0].startswith("SERVER=") and "DATA=" in lines[0] and "LIAISON_SRC=" in lines[0]
    assert any(line.startswith("go build -o tlog-verify") for line in lines)
    assert (ROOT / "scripts" / "tlog-verify" / "main.go").is_file()


@pytest.fixture
def public_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A server of this test's own, its entry bundles public (the tool signs no requests)."""
    data = tmp_path / "data"
    r = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    monkeypatch.setenv("LIAISON_AUDIT_PUBLIC", "true")
    srv = Server(data, json.loads(r.stdout))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _run(lines: list[str], server: Server, cwd: Path) -> subprocess.CompletedProcess[str]:
    first = f"SERVER={server.url} DATA={server.data} LIAISON_SRC={ROOT}"
    script = "set -euo pipefail\n" + "\n".join([first, *lines[1:]]) + "\n"
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300)


def _copy_db(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def test_the_standard_verifier_runs_as_documented(
    public_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not HAVE_GO:
        pytest.skip(
            "Go and golang.org/x/mod are not installed (apt-get install golang-go "
            "golang-golang-x-mod-dev; .ci/run installs them): docs/audit.md's standard verifier not run"
        )
    run = Liaison(tmp_path / "home", public_server, monkeypatch)
    run.enrol("root", public_server.init["root_invitation"], principal="root")
    public_server.stop()
    _copy_db(public_server.data / "liaison.db", tmp_path / "before.db")
    shutil.copytree(tmp_path / "home", tmp_path / "home-before")
    public_server.start()
    for pid in ("usa-a", "usa-b"):
        run("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", "USA",
            "--clearance", "SECRET")  # fmt: skip
    work = tmp_path / "auditor"
    work.mkdir()
    lines = doc_commands()
    r = _run(lines, public_server, work)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    size = run("-p", "root", "--json", "audit", "checkpoint").json()["size"]
    oks = [line for line in out if line.startswith("OK ")]
    assert len(oks) == 2 and oks[0].split()[1] == "liaison.example/audit"
    assert int(oks[0].split()[2]) <= int(oks[1].split()[2]) <= size
    assert f"consistent with the checkpoint of size {oks[0].split()[2]} in checkpoint.txt" in out
    assert (work / "checkpoint.txt").read_text().startswith("liaison.example/audit\n")

    # The operator puts the database back and grows another history under the same key.
    public_server.stop()
    for suffix in ("", "-wal", "-shm"):
        (public_server.data / f"liaison.db{suffix}").unlink(missing_ok=True)
    _copy_db(tmp_path / "before.db", public_server.data / "liaison.db")
    public_server.start()
    # The root's client remembers the longer log: it refuses the rolled-back one.
    r = run("-p", "root", "admin", "principal", "create", "ukr-x", "--name", "ukr-x", "--nation", "UKR",
            "--clearance", "SECRET", ok=False)  # fmt: skip
    assert r.code == 1 and "no longer serves the tree of size" in r.stderr and "rolled back" in r.stderr
    assert "Traceback" not in r.stderr
    # A client that never saw it (the profile as it was then) is shown the other history.
    shutil.rmtree(tmp_path / "home")
    shutil.copytree(tmp_path / "home-before", tmp_path / "home")
    for pid in ("ukr-x", "ukr-y", "ukr-z", "ukr-w"):
        run("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", "UKR",
            "--clearance", "SECRET")  # fmt: skip
    r = _run(lines, public_server, work)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL: not consistent with the checkpoint of size" in r.stdout and "(a fork)" in r.stdout
    # Without the state it holds, the tool still checks the new log on its own terms.
    (work / "checkpoint.txt").unlink()
    assert _run(lines, public_server, work).returncode == 0
    # A key other than the log's is refused.
    bad = [
        line.replace(
            '"$(cat "$DATA/log-verifier.key")"', '"liaison.example/audit+00000000+AQ' + "A" * 43 + '="'
        )
        for line in lines
    ]
    r = _run(bad, public_server, work)
    assert r.returncode == 1 and "FAIL:" in r.stdout
