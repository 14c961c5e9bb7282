"""The admin surface through the real `liaison` CLI against a live server (issue 11, item 5):
principals listed and searched, single channel members, enrolment codes listed and
cancelled, an analyst's own devices; refusals as one line and exit 1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from liaison.clients import _admin, _cli_admin
from tests.clients.conftest import BIN, PASSPHRASE, Liaison, uid
from tests.clients.test_sync_parity import differences
from tests.clients.test_terminal import violations


@pytest.mark.parametrize(
    "path",
    [
        ["devices"],
        ["admin", "principal", "list"],
        ["admin", "code"],
        ["admin", "code", "list"],
        ["admin", "code", "cancel"],
        ["admin", "channel", "add"],
        ["admin", "channel", "remove"],
        ["audit", "trust"],
        ["audit", "evidence"],
        ["audit", "evidence", "verify"],
    ],
    ids=" ".join,
)
def test_every_new_command_has_help(liaison: Liaison, path: list[str]) -> None:
    assert "Usage:" in liaison(*path, "--help").stdout


def test_principals_are_listed_and_searched(liaison: Liaison) -> None:
    tag = uid("ls")
    liaison.principal(f"{tag}-usa", "USA", "SECRET")
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        f"{tag}-ukr",
        "--name",
        f"Olena {tag}",
        "--nation",
        "UKR",
        "--clearance",
        "CONFIDENTIAL",
        "--role",
        "analyst",
        "--role",
        "auditor",
    )
    liaison("-p", "root", "admin", "principal", "update", f"{tag}-usa", "--status", "suspended")

    def ids(*args: str) -> list[str]:
        return [p["id"] for p in liaison("-p", "root", "--json", "admin", "principal", "list", *args).json()]

    assert ids("--search", tag) == [f"{tag}-ukr", f"{tag}-usa"]
    assert ids("--search", tag, "--nation", "ukr") == [f"{tag}-ukr"]
    assert ids("--search", tag, "--role", "auditor") == [f"{tag}-ukr"]
    assert ids("--search", tag, "--status", "suspended") == [f"{tag}-usa"]
    assert ids("--search", tag, "--limit", "1") == [f"{tag}-ukr"]
    assert ids("-q", f"OLENA {tag}") == [f"{tag}-ukr"]  # a display name's prefix, any case
    table = liaison("-p", "root", "admin", "principal", "list", "--search", tag).stdout
    assert f"Olena {tag}" in table and "suspended" in table and "analyst, auditor" in table
    assert "validation" in liaison.refused("-p", "root", "admin", "principal", "list", "--role", "king")
    assert liaison("-p", "root", "admin", "principal", "list", "--limit", "0", ok=False).code == 2


def test_single_channel_members_and_their_authority(liaison: Liaison) -> None:
    tag = uid("mb")
    liaison.principal(f"{tag}-admin", "USA", "SECRET", "--role", "admin")
    liaison.principal(f"{tag}-a", "USA", "SECRET")
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        f"{tag}-ukr",
        "--name",
        "u",
        "--nation",
        "UKR",
        "--clearance",
        "SECRET",
    )
    channel = f"{tag}-ops"
    liaison("-p", "root", "admin", "channel", "create", channel, "--ceiling", "SECRET//REL TO UKR, USA")
    body = liaison(
        "-p", "root", "--json", "admin", "channel", "add", channel, f"{tag}-a", f"{tag}-ukr"
    ).json()
    assert body["members"] == sorted([f"{tag}-a", f"{tag}-ukr"])
    out = liaison("-p", "root", "admin", "channel", "remove", channel, f"{tag}-ukr").stdout
    assert f"Channel {channel} members: {tag}-a." in out
    entries = liaison("-p", "root", "--json", "audit", "entries", "--type", "channel.members").json()
    last = [e for e in entries if e["fields"]["channel"] == channel][-1]
    assert last["fields"]["removed"] == [f"{tag}-ukr"] and last["fields"]["members"] == [f"{tag}-a"]
    # A USA admin dominating the ceiling adds its own nation, never another's.
    liaison("-p", f"{tag}-admin", "admin", "channel", "add", channel, f"{tag}-admin")
    line = liaison.refused("-p", f"{tag}-admin", "admin", "channel", "add", channel, f"{tag}-ukr")
    assert "other-nation" in line
    line = liaison.refused("-p", f"{tag}-a", "admin", "channel", "remove", channel, f"{tag}-admin")
    assert "admin" in line
    assert "no principal" in liaison.refused("-p", "root", "admin", "channel", "add", channel, f"{tag}-none")
    assert liaison("-p", "root", "admin", "channel", "add", channel, ok=False).code == 2


def test_codes_are_listed_and_cancelled(liaison: Liaison) -> None:
    tag = uid("cd")
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        tag,
        "--name",
        tag,
        "--nation",
        "USA",
        "--clearance",
        "SECRET",
    )
    issued = liaison("-p", "root", "--json", "admin", "enrol-code", tag).json()
    listed = liaison("-p", "root", "--json", "admin", "code", "list", "--principal", tag).json()
    assert [(c["id"], c["status"]) for c in listed] == [(issued["id"], "pending")]
    table = liaison("-p", "root", "admin", "code", "list", "--principal", tag).stdout
    assert issued["id"] in table and issued["code"] not in table
    assert issued["code"].replace("-", "") not in str(listed)
    out = liaison("-p", "root", "admin", "code", "cancel", issued["id"]).stdout
    assert f"Cancelled enrolment code {issued['id']} for {tag}" in out
    line = liaison.refused(
        "enrol",
        "--server",
        liaison.server.url,
        "--code",
        issued["invitation"],
        "--ca-cert",
        liaison.server.cert,
        "--profile",
        tag,
    )
    assert "cancelled" in line
    listed = liaison(
        "-p", "root", "--json", "admin", "code", "list", "--principal", tag, "--status", "cancelled"
    ).json()
    assert [c["id"] for c in listed] == [issued["id"]]
    # An analyst can neither list nor cancel codes.
    liaison.principal(f"{tag}-a", "USA", "SECRET")
    other = liaison("-p", "root", "--json", "admin", "enrol-code", tag).json()
    assert "not-admin" in liaison.refused("-p", f"{tag}-a", "admin", "code", "list")
    assert "not-admin" in liaison.refused("-p", f"{tag}-a", "admin", "code", "cancel", other["id"])
    assert "validation" in liaison.refused("-p", "root", "admin", "code", "cancel", "not-an-id")
    assert "validation" in liaison.refused("-p", "root", "admin", "code", "list", "--status", "lost")


def test_an_analyst_lists_its_own_devices(liaison: Liaison, tmp_path: Path) -> None:
    tag = uid("dv")
    first = liaison.principal(tag, "USA", "SECRET")
    invitation = liaison("-p", "root", "--json", "admin", "enrol-code", tag).json()["invitation"]
    second = liaison.enrol(f"{tag}-laptop", invitation, principal=tag)
    found = liaison("-p", tag, "--json", "devices").json()
    assert {d["device"]: d["current"] for d in found} == {first["device"]: True, second["device"]: False}
    # The real console script, as a user runs it.
    env = {**os.environ, "LIAISON_HOME": str(liaison.home), "LIAISON_PASSPHRASE": PASSPHRASE}
    r = subprocess.run(
        [str(BIN / "liaison"), "-p", f"{tag}-laptop", "devices"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    marked = [line for line in r.stdout.splitlines() if "*" in line]
    assert len(marked) == 1 and second["device"] in marked[0]
    assert "Traceback" not in r.stderr


def test_the_admin_commands_print_only_through_the_sanitiser() -> None:
    assert violations(Path(_cli_admin.__file__).read_text()) == []


def test_the_admin_mixins_are_twins() -> None:
    assert differences(_admin.AdminMethods, _admin.AdminSync) == []


def test_a_nation_admin_monitors_its_whole_range(liaison: Liaison) -> None:
    """`liaison admin monitor` (protocol 9.10): the nation's range proven complete, and each
    device the admin had not seen there before listed with who invited it."""
    tag = uid("mon")
    admin = f"{tag}-admin"
    liaison.principal(admin, "GBR", "SECRET", "--role", "admin")
    first = liaison("-p", admin, "--json", "admin", "monitor").json()
    assert first["nation"] == "GBR" and first["principals"] >= 1 and first["devices"] >= 1
    mine = liaison("-p", admin, "--json", "whoami").json()["device"]
    assert mine in {x["device"] for x in first["new_devices"]}
    again = liaison("-p", admin, "--json", "admin", "monitor").json()
    assert again["new_devices"] == [] and again["tree_size"] >= first["tree_size"]
    # A device enrolled since is reported, with the device that signed its invitation.
    analyst = f"{tag}-analyst"
    enrolled = liaison.principal(analyst, "GBR", "SECRET")
    root = liaison("-p", "root", "--json", "whoami").json()["device"]
    found = liaison("-p", admin, "--json", "admin", "monitor").json()["new_devices"]
    assert found == [
        {
            "device": enrolled["device"],
            "principal": analyst,
            "invited_by": root,
            "version": found[0]["version"],
        }
    ]
    shown = liaison("-p", admin, "admin", "monitor").stdout
    assert "range proven complete" in shown and "No device new" in shown
    # Another nation's range is not an analyst's, nor another nation's admin's, to see.
    assert "other-nation" in liaison.refused("-p", analyst, "admin", "monitor")
    assert "other-nation" in liaison.refused("-p", admin, "admin", "monitor", "--nation", "FRA")
