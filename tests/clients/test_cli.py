"""The `liaison` CLI end to end against a live TLS server: every command, success and refusal."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from liaison.crypto import merkle, note
from liaison.crypto.encoding import b64encode
from tests.clients.conftest import BIN, PASSPHRASE, Liaison, Server, uid

STIX_TYPE = "application/stix+json;version=2.1"
STIX = {
    "type": "bundle",
    "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "name": "C2 relay",
            "pattern": "[ipv4-addr:value = '198.51.100.1']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
        }
    ],
}

COMMANDS = [
    [],
    ["enrol"],
    ["whoami"],
    ["channels"],
    ["send"],
    ["inbox"],
    ["read"],
    ["ack"],
    ["watch"],
    ["profiles"],
    ["admin"],
    ["admin", "principal"],
    ["admin", "principal", "create"],
    ["admin", "principal", "update"],
    ["admin", "enrol-code"],
    ["admin", "device"],
    ["admin", "device", "list"],
    ["admin", "device", "revoke"],
    ["admin", "channel"],
    ["admin", "channel", "create"],
    ["admin", "channel", "members"],
    ["audit"],
    ["audit", "checkpoint"],
    ["audit", "verify"],
    ["audit", "prove"],
    ["audit", "entries"],
    ["audit", "witness"],
    ["audit", "witness-key"],
    ["audit", "witnesses"],
    ["audit", "witnesses", "set"],
    ["audit", "witnesses", "show"],
    ["audit", "witnesses", "clear"],
]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "liaison")
def test_every_command_has_help(liaison: Liaison, path: list[str]) -> None:
    r = liaison(*path, "--help")
    assert "Usage:" in r.stdout


def world(liaison: Liaison) -> dict[str, str]:
    """USA and UKR analysts with AIRDEF, a FRA analyst without, a UKR system; one channel."""
    names = {k: uid(k) for k in ("usa", "ukr", "fra", "sys", "chan")}
    liaison.principal(names["usa"], "USA", "SECRET", "--compartment", "AIRDEF")
    liaison.principal(names["ukr"], "UKR", "SECRET", "--compartment", "AIRDEF")
    liaison.principal(names["fra"], "FRA", "SECRET")
    liaison.principal(names["sys"], "UKR", "SECRET", "--kind", "system")
    liaison(
        "-p",
        "root",
        "admin",
        "channel",
        "create",
        names["chan"],
        "--ceiling",
        "SECRET//AIRDEF//REL TO FRA, UKR, USA",
        "--name",
        "Air defence",
    )
    liaison(
        "-p",
        "root",
        "admin",
        "channel",
        "members",
        names["chan"],
        names["usa"],
        names["ukr"],
        names["fra"],
        names["sys"],
    )
    return names


def send(
    liaison: Liaison, profile: str, channel: str, label: str, text: str = "hello", *extra: str
) -> dict[str, Any]:
    return liaison(
        "-p", profile, "--json", "send", "--channel", channel, "--label", label, *extra, input=text
    ).json()


def test_enrol_whoami_channels_profiles(liaison: Liaison) -> None:
    pid = uid("usa")
    enrolled = liaison.principal(pid, "USA", "SECRET")
    assert enrolled["principal"] == pid and enrolled["device"].startswith("d_")
    assert enrolled["log_key"] == liaison.server.init["log_verifier_key"]
    me = liaison("-p", pid, "--json", "whoami").json()
    assert (me["principal"], me["device"]) == (pid, enrolled["device"])
    assert "SECRET" in liaison("whoami", "--profile", pid).stdout  # per-command options too
    assert liaison("whoami", "--json", "-p", pid).json()["principal"] == pid
    assert liaison("-p", pid, "--json", "channels").json() == []
    profiles = liaison("profiles", "--json").json()
    assert {p["name"] for p in profiles} == {"root", pid}


def test_enrol_refusals(liaison: Liaison) -> None:
    pid = uid("ukr")
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        pid,
        "--name",
        "x",
        "--nation",
        "UKR",
        "--clearance",
        "SECRET",
    )
    issued = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()
    code = issued["invitation"]
    args = ["enrol", "--server", liaison.server.url, "--code", code, "--profile", pid]
    # No CA certificate: the self-signed server is not trusted, and nothing is saved.
    assert "TLS certificate" in liaison.refused(*args)
    # A pinned log key that is not the server's (nor the invitation's).
    _, other = note.generate_signer_key("liaison.example/audit")
    line = liaison.refused(*args, "--ca-cert", liaison.server.cert, "--log-key", other)
    assert "not the log key the invitation names" in line
    plain = ["enrol", "--server", liaison.server.url, "--code", issued["code"], "--profile", pid]
    line = liaison.refused(*plain, "--ca-cert", liaison.server.cert, "--log-key", other)
    assert "untrusted-checkpoint" in line
    liaison.enrol(pid, code)
    # A used code.
    line = liaison.refused(
        "enrol",
        "--server",
        liaison.server.url,
        "--code",
        code,
        "--ca-cert",
        liaison.server.cert,
        "--profile",
        uid("other"),
        "--principal",
        pid,
    )
    assert "enrolment-code" in line
    assert "already exists" in liaison.refused(*args, "--ca-cert", liaison.server.cert)


def test_wrong_passphrase(liaison: Liaison) -> None:
    line = liaison.refused("-p", "root", "whoami", passphrase="not the passphrase")
    assert "wrong passphrase" in line


def test_server_down(liaison: Liaison) -> None:
    """A profile whose server does not answer: a one-line reason, exit 1."""
    doc = json.loads((liaison.home / "profiles" / "root.json").read_text())
    doc["profile"]["name"] = "down"
    doc["profile"]["server"] = "https://localhost:9"
    (liaison.home / "profiles" / "down.json").write_text(json.dumps(doc))
    line = liaison.refused("-p", "down", "whoami")
    assert "cannot connect to https://localhost:9" in line


def test_profile_choice(liaison: Liaison) -> None:
    assert liaison("--json", "whoami").json()["principal"] == "root"  # the only profile
    liaison.principal(uid("usa"), "USA", "SECRET")
    assert "several profiles" in liaison.refused("whoami")
    assert "no profile named" in liaison.refused("-p", "nobody", "whoami")


def test_send_dry_run_read_ack_inbox(liaison: Liaison) -> None:
    n = world(liaison)
    label = "SECRET//AIRDEF//REL TO FRA, UKR, USA"
    plan = liaison(
        "-p", n["usa"], "--json", "send", "--channel", n["chan"], "--label", label, "--dry-run"
    ).json()
    assert {r["principal"] for r in plan["recipients"]} == {n["usa"], n["ukr"]}
    assert {(e["principal"], e["reason"]) for e in plan["excluded"]} == {
        (n["fra"], "compartment"),
        (n["sys"], "compartment"),
    }
    table = liaison("-p", n["usa"], "send", "-c", n["chan"], "-l", label, "--dry-run").stdout
    assert "Would be encrypted to" in table and "lacks a compartment" in table

    sent = send(liaison, n["usa"], n["chan"], label, "Twelve tracks inbound.\n")
    assert {"id", "log_index"} <= set(sent) and sent["recipients"] == 2
    inbox = liaison("-p", n["ukr"], "--json", "inbox").json()
    assert [(m["id"], m["sender"], m["label"], m["read"]) for m in inbox] == [
        (sent["id"], n["usa"], label, False)
    ]
    assert {"id", "sender", "label", "created", "read"} <= set(inbox[0])
    assert sent["id"] in liaison("-p", n["ukr"], "inbox").stdout

    out = liaison("-p", n["ukr"], "read", sent["id"]).stdout.splitlines()
    banner = f"==== {label} ===="
    assert out[0] == banner and out[-1] == banner
    assert "│ Twelve tracks inbound." in out  # content lines carry the prefix
    raw = liaison("-p", n["ukr"], "read", "--raw", sent["id"]).stdout
    assert raw == "Twelve tracks inbound.\n"
    assert liaison("-p", n["ukr"], "--json", "read", sent["id"]).json()["text"] == raw

    liaison("-p", n["ukr"], "ack", sent["id"])
    assert liaison("-p", n["ukr"], "--json", "inbox").json()[0]["read"] is True
    assert liaison("-p", n["ukr"], "--json", "inbox", "--unread").json() == []
    # The sender's other devices are recipients too: the sender reads its own message.
    assert "Twelve" in liaison("-p", n["usa"], "read", sent["id"]).stdout

    # France was not a recipient: refused by its own client (the id is not in its inbox), exit 1.
    assert "not sent to this device" in liaison.refused("-p", n["fra"], "read", sent["id"])
    assert "not sent to this device" in liaison.refused("-p", n["fra"], "ack", sent["id"])


def test_send_levels_and_subsets(liaison: Liaison, tmp_path: Path) -> None:
    n = world(liaison)
    unclass = "UNCLASSIFIED//REL TO FRA, UKR, USA"
    plan = liaison("-p", n["ukr"], "--json", "send", "-c", n["chan"], "-l", unclass, "--dry-run").json()
    assert len(plan["recipients"]) == 4 and plan["excluded"] == []
    plan = liaison(
        "-p", n["ukr"], "--json", "send", "-c", n["chan"], "-l", "SECRET//REL TO UKR, USA", "--dry-run"
    ).json()
    assert {(e["principal"], e["reason"]) for e in plan["excluded"]} == {
        (n["fra"], "releasability"),
        (n["sys"], "system-level"),
    }
    # --to names a subset; a file argument instead of stdin.
    f = tmp_path / "note.txt"
    f.write_text("for the system only")
    sent = liaison(
        "-p", n["ukr"], "--json", "send", "-c", n["chan"], "-l", unclass, "--to", n["sys"], str(f)
    ).json()
    assert sent["recipients"] == 1
    assert "for the system only" in liaison("-p", n["sys"], "read", sent["id"]).stdout
    assert "not sent to this device" in liaison.refused("-p", n["fra"], "read", sent["id"])
    # Someone who cannot receive the label cannot be named with --to.
    line = liaison.refused(
        "-p", n["ukr"], "send", "-c", n["chan"], "-l", "SECRET//REL TO UKR, USA", "--to", n["fra"], input="x"
    )
    assert "releasability" in line
    # Writing above one's own access, above the ceiling, bad label text, unknown channel.
    assert "compartment" in liaison.refused(
        "-p", n["fra"], "send", "-c", n["chan"], "-l", "SECRET//AIRDEF//REL TO FRA, UKR, USA", input="x"
    )
    assert "above-ceiling" in liaison.refused(
        "-p", n["usa"], "send", "-c", n["chan"], "-l", "SECRET//REL TO GBR, USA", input="x"
    )
    assert "unknown classification" in liaison.refused(
        "-p", n["usa"], "send", "-c", n["chan"], "-l", "SEKRIT//REL TO USA", input="x"
    )
    assert "not-found" in liaison.refused(
        "-p", n["usa"], "send", "-c", "no-such-channel", "-l", unclass, input="x"
    )


def test_stix_bundles_are_validated(liaison: Liaison) -> None:
    n = world(liaison)
    unclass = "UNCLASSIFIED//REL TO FRA, UKR, USA"
    sent = liaison(
        "-p",
        n["ukr"],
        "--json",
        "send",
        "-c",
        n["chan"],
        "-l",
        unclass,
        "--content-type",
        STIX_TYPE,
        "--to",
        n["sys"],
        input=json.dumps(STIX),
    ).json()
    got = liaison("-p", n["sys"], "--json", "read", sent["id"]).json()
    assert got["content_type"] == STIX_TYPE and json.loads(got["text"]) == STIX
    bad = {**STIX, "objects": [{**STIX["objects"][0], "pattern": "nonsense"}]}
    line = liaison.refused(
        "-p",
        n["ukr"],
        "send",
        "-c",
        n["chan"],
        "-l",
        unclass,
        "--content-type",
        STIX_TYPE,
        input=json.dumps(bad),
    )
    assert "invalid STIX 2.1 bundle" in line
    assert "not JSON" in liaison.refused(
        "-p", n["ukr"], "send", "-c", n["chan"], "-l", unclass, "--content-type", STIX_TYPE, input="{"
    )


def test_tampered_envelope_is_refused(liaison: Liaison, server: Server) -> None:
    """The server rewrites a stored envelope: the reader's client refuses and says why."""
    n = world(liaison)
    label = "SECRET//AIRDEF//REL TO UKR, USA"
    sent = send(liaison, n["usa"], n["chan"], label, "original")
    (stored,) = server.sql("SELECT envelope FROM message WHERE id = ?", sent["id"])[0]
    env = json.loads(stored)
    env["label"]["rel"] = ["FRA", "UKR", "USA"]  # widen the release, keep the signatures
    server.sql("UPDATE message SET envelope = ? WHERE id = ?", json.dumps(env), sent["id"])
    line = liaison.refused("-p", n["ukr"], "read", sent["id"])
    assert "signature-invalid" in line

    sent = send(liaison, n["usa"], n["chan"], label, "original")
    (stored,) = server.sql("SELECT envelope FROM message WHERE id = ?", sent["id"])[0]
    env = json.loads(stored)
    ct = bytearray(base64.urlsafe_b64decode(env["ciphertext"] + "=="))
    ct[-1] ^= 1
    env["ciphertext"] = base64.urlsafe_b64encode(bytes(ct)).rstrip(b"=").decode()
    server.sql("UPDATE message SET envelope = ? WHERE id = ?", json.dumps(env), sent["id"])
    assert "signature-invalid" in liaison.refused("-p", n["ukr"], "read", sent["id"])


