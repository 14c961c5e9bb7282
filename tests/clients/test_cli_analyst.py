"""The analyst's `liaison` (issue 11, items 9 to 12) through the real CLI against a live server:
refusals that name their rule, enrol saying whose device it is, a usable inbox, read by id
prefix resolved in the inbox, JSON errors, --version and help topics."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from liaison.crypto.names import X25519
from tests.clients.conftest import BIN, Liaison, uid
from tests.clients.test_cli import send, world

SECRET = "SECRET//AIRDEF//REL TO FRA, UKR, USA"
UNCLASS = "UNCLASSIFIED//REL TO FRA, UKR, USA"


def _json_error(r: Any) -> dict[str, Any]:
    """The one JSON object a --json command wrote on stderr."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    obj = json.loads(lines[0])
    assert isinstance(obj, dict) and obj["exit"] == r.code and obj["detail"]
    return obj


# --- refusals name their rule (item 9) ---------------------------------------------------------


def test_a_refused_send_names_the_rule(liaison: Liaison) -> None:
    n = world(liaison)
    ts = uid("ts")
    liaison.principal(ts, "USA", "TOP SECRET", "--compartment", "AIRDEF")
    ops = uid("ops")
    liaison("-p", "root", "admin", "channel", "create", ops, "--ceiling", "SECRET//REL TO UKR, USA")
    liaison("-p", "root", "admin", "channel", "members", ops, ts, n["usa"], n["fra"])
    cases = [
        # (who, label, rule, words)
        (
            ts,
            "TOP SECRET//REL TO USA",
            "channel-ceiling",
            "the label is above the channel's ceiling SECRET//REL TO UKR, USA",
        ),
        (n["usa"], "TOP SECRET//REL TO USA", "own-clearance", "your own clearance is below the label"),
        (n["usa"], "SECRET//REL TO UKR", "releasability", "your nation is not in the label's REL TO"),
        (n["fra"], SECRET, "compartment", "you lack a compartment of the label"),
        (n["ukr"], "SECRET//REL TO UKR, USA", "membership", "you are not a member of the channel"),
    ]
    for who, label, rule, words in cases:
        for extra in ([], ["--dry-run"]):
            line = liaison.refused("-p", who, "send", "-c", ops, "-l", label, *extra, input="x")
            assert f"cannot send {label} on {ops}: {words}" in line, line
            r = liaison("-p", who, "--json", "send", "-c", ops, "-l", label, *extra, input="x", ok=False)
            assert r.code == 1 and r.stdout == ""
            err = _json_error(r)
            assert err["rule"] == rule and err["type"].startswith("urn:liaison:problem:")
            assert isinstance(err["status"], int) and err["status"] >= 400


def test_a_dry_run_nobody_can_receive_exits_non_zero(liaison: Liaison) -> None:
    """A plan with no recipient at all is a refusal too: the table, then exit 1 and why."""
    from liaison.clients import KeyStore, enrol

    pid, chan = uid("x25519"), uid("chan")
    liaison("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", "UKR",
            "--clearance", "SECRET")  # fmt: skip
    code = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"]
    import asyncio

    asyncio.run(
        enrol(
            liaison.server.url,
            code,
            principal=pid,
            passphrase=liaison.passphrase,
            profile=pid,
            store=KeyStore(liaison.home, opslimit=1, memlimit=8192),
            ca_cert=liaison.server.cert,
            suite=X25519,  # a device CONFIDENTIAL and above cannot be encrypted to
        )
    )
    liaison("-p", "root", "admin", "channel", "create", chan, "--ceiling", "SECRET//REL TO UKR")
    liaison("-p", "root", "admin", "channel", "members", chan, pid)
    r = liaison("-p", pid, "send", "-c", chan, "-l", "CONFIDENTIAL//REL TO UKR", "--dry-run", ok=False)
    assert r.code == 1 and "Would be encrypted to" in r.stdout
    assert f"nobody on {chan} can receive CONFIDENTIAL//REL TO UKR: {pid}: no device" in r.stderr
    r = liaison(
        "-p", pid, "--json", "send", "-c", chan, "-l", "CONFIDENTIAL//REL TO UKR", "--dry-run", ok=False
    )
    assert json.loads(r.stdout)["recipients"] == []
    assert _json_error(r)["type"] == "urn:liaison:client:no-recipients"


