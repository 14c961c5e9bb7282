"""liaison.crypto.transparency: the client's checks, against proofs from the reference verifier."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import merkle, note, tiles, transparency
from liaison.crypto.encoding import jcs
from liaison.crypto.errors import (
    BadSignature,
    CryptoError,
    MalformedError,
    PolicyViolation,
    ProofError,
)
from liaison.crypto.keys import generate_device
from tests import tlog_reference as ref

ORIGIN = "liaison.test/audit"
SIGNER = note.Signer.from_seed(ORIGIN, bytes(range(32)))
KEY = SIGNER.verifier


def entry(i: int, type_: str = "test.entry", **fields: Any) -> bytes:
    return jcs(
        {"v": 1, "type": type_, "time": "2026-01-01T00:00:00.000Z", "actor": "system", "i": i, **fields}
    )


class Log:
    """A tiny in-memory log built with the *reference* tree code, signed with note."""

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = list(entries)

    @property
    def leaves(self) -> list[bytes]:
        return [ref.leaf(e) for e in self.entries]

    def checkpoint(self, size: int | None = None) -> tuple[note.Checkpoint, str]:
        size = len(self.entries) if size is None else size
        cp = note.Checkpoint(ORIGIN, size, ref.mth(self.leaves[:size]))
        return cp, note.sign_checkpoint(cp, SIGNER).decode()

    def proof(self, index: int, size: int | None = None) -> list[str]:
        size = len(self.entries) if size is None else size
        return [base64.b64encode(h).decode() for h in ref.inclusion_proof(self.leaves[:size], index)]

    def consistency(self, old: int, new: int) -> list[str]:
        return [base64.b64encode(h).decode() for h in ref.consistency_proof(self.leaves[:new], old)]

    def receipt(self, index: int, with_entry: bool = True) -> dict[str, Any]:
        cp, text = self.checkpoint()
        out = {
            "log_index": index,
            "tree_size": cp.size,
            "checkpoint": text,
            "inclusion_proof": self.proof(index),
        }
        if with_entry:
            out["entry"] = base64.b64encode(self.entries[index]).decode()
        return out


# --- checkpoints and consistency ---------------------------------------------------------


def test_verify_checkpoint_and_witness_policy() -> None:
    log = Log([entry(i) for i in range(5)])
    cp, text = log.checkpoint()
    assert transparency.verify_checkpoint(text, KEY) == cp
    assert transparency.verify_checkpoint(text.encode(), KEY.key_string) == cp
    other = note.Signer.from_seed(ORIGIN, bytes(32)).verifier
    with pytest.raises(BadSignature):
        transparency.verify_checkpoint(text, other)
    wsk, _ = note.generate_signer_key("w1", sig_type=note.SIG_COSIGNATURE_V1, seed=bytes(32))
    w = note.parse_signer_key(wsk)
    policy = note.WitnessPolicy((w.verifier,), 1)
    with pytest.raises(BadSignature, match="quorum"):  # fail-closed without the cosignature
        transparency.verify_checkpoint(text, KEY, policy=policy)
    cosigned = note.add_signature_lines(text.encode(), [note.cosign_checkpoint(cp, w, 1000)])
    assert transparency.verify_checkpoint(cosigned, KEY, policy=policy, not_after=2000) == cp
    with pytest.raises(BadSignature):
        transparency.verify_checkpoint(cosigned, KEY, policy=policy, not_after=999)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.data())
def test_consistency_and_advance(new: int, data: st.DataObject) -> None:
    log = Log([entry(i) for i in range(new)])
    old = data.draw(st.integers(0, new))
    old_cp, _ = log.checkpoint(old)
    new_cp, _ = log.checkpoint(new)
    proof = log.consistency(old, new)
    transparency.check_consistency(old_cp, new_cp, proof)
    assert transparency.advance(old_cp, new_cp, proof) == new_cp
    assert transparency.advance(new_cp, old_cp, proof) == new_cp
    assert transparency.advance(None, old_cp, []) == old_cp
    if 0 < old < new:
        forked = Log([entry(i) if i != old - 1 else entry(-1) for i in range(new)])
        with pytest.raises(ProofError):
            transparency.check_consistency(forked.checkpoint(old)[0], new_cp, proof)
        if proof:
            bad = list(proof)
            bad[0] = base64.b64encode(bytes(32)).decode()
            with pytest.raises(ProofError):
                transparency.check_consistency(old_cp, new_cp, bad)


def test_consistency_refusals() -> None:
    log = Log([entry(i) for i in range(8)])
    a, _ = log.checkpoint(4)
    b, _ = log.checkpoint(8)
    with pytest.raises(ProofError, match="shrank"):
        transparency.check_consistency(b, a, [])
    with pytest.raises(ProofError, match="origin"):
        transparency.check_consistency(note.Checkpoint("other", 4, a.root_hash), b, [])
    with pytest.raises(ProofError, match="forked"):
        transparency.check_consistency(a, note.Checkpoint(ORIGIN, 4, bytes(32)), [])
    with pytest.raises(ProofError, match="empty root"):
        transparency.check_consistency(note.Checkpoint(ORIGIN, 0, bytes(32)), b, [])
    for proof in (["not base64!"], [base64.b64encode(b"short").decode()], [b"x" * 32] * 65, "x"):
        with pytest.raises(ProofError):
            transparency.check_consistency(a, b, proof)  # type: ignore[arg-type]


# --- entries and receipts ----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.data())
def test_verify_entry_matches_reference(size: int, data: st.DataObject) -> None:
    log = Log([entry(i) for i in range(size)])
    i = data.draw(st.integers(0, size - 1))
    cp, _ = log.checkpoint()
    got = transparency.verify_entry(log.entries[i], i, log.proof(i), cp)
    assert got.index == i and got.json["i"] == i
    if size > 1:
        j = (i + 1) % size
        with pytest.raises(ProofError, match=f"log entry {j} "):
            transparency.verify_entry(log.entries[i], j, log.proof(i), cp)


def test_parse_entry_refuses_ambiguous_bytes() -> None:
    good = entry(1)
    assert transparency.parse_entry(good)["i"] == 1
    for bad in (
        b"not json",
        b"[1]",
        jcs({"v": 2, "type": "t", "time": "t", "actor": "a"}),
        jcs({"v": 1, "time": "t", "actor": "a"}),
        good.replace(b",", b", ", 1),
        b'{"v":1,"type":"t","time":"t","actor":"a","actor":"b"}',
        b"\xff",
    ):
        with pytest.raises(MalformedError):
            transparency.parse_entry(bad)


def test_verify_receipt() -> None:
    log = Log([entry(i) for i in range(10)])
    r = log.receipt(7)
    assert transparency.verify_receipt(r, KEY).index == 7
    assert transparency.verify_receipt(log.receipt(7, False), KEY, entry=log.entries[7]).index == 7
    with pytest.raises(MalformedError):
        transparency.verify_receipt(log.receipt(7, False), KEY)
    with pytest.raises(ProofError):
        transparency.verify_receipt(r, KEY, entry=log.entries[6])
    with pytest.raises(ProofError, match="tree size"):
        transparency.verify_receipt({**r, "tree_size": 9}, KEY)
    with pytest.raises(MalformedError):
        transparency.verify_receipt({**r, "log_index": "7"}, KEY)
    with pytest.raises(ProofError):
        transparency.verify_receipt({**r, "log_index": 6}, KEY)
    with pytest.raises(BadSignature):
        transparency.verify_receipt({**r, "checkpoint": r["checkpoint"].replace("10", "11", 1)}, KEY)
    with pytest.raises(MalformedError):
        transparency.verify_receipt("nope", KEY)  # type: ignore[arg-type]


def test_verify_message_receipt() -> None:
    envelope = {"v": 1, "id": "0190-abc", "ciphertext": "x"}
    digest = hashlib.sha256(jcs(envelope)).hexdigest()
    log = Log([entry(0), entry(1, "message.accepted", id="0190-abc", envelope_digest=digest)])
    assert transparency.verify_message_receipt(log.receipt(1), envelope, KEY).index == 1
    with pytest.raises(ProofError, match="another envelope"):
        transparency.verify_message_receipt(log.receipt(1), {**envelope, "ciphertext": "y"}, KEY)
    with pytest.raises(ProofError, match="not the acceptance"):
        transparency.verify_message_receipt(log.receipt(0), envelope, KEY)


# --- key transparency --------------------------------------------------------------------


def _directory(revoke: bool = False) -> tuple[Log, dict[str, Any], Any]:
    keys = generate_device("ukr-analyst", suite="X25519", mldsa65=False)
    signed = keys.signed_bundle()
    digest = hashlib.sha256(jcs(signed["bundle"])).hexdigest()
    entries = [
        entry(0),
        entry(1, "device.enrolled", device=keys.device_id, principal="ukr-analyst", bundle_digest=digest),
    ]
    if revoke:
        entries.append(entry(2, "device.revoked", device=keys.device_id, principal="ukr-analyst"))
    log = Log(entries)

    def proof_of(i: int) -> dict[str, Any]:
        return {
            "log_index": i,
            "entry": base64.b64encode(log.entries[i]).decode(),
            "inclusion_proof": log.proof(i),
        }

    rec = {
        "device": keys.device_id,
        "principal": "ukr-analyst",
        "signed_bundle": signed,
        "revoked": revoke,
        "enrolment": proof_of(1),
    }
    if revoke:
        rec["revocation"] = proof_of(2)
    return log, rec, keys


def test_device_record() -> None:
    log, rec, keys = _directory()
    cp, _ = log.checkpoint()
    assert transparency.verify_device_record(rec, cp) == keys.public
    status = transparency.inspect_device_record(rec, cp)
    assert (status.enrol_index, status.revoked, status.revoke_index) == (1, False, None)
    # A revocation claim without proof is believed: it can only make the client do less.
    with pytest.raises(PolicyViolation):
        transparency.verify_device_record({**rec, "revoked": True}, cp)


def test_revoked_device_record() -> None:
    log, rec, _ = _directory(revoke=True)
    cp, _ = log.checkpoint()
    status = transparency.inspect_device_record(rec, cp)
    assert status.revoked and status.revoke_index == 2
    with pytest.raises(PolicyViolation) as e:
        transparency.verify_device_record(rec, cp)
    assert e.value.reason == "device-revoked"
    bad = {**rec, "revocation": rec["enrolment"]}
    with pytest.raises(ProofError, match="not its revocation"):
        transparency.inspect_device_record(bad, cp)


def test_device_record_refusals() -> None:
    log, rec, _ = _directory()
    cp, _ = log.checkpoint()
    other = generate_device("ukr-analyst", suite="X25519", mldsa65=False)
    cases: list[dict[str, Any]] = [
        {**rec, "enrolment": None},
        {**rec, "enrolment": {**rec["enrolment"], "log_index": 0}},
        {**rec, "enrolment": {**rec["enrolment"], "entry": base64.b64encode(log.entries[0]).decode()}},
        {**rec, "signed_bundle": other.signed_bundle()},
        {**rec, "device": other.device_id, "signed_bundle": other.signed_bundle()},
        {**rec, "principal": "someone-else"},
        {**rec, "revocation": "yes"},
        {**rec, "device": 5},
        {**rec, "signed_bundle": {"bundle": rec["signed_bundle"]["bundle"], "signatures": {}}},
    ]
    for case in cases:
        with pytest.raises(CryptoError):
            transparency.verify_device_record(case, cp)
    # A record proven against one checkpoint does not verify against an unrelated tree.
    with pytest.raises(ProofError):
        transparency.verify_device_record(rec, note.Checkpoint(ORIGIN, 2, bytes(32)))


# --- auditing ----------------------------------------------------------------------------


def _tiles_for(log: Log) -> dict[tiles.Tile, bytes]:
    store = merkle.MemoryHashStore(log.leaves)
    return {t: tiles.hash_tile(store, t) for t in tiles.tiles_for_size(len(log.entries))}


@pytest.mark.parametrize("size", [1, 255, 256, 257, 600])
def test_verify_log_entries(size: int) -> None:
    log = Log([entry(i) for i in range(size)])
    cp, _ = log.checkpoint()
    hash_tiles = _tiles_for(log)
    transparency.verify_log_entries(log.entries, cp, hash_tiles)
    transparency.verify_log_entries(log.entries, cp)
    bad = size // 2
    changed = list(log.entries)
    changed[bad] = entry(-1)
    with pytest.raises(ProofError, match=f"log entry {bad} "):
        transparency.verify_log_entries(changed, cp, hash_tiles)
    with pytest.raises(ProofError, match="do not hash"):
        transparency.verify_log_entries(changed, cp)
    with pytest.raises(ProofError, match="expected"):
        transparency.verify_log_entries(log.entries[:-1], cp)
    # Tiles that do not match the checkpoint are refused, not trusted.
    forged = Log(changed)
    with pytest.raises(ProofError):
        transparency.verify_log_entries(changed, cp, _tiles_for(forged))
