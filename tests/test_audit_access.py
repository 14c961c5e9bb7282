"""Who may open which committed field of an audit entry v2 (protocol 10.4), as the pure table
decides it; the cases of issue 14's finding first."""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison.crypto.audit_access import FIELD_SCOPES, Opener, Scope, openable, scope_kind
from liaison.crypto.labels import parse_label
from liaison.crypto.policy import Subject, parse_policy

ROOT = Path(__file__).resolve().parents[1]
POLICY = parse_policy((ROOT / "service" / "default_policy.toml").read_bytes())
NIGHTJAR = parse_label("TOP SECRET//HUMINT//REL TO USA", POLICY)
POL_DENIAL = parse_label("UNCLASSIFIED//REL TO POL, USA", POLICY)


def _who(nation: str, clearance: str, *compartments: str, auditor: bool = False, admin: bool = False,
         root: bool = False) -> Opener:  # fmt: skip
    return Opener(Subject(nation, clearance, frozenset(compartments)), auditor, admin, root)


POL_AUDITOR = _who("POL", "UNCLASSIFIED", auditor=True)
UKR_ADMIN = _who("UKR", "SECRET", admin=True)
USA_AUDITOR = _who("USA", "TOP SECRET", "HUMINT", auditor=True)
ROOT_AUDITOR = _who("USA", "TOP SECRET", auditor=True, root=True)
USA_ANALYST = _who("USA", "TOP SECRET", "HUMINT")

ACCEPTED = dict.fromkeys(
    ("actor", "time", "id", "channel", "sender", "label", "recipients", "size"), ("label", NIGHTJAR)
)
PERSONNEL_USA = {"actor": ("nation", "USA"), "time": ("nation", "USA"), "principal": ("nation", "USA")}


def test_the_finding_a_pol_auditor_and_a_ukr_admin_open_nothing_of_a_top_secret_message() -> None:
    for who in (POL_AUDITOR, UKR_ADMIN, USA_ANALYST):
        assert openable(POLICY, who, ACCEPTED, ACCEPTED) == set()
    # Nor a USA principal's display name, clearance and compartments.
    for who in (POL_AUDITOR, UKR_ADMIN):
        assert openable(POLICY, who, PERSONNEL_USA, PERSONNEL_USA) == set()


def test_an_auditor_who_dominates_the_label_opens_the_message_fields() -> None:
    assert openable(POLICY, USA_AUDITOR, ACCEPTED, ACCEPTED) == set(ACCEPTED)
    # Without the compartment, or cleared below, nothing.
    assert openable(POLICY, _who("USA", "TOP SECRET", auditor=True), ACCEPTED, ACCEPTED) == set()
    assert openable(POLICY, _who("USA", "SECRET", "HUMINT", auditor=True), ACCEPTED, ACCEPTED) == set()


def test_one_entry_shows_a_denial_to_its_nation_without_what_was_denied() -> None:
    """A POL principal denied a TOP SECRET answer: the POL auditor opens who and why, not what."""
    denied: dict[str, Scope] = {
        name: ("nation", "POL") if scope_kind("access.denied", name) == "nation" else ("root",)
        for name in ("actor", "time", "who", "why", "what")
    }
    assert openable(POLICY, POL_AUDITOR, denied, denied) == {"actor", "time", "who", "why"}
    assert scope_kind("access.denied", "what") == "root"
    assert openable(POLICY, ROOT_AUDITOR, denied, denied) == set(denied)


def test_personnel_fields_open_to_their_own_nations_auditors_and_admins() -> None:
    usa_admin = _who("USA", "SECRET", admin=True)
    assert openable(POLICY, usa_admin, PERSONNEL_USA, PERSONNEL_USA) == set(PERSONNEL_USA)
    assert openable(POLICY, _who("USA", "UNCLASSIFIED", auditor=True), PERSONNEL_USA, PERSONNEL_USA) == set(
        PERSONNEL_USA
    )
    # An admin without the auditor role reads no message fields, even of a label it dominates.
    low = {"channel": ("label", POL_DENIAL)}
    assert openable(POLICY, _who("USA", "SECRET", admin=True), low, low) == set()
    assert openable(POLICY, _who("USA", "SECRET", auditor=True), low, low) == {"channel"}


def test_service_fields_open_to_any_auditor_and_unknown_ones_to_root_only() -> None:
    scopes: dict[str, Scope] = {"policy": ("auditors",), "version": ("auditors",)}
    fields = ["policy", "version", "brand-new"]
    assert openable(POLICY, POL_AUDITOR, scopes, fields) == {"policy", "version"}
    assert openable(POLICY, UKR_ADMIN, scopes, fields) == set()
    assert openable(POLICY, ROOT_AUDITOR, scopes, fields) == set(fields)
    # The root principal without an auditor or admin role opens nothing.
    assert openable(POLICY, _who("USA", "TOP SECRET", root=True), scopes, fields) == set()


@pytest.mark.parametrize("type_", sorted(FIELD_SCOPES))
def test_every_listed_field_has_a_known_kind_and_time_and_actor_are_classified(type_: str) -> None:
    kinds = set(FIELD_SCOPES[type_].values())
    assert kinds <= {"label", "nation", "auditors", "root"}
    assert scope_kind(type_, "actor") != "root" and scope_kind(type_, "time") != "root"
    assert scope_kind(type_, "never-heard-of") == "root" and scope_kind("no.such.type", "actor") == "root"


def test_every_type_the_service_logs_is_classified() -> None:
    """A type the service logs but the table does not know would be root's alone: caught here,
    so that whoever adds a type decides who may open it. (`map.head` and `directory.statement`
    are wholly clear, protocol 10.2.)"""
    import re

    logged: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text("utf-8")
        logged |= set(re.findall(r'\.audit\(\s*"([a-z_]+\.[a-z_]+)"', text))
        logged |= set(re.findall(r'\(\s*"([a-z_]+\.[a-z_]+)",\s*(?:who|device_id|caller)', text))
    assert {"message.accepted", "access.denied", "device.enrolled"} <= logged
    assert logged - set(FIELD_SCOPES) <= {"directory.statement", "map.head"}, logged - set(FIELD_SCOPES)
