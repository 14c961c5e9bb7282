"""Envelope v1: seal/open, every tampering detected, each failure its own exception."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto import _primitives as prim
from liaison.crypto.encoding import b64url_decode, b64url_encode, jcs
from liaison.crypto.envelope import (
    ENVELOPE_DOMAIN,
    envelope_digest,
    new_envelope_id,
    open_envelope,
    parse_envelope,
    seal,
)
from liaison.crypto.errors import (
    BadSignature,
    CryptoError,
    DecryptionFailed,
    LabelMismatch,
    MalformedEnvelope,
    NotARecipient,
    UnsupportedSuite,
)
from liaison.crypto.keys import DeviceKeys, generate_device
from liaison.crypto.labels import Label

LABEL = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))
SENDER = generate_device("usa-analyst-1")
ALICE = generate_device("ukr-analyst-1")
BOB = generate_device("usa-analyst-2")
EVE = generate_device("fra-analyst-1")
CLASSIC = generate_device("pol-system-1", suite="X25519", mldsa65=False)


def _seal(plaintext: bytes = b"grid 37U", **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "channel": "airdef-ops",
        "label": LABEL,
        "sender": SENDER,
        "recipients": [ALICE.public, BOB.public],
    }
    args.update(kw)
    return seal(plaintext, **args)


ENVELOPE = _seal()


def test_round_trip_each_recipient() -> None:
    for keys in (ALICE, BOB):
        opened = open_envelope(ENVELOPE, keys, SENDER.public, required=("ed25519", "mldsa65"))
        assert opened.plaintext == b"grid 37U"
        assert opened.label == LABEL


def test_layout_matches_spec() -> None:
    assert set(ENVELOPE) == {
        "v",
        "id",
        "channel",
        "sender",
        "created",
        "label",
        "content_type",
        "suite",
        "ciphertext",
        "recipients",
        "signatures",
    }
    assert ENVELOPE["sender"] == SENDER.device_id
    assert [r["device"] for r in ENVELOPE["recipients"]] == sorted([ALICE.device_id, BOB.device_id])
    assert set(ENVELOPE["signatures"]) == {"ed25519", "mldsa65"}
    assert ENVELOPE["label"] == LABEL.to_json()
    # Signature is over the domain-separated JCS of the envelope without signatures.
    unsigned = {k: v for k, v in ENVELOPE.items() if k != "signatures"}
    assert prim.ed25519_verify(
        SENDER.public.ed25519,
        ENVELOPE_DOMAIN + b"\x00" + jcs(unsigned),
        b64url_decode(ENVELOPE["signatures"]["ed25519"]),
    )
    # The AAD binds the header: recompute it independently and decrypt with the unwrapped key.
    header = {k: v for k, v in unsigned.items() if k not in ("ciphertext", "recipients")}
    aad = prim.sha256(b"liaison/v1/content\x00" + jcs(header))
    wrapped = {r["device"]: r["wrapped_key"] for r in ENVELOPE["recipients"]}[ALICE.device_id]
    info = b"liaison/v1/wrap\x00" + ENVELOPE["id"].encode() + b"\x00" + ALICE.device_id.encode()
    key = prim.hpke_open("MLKEM768-X25519", ALICE.kem, b64url_decode(wrapped), info)
    ct = b64url_decode(ENVELOPE["ciphertext"])
    assert prim.aead_open(key, ct[:12], ct[12:], aad) == b"grid 37U"


def test_envelope_id_is_uuid7() -> None:
    eid = new_envelope_id(datetime(2026, 1, 1, tzinfo=UTC), bytes(10))
    assert eid[14] == "7"
    assert eid.startswith("019b")  # 2026-01-01 in Unix ms, hex


def test_non_recipient_cannot_open() -> None:
    with pytest.raises(NotARecipient):
        open_envelope(ENVELOPE, EVE, SENDER.public)


def test_wrong_sender_bundle_refused() -> None:
    with pytest.raises(BadSignature, match="not the envelope's sender"):
        open_envelope(ENVELOPE, ALICE, EVE.public)


def test_stripped_pq_signature_refused() -> None:
    env = copy.deepcopy(ENVELOPE)
    del env["signatures"]["mldsa65"]
    with pytest.raises(BadSignature, match="mldsa65"):
        open_envelope(env, ALICE, SENDER.public)


def test_required_signature_enforced() -> None:
    env = seal(b"x", channel="c", label=LABEL, sender=CLASSIC, recipients=[ALICE.public])
    with pytest.raises(BadSignature, match="mldsa65"):
        open_envelope(env, ALICE, CLASSIC.public, required=("ed25519", "mldsa65"))
    assert open_envelope(env, ALICE, CLASSIC.public).plaintext == b"x"


def test_label_changed_after_sealing_fails() -> None:
    env = copy.deepcopy(ENVELOPE)
    env["label"]["rel"] = ["FRA", "UKR", "USA"]
    with pytest.raises(BadSignature):
        open_envelope(env, ALICE, SENDER.public)


def test_label_changed_and_resigned_by_sender_is_label_mismatch() -> None:
    """A sender who signs a header other than the one the content was sealed under is caught."""
    env = copy.deepcopy(ENVELOPE)
    env["label"]["classification"] = "CONFIDENTIAL"
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    env["signatures"] = SENDER.sign(ENVELOPE_DOMAIN, jcs(unsigned))
    with pytest.raises(LabelMismatch):
        open_envelope(env, ALICE, SENDER.public)


def test_expected_label_must_match() -> None:
    other = Label("coalition-2026", "SECRET", ("UKR", "USA"))
    with pytest.raises(LabelMismatch):
        open_envelope(ENVELOPE, ALICE, SENDER.public, expected_label=other)


def test_wrapped_key_for_other_device_fails_to_unwrap() -> None:
    env = copy.deepcopy(ENVELOPE)
    a, b = env["recipients"]
    a["wrapped_key"], b["wrapped_key"] = b["wrapped_key"], a["wrapped_key"]
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    env["signatures"] = SENDER.sign(ENVELOPE_DOMAIN, jcs(unsigned))
    with pytest.raises(DecryptionFailed):
        open_envelope(env, ALICE, SENDER.public)


def test_unsupported_suite() -> None:
    env = copy.deepcopy(ENVELOPE)
    env["suite"] = "RSA-OAEP"
    with pytest.raises(UnsupportedSuite):
        open_envelope(env, ALICE, SENDER.public)
    with pytest.raises(UnsupportedSuite, match="X25519"):
        _seal(recipients=[CLASSIC.public])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("label"),
        lambda e: e.update(extra=1),
        lambda e: e.update(v=2),
        lambda e: e.update(v=True),
        lambda e: e.update(id="not-a-uuid"),
        lambda e: e.update(id=e["id"].upper()),
        lambda e: e.update(sender="alice"),
        lambda e: e.update(created="yesterday"),
        lambda e: e.update(ciphertext="###"),
        lambda e: e.update(ciphertext=e["ciphertext"] + "="),
        lambda e: e.update(ciphertext="AAAA"),
        lambda e: e.update(recipients=[]),
        lambda e: e.update(recipients=list(reversed(e["recipients"]))),
        lambda e: e.update(recipients=[e["recipients"][0], e["recipients"][0]]),
        lambda e: e["recipients"][0].update(extra=1),
        lambda e: e.update(signatures={"mldsa65": "AA"}),
        lambda e: e.update(signatures={"ed25519": 5}),
        lambda e: e.update(label={"policy": "x"}),
        lambda e: e.update(content_type=""),
        lambda e: e.update(channel="Bad Channel"),
    ],
)
def test_malformed_envelopes_refused(mutate: Any) -> None:
    env = copy.deepcopy(ENVELOPE)
    mutate(env)
    with pytest.raises(MalformedEnvelope):
        parse_envelope(env)
    with pytest.raises(MalformedEnvelope):
        open_envelope(env, ALICE, SENDER.public)


def test_non_object_refused() -> None:
    for obj in (None, [], "x", 1):
        with pytest.raises(MalformedEnvelope):
            parse_envelope(obj)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf path of a JSON value."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _paths(v, (*prefix, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _paths(v, (*prefix, i))]
    return [prefix]


LEAVES = _paths(ENVELOPE)


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _alter(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, bool) or value is None:
        return not value
    if isinstance(value, int):
        return value + data.draw(st.integers(1, 5))
    assert isinstance(value, str)
    try:
        raw = b64url_decode(value)
        if len(raw) >= 1:
            i = data.draw(st.integers(0, len(raw) - 1))
            bit = 1 << data.draw(st.integers(0, 7))
            return b64url_encode(raw[:i] + bytes([raw[i] ^ bit]) + raw[i + 1 :])
    except Exception:
        pass
    i = data.draw(st.integers(0, len(value)))
    return value[:i] + data.draw(st.sampled_from("aZ0-_ ")) + value[i:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_change_to_any_field_makes_open_fail(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(LEAVES))
    env = copy.deepcopy(ENVELOPE)
    new = _alter(_get(env, path), data)
    if new == _get(env, path):
        return
    _set(env, path, new)
    with pytest.raises(CryptoError):
        open_envelope(env, ALICE, SENDER.public)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_byte_change_to_serialised_envelope_fails(data: st.DataObject) -> None:
    raw = bytearray(json.dumps(ENVELOPE).encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 6))
    try:
        env = json.loads(raw)
    except ValueError:
        return  # no longer JSON: the transport refuses it before us
    if env == ENVELOPE:
        return  # flipped insignificant JSON whitespace case such as 'e'/'E' in no field
    with pytest.raises(CryptoError):
        open_envelope(env, ALICE, SENDER.public)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=4096), st.sampled_from(["X25519", "MLKEM768-X25519"]))
def test_round_trip_any_plaintext(plaintext: bytes, suite: str) -> None:
    recipient = CLASSIC if suite == "X25519" else ALICE
    env = _seal(plaintext, recipients=[recipient.public], suite=suite)
    assert open_envelope(env, recipient, SENDER.public).plaintext == plaintext


def test_digest_is_sha256_of_jcs() -> None:
    assert envelope_digest(ENVELOPE) == prim.sha256(jcs(ENVELOPE))
    assert len(envelope_digest(ENVELOPE)) == 32


def test_one_mib_to_fifty_hybrid_recipients() -> None:
    many: list[DeviceKeys] = [generate_device(f"ukr-analyst-{i}", mldsa65=False) for i in range(50)]
    payload = prim.random_bytes(1 << 20)
    env = _seal(payload, recipients=[k.public for k in many])
    assert len(env["recipients"]) == 50
    for k in (many[0], many[25], many[49]):
        assert open_envelope(env, k, SENDER.public).plaintext == payload


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=256), st.text(max_size=40))
def test_signed_bytes_cut_from_canonical_equal_canonicalising_again(data: bytes, ctype: str) -> None:
    """The shortcut that avoids a second canonicalisation gives exactly JCS(unsigned)."""
    env = _seal(data, content_type=ctype or "x", recipients=[ALICE.public])
    parsed = parse_envelope(env)
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    assert parsed.signed_bytes == jcs(unsigned)
    assert parsed.canonical == jcs(env)
    assert parsed.digest == envelope_digest(env)


@given(st.binary(max_size=64), st.integers(0, 63))
def test_b64url_refuses_every_non_canonical_tail(data: bytes, other: int) -> None:
    """Exactly one text form per byte string: any other last character is refused."""
    from liaison.crypto.errors import MalformedError

    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    text = b64url_encode(data)
    assert b64url_decode(text) == data
    if not text:
        return
    changed = text[:-1] + alphabet[other]
    try:
        decoded = b64url_decode(changed)
    except MalformedError:
        return
    assert changed == text or b64url_encode(decoded) == changed  # accepted only if canonical
