"""What each path answers, as pydantic models for the OpenAPI document (never used to build or
validate an answer at run time: the routes return plain JSON, and tests/service/test_openapi.py
checks real answers against these schemas). Each model carries one example answer (`EXAMPLE`),
which the same test validates against its schema.

Extra members are allowed (no `additionalProperties: false`): a client must ignore members it
does not know, so a later release may add some without breaking it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

__all__ = [
    "Acked",
    "AuditEntries",
    "ChannelList",
    "ChannelView",
    "CodeCancelled",
    "CodeList",
    "Consistency",
    "Cosigned",
    "DeviceList",
    "EnrolChallenge",
    "Enrolled",
    "EnrolmentCode",
    "Fetched",
    "Health",
    "Inbox",
    "Inclusion",
    "InvitationDoc",
    "LogKey",
    "Me",
    "MessageProof",
    "MyDevices",
    "NationRange",
    "PolicyDoc",
    "PrincipalList",
    "PrincipalView",
    "ProblemDocument",
    "Proven",
    "Ready",
    "Recipients",
    "Revoked",
    "StatementAccepted",
    "Submitted",
]

_CHECKPOINT = (
    "liaison.example/audit\n24\n4ZtRZsc6uEzVzMwCvxHxvR0FRIdlm3XIGn0pJc1aT2E=\n\n"
    "\u2014 liaison.example/audit h2f+7mOyNQ2MhGd6FgnCjB6m8Yq2wlG9wU3Tn6V5CzIUZbR1xP0S6wQ=\n"
)
_HASH = "mWVUw6r7kEMsBv5uGDfBC0xHkA8HY5ao1pI8nIBkY2A="
_ENTRY = "eyJhY3RvciI6ImRfd2doaSIsInR5cGUiOiJtZXNzYWdlLmFjY2VwdGVkIn0="
_DEVICE = "d_eltx536olqtqu7duwttgmbo5lk"
_MESSAGE = "01a21239-989e-7683-adf6-09a0da108104"
_TIME = "2026-11-25T10:21:34.288Z"
_LABEL = {
    "policy": "coalition-2026",
    "classification": "SECRET",
    "rel": ["UKR", "USA"],
    "compartments": ["AIRDEF"],
}
_PRINCIPAL = {
    "id": "ukr-analyst",
    "display_name": "UKR analyst",
    "nation": "UKR",
    "kind": "person",
    "roles": ["analyst"],
    "clearance": "SECRET",
    "compartments": ["AIRDEF"],
    "status": "active",
}
_BUNDLE = {
    "bundle": {
        "principal": "ukr-analyst",
        "sig": {"ed25519": "MCowBQYDK2VwAyEA…", "mldsa65": "…"},
        "kem": {"suite": "MLKEM768-X25519", "pk": "…"},
        "created": "2026-11-25T10:21:34Z",
    },
    "signatures": {"ed25519": "…", "mldsa65": "…"},
}
_PROOF = {"log_index": 12, "entry": _ENTRY, "inclusion_proof": [_HASH]}
_RECORD = {
    "device": _DEVICE,
    "principal": "ukr-analyst",
    "signed_bundle": _BUNDLE,
    "enrolled_at": _TIME,
    "revoked": False,
    "revoked_at": None,
    "last_seen_at": _TIME,
    "enrolment": _PROOF,
}


class Doc(BaseModel):
    """A documented answer and its example."""

    EXAMPLE: ClassVar[dict[str, Any]] = {}


class Label(Doc):
    """A classification label (protocol.md, section 4): lists sorted, without repeats."""

    policy: str
    classification: str
    rel: list[str]
    compartments: list[str]


class ProblemDocument(Doc):
    """An RFC 9457 problem (`application/problem+json`): branch on `type`, never on the text."""

    type: str = Field(pattern=r"^urn:liaison:problem:[a-z0-9-]+$", description="urn:liaison:problem:<slug>")
    title: str = Field(description="the type's title (may change)")
    status: int = Field(ge=400, le=599, description="the HTTP status, repeated")
    detail: str = Field(description="one line: what was wrong with this request (may change)")
    instance: str | None = Field(default=None, description="the request's path")


class LevelRule(Doc):
    name: str
    kem: list[str]
    signatures: list[str]
    max_bytes: int
    retention_days: int
    systems: bool
    shred_audit: bool | None = Field(
        default=None,
        description="present (true) when a message's audit openings are destroyed at its expiry "
        "(protocol.md 10.7)",
    )


class PolicyDoc(Doc):
    """The loaded policy; `sha256` is its file's hash."""

    id: str
    version: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    nations: list[str]
    compartments: list[str]
    levels: list[LevelRule]
    EXAMPLE = {
        "id": "coalition-2026",
        "version": 1,
        "sha256": "102fb19a3c6a4d1e7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",
        "nations": ["USA", "UKR", "FRA", "GBR", "DEU", "POL"],
        "compartments": ["AIRDEF", "MARITIME", "CYBER", "HUMINT"],
        "levels": [
            {
                "name": "UNCLASSIFIED",
                "kem": ["X25519", "MLKEM768-X25519"],
                "signatures": ["ed25519"],
                "max_bytes": 10485760,
                "retention_days": 365,
                "systems": True,
            }
        ],
    }


