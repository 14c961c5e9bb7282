"""The classification policy: its TOML model, and pure access decisions (no I/O, no default allow).

A policy arrives as a TOML file (`parse_policy`) or as the JSON that `Policy.to_json` writes
and `GET /v1/policy` serves (`Policy.from_json`); both are checked by one validator,
`_validated`, so they accept and refuse exactly the same policies.

Every decision is a function of facts passed in; a refusal raises `PolicyViolation` whose
`reason` is a stable slug the service turns into a problem type and an audit entry.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .content import MAX_ATTACHMENTS
from .encoding import format_time, parse_time
from .errors import MalformedError, PolicyViolation
from .names import (
    COMPARTMENT_RE,
    ED25519,
    KEM_SUITES,
    MLDSA65,
    NATION_RE,
    ROLES,
    SIGNATURE_ALGS,
    SLUG_RE,
    Role,
)

__all__ = [
    "LevelRule",
    "MemberChange",
    "Policy",
    "Subject",
    "check_admin",
    "check_ceiling",
    "check_channel_admin",
    "check_dominates",
    "check_grant",
    "check_members_change",
    "check_roles",
    "check_suite",
    "dominates",
    "may_read_message_entry",
    "parse_policy",
    "under_ceiling",
]

_NAME_RE = re.compile(r"^[A-Z][A-Z0-9 _-]{0,31}$")
_ADMIN: Role = "admin"  # the role that may manage principals
_BASE_ROLE: Role = "analyst"  # every principal's role: it carries no privilege
_FIELDS = frozenset({"id", "version", "nations", "compartments", "levels", "envelopes"})
_LEVEL_FIELDS = frozenset(
    {
        "name",
        "kem",
        "signatures",
        "max_bytes",
        "retention_days",
        "systems",
        "shred_audit",
        "max_attachments",
        "max_attachment_bytes",
    }
)
#: A policy file's SHA-256 in lower-case hex, or "" for a policy that did not come from a file.
_SHA256_RE = re.compile(r"(?:[0-9a-f]{64})?")


@dataclass(frozen=True)
class LevelRule:
    """What a classification level allows: KEM suites, required signatures, size, retention."""

    name: str
    kem: tuple[str, ...]
    signatures: tuple[str, ...]
    max_bytes: int
    retention_days: int
    systems: bool
    #: Whether a message's audit openings are destroyed when it expires (protocol 10.7).
    shred_audit: bool = False
    #: How many attachments a message may carry (protocol 11.3); 0: none at this level.
    max_attachments: int = 0
    #: The largest attachment, in ciphertext bytes (its padded size plus the encryption's).
    max_attachment_bytes: int = 0


@dataclass(frozen=True)
class Policy:
    """A loaded policy file. `levels` are ordered lowest first."""

    id: str
    version: int
    nations: tuple[str, ...]
    compartments: tuple[str, ...]
    levels: tuple[LevelRule, ...]
    sha256: str = ""
    #: After this instant clients refuse envelopes v1 (protocol 5.4); None: until they expire.
    v1_readable_until: datetime | None = None
    _rank: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._rank.update({lv.name: i for i, lv in enumerate(self.levels)})

    def rank(self, level: str) -> int:
        try:
            return self._rank[level]
        except KeyError:
            raise PolicyViolation("unknown-level", f"unknown classification {level!r}") from None

    def rule(self, level: str) -> LevelRule:
        return self.levels[self.rank(level)]

    def has_level(self, level: str) -> bool:
        return level in self._rank

    def v1_refused(self, now: datetime) -> bool:
        """Whether a client must refuse an envelope v1 at `now` (protocol 5.4)."""
        return self.v1_readable_until is not None and now >= self.v1_readable_until

    def to_json(self) -> dict[str, Any]:
        """The JSON form (`GET /v1/policy`): the file's fields, and the file's `sha256`."""
        out = self._json()
        if self.v1_readable_until is not None:
            out["envelopes"] = {"v1_readable_until": format_time(self.v1_readable_until, millis=False)}
        return out

    def _json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "sha256": self.sha256,
            "nations": list(self.nations),
            "compartments": list(self.compartments),
            "levels": [
                {
                    "name": lv.name,
                    "kem": list(lv.kem),
                    "signatures": list(lv.signatures),
                    "max_bytes": lv.max_bytes,
                    "retention_days": lv.retention_days,
                    "systems": lv.systems,
                    # Only when set: a policy without it keeps the JSON form it had.
                    **({"shred_audit": True} if lv.shred_audit else {}),
                    **(
                        {
                            "max_attachments": lv.max_attachments,
                            "max_attachment_bytes": lv.max_attachment_bytes,
                        }
                        if lv.max_attachments
                        else {}
                    ),
                }
                for lv in self.levels
            ],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Policy:
        """The policy `to_json` wrote, validated exactly as `parse_policy` validates a file.

        `sha256` is kept as given, not recomputed: it is the hash of the policy file the
        policy was loaded from, which a client can compare with the one that the audit log's
        `policy.loaded` entry records (no JSON rendering of the policy has that hash).
        """
        if not isinstance(obj, dict):
            raise _err("must be an object")
        sha256 = obj.get("sha256")
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise _err("sha256 must be the policy file's SHA-256 in lower-case hex")
        return _validated({k: v for k, v in obj.items() if k != "sha256"}, sha256)


def _err(msg: str) -> MalformedError:
    return MalformedError(f"policy: {msg}")


def _str_list(obj: dict[str, Any], key: str, pattern: re.Pattern[str], where: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _err(f"{where}{key} must be a non-empty list of strings")
    bad = [v for v in value if not pattern.fullmatch(v)]
    if bad:
        raise _err(f"{where}{key} has invalid entries: {', '.join(map(repr, bad))}")
    if len(set(value)) != len(value):
        raise _err(f"{where}{key} has duplicates")
    return tuple(value)


def _level(obj: Any, i: int) -> LevelRule:
    where = f"levels[{i}]."
    if not isinstance(obj, dict):
        raise _err(f"levels[{i}] must be a table")
    extra = set(obj) - _LEVEL_FIELDS
    if extra:
        raise _err(f"{where} unknown keys {sorted(extra)}")
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or "//" in name:
        raise _err(f"{where}name must be an upper-case level name")
    kem = _str_list(obj, "kem", re.compile(r".+"), where)
    if not set(kem) <= set(KEM_SUITES):
        raise _err(f"{where}kem may only name {sorted(KEM_SUITES)}")
    sigs = _str_list(obj, "signatures", re.compile(r".+"), where)
    if not set(sigs) <= set(SIGNATURE_ALGS) or ED25519 not in sigs:
        raise _err(f"{where}signatures must include {ED25519} and may add {MLDSA65}")
    max_bytes, days, systems = obj.get("max_bytes"), obj.get("retention_days"), obj.get("systems")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or not 1 <= max_bytes <= 1 << 30:
        raise _err(f"{where}max_bytes must be an integer between 1 and 2^30")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        raise _err(f"{where}retention_days must be an integer between 1 and 36500")
    if not isinstance(systems, bool):
        raise _err(f"{where}systems must be true or false")
    shred = obj.get("shred_audit", False)
    if not isinstance(shred, bool):
        raise _err(f"{where}shred_audit must be true or false")
    count, largest = obj.get("max_attachments", 0), obj.get("max_attachment_bytes", 0)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_ATTACHMENTS:
        raise _err(f"{where}max_attachments must be an integer between 0 and {MAX_ATTACHMENTS}")
    if not isinstance(largest, int) or isinstance(largest, bool) or not 0 <= largest <= 1 << 40:
        raise _err(f"{where}max_attachment_bytes must be an integer between 0 and 2^40")
    if (count == 0) != (largest == 0):
        raise _err(f"{where}max_attachments and max_attachment_bytes are both 0 or both set")
    return LevelRule(name, kem, sigs, max_bytes, days, systems, shred, count, largest)


def parse_policy(text: str | bytes) -> Policy:
    """Parse and validate a policy TOML document; every problem is a MalformedError naming it."""
    raw = text.encode() if isinstance(text, str) else text
    try:
        obj = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _err(f"not valid TOML: {e}") from e
    return _validated(obj, hashlib.sha256(raw).hexdigest())


def _validated(obj: dict[str, Any], sha256: str) -> Policy:
    """The one check of a policy's fields, read from TOML or from JSON."""
    extra = set(obj) - _FIELDS
    if extra:
        raise _err(f"unknown keys {sorted(extra)}")
    pid, version = obj.get("id"), obj.get("version")
    if not isinstance(pid, str) or not SLUG_RE.fullmatch(pid):
        raise _err("id must be a lower-case slug")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _err("version must be a positive integer")
    nations = _str_list(obj, "nations", NATION_RE, "")
    comps = _str_list(obj, "compartments", COMPARTMENT_RE, "") if obj.get("compartments") != [] else ()
    levels_raw = obj.get("levels")
    if not isinstance(levels_raw, list) or not levels_raw:
        raise _err("levels must be a non-empty array of tables")
    levels = tuple(_level(lv, i) for i, lv in enumerate(levels_raw))
    if len({lv.name for lv in levels}) != len(levels):
        raise _err("level names must be unique")
    return Policy(pid, version, nations, comps, levels, sha256, v1_readable_until=_v1_until(obj))


