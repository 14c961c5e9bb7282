"""No `liaison-server` command prints a traceback for an operator's mistake (issue 11, item 2).

Every command of the real CLI, enumerated from its click tree (a new command is covered
without touching this file), is run with wrong inputs: an unknown option, a bad option value,
a missing data directory, a file where the data directory should be, a data directory of
garbage, each of the data directory's files replaced by garbage, wrong `LIAISON_*` values and
wrong database URLs. Each answer must be one line naming the reason ("liaison-server: ..."),
never a traceback nor the catch-all "unexpected error", and a non-zero exit wherever the input
is wrong for that command.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from liaison.service.ops.cli import app

#: Commands whose answer does not depend on the data directory's files or the database
#: (they print what they are given): for those, only options and settings are wrong inputs.
#: A command is listed here only if reading nothing from the data directory is its job.
DATABASE_FREE = {("log-key",), ("config",), ("export-trust",), ("healthcheck",)}


def _leaves(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    sub = getattr(command, "commands", None)
    if sub is None:
        yield path, command
        return
    for name, child in sorted(sub.items()):
        yield from _leaves(child, (*path, name))


COMMANDS = dict(_leaves(typer.main.get_command(app)))


def _options(command: object) -> dict[str, object]:
    return {opt: p for p in getattr(command, "params", []) for opt in getattr(p, "opts", [])}


def test_every_command_is_enumerated() -> None:
    # A sanity check on the enumeration itself: the commands known today are all there.
    assert {
        ("init",),
        ("migrate",),
        ("run",),
        ("root-code",),
        ("log-key",),
        ("healthcheck",),
        ("config",),
        ("export-trust",),
        ("audit", "verify"),
        ("audit", "pg-roles"),
    } <= set(COMMANDS)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory made by init (SQLite), copied by the tests that spoil it."""
    data = tmp_path_factory.mktemp("initialised") / "data"
    result = CliRunner().invoke(app, ["init", "--data-dir", str(data)], env=_clean_env())
    assert result.exit_code == 0, result.output
    return data


def _clean_env() -> dict[str, str | None]:
    """The CLI's settings come only from the test: every LIAISON_* of the outer environment off."""
    return {k: None for k in os.environ if k.startswith("LIAISON_")}


