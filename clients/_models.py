"""Typed results of the client: what the server answered, once the client has checked it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from liaison.crypto.encoding import b64url_encode
from liaison.crypto.labels import Label

__all__ = [
    "AttachmentMeta",
    "AuditEntry",
    "Channel",
    "Checkpoint",
    "DeviceInfo",
    "Enrolled",
    "Excluded",
    "InboxEvent",
    "InboxItem",
    "InboxPage",
    "LogVerification",
    "Me",
    "Message",
    "MessageProof",
    "NationRange",
    "OwnRecords",
    "Plan",
    "Recipient",
    "SavedAttachment",
    "Sent",
    "Witnessing",
]


@dataclass(frozen=True)
class _JSON:
    """The base of every model (each a frozen dataclass): its JSON form for --json output."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k in list(out):
            value = getattr(self, k)
            if isinstance(value, Label):
                out[k] = value.to_json()
            elif isinstance(value, bytes):
                del out[k]  # content never goes into JSON by accident; callers add it knowingly
        return out


@dataclass(frozen=True)
class Me(_JSON):
    """This device's principal as the server sees it now (`whoami`).

    Attributes:
        principal: the principal's id (a slug, e.g. `ukr-analyst`).
        device: this device's id (`d_` + 26 base32 characters, its keys' fingerprint).
        display_name: the principal's display name (free text set by an admin: escape it).
        nation: the principal's nation (e.g. `UKR`).
        kind: `person` or `system`.
        roles: the principal's roles (`analyst`, `admin`, `auditor`).
        clearance: the principal's clearance level (e.g. `SECRET`).
        compartments: the compartments the principal holds.
        status: `active` or `suspended`.
    """

    principal: str
    device: str
    display_name: str
    nation: str
    kind: str
    roles: tuple[str, ...]
    clearance: str
    compartments: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class Enrolled(_JSON):
    """A new profile, enrolled (`enrol`).

    Attributes:
        profile: the profile's name in the key store.
        principal: the principal the device was enrolled for.
        device: the new device's id.
        log_index: the log index of its `device.enrolled` entry (its receipt verified).
        log_key: the pinned log verifier key.
        server: the server's base URL.
    """

    profile: str
    principal: str
    device: str
    log_index: int
    log_key: str
    server: str


@dataclass(frozen=True)
class Channel(_JSON):
    """A channel the caller belongs to or (as an admin) may manage (`channels`).

    Attributes:
        id: the channel's id (a slug).
        name: its display name (free text set by an admin: escape it).
        ceiling: the highest label a message on it may carry, as a `Label`.
        ceiling_text: the ceiling as text (`SECRET//AIRDEF//REL TO UKR, USA`).
        members: the member principals' ids, sorted.
    """

    id: str
    name: str
    ceiling: Label
    ceiling_text: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Recipient(_JSON):
    """A device the message will be encrypted to; its key is proven in the log.

    Attributes:
        principal: the device's principal.
        device: the device's id.
        enrol_index: the log index of its `device.enrolled` entry (proven).
    """

    principal: str
    device: str
    enrol_index: int


@dataclass(frozen=True)
class Excluded(_JSON):
    """A member who would not receive a message, and why.

    Attributes:
        principal: the member's id.
        reason: `clearance`, `releasability`, `compartment`, `system-level`,
            `principal-suspended`, `no-device`, `no-device-for-suite` or `not-addressed`
            (not named in `to`).
    """

    principal: str
    reason: str