def _v1_until(obj: dict[str, Any]) -> datetime | None:
    """`[envelopes] v1_readable_until`: a TOML offset date-time, or RFC 3339 text in JSON."""
    table = obj.get("envelopes")
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) - {"v1_readable_until"}:
        raise _err("envelopes may only hold v1_readable_until")
    value = table.get("v1_readable_until")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_time(value, field="v1_readable_until")
        except MalformedError as e:
            raise _err(f"envelopes.{e}") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _err(
            "envelopes.v1_readable_until must be a date-time with an offset (e.g. 2027-06-30T00:00:00Z)"
        )
    return value


@dataclass(frozen=True)
class Subject:
    """The facts about a principal that access decisions use."""

    nation: str
    clearance: str
    compartments: frozenset[str]
    kind: str = "person"  # person | system
    active: bool = True


def check_dominates(policy: Policy, subject: Subject, label: Any) -> None:
    """Raise PolicyViolation unless `subject` may read (and write) at `label` (SPEC 3)."""
    if not subject.active:
        raise PolicyViolation("principal-suspended", "principal is not active")
    if label.policy != policy.id:
        raise PolicyViolation("wrong-policy", f"label is for policy {label.policy!r}")
    if policy.rank(subject.clearance) < policy.rank(label.classification):
        raise PolicyViolation("clearance", f"clearance {subject.clearance} is below {label.classification}")
    if subject.nation not in label.rel:
        raise PolicyViolation("releasability", f"{subject.nation} is not in REL TO")
    missing = set(label.compartments) - subject.compartments
    if missing:
        raise PolicyViolation("compartment", f"missing compartment(s) {', '.join(sorted(missing))}")
    if subject.kind == "system" and not policy.rule(label.classification).systems:
        raise PolicyViolation("system-level", f"systems may not handle {label.classification} at this policy")


