"""The container's health check and `--help` load no part of the server.

Found (issue 17): `liaison-server healthcheck` imported the whole service (FastAPI, SQLAlchemy,
alembic, every route and use case) to send one GET: about 2.4 s of CPU a call, which the
image's HEALTHCHECK runs every 15 s in every replica (some 16% of a core each), and which made
a slow machine's health check time out under load. Each test runs the real console script
under `python -X importtime` and reads which modules it loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conn_tools import BIN, running
from tests.service.harness import server_env

#: What only serving, migrating or auditing needs (packages, or the service's own layers).
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "psycopg",
    "rich",
    "liaison.service.app",
    "liaison.service.state",
    "liaison.service.storage",
    "liaison.service.tlog",
    "liaison.service.writer",
    "liaison.service.usecases",
    "liaison.service.ops.bootstrap",
    "liaison.service.ops.serve",
)


def _loaded(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `liaison-server ARGS` under -X importtime: its result and every module it imported."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / "liaison-server"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")
    }
    modules.discard("package")  # the header line
    return r, modules


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def _stderr_without_imports(r: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(x for x in r.stderr.splitlines() if not x.startswith("import time:"))


@pytest.mark.slow
def test_the_health_check_loads_no_part_of_the_server(tmp_path: Path) -> None:
    with running(tmp_path) as srv:
        args = ["--data-dir", str(srv.data), "--port", str(srv.port)]
        for extra in ([], ["--live"]):
            r, modules = _loaded(["healthcheck", *args, *extra], srv.env)
            assert r.returncode == 0 and r.stdout == "healthy\n", _stderr_without_imports(r)
            assert "liaison.service.config" in modules  # the check is real: it read the settings
            assert _heavy(modules) == []
        # Unhealthy is answered just as lightly: nothing listens on this port any more.
    r, modules = _loaded(["healthcheck", *args], srv.env)
    assert r.returncode == 1 and "unhealthy" in _stderr_without_imports(r)
    assert _heavy(modules) == []


def test_help_loads_no_part_of_the_server(tmp_path: Path) -> None:
    env = server_env()
    for args in (["--help"], ["healthcheck", "--help"], ["run", "--help"], ["audit", "--help"]):
        r, modules = _loaded(args, env)
        assert r.returncode == 0 and "Usage" in r.stdout, _stderr_without_imports(r)
        assert _heavy(modules) == [], args
