"""`liaison-server`: init, migrate, log-key, and run, which refuses clearly what it cannot serve.

The refusals run in-process (typer's CliRunner: `run` checks everything before it binds); one
test starts the real server as a subprocess and talks TLS 1.3 to it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from liaison.crypto import note
from liaison.crypto.keys import generate_device
from liaison.service.ops.cli import app
from liaison.service.storage.migrate import head_revision
from tests.service.harness import (
    create_pg_database,
    drop_pg_database,
    enrol_device,
    free_port,
    server_env,
    signed,
    start_server,
    stop,
    tls_context,
    wait_ready,
)


@pytest.fixture
def database(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """LIAISON_DATABASE_URL for the backend (a fresh PostgreSQL database), None on SQLite."""
    if backend == "sqlite":
        monkeypatch.delenv("LIAISON_DATABASE_URL", raising=False)
        yield None
        return
    url = asyncio.run(create_pg_database())
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(url))


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _init(tmp: Path) -> tuple[Path, dict[str, str]]:
    data = tmp / "data"
    code, out, err = _invoke("init", "--data-dir", str(data), "--json")
    assert code == 0, err
    return data, json.loads(out)


def _refused(data: Path, *expected: str, extra: tuple[str, ...] = ()) -> str:
    # The port is taken: should a regression let `run` past its checks, it fails to bind
    # (exit 1) instead of serving forever inside the test.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, out, err = _invoke("run", "--data-dir", str(data), "--port", port, *extra)
    assert code == 2, (code, out, err)
    assert err.startswith("liaison-server: ") and "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


def test_init_json_migrate_and_log_key(tmp_path: Path, database: str | None) -> None:
    data, result = _init(tmp_path)
    assert set(result) >= {"root_enrolment_code", "tls_cert", "log_verifier_key"}
    assert Path(result["tls_cert"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    verifier = note.parse_verifier_key(result["log_verifier_key"])
    assert verifier.name == "liaison.example/audit"
    assert len(result["root_enrolment_code"].replace("-", "")) == 20
    assert (data / "log-signer.key").stat().st_mode & 0o077 == 0  # private to its owner
    code, out, _ = _invoke("log-key", "--data-dir", str(data))
    assert code == 0 and out.strip() == result["log_verifier_key"]
    code, out, _ = _invoke("migrate", "--data-dir", str(data))
    assert code == 0 and out.strip() == f"schema {head_revision()} -> {head_revision()}"
    # init never overwrites a server.
    code, _, err = _invoke("init", "--data-dir", str(data))
    assert code == 2 and "not empty" in err
    assert (data / "log-verifier.key").read_text().strip() == result["log_verifier_key"]


def test_run_refuses_a_missing_data_dir(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere", "does not exist", "liaison-server init")
    code, _, err = _invoke("run")
    assert code == 2 and "no data directory" in err


def test_root_code_issues_a_fresh_code_for_an_operator(tmp_path: Path) -> None:
    """At genesis (no root device yet) `root-code` issues a new one-time code, logged, and
    refuses a data dir whose database is not migrated. (After genesis it refuses:
    tests/clients/test_enrol_invitation.py.)"""
    data, first = _init(tmp_path)
    code, out, err = _invoke("root-code", "--data-dir", str(data), "--json")
    assert code == 0, err
    second = json.loads(out)["root_enrolment_code"]
    assert second != first["root_enrolment_code"]
    conn = sqlite3.connect(data / "liaison.db")
    try:
        issued = conn.execute(
            "SELECT count(*) FROM audit_entry WHERE type = 'enrolment.code_issued'"
        ).fetchone()[0]
        stored = dict(
            conn.execute("SELECT code_hash, principal_id FROM enrolment_code WHERE used_at IS NULL")
        )
    finally:
        conn.close()
    from liaison.service.usecases.admin import code_hash

    assert issued == 2 and len(stored) == 2
    assert stored[code_hash(second)] == "root"  # a valid, unused code for the root principal
    assert second not in (data / "liaison.db").read_bytes().decode("latin-1")  # hash only
    for f in data.glob("liaison.db*"):
        f.unlink()
    code, _, err = _invoke("root-code", "--data-dir", str(data))
    assert code == 2 and "liaison.db is missing" in err and "restore it" in err


def test_run_refuses_a_newer_schema(tmp_path: Path, database: str | None) -> None:
    data, _ = _init(tmp_path)
    _stamp(data, database, "ffffffffffff")
    _refused(data, "ffffffffffff", "newer", "upgrade liaison-server")
    code, _, err = _invoke("migrate", "--data-dir", str(data))
    assert code == 2 and "newer" in err  # migrate will not touch it either


def test_run_and_migrate_refuse_an_empty_database_where_init_made_one(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's trap: the data dir pointed at an empty database (a wrong URL, a lost file),
    `run` advised `migrate`, which started an empty service with no root admin. Where init
    recorded the database it made, both refuse it and say which database init made."""
    data, _ = _init(tmp_path)
    if database is None:
        for f in data.glob("liaison.db*"):
            f.unlink()
        empty = None
        expected: tuple[str, ...] = ("liaison.db is missing", "init made this server's there", "restore")
    else:
        empty = asyncio.run(create_pg_database())
        monkeypatch.setenv("LIAISON_DATABASE_URL", empty)
        expected = (
            "is empty (not migrated, no root admin)",
            database,
            "database.toml",
            "LIAISON_DATABASE_URL",
        )
    try:
        _refused(data, *expected)
        code, _, err = _invoke("migrate", "--data-dir", str(data))
        assert code == 2 and all(text in err for text in expected), err
        code, _, err = _invoke("root-code", "--data-dir", str(data))
        assert code == 2 and all(text in err for text in expected), err
        if empty is None:
            assert not list(data.glob("liaison.db*"))  # refusing created nothing
        else:
            assert _schema(data, empty) is None
        # A data directory made before init recorded its database: the old rule stands (run
        # refuses an unmigrated database, migrate creates the schema).
        (data / "database.toml").unlink()
        _refused(data, "liaison-server migrate")
        code, out, err = _invoke("migrate", "--data-dir", str(data))
        assert code == 0 and out.strip() == f"schema empty -> {head_revision()}", err
    finally:
        if empty:
            asyncio.run(drop_pg_database(empty))