def test_revoked_sender_key_is_refused(liaison: Liaison) -> None:
    n = world(liaison)
    sent = send(liaison, n["sys"], n["chan"], "UNCLASSIFIED//REL TO UKR, USA", "from the system")
    device = liaison("-p", n["sys"], "--json", "whoami").json()["device"]
    assert device in liaison("-p", "root", "admin", "device", "list", "--principal", n["sys"]).stdout
    revoked = liaison("-p", "root", "--json", "admin", "device", "revoke", device).json()
    assert revoked["device"] == device and isinstance(revoked["log_index"], int)
    listed = liaison("-p", "root", "--json", "admin", "device", "list", "--principal", n["sys"]).json()
    assert listed[0]["revoked"] is True
    assert "key-revoked" in liaison.refused("-p", n["ukr"], "read", sent["id"])
    assert "device-revoked" in liaison.refused("-p", n["sys"], "inbox")
    plan = liaison(
        "-p", n["ukr"], "--json", "send", "-c", n["chan"], "-l", "UNCLASSIFIED//REL TO UKR, USA", "--dry-run"
    ).json()
    assert {"principal": n["sys"], "reason": "no-device"} in plan["excluded"]


def test_key_without_proof_is_refused(liaison: Liaison, server: Server) -> None:
    """The directory shows a key whose enrolment the log cannot prove: nobody encrypts to it."""
    n = world(liaison)
    label = "SECRET//AIRDEF//REL TO UKR, USA"
    device = liaison("-p", n["ukr"], "--json", "whoami").json()["device"]
    (index,) = server.sql("SELECT enrol_index FROM device WHERE id = ?", device)[0]
    server.sql("UPDATE device SET enrol_index = NULL WHERE id = ?", device)
    try:
        line = liaison.refused("-p", n["usa"], "send", "-c", n["chan"], "-l", label, "--dry-run")
        assert "proof-missing" in line and device in line
        assert "proof-missing" in liaison.refused(
            "-p", n["usa"], "send", "-c", n["chan"], "-l", label, input="x"
        )
        # Pointing the proof at another entry is caught too.
        server.sql("UPDATE device SET enrol_index = ? WHERE id = ?", index - 1, device)
        assert "proof-invalid" in liaison.refused(
            "-p", n["usa"], "send", "-c", n["chan"], "-l", label, input="x"
        )
    finally:
        server.sql("UPDATE device SET enrol_index = ? WHERE id = ?", index, device)
    send(liaison, n["usa"], n["chan"], label)