@dataclass(frozen=True)
class Plan(_JSON):
    """Who would receive a message (and who would not, and why), before anything is sent.

    Attributes:
        channel: the channel's id.
        label: the label planned for, as a `Label`.
        label_text: the label as text.
        recipients: the devices the message would be sealed to, each key proven in the log.
        excluded: the members who would not receive it, each with its reason.
        tree_size: the size of the checkpoint the recipients' keys were proven against.
        warnings: what the directory did not prove (protocol 9.9): a member left out without
            a verifiable reason (the server decides completeness; auditors see it).
    """

    channel: str
    label: Label
    label_text: str
    recipients: tuple[Recipient, ...]
    excluded: tuple[Excluded, ...]
    tree_size: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Witnessing(_JSON):
    """Whether a checkpoint the client relied on is witnessed under the profile's policy.

    `status`:
    * "witnessed": the checkpoint of `size`, or a checkpoint of `witnessed_size` at least as
      large and proven consistent with it, carries valid cosignatures from `cosigners`, at
      least `threshold` of the profile's `pinned` witnesses (fresh enough, with a max age);
    * "not-yet-witnessed": no such checkpoint was served within the policy's wait; the
      checkpoint is still signed by the pinned log key and consistent with what this profile
      saw ("logged"), but nobody else vouches that others see the same log;
    * "no-policy": the profile pins no witnesses, so no cosignature can be checked.

    Attributes:
        status: `witnessed`, `not-yet-witnessed` or `no-policy` (above).
        size: the tree size that had to be covered (the checkpoint relied on).
        witnessed_size: the size of the witnessed checkpoint that covers it, or the newest
            witnessed size seen (not yet witnessed), or None.
        cosigners: the pinned witnesses whose valid cosignatures counted.
        threshold: k, the cosignatures the policy requires.
        pinned: n, the witnesses the policy pins.
        ignored: signature lines that were not a pinned witness's valid cosignature.
        witnessed: (property) status is "witnessed".
        summary: (property) one line for people.
    """

    status: str
    size: int
    witnessed_size: int | None = None
    cosigners: tuple[str, ...] = ()
    threshold: int = 0
    pinned: int = 0
    ignored: int = 0

    @property
    def witnessed(self) -> bool:
        return self.status == "witnessed"

    @property
    def summary(self) -> str:
        """One line for people, e.g. `witnessed by 2 of 2 pinned witnesses (w1, w2)`."""
        if self.status == "no-policy":
            return "no witness policy: not checked against witnesses"
        if self.status == "witnessed":
            via = ""
            if self.witnessed_size != self.size:
                via = f", via consistent checkpoint {self.witnessed_size}"
            return (
                f"witnessed by {len(self.cosigners)} of {self.pinned} pinned witnesses "
                f"({', '.join(self.cosigners)}; {self.threshold} required{via})"
            )
        newest = f"; newest witnessed size {self.witnessed_size}" if self.witnessed_size is not None else ""
        required = f"{self.threshold} of {self.pinned} pinned witnesses required"
        return f"logged, not yet witnessed ({required}{newest})"


@dataclass(frozen=True)
class AttachmentMeta(_JSON):
    """One attachment of a message (`Message.attachments`, `Sent.attachments`): what its
    signed header and its encrypted body say of it. Its content is not fetched with it.

    Attributes:
        index: its place in the message, from 1 (what `save_attachment` and `liaison save
            --attachment` take).
        id: the attachment's id (`a_` and 26 base32 characters).
        name: the file name the sender gave (1 to 255 printable characters, no `/` or `\\`,
            never `.` or `..`): escape it before printing it, and never use it as a path.
        media_type: the media type the sender gave (e.g. `application/pdf`).
        length: the plaintext's length in bytes.
        sha256: the plaintext's SHA-256 (64 lower-case hex digits), checked on saving.
        size: the ciphertext's length in bytes (what the server stores and the policy limits).
        root: the ciphertext's chunk tree root (32 bytes), signed in the header (base64url in
            `to_json`).
    """

    index: int
    id: str
    name: str
    media_type: str
    length: int
    sha256: str
    size: int
    root: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "root": b64url_encode(self.root)}


