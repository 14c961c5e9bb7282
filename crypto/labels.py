"""Classification labels: the canonical JSON model and the banner text form.

Text form: ``LEVEL[//COMP[/COMP...]][//REL TO N1, N2, ...]``, for example
``SECRET//AIRDEF//REL TO FRA, UKR, USA``. ``REL TO COALITION`` expands to every nation of the
policy. Only the lowest level may omit ``REL TO`` (it then means the whole coalition): above
it, releasability must be stated, so that forgetting it can never widen a release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import LabelSyntaxError
from .names import COMPARTMENT_RE, NATION_RE
from .policy import Policy

__all__ = ["Label", "check_known", "format_label", "parse_label"]

_MAX_TEXT = 1024


@dataclass(frozen=True)
class Label:
    """A label. Lists are kept sorted and unique, so equal labels have equal canonical JSON."""

    policy: str
    classification: str
    rel: tuple[str, ...]
    compartments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rel", tuple(sorted(set(self.rel))))
        object.__setattr__(self, "compartments", tuple(sorted(set(self.compartments))))

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "classification": self.classification,
            "rel": list(self.rel),
            "compartments": list(self.compartments),
        }

    @classmethod
    def from_json(cls, obj: Any, policy: Policy | None = None) -> Label:
        """Parse label JSON strictly: exact fields, lists sorted and unique (one canonical form).

        With `policy`, also check that every name is one the policy knows.
        """
        if not isinstance(obj, dict) or set(obj) != {"policy", "classification", "rel", "compartments"}:
            raise LabelSyntaxError("label must have exactly policy, classification, rel, compartments")
        pol, level, rel, comps = obj["policy"], obj["classification"], obj["rel"], obj["compartments"]
        if not isinstance(pol, str) or not isinstance(level, str) or not pol or not level:
            raise LabelSyntaxError("label policy and classification must be non-empty strings")
        for name, lst, pattern in (("rel", rel, NATION_RE), ("compartments", comps, COMPARTMENT_RE)):
            if not isinstance(lst, list) or not all(isinstance(x, str) and pattern.fullmatch(x) for x in lst):
                raise LabelSyntaxError(f"label {name} must be a list of upper-case codes")
            if lst != sorted(set(lst)):
                raise LabelSyntaxError(f"label {name} must be sorted and unique")
        if not rel:
            raise LabelSyntaxError("label rel must name at least one nation")
        label = cls(pol, level, tuple(rel), tuple(comps))
        if policy is not None:
            check_known(label, policy)
        return label

    def text(self, policy: Policy | None = None) -> str:
        return format_label(self)


def check_known(label: Label, policy: Policy) -> None:
    """Refuse (LabelSyntaxError) a label naming a policy, level, nation or compartment that
    `policy` does not know."""
    if label.policy != policy.id:
        raise LabelSyntaxError(f"label is for policy {label.policy!r}, not {policy.id!r}")
    if not policy.has_level(label.classification):
        raise LabelSyntaxError(
            f"unknown classification {label.classification!r}; known: "
            + ", ".join(lv.name for lv in policy.levels)
        )
    unknown_n = set(label.rel) - set(policy.nations)
    if unknown_n:
        raise LabelSyntaxError(f"unknown nation(s) {', '.join(sorted(unknown_n))} in REL TO")
    unknown_c = set(label.compartments) - set(policy.compartments)
    if unknown_c:
        raise LabelSyntaxError(f"unknown compartment(s) {', '.join(sorted(unknown_c))}")


def format_label(label: Label) -> str:
    """The banner text form; always states REL TO explicitly."""
    parts = [label.classification]
    if label.compartments:
        parts.append("/".join(label.compartments))
    parts.append("REL TO " + ", ".join(label.rel))
    return "//".join(parts)


def parse_label(text: str, policy: Policy) -> Label:
    """Parse the banner text form against `policy`; errors say exactly what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise LabelSyntaxError("label text is empty")
    if len(text) > _MAX_TEXT:
        raise LabelSyntaxError("label text is too long")
    parts = [p.strip() for p in text.strip().split("//")]
    if any(not p for p in parts):
        raise LabelSyntaxError("label has an empty part between '//' separators")
    level = re.sub(r"\s+", " ", parts[0].upper())
    if not policy.has_level(level):
        raise LabelSyntaxError(
            f"unknown classification {parts[0]!r}; known: " + ", ".join(lv.name for lv in policy.levels)
        )
    rest = parts[1:]
    rel: tuple[str, ...] | None = None
    if rest and rest[-1].upper().startswith("REL TO"):
        rel = _parse_rel(rest.pop()[6:], policy)
    if any(part.upper().startswith("REL TO") for part in rest):
        raise LabelSyntaxError("REL TO must be the last part of the label")
    if len(rest) > 1:
        raise LabelSyntaxError("expected LEVEL//COMPARTMENTS//REL TO ...; too many parts")
    comps: tuple[str, ...] = ()
    if rest:
        raw = [c.strip().upper() for c in rest[0].split("/")]
        if any(not c for c in raw):
            raise LabelSyntaxError("empty compartment name")
        if len(set(raw)) != len(raw):
            raise LabelSyntaxError("a compartment is named twice")
        unknown = [c for c in raw if c not in policy.compartments]
        if unknown:
            raise LabelSyntaxError(
                f"unknown compartment(s) {', '.join(unknown)}; known: " + ", ".join(policy.compartments)
            )
        comps = tuple(raw)
    if rel is None:
        if policy.rank(level) != 0:
            raise LabelSyntaxError(
                f"{level} must state REL TO (for example '{level}//REL TO "
                f"{', '.join(policy.nations[:2])}' or 'REL TO COALITION')"
            )
        rel = policy.nations
    return Label(policy.id, level, rel, comps)


def _parse_rel(body: str, policy: Policy) -> tuple[str, ...]:
    names = [n.strip().upper() for n in body.split(",")]
    if not names or any(not n for n in names):
        raise LabelSyntaxError("REL TO needs a comma-separated list of nations")
    if names == ["COALITION"]:
        return policy.nations
    if len(set(names)) != len(names):
        raise LabelSyntaxError("a nation is named twice in REL TO")
    unknown = [n for n in names if n not in policy.nations]
    if unknown:
        raise LabelSyntaxError(
            f"unknown nation(s) {', '.join(unknown)} in REL TO; known: "
            + ", ".join(policy.nations)
            + " or COALITION"
        )
    return tuple(names)
