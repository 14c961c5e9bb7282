"""No `liaison` subcommand answers a user's mistake with a traceback: every subcommand,
enumerated from the app itself, run with wrong inputs against a live server (missing and
unknown options, hostile and malformed values, a profile that does not exist, --json).

A mistake is answered with exit 1 (refused) or 2 (usage) and one line on stderr (one JSON
object with --json); an exception escaping a command (a traceback, for the console script) or
an "internal error" fails the test. The console script itself is run for a sample, and its
output searched for "Traceback" literally."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from liaison.clients import cli
from tests.clients.conftest import BIN, Liaison

#: Values a user might get wrong (or an attacker might try), cycled over the parameters.
BAD = ["\x1b[2J\u202eevil", "../../etc/passwd", "", "x" * 3000, "%00;DROP", "SECRET//NOPE//REL TO XXX"]
BAD_INTS = ["-1", "x", "99999999999999999999"]


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    sub = getattr(command, "commands", None)
    if sub is None:
        yield path, command
        return
    for name, child in sorted(sub.items()):
        yield from _leaves(child, (*path, name))


COMMANDS = list(_leaves(typer.main.get_command(cli.app)))


def _kind(param: Any) -> str:
    type_name = type(getattr(param, "type", None)).__name__.lower()  # click's param type, if any
    annotation = str(getattr(getattr(param, "type_descriptor", None), "annotation", ""))
    if "int" in type_name or "int" in annotation:
        return "int"
    if "path" in type_name or "Path" in annotation:
        return "path"
    return "str"


def _fill(command: Any, offset: int) -> list[str]:
    """Every parameter of `command` (but --help, --profile, --json) with a wrong value."""
    args: list[str] = []
    positional: list[str] = []
    for i, param in enumerate(command.params):
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if param.name in ("help", "profile", "as_json") or (opts and opts[0] in ("--help", "--json")):
            continue
        kind = _kind(param)
        value = {"int": BAD_INTS[(i + offset) % len(BAD_INTS)], "path": "/nonexistent/dir/file"}.get(
            kind, BAD[(i + offset) % len(BAD)]
        )
        if getattr(param, "param_type_name", "") == "argument":
            positional.append(value)
        elif getattr(param, "is_flag", False):
            if offset % 2:  # flags on in half the variants: off, they do not end a command early
                args.append(opts[0])
        elif opts:
            args += [opts[0], value]
    return [*args, *positional]


#: Commands whose bare form is a correct one that runs until interrupted: not a mistake.
ENDLESS = {("watch",)}


def _variants(path: tuple[str, ...], command: Any) -> list[list[str]]:
    return [
        *([[*path]] if path not in ENDLESS else []),
        [*path, "--no-such-option"],
        ["-p", "root", *path, *_fill(command, 0)],
        ["-p", "root", *path, *_fill(command, 3)],
        ["-p", "root", *path, *_fill(command, 4)],
        ["--json", "-p", "root", *path, *_fill(command, 1)],
        ["-p", "nobody", *path, *_fill(command, 2)],
        ["--json", "-p", "nobody", *path],
    ]


@pytest.fixture
def isolated(liaison: Liaison, monkeypatch: pytest.MonkeyPatch) -> Iterator[Liaison]:
    """No agent of another test is reachable (and none is left behind)."""
    run = Path(tempfile.mkdtemp(prefix="lm"))
    os.chmod(run, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    try:
        yield liaison
    finally:
        liaison("lock", ok=False)
        shutil.rmtree(run, ignore_errors=True)


def _check(argv: list[str], code: int, stdout: str, stderr: str, exception: BaseException | None) -> None:
    where = f"liaison {' '.join(argv)!r}"
    assert exception is None or isinstance(exception, SystemExit), f"{where} raised {exception!r}"
    assert "Traceback" not in stdout + stderr, where
    assert "internal error" not in stderr.lower(), where
    assert code in (0, 1, 2), f"{where} -> {code}"
    lines = stderr.strip().splitlines()
    if code == 0:
        return
    if code == 2 and not lines:
        assert stdout.startswith("Usage:"), where  # a group without its command: its help
        return
    assert len(lines) == 1, f"{where}: {stderr}"
    if "--json" in argv:
        obj = json.loads(lines[0])
        assert obj["type"].startswith("urn:liaison:") and obj["exit"] == code, where
    else:
        assert lines[0].startswith("liaison: "), f"{where}: {stderr}"


@pytest.mark.slow
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_wrong_inputs_never_raise(isolated: Liaison, path: tuple[str, ...], command: Any) -> None:
    for argv in _variants(path, command):
        r = isolated.runner.invoke(cli.app, argv, input="not what was expected\n")
        _check(argv, r.exit_code, r.stdout, r.stderr, r.exception)


def test_every_command_is_covered() -> None:
    """The enumeration is not vacuous: it finds the commands this file was written against."""
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"send", "read", "inbox", "watch", "unlock", "lock", "help", "audit witnesses set"} <= names
    assert len(names) >= 25


@pytest.mark.slow
def test_the_console_script_prints_no_traceback(liaison: Liaison) -> None:
    env = {**os.environ, "LIAISON_HOME": str(liaison.home), "LIAISON_PASSPHRASE": liaison.passphrase}
    env["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="lm")
    os.chmod(env["XDG_RUNTIME_DIR"], 0o700)
    samples = [
        ["send"],
        ["-p", "root", "read", "\x1b[2J"],
        ["-p", "root", "send", "-c", "../x", "-l", "NOPE"],
        ["--json", "-p", "root", "inbox", "--since", "yesterday"],
        ["-p", "nobody", "watch"],
        ["-p", "root", "audit", "entries", "--since", "x"],
        ["-p", "root", "admin", "channel", "members", "x"],
        ["-p", "root", "unlock", "--idle-timeout", "-1"],
        ["help", "\x1b]0;title\x07"],
        ["--version", "extra"],
    ]
    try:
        for argv in samples:
            cmd = [str(BIN / "liaison"), *argv]
            r = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False, input=b"")
            _check(argv, r.returncode, r.stdout.decode(), r.stderr.decode(), None)
    finally:
        shutil.rmtree(env["XDG_RUNTIME_DIR"], ignore_errors=True)
