"""Read-side value objects built from rows: principals as policy subjects, labels from JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from liaison.crypto.labels import Label
from liaison.crypto.policy import Subject

from ..storage.models import Principal

__all__ = ["PrincipalView", "label_of"]


@dataclass(frozen=True)
class PrincipalView:
    id: str
    display_name: str
    nation: str
    kind: str
    roles: tuple[str, ...]
    clearance: str
    compartments: frozenset[str]
    status: str

    @classmethod
    def of(cls, row: Principal | Any) -> PrincipalView:
        """From a `Principal` row, or any object with its column attributes."""
        return cls(
            row.id,
            row.display_name,
            row.nation,
            row.kind,
            tuple(json.loads(row.roles)),
            row.clearance,
            frozenset(json.loads(row.compartments)),
            row.status,
        )

    @property
    def subject(self) -> Subject:
        return Subject(self.nation, self.clearance, self.compartments, self.kind, self.status == "active")

    @property
    def is_root(self) -> bool:
        return self.id == "root"

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "nation": self.nation,
            "kind": self.kind,
            "roles": list(self.roles),
            "clearance": self.clearance,
            "compartments": sorted(self.compartments),
            "status": self.status,
        }


def label_of(text: str) -> Label:
    return Label.from_json(json.loads(text))
