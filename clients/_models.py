"""Typed results of the client: what the server answered, once the client has checked it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from liaison.crypto.labels import Label

__all__ = [
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
    "Plan",
    "Recipient",
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
    profile: str
    principal: str
    device: str
    log_index: int
    log_key: str
    server: str


@dataclass(frozen=True)
class Channel(_JSON):
    id: str
    name: str
    ceiling: Label
    ceiling_text: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Recipient(_JSON):
    """A device the message will be encrypted to; its key is proven in the log."""

    principal: str
    device: str
    enrol_index: int


@dataclass(frozen=True)
class Excluded(_JSON):
    principal: str
    reason: str


@dataclass(frozen=True)
class Plan(_JSON):
    """Who would receive a message (and who would not, and why), before anything is sent."""

    channel: str
    label: Label
    label_text: str
    recipients: tuple[Recipient, ...]
    excluded: tuple[Excluded, ...]
    tree_size: int


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
class Sent(_JSON):
    id: str
    log_index: int
    recipients: int
    tree_size: int
    label_text: str
    #: The receipt's checkpoint under the profile's witness policy.
    witness: Witnessing | None = None


@dataclass(frozen=True)
class InboxItem(_JSON):
    """An inbox entry as the server lists it: nothing here is verified until `read`."""

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
    """A message whose signatures, label, sender key and log entry all verified."""

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
    #: True when the log's `message.accepted` entry for exactly this envelope was proven.
    log_proven: bool = False
    #: The proof's checkpoint under the profile's witness policy (None without a proof).
    witness: Witnessing | None = None

    @property
    def text(self) -> str:
        return self.plaintext.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class InboxPage(_JSON):
    """One page of the inbox (`AsyncClient.inbox_page`): nothing in it is verified until `read`.

    `next` is the cursor to continue from in the page's direction (`after=` oldest first,
    `before=` newest first) while `more` is true. `withheld` counts this page's messages
    the principal may no longer read (its access was lowered since they were delivered);
    `total` and `withheld_total` count every message matching the query (with `totals`).
    """

    items: tuple[InboxItem, ...]
    next: int
    more: bool
    withheld: int
    total: int | None = None
    withheld_total: int | None = None


@dataclass(frozen=True)
class InboxEvent(_JSON):
    """A live stream event. `type` "message": a message delivered to this device, as the
    inbox lists it (unverified until `read`), with its inbox `cursor`; "closed": the server
    ended the stream, `reason` says why (e.g. `device-revoked`)."""

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
    origin: str
    size: int
    root_hash: str
    note: str
    #: Pinned witnesses whose cosignature on this checkpoint verified (never a served name).
    cosigners: tuple[str, ...]
    previous_size: int | None
    #: Signature lines other than the log's that did not verify as a pinned witness's.
    ignored: int = 0
    #: The profile's witness policy, described (None: no policy).
    policy: str | None = None
    #: The policy's quorum is met on this checkpoint.
    witnessed: bool = False
    #: Pinned witnesses whose only valid cosignature is older than the policy's max age.
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceInfo(_JSON):
    device: str
    principal: str
    enrolled_at: str | None
    revoked: bool
    revoked_at: str | None
    last_seen_at: str | None


@dataclass(frozen=True)
class AuditEntry(_JSON):
    index: int
    type: str
    time: str
    actor: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class MessageProof(_JSON):
    id: str
    log_index: int
    tree_size: int
    entry: dict[str, Any]
    envelope_checked: bool
    witness: Witnessing | None = None


@dataclass(frozen=True)
class LogVerification(_JSON):
    origin: str
    size: int
    root_hash: str
    tiles: int
    entries: int
    previous_size: int | None
    counts: dict[str, int]
