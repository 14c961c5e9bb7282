"""The Docker set-up without a Docker engine (issue 11, item 6).

* `docker/compose.yaml` is valid (`docker compose config`), and says what it should: the
  replicas connect as the application role, init and migrate as the owner role, never as the
  superuser; migrate applies the role set-up; health checks ask /readyz; the log origin is a
  setting.
* The same steps against the real PostgreSQL: `docker/postgres-init.sh` (run with psql, as the
  postgres image runs it) makes the roles and the database; init and migrate with
  `audit pg-roles --apply` run as the owner; the server runs as the application role, which
  cannot rewrite the log; `liaison-server healthcheck` answers for it; `export-trust` prints
  what clients need from the volume.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine.url import make_url

from liaison.crypto.keys import generate_device
from tests.service.harness import (
    PG_ENV,
    enrol_device_sync,
    free_port,
    server_env,
    start_server,
    stop,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
EXE = Path(sys.executable).with_name("liaison-server")


def _compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The resolved compose file (`docker compose config`), parsed."""
    yaml = pytest.importorskip("yaml")
    command = _compose_command()
    if command is None:
        pytest.skip("docker compose is not installed (Debian: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIAISON_", "POSTGRES_"))}
    quiet = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    parsed: dict[str, Any] = yaml.safe_load(full.stdout)
    return parsed


def _user(service: dict[str, Any]) -> str:
    return str(make_url(service["environment"]["LIAISON_DATABASE_URL"]).username)


def test_compose_roles_health_and_origin(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "init", "migrate", "liaison-1", "liaison-2", "proxy"} <= set(services)
    # The replicas connect as the application role; the one-shots as the owner; no service
    # of Liaison's is given the superuser (postgres).
    for name in ("liaison-1", "liaison-2"):
        assert _user(services[name]) == "liaison_app"
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("init", "migrate"):
        assert _user(services[name]) == "liaison_owner"
    for name, service in services.items():
        env = service.get("environment") or {}
        assert "postgres:" not in str(env.get("LIAISON_DATABASE_URL", "")).split("//")[-1].split("@")[0]
        if name != "postgres":
            assert "POSTGRES_PASSWORD" not in env
    # The roles are made at PostgreSQL's first start by the script tested below.
    assert any("postgres-init.sh" in str(v) for v in services["postgres"]["volumes"])
    # migrate applies the role set-up after every migration.
    migrate = " ".join(services["migrate"]["command"])
    assert "liaison-server migrate && liaison-server audit pg-roles --apply" in migrate
    # init is all or nothing, safe to run again, and takes the log origin from a setting.
    assert services["init"]["command"][:1] == ["init"] and "--exist-ok" in services["init"]["command"]
    assert services["init"]["environment"]["LIAISON_ORIGIN"] == "liaison.example/audit"
    # Health: the image's check asks /readyz (the Dockerfile), and so does HAProxy.
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert 'CMD ["liaison-server", "healthcheck", "--port", "8443"]' in dockerfile
    assert "uri /readyz" in (DOCKER / "haproxy.cfg").read_text()


# --- the same steps against the real PostgreSQL ---------------------------------------------


