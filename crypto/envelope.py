"""Envelope v1 (SPEC 4): seal a message to recipient devices, parse, verify and open it.

    seal(plaintext, ...)  -> envelope dict (JSON-ready)
    parse_envelope(obj)   -> ParsedEnvelope (structure only: nothing is verified yet)
    verify_envelope(parsed, sender_bundle) -> None (signatures; what the server checks)
    open_envelope(obj, keys, sender_bundle) -> Opened (everything, then decrypts)

The label sits in the header, which is bound to the content twice: by the AEAD's associated
data and by the sender's signatures. Changing it breaks both.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from . import _primitives as p
from .encoding import (
    b64url_check,
    b64url_decode,
    b64url_encode,
    format_time,
    jcs,
    parse_time,
)
from .errors import (
    BadSignature,
    DecryptionFailed,
    LabelMismatch,
    MalformedEnvelope,
    MalformedError,
    NotARecipient,
    UnsupportedSuite,
)
from .keys import DEVICE_ID_RE, DeviceKeys, PublicBundle, verify_signatures
from .labels import Label
from .names import ED25519, KEM_SUITES, MLKEM768_X25519, SIGNATURE_ALGS, SLUG_RE

__all__ = [
    "CONTENT_DOMAIN",
    "ENVELOPE_DOMAIN",
    "WRAP_DOMAIN",
    "Opened",
    "ParsedEnvelope",
    "envelope_digest",
    "new_envelope_id",
    "open_envelope",
    "parse_envelope",
    "seal",
    "verify_envelope",
]

CONTENT_DOMAIN = b"liaison/v1/content"
WRAP_DOMAIN = b"liaison/v1/wrap"
ENVELOPE_DOMAIN = b"liaison/v1/envelope"
_FIELDS = {
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
_HEADER_FIELDS = _FIELDS - {"ciphertext", "recipients", "signatures"}
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_NONCE_LEN = 12
_KEY_LEN = 32
_TAG_LEN = 16
MAX_RECIPIENTS = 1000


def new_envelope_id(now: datetime | None = None, rand: bytes | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = int((now or datetime.now().astimezone()).timestamp() * 1000)
    r = rand if rand is not None else p.random_bytes(10)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (int.from_bytes(r[:2]) & 0xFFF) << 64
    value |= 0b10 << 62 | int.from_bytes(r[2:10]) & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _aad(header: dict[str, Any]) -> bytes:
    return p.sha256(CONTENT_DOMAIN + b"\x00" + jcs(header))


def _wrap_info(envelope_id: str, device_id: str) -> bytes:
    return WRAP_DOMAIN + b"\x00" + envelope_id.encode() + b"\x00" + device_id.encode()


def envelope_digest(envelope: dict[str, Any]) -> bytes:
    """SHA-256(JCS(whole envelope)): what the audit log records."""
    return p.sha256(jcs(envelope))


def seal(
    plaintext: bytes,
    *,
    channel: str,
    label: Label,
    sender: DeviceKeys,
    recipients: Sequence[PublicBundle],
    content_type: str = "text/plain; charset=utf-8",
    suite: str = MLKEM768_X25519,
    envelope_id: str | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    """Encrypt `plaintext` to `recipients` (verified bundles) and sign as `sender`.

    Signs with Ed25519 always and ML-DSA-65 when the sender device has that key.
    """
    if suite not in KEM_SUITES:
        raise UnsupportedSuite(f"unsupported KEM suite {suite!r}")
    if not recipients:
        raise MalformedEnvelope("an envelope needs at least one recipient")
    if len(recipients) > MAX_RECIPIENTS:
        raise MalformedEnvelope(f"at most {MAX_RECIPIENTS} recipients")
    by_id = {b.device_id: b for b in recipients}
    if len(by_id) != len(recipients):
        raise MalformedEnvelope("a recipient device is named twice")
    for dev, bundle in by_id.items():
        if bundle.kem_suite != suite:
            raise UnsupportedSuite(f"recipient {dev} has a {bundle.kem_suite} key, not {suite}")
    eid = envelope_id or new_envelope_id(created)
    header: dict[str, Any] = {
        "v": 1,
        "id": eid,
        "channel": channel,
        "sender": sender.device_id,
        "created": format_time(created or datetime.now().astimezone(), millis=False),
        "label": label.to_json(),
        "content_type": content_type,
        "suite": suite,
    }
    key, nonce = p.random_bytes(_KEY_LEN), p.random_bytes(_NONCE_LEN)
    ciphertext = nonce + p.aead_seal(key, nonce, plaintext, _aad(header))
    wrapped = [
        {
            "device": dev,
            "wrapped_key": b64url_encode(p.hpke_seal(suite, by_id[dev].kem_pk, key, _wrap_info(eid, dev))),
        }
        for dev in sorted(by_id)
    ]
    unsigned = {**header, "ciphertext": b64url_encode(ciphertext), "recipients": wrapped}
    signatures = sender.sign(ENVELOPE_DOMAIN, jcs(unsigned))
    return {**unsigned, "signatures": signatures}


@dataclass(frozen=True)
class ParsedEnvelope:
    """A structurally valid envelope. Nothing in it is verified yet: see verify_envelope."""

    raw: dict[str, Any]
    id: str
    channel: str
    sender: str
    created: datetime
    label: Label
    content_type: str
    suite: str
    #: Length of the decoded ciphertext (nonce, content, tag). The base64url texts of the
    #: ciphertext and the wrapped keys are checked (canonical, as decoding would) but decoded
    #: only by whoever needs the bytes: a server that stores the envelope never does.
    ciphertext_size: int
    #: Recipient device id -> its wrapped key, as checked base64url text.
    recipients: dict[str, str]
    signature_algs: tuple[str, ...]

    @cached_property
    def ciphertext(self) -> bytes:
        return b64url_decode(self.raw["ciphertext"], field="ciphertext")

    @property
    def unverified_header(self) -> dict[str, Any]:
        return {k: self.raw[k] for k in _HEADER_FIELDS}

    @cached_property
    def canonical(self) -> bytes:
        """JCS of the whole envelope: what the server stores; its SHA-256 is the digest."""
        return jcs(self.raw)

    @property
    def digest(self) -> bytes:
        """SHA-256(JCS(envelope)), the digest the audit log records."""
        return p.sha256(self.canonical)

    @cached_property
    def signed_bytes(self) -> bytes:
        """JCS of the envelope without "signatures": what the signatures cover.

        Cut out of `canonical` rather than canonicalised again (the envelope's largest cost):
        in JCS the member is `,"signatures":{...}` exactly once, since a quote inside any string
        value is escaped, and what remains is byte for byte JCS of the other members.
        """
        member = b',"signatures":' + jcs(self.raw["signatures"])
        head, found, tail = self.canonical.partition(member)
        if not found or member in tail:  # cannot happen for a parsed envelope; never guess
            return jcs({k: v for k, v in self.raw.items() if k != "signatures"})
        return head + tail


def parse_envelope(obj: Any) -> ParsedEnvelope:
    """Check every field's presence, type and form; refuse anything extra or ambiguous."""
    if not isinstance(obj, dict):
        raise MalformedEnvelope("envelope must be a JSON object")
    missing, extra = _FIELDS - set(obj), set(obj) - _FIELDS
    if missing or extra:
        problems = [f"missing {sorted(missing)}"] if missing else []
        problems += [f"unexpected {sorted(extra)}"] if extra else []
        raise MalformedEnvelope("envelope fields wrong: " + "; ".join(problems))
    if obj["v"] != 1 or isinstance(obj["v"], bool):
        raise MalformedEnvelope("unsupported envelope version (only v1)")
    for name in ("id", "channel", "sender", "created", "content_type", "suite", "ciphertext"):
        if not isinstance(obj[name], str):
            raise MalformedEnvelope(f"{name} must be a string")
    if not _UUID_RE.fullmatch(obj["id"]):
        raise MalformedEnvelope("id must be a lower-case UUIDv7")
    if not SLUG_RE.fullmatch(obj["channel"]):
        raise MalformedEnvelope("channel is not a valid channel id")
    if not DEVICE_ID_RE.fullmatch(obj["sender"]):
        raise MalformedEnvelope("sender is not a device id")
    if not 0 < len(obj["content_type"]) <= 200:
        raise MalformedEnvelope("content_type must be 1 to 200 characters")
    if obj["suite"] not in KEM_SUITES:
        raise UnsupportedSuite(f"unsupported KEM suite {obj['suite']!r}")
    try:
        created = parse_time(obj["created"], field="created")
        label = Label.from_json(obj["label"])
        ciphertext_size = b64url_check(obj["ciphertext"], field="ciphertext")
    except MalformedError as e:
        raise MalformedEnvelope(str(e)) from e
    if ciphertext_size < _NONCE_LEN + _TAG_LEN:
        raise MalformedEnvelope("ciphertext is too short")
    recips = obj["recipients"]
    if not isinstance(recips, list) or not recips or len(recips) > MAX_RECIPIENTS:
        raise MalformedEnvelope(f"recipients must be a list of 1 to {MAX_RECIPIENTS} entries")
    recipients: dict[str, str] = {}
    previous = ""
    for r in recips:
        if not isinstance(r, dict) or set(r) != {"device", "wrapped_key"}:
            raise MalformedEnvelope("each recipient must have exactly device and wrapped_key")
        dev = r["device"]
        if not isinstance(dev, str) or not DEVICE_ID_RE.fullmatch(dev):
            raise MalformedEnvelope("recipient device is not a device id")
        if dev <= previous:
            raise MalformedEnvelope("recipients must be sorted by device id, without repeats")
        previous = dev
        try:
            b64url_check(r["wrapped_key"], field="wrapped_key")
            recipients[dev] = r["wrapped_key"]
        except MalformedError as e:
            raise MalformedEnvelope(str(e)) from e
    sigs = obj["signatures"]
    if (
        not isinstance(sigs, dict)
        or ED25519 not in sigs
        or not set(sigs) <= set(SIGNATURE_ALGS)
        or not all(isinstance(v, str) for v in sigs.values())
    ):
        raise MalformedEnvelope("signatures must hold ed25519 and optionally mldsa65")
    return ParsedEnvelope(
        obj,
        obj["id"],
        obj["channel"],
        obj["sender"],
        created,
        label,
        obj["content_type"],
        obj["suite"],
        ciphertext_size,
        recipients,
        tuple(sorted(sigs)),
    )


def verify_envelope(
    parsed: ParsedEnvelope, sender_bundle: PublicBundle, *, required: Sequence[str] = (ED25519,)
) -> None:
    """Check that `sender_bundle` is the envelope's sender and that every signature verifies."""
    if sender_bundle.device_id != parsed.sender:
        raise BadSignature("the sender key bundle is not the envelope's sender device")
    verify_signatures(
        sender_bundle,
        ENVELOPE_DOMAIN,
        parsed.signed_bytes,
        parsed.raw["signatures"],
        required=tuple(required),
    )


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted envelope."""

    envelope: ParsedEnvelope
    plaintext: bytes

    @property
    def label(self) -> Label:
        return self.envelope.label


def open_envelope(
    obj: Any,
    keys: DeviceKeys,
    sender_bundle: PublicBundle,
    *,
    expected_label: Label | None = None,
    required: Sequence[str] = (ED25519,),
) -> Opened:
    """Parse, verify the sender's signatures, unwrap the key and decrypt.

    `expected_label` is the label something else claimed (an inbox listing, the server's index):
    it must equal the signed one, or LabelMismatch is raised.
    """
    parsed = parse_envelope(obj)
    verify_envelope(parsed, sender_bundle, required=required)
    if expected_label is not None and expected_label != parsed.label:
        raise LabelMismatch("the label shown is not the label the sender signed")
    me = keys.device_id
    wrapped = parsed.recipients.get(me)
    if wrapped is None:
        raise NotARecipient(f"device {me} is not among the envelope's recipients")
    if keys.kem_suite != parsed.suite:
        raise UnsupportedSuite(f"envelope suite {parsed.suite} does not match this device's key")
    try:
        key = keys.unwrap(b64url_decode(wrapped, field="wrapped_key"), _wrap_info(parsed.id, me))
    except p.PrimitiveError as e:
        raise DecryptionFailed("the wrapped key for this device does not unwrap") from e
    nonce, body = parsed.ciphertext[:_NONCE_LEN], parsed.ciphertext[_NONCE_LEN:]
    try:
        plaintext = p.aead_open(key, nonce, body, _aad(parsed.unverified_header))
    except p.PrimitiveError as e:
        # The signatures verified, so the ciphertext is the sender's: the content was sealed
        # under another header, i.e. the label (or another header field) is not the bound one.
        raise LabelMismatch("the content is not bound to this header and label") from e
    return Opened(parsed, plaintext)
