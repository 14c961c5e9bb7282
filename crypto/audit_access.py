"""Who may open which committed field of an audit entry v2 (protocol 10.4): pure functions.

Every committed field of an entry has a **scope** the server fills in from what it knows of
the entry (the message's label, the nation of the principal a field is about):

    ("label", L)      a message's channel, label, recipients, size, ...: an auditor (or admin)
                      who dominates L now opens it; so does a party to the message (its
                      sender or a recipient, through its receipt, not through this table)
    ("nation", N)     a personnel field (a principal's attributes, a device, an enrolment
                      code's record) of nation N: an auditor or admin of nation N
    ("auditors",)     the service's own doings (policy loaded, a witness cosigned, openings
                      and disclosures served): any auditor
    ("root",)         root's auditors only (the default for a field this table does not know)

Root's auditors (an auditor of the root principal) open every field. An admin without the
auditor role opens nothing beyond its own nation's personnel fields (issue 14, item 2).
`FIELD_SCOPES` says, per entry type, which kind of scope each field has; a field it does not
list is `root`: a new field is sealed to everyone else until it is classified here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .policy import Policy, Subject, dominates

__all__ = ["FIELD_SCOPES", "Opener", "Scope", "openable", "scope_kind"]

#: ("label", Label or its JSON) | ("nation", "UKR") | ("auditors",) | ("root",)
Scope = tuple[Any, ...]

_MESSAGE = {"actor", "time", "id", "channel", "sender", "label", "recipients", "size", "device"}

#: entry type -> committed field -> kind of scope ("label", "nation", "auditors"). The field
#: names are those the service logs (service/usecases); `actor` and `time` are every entry's.
FIELD_SCOPES: Mapping[str, Mapping[str, str]] = {
    "message.accepted": dict.fromkeys(_MESSAGE, "label"),
    "message.delivered": dict.fromkeys(_MESSAGE, "label"),
    "message.acked": dict.fromkeys(_MESSAGE, "label"),
    "message.expired": dict.fromkeys((*_MESSAGE, "accepted_index"), "label"),
    # A device's first download of an attachment; an expired message's attachments deleted.
    "message.attachment_fetched": dict.fromkeys((*_MESSAGE, "attachment"), "label"),
    "message.attachments_deleted": dict.fromkeys((*_MESSAGE, "attachments", "bytes"), "label"),
    # A refused submit: who and why to its nation; the envelope id, to root's auditors (the
    # label it claimed is not trusted: the refusal may be for that label).
    "message.rejected": dict.fromkeys(("actor", "time", "reason", "detail"), "nation"),
    "recipients.queried": dict.fromkeys(("actor", "time", "channel", "label"), "label"),
    # Who was refused and why, to its nation; what it asked for names a channel or label.
    "access.denied": dict.fromkeys(("actor", "time", "who", "why"), "nation"),
    "principal.created": dict.fromkeys(("actor", "time", "principal"), "nation"),
    "principal.updated": dict.fromkeys(("actor", "time", "principal", "changed"), "nation"),
    "enrolment.code_issued": dict.fromkeys(("actor", "time", "principal", "expires", "code_id"), "nation"),
    "enrolment.code_cancelled": dict.fromkeys(("actor", "time", "principal", "code_id"), "nation"),
    "device.enrolled": dict.fromkeys(
        ("actor", "time", "device", "principal", "bundle_digest", "suite", "issued_by"), "nation"
    ),
    "device.revoked": dict.fromkeys(("actor", "time", "device", "principal"), "nation"),
    "channel.created": dict.fromkeys(("actor", "time", "channel", "name", "ceiling"), "label"),
    "channel.members": dict.fromkeys(("actor", "time", "channel", "members", "added", "removed"), "label"),
    "policy.loaded": dict.fromkeys(("actor", "time", "policy", "version", "sha256"), "auditors"),
    # Uploads named by no accepted message within their age, swept (random ids and sizes only).
    "attachment.uploads_swept": dict.fromkeys(
        ("actor", "time", "attachments", "count", "bytes", "ttl_seconds"), "auditors"
    ),
    "witness.cosigned": dict.fromkeys(
        ("actor", "time", "witness", "key_id", "size", "root_hash", "timestamp"), "auditors"
    ),
    "audit.disclosed": dict.fromkeys(("actor", "time", "start", "end", "opened", "sealed"), "auditors"),
    "audit.opened": dict.fromkeys(("actor", "time", "indexes", "fields"), "auditors"),
    "audit.shredded": dict.fromkeys(("actor", "time", "reason"), "auditors"),
}


def scope_kind(type_: str, name: str) -> str:
    """The kind of scope of field `name` of an entry of `type_` ("root" when unlisted)."""
    return FIELD_SCOPES.get(type_, {}).get(name, "root")


@dataclass(frozen=True)
class Opener:
    """The principal asking for openings: its subject (nation, clearance, compartments),
    whether it holds the auditor or admin role, and whether it is the root principal."""

    subject: Subject
    auditor: bool
    admin: bool
    root: bool

    @property
    def root_auditor(self) -> bool:
        return self.root and (self.auditor or self.admin)


def _may(policy: Policy, who: Opener, scope: Scope) -> bool:
    if who.root_auditor:
        return True
    if not (who.auditor or who.admin) or not scope:
        return False
    kind = scope[0]
    if kind == "nation":
        return len(scope) == 2 and scope[1] == who.subject.nation
    if not who.auditor:  # an admin alone: its own nation's personnel fields only
        return False
    if kind == "auditors":
        return True
    if kind == "label":
        return len(scope) == 2 and scope[1] is not None and dominates(policy, who.subject, scope[1])
    return False


def openable(policy: Policy, who: Opener, scopes: Mapping[str, Scope], fields: Iterable[str]) -> set[str]:
    """The fields among `fields` that `who` may open, given each field's scope (a field
    without one is root's only)."""
    return {name for name in fields if _may(policy, who, scopes.get(name, ("root",)))}
