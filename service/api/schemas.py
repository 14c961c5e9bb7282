"""Request bodies (strict pydantic models: unknown fields refused, sizes bounded), the label
parameter, and plain JSON answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from liaison.crypto.content import ATTACHMENT_ID_RE
from liaison.crypto.encoding import loads_strict
from liaison.crypto.envelope import UUID7_RE
from liaison.crypto.errors import JSONRefused, LabelSyntaxError
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.names import DEFAULT_ROLES, NATION_PATTERN, SLUG_PATTERN, Role
from liaison.crypto.policy import Policy

from ..problems import Problem
from ..usecases.admin import MAX_CHANNEL_MEMBERS

__all__ = [
    "MAX_CHANNEL_MEMBERS",
    "AttachmentComplete",
    "AttachmentStart",
    "ChannelCreate",
    "CodeRequest",
    "EnrolChallengeRequest",
    "EnrolRequest",
    "MembersChange",
    "MembersRequest",
    "PrincipalCreate",
    "PrincipalUpdate",
    "Slug",
    "SlugQuery",
    "StatementOnly",
    "SubmitRequest",
    "label_param",
    "plain",
]

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
#: A principal or channel id as a query parameter.
SlugQuery = Annotated[str, Query(pattern=SLUG_PATTERN)]
Nation = Annotated[str, StringConstraints(pattern=NATION_PATTERN)]
#: A display or channel name: shown to people, so no control characters (C0, DEL, C1) and no
#: bidirectional overrides or isolates, which could make a terminal show other text.
Name = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+$"
    ),
]
Upper = Annotated[str, StringConstraints(min_length=1, max_length=32)]


def _default_roles() -> list[Role]:
    return list(DEFAULT_ROLES)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: An invitation key (protocol 9.8): unpadded base64url of a 32-byte Ed25519 public key.
InvitationKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
_STATEMENT = "the signed directory statement of this change (protocol 9.2, 9.3)"
_DISCLOSURES = "the openings of every commitment of the statement: {name: {salt, value}}"


class EnrolChallengeRequest(Strict):
    invitation_key: InvitationKey = Field(description="the key derived from the enrolment code (9.8)")
    bundle: dict[str, Any] = Field(description="signed bundle: {bundle, signatures}")


class EnrolRequest(Strict):
    invitation_key: InvitationKey = Field(description="the key derived from the enrolment code (9.8)")
    bundle: dict[str, Any] = Field(description="signed bundle: {bundle, signatures}")
    proof: dict[str, Any] | None = Field(
        default=None, description="the answered KEM challenge: {challenge, signatures} (required)"
    )
    statement: dict[str, Any] | None = Field(
        default=None, description="the device's statement, signed by it and by the invitation key (required)"
    )


class CodeRequest(Strict):
    invitation: dict[str, Any] = Field(description="the invitation statement the admin signed (9.8)")
    anchors: dict[str, Any] = Field(description="the anchors object the invitation's digest names (9.7)")


class StatementOnly(Strict):
    statement: dict[str, Any] | None = Field(default=None, description=_STATEMENT)
    disclosures: dict[str, Any] | None = Field(default=None, description=_DISCLOSURES)


class PrincipalCreate(Strict):
    id: Slug
    display_name: Name
    nation: Nation
    kind: Literal["person", "system"] = "person"
    roles: list[Role] = Field(default_factory=_default_roles, max_length=3)
    clearance: Upper
    compartments: list[Upper] = Field(default_factory=list, max_length=64)
    statement: dict[str, Any] | None = Field(default=None, description=_STATEMENT)
    disclosures: dict[str, Any] | None = Field(default=None, description=_DISCLOSURES)


class PrincipalUpdate(Strict):
    display_name: Name | None = None
    clearance: Upper | None = None
    compartments: list[Upper] | None = Field(default=None, max_length=64)
    roles: list[Role] | None = Field(default=None, max_length=3)
    status: Literal["active", "suspended"] | None = None
    statement: dict[str, Any] | None = Field(default=None, description=_STATEMENT)
    disclosures: dict[str, Any] | None = Field(default=None, description=_DISCLOSURES)


class ChannelCreate(Strict):
    id: Slug
    name: Name | None = None
    ceiling: str | dict[str, Any] = Field(description="label text or label JSON")
    statement: dict[str, Any] | None = Field(default=None, description=_STATEMENT)


class MembersRequest(Strict):
    principals: list[Slug] = Field(max_length=10_000)
    statement: dict[str, Any] | None = Field(default=None, description=_STATEMENT)

    def members(self) -> list[str]:
        """The distinct members, sorted; `too-many-members` past MAX_CHANNEL_MEMBERS."""
        wanted = sorted(set(self.principals))
        if len(wanted) > MAX_CHANNEL_MEMBERS:
            raise Problem(
                "too-many-members", f"{len(wanted)} members; a channel has at most {MAX_CHANNEL_MEMBERS}"
            )
        return wanted


class MembersChange(Strict):
    """Single members added and removed (PATCH): the others stay."""

    add: list[Slug] = Field(default_factory=list, max_length=MAX_CHANNEL_MEMBERS)
    remove: list[Slug] = Field(default_factory=list, max_length=MAX_CHANNEL_MEMBERS)
    statement: dict[str, Any] | None = Field(default=None, description=_STATEMENT)


class AttachmentStart(Strict):
    """Start an attachment's upload (protocol 11): its id, its message's id, its ciphertext size."""

    id: str = Field(pattern=ATTACHMENT_ID_RE.pattern, description="the attachment id the sender drew")
    message: str = Field(
        pattern=UUID7_RE.pattern,
        description="the id of the envelope that will name it (a UUIDv7)",
    )
    size: int = Field(ge=1096, le=1 << 41, description="the ciphertext's size in bytes")


class AttachmentComplete(Strict):
    root: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$", description="the chunk tree root (base64url)")


class SubmitRequest(Strict):
    envelope: dict[str, Any]
    to: list[Slug] | None = Field(default=None, max_length=1000)


def plain(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON answer built from plain JSON values. The busy and large answers (submit, fetch,
    inbox, recipients) use it: FastAPI's generic serialisation of a returned value (validation
    against the annotation, then jsonable_encoder over every nested field) cost more than the
    rest of a submit's framework work together."""
    return JSONResponse(body, status_code=status)


def label_param(policy: Policy, value: str | dict[str, Any]) -> Label:
    """A label from its text form or its JSON (as an object or a JSON string, parsed strictly:
    a repeated member or deep nesting is a malformed label)."""
    try:
        if isinstance(value, dict):
            return Label.from_json(value, policy)
        if value.lstrip().startswith("{"):
            return Label.from_json(loads_strict(value, max_depth=_LABEL_DEPTH), policy)
        return parse_label(value, policy)
    except JSONRefused as e:
        raise Problem("malformed-label", f"label JSON: {e.detail}") from None
    except (LabelSyntaxError, ValueError) as e:
        raise Problem("malformed-label", str(e)) from None


_LABEL_DEPTH = 2  # {"rel": [...]}: a label is an object of strings and lists of strings