@dataclass(frozen=True)
class SavedAttachment(_JSON):
    """An attachment downloaded, decrypted and checked (`save_attachment`): its chunk tree
    root is the signed header's, every chunk decrypted, and its length and SHA-256 are the
    ones the sender sealed.

    Attributes:
        message: the message's id.
        index: the attachment's place in the message, from 1.
        id: the attachment's id.
        name: the file name the sender gave (escape it before printing it).
        media_type: the media type the sender gave.
        length: the bytes written.
        sha256: their SHA-256, verified (64 lower-case hex digits).
        path: where it was written (a directory was given), else None (a file object).
    """

    message: str
    index: int
    id: str
    name: str
    media_type: str
    length: int
    sha256: str
    path: str | None = None


@dataclass(frozen=True)
class Sent(_JSON):
    """A message the server accepted, its receipt verified (`send`, `send_many`).

    Attributes:
        id: the message's id (the envelope's UUIDv7).
        log_index: the log index of its `message.accepted` entry, proven in the receipt.
        recipients: how many devices it was delivered to.
        tree_size: the size of the receipt's checkpoint (consistent with what the profile saw).
        label_text: the label it was sent at, as text.
        witness: the receipt's checkpoint under the profile's witness policy.
        warnings: what the directory did not prove about members left out (`Plan.warnings`).
        attachments: the files sent with it (`AttachmentMeta`s, in order), each uploaded,
            its chunk tree root checked by the server and signed in the header.
    """

    id: str
    log_index: int
    recipients: int
    tree_size: int
    label_text: str
    witness: Witnessing | None = None
    warnings: tuple[str, ...] = ()
    attachments: tuple[AttachmentMeta, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "attachments": [a.to_json() for a in self.attachments]}


@dataclass(frozen=True)
class InboxItem(_JSON):
    """An inbox entry as the server lists it: nothing here is verified until `read`.

    Attributes:
        id: the message's id (what `read`, `ack` and `prove` take).
        channel: the channel it was sent on.
        sender: the sending principal, as the server says.
        sender_device: the sending device, as the server says.
        label: the message's label as the server lists it (pass it to `read` as
            `expected_label`: it must be the label the sender signed).
        label_text: that label as text.
        created: when the sender sealed it (RFC 3339 UTC).
        size: the ciphertext's size in bytes.
        read: this device acknowledged it (`ack`).
        expired: its retention ran out and its ciphertext was destroyed.
        log_index: the log index of its `message.accepted` entry.
        cursor: its place in this device's inbox: `inbox(after=item.cursor)` lists what came
            after it, so keep the last cursor you processed to resume from there.
    """

    id: str
    channel: str
    sender: str
    sender_device: str
    label: Label
    label_text: str
    created: str
    size: int
    read: bool
    expired: bool
    log_index: int
    cursor: int


@dataclass(frozen=True)
class Message(_JSON):
    """A message whose signatures, label, sender key and log entry all verified (`read`).

    Attributes:
        id: the message's id.
        channel: the channel it was sent on (bound to the envelope).
        sender: the sending principal (its device key verified and proven in the log).
        sender_device: the sending device.
        label: the label the sender signed, as a `Label`.
        label_text: that label as text (draw it as the banner).
        created: when the sender sealed it (RFC 3339 UTC, seconds).
        content_type: the sender's content type (e.g. `text/plain; charset=utf-8`).
        plaintext: the content's exact bytes (not in `repr` or `to_json`).
        log_index: the log index of its `message.accepted` entry.
        log_proven: True when that entry was proven for exactly this envelope.
        witness: the proof's checkpoint under the profile's witness policy.
        attachments: its files (`AttachmentMeta`s, in the signed header's order); nothing of
            their content is fetched until `save_attachment`.
        text: (property) the plaintext as UTF-8 text (errors replaced); escape it before
            printing it to a terminal.
    """

    id: str
    channel: str
    sender: str
    sender_device: str
    label: Label
    label_text: str
    created: str
    content_type: str
    plaintext: bytes = field(repr=False)
    log_index: int
    log_proven: bool = False
    witness: Witnessing | None = None
    attachments: tuple[AttachmentMeta, ...] = ()

    @property
    def text(self) -> str:
        return self.plaintext.decode("utf-8", errors="replace")

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "attachments": [a.to_json() for a in self.attachments]}