def _admin_dsn() -> str:
    return make_url(os.environ[PG_ENV]).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def roles() -> Iterator[dict[str, str]]:
    """Roles and a database made by docker/postgres-init.sh (names unique to this test: roles
    are cluster-wide); dropped afterwards."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (docker/postgres-init.sh runs it)")
    tag = uuid.uuid4().hex[:8]
    names = {
        "LIAISON_OWNER_ROLE": f"liaison_owner_{tag}",
        "LIAISON_APP_ROLE": f"liaison_app_{tag}",
        "LIAISON_DATABASE": f"liaison_docker_{tag}",
        "LIAISON_OWNER_PASSWORD": f"owner-{tag}",
        "LIAISON_APP_PASSWORD": f"app-{tag}",
    }
    admin = make_url(os.environ[PG_ENV])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")},
        **names,
        "PGHOST": admin.host or "127.0.0.1",
        "PGPORT": str(admin.port or 5432),
        "POSTGRES_USER": admin.username or "postgres",
    }
    if admin.password:
        env["PGPASSWORD"] = admin.password
    made = subprocess.run(
        ["sh", str(DOCKER / "postgres-init.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr
    try:
        yield names
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{names["LIAISON_DATABASE"]}" WITH (FORCE)'))
        for role in (names["LIAISON_APP_ROLE"], names["LIAISON_OWNER_ROLE"]):
            asyncio.run(_admin(f'DROP ROLE IF EXISTS "{role}"'))


def _url(names: dict[str, str], who: str) -> str:
    admin = make_url(os.environ[PG_ENV])
    return (
        admin.set(
            username=names[f"LIAISON_{who}_ROLE"],
            password=names[f"LIAISON_{who}_PASSWORD"],
            database=names["LIAISON_DATABASE"],
        )
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_the_compose_steps_on_postgres(roles: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "volume"
    data.mkdir()  # a volume's mount point: it exists, empty
    owner = server_env(
        LIAISON_DATABASE_URL=_url(roles, "OWNER"),
        LIAISON_DATA_DIR=str(data),
        LIAISON_ORIGIN="ops.example/log",
    )
    # init (compose's `init`), then again: nothing done.
    r = _cli("init", "--data-dir", str(data), "--json", "--exist-ok", env=owner)
    assert r.returncode == 0, r.stderr
    init = json.loads(r.stdout)
    assert init["log_verifier_key"].startswith("ops.example/log+")
    assert roles["LIAISON_OWNER_PASSWORD"] not in (data / "database.toml").read_text()
    r = _cli("init", "--data-dir", str(data), "--json", "--exist-ok", env=owner)
    assert r.returncode == 0 and json.loads(r.stdout)["initialised"] is False, r.stderr
    # migrate (compose's `migrate`): the schema, then the roles, as the owner.
    r = _cli("migrate", env=owner)
    assert r.returncode == 0, r.stderr
    app_role, owner_role = roles["LIAISON_APP_ROLE"], roles["LIAISON_OWNER_ROLE"]
    r = _cli("audit", "pg-roles", "--apply", "--app-role", app_role, "--owner-role", owner_role, env=owner)
    assert r.returncode == 0 and "roles applied" in r.stdout, r.stderr
    # The application role cannot rewrite the log (nor create tables).
    asyncio.run(_as_app_role_cannot_rewrite(_url(roles, "APP")))
    # A replica (compose's liaison-1): the application role, from the environment.
    port = free_port()
    replica = server_env(LIAISON_DATABASE_URL=_url(roles, "APP"), LIAISON_DATA_DIR=str(data))
    proc = start_server(data, port, replica)
    try:
        wait_ready(proc, f"https://127.0.0.1:{port}", init["tls_cert"])
        # The container's health check.
        r = _cli("healthcheck", "--port", str(port), env=replica)
        assert r.returncode == 0 and r.stdout == "healthy\n", r.stderr
        r = _cli("healthcheck", "--live", "--port", str(port), env=replica)  # /healthz only
        assert r.returncode == 0 and r.stdout == "healthy\n", r.stderr
        # What an operator takes out of the volume for clients (docker compose exec -T ...).
        r = _cli("export-trust", "--cert", env=replica)
        assert r.returncode == 0 and r.stdout == Path(init["tls_cert"]).read_text()
        r = _cli("export-trust", "--json", env=replica)
        trust = json.loads(r.stdout)
        assert trust["log_verifier_key"] == init["log_verifier_key"] and trust["origin"] == "ops.example/log"
        # The root enrols with init's invitation through the application role's service.
        keys = generate_device("root")
        enrolled = enrol_device_sync(
            f"https://127.0.0.1:{port}", init["root_enrolment_code"], keys, init["tls_cert"]
        )
        assert enrolled.status_code == 201, enrolled.text
        # The database goes away: not ready (the health check says why, in one line), alive.
        database = roles["LIAISON_DATABASE"]
        asyncio.run(_admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
        try:
            asyncio.run(
                _admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
                )
            )
            r = _cli("healthcheck", "--port", str(port), env=replica)
            assert r.returncode == 1 and r.stderr.startswith(
                "liaison-server: unhealthy: /readyz answered 503: "
            )
            assert r.stderr.count("\n") == 1, r.stderr
            assert _cli("healthcheck", "--live", "--port", str(port), env=replica).returncode == 0
        finally:
            asyncio.run(_admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        wait_ready(proc, f"https://127.0.0.1:{port}", init["tls_cert"])
    finally:
        log = stop(proc)
    assert '"event": "database.role"' not in log  # no warning: not a superuser, not the owner
    # The same server as the owner role is warned about (the owner can drop the triggers).
    proc = start_server(data, port, owner)
    try:
        wait_ready(proc, f"https://127.0.0.1:{port}", init["tls_cert"])
        r = _cli("healthcheck", "--port", str(port), env=owner)
        assert r.returncode == 0, r.stderr
    finally:
        log = stop(proc)
    assert '"event": "database.role"' in log and "the owner of the audit log's tables" in log
    # Not ready: the healthcheck says why, in one line, and fails.
    r = _cli("healthcheck", "--port", str(port), env=owner)
    assert (
        r.returncode == 1
        and r.stderr.startswith("liaison-server: unhealthy: ")
        and "Traceback" not in r.stderr
    )


async def _as_app_role_cannot_rewrite(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        for sql in (
            "UPDATE audit_entry SET idx = idx",
            "DELETE FROM checkpoint",
            "CREATE TABLE sneaky (x int)",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM audit_entry") > 0
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await conn.close()
