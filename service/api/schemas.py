"""Request bodies: strict pydantic models (unknown fields refused, sizes bounded)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["ChannelCreate", "EnrolRequest", "MembersRequest", "PrincipalCreate",
           "PrincipalUpdate", "SubmitRequest"]

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Nation = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Upper = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrolRequest(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    bundle: dict[str, Any] = Field(description="signed bundle: {bundle, signatures}")


class PrincipalCreate(Strict):
    id: Slug
    display_name: Name
    nation: Nation
    kind: Literal["person", "system"] = "person"
    roles: list[Literal["analyst", "admin", "auditor"]] = Field(default_factory=lambda: ["analyst"],
                                                                 max_length=3)
    clearance: Upper
    compartments: list[Upper] = Field(default_factory=list, max_length=64)


class PrincipalUpdate(Strict):
    display_name: Name | None = None
    clearance: Upper | None = None
    compartments: list[Upper] | None = Field(default=None, max_length=64)
    roles: list[Literal["analyst", "admin", "auditor"]] | None = Field(default=None, max_length=3)
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