class LogKey(Doc):
    log_verifier_key: str = Field(description="C2SP note verifier key: pin it only if an invitation names it")
    EXAMPLE = {
        "log_verifier_key": "liaison.example/audit+879f6ed2+AQVGh2f+7mOyNQ2MhGd6FgnCjB6m8Yq2wlG9wU3Tn6V5"
    }


class Receipt(Doc):
    """Proof that the log holds an entry: its inclusion in a signed checkpoint."""

    log_index: int = Field(ge=0)
    tree_size: int = Field(ge=1)
    checkpoint: str = Field(description="C2SP signed checkpoint")
    inclusion_proof: list[str] = Field(description="RFC 6962 hashes, standard base64")
    entry: str | None = Field(default=None, description="the entry's bytes, standard base64")


_RECEIPT = {
    "log_index": 23,
    "tree_size": 24,
    "checkpoint": _CHECKPOINT,
    "inclusion_proof": [_HASH],
    "entry": _ENTRY,
}


class EnrolChallenge(Doc):
    device: str
    challenge: str = Field(description="base64url of HPKE enc || ciphertext, sealed to the bundle's KEM key")
    expires_at: str
    EXAMPLE = {"device": _DEVICE, "challenge": "BHc2…", "expires_at": _TIME}


class Enrolled(Doc):
    device: str
    principal: str
    log_index: int
    receipt: Receipt
    log_verifier_key: str
    EXAMPLE = {
        "device": _DEVICE,
        "principal": "ukr-analyst",
        "log_index": 23,
        "receipt": _RECEIPT,
        "log_verifier_key": LogKey.EXAMPLE["log_verifier_key"],
    }


class PrincipalView(Doc):
    """A principal as stored."""

    id: str
    display_name: str
    nation: str
    kind: str = Field(description="person or system")
    roles: list[str]
    clearance: str
    compartments: list[str]
    status: str = Field(description="active or suspended")
    EXAMPLE = _PRINCIPAL


class Me(Doc):
    principal: PrincipalView
    device: str
    EXAMPLE = {"principal": _PRINCIPAL, "device": _DEVICE}


class EntryProof(Doc):
    """An entry of the log (a device's enrolment or revocation) and its inclusion proof
    against the answer's checkpoint."""

    log_index: int
    entry: str
    inclusion_proof: list[str]


class DeviceRecord(Doc):
    device: str
    principal: str
    signed_bundle: dict[str, Any]
    enrolled_at: str | None
    revoked: bool
    revoked_at: str | None
    last_seen_at: str | None
    enrolment: EntryProof | None = None
    revocation: EntryProof | None = None


class DeviceList(Doc):
    """Devices with the proofs of their log entries, against one checkpoint."""

    checkpoint: str | None
    tree_size: int
    devices: list[DeviceRecord]
    EXAMPLE = {"checkpoint": _CHECKPOINT, "tree_size": 24, "devices": [_RECORD]}


class MyDeviceRecord(DeviceRecord):
    current: bool = Field(description="whether this is the device that asked")


class MyDevices(Doc):
    """The caller's own devices, revoked ones too, with their proofs (`GET /v1/me/devices`)."""

    checkpoint: str | None
    tree_size: int
    devices: list[MyDeviceRecord]
    EXAMPLE = {"checkpoint": _CHECKPOINT, "tree_size": 24, "devices": [{**_RECORD, "current": True}]}