def dominates(policy: Policy, subject: Subject, label: Any) -> bool:
    try:
        check_dominates(policy, subject, label)
    except PolicyViolation:
        return False
    return True


def check_ceiling(policy: Policy, label: Any, ceiling: Any) -> None:
    """Raise unless `label` lies under the channel `ceiling`: level, rel and compartments."""
    if policy.rank(label.classification) > policy.rank(ceiling.classification):
        raise PolicyViolation("above-ceiling", "classification is above the channel ceiling")
    if not set(label.rel) <= set(ceiling.rel):
        raise PolicyViolation("above-ceiling", "REL TO names a nation outside the channel ceiling")
    if not set(label.compartments) <= set(ceiling.compartments):
        raise PolicyViolation("above-ceiling", "compartment outside the channel ceiling")


def under_ceiling(policy: Policy, label: Any, ceiling: Any) -> bool:
    try:
        check_ceiling(policy, label, ceiling)
    except PolicyViolation:
        return False
    return True


def check_suite(policy: Policy, label: Any, suite: str, signatures: Iterable[str]) -> None:
    """Raise unless the KEM suite is allowed at the label's level and every required
    signature algorithm is present."""
    rule = policy.rule(label.classification)
    if suite not in rule.kem:
        raise PolicyViolation(
            "suite-not-allowed", f"suite {suite} is not allowed at {rule.name} ({', '.join(rule.kem)})"
        )
    missing = set(rule.signatures) - set(signatures)
    if missing:
        raise PolicyViolation(
            "signature-required", f"{rule.name} requires signature(s) {', '.join(sorted(missing))}"
        )


def check_admin(admin: Subject, admin_roles: Iterable[str]) -> None:
    """Raise `not-admin` unless `admin` is an active principal holding the `admin` role."""
    if _ADMIN not in set(admin_roles) or not admin.active:
        raise PolicyViolation("not-admin", "only an active admin may do this")


def check_roles(admin_roles: Iterable[str], root: bool, roles: Iterable[str]) -> None:
    """Raise unless an admin holding `admin_roles` may grant (or manage a holder of) `roles`.

    Every role must be one the policy knows (`unknown-role`). The root admin grants any of
    them. Any other admin grants no role above its own (`grant-above-own`): only roles it
    holds itself, and never `admin` (only the root admin creates admins). `analyst`, the base
    role, carries no privilege and any admin may grant it.
    """
    wanted = set(roles)
    unknown = wanted - set(ROLES)
    if unknown:
        raise PolicyViolation("unknown-role", f"unknown role(s) {', '.join(sorted(unknown))}")
    if root:
        return
    if _ADMIN in wanted:
        raise PolicyViolation("grant-above-own", "only the root admin may create or manage admins")
    above = wanted - set(admin_roles) - {_BASE_ROLE}
    if above:
        raise PolicyViolation(
            "grant-above-own", f"cannot grant a role one does not hold: {', '.join(sorted(above))}"
        )