def test_enrol_says_whose_device_it_is(liaison: Liaison) -> None:
    pid = uid("ukr")
    liaison("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", "UKR",
            "--clearance", "SECRET")  # fmt: skip
    issued = liaison("-p", "root", "admin", "enrol-code", pid).stdout
    assert f"--principal {pid}" in issued  # the hint names the principal
    invitation = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"]
    base = ["enrol", "--server", liaison.server.url, "--code", invitation, "--ca-cert", liaison.server.cert]
    # A profile name that is not the principal: the refusal says the name was taken as principal.
    line = liaison.refused(*base, "--profile", "my-laptop")
    assert "as principal my-laptop, the profile's name: --principal names another" in line
    out = liaison(*base, "--profile", pid).stdout
    assert f"The principal is the profile's name ({pid}): no --principal was given." in out
    other = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"]
    got = liaison("--json", "enrol", "--server", liaison.server.url, "--code", other, "--ca-cert",
                  liaison.server.cert, "--profile", "work", "--principal", pid).json()  # fmt: skip
    assert (got["principal"], got["profile"], got["principal_from"]) == (pid, "work", "option")


# --- a usable inbox (item 10) -------------------------------------------------------------------


def test_inbox_newest_first_with_filters_and_withheld(liaison: Liaison) -> None:
    n = world(liaison)
    side = uid("side")
    liaison("-p", "root", "admin", "channel", "create", side, "--ceiling", UNCLASS)
    liaison("-p", "root", "admin", "channel", "members", side, n["usa"], n["ukr"])
    ids = [send(liaison, n["usa"], n["chan"], SECRET, f"s{i}")["id"] for i in range(3)]
    ids.append(send(liaison, n["usa"], side, UNCLASS, "side")["id"])
    got = liaison("-p", n["ukr"], "--json", "inbox").json()
    assert [m["id"] for m in got] == ids[::-1]
    assert [m["channel"] for m in got] == [side, n["chan"], n["chan"], n["chan"]]
    assert [m["id"] for m in liaison("-p", n["ukr"], "--json", "inbox", "--limit", "2").json()] == ids[:1:-1]
    assert [m["id"] for m in liaison("-p", n["ukr"], "--json", "inbox", "-c", side).json()] == [ids[3]]
    liaison("-p", n["ukr"], "ack", ids[1])
    unread = liaison("-p", n["ukr"], "--json", "inbox", "--unread").json()
    assert [m["id"] for m in unread] == [ids[3], ids[2], ids[0]]
    for since in ("1h", "2026-01-01", "2020-01-01T00:00:00Z"):
        assert len(liaison("-p", n["ukr"], "--json", "inbox", "--since", since).json()) == 4
    assert liaison("-p", n["ukr"], "--json", "inbox", "--since", "2999-01-01T00:00:00+02:00").json() == []
    for bad in ("yesterday", "2026-02-30", "2026-01-01T00:00:00"):
        assert "--since" in liaison.refused("-p", n["ukr"], "inbox", "--since", bad)
    table = liaison("-p", n["ukr"], "inbox", "--limit", "2").stdout
    assert "channel" in table.splitlines()[1] and side in table
    assert "2 of 4 shown, newest first" in table
    # The clearance is lowered: the SECRET messages are withheld, and counted.
    liaison("-p", "root", "admin", "principal", "update", n["ukr"], "--clearance", "CONFIDENTIAL")
    table = liaison("-p", n["ukr"], "inbox").stdout
    assert ids[3] in table and ids[0] not in table
    assert "3 more withheld: this principal may no longer read them" in table
    assert [m["id"] for m in liaison("-p", n["ukr"], "--json", "inbox").json()] == [ids[3]]
    line = liaison.refused("-p", n["ukr"], "read", ids[0])
    assert "may no longer read it" in line


def _denied(liaison: Liaison) -> int:
    return len(liaison("-p", "root", "--json", "audit", "entries", "--type", "access.denied").json())


