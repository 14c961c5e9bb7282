"""`liaison-server init` is all or nothing (issue 11, item 3).

A failed init once left a half-written data directory that blocked the next one. Each test
here makes init fail for real, midway: an unreachable database, a read-only location, a disk
that fills up while the database is made (in a volume's mount point, the Docker case), an
interrupt while it waits for the database, and a PostgreSQL database that fails after the
migration. Each time nothing is left (no data directory, no staging directory, the database
empty again) and the same init then succeeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liaison.service.ops.cli import app
from tests.service.harness import PG_ENV, create_pg_database, drop_pg_database


def _init(data: Path, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["init", "--data-dir", str(data), "--json"], env=env or None)
    return result.exit_code, result.stdout, result.stderr


def _nothing_left(data: Path) -> None:
    assert not data.exists() or not any(data.iterdir()), sorted(p.name for p in data.iterdir())
    assert not [p for p in data.parent.iterdir() if "liaison-init" in p.name]


def _one_line_refusal(code: int, err: str, *expected: str) -> None:
    assert code != 0
    assert err.startswith("liaison-server: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "unexpected error" not in err, err
    assert "nothing was kept" in err, err
    for text in expected:
        assert text in err, err


def _succeeds(data: Path, **env: str) -> dict[str, str]:
    code, out, err = _init(data, **env)
    assert code == 0, err
    result = json.loads(out)
    assert Path(result["data_dir"]) == data.resolve()
    assert {p.name for p in data.iterdir()} >= {"settings.toml", "policy.toml", "tls", "database.toml"}
    assert not [p for p in data.parent.iterdir() if "liaison-init" in p.name]
    return result


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_database_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "srv" / "data"
    url = f"postgresql+asyncpg://liaison@127.0.0.1:{_closed_port()}/liaison"
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    code, _, err = _init(data)
    _one_line_refusal(code, err, "cannot reach the database", f"127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert ".liaison-init" not in err  # the message names the data directory, not the staging one
    _nothing_left(data)
    monkeypatch.delenv("LIAISON_DATABASE_URL")
    _succeeds(data)  # the rerun is not blocked


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An empty directory to mount a tmpfs on (and unmount afterwards): needs root."""
    point = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("the read-only and full-disk init tests mount a tmpfs, which needs root")
    probe = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (these tests need to): {probe.stderr.strip()}")
    try:
        yield point, str(point)
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def test_a_read_only_location_leaves_nothing(mount: tuple[Path, str]) -> None:
    point, _ = mount
    (point / "srv").mkdir()
    _remount(point, "ro")
    data = point / "srv" / "data"
    code, _, err = _init(data)
    _one_line_refusal(code, err, "cannot write the data directory", "Read-only file system")
    _remount(point, "rw,size=4m")
    _nothing_left(data)
    _succeeds(data)


def test_a_full_disk_in_a_volume_leaves_it_empty(mount: tuple[Path, str]) -> None:
    """The data directory is itself a mount point (a Docker volume): init stages inside it and
    moves the files in when done. 64 KiB hold the keys and certificate but not the database,
    so init fails while it migrates."""
    point, _ = mount
    code, _, err = _init(point)
    _one_line_refusal(code, err, "disk is full")
    assert ".liaison-init" not in err
    assert list(point.iterdir()) == []  # the volume is as empty as it was
    _remount(point, "size=4m")
    result = _succeeds(point)
    assert (point / "liaison.db").exists() and oct(point.stat().st_mode & 0o777) == "0o700"
    assert result["tls_cert"] == str(point / "tls" / "cert.pem")


def test_a_killed_init_does_not_block_the_next(tmp_path: Path) -> None:
    """An init killed outright (SIGKILL: no clean-up can run) leaves its staging directory;
    the next init removes it rather than refusing a "non-empty" data directory."""
    data = tmp_path / "volume"
    data.mkdir()
    (data / ".liaison-init-abandoned").mkdir()
    (data / ".liaison-init-abandoned" / "log-signer.key").write_text("left by a killed init\n")
    _succeeds(data)
    assert not (data / ".liaison-init-abandoned").exists()
    (tmp_path / ".other.liaison-init-abandoned").mkdir()  # beside a data dir yet to be made
    _succeeds(tmp_path / "other")


def _sigint_as_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_an_interrupt_while_waiting_for_the_database_leaves_nothing(tmp_path: Path) -> None:
    """The real CLI, interrupted (SIGINT) while it waits for a database that accepted the
    connection and never answers: the files were already staged."""
    data = tmp_path / "data"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
        env["LIAISON_DATABASE_URL"] = f"postgresql+asyncpg://liaison@127.0.0.1:{port}/liaison"
        exe = Path(sys.executable).with_name("liaison-server")
        proc = subprocess.Popen(
            [str(exe), "init", "--data-dir", str(data)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # SIGINT as a terminal delivers it, whatever an earlier test of this process left
            # (an ignored or blocked SIGINT is inherited across exec).
            preexec_fn=_sigint_as_a_terminal,
        )
        try:
            silent.settimeout(30)
            conn, _ = silent.accept()  # init has written its files and now waits for the database
            staged = [p.name for p in tmp_path.iterdir() if "liaison-init" in p.name]
            assert len(staged) == 1, staged  # midway: the staging directory is there
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    text = err.decode()
    assert proc.returncode != 0 and "Traceback" not in text, text
    assert text.startswith("liaison-server: ") and "interrupted" in text and text.count("\n") == 1, text
    assert out == b""
    _nothing_left(data)
    _succeeds(data)


# --- PostgreSQL: a failure after the migration empties the database again -----------------

_FAIL_AFTER_MIGRATION = """
CREATE FUNCTION test_sabotage() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'CREATE TABLE' AND object_identity = 'public.principal') THEN
    CREATE FUNCTION public.test_no_root() RETURNS trigger LANGUAGE plpgsql
      AS 'BEGIN RAISE EXCEPTION ''the disk caught fire''; END';
    CREATE TRIGGER test_no_root BEFORE INSERT ON public.principal
      FOR EACH ROW EXECUTE FUNCTION public.test_no_root();
  END IF;
END $$;
CREATE EVENT TRIGGER test_sabotage ON ddl_command_end EXECUTE FUNCTION test_sabotage();
"""


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import asyncpg
    from sqlalchemy.engine.url import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        if statement.lstrip().upper().startswith("SELECT"):
            return [tuple(r) for r in await conn.fetch(statement)]
        await conn.execute(statement)
        return []
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    url = asyncio.run(create_pg_database())
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(url))


_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"


def test_a_database_failure_after_the_migration_empties_it_again(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration succeeds, then creating the root principal fails (a trigger the test
    planted raises): init undoes its migration, so the database is empty for the rerun."""
    asyncio.run(_sql(pg_url, _FAIL_AFTER_MIGRATION))
    monkeypatch.setenv("LIAISON_DATABASE_URL", pg_url)
    data = tmp_path / "data"
    code, _, err = _init(data)
    _one_line_refusal(code, err)
    _nothing_left(data)
    assert asyncio.run(_sql(pg_url, _TABLES)) == []  # no table left: not even alembic_version
    asyncio.run(_sql(pg_url, "DROP EVENT TRIGGER test_sabotage; DROP FUNCTION public.test_no_root()"))
    result = _succeeds(data)
    assert result["database"] == pg_url
    # And init never takes over a database that already holds a server.
    code, _, err = _init(tmp_path / "second")
    _one_line_refusal(code, err, "already holds a Liaison server", "empty database")
    _nothing_left(tmp_path / "second")
    assert ("principal",) in asyncio.run(_sql(pg_url, _TABLES))  # and left it as it was
