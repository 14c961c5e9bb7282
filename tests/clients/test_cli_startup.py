"""What `liaison --help` (and --version, help topics, shell completion) costs: the modules it
loads. No time is asserted (bench/cli.py prints the times); what is held here is that none of
the heavy libraries or the client library is imported to answer them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from liaison.crypto.names import ROLES

#: Imported by commands that talk to a server, never to print help.
HEAVY = ("httpx", "rich", "cryptography", "nacl", "pydantic", "anyio", "h11", "ssl", "zxcvbn", "stix2")
#: typer 0.29+ coerces every option value it parses through pydantic (pyproject.toml keeps
#: typer below it): with it, anything but `--help` and `--version` would load pydantic.
PYDANTIC = ("pydantic", "pydantic_core")
HEAVY_OURS = (
    "liaison.crypto",
    "liaison.clients.client",
    "liaison.clients._agent",
    "liaison.clients.keystore",
)

PROBE = """
import contextlib, io, json, os, sys
sys.argv = ["liaison", *json.loads(sys.argv[1])]
from liaison.clients.cli import main
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main()
except SystemExit as e:
    code = e.code
sys.stdout.write(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        timeout=60,
        check=True,
        env=env,
    )
    return dict(json.loads(r.stdout))


def _heavy(modules: object, also: tuple[str, ...] = ()) -> list[str]:
    assert isinstance(modules, list)
    return [
        m
        for m in modules
        if m.split(".")[0] in HEAVY + also or any(m == h or m.startswith(h + ".") for h in HEAVY_OURS)
    ]


@pytest.mark.parametrize("args", [["--help"], ["--version"]], ids=" ".join)
def test_help_and_version_load_not_even_pydantic(args: list[str]) -> None:
    got = _run(args)
    assert got["code"] in (0, None) and got["out"], got
    assert _heavy(got["modules"], PYDANTIC) == []


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["help"], ["help", "agent"], ["send", "--help"], ["audit", "--help"]],
    ids=" ".join,
)
def test_help_topics_and_command_help_load_nothing_heavy(args: list[str]) -> None:
    got = _run(args)
    assert got["code"] in (0, None), got
    assert got["out"], "it printed nothing"
    assert _heavy(got["modules"]) == []


def test_completion_loads_nothing_heavy() -> None:
    import os

    env = {**os.environ, "_LIAISON_COMPLETE": "complete_bash", "COMP_WORDS": "liaison wa", "COMP_CWORD": "1"}
    got = _run([], env)
    assert str(got["out"]).split() == ["watch"]
    assert _heavy(got["modules"]) == []


def test_a_server_command_does_load_them() -> None:
    """The probe is not vacuous: a command that opens a profile imports the client."""
    got = _run(["-p", "nobody-at-all", "whoami"])
    assert got["code"] == 1
    assert "liaison.clients.keystore" in _heavy(got["modules"])


def test_the_package_imports_its_names_when_used() -> None:
    code = (
        "import sys, liaison.clients as c\n"
        "assert 'httpx' not in sys.modules\n"
        "for name in c.__all__: getattr(c, name)\n"
        "import liaison.clients.enrol\n"
        "from liaison.clients import enrol\n"
        "assert callable(enrol) and not isinstance(enrol, type(sys))\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert r.stdout == b"ok\n", r.stderr


def test_literal_help_texts_match_the_protocol() -> None:
    from liaison.clients import cli

    assert "|".join(ROLES) == cli.ROLES_HELP