class ListedPrincipal(PrincipalView):
    created_at: str
    updated_at: str


class PrincipalList(Doc):
    """One page of principals, by id; `next` is the `after` of the next page (null: the last)."""

    principals: list[ListedPrincipal]
    next: str | None
    EXAMPLE = {"principals": [{**_PRINCIPAL, "created_at": _TIME, "updated_at": _TIME}], "next": None}


class CodeRecord(Doc):
    """An enrolment code as listed: never the code itself."""

    id: str = Field(description="the first 16 hex digits of the code's stored hash")
    principal: str
    status: str = Field(description="pending, used, expired, cancelled or void")
    created_at: str
    expires_at: str
    issued_by: str
    used_at: str | None
    cancelled_at: str | None


_CODE = {
    "id": "3f9c2a71d04be8c5",
    "principal": "usa-x",
    "status": "pending",
    "created_at": _TIME,
    "expires_at": _TIME,
    "issued_by": _DEVICE,
    "used_at": None,
    "cancelled_at": None,
}


class CodeList(Doc):
    """One page of enrolment codes, newest first; `next` is the `offset` of the next page."""

    codes: list[CodeRecord]
    next: int | None
    EXAMPLE = {"codes": [_CODE], "next": None}


class CodeCancelled(CodeRecord):
    EXAMPLE = {**_CODE, "status": "cancelled", "cancelled_at": _TIME}


class ChannelView(Doc):
    id: str
    name: str
    ceiling: Label
    members: list[str]
    EXAMPLE = {
        "id": "ops",
        "name": "Operations",
        "ceiling": _LABEL,
        "members": ["ukr-analyst", "usa-analyst"],
    }


class ListedChannel(ChannelView):
    ceiling_text: str


class ChannelList(Doc):
    channels: list[ListedChannel]
    EXAMPLE = {"channels": [{**ChannelView.EXAMPLE, "ceiling_text": "SECRET//AIRDEF//REL TO UKR, USA"}]}


class Excluded(Doc):
    principal: str
    reason: str


class MapHeadProof(Doc):
    log_index: int = Field(ge=0)
    entry: str = Field(description="base64 of the map.head entry's bytes")
    inclusion_proof: list[str]


class ProvenRecord(Doc):
    statement: dict[str, Any] | None = Field(description="the newest signed statement (protocol 9.2)")
    version: int | None = Field(
        default=None, description="the map version it was written in (its leaf binds it)"
    )
    proof: dict[str, Any] | None = Field(description="map proof: {siblings, leaf} (protocol 9.5)")
    disclosures: dict[str, Any] | None = Field(default=None, description="openings of the facts asked for")


class Proven(Doc):
    """Directory records proven at a checkpoint: its `map.head` and each record's map proof."""

    checkpoint: str
    tree_size: int = Field(ge=1)
    map_head: MapHeadProof
    records: dict[str, ProvenRecord]
    roots: list[dict[str, Any]] = Field(description="the roots statements, seq 1 first")
    EXAMPLE = {
        "checkpoint": _CHECKPOINT,
        "tree_size": 24,
        "map_head": {"log_index": 23, "entry": _ENTRY, "inclusion_proof": [_HASH]},
        "records": {"channel:ops": {"statement": None, "proof": {"siblings": [], "leaf": None}}},
        "roots": [],
    }


class NationRange(Doc):
    """Every record of a nation's map range and the siblings proving the range complete."""

    checkpoint: str
    tree_size: int = Field(ge=1)
    map_head: MapHeadProof
    nation: str
    records: dict[str, dict[str, Any]] = Field(
        description="record -> {statement: its newest signed statement, version: the map version "
        "it was written in}"
    )
    signers: dict[str, ProvenRecord] = Field(
        default_factory=dict,
        description="device records of signers outside the range, proven at the same head",
    )
    siblings: list[str] | None = Field(
        description="the 16 siblings above the range (null: fewer than 2 records)"
    )
    EXAMPLE = {
        "checkpoint": _CHECKPOINT,
        "tree_size": 24,
        "map_head": {"log_index": 23, "entry": _ENTRY, "inclusion_proof": [_HASH]},
        "nation": "UKR",
        "records": {},
        "siblings": None,
    }


