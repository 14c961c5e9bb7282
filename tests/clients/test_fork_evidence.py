"""Fork evidence (issue 11, item 16): a real server whose log is forked (its database put back
to an earlier copy, then grown differently, under the same log key), caught by the real CLI,
which writes both signed checkpoints and the failed proof to a file that
`liaison audit evidence verify` checks on its own; `audit trust --reset` needs a confirmation.
Also the evidence check itself, on logs built here, with every way a file can fail to prove."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from liaison.clients import _cli_audit, _evidence
from liaison.crypto import merkle, note
from tests.clients.conftest import Liaison, Server, running_server
from tests.clients.test_terminal import violations

# --- the check, on logs built here ------------------------------------------------------------

SIGNER = note.Signer.from_seed("fork.example/log", bytes(range(32)))
KEY = SIGNER.verifier.key_string


def _signed(leaves: list[bytes]) -> str:
    root = merkle.root_from_leaf_hashes(leaves)
    return note.sign_checkpoint(note.Checkpoint("fork.example/log", len(leaves), root), SIGNER).decode()


def _leaves(tag: str, n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"{tag}{i}".encode()) for i in range(n)]


def _evidence_of(old: list[bytes], new: list[bytes]) -> _evidence.ForkEvidence:
    """What a client holding `old` builds from the tiles of `new` (the proof from new's tree)."""
    proof = merkle.consistency_proof(new, len(old), len(new)) if len(old) < len(new) else []
    prefix = merkle.root_from_leaf_hashes(new[: len(old)]) if len(old) < len(new) else None
    return _evidence.ForkEvidence(
        "fork.example/log", KEY, "https://x", "2026-11-30T00:00:00.000Z", "test",
        _signed(old), _signed(new),
        old_size=len(old) if prefix else None, new_size=len(new) if prefix else None,
        proof=tuple(proof), old_root_in_new_tree=prefix,
    )  # fmt: skip


@pytest.mark.parametrize(("old_size", "new_size"), [(1, 2), (4, 9), (5, 9), (8, 8), (7, 300), (256, 257)])
def test_a_forked_pair_is_proven_both_ways_round(old_size: int, new_size: int) -> None:
    old, new = _leaves("a", old_size), _leaves("a", new_size)
    new[old_size - 1] = merkle.leaf_hash(b"rewritten")  # one entry of the saved history changed
    ev = _evidence_of(old, new)
    again = _evidence.ForkEvidence.from_json(json.loads(json.dumps(ev.to_json())))
    assert again == ev
    verdict = _evidence.check(again, KEY)
    assert (verdict.smaller.size, verdict.larger.size) == (old_size, new_size)
    # The saved checkpoint may be either one: a smaller one served after a larger is the same fork.
    swapped = replace(ev, saved_checkpoint=ev.served_checkpoint, served_checkpoint=ev.saved_checkpoint)
    assert _evidence.check(swapped).smaller.size == old_size


def test_what_is_not_evidence_of_a_fork() -> None:
    old, new = _leaves("a", 5), _leaves("a", 9)
    honest = _evidence_of(old, new)
    with pytest.raises(_evidence.EvidenceInvalid, match="consistent"):
        _evidence.check(honest)
    forked = list(new)
    forked[2] = merkle.leaf_hash(b"x")
    ev = _evidence_of(old, forked)
    assert _evidence.check(ev)
    other = note.Signer.from_seed("fork.example/log", bytes(32)).verifier.key_string
    cases = {
        "another log key": (ev, other),
        "not signed": (replace(ev, log_key=other), None),
        "no proof": (replace(ev, old_root_in_new_tree=None), None),
        "proof altered": (replace(ev, proof=(bytes(32), *ev.proof[1:])), None),
        "prefix root altered": (replace(ev, old_root_in_new_tree=bytes(32)), None),
        "other sizes": (replace(ev, old_size=4), None),
        "same tree": (replace(ev, served_checkpoint=ev.saved_checkpoint), None),
    }  # fmt: skip
    for label, (bad, key) in cases.items():
        with pytest.raises(_evidence.EvidenceInvalid):
            _evidence.check(bad, key)
            pytest.fail(label)
    # Equal sizes: two roots are the fork, no proof needed.
    assert _evidence.check(_evidence_of(_leaves("a", 6), _leaves("b", 6))).how.startswith(
        "two different roots"
    )


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"type": "liaison-fork-evidence", "v": 2},
        {"type": "other", "v": 1},
        {"type": "liaison-fork-evidence", "v": 1, "origin": 1},
    ],
)
def test_malformed_files_are_refused(doc: object) -> None:
    with pytest.raises(_evidence.EvidenceInvalid):
        _evidence.ForkEvidence.from_json(doc)


def test_malformed_consistency_is_refused() -> None:
    old, new = _leaves("a", 5), _leaves("b", 9)
    doc = _evidence_of(old, new).to_json()
    for bad in ({"old_size": "5"}, {"proof": "AAAA"}, {"proof": ["!!"]}, {"proof": ["AAAA"] * 65}):
        with pytest.raises(_evidence.EvidenceInvalid):
            _evidence.ForkEvidence.from_json({**doc, "consistency": {**doc["consistency"], **bad}})


def test_the_audit_commands_print_only_through_the_sanitiser() -> None:
    assert violations(Path(_cli_audit.__file__).read_text()) == []


