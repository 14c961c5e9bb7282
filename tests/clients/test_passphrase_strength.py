"""Weak key-store passphrases are refused when a profile is made (hardening issue, finding 15).

A one-character passphrase used to be accepted: the profile's private keys were then one
Argon2id guess away from anyone who copied the file. Through the real CLI and server.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from liaison.clients import KeyStore, enrol
from liaison.crypto.passphrase import seal_with_passphrase
from tests.clients.conftest import FAST_KDF, PASSPHRASE, Liaison, uid


def new_code(liaison: Liaison, nation: str = "UKR") -> tuple[str, str]:
    pid = uid("weak")
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
        nation,
        "--clearance",
        "SECRET",
    )
    return pid, liaison("-p", "root", "--json", "admin", "enrol-code", pid).json()["invitation"]


def enrol_args(liaison: Liaison, pid: str, code: str) -> list[str]:
    return [
        "enrol",
        "--server",
        liaison.server.url,
        "--code",
        code,
        "--ca-cert",
        liaison.server.cert,
        "--profile",
        pid,
    ]


@pytest.mark.parametrize("weak", ["x", "password1", "Tr0ub4dor&3", "liaison liaison"])
def test_enrol_refuses_a_weak_passphrase(liaison: Liaison, weak: str) -> None:
    pid, code = new_code(liaison)
    line = liaison.refused(*enrol_args(liaison, pid, code), passphrase=weak)
    assert line.startswith("liaison: passphrase too weak: "), line
    assert "offline" in line and "4 random words" in line
    assert len(weak) < 3 or weak not in line  # never echoed
    assert not (liaison.home / "profiles" / f"{pid}.json").exists()
    # Refused before the one-time code was spent: the same code still enrols, strongly.
    assert liaison.enrol(pid, code)["principal"] == pid


def test_the_passphrase_may_not_be_made_of_the_profile(liaison: Liaison) -> None:
    pid, code = new_code(liaison)
    line = liaison.refused(*enrol_args(liaison, pid, code), passphrase=f"{pid} {pid}")
    assert "passphrase too weak" in line


def test_library_enrol_refuses_before_spending_the_code(liaison: Liaison) -> None:
    from liaison.clients.keystore import WeakPassphrase

    pid, code = new_code(liaison)
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])

    def go(passphrase: str) -> object:
        return asyncio.run(
            enrol(
                liaison.server.url,
                code,
                principal=pid,
                passphrase=passphrase,
                profile=pid,
                store=store,
                ca_cert=liaison.server.cert,
            )
        )

    with pytest.raises(WeakPassphrase, match="passphrase too weak"):
        go("123456")
    assert not store.exists(pid)
    go("quiet maple orbit lantern")
    assert store.exists(pid)


def test_opening_an_existing_profile_is_not_refused(liaison: Liaison) -> None:
    """The rule applies when a passphrase is chosen, never when one is used: a profile sealed
    under a weak passphrase before the rule existed still opens (and can be re-enrolled)."""
    path = liaison.home / "profiles" / "root.json"
    doc = json.loads(path.read_text())
    _, keys = KeyStore(liaison.home).load("root", PASSPHRASE)
    doc["keys"] = json.loads(
        seal_with_passphrase(keys.to_bytes(), "x", opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    )
    path.write_text(json.dumps(doc))
    assert liaison("-p", "root", "--json", "whoami", passphrase="x").json()["principal"] == "root"
    assert "wrong passphrase" in liaison.refused("-p", "root", "whoami", passphrase="y")
