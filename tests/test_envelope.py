"""Envelopes v2 (and v1, read only): seal/open, every tampering detected, each failure its own
exception. The v2 vectors are in tests/test_envelope_v2_vectors.py."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto import _primitives as prim
from liaison.crypto.encoding import b64url_decode, b64url_encode, jcs
from liaison.crypto.envelope import (
    ENVELOPE_DOMAIN,
    ENVELOPE_DOMAIN_V2,
    envelope_digest,
    new_envelope_id,
    open_envelope,
    parse_envelope,
    seal,
    seal_v1,
)
from liaison.crypto.errors import (
    BadSignature,
    CryptoError,
    DecryptionFailed,
    KeyCommitmentMismatch,
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


def _hkdf_expand_sha512(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand written out with hmac: an independent check of the derivation."""
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha512).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def test_layout_matches_spec() -> None:
    """Protocol 5.2, recomputed here from the text with other code paths (hmac for HKDF,
    cryptography's AESGCM directly, the frame and body built by hand)."""
    assert set(ENVELOPE) == {
        "v",
        "id",
        "channel",
        "sender",
        "created",
        "label",
        "suite",
        "salt",
        "commitment",
        "ciphertext",
        "recipients",
        "signatures",
    }
    assert ENVELOPE["v"] == 2
    assert ENVELOPE["sender"] == SENDER.device_id
    assert [r["device"] for r in ENVELOPE["recipients"]] == sorted([ALICE.device_id, BOB.device_id])
    assert set(ENVELOPE["signatures"]) == {"ed25519", "mldsa65"}
    assert ENVELOPE["label"] == LABEL.to_json()
    unsigned = {k: v for k, v in ENVELOPE.items() if k != "signatures"}
    assert prim.ed25519_verify(
        SENDER.public.ed25519,
        b"liaison/v2/envelope\x00" + jcs(unsigned),
        b64url_decode(ENVELOPE["signatures"]["ed25519"]),
    )
    entry = {r["device"]: r for r in ENVELOPE["recipients"]}[ALICE.device_id]
    kem = {"pk": b64url_encode(ALICE.public.kem_pk), "suite": "MLKEM768-X25519"}
    digest = hashlib.sha256(b"liaison/v2/kem-key\x00" + jcs(kem)).digest()
    assert entry["key_id"] == "k_" + base64.b32encode(digest).decode().lower()[:26]
    info = b"\x00".join(
        [b"liaison/v2/wrap", ENVELOPE["id"].encode(), ALICE.device_id.encode(), entry["key_id"].encode()]
    )
    key = prim.hpke_open("MLKEM768-X25519", ALICE.kem, b64url_decode(entry["wrapped_key"]), info)
    ct = b64url_decode(ENVELOPE["ciphertext"])
    salt, commitment = ct[:24], ct[24:56]
    assert salt == b64url_decode(ENVELOPE["salt"]) and commitment == b64url_decode(ENVELOPE["commitment"])
    context_fields = ("v", "id", "channel", "sender", "created", "label", "suite")
    context = b"liaison/v2/content\x00" + jcs({k: ENVELOPE[k] for k in context_fields})
    out = _hkdf_expand_sha512(
        key, b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00" + salt + context, 76
    )
    aes_key, base_nonce = out[:32], out[32:44]
    assert out[44:] == commitment
    frame = AESGCM(aes_key).decrypt(base_nonce, ct[56:], None)  # one chunk: frame < 16 KiB
    body = jcs(
        {
            "attachments": [],
            "content": b64url_encode(b"grid 37U"),
            "content_type": "text/plain; charset=utf-8",
        }
    )
    assert len(frame) == 1024
    assert frame == len(body).to_bytes(8, "big") + body + bytes(1024 - 8 - len(body))


def test_v1_still_opens_and_binds_its_header() -> None:
    """Messages stored before v2 stay readable (protocol 5.4); v1's AAD binds its header."""
    env = seal_v1(b"grid 37U", channel="airdef-ops", label=LABEL, sender=SENDER, recipients=[ALICE.public])
    assert env["v"] == 1 and env["content_type"] == "text/plain; charset=utf-8"
    opened = open_envelope(env, ALICE, SENDER.public)
    assert opened.plaintext == b"grid 37U" and opened.content_type == "text/plain; charset=utf-8"
    assert parse_envelope(env).padded_size == len(b"grid 37U")  # v1 shows the exact length
    with pytest.raises(MalformedEnvelope, match="v1 is no longer accepted"):
        open_envelope(env, ALICE, SENDER.public, v1_refused=True)
    changed = copy.deepcopy(env)
    changed["label"]["classification"] = "CONFIDENTIAL"
    unsigned = {k: v for k, v in changed.items() if k != "signatures"}
    changed["signatures"] = SENDER.sign(ENVELOPE_DOMAIN, jcs(unsigned))
    with pytest.raises(LabelMismatch):
        open_envelope(changed, ALICE, SENDER.public)


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


def test_label_changed_and_resigned_by_sender_fails_the_commitment() -> None:
    """A sender who signs a header other than the one the content was sealed under is caught:
    the key derivation binds the header, so the derived commitment is not the signed one."""
    env = copy.deepcopy(ENVELOPE)
    env["label"]["classification"] = "CONFIDENTIAL"
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    env["signatures"] = SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
    with pytest.raises(KeyCommitmentMismatch):
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
    env["signatures"] = SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
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
        lambda e: e.update(v=3),
        lambda e: e.update(v=1),
        lambda e: e.update(v=[2]),
        lambda e: e.update(v={"2": 2}),
        lambda e: e.update(v=2.0),
        lambda e: e.update(salt=e["commitment"]),
        lambda e: e.update(commitment=e["salt"]),
        lambda e: e.update(commitment=b64url_encode(bytes(32))),
        lambda e: e["recipients"][0].pop("key_id"),
        lambda e: e["recipients"][0].update(key_id="d_" + "a" * 26),
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
@given(st.binary(max_size=256), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
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