class AuditDisclosures(Doc):
    """The disclosures of directory statements an auditor may open, for its authority replay."""

    start: int = Field(ge=0)
    next: int = Field(ge=0, description="where to continue (the requested end when done)")
    disclosures: dict[str, dict[str, Any]] = Field(
        description="log index -> {predicate: {salt, value}}: every commitment of that statement opened"
    )
    sealed: list[int] = Field(
        description="log indexes of statements with commitments this caller may not open"
    )
    EXAMPLE = {
        "start": 0,
        "next": 24,
        "disclosures": {"3": {"active": {"salt": "mZ3hT1nQ6pX0bV8cJf2kEw", "value": True}}},
        "sealed": [17],
    }


class StatementAccepted(Doc):
    record: str
    seq: int = Field(ge=1)
    receipt: Receipt
    EXAMPLE = {"record": "roots", "seq": 1, "receipt": _RECEIPT}


class InvitationDoc(Doc):
    principal: str
    nation: str | None = Field(description="the principal's nation: the device statement's map range")
    invitation: dict[str, Any] | None = Field(description="the admin's signed invitation (none: genesis)")
    anchors: dict[str, Any] | None = Field(description="the anchors the invitation pins (protocol 9.7)")
    log_verifier_key: str
    EXAMPLE = {
        "principal": "root",
        "nation": "USA",
        "invitation": None,
        "anchors": None,
        "log_verifier_key": LogKey.EXAMPLE["log_verifier_key"],
    }


class Recipients(Doc):
    """Exactly the devices to encrypt to, why each other member is left out, and the proofs
    a client checks eligibility from (protocol 9.9)."""

    channel: str
    label: Label
    label_text: str
    suite: str
    checkpoint: str | None
    tree_size: int
    devices: list[DeviceRecord]
    excluded: list[Excluded]
    directory: Proven
    EXAMPLE = {
        "directory": Proven.EXAMPLE,
        "channel": "ops",
        "label": _LABEL,
        "label_text": "SECRET//AIRDEF//REL TO UKR, USA",
        "suite": "MLKEM768-X25519",
        "checkpoint": _CHECKPOINT,
        "tree_size": 24,
        "devices": [_RECORD],
        "excluded": [{"principal": "fra-analyst", "reason": "clearance"}],
    }


class Submitted(Receipt):
    """The accepted message's id, its recipient count and its receipt."""

    id: str
    recipients: int
    entry: str | None = None
    EXAMPLE = {"id": _MESSAGE, "recipients": 2, **_RECEIPT}


class Fetched(Doc):
    """An envelope as stored, and the proof of its `message.accepted` entry."""

    envelope: dict[str, Any] = Field(
        description="the envelope as stored: v2 (protocol.md 5.2), or v1 if stored before v2"
    )
    log_index: int
    channel: str
    sender: str
    label: Label
    receipt: Receipt
    EXAMPLE = {
        "envelope": {"v": 2, "id": _MESSAGE, "channel": "ops", "sender": "d_wghi…"},
        "log_index": 23,
        "channel": "ops",
        "sender": "usa-analyst",
        "label": _LABEL,
        "receipt": {**_RECEIPT, "tree_size": 31},
    }


class PartStored(Doc):
    number: int
    size: int
    sha256: str | None = Field(
        default=None,
        description="hex; always in a PUT's answer, in `stored` only where the store keeps it "
        "(not on an S3 store: then trust the size, the chunk tree root is checked at completion)",
    )
    EXAMPLE = {
        "number": 1,
        "size": 8388608,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    }


class AttachmentStatus(Doc):
    """An upload as its device sees it (protocol 11; docs/api.md, "Attachments")."""

    id: str
    message: str
    size: int = Field(description="ciphertext bytes")
    part_size: int = Field(description="every part's size but the last (the rest)")
    parts: int = Field(description="how many parts the upload has")
    state: str = Field(description="uploading, complete, attached, deleting or deleted")
    root: str | None = Field(default=None, description="the chunk tree root, once complete")
    stored: list[PartStored] | None = Field(default=None, description="the parts stored so far")
    offset: int | None = Field(
        default=None,
        description="GET only: the bytes stored from the start with no part missing (HEAD's Upload-Offset)",
    )
    EXAMPLE = {
        "id": "a_mfrggzdfmztwq2lknnwg23tpoa",
        "message": _MESSAGE,
        "size": 2216755272,
        "part_size": 8388608,
        "parts": 265,
        "state": "uploading",
        "stored": [],
    }


