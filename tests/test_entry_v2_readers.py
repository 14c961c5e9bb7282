"""Readers of entries v2 (protocol 10), ahead of the server writing them: receipts and device
records carry an opening; a receipt whose entry is v2 is verified from what its opening opens,
and refused when the opening does not open or leaves out what the check needs; the directory
replay reads a v2 map head's clear fields; a v1 entry with an opening is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from liaison.crypto import merkle, note, transparency
from liaison.crypto._primitives import sha256
from liaison.crypto.directory_replay import DirectoryReplay
from liaison.crypto.encoding import b64encode, b64url_encode, jcs
from liaison.crypto.entry_v2 import build_entry_v2
from liaison.crypto.errors import MalformedError, ProofError
from liaison.crypto.vmap import PersistentMap

ORIGIN = "liaison.example/audit"
SIGNER = note.Signer.from_seed(ORIGIN, bytes(range(32)))
WHEN = datetime(2026, 12, 1, 6, 30, 0, tzinfo=UTC)
ENVELOPE = {"id": "m_" + "c" * 26, "channel": "nightjar", "ciphertext": "..."}
DIGEST = sha256(jcs(ENVELOPE)).hex()
SEED = bytes(range(1, 33))


def _log() -> tuple[list[bytes], dict[str, Any]]:
    v1 = jcs({"v": 1, "type": "policy.loaded", "time": "2026-12-01T06:00:00.000Z", "actor": "system"})
    accepted, opening = build_entry_v2(
        "message.accepted",
        WHEN,
        {"envelope_digest": DIGEST},
        {
            "actor": "d_" + "a" * 26,
            "time": "2026-12-01T06:30:00.000Z",
            "id": ENVELOPE["id"],
            "channel": "nightjar",
            "label": {"classification": "TOP SECRET"},
        },
        SEED,
    )
    head, _ = build_entry_v2(
        "map.head",
        WHEN,
        {"version": 0, "root": b64url_encode(PersistentMap().root()), "time": "2026-12-01T06:30:00.000Z"},
        {},
        SEED,
    )
    return [v1, accepted, head], {k: d.to_json() for k, d in opening.items()}


def _receipt(entries: list[bytes], index: int, opening: Any = None) -> dict[str, Any]:
    hashes = [merkle.leaf_hash(e) for e in entries]
    cp = note.Checkpoint(ORIGIN, len(entries), merkle.root_from_leaf_hashes(hashes))
    out = {
        "log_index": index,
        "tree_size": len(entries),
        "checkpoint": note.sign_checkpoint(cp, SIGNER).decode(),
        "inclusion_proof": [b64encode(h) for h in merkle.inclusion_proof(hashes, index, len(entries))],
        "entry": b64encode(entries[index]),
    }
    if opening is not None:
        out["opening"] = opening
    return out


def test_a_message_receipt_with_a_v2_entry_is_checked_from_its_opening() -> None:
    entries, opening = _log()
    r = transparency.verify_message_receipt(_receipt(entries, 1, opening), ENVELOPE, SIGNER.verifier)
    assert r.entry.json["id"] == ENVELOPE["id"] and r.entry.json["channel"] == "nightjar"
    assert r.entry.json["hour"] == "2026-12-01T06:00:00Z" and r.entry.json["v"] == 2
    # Without the opening the id is sealed: the receipt proves nothing about this message.
    with pytest.raises(ProofError, match="does not open the entry's message id"):
        transparency.verify_message_receipt(_receipt(entries, 1), ENVELOPE, SIGNER.verifier)
    # An opening that does not open (another value under the right salt): refused.
    forged = {**opening, "id": {**opening["id"], "value": "m_" + "d" * 26}}
    with pytest.raises(ProofError, match="does not match its commitments"):
        transparency.verify_message_receipt(_receipt(entries, 1, forged), ENVELOPE, SIGNER.verifier)
    # The opening of another message's entry shown for this one: its id does not match.
    other = {**ENVELOPE, "id": "m_" + "e" * 26}
    with pytest.raises(ProofError):
        transparency.verify_message_receipt(_receipt(entries, 1, opening), other, SIGNER.verifier)


def test_a_v2_entry_shows_only_its_clear_fields_without_an_opening() -> None:
    entries, opening = _log()
    view = transparency.parse_entry(entries[1])
    assert view == {
        "v": 2,
        "type": "message.accepted",
        "hour": "2026-12-01T06:00:00Z",
        "envelope_digest": DIGEST,
    }
    partial = transparency.parse_entry(entries[1], {"channel": opening["channel"]})
    assert partial["channel"] == "nightjar" and "label" not in partial
    with pytest.raises(MalformedError, match="v1 entry"):
        transparency.parse_entry(entries[0], {"channel": opening["channel"]})


def test_the_replay_reads_a_v2_map_head() -> None:
    entries, _ = _log()
    replay = DirectoryReplay()
    for i, data in enumerate(entries):
        replay.feed(i, transparency.parse_entry(data))
    assert replay.ok and replay.map_heads == 1