def _signer(server: Server) -> note.Signer:
    return note.parse_signer_key((server.data / "log-signer.key").read_text().strip())


def test_checkpoint_inconsistent_with_saved_one(liaison: Liaison, server: Server) -> None:
    """The log key signs a tree that does not extend the one this client saw: refused."""
    state = liaison.home / "state" / "root" / "log.json"
    liaison("-p", "root", "audit", "checkpoint")
    saved = json.loads(state.read_text())
    cp = note.parse_checkpoint(note.open_note(saved["checkpoint"].encode(), [_signer(server).verifier]).text)
    forged = note.Checkpoint(cp.origin, cp.size - 1, merkle.leaf_hash(b"another history"))
    saved["checkpoint"] = note.sign_checkpoint(forged, _signer(server)).decode()
    state.write_text(json.dumps(saved))
    for args in (["audit", "checkpoint"], ["audit", "verify"]):
        line = liaison.refused("-p", "root", *args)
        assert "inconsistent" in line, (args, line)


def test_checkpoint_from_another_key(liaison: Liaison) -> None:
    state = liaison.home / "state" / "root" / "log.json"
    saved = json.loads(state.read_text())
    saved["log_key"] = note.generate_signer_key("liaison.example/audit")[1]
    saved.pop("checkpoint")
    state.write_text(json.dumps(saved))
    assert "untrusted-checkpoint" in liaison.refused("-p", "root", "audit", "checkpoint")