class Abandoned(Doc):
    id: str
    state: str = Field(description="abandoned: the upload and its parts are gone")
    EXAMPLE = {"id": "a_mfrggzdfmztwq2lknnwg23tpoa", "state": "abandoned"}


class Acked(Doc):
    id: str
    acked_at: str
    EXAMPLE = {"id": _MESSAGE, "acked_at": _TIME}


class InboxItem(Doc):
    cursor: int = Field(description="pass it as `after` to continue after this message")
    id: str
    channel: str
    sender: str
    sender_device: str
    label: Label
    created: str
    size: int
    read: bool
    fetched: bool
    expired: bool
    log_index: int


class Inbox(Doc):
    messages: list[InboxItem]
    next: int = Field(description="the cursor to continue from")
    more: bool
    withheld: int = Field(description="messages left out: the principal no longer dominates their label")
    EXAMPLE = {
        "messages": [
            {
                "cursor": 1,
                "id": _MESSAGE,
                "channel": "ops",
                "sender": "usa-analyst",
                "sender_device": "d_wghi…",
                "label": _LABEL,
                "created": "2026-11-25T10:21:34Z",
                "size": 2,
                "read": False,
                "fetched": False,
                "expired": False,
                "log_index": 23,
            }
        ],
        "next": 1,
        "more": False,
        "withheld": 0,
    }


class EnrolmentCode(Doc):
    """The recorded invitation: the code itself stays with the admin's client (protocol 9.8)."""

    principal: str
    id: str = Field(description="the code's id, for listing and cancelling")
    expires_at: str
    invitation_key: str = Field(description="base64url Ed25519 public key derived from the code")
    EXAMPLE = {
        "principal": "usa-x",
        "id": "3f2a9c0d11b2e4f5",
        "expires_at": _TIME,
        "invitation_key": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    }


class Revoked(Doc):
    device: str
    revoked_at: str
    log_index: int | None
    receipt: Receipt | None
    EXAMPLE = {
        "device": _DEVICE,
        "revoked_at": _TIME,
        "log_index": 26,
        "receipt": {**_RECEIPT, "log_index": 26},
    }


class AuditEntry(Doc):
    index: int
    entry: str = Field(description="the entry's bytes, standard base64")
    json_: dict[str, Any] = Field(
        alias="json", description="the same entry parsed (convenience: verify the bytes)"
    )


class AuditEntries(Doc):
    entries: list[AuditEntry]
    next: int = Field(description="the index to continue from")
    EXAMPLE = {
        "entries": [{"index": 0, "entry": _ENTRY, "json": {"type": "policy.loaded", "actor": "system"}}],
        "next": 1,
    }


class Inclusion(Doc):
    index: int
    size: int
    inclusion_proof: list[str]
    checkpoint: str
    EXAMPLE = {"index": 3, "size": 24, "inclusion_proof": [_HASH], "checkpoint": _CHECKPOINT}


class Consistency(Doc):
    old: int
    new: int
    consistency_proof: list[str]
    checkpoint: str
    EXAMPLE = {"old": 10, "new": 24, "consistency_proof": [_HASH], "checkpoint": _CHECKPOINT}


class MessageProof(Doc):
    id: str
    log_index: int
    entry: str
    inclusion_proof: list[str]
    tree_size: int
    checkpoint: str
    EXAMPLE = {
        "id": _MESSAGE,
        "log_index": 23,
        "entry": _ENTRY,
        "inclusion_proof": [_HASH],
        "tree_size": 24,
        "checkpoint": _CHECKPOINT,
    }


class Cosigned(Doc):
    size: int
    witness: str
    log_index: int | None
    EXAMPLE = {"size": 24, "witness": "witness.fra.example", "log_index": 25}


class Health(Doc):
    status: str
    EXAMPLE = {"status": "ok"}


class Ready(Doc):
    status: str
    schema_: str = Field(alias="schema")
    EXAMPLE = {"status": "ready", "schema": "0002"}