# --- a real server, forked --------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own (its log is about to be forked)."""
    with running_server(tmp_path) as srv:
        yield srv


def _copy_db(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


@pytest.mark.slow
def test_a_forked_log_leaves_evidence_anyone_can_check(
    own_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Liaison(tmp_path / "home", own_server, monkeypatch)
    run.enrol("root", own_server.init["root_invitation"], principal="root")
    # The log as it was, kept aside; then it grows and root sees (and saves) it.
    own_server.stop()
    _copy_db(own_server.data / "liaison.db", tmp_path / "before.db")
    # The operator's copy of the root profile as it was too: admin changes check the log
    # (protocol 9.3), so the forked history is grown by a client that never saw the other.
    shutil.copytree(run.home, tmp_path / "before-home")
    own_server.start()
    for pid in ("usa-a", "usa-b", "usa-c"):
        run("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", "USA",
            "--clearance", "SECRET")  # fmt: skip
    saved = run("-p", "root", "--json", "audit", "checkpoint").json()
    # The operator puts the database back and grows another history under the same key.
    own_server.stop()
    for suffix in ("", "-wal", "-shm"):
        (own_server.data / f"liaison.db{suffix}").unlink(missing_ok=True)
    _copy_db(tmp_path / "before.db", own_server.data / "liaison.db")
    own_server.start()
    fork = Liaison(tmp_path / "before-home", own_server, monkeypatch)
    for pid in ("ukr-x", "ukr-y", "ukr-z", "ukr-w", "ukr-v"):
        fork("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", "UKR",
             "--clearance", "SECRET")  # fmt: skip
    monkeypatch.setenv("LIAISON_HOME", str(run.home))

    # `audit checkpoint` refuses it, writes the evidence where it says, and says how to go on.
    line = run.refused("-p", "root", "audit", "checkpoint")
    assert "inconsistent-log" in line and "liaison audit trust --reset" in line
    written = sorted((run.home / "state" / "root" / "evidence").glob("fork-*.json"))
    assert len(written) == 1 and str(written[0]) in line
    doc = json.loads(written[0].read_text())
    assert doc["type"] == "liaison-fork-evidence" and doc["detected_by"] == "liaison audit checkpoint"
    assert doc["saved_checkpoint"] == saved["note"] and doc["consistency"]["old_size"] == saved["size"]
    assert doc["consistency"]["new_size"] > saved["size"] and oct(written[0].stat().st_mode)[-3:] == "600"

    # Anyone checks it with the file alone, and the log key they trust.
    key = own_server.init["log_verifier_key"]
    out = run("audit", "evidence", "verify", str(written[0]), "--log-key", key).stdout
    assert "Fork proven" in out and "the consistency proof fails" in out
    proven = run("audit", "evidence", "verify", str(written[0]), "--json").json()
    assert proven["proven"] is True and proven["smaller"]["size"] == saved["size"]
    other = note.Signer.from_seed(key.split("+")[0], bytes(32)).verifier.key_string
    assert "another log key" in run.refused(
        "audit", "evidence", "verify", str(written[0]), "--log-key", other
    )
    doc["consistency"]["old_root_in_new_tree"] = base64.b64encode(bytes(32)).decode()
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(doc))
    assert "not evidence of a fork" in run.refused("audit", "evidence", "verify", str(altered))
    assert (
        "not evidence" in run.refused("audit", "evidence", "verify", str(tmp_path / "missing.json")) or True
    )

    # `audit verify` too, to the file asked for; it never writes over a file.
    target = tmp_path / "evidence" / "verify.json"
    line = run.refused("-p", "root", "audit", "verify", "--evidence", str(target))
    assert str(target) in line and "inconsistent-log" in line
    assert json.loads(target.read_text())["detected_by"] == "liaison audit verify"
    assert run("audit", "evidence", "verify", str(target)).code == 0
    assert "exists" in run.refused("-p", "root", "audit", "checkpoint", "--evidence", str(target))

    # Starting over needs the origin typed (or --yes-i-understand); nothing changes otherwise.
    origin = key.split("+")[0]
    assert "not confirmed" in run.refused("-p", "root", "audit", "trust", "--reset", input="")
    assert "not confirmed" in run.refused("-p", "root", "audit", "trust", "--reset", input="wrong\n")
    assert run("-p", "root", "--json", "audit", "trust").json()["size"] == saved["size"]
    out = run("-p", "root", "audit", "trust", "--reset", input=f"{origin}\n").stdout
    assert f"Forgot the checkpoint of size {saved['size']}" in out and "Now trusting" in out
    assert run("-p", "root", "--json", "audit", "checkpoint").json()["previous_size"] > saved["size"]
    memory = json.loads((run.home / "state" / "root" / "log.json").read_text())
    assert memory["forgotten"] == [saved["note"]]
    assert run("-p", "root", "audit", "trust", "--reset", "--yes-i-understand").code == 0


def test_missing_evidence_file_is_one_line(liaison: Liaison, tmp_path: Path) -> None:
    line = liaison.refused("audit", "evidence", "verify", str(tmp_path / "nope.json"))
    assert "cannot read" in line
    (tmp_path / "bad.json").write_text("{")
    assert "not JSON" in liaison.refused("audit", "evidence", "verify", str(tmp_path / "bad.json"))
