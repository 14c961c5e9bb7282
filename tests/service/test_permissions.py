"""The data directory is private: the directory (and tls/) 0700, the database (and SQLite's
-wal/-shm/-journal files) and the private keys 0600, whatever the umask and whether or not the
directory existed before `init`; `run` logs a warning and fixes what it finds too open.

Through the real CLI (`liaison-server` subprocesses, umask 022 as on a default system)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.harness import free_port, server_env, stop, wait_ready

EXE = str(Path(sys.executable).with_name("liaison-server"))
PRIVATE_FILES = ("liaison.db", "log-signer.key", "tls/key.pem")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _init(data: Path) -> dict[str, str]:
    out = subprocess.run(
        [EXE, "init", "--data-dir", str(data), "--json"],
        env=server_env(),
        capture_output=True,
        check=True,
        umask=0o022,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


def _assert_private(data: Path) -> None:
    assert _mode(data) == 0o700, oct(_mode(data))
    assert _mode(data / "tls") == 0o700, oct(_mode(data / "tls"))
    for name in PRIVATE_FILES:
        assert _mode(data / name) == 0o600, (name, oct(_mode(data / name)))
    sidecars = [p for p in data.iterdir() if p.name.startswith("liaison.db-")]
    for p in sidecars:
        assert _mode(p) == 0o600, (p.name, oct(_mode(p)))


def test_init_into_an_existing_directory_makes_it_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # as an operator's `mkdir` under umask 022 leaves it
    _init(data)
    _assert_private(data)


@pytest.mark.slow
def test_run_warns_and_fixes_open_permissions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = _init(data)
    # An operator's copy or restore left everything readable by others.
    os.chmod(data, 0o755)
    os.chmod(data / "tls", 0o755)
    for name in PRIVATE_FILES:
        os.chmod(data / name, 0o644)
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "run", "--data-dir", str(data), "--port", str(port)],
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        umask=0o022,
    )
    try:
        wait_ready(proc, f"https://127.0.0.1:{port}", result["tls_cert"])
        # Serving: SQLite's WAL and shared-memory files exist now, and are private too.
        assert (data / "liaison.db-wal").exists()
        _assert_private(data)
    finally:
        err = stop(proc)
    warnings = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "permissions.fixed"
    ]
    assert len(warnings) == 1, err[-3000:]
    w = warnings[0]
    assert w["level"] == "warning"
    fixed = {Path(f["path"]).relative_to(data).as_posix(): (f["was"], f["now"]) for f in w["fixed"]}
    assert fixed == {
        ".": ("0755", "0700"),
        "tls": ("0755", "0700"),
        "liaison.db": ("0644", "0600"),
        "log-signer.key": ("0644", "0600"),
        "tls/key.pem": ("0644", "0600"),
    }


def test_run_refuses_permissions_it_cannot_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private key readable by others that `run` may not chmod (another owner, a read-only
    mount) is refused with a one-line message, never served. As root here, any chmod would
    succeed, so the failing chmod is simulated for that one file."""
    from typer.testing import CliRunner

    from liaison.service.ops.cli import app

    data = tmp_path / "data"
    _init(data)
    key = data / "log-signer.key"
    os.chmod(key, 0o644)
    real_chmod = os.chmod

    def chmod(path: object, mode: int, **kw: object) -> None:
        if Path(str(path)) == key:
            raise PermissionError(1, "Operation not permitted", str(path))
        real_chmod(path, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chmod", chmod)
    # The port is taken: should `run` get past its checks, it fails to bind instead of serving.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(app, ["run", "--data-dir", str(data), "--port", port])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("liaison-server: ") and "Traceback" not in result.stderr
    assert "log-signer.key" in result.stderr and "0644" in result.stderr
    assert "Operation not permitted" in result.stderr