@dataclass(frozen=True)
class InboxPage(_JSON):
    """One page of the inbox (`AsyncClient.inbox_page`): nothing in it is verified until `read`.

    Attributes:
        items: the page's messages, in the page's order.
        next: the cursor to continue from in the page's direction (`after=` oldest first,
            `before=` newest first) while `more` is true.
        more: whether more messages follow in that direction.
        withheld: this page's messages the principal may no longer read (its access was
            lowered since they were delivered).
        total: every message matching the query (with `totals`), else None.
        withheld_total: every withheld message matching the query (with `totals`), else None.
    """

    items: tuple[InboxItem, ...]
    next: int
    more: bool
    withheld: int
    total: int | None = None
    withheld_total: int | None = None


@dataclass(frozen=True)
class InboxEvent(_JSON):
    """A live stream event of `watch`: a message delivered to this device, as the inbox lists
    it (unverified until `read`), or the end of the stream.

    Attributes:
        type: `message`, or `closed` (the server ended the stream; see `reason`).
        id: the message's id.
        channel: the channel it was sent on.
        log_index: the log index of its `message.accepted` entry.
        cursor: its inbox cursor (resume a watch with `after=` the last one seen).
        sender: the sending principal, as the server says (unverified until `read`).
        sender_device: the sending device id.
        label_text: the label's banner text, as the server lists it.
        created: when the sender sealed it (RFC 3339).
        size: the padded size of its content.
        reason: why a `closed` stream ended (e.g. `device-revoked`, `server-stopping`).
    """

    type: str
    id: str
    channel: str
    log_index: int
    cursor: int = -1
    sender: str = ""
    sender_device: str = ""
    label_text: str = ""
    created: str = ""
    size: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Checkpoint(_JSON):
    """The log's checkpoint, verified and consistent with the one saved (`checkpoint`).

    Attributes:
        origin: the log's origin (its key's name).
        size: the tree size.
        root_hash: the RFC 6962 root hash (standard base64).
        note: the signed note as served (C2SP signed-note text).
        cosigners: pinned witnesses whose cosignature on this checkpoint verified (never a
            name the server chose).
        previous_size: the size of the checkpoint the profile had saved before, or None.
        ignored: signature lines other than the log's that did not verify as a pinned
            witness's.
        policy: the profile's witness policy, described (None: no policy).
        witnessed: the policy's quorum is met on this checkpoint.
        stale: pinned witnesses whose only valid cosignature is older than the policy's max age.
    """

    origin: str
    size: int
    root_hash: str
    note: str
    cosigners: tuple[str, ...]
    previous_size: int | None
    ignored: int = 0
    policy: str | None = None
    witnessed: bool = False
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceInfo(_JSON):
    """A device in an admin's inventory (`list_devices`), as the server lists it.

    Attributes:
        device: the device's id.
        principal: its principal.
        enrolled_at: when it was enrolled (RFC 3339 UTC), or None.
        revoked: it is revoked.
        revoked_at: when it was revoked, or None.
        last_seen_at: its last signed request (updated at most once a minute), or None.
    """

    device: str
    principal: str
    enrolled_at: str | None
    revoked: bool
    revoked_at: str | None
    last_seen_at: str | None


@dataclass(frozen=True)
class AuditEntry(_JSON):
    """One log entry (`audit_entries`), parsed from its bytes, not from the server's JSON.

    Attributes:
        index: its index in the log.
        type: the entry type (e.g. `message.accepted`, `access.denied`).
        time: when it was logged (RFC 3339 UTC); of an entry v2 whose time is sealed to this
            reader, its hour (`YYYY-MM-DDTHH:00:00Z`).
        actor: the device (or `system`) that caused it ("" when sealed).
        fields: every other field of the entry this reader may see (protocol 10.3).
        sealed: the committed fields of an entry v2 this reader may not open.
    """

    index: int
    type: str
    time: str
    actor: str
    fields: dict[str, Any]
    sealed: tuple[str, ...] = ()