def check_grant(
    policy: Policy,
    admin: Subject,
    admin_roles: Iterable[str],
    root: bool,
    nation: str,
    clearance: str,
    compartments: Iterable[str],
    roles: Iterable[str],
) -> None:
    """Raise unless an admin may create, change or manage a principal with these attributes.

    The one rule for every act on a principal (create, change before and after, issue a code,
    revoke a device), in this order: the actor is an active admin (`not-admin`); the nation,
    level, compartments and roles are the policy's (`unknown-*`); then, unless the actor is
    the root admin: the principal is of the admin's own nation (`other-nation`), and its
    clearance, compartments and roles are no higher than the admin's own (`grant-above-own`,
    see `check_roles`).
    """
    check_admin(admin, admin_roles)
    admin_roles = tuple(admin_roles)
    roles = tuple(roles)
    if nation not in policy.nations:
        raise PolicyViolation("unknown-nation", f"{nation} is not a nation of the policy")
    if not policy.has_level(clearance):
        raise PolicyViolation("unknown-level", f"unknown classification {clearance!r}")
    unknown = set(compartments) - set(policy.compartments)
    if unknown:
        raise PolicyViolation("unknown-compartment", f"unknown compartment(s) {sorted(unknown)}")
    check_roles(admin_roles, True, roles)  # unknown roles, for root too
    if root:
        return
    if nation != admin.nation:
        raise PolicyViolation("other-nation", f"a {admin.nation} admin cannot manage {nation}")
    if policy.rank(clearance) > policy.rank(admin.clearance):
        raise PolicyViolation("grant-above-own", "cannot grant a clearance above one's own")
    if not set(compartments) <= admin.compartments:
        raise PolicyViolation("grant-above-own", "cannot grant a compartment one does not hold")
    check_roles(admin_roles, False, roles)


def check_channel_admin(
    policy: Policy, admin: Subject, admin_roles: Iterable[str], root: bool, ceiling: Any
) -> None:
    """Raise unless an admin may create or manage a channel with this `ceiling`.

    The root admin may manage every channel. A nation admin only one whose ceiling it
    dominates (`grant-above-own`): a channel holds messages up to its ceiling, and whoever sets
    its members decides who receives them, so managing it is an act at the ceiling's level.
    """
    check_admin(admin, admin_roles)
    if root:
        return
    try:
        check_dominates(policy, admin, ceiling)
    except PolicyViolation as e:
        raise PolicyViolation(
            "grant-above-own", f"the channel's ceiling is above the admin: {e.detail}"
        ) from None


@dataclass(frozen=True)
class MemberChange:
    """A principal added to or removed from a channel, with the facts the rule needs of it."""

    principal: str
    nation: str
    added: bool
    root: bool = False  # the principal is the root admin


def check_members_change(
    policy: Policy,
    admin: Subject,
    admin_roles: Iterable[str],
    root: bool,
    ceiling: Any,
    changes: Iterable[MemberChange],
) -> None:
    """Raise unless an admin may make these changes to the members of a channel.

    In this order: the admin may manage the channel at all (`check_channel_admin`: root, or a
    nation admin dominating the ceiling; checked even when nothing changes, since the answer
    shows the members); nobody but the root admin removes the root admin (`forbidden`), while
    the root admin may leave a channel and come back; a nation admin adds or removes only
    principals of its own nation (`other-nation`). Members that stay are not changes.
    """
    check_channel_admin(policy, admin, admin_roles, root, ceiling)
    if root:
        return
    changes = tuple(changes)
    if any(c.root and not c.added for c in changes):
        raise PolicyViolation("forbidden", "only the root admin may remove the root admin from a channel")
    foreign = sorted(c.principal for c in changes if c.nation != admin.nation)
    if foreign:
        raise PolicyViolation(
            "other-nation", f"cannot add or remove other nations' principals: {', '.join(foreign)}"
        )


def may_read_message_entry(
    policy: Policy, reader: Subject, reader_roles: Iterable[str], root: bool, label: Any, party: bool
) -> bool:
    """Whether a principal may read a message's `message.accepted` entry and its proof.

    The entry names the message's channel, label, sender and recipients: the root admin may
    read every one; anyone else only when it dominates the label now, and is a party to the
    message (`party`: the caller's device sent it or is one of its recipients) or holds the
    `auditor` or `admin` role. So an auditor of a nation outside REL TO, or cleared below the
    label, is not entitled, nor is a recipient whose clearance was lowered.
    """
    if root:
        return True
    if not dominates(policy, reader, label):
        return False
    return party or bool({"auditor", _ADMIN} & set(reader_roles))
