"""Envelopes (protocol 5): seal a message to recipient devices, parse, verify and open it.

    seal(content, ...)    -> envelope v2 dict (JSON-ready); the only version new messages use
    parse_envelope(obj)   -> ParsedEnvelope, v1 or v2 (structure only: nothing is verified yet)
    verify_envelope(parsed, sender_bundle) -> None (signatures; what the server checks)
    open_envelope(obj, keys, sender_bundle) -> Opened (everything, then decrypts)

v2 (protocol 5.2) encrypts a padded, structured frame with C2SP chunked encryption: the signed
header carries the salt and the 32-byte key commitment, so every recipient of one envelope
opens the same content or nothing, and the content's length is seen only as a Padmé size.
v1 (protocol 5.1) is kept so that messages stored before v2 stay readable until they expire;
`seal_v1` exists for tests and vectors only, and the server refuses v1 submissions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from . import _primitives as p
from . import chunked
from .attachments import AttachmentRef, parse_refs
from .content import AttachmentInfo, Body, is_padded_size, parse_frame, to_frame
from .encoding import b64url_check, b64url_decode, b64url_encode, format_time, jcs, parse_time
from .errors import (
    BadSignature,
    DecryptionFailed,
    KeyCommitmentMismatch,
    LabelMismatch,
    MalformedContent,
    MalformedEnvelope,
    MalformedError,
    NotARecipient,
    UnsupportedSuite,
    WrongKeyId,
)
from .keys import DEVICE_ID_RE, KEM_KEY_ID_RE, DeviceKeys, PublicBundle, verify_signatures
from .labels import Label
from .names import ED25519, KEM_SUITES, MLKEM768_X25519, SIGNATURE_ALGS, SLUG_RE

__all__ = [
    "CONTENT_DOMAIN",
    "CONTENT_DOMAIN_V2",
    "ENVELOPE_DOMAIN",
    "ENVELOPE_DOMAIN_V2",
    "MAX_RECIPIENTS",
    "UUID7_RE",
    "WRAP_DOMAIN",
    "WRAP_DOMAIN_V2",
    "Opened",
    "ParsedEnvelope",
    "content_context",
    "envelope_digest",
    "new_envelope_id",
    "open_envelope",
    "parse_envelope",
    "seal",
    "seal_v1",
    "verify_envelope",
    "wrap_info_v2",
]

CONTENT_DOMAIN = b"liaison/v1/content"
WRAP_DOMAIN = b"liaison/v1/wrap"
ENVELOPE_DOMAIN = b"liaison/v1/envelope"
CONTENT_DOMAIN_V2 = b"liaison/v2/content"
WRAP_DOMAIN_V2 = b"liaison/v2/wrap"
ENVELOPE_DOMAIN_V2 = b"liaison/v2/envelope"
_OUTER = {"ciphertext", "recipients", "signatures"}
_FIELDS = {
    1: {"v", "id", "channel", "sender", "created", "label", "content_type", "suite"} | _OUTER,
    2: {"v", "id", "channel", "sender", "created", "label", "suite", "salt", "commitment"} | _OUTER,
}
#: A v2 header member present only when the envelope has attachments (protocol 11.3).
_OPTIONAL = {2: {"attachments"}, 1: set[str]()}
#: The v2 header fields the content key derivation binds (the salt and commitment are its
#: output, so they are not part of its input).
_CONTEXT_FIELDS = ("v", "id", "channel", "sender", "created", "label", "suite")
_RECIPIENT_FIELDS = {1: {"device", "wrapped_key"}, 2: {"device", "key_id", "wrapped_key"}}
_DOMAINS = {1: ENVELOPE_DOMAIN, 2: ENVELOPE_DOMAIN_V2}
#: An envelope id: a lower-case UUIDv7.
UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_NONCE_LEN = 12
_KEY_LEN = 32
_TAG_LEN = 16
MAX_RECIPIENTS = 1000

#: HPKE seal of one content key: (suite, recipient public key, key, info) -> enc || ct. Passed
#: in by the test-vector generator, which replays recorded wraps (HPKE encapsulation draws its
#: own randomness); everything else takes randomness through `seal`'s arguments.
Wrap = Callable[[str, bytes, bytes, bytes], bytes]


def new_envelope_id(now: datetime | None = None, rand: bytes | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = int((now or datetime.now().astimezone()).timestamp() * 1000)
    r = rand if rand is not None else p.random_bytes(10)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (int.from_bytes(r[:2]) & 0xFFF) << 64
    value |= 0b10 << 62 | int.from_bytes(r[2:10]) & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _aad_v1(header: dict[str, Any]) -> bytes:
    return p.sha256(CONTENT_DOMAIN + b"\x00" + jcs(header))


def _wrap_info_v1(envelope_id: str, device_id: str) -> bytes:
    return WRAP_DOMAIN + b"\x00" + envelope_id.encode() + b"\x00" + device_id.encode()


def wrap_info_v2(envelope_id: str, device_id: str, key_id: str) -> bytes:
    """HPKE `info` of a v2 wrap: the domain, the envelope, the recipient device and its key."""
    return b"\x00".join((WRAP_DOMAIN_V2, envelope_id.encode(), device_id.encode(), key_id.encode()))


def content_context(header: dict[str, Any]) -> bytes:
    """The chunked-encryption `context` of a v2 envelope: the domain and JCS of the header's
    v, id, channel, sender, created, label and suite."""
    return CONTENT_DOMAIN_V2 + b"\x00" + jcs({k: header[k] for k in _CONTEXT_FIELDS})


def envelope_digest(envelope: dict[str, Any]) -> bytes:
    """SHA-256(JCS(whole envelope)): what the audit log records."""
    return p.sha256(jcs(envelope))


def _recipients_by_id(recipients: Sequence[PublicBundle], suite: str) -> dict[str, PublicBundle]:
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
    return by_id


def _base_header(
    version: int,
    eid: str,
    channel: str,
    sender: DeviceKeys,
    created: datetime | None,
    label: Label,
    suite: str,
) -> dict[str, Any]:
    return {
        "v": version,
        "id": eid,
        "channel": channel,
        "sender": sender.device_id,
        "created": format_time(created or datetime.now().astimezone(), millis=False),
        "label": label.to_json(),
        "suite": suite,
    }


def seal(
    content: bytes,
    *,
    channel: str,
    label: Label,
    sender: DeviceKeys,
    recipients: Sequence[PublicBundle],
    content_type: str = "text/plain; charset=utf-8",
    suite: str = MLKEM768_X25519,
    envelope_id: str | None = None,
    created: datetime | None = None,
    message_key: bytes | None = None,
    salt: bytes | None = None,
    wrap: Wrap = p.hpke_seal,
    attachments: Sequence[tuple[AttachmentRef, AttachmentInfo]] = (),
) -> dict[str, Any]:
    """Seal `content` as an envelope v2 to `recipients` (verified bundles), signed by `sender`.

    Signs with Ed25519 always and ML-DSA-65 when the sender device has that key. The message
    key and salt are random unless given (test vectors pass them in, with `created`).
    `attachments`: each uploaded attachment's header member and body member (protocol 11.3,
    11.4), in upload order; the envelope's id must be the one they were uploaded for.
    """
    by_id = _recipients_by_id(recipients, suite)
    if any(ref.id != info.id for ref, info in attachments):
        raise MalformedEnvelope("an attachment's header and body members name different ids")
    eid = envelope_id or new_envelope_id(created)
    header = _base_header(2, eid, channel, sender, created, label, suite)
    key = message_key if message_key is not None else p.random_bytes(chunked.KEY_LEN)
    salt = salt if salt is not None else p.random_bytes(chunked.SALT_LEN)
    body = Body(content, content_type, tuple(info for _, info in attachments))
    ciphertext = chunked.encrypt(key, salt, to_frame(body), content_context(header))
    if attachments:
        header["attachments"] = [ref.to_json() for ref, _ in attachments]
        parse_refs(header["attachments"])  # distinct ids, possible sizes: refused as a server would
    header["salt"] = b64url_encode(salt)
    header["commitment"] = b64url_encode(ciphertext[chunked.SALT_LEN : chunked.PREFIX_LEN])
    wrapped = []
    for dev in sorted(by_id):
        key_id = by_id[dev].kem_key_id
        sealed = wrap(suite, by_id[dev].kem_pk, key, wrap_info_v2(eid, dev, key_id))
        wrapped.append({"device": dev, "key_id": key_id, "wrapped_key": b64url_encode(sealed)})
    unsigned = {**header, "ciphertext": b64url_encode(ciphertext), "recipients": wrapped}
    return {**unsigned, "signatures": sender.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))}


def seal_v1(
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
    """An envelope v1, as clients wrote before v2. For tests and vectors only: the server no
    longer accepts v1, and v1 does not commit to its key (protocol 5.1)."""
    by_id = _recipients_by_id(recipients, suite)
    eid = envelope_id or new_envelope_id(created)
    header = _base_header(1, eid, channel, sender, created, label, suite)
    header["content_type"] = content_type
    key, nonce = p.random_bytes(_KEY_LEN), p.random_bytes(_NONCE_LEN)
    ciphertext = nonce + p.aead_seal(key, nonce, plaintext, _aad_v1(header))
    wrapped = [
        {
            "device": dev,
            "wrapped_key": b64url_encode(p.hpke_seal(suite, by_id[dev].kem_pk, key, _wrap_info_v1(eid, dev))),
        }
        for dev in sorted(by_id)
    ]
    unsigned = {**header, "ciphertext": b64url_encode(ciphertext), "recipients": wrapped}
    return {**unsigned, "signatures": sender.sign(ENVELOPE_DOMAIN, jcs(unsigned))}


@dataclass(frozen=True)
class ParsedEnvelope:
    """A structurally valid envelope. Nothing in it is verified yet: see verify_envelope."""

    raw: dict[str, Any]
    version: int
    id: str
    channel: str
    sender: str
    created: datetime
    label: Label
    suite: str
    #: Length of the decoded ciphertext. The base64url texts of the ciphertext and the wrapped
    #: keys are checked (canonical, as decoding would) but decoded only by whoever needs the
    #: bytes: a server that stores the envelope never does.
    ciphertext_size: int
    #: What the ciphertext reveals of the content's size: v2, the padded frame size (a Padmé
    #: size, never the exact length); v1, the exact plaintext length.
    padded_size: int
    #: Recipient device id -> its wrapped key, as checked base64url text.
    recipients: dict[str, str]
    #: Recipient device id -> the KEM key id its key was wrapped to (v2; empty for v1).
    key_ids: dict[str, str]
    signature_algs: tuple[str, ...]
    #: v1 only: the media type travelled in the clear. v2 carries it inside the body.
    content_type: str | None
    #: v2: the header's attachments (protocol 11.3), in order; empty when it has none.
    attachments: tuple[AttachmentRef, ...] = ()

    @cached_property
    def ciphertext(self) -> bytes:
        return b64url_decode(self.raw["ciphertext"], field="ciphertext")

    @property
    def unverified_header(self) -> dict[str, Any]:
        return {
            k: self.raw[k]
            for k in (_FIELDS[self.version] | _OPTIONAL[self.version]) - _OUTER
            if k in self.raw
        }

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


def _version(obj: dict[str, Any]) -> int:
    v = obj.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v not in _FIELDS:
        raise MalformedEnvelope("unsupported envelope version (v1 and v2 are known)")
    return v


def _decoded_len(obj: dict[str, Any], name: str, expected: int) -> None:
    if not isinstance(obj[name], str) or b64url_check(obj[name], field=name) != expected:
        raise MalformedEnvelope(f"{name} must be {expected} bytes of base64url")


def _sizes(obj: dict[str, Any], version: int) -> tuple[int, int]:
    """(ciphertext size, padded size), checking that the length is one a sender can write and,
    for v2, that the header's salt and commitment are the ciphertext's own."""
    size = b64url_check(obj["ciphertext"], field="ciphertext")
    if version == 1:
        if size < _NONCE_LEN + _TAG_LEN:
            raise MalformedEnvelope("ciphertext is too short")
        return size, size - _NONCE_LEN - _TAG_LEN
    _decoded_len(obj, "salt", chunked.SALT_LEN)
    _decoded_len(obj, "commitment", chunked.COMMITMENT_LEN)
    frame = chunked.plaintext_length(size)
    if not is_padded_size(frame):
        raise MalformedEnvelope(f"the content is {frame} bytes, not a padded size")
    # The salt and commitment are the ciphertext's first 56 bytes: decode its first 76
    # characters (57 bytes, a whole number of base64 quanta) and compare.
    prefix = b64url_decode(obj["ciphertext"][:76], field="ciphertext")[: chunked.PREFIX_LEN]
    header = b64url_decode(obj["salt"], field="salt") + b64url_decode(obj["commitment"], field="commitment")
    if not p.bytes_eq(prefix, header):
        raise MalformedEnvelope("the header's salt and commitment are not the ciphertext's")
    return size, frame


def _parse_recipients(obj: dict[str, Any], version: int) -> tuple[dict[str, str], dict[str, str]]:
    recips = obj["recipients"]
    if not isinstance(recips, list) or not recips or len(recips) > MAX_RECIPIENTS:
        raise MalformedEnvelope(f"recipients must be a list of 1 to {MAX_RECIPIENTS} entries")
    fields = _RECIPIENT_FIELDS[version]
    recipients: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    previous = ""
    for r in recips:
        if not isinstance(r, dict) or set(r) != fields:
            raise MalformedEnvelope(f"each recipient must have exactly {', '.join(sorted(fields))}")
        dev = r["device"]
        if not isinstance(dev, str) or not DEVICE_ID_RE.fullmatch(dev):
            raise MalformedEnvelope("recipient device is not a device id")
        if dev <= previous:
            raise MalformedEnvelope("recipients must be sorted by device id, without repeats")
        previous = dev
        if version == 2:
            if not isinstance(r["key_id"], str) or not KEM_KEY_ID_RE.fullmatch(r["key_id"]):
                raise MalformedEnvelope("recipient key_id is not a KEM key id")
            key_ids[dev] = r["key_id"]
        if not isinstance(r["wrapped_key"], str):
            raise MalformedEnvelope("wrapped_key must be a string")
        b64url_check(r["wrapped_key"], field="wrapped_key")
        recipients[dev] = r["wrapped_key"]
    return recipients, key_ids


def parse_envelope(obj: Any) -> ParsedEnvelope:
    """Check every field's presence, type and form; refuse anything extra or ambiguous."""
    if not isinstance(obj, dict):
        raise MalformedEnvelope("envelope must be a JSON object")
    version = _version(obj)
    fields = _FIELDS[version]
    missing, extra = fields - set(obj), set(obj) - fields - _OPTIONAL[version]
    if missing or extra:
        problems = [f"missing {sorted(missing)}"] if missing else []
        problems += [f"unexpected {sorted(extra)}"] if extra else []
        raise MalformedEnvelope(f"envelope v{version} fields wrong: " + "; ".join(problems))
    for name in ("id", "channel", "sender", "created", "suite", "ciphertext"):
        if not isinstance(obj[name], str):
            raise MalformedEnvelope(f"{name} must be a string")
    if not UUID7_RE.fullmatch(obj["id"]):
        raise MalformedEnvelope("id must be a lower-case UUIDv7")
    if not SLUG_RE.fullmatch(obj["channel"]):
        raise MalformedEnvelope("channel is not a valid channel id")
    if not DEVICE_ID_RE.fullmatch(obj["sender"]):
        raise MalformedEnvelope("sender is not a device id")
    content_type = obj.get("content_type")
    if version == 1 and (not isinstance(content_type, str) or not 0 < len(content_type) <= 200):
        raise MalformedEnvelope("content_type must be 1 to 200 characters")
    if obj["suite"] not in KEM_SUITES:
        raise UnsupportedSuite(f"unsupported KEM suite {obj['suite']!r}")
    try:
        created = parse_time(obj["created"], field="created")
        label = Label.from_json(obj["label"])
        ciphertext_size, padded_size = _sizes(obj, version)
        recipients, key_ids = _parse_recipients(obj, version)
        refs = parse_refs(obj["attachments"]) if "attachments" in obj else ()
    except MalformedEnvelope:
        raise
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
        version,
        obj["id"],
        obj["channel"],
        obj["sender"],
        created,
        label,
        obj["suite"],
        ciphertext_size,
        padded_size,
        recipients,
        key_ids,
        tuple(sorted(sigs)),
        content_type if version == 1 else None,
        refs,
    )