def test_admin_principal_update_and_codes(liaison: Liaison) -> None:
    pid = uid("fra")
    created = liaison(
        "-p",
        "root",
        "--json",
        "admin",
        "principal",
        "create",
        pid,
        "--name",
        "Analyst",
        "--nation",
        "fra",
        "--clearance",
        "confidential",
        "--compartment",
        "cyber",
        "--role",
        "analyst",
    ).json()
    assert (created["nation"], created["clearance"], created["compartments"]) == (
        "FRA",
        "CONFIDENTIAL",
        ["CYBER"],
    )
    code = liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()
    assert set(code) >= {"code"} and code["principal"] == pid
    liaison.enrol(pid, code["code"])
    updated = liaison(
        "-p",
        "root",
        "--json",
        "admin",
        "principal",
        "update",
        pid,
        "--clearance",
        "SECRET",
        "--compartment",
        "AIRDEF",
    ).json()
    assert (updated["clearance"], updated["compartments"]) == ("SECRET", ["AIRDEF"])
    assert (
        "Updated"
        in liaison("-p", "root", "admin", "principal", "update", pid, "--status", "suspended").stdout
    )
    assert "principal-suspended" in liaison.refused("-p", pid, "whoami")
    liaison("-p", "root", "admin", "principal", "update", pid, "--status", "active")
    assert liaison("-p", pid, "--json", "whoami").json()["clearance"] == "SECRET"
    # Non-admins are refused; a nation admin stays in its nation.
    assert "not-admin" in liaison.refused("-p", pid, "admin", "enrol-code", pid)
    admin = uid("fra-admin")
    liaison.principal(admin, "FRA", "SECRET", "--role", "admin")
    assert "other-nation" in liaison.refused(
        "-p",
        admin,
        "admin",
        "principal",
        "create",
        uid("usa"),
        "--name",
        "x",
        "--nation",
        "USA",
        "--clearance",
        "SECRET",
    )
    assert (
        "--kind"
        in liaison(
            "-p",
            admin,
            "admin",
            "principal",
            "create",
            "x",
            "--name",
            "x",
            "--nation",
            "FRA",
            "--clearance",
            "SECRET",
            "--kind",
            "robot",
            ok=False,
        ).stderr
    )


