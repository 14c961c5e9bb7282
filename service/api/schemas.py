"""Request bodies (strict pydantic models: unknown fields refused, sizes bounded), the label
parameter, and plain JSON answers."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from liaison.crypto.errors import LabelSyntaxError
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.names import DEFAULT_ROLES, NATION_PATTERN, SLUG_PATTERN, Role
from liaison.crypto.policy import Policy

from ..problems import Problem

__all__ = [
    "ChannelCreate",
    "EnrolChallengeRequest",
    "EnrolRequest",
    "MembersRequest",
    "PrincipalCreate",
    "PrincipalUpdate",
    "Slug",
    "SlugQuery",
    "SubmitRequest",
    "label_param",
    "plain",
]

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
#: A principal or channel id as a query parameter.
SlugQuery = Annotated[str, Query(pattern=SLUG_PATTERN)]
Nation = Annotated[str, StringConstraints(pattern=NATION_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Upper = Annotated[str, StringConstraints(min_length=1, max_length=32)]


def _default_roles() -> list[Role]:
    return list(DEFAULT_ROLES)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrolChallengeRequest(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    bundle: dict[str, Any] = Field(description="signed bundle: {bundle, signatures}")


class EnrolRequest(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    bundle: dict[str, Any] = Field(description="signed bundle: {bundle, signatures}")
    proof: dict[str, Any] | None = Field(
        default=None, description="the answered KEM challenge: {challenge, signatures} (required)"
    )


class PrincipalCreate(Strict):
    id: Slug
    display_name: Name
    nation: Nation
    kind: Literal["person", "system"] = "person"
    roles: list[Role] = Field(default_factory=_default_roles, max_length=3)
    clearance: Upper
    compartments: list[Upper] = Field(default_factory=list, max_length=64)


class PrincipalUpdate(Strict):
    display_name: Name | None = None
    clearance: Upper | None = None
    compartments: list[Upper] | None = Field(default=None, max_length=64)
    roles: list[Role] | None = Field(default=None, max_length=3)
    status: Literal["active", "suspended"] | None = None


class ChannelCreate(Strict):
    id: Slug
    name: Name | None = None
    ceiling: str | dict[str, Any] = Field(description="label text or label JSON")


class MembersRequest(Strict):
    principals: list[Slug] = Field(max_length=10_000)


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
    """A label from its text form or its JSON (as an object or a JSON string)."""
    try:
        if isinstance(value, dict):
            return Label.from_json(value, policy)
        if value.lstrip().startswith("{"):
            return Label.from_json(json.loads(value), policy)
        return parse_label(value, policy)
    except (LabelSyntaxError, ValueError) as e:
        raise Problem("malformed-label", str(e)) from None