def test_run_refuses_a_migrated_database_without_the_root_init_made(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone ran `migrate` on the wrong database before: migrated, but no root principal."""
    if database is None:
        pytest.skip("SQLite: the database is the data directory's own file")
    data, _ = _init(tmp_path)
    other = asyncio.run(create_pg_database())
    try:
        monkeypatch.setenv("LIAISON_DATABASE_URL", other)
        (data / "database.toml").rename(tmp_path / "record")
        code, _, err = _invoke("migrate", "--data-dir", str(data))
        assert code == 0, err
        (tmp_path / "record").rename(data / "database.toml")
        _refused(data, "has no root principal", "database.toml")
    finally:
        asyncio.run(drop_pg_database(other))


def test_run_refuses_another_servers_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database of the right kind, migrated, with a root: but another server's, its log
    signed by another key. Serving it would continue that log under a second key (a fork)."""
    monkeypatch.delenv("LIAISON_DATABASE_URL", raising=False)
    ours, _ = _init(tmp_path / "ours")
    theirs, _ = _init(tmp_path / "theirs")
    monkeypatch.setenv("LIAISON_DATABASE_URL", f"sqlite+aiosqlite:///{theirs / 'liaison.db'}")
    _refused(ours, "is not signed by this data directory's log key", "another server's database")
    code, _, err = _invoke("root-code", "--data-dir", str(ours))
    assert code == 2 and "another server's database" in err, err


def test_commands_use_the_database_init_recorded(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init records the database it made (never a password); later commands use it when no
    URL is given, and refuse a database of another kind."""
    if database is not None:  # a password in the URL (trusted by the test server, never kept)
        monkeypatch.setenv("LIAISON_DATABASE_URL", database.replace("postgres@", "postgres:hunter2-pw@", 1))
    data, _ = _init(tmp_path)
    record = (data / "database.toml").read_text()
    for f in data.rglob("*"):
        if f.is_file() and not f.name.startswith("liaison.db"):
            assert b"hunter2-pw" not in f.read_bytes(), f
    monkeypatch.delenv("LIAISON_DATABASE_URL", raising=False)
    if database is None:
        assert 'kind = "sqlite"' in record and "url" not in record
        other = "postgresql+asyncpg://liaison@db.example/liaison"
        kinds = ("LIAISON_DATABASE_URL names a PostgreSQL database", "init made this server's in SQLite")
    else:
        assert 'kind = "postgresql"' in record and f'url = "{database}"' in record
        assert 'password_from = "LIAISON_DATABASE_URL"' in record
        other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        kinds = ("LIAISON_DATABASE_URL names a SQLite database", "init made this server's in PostgreSQL")
    # Without LIAISON_DATABASE_URL: the recorded database (audit verify once printed a
    # traceback here, from an empty SQLite file it had just created).
    code, out, err = _invoke("audit", "verify", "--data-dir", str(data), "--quiet")
    assert code == 0 and out.startswith("OK: "), err
    code, out, err = _invoke("migrate", "--data-dir", str(data))
    assert code == 0 and out.strip() == f"schema {head_revision()} -> {head_revision()}", err
    code, out, err = _invoke("config", "--data-dir", str(data), "--json")
    assert code == 0 and json.loads(out)["sources"]["database_url"] == (
        "default" if database is None else "record"
    )
    assert not (data / "liaison.db").exists() or database is None
    monkeypatch.setenv("LIAISON_DATABASE_URL", other)
    _refused(data, *kinds, "database.toml")
    for command in (["migrate"], ["root-code"], ["audit", "verify"], ["config"]):
        code, _, err = _invoke(*command, "--data-dir", str(data))
        assert code == 2 and all(k in err for k in kinds), (command, err)


def test_the_database_password_comes_from_a_file(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LIAISON_DATABASE_PASSWORD_FILE (a Docker or Kubernetes secret): init records the file's
    path, never its content; later commands read it."""
    if database is None:
        pytest.skip("SQLite has no password")
    secret = tmp_path / "db-password"
    secret.write_text("s3cret-from-file\n")
    monkeypatch.setenv("LIAISON_DATABASE_PASSWORD_FILE", str(secret))
    data, _ = _init(tmp_path)
    monkeypatch.delenv("LIAISON_DATABASE_URL")
    monkeypatch.delenv("LIAISON_DATABASE_PASSWORD_FILE")
    record = (data / "database.toml").read_text()
    assert 'password_from = "LIAISON_DATABASE_PASSWORD_FILE"' in record and str(secret) in record
    assert "s3cret-from-file" not in record
    from liaison.service.config import load_settings

    assert ":s3cret-from-file@" in load_settings(data).db_url
    code, out, err = _invoke("config", "--data-dir", str(data))
    assert code == 0 and "s3cret-from-file" not in out, out
    secret.unlink()
    code, _, err = _invoke("audit", "verify", "--data-dir", str(data))
    assert code == 2 and "cannot read the password file" in err and "password_file in" in err, err


def _schema(data: Path, database: str | None) -> str | None:
    from liaison.service.storage.db import Database
    from liaison.service.storage.migrate import schema_state

    async def read() -> str | None:
        db = Database(database or f"sqlite+aiosqlite:///{data / 'liaison.db'}")
        try:
            return (await schema_state(db)).current
        finally:
            await db.dispose()

    return asyncio.run(read())


def _stamp(data: Path, database: str | None, revision: str) -> None:
    """Set the alembic_version of the data dir's database."""
    if database is not None:
        asyncio.run(_stamp_pg(database, revision))
        return
    conn = sqlite3.connect(data / "liaison.db")
    try:
        with conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    finally:
        conn.close()


async def _stamp_pg(database: str, revision: str) -> None:
    import asyncpg
    from sqlalchemy.engine.url import make_url

    dsn = make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = $1", revision)
    finally:
        await conn.close()


def test_run_refuses_a_malformed_policy(tmp_path: Path) -> None:
    data, _ = _init(tmp_path)
    policy = data / "policy.toml"
    text = policy.read_text()
    policy.write_text(text.replace('kem = ["MLKEM768-X25519"]', 'kem = ["RSA"]', 1))
    _refused(data, "policy.toml", "kem may only name")
    policy.write_text(text + "\n[[levels]\n")
    _refused(data, "policy.toml", "not valid TOML")
    policy.unlink()
    _refused(data, "policy file", "is missing")


def test_run_refuses_unreadable_keys_and_settings(tmp_path: Path) -> None:
    data, _ = _init(tmp_path)
    key = data / "log-signer.key"
    good = key.read_bytes()
    key.write_bytes(b"PRIVATE+KEY+garbage\n")
    _refused(data, "log signing key", "unreadable")
    key.write_bytes(b"\xff\xfe\x00")
    _refused(data, "log signing key", "unreadable")
    key.unlink()
    _refused(data, "log signing key", "is missing")
    key.write_bytes(good)
    settings = data / "settings.toml"
    settings.write_text('origin = "another.example/log"\n')
    _refused(data, "another.example/log")  # a key for another log's name
    settings.write_text("origin = \n")
    _refused(data, "settings.toml", "not valid TOML")
    settings.write_text('origin = "liaison.example/audit"\nmax_body_bytes = "lots"\n')
    _refused(data, "max_body_bytes in", "settings.toml: expected a whole number at least 1024, got 'lots'")
    settings.write_text('origin = "liaison.example/audit"\n')
    (data / "tls" / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    _refused(data, "TLS certificate or key", "unreadable")
    (data / "tls" / "key.pem").unlink()
    _refused(data, "TLS file", "key.pem")
    # Plain HTTP is for development on loopback only.
    _refused(data, "loopback", extra=("--dev-plain-http", "--host", "0.0.0.0"))


@pytest.mark.slow
def test_run_serves_tls_13_right_after_init(tmp_path: Path) -> None:
    data, result = _init(tmp_path)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    proc = start_server(data, port, server_env())
    try:
        wait_ready(proc, base, result["tls_cert"])
        # TLS 1.3 only: a client that stops at TLS 1.2 is refused.
        with socket.create_connection(("127.0.0.1", port)) as raw:
            ctx = tls_context(result["tls_cert"])
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
        old = tls_context(result["tls_cert"])
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", port)) as raw,
            old.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass
        # The root enrols with the code init printed and acts, with no other step.
        asyncio.run(_enrol_root(base, result))
    finally:
        stop(proc)


async def _enrol_root(base: str, result: dict[str, str]) -> None:
    keys = generate_device("root")
    async with httpx.AsyncClient(verify=tls_context(result["tls_cert"]), timeout=10) as http:
        r = await enrol_device(http, result["root_enrolment_code"], keys, base)
        assert r.status_code == 201, r.text
        assert r.json()["log_verifier_key"] == result["log_verifier_key"]
        r = await http.send(signed(http, keys, "GET", base + "/v1/me"))
        assert r.status_code == 200 and r.json()["principal"]["id"] == "root"
        # One start, one `policy.loaded` (init's own start logged the first one).
        r = await http.send(signed(http, keys, "GET", base + "/v1/audit/entries?type=policy.loaded"))
        assert r.status_code == 200, r.text
        assert len(r.json()["entries"]) == 2
        # No slash redirects: an unknown spelling of a path is a 404 problem.
        r = await http.get(base + "/v1/policy/")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