def verify_envelope(
    parsed: ParsedEnvelope, sender_bundle: PublicBundle, *, required: Sequence[str] = (ED25519,)
) -> None:
    """Check that `sender_bundle` is the envelope's sender and that every signature verifies."""
    if sender_bundle.device_id != parsed.sender:
        raise BadSignature("the sender key bundle is not the envelope's sender device")
    verify_signatures(
        sender_bundle,
        _DOMAINS[parsed.version],
        parsed.signed_bytes,
        parsed.raw["signatures"],
        required=tuple(required),
    )


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted envelope: the content and the media type its sender gave it,
    and each attachment's body member (in the header's order: `envelope.attachments` holds
    their sizes and roots)."""

    envelope: ParsedEnvelope
    plaintext: bytes
    content_type: str
    attachments: tuple[AttachmentInfo, ...] = ()

    @property
    def label(self) -> Label:
        return self.envelope.label


def _unwrap(parsed: ParsedEnvelope, keys: DeviceKeys) -> bytes:
    me = keys.device_id
    wrapped = parsed.recipients.get(me)
    if wrapped is None:
        raise NotARecipient(f"device {me} is not among the envelope's recipients")
    if keys.kem_suite != parsed.suite:
        raise UnsupportedSuite(f"envelope suite {parsed.suite} does not match this device's key")
    if parsed.version == 1:
        info = _wrap_info_v1(parsed.id, me)
    else:
        key_id = keys.public.kem_key_id
        if parsed.key_ids[me] != key_id:
            raise WrongKeyId(
                f"the content key was wrapped to key {parsed.key_ids[me]}, not this device's {key_id}"
            )
        info = wrap_info_v2(parsed.id, me, key_id)
    try:
        return keys.unwrap(b64url_decode(wrapped, field="wrapped_key"), info)
    except p.PrimitiveError as e:
        raise DecryptionFailed("the wrapped key for this device does not unwrap") from e


def _open_v1(parsed: ParsedEnvelope, key: bytes) -> Opened:
    nonce, body = parsed.ciphertext[:_NONCE_LEN], parsed.ciphertext[_NONCE_LEN:]
    try:
        plaintext = p.aead_open(key, nonce, body, _aad_v1(parsed.unverified_header))
    except p.PrimitiveError as e:
        # The signatures verified, so the ciphertext is the sender's: the content was sealed
        # under another header, i.e. the label (or another header field) is not the bound one.
        raise LabelMismatch("the content is not bound to this header and label") from e
    assert parsed.content_type is not None
    return Opened(parsed, plaintext, parsed.content_type)


def _open_v2(parsed: ParsedEnvelope, key: bytes) -> Opened:
    ciphertext = parsed.ciphertext
    derived = chunked.derive(key, ciphertext[: chunked.SALT_LEN], content_context(parsed.raw))
    # Before anything is decrypted: the key this device was given is the one the signed
    # header commits to (the same check for every recipient, so all see one content).
    if not p.bytes_eq(derived.commitment, b64url_decode(parsed.raw["commitment"], field="commitment")):
        raise KeyCommitmentMismatch("the content key is not the one the signed header commits to")
    frame = chunked.decrypt_with(derived, ciphertext)
    body = parse_frame(frame)
    if [a.id for a in body.attachments] != [r.id for r in parsed.attachments]:
        raise MalformedContent("the body's attachments are not the ones the signed header names")
    return Opened(parsed, body.content, body.content_type, body.attachments)


def open_envelope(
    obj: Any,
    keys: DeviceKeys,
    sender_bundle: PublicBundle,
    *,
    expected_label: Label | None = None,
    required: Sequence[str] = (ED25519,),
    v1_refused: bool = False,
) -> Opened:
    """Parse, verify the sender's signatures, unwrap the key and decrypt.

    `expected_label` is the label something else claimed (an inbox listing, the server's index):
    it must equal the signed one, or LabelMismatch is raised. `v1_refused`: the policy's date
    for v1 has passed (MalformedEnvelope for a v1 envelope).
    """
    parsed = parse_envelope(obj)
    if parsed.version == 1 and v1_refused:
        raise MalformedEnvelope("envelope v1 is no longer accepted (the policy's v1 date has passed)")
    verify_envelope(parsed, sender_bundle, required=required)
    if expected_label is not None and expected_label != parsed.label:
        raise LabelMismatch("the label shown is not the label the sender signed")
    key = _unwrap(parsed, keys)
    return _open_v1(parsed, key) if parsed.version == 1 else _open_v2(parsed, key)
