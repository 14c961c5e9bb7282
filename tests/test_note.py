"""Signed notes, checkpoints and cosignatures: published vectors, malformed inputs, properties."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import _primitives as prim
from liaison.crypto import note as n
from liaison.crypto.errors import (
    BadSignature,
    MalformedError,
    MalformedKey,
    NoteSyntaxError,
    UnsupportedSuite,
)

V: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "signed-note" / "vectors.json").read_text()
)
GO = V["go_sumdb_note"]
SIGSUM = V["sigsum_go"]
SPEC = V["c2sp_specs"]
EM = "\u2014"

PETER = n.parse_verifier_key(GO["verifier_key"])
ENOCH = n.parse_verifier_key(GO["enoch_verifier_key"])


def _seeded(name: str, sig_type: int, byte: int) -> n.Signer:
    return n.Signer.from_seed(name, bytes([byte]) * 32, sig_type)


LOG = _seeded("log.example/audit", n.SIG_ED25519, 1)
W1, W2, W3 = (_seeded(f"witness.example/w{i}", n.SIG_COSIGNATURE_V1, 10 + i) for i in (1, 2, 3))
CP = n.Checkpoint("log.example/audit", 42, prim.sha256(b"root"))


# --- Go sumdb/note vectors ---------------------------------------------------------------


def test_go_keys_parse_and_ids_match() -> None:
    signer = n.parse_signer_key(GO["signer_key"])
    assert signer.name == PETER.name == "PeterNeumann"
    assert signer.key_id.hex() == PETER.key_id.hex() == "c74f20a3"
    assert signer.verifier == PETER
    assert PETER.key_string == GO["verifier_key"]
    assert signer.private_key_string() == GO["signer_key"]
    assert ENOCH.key_id.hex() == "af0cfe78"


def test_go_signed_note_is_reproduced_and_opens() -> None:
    signer = n.parse_signer_key(GO["signer_key"])
    assert n.sign_note(GO["text"], [signer]).decode() == GO["signed_note"]
    opened = n.open_note(GO["signed_note"].encode(), [PETER])
    assert opened.text == GO["text"]
    assert [(s.name, s.key_id.hex()) for s in opened.signatures] == [("PeterNeumann", "c74f20a3")]
    assert opened.unverified == ()


def test_go_unknown_keys_are_ignored_and_unsigned_notes_refused() -> None:
    msg = (GO["text"] + "\n" + GO["peter_signature_line"] + GO["enoch_signature_line"]).encode()
    one = n.open_note(msg, [PETER])
    assert [s.name for s in one.signatures] == ["PeterNeumann"]
    assert [s.name for s in one.unverified] == ["EnochRoot"]
    both = n.open_note(msg, [PETER, ENOCH])
    assert [s.name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(BadSignature, match="no verified signature"):
        n.open_note(msg, [])


def test_go_known_key_with_bad_signature_rejects_the_note() -> None:
    sig = GO["peter_signature_line"]
    bad = (GO["text"] + "\n" + sig[:60] + "ABCD" + sig[60:]).encode()
    with pytest.raises(BadSignature, match="invalid signature from key PeterNeumann"):
        n.open_note(bad, [PETER])


def test_go_duplicates_are_dropped() -> None:
    p, e = GO["peter_signature_line"], GO["enoch_signature_line"]
    e_abcd = e[:60] + "ABCD" + e[60:]
    opened = n.open_note((GO["text"] + "\n" + p + p + e + e + e_abcd).encode(), [PETER])
    assert len(opened.signatures) == 1
    assert len(opened.unverified) == 2


def test_go_invalid_verifier_keys() -> None:
    with pytest.raises(NoteSyntaxError):
        n.parse_verifier_key(GO["wrong_length_verifier_key"])
    with pytest.raises(UnsupportedSuite):
        n.parse_verifier_key(GO["unknown_algorithm_verifier_key"])


def test_every_mangled_verifier_key_is_refused() -> None:
    # As Go's TestNewVerifier: every proper substring and every one-character change fails.
    key = GO["verifier_key"]
    mangled = {key[i:j] for i in range(len(key) + 1) for j in range(i, len(key) + 1)} - {key}
    mangled |= {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    for k in mangled:
        with pytest.raises((NoteSyntaxError, UnsupportedSuite)):
            n.parse_verifier_key(k)


def test_every_mangled_signer_key_is_refused() -> None:
    key = GO["signer_key"]
    mangled = {key[i:j] for i in range(len(key) + 1) for j in range(i, len(key) + 1)} - {key}
    mangled |= {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    for k in mangled:
        with pytest.raises((MalformedKey, UnsupportedSuite)) as err:
            n.parse_signer_key(k)
        assert "AYEKFALV" not in str(err.value)  # the secret never appears in messages


def test_uppercase_key_id_is_not_canonical() -> None:
    with pytest.raises(NoteSyntaxError, match="lowercase"):
        n.parse_verifier_key(GO["verifier_key"].replace("c74f20a3", "C74F20A3"))


# --- real checkpoints --------------------------------------------------------------------


@pytest.mark.parametrize("case", V["sum_golang_org"]["checkpoints"], ids=lambda c: str(c["size"]))
def test_sum_golang_org_checkpoints_verify(case: dict[str, Any]) -> None:
    key = n.parse_verifier_key(V["sum_golang_org"]["verifier_key"])
    assert key.key_id.hex() == "033de0ae"
    data = case["signed_note"].encode()
    cp = n.open_checkpoint(data, key, origin=V["sum_golang_org"]["origin"])
    assert (cp.size, cp.root_hash, cp.extensions) == (case["size"], base64.b64decode(case["root"]), ())
    assert n.format_checkpoint(cp) + "\n" + data.decode().split("\n\n")[1] == data.decode()
    with pytest.raises(BadSignature, match="origin"):
        n.open_checkpoint(data, key)  # the key name is not this log's origin
    with pytest.raises(BadSignature):
        n.open_checkpoint(data.replace(str(case["size"]).encode(), b"1"), key, origin=cp.origin)


def test_sigsum_checkpoint_verifies_with_derived_key() -> None:
    seed = bytes.fromhex(SIGSUM["seed_hex"])
    origin = SIGSUM["log_checkpoint"]["origin"]
    log = n.Verifier.from_public_key(origin, prim.ed25519_public(seed))
    cp = n.open_checkpoint(SIGSUM["log_checkpoint"]["signed_note"].encode(), log)
    assert cp.size == 10 and cp.origin == origin
    signer = n.Signer.from_seed(origin, seed)
    assert n.sign_checkpoint(cp, signer).decode() == SIGSUM["log_checkpoint"]["signed_note"]


# --- cosignatures ------------------------------------------------------------------------

SIGSUM_CP = n.parse_checkpoint(SIGSUM["cosignature"]["checkpoint_text"])
SIGSUM_WITNESS = n.Signer.from_seed(
    SIGSUM["cosignature"]["witness_name"], bytes.fromhex(SIGSUM["seed_hex"]), n.SIG_COSIGNATURE_V1
)


def test_sigsum_cosignature_is_reproduced_and_verifies() -> None:
    c = SIGSUM["cosignature"]
    assert n.cosign_checkpoint(SIGSUM_CP, SIGSUM_WITNESS, c["timestamp"]) == c["valid_line"]
    got = n.verify_cosignature_line(c["valid_line"], SIGSUM_CP, [SIGSUM_WITNESS.verifier])
    assert (got.name, got.timestamp, got.line) == (c["witness_name"], 1234, c["valid_line"])


@pytest.mark.parametrize("which", ["other_key_id_line", "other_name_line", "wrong_size_line"])
def test_sigsum_cosignature_variants_do_not_verify(which: str) -> None:
    with pytest.raises(BadSignature):
        n.verify_cosignature_line(SIGSUM["cosignature"][which], SIGSUM_CP, [SIGSUM_WITNESS.verifier])


def test_cosignature_message_layout_from_spec() -> None:
    cp = n.parse_checkpoint(SPEC["checkpoint_text"])
    msg = n.cosignature_message(n.format_checkpoint(cp), SPEC["cosignature_timestamp"])
    assert msg.decode() == SPEC["cosignature_message"]


def test_spec_cosignature_framing() -> None:
    text, _, block = SPEC["cosigned_checkpoint"].rpartition("\n\n")
    lines = block.splitlines()
    witness = n.parse_signature_line(lines[1])
    assert witness.name == "witness.example.com/w1" and witness.key_id.hex() == "8d66cf3f"
    assert len(witness.blob) == 8 + 64
    assert int.from_bytes(witness.blob[:8], "big") == SPEC["cosignature_timestamp"]
    assert n.parse_checkpoint(text + "\n").size == SPEC["checkpoint_size"]


def test_formats_vkeys_and_cosignature_framing() -> None:
    f = V["transparency_dev_formats"]
    assert n.parse_verifier_key(f["ed25519_verifier_key"]).sig_type == n.SIG_ED25519
    cosigner = n.parse_verifier_key(f["cosignature_verifier_key"])
    assert (cosigner.sig_type, cosigner.key_id.hex()) == (n.SIG_COSIGNATURE_V1, "da77ade7")
    blob = base64.b64decode(f["cosignature_blob"])
    assert int.from_bytes(blob[4:12], "big") == f["cosignature_timestamp"]


def test_cosignature_key_id_uses_type_4() -> None:
    pub = W1.public_key
    assert W1.key_id == prim.sha256(W1.name.encode(), b"\n\x04", pub)[:4]
    assert W1.key_id != n.key_id(W1.name, n.SIG_ED25519, pub)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    timestamp=st.integers(0, 2**63 - 1),
)
def test_cosign_then_verify_and_alterations_fail(size: int, root: bytes, timestamp: int) -> None:
    cp = n.Checkpoint("log.example/audit", size, root)
    line = n.cosign_checkpoint(cp, W1, timestamp)
    got = n.verify_cosignature_line(line, cp, [W1.verifier, W2.verifier])
    assert got.timestamp == timestamp and got.line == line
    for other in (
        n.Checkpoint(cp.origin, size ^ 1, root),
        n.Checkpoint(cp.origin, size, bytes([root[0] ^ 1]) + root[1:]),
        n.Checkpoint(cp.origin + "x", size, root),
        n.Checkpoint(cp.origin, size, root, ("extension",)),
    ):
        with pytest.raises(BadSignature):
            n.verify_cosignature_line(line, other, [W1.verifier])
    sig = n.parse_signature_line(line[:-1])
    moved = (timestamp ^ 1).to_bytes(8, "big") + sig.blob[8:]
    with pytest.raises(BadSignature):
        n.verify_cosignature_line(n.Signature(sig.name, sig.key_id, moved).line, cp, [W1.verifier])


def test_cosignature_refusals() -> None:
    line = n.cosign_checkpoint(CP, W1, 1_700_000_000)
    with pytest.raises(BadSignature, match="not from a known witness"):
        n.verify_cosignature_line(line, CP, [W2.verifier])
    with pytest.raises(BadSignature, match="future"):
        n.verify_cosignature_line(line, CP, [W1.verifier], not_after=1_699_999_999)
    with pytest.raises(UnsupportedSuite):
        n.verify_cosignature_line(line, CP, [LOG.verifier])  # a log key is not a witness key
    with pytest.raises(NoteSyntaxError):
        n.verify_cosignature_line(line + line, CP, [W1.verifier])
    with pytest.raises(UnsupportedSuite):
        n.cosign_checkpoint(CP, LOG, 1)  # note keys do not cosign
    with pytest.raises(UnsupportedSuite):
        n.sign_note("text\n", [W1])  # cosigning keys do not sign arbitrary text
    with pytest.raises(MalformedError):
        n.cosign_checkpoint(CP, W1, 2**63)


# --- witness policy ----------------------------------------------------------------------


def _cosigned(*witnesses: n.Signer, cp: n.Checkpoint = CP, t: int = 1_700_000_000) -> bytes:
    note = n.sign_checkpoint(cp, LOG)
    return n.add_signature_lines(note, [n.cosign_checkpoint(cp, w, t) for w in witnesses])


POLICY = n.WitnessPolicy((W1.verifier, W2.verifier, W3.verifier), 2)


def test_policy_quorum() -> None:
    with pytest.raises(BadSignature, match="0 of 2"):
        POLICY.check(_cosigned())
    with pytest.raises(BadSignature, match="1 of 2"):
        POLICY.check(_cosigned(W1))
    with pytest.raises(BadSignature, match="1 of 2"):
        POLICY.check(_cosigned(W1) + n.cosign_checkpoint(CP, W1, 5).encode())  # same witness
    got = POLICY.check(_cosigned(W3, W1))
    assert sorted(c.name for c in got) == [W1.name, W3.name]
    cp = n.open_checkpoint(_cosigned(W1, W2), LOG.verifier, policy=POLICY)
    assert cp == CP


def test_policy_fails_closed_on_a_bad_cosignature() -> None:
    other = n.Checkpoint(CP.origin, CP.size + 1, CP.root_hash)
    forged = n.add_signature_lines(_cosigned(W1, W2), [n.cosign_checkpoint(other, W3, 1)])
    with pytest.raises(BadSignature, match="invalid cosignature from witness"):
        POLICY.check(forged)
    with pytest.raises(BadSignature, match="future"):
        POLICY.check(_cosigned(W1, W2, t=2_000_000_000), not_after=1_900_000_000)


def test_policy_refuses_bad_configuration() -> None:
    with pytest.raises(MalformedError):
        n.WitnessPolicy((), 1)
    with pytest.raises(MalformedError):
        n.WitnessPolicy((W1.verifier,), 0)
    with pytest.raises(MalformedError):
        n.WitnessPolicy((W1.verifier,), 2)
    with pytest.raises(UnsupportedSuite):
        n.WitnessPolicy((LOG.verifier,), 1)
    same_key = n.Verifier.from_public_key("witness.example/alias", W1.public_key, 4)
    with pytest.raises(MalformedError, match="public keys"):
        n.WitnessPolicy((W1.verifier, same_key), 2)


# --- notes: round trips and malformed input ----------------------------------------------

line_text = st.text(st.characters(exclude_categories=["Cs"], min_codepoint=0x20), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.one_of(line_text, st.just("")), min_size=1, max_size=6), data=st.data())
def test_sign_then_open_round_trips_and_any_text_change_fails(lines: list[str], data: Any) -> None:
    text = "\n".join(lines) + "\n"
    note = n.sign_note(text, [LOG])
    opened = n.open_note(note, [LOG.verifier])
    assert opened.text == text
    pos = data.draw(st.integers(0, len(text.encode()) - 1))
    changed = bytearray(note)
    changed[pos] ^= 0x01
    with pytest.raises((BadSignature, NoteSyntaxError)):
        n.open_note(bytes(changed), [LOG.verifier])


PETER_SIG = GO["peter_signature_line"]
TEXT = GO["text"]
BAD_NOTES = {
    "text only": TEXT,
    "no signature lines": TEXT + "\n",
    "no final newline": TEXT + "\n" + PETER_SIG[:-1],
    "control character": "\x01" + TEXT + "\n" + PETER_SIG,
    "carriage return": TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG,
    "name with space": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter Neumann"),
    "name with plus": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),
    "hyphen for em dash": TEXT + "\n" + PETER_SIG.replace(EM, "-"),
    "no space after dash": TEXT + "\n" + PETER_SIG.replace(EM + " ", EM),
    "line after signatures": TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    "unpadded base64": TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),
    "non-canonical base64": TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),
    "short signature": TEXT + "\n" + f"{EM} PeterNeumann AAAAAA==\n",
    "101 signatures": TEXT + "\n" + PETER_SIG * 101,
    "blank line at end": TEXT + "\n" + PETER_SIG + "\n",
}


@pytest.mark.parametrize("msg", BAD_NOTES.values(), ids=BAD_NOTES.keys())
def test_malformed_notes(msg: str) -> None:
    with pytest.raises(NoteSyntaxError):
        n.open_note(msg.encode(), [PETER])


def test_malformed_note_bytes() -> None:
    with pytest.raises(NoteSyntaxError, match="UTF-8"):
        n.open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [PETER])
    assert len(n.open_note((TEXT + "\n" + PETER_SIG * 100).encode(), [PETER]).signatures) == 1


def test_spec_signed_note_structure_and_known_key_rule() -> None:
    msg = SPEC["signed_note"].encode()
    with pytest.raises(BadSignature, match="no verified"):
        n.open_note(msg, [PETER])  # only unknown keys signed it
    sig = n.parse_signature_line(SPEC["signed_note"].splitlines()[-1])
    # A key with the same name and id but another public key is "known": its signature
    # must verify, and it does not, so the whole note is refused.
    impostor = n.Verifier(sig.name, sig.key_id, n.SIG_ED25519, LOG.public_key)
    with pytest.raises(BadSignature, match="invalid signature"):
        n.open_note(msg, [impostor])


def test_sign_note_refuses_bad_text_and_ambiguous_verifiers() -> None:
    with pytest.raises(NoteSyntaxError, match="newline"):
        n.sign_note("abc", [LOG])
    with pytest.raises(NoteSyntaxError, match="control"):
        n.sign_note("a\tb\n", [LOG])
    with pytest.raises(MalformedKey):
        n.sign_note("abc\n", [])
    twin = n.Verifier(LOG.name, LOG.key_id, n.SIG_ED25519, W1.public_key)
    with pytest.raises(MalformedKey, match="share name"):
        n.open_note(n.sign_note("abc\n", [LOG]), [LOG.verifier, twin])


def test_add_signature_lines_is_idempotent() -> None:
    once = _cosigned(W1)
    assert n.add_signature_lines(once, [n.cosign_checkpoint(CP, W1, 1_700_000_000)]) == once
    with pytest.raises(NoteSyntaxError):
        n.add_signature_lines(once, ["not a signature line"])


# --- keys --------------------------------------------------------------------------------


def test_generate_keys_reproducibly_and_hide_the_seed() -> None:
    skey, vkey = n.generate_signer_key("log.example/audit", seed=bytes(range(32)))
    assert (skey, vkey) == n.generate_signer_key("log.example/audit", seed=bytes(range(32)))
    signer = n.parse_signer_key(skey)
    assert signer.verifier == n.parse_verifier_key(vkey)
    assert vkey.startswith("log.example/audit+") and skey.startswith("PRIVATE+KEY+")
    assert bytes(range(32)).hex() not in repr(signer) and "seed" not in repr(signer)
    wskey, wvkey = n.generate_signer_key("w.example", sig_type=n.SIG_COSIGNATURE_V1)
    assert n.parse_verifier_key(wvkey).sig_type == n.parse_signer_key(wskey).sig_type == 4
    for bad in ("", "has space", "plus+sign", "tab\t", "nbsp\u00a0"):
        assert not n.is_valid_key_name(bad)
        with pytest.raises(MalformedKey):
            n.generate_signer_key(bad)


# --- checkpoints -------------------------------------------------------------------------


def test_spec_checkpoint_round_trips() -> None:
    cp = n.parse_checkpoint(SPEC["checkpoint_text"])
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert n.format_checkpoint(cp) == SPEC["checkpoint_text"]


origins = st.text(st.characters(exclude_categories=["Cs"], min_codepoint=0x20), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None)
@given(
    origin=origins,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(origins, max_size=3),
)
def test_checkpoint_format_parse_round_trip(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    cp = n.Checkpoint(origin, size, root, tuple(extensions))
    text = n.format_checkpoint(cp)
    assert n.parse_checkpoint(text) == cp
    assert n.format_checkpoint(n.parse_checkpoint(text)) == text


ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
BAD_CHECKPOINTS = {
    "no final newline": f"o\n1\n{ROOT_B64}",
    "two lines": "o\n1\n",
    "empty origin": f"\n1\n{ROOT_B64}\n",
    "leading zero": f"o\n01\n{ROOT_B64}\n",
    "negative": f"o\n-1\n{ROOT_B64}\n",
    "plus sign": f"o\n+1\n{ROOT_B64}\n",
    "space in size": f"o\n 1\n{ROOT_B64}\n",
    "underscore": f"o\n1_000\n{ROOT_B64}\n",
    "arabic digit": f"o\n\u0661\n{ROOT_B64}\n",
    "2**64": f"o\n18446744073709551616\n{ROOT_B64}\n",
    "root not base64": "o\n1\nnot base64!\n",
    "root unpadded": f"o\n1\n{ROOT_B64.rstrip('=')}\n",
    "root non-canonical": f"o\n1\n{ROOT_B64[:-2]}J=\n",
    "root 31 bytes": f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n",
    "empty extension": f"o\n1\n{ROOT_B64}\n\n",
    "carriage return": f"o\r\n1\n{ROOT_B64}\n",
}


@pytest.mark.parametrize("text", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(NoteSyntaxError):
        n.parse_checkpoint(text)


def test_format_checkpoint_refuses_what_it_cannot_encode() -> None:
    for cp in (
        n.Checkpoint("", 1, bytes(32)),
        n.Checkpoint("a\nb", 1, bytes(32)),
        n.Checkpoint("o", -1, bytes(32)),
        n.Checkpoint("o", 2**64, bytes(32)),
        n.Checkpoint("o", 1, bytes(31)),
        n.Checkpoint("o", 1, bytes(32), ("",)),
    ):
        with pytest.raises(NoteSyntaxError):
            n.format_checkpoint(cp)


def test_open_checkpoint_refuses_non_checkpoints_and_other_logs() -> None:
    with pytest.raises(NoteSyntaxError):
        n.open_checkpoint(n.sign_note("just text\n", [LOG]), LOG.verifier)
    other = n.Signer.from_seed("other.example/log", bytes([1]) * 32)
    with pytest.raises(BadSignature, match="no verified"):
        n.open_checkpoint(n.sign_checkpoint(CP, other), LOG.verifier)
    with pytest.raises(UnsupportedSuite):
        n.open_checkpoint(n.sign_checkpoint(CP, LOG), W1.verifier)