def test_read_by_prefix_marks_read_and_mistyped_ids_stay_local(liaison: Liaison) -> None:
    n = world(liaison)
    first = send(liaison, n["usa"], n["chan"], SECRET, "first")["id"]
    # Message ids start with their time: send until two share their first 8 characters.
    second = send(liaison, n["usa"], n["chan"], SECRET, "second")["id"]
    while second[:8] != first[:8]:
        first, second = second, send(liaison, n["usa"], n["chan"], SECRET, "again")["id"]
    common = next(first[:i] for i in range(len(first), 0, -1) if second.startswith(first[:i]))
    line = liaison.refused("-p", n["ukr"], "read", common)
    assert f"{common} starts 2 message ids" in line and first in line and second in line
    r = liaison("-p", n["ukr"], "--json", "read", common, ok=False)
    assert _json_error(r)["type"] == "urn:liaison:client:ambiguous-id"

    unique = second[: len(common) + 1]
    got = liaison("-p", n["ukr"], "--json", "read", unique).json()
    assert got["id"] == second and got["acked_at"]
    inbox = {m["id"]: m["read"] for m in liaison("-p", n["ukr"], "--json", "inbox").json()}
    assert inbox[second] is True and inbox[first] is False
    kept = liaison("-p", n["ukr"], "--json", "read", "--keep-unread", first.upper()).json()
    assert kept["id"] == first and kept["acked_at"] is None
    assert first in [m["id"] for m in liaison("-p", n["ukr"], "--json", "inbox", "--unread").json()]

    # A mistyped or foreign id is refused by the client: nothing reaches the server's log.
    before = _denied(liaison)
    typo = second[:-1] + ("0" if second[-1] != "0" else "1")
    for who, wrong in ((n["ukr"], typo), (n["ukr"], "00000000"), (n["fra"], second)):
        line = liaison.refused("-p", who, "read", wrong)
        assert "not sent to this device; nothing was asked of the server" in line
        assert "not sent to this device" in liaison.refused("-p", who, "ack", wrong)
    for bad in ("0000000", "not-an-id!", "1234567g"):
        assert "is not a message id" in liaison.refused("-p", n["ukr"], "read", bad)
    assert _denied(liaison) == before


# --- --json everywhere, --version, help (item 12) ----------------------------------------------


def test_json_errors_carry_the_problem_type(liaison: Liaison) -> None:
    cases: list[tuple[list[str], str, int]] = [
        (["-p", "nobody", "whoami"], "urn:liaison:client:profile-not-found", 1),
        (["send"], "urn:liaison:client:usage", 2),
        (["inbox", "--limit", "x"], "urn:liaison:client:usage", 2),
        (["-p", "root", "read", "deadbeef00"], "urn:liaison:client:not-in-inbox", 1),
        (["-p", "root", "send", "-c", "nope", "-l", UNCLASS], "urn:liaison:problem:not-found", 1),
        (
            [
                "-p",
                "root",
                "admin",
                "principal",
                "create",
                "Bad Id",
                "--name",
                "x",
                "--nation",
                "USA",
                "--clearance",
                "SECRET",
            ],
            "urn:liaison:problem:validation",
            1,
        ),
        (["-p", "root", "unlock", "--idle-timeout", "never"], "urn:liaison:client:agent", 1),
    ]
    for args, problem, code in cases:
        for where in ("before", "after"):
            argv = ["--json", *args] if where == "before" else [*args, "--json"]
            r = liaison(*argv, input="x", ok=False)
            assert r.code == code, (argv, r.stderr)
            assert _json_error(r)["type"] == problem, (argv, r.stderr)
    r = liaison("--json", "-p", "root", "whoami", ok=False, passphrase="wrong passphrase entirely")
    assert r.code == 1 and _json_error(r)["type"] == "urn:liaison:client:wrong-passphrase"
    r = liaison("--json", "-p", "root", "send", "-c", "nope", "-l", UNCLASS, input="x", ok=False)
    err = _json_error(r)
    assert (err["status"], err["rule"]) == (404, "no-channel")


def test_version_help_topics_and_completion(liaison: Liaison) -> None:
    from importlib.metadata import version

    assert liaison("--version").stdout == f"liaison {version('liaison')}\n"
    index = liaison("help").stdout
    for topic in ("labels", "profiles", "agent", "inbox", "watch", "json", "exit-codes", "completion"):
        assert topic in index
        text = liaison("help", topic).stdout
        assert len(text.splitlines()) > 3
    assert liaison("help", "send").stdout == liaison("send", "--help").stdout
    assert "ceiling" in liaison("help", "labels").stdout
    r = liaison("help", "nope", ok=False)
    assert r.code == 2 and "no help topic or command nope" in r.stderr
    env = {**os.environ, "LIAISON_HOME": str(liaison.home)}
    script = subprocess.run(
        [str(BIN / "liaison"), "--show-completion", "bash"],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert b"_LIAISON_COMPLETE=complete_bash" in script.stdout
    completed = subprocess.run(
        [str(BIN / "liaison")],
        capture_output=True,
        env={
            **env,
            "_LIAISON_COMPLETE": "complete_bash",
            "COMP_WORDS": "liaison inbox --un",
            "COMP_CWORD": "2",
        },
        timeout=60,
        check=True,
    )
    assert completed.stdout.split() == [b"--unread"]


@pytest.mark.parametrize(
    "args", [["--bogus"], ["inbox", "--limit", "-3"], ["admin", "device", "list", "extra"]]
)
def test_usage_errors_are_one_line(liaison: Liaison, args: list[str]) -> None:
    r = liaison(*args, ok=False)
    assert r.code == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("liaison: ") and "--help" in lines[0]