def test_channels_admin(liaison: Liaison) -> None:
    n = world(liaison)
    chans = liaison("-p", n["usa"], "--json", "channels").json()
    assert [c["id"] for c in chans] == [n["chan"]]
    assert chans[0]["ceiling_text"] == "SECRET//AIRDEF//REL TO FRA, UKR, USA"
    assert "conflict" in liaison.refused(
        "-p", "root", "admin", "channel", "create", n["chan"], "--ceiling", "UNCLASSIFIED"
    )
    assert "not-found" in liaison.refused(
        "-p", "root", "admin", "channel", "members", n["chan"], "nobody-here"
    )
    body = liaison("-p", "root", "--json", "admin", "channel", "members", n["chan"], n["usa"]).json()
    assert body["members"] == [n["usa"]]
    assert liaison("-p", n["ukr"], "--json", "channels").json() == []


def test_audit_commands(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    sent = send(liaison, n["usa"], n["chan"], "SECRET//AIRDEF//REL TO UKR, USA")
    cp = liaison("-p", "root", "--json", "audit", "checkpoint").json()
    assert cp["origin"] == server.init["origin"] and cp["size"] > sent["log_index"]
    v = liaison("-p", "root", "--json", "audit", "verify").json()
    assert v["size"] >= cp["size"] and v["entries"] == v["size"]
    assert v["previous_size"] == cp["size"] and v["counts"]["message.accepted"] >= 1
    # Root's auditor opens every disclosure: every statement's authority is replayed (9.10).
    assert v["statements"] >= 10 and v["authority_checked"] == v["statements"]
    assert v["authority_sealed"] == 0
    out = liaison("-p", "root", "audit", "verify").stdout
    assert "Verified" in out and f"the authority of {v['statements']}" in out
    proof = liaison("-p", "root", "--json", "audit", "prove", sent["id"]).json()
    assert proof["log_index"] == sent["log_index"] and proof["entry"]["id"] == sent["id"]
    assert proof["envelope_checked"] is False  # root is no recipient: the entry alone
    entries = liaison("-p", "root", "--json", "audit", "entries", "--type", "message.accepted").json()
    assert sent["id"] in {e["fields"]["id"] for e in entries}
    assert all(e["type"] == "message.accepted" for e in entries)
    device = liaison("-p", n["usa"], "--json", "whoami").json()["device"]
    mine = liaison("-p", "root", "--json", "audit", "entries", "--actor", device).json()
    assert mine and all(e["actor"] == device for e in mine)
    assert (
        "message.accepted"
        in liaison("-p", "root", "audit", "entries", "--since", "2000-01-01T00:00:00Z").stdout
    )
    # Analysts verify the hash tiles (public) but may not read entries or proofs.
    assert "not-auditor" in liaison.refused("-p", n["usa"], "audit", "entries")
    assert "not-auditor" in liaison.refused("-p", n["usa"], "audit", "verify")
    assert liaison("-p", n["usa"], "--json", "audit", "verify", "--no-entries").json()["entries"] == 0
    # A message read by an admin (who may read the audit API) is proven in the log.
    got = liaison(
        "-p", "root", "admin", "principal", "update", n["usa"], "--role", "analyst", "--role", "auditor"
    )
    assert got.code == 0
    assert liaison("-p", n["usa"], "--json", "read", sent["id"]).json()["log_proven"] is True
    # A USA auditor opens USA's principals only: what a UKR admin granted is counted sealed.
    ukr_admin = uid("ukr-admin")
    liaison.principal(ukr_admin, "UKR", "SECRET", "--role", "admin")
    liaison.principal(uid("ukr"), "UKR", "SECRET", admin=ukr_admin)
    mine = liaison("-p", n["usa"], "--json", "audit", "verify").json()
    assert mine["authority_checked"] > 0 and mine["authority_sealed"] > 0
    assert mine["authority_checked"] + mine["authority_sealed"] == mine["statements"]
    assert mine["counts"]["audit.disclosed"] >= 1
    # Entries v2 (protocol 10.3): the USA auditor opens USA's personnel fields and the messages
    # it dominates; other nations' records stay sealed, and the table says how many.
    listed = liaison("-p", n["usa"], "--json", "audit", "entries").json()
    created = [e for e in listed if e["type"] == "principal.created"]
    assert any(e["sealed"] for e in created) and any(not e["sealed"] for e in created)
    assert "sealed to this profile" in liaison("-p", n["usa"], "audit", "entries").stderr
    assert not any(e["sealed"] for e in liaison("-p", "root", "--json", "audit", "entries").json())


def test_audit_witness(liaison: Liaison, server: Server) -> None:
    auditor = uid("auditor")
    liaison.principal(auditor, "FRA", "SECRET", "--role", "auditor")
    assert "no witness key" in liaison.refused("-p", auditor, "audit", "witness")
    key = liaison("-p", auditor, "--json", "audit", "witness-key").json()["verifier_key"]
    assert key.startswith(f"{auditor}.witness+")
    assert liaison("-p", auditor, "--json", "audit", "witness-key").json()["verifier_key"] == key
    assert "unknown-witness" in liaison.refused("-p", auditor, "audit", "witness")
    server.witness_keys.append(key)
    server.restart()
    out = liaison("-p", auditor, "--json", "audit", "witness").json()
    assert out["cosignature"].startswith(f"\u2014 {auditor}.witness ")
    # Only pinned witnesses' cosignatures are shown or counted (tests/clients/test_witness_policy.py).
    liaison("-p", auditor, "audit", "witnesses", "set", "--key", key, "--k", "1")
    cp = liaison("-p", auditor, "--json", "audit", "checkpoint", "--cosigned", "1").json()
    assert f"{auditor}.witness" in cp["cosigners"] and cp["size"] == out["size"]
    assert "wrong passphrase" in liaison.refused("-p", auditor, "audit", "witness", passphrase="wrong")


def test_console_script_subprocess(liaison: Liaison, server: Server) -> None:
    """The installed `liaison` entry point: JSON on stdout, a one-line reason and exit 1."""
    env = {**os.environ, "LIAISON_HOME": str(liaison.home), "LIAISON_PASSPHRASE": PASSPHRASE}
    r = subprocess.run(
        [str(BIN / "liaison"), "--json", "whoami"], capture_output=True, env=env, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["principal"] == "root"
    r = subprocess.run(
        [str(BIN / "liaison"), "read", "01a21227-0000-7000-8000-000000000000"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().count("\n") == 1 and "not sent to this device" in r.stderr.decode()
    r = subprocess.run([str(BIN / "liaison"), "send"], capture_output=True, env=env, timeout=60, check=False)
    assert r.returncode == 2


def test_watch_streams_new_messages(liaison: Liaison) -> None:
    n = world(liaison)
    env = {**os.environ, "LIAISON_HOME": str(liaison.home), "LIAISON_PASSPHRASE": PASSPHRASE}
    proc = subprocess.Popen(
        [str(BIN / "liaison"), "-p", n["ukr"], "--json", "watch", "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        import time

        sent: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            # The stream only carries messages sent after it connected: keep sending until one
            # is seen (the first may beat the connection).
            sent = send(liaison, n["usa"], n["chan"], "UNCLASSIFIED//REL TO UKR, USA")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    event = json.loads(out.decode().splitlines()[0])
    assert event["type"] == "message" and event["channel"] == n["chan"]
    assert isinstance(event["log_index"], int) and sent


def test_json_outputs_are_json(liaison: Liaison) -> None:
    for args in (["whoami"], ["channels"], ["inbox"], ["audit", "checkpoint"], ["admin", "device", "list"]):
        json.loads(liaison("-p", "root", "--json", *args).stdout)


def test_b64_of_tile_hash_is_std(liaison: Liaison) -> None:
    cp = liaison("-p", "root", "--json", "audit", "checkpoint").json()
    assert b64encode(base64.b64decode(cp["root_hash"])) == cp["root_hash"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