@dataclass(frozen=True)
class MessageProof(_JSON):
    """A message's acceptance, proven in the log (`prove`).

    Attributes:
        id: the message's id.
        log_index: the index of its `message.accepted` entry.
        tree_size: the size of the checkpoint it was proven against.
        entry: the entry's fields.
        envelope_checked: the envelope was fetched (as a recipient) and its digest matches.
        witness: the proof's checkpoint under the profile's witness policy.
    """

    id: str
    log_index: int
    tree_size: int
    entry: dict[str, Any]
    envelope_checked: bool
    witness: Witnessing | None = None


@dataclass(frozen=True)
class LogVerification(_JSON):
    """The whole log verified (`verify_log`).

    Attributes:
        origin: the log's origin.
        size: the verified tree size.
        root_hash: the recomputed root hash (standard base64).
        tiles: how many hash tiles were fetched and authenticated.
        entries: how many entries were checked against their leaf hashes.
        previous_size: the size of the checkpoint the profile had saved before, or None.
        counts: entries per type.
        statements: directory statements replayed into the map heads (protocol 9.10).
        authority_checked: statements whose signer's authority was checked (9.4).
        authority_sealed: statements whose authority needs disclosures this auditor may not
            open (another nation's principals): counted, never guessed.
        fields_opened: committed fields of entries v2 this auditor opened, each recomputed
            against its commitment (protocol 10.6).
        fields_sealed: committed fields that stayed sealed to this auditor.
        entries_sealed: entries with at least one sealed field.
        shredded: entries named by an `audit.shredded` entry (their openings destroyed).
    """

    origin: str
    size: int
    root_hash: str
    tiles: int
    entries: int
    previous_size: int | None
    counts: dict[str, int]
    statements: int = 0
    authority_checked: int = 0
    authority_sealed: int = 0
    fields_opened: int = 0
    fields_sealed: int = 0
    entries_sealed: int = 0
    shredded: int = 0


@dataclass(frozen=True)
class OwnRecords(_JSON):
    """This device's own directory records, proven at a checkpoint (`check_own_records`).

    Attributes:
        principal: this device's principal.
        device: this device's id.
        principal_seq: the seq of the principal's newest statement (proven current).
        device_seq: the seq of this device's newest statement (proven current, active, this
            device's own bundle).
        tree_size: the size of the checkpoint they were proven at.
        map_version: the map version that checkpoint carries.
        facts: the principal's predicates as its statement opens them (`level>=SECRET`, ...).
        new_devices: other devices of this principal this profile had not seen before, each
            `{"device", "invited_by", "version"}`: one nobody expected is an alarm.
    """

    principal: str
    device: str
    principal_seq: int
    device_seq: int
    tree_size: int
    map_version: int
    facts: dict[str, bool] = field(default_factory=dict)
    new_devices: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class NationRange(_JSON):
    """A nation's whole directory range, proven complete at a checkpoint (`monitor_nation`).

    Attributes:
        nation: the nation monitored.
        tree_size: the size of the checkpoint it was proven at.
        map_version: the map version that checkpoint carries.
        principals: principal records in the range.
        devices: device records that are active.
        revoked: device records that are revoked.
        new_devices: devices this profile had not seen in the range before, each
            `{"device", "principal", "invited_by", "version"}` (`invited_by`: the device that
            signed its invitation, or "genesis"): a device nobody expected is an alarm.
    """

    nation: str
    tree_size: int
    map_version: int
    principals: int
    devices: int
    revoked: int
    new_devices: list[dict[str, Any]] = field(default_factory=list)