@pytest.fixture
def port() -> Iterator[str]:
    """A port that is bound but not listening: connecting to it is refused (healthcheck fails
    at once) and `run` cannot bind it (so no case serves forever)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield str(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # `run` configures the process's logging when it gets past its checks (then fails to bind).
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _invoke(
    path: tuple[str, ...], args: list[str], port: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    options = _options(COMMANDS[path])
    extra = ["--port", port] if "--port" in options else []
    if "--apply" in options:  # pg-roles: the data directory is for --apply
        extra.append("--apply")
    full_env = {**_clean_env(), **(env or {})}
    result = CliRunner().invoke(app, [*path, *args, *extra], env=full_env)
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        path,
        args,
        env,
        repr(result.exception),
    )
    assert "Traceback" not in output, (path, args, output)
    assert "unexpected error" not in output, (path, args, output)
    return result.exit_code, result.stderr


def _refused(path: tuple[str, ...], args: list[str], port: str, env: dict[str, str] | None = None) -> str:
    code, err = _invoke(path, args, port, env)
    assert code != 0, (path, args, env, err)
    lines = err.strip().splitlines()
    # One line, ours or click's usage error (which shows the usage, then one "Error" line).
    assert len(lines) == 1 or any("No such option" in x or "Invalid value" in x for x in lines), err
    return err


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_bad_options(path: tuple[str, ...], port: str) -> None:
    _refused(path, ["--no-such-option"], port)
    numeric = [
        opt
        for opt, p in _options(COMMANDS[path]).items()
        if opt.startswith("--") and getattr(getattr(p, "type", None), "name", "") in ("integer", "float")
    ]
    for opt in numeric:
        _refused(path, [opt, "not-a-number"], port)


def _with_data_dir() -> list[tuple[str, ...]]:
    return [p for p in sorted(COMMANDS) if "--data-dir" in _options(COMMANDS[p])]


@pytest.mark.parametrize("path", _with_data_dir(), ids=" ".join)
def test_wrong_data_directories(path: tuple[str, ...], tmp_path: Path, port: str) -> None:
    if path != ("init",):  # init makes a missing directory: that is its job
        err = _refused(path, ["--data-dir", str(tmp_path / "nowhere")], port)
        assert "does not exist" in err and "liaison-server init" in err, err
        assert "no data directory" in _refused(path, [], port)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    _refused(path, ["--data-dir", str(a_file)], port)
    garbage = tmp_path / "garbage"
    (garbage / "tls").mkdir(parents=True)
    for name in (
        "settings.toml",
        "policy.toml",
        "log-signer.key",
        "log-verifier.key",
        "database.toml",
        "liaison.db",
        "tls/cert.pem",
        "tls/key.pem",
    ):
        (garbage / name).write_bytes(b"\xff\xfe garbage [[[ = \x00\n")
    _refused(path, ["--data-dir", str(garbage)], port)


GARBAGE_FILES = [
    "settings.toml",
    "policy.toml",
    "log-signer.key",
    "log-verifier.key",
    "database.toml",
    "liaison.db",
    "tls/cert.pem",
    "tls/key.pem",
]


@pytest.mark.parametrize("name", GARBAGE_FILES)
def test_each_file_of_the_data_directory_spoilt(
    name: str, initialised: Path, tmp_path: Path, port: str
) -> None:
    """One file replaced by garbage (or removed): commands that need it refuse in one line;
    none prints a traceback. At least one command refuses each."""
    refusals = 0
    for spoil in ("garbage", "missing"):
        data = tmp_path / spoil
        shutil.copytree(initialised, data)
        target = data / name
        if spoil == "garbage":
            target.write_bytes(b"\xff\xfe garbage [[[ = \x00\n")
        else:
            target.unlink()
        for path in _with_data_dir():
            if path == ("init",):
                continue
            code, err = _invoke(path, ["--data-dir", str(data)], port)
            if code != 0:
                refusals += 1
                if path == ("run",) and err.startswith("liaison-server: serving"):
                    continue  # past its checks (the file is not one run reads): the port is taken
                assert err.startswith("liaison-server") and len(err.strip().splitlines()) == 1, (path, err)
    assert refusals > 0, name


WRONG_ENV = {
    "malformed database URL": {"LIAISON_DATABASE_URL": "not a url at all"},
    "unsupported driver": {"LIAISON_DATABASE_URL": "mysql://root:pw@127.0.0.1/liaison"},
    "another kind than init's": {"LIAISON_DATABASE_URL": "postgresql+asyncpg://liaison@127.0.0.1:1/liaison"},
    "bad number": {"LIAISON_MAX_BODY_BYTES": "lots"},
    "bad list": {"LIAISON_WITNESS_KEYS": "garbage"},
    "bad JSON": {"LIAISON_WITNESS_URLS": "{not json"},
    "bad choice": {"LIAISON_LOG_LEVEL": "loud"},
    "rule across settings": {"LIAISON_PROXY_PROTOCOL": "true"},
    "password file missing": {
        "LIAISON_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/x.db",
        "LIAISON_DATABASE_PASSWORD_FILE": "/nonexistent/secret",
    },
}


@pytest.mark.parametrize("case", sorted(WRONG_ENV))
def test_wrong_settings(case: str, initialised: Path, tmp_path: Path, port: str) -> None:
    env = WRONG_ENV[case]
    for path in _with_data_dir():
        data = tmp_path / "new" if path == ("init",) else initialised
        err = _refused(path, ["--data-dir", str(data)], port, env)
        assert "pw@" not in err  # never a password
        if path == ("init",):
            assert not (tmp_path / "new").exists()


def test_unreachable_databases(initialised: Path, tmp_path: Path, port: str) -> None:
    """A database of the right kind that cannot be reached: every command that needs it says
    so in one line."""
    data = tmp_path / "data"
    shutil.copytree(initialised, data)
    (data / "liaison.db").rename(tmp_path / "moved.db")
    wrong = {
        "a directory that does not exist": f"sqlite+aiosqlite:///{tmp_path / 'none' / 'x.db'}",
        "a directory": f"sqlite+aiosqlite:///{tmp_path}",
    }
    for url in wrong.values():
        for path in _with_data_dir():
            if path == ("init",) or path in DATABASE_FREE:
                continue
            err = _refused(path, ["--data-dir", str(data)], port, {"LIAISON_DATABASE_URL": url})
            assert "database" in err, (path, err)
    for path in _with_data_dir():
        if path != ("init",) and path not in DATABASE_FREE:
            err = _refused(path, ["--data-dir", str(data)], port)  # init's database, gone
            assert "liaison.db is missing" in err or "--apply needs a PostgreSQL" in err, (path, err)


def test_the_real_entry_point(tmp_path: Path) -> None:
    """The installed `liaison-server` (not typer's runner): the same one-line answers."""
    exe = Path(sys.executable).with_name("liaison-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    cases = [
        (["audit", "verify", "--data-dir", str(tmp_path / "nowhere")], {}),
        (["run", "--data-dir", str(tmp_path)], {}),
        (["config", "--data-dir", str(tmp_path)], {"LIAISON_WITNESS_KEYS": "garbage"}),
        (["migrate", "--data-dir", str(tmp_path)], {"LIAISON_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}),
    ]
    for args, extra in cases:
        proc = subprocess.run(
            [str(exe), *args], env={**env, **extra}, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode != 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert proc.stderr.startswith("liaison-server") and proc.stderr.count("\n") == 1, proc.stderr
    assert (
        "LIAISON_WITNESS_KEYS: expected a comma-separated list of vkeys"
        in subprocess.run(
            [str(exe), "config", "--data-dir", str(tmp_path)],
            env={**env, "LIAISON_WITNESS_KEYS": "garbage"},
            capture_output=True,
            text=True,
            timeout=60,
        ).stderr
    )
