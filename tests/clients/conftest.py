"""A live `liaison-server` (subprocess, TLS, free port) and a way to drive the `liaison` CLI.

One server serves the whole session: each test uses its own principals and channels. The CLI
runs in-process (typer's runner) with cheap Argon2id limits for the profiles it seals, so a
test file runs in seconds; a few tests also run the real console script as a subprocess.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import typer.testing
from typer.testing import CliRunner

from liaison.clients import _cli_common, cli
from tests.service.harness import free_port

BIN = Path(sys.executable).parent
PASSPHRASE = "correct horse battery staple"
#: Argon2id limits for profiles sealed in tests: the floor libsodium allows (fast).
FAST_KDF = (1, 8192)


@dataclass
class Server:
    """One `liaison-server run` process on its data directory."""

    data: Path
    init: dict[str, Any]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    witness_keys: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def cert(self) -> str:
        return str(self.init["tls_cert"])

    def start(self) -> None:
        env = {
            **os.environ,
            "LIAISON_WITNESS_KEYS": json.dumps(self.witness_keys),
            "LIAISON_RATE_LIMIT_PER_SECOND": "1000",
            "LIAISON_RATE_LIMIT_BURST": "2000",
        }
        with (self.data.parent / "server.log").open("ab") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [str(BIN / "liaison-server"), "run", "--data-dir", str(self.data), "--port", str(self.port)],
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        ctx = ssl.create_default_context(cafile=self.cert)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data.parent / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("liaison-server did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run SQL on the server's SQLite database: how tests play a malicious server."""
        with sqlite3.connect(self.data / "liaison.db", timeout=30) as db:
            rows = db.execute(statement, params).fetchall()
            db.commit()
        return rows


@contextlib.contextmanager
def running_server(base: Path, policy: Callable[[str], str] | None = None) -> Iterator[Server]:
    """`liaison-server init` in `base/data`, then `run`, stopped on exit; `policy` may rewrite
    the policy file before the first start (the root then signs that one at genesis)."""
    data = base / "data"
    r = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    if policy is not None:
        path = data / "policy.toml"
        path.write_text(policy(path.read_text()))
    srv = Server(data, json.loads(r.stdout))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@functools.cache
def _command_of(app: typer.Typer) -> Any:
    """The click command typer makes of `app`, made once per process. Typer's test runner makes
    it anew on each call, reading the signature of every command (about 70) each time: a
    tenth of a second a call, a quarter of a CLI test's time."""
    return typer.main.get_command(app)


class Liaison:
    """Runs `liaison ...` in-process, with this test's LIAISON_HOME and passphrase."""

    def __init__(self, home: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.server = server
        self.monkeypatch = monkeypatch
        self.passphrase = PASSPHRASE
        self.runner = CliRunner()
        monkeypatch.setattr(typer.testing, "_get_command", _command_of)
        monkeypatch.setattr(_cli_common, "KDF_LIMITS", FAST_KDF)
        monkeypatch.setenv("LIAISON_HOME", str(home))
        monkeypatch.setenv("LIAISON_PASSPHRASE", PASSPHRASE)
        monkeypatch.delenv("LIAISON_PROFILE", raising=False)

    def __call__(
        self, *args: str, input: str | bytes | None = None, ok: bool = True, passphrase: str | None = None
    ) -> Result:
        _cli_common.PASSPHRASE.clear()
        self.monkeypatch.setenv("LIAISON_PASSPHRASE", passphrase or self.passphrase)
        r = self.runner.invoke(cli.app, list(args), input=input, catch_exceptions=False)
        result = Result(r.exit_code, r.stdout, r.stderr)
        if ok:
            assert r.exit_code == 0, f"liaison {' '.join(args)} -> {r.exit_code}: {r.stderr}"
        return result

    def refused(self, *args: str, input: str | bytes | None = None, passphrase: str | None = None) -> str:
        """Run a command that must fail with exit 1 and one line on stderr; return that line."""
        r = self(*args, input=input, ok=False, passphrase=passphrase)
        assert r.code == 1, f"expected exit 1, got {r.code}: {r.stdout} {r.stderr}"
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("liaison: "), r.stderr
        return lines[0]

    # --- setting up a world through the CLI itself ----------------------------------------

    def enrol(self, profile: str, code: str, principal: str | None = None) -> dict[str, Any]:
        """Enrol with an invitation, or with a plain code and the server's log key pinned."""
        invitation = code.startswith(("LIAISON1-", "LIAISON2-"))
        pin = [] if invitation else ["--log-key", self.server.init["log_verifier_key"]]
        return self(
            "--json",
            "enrol",
            "--server",
            self.server.url,
            "--code",
            code,
            "--ca-cert",
            self.server.cert,
            "--profile",
            profile,
            *(["--principal", principal] if principal else []),
            *pin,
        ).json()

    def principal(
        self, pid: str, nation: str, clearance: str, *extra: str, admin: str = "root"
    ) -> dict[str, Any]:
        self(
            "-p",
            admin,
            "admin",
            "principal",
            "create",
            pid,
            "--name",
            pid,
            "--nation",
            nation,
            "--clearance",
            clearance,
            *extra,
        )
        invitation = self("-p", admin, "--json", "admin", "enrol-code", pid).json()["invitation"]
        return self.enrol(pid, invitation)


@pytest.fixture(scope="session")
def root_home(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LIAISON_HOME holding the root admin's profile (the one-time root code is used here)."""
    home = tmp_path_factory.mktemp("root-home")
    mp = pytest.MonkeyPatch()
    try:
        run = Liaison(home, server, mp)
        run.enrol("root", server.init["root_invitation"], principal="root")
    finally:
        mp.undo()
    return home


@pytest.fixture
def liaison(server: Server, root_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Liaison:
    """A CLI runner whose home starts with a copy of the root profile (and its log memory)."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(root_home, home)
    return Liaison(home, server, monkeypatch)


def uid(prefix: str) -> str:
    """A fresh slug, so tests sharing the server never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
