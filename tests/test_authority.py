"""Who may sign what (liaison.crypto.authority, the table of protocol 9.4): every row allowed and
refused; the roots chain; the client's decision on a reader (9.9), equal to the policy's own
decision when every fact is disclosed."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto._primitives import ed25519_sign
from liaison.crypto.authority import SignerView, check_authority, check_roots_chain, excluded_ok, reader_ok
from liaison.crypto.errors import AuthorityError, StatementInvalid
from liaison.crypto.keys import DeviceKeys
from liaison.crypto.labels import Label
from liaison.crypto.names import ROLES, X25519
from liaison.crypto.policy import Policy, Subject, check_dominates, parse_policy
from liaison.crypto.statements import (
    SignedStatement,
    Statement,
    channel_statement,
    device_statement,
    invitation_public,
    invitation_seed,
    invitation_statement,
    policy_statement,
    principal_facts,
    principal_statement,
    roots_statement,
    sign_statement,
)

POLICY: Policy = parse_policy((Path(__file__).parent.parent / "service" / "default_policy.toml").read_bytes())
ORIGIN = "liaison.example/audit"
EXPIRES = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def device(name: str, principal: str) -> DeviceKeys:
    def seed(part: str) -> bytes:
        return hashlib.sha256(f"test-authority/{name}/{part}".encode()).digest()

    return DeviceKeys(principal, "2026-11-01T00:00:00Z", seed("ed"), None, X25519, seed("x"))


ROOT, ROOT2 = device("root", "root"), device("root-2", "root")
ADMIN_FRA, ADMIN_UKR = device("admin-fra", "admin-fra"), device("admin-ukr", "admin-ukr")
ALICE, ALICE2, BOB = device("alice", "alice"), device("alice-2", "alice"), device("bob", "bob")
CODE = "FZNR2-U4DC5-FHO6N-ROPP7"

ADMIN_ATTRS: dict[str, Any] = {
    "kind": "person",
    "clearance": "SECRET",
    "compartments": ["AIRDEF"],
    "roles": ["admin", "analyst"],
    "active": True,
}


def view(keys: DeviceKeys, nation: str, facts: dict[str, bool] | None = None, **over: Any) -> SignerView:
    base = SignerView(
        device=keys.device_id,
        bundle=keys.public,
        principal=keys.principal,
        nation=nation,
        device_active=True,
        facts=facts or {},
        is_root_device=False,
    )
    return replace(base, **over)


ROOT_VIEW = view(ROOT, "USA", {"active": True, "role:admin": True}, is_root_device=True)


def admin_view(keys: DeviceKeys = ADMIN_FRA, nation: str = "FRA", **attrs: Any) -> SignerView:
    over = {k: attrs.pop(k) for k in ("device_active", "is_root_device") if k in attrs}
    facts = principal_facts(POLICY, **{**ADMIN_ATTRS, **attrs})
    return view(keys, nation, facts, **over)


FRA = admin_view()


def principal(
    name: str, nation: str, signer: DeviceKeys, *, seq: int = 1, prev: bytes | None = None, **attrs: Any
) -> tuple[SignedStatement, list[str]]:
    values: dict[str, Any] = {
        "kind": "person",
        "clearance": "SECRET",
        "compartments": ["AIRDEF"],
        "roles": ["analyst"],
        "active": True,
    }
    values.update(attrs)
    st_, disclosures = principal_statement(
        ORIGIN, POLICY, principal=name, nation=nation, seq=seq, prev=prev, signer=signer.device_id, **values
    )
    relied = sorted(k for k, d in disclosures.items() if d.value is True)
    return sign_statement(signer, st_), relied


def deny(reason: str, signed: SignedStatement, signer: SignerView, **kw: Any) -> AuthorityError:
    kw.setdefault("relied", ())
    with pytest.raises(AuthorityError) as caught:
        check_authority(signed, signer, **kw)
    assert caught.value.reason == reason, caught.value
    assert isinstance(caught.value, StatementInvalid)
    return caught.value


def allow(signed: SignedStatement, signer: SignerView, **kw: Any) -> None:
    kw.setdefault("relied", ())
    check_authority(signed, signer, **kw)


# --- roots -------------------------------------------------------------------------------


def roots(
    devices: list[DeviceKeys], signer: DeviceKeys, seq: int = 1, prev: bytes | None = None
) -> SignedStatement:
    st_ = roots_statement(
        ORIGIN, devices=[d.device_id for d in devices], seq=seq, prev=prev, signer=signer.device_id
    )
    return sign_statement(signer, st_)


ROOTS1 = roots([ROOT], ROOT)


def test_roots_seq_1_is_signed_by_a_device_it_lists() -> None:
    allow(ROOTS1, ROOT_VIEW)
    allow(ROOTS1, replace(ROOT_VIEW, is_root_device=False))  # the anchor makes the root devices
    deny("not-root", roots([ROOT], ROOT2), view(ROOT2, "USA", is_root_device=True))


def test_roots_seq_n_is_signed_by_a_device_the_previous_lists() -> None:
    second = roots([ROOT, ROOT2], ROOT, 2, ROOTS1.digest())
    allow(second, ROOT_VIEW, previous=ROOTS1.statement)
    third = roots([ROOT2], ROOT2, 3, second.digest())
    allow(third, view(ROOT2, "USA", is_root_device=True), previous=second.statement)
    not_listed = roots([ROOT, ROOT2], ROOT2, 2, ROOTS1.digest())
    deny("not-root", not_listed, view(ROOT2, "USA", is_root_device=True), previous=ROOTS1.statement)
    deny("chain", second, ROOT_VIEW)  # its predecessor is needed
    deny("signer-revoked", second, replace(ROOT_VIEW, device_active=False), previous=ROOTS1.statement)


# --- policy ------------------------------------------------------------------------------

POLICY1 = sign_statement(ROOT, policy_statement(ORIGIN, POLICY, seq=1, prev=None, signer=ROOT.device_id))


def test_policy_is_signed_by_a_root_device() -> None:
    allow(POLICY1, ROOT_VIEW)
    by_admin = sign_statement(
        ADMIN_FRA, policy_statement(ORIGIN, POLICY, seq=1, prev=None, signer=ADMIN_FRA.device_id)
    )
    deny("not-root", by_admin, FRA)
    deny("signer-revoked", POLICY1, replace(ROOT_VIEW, device_active=False))


def test_a_policy_version_must_rise() -> None:
    newer = replace(POLICY, version=2, sha256="1" * 64)
    second = sign_statement(
        ROOT, policy_statement(ORIGIN, newer, seq=2, prev=POLICY1.digest(), signer=ROOT.device_id)
    )
    allow(second, ROOT_VIEW, previous=POLICY1.statement)
    same = sign_statement(
        ROOT, policy_statement(ORIGIN, POLICY, seq=2, prev=POLICY1.digest(), signer=ROOT.device_id)
    )
    with pytest.raises(StatementInvalid) as caught:
        check_authority(same, ROOT_VIEW, relied=(), previous=POLICY1.statement)
    assert caught.value.reason == "version" and not isinstance(caught.value, AuthorityError)


# --- principal ---------------------------------------------------------------------------


def test_principal_by_a_root_device_even_an_admin() -> None:
    signed, relied = principal("ukr-admin", "UKR", ROOT, roles=["admin"], clearance="TOP SECRET")
    assert "role:admin" in relied
    allow(signed, ROOT_VIEW, relied=relied)


def test_principal_by_an_admin_of_its_nation_holding_what_is_relied_on() -> None:
    signed, relied = principal("alice", "FRA", ADMIN_FRA)
    allow(signed, FRA, relied=relied)


def test_principal_of_another_nation() -> None:
    signed, relied = principal("bob", "UKR", ADMIN_FRA)
    deny("other-nation", signed, FRA, relied=relied)
    allow(signed, admin_view(ADMIN_FRA, "UKR"), relied=relied)  # an admin of UKR may


def test_principal_above_the_admin() -> None:
    top, relied = principal("carol", "FRA", ADMIN_FRA, clearance="TOP SECRET")
    deny("grant-above-own", top, FRA, relied=relied)
    # A relying party that relies only on what the admin holds accepts it (9.4: "relies on").
    allow(top, FRA, relied=["active", "level>=SECRET"])
    cyber, relied = principal("dave", "FRA", ADMIN_FRA, compartments=["CYBER"])
    deny("grant-above-own", cyber, FRA, relied=relied)
    auditor, relied = principal("erin", "FRA", ADMIN_FRA, roles=["auditor"])
    deny("grant-above-own", auditor, FRA, relied=relied)
    allow(auditor, admin_view(roles=["admin", "auditor"]), relied=relied)


def test_a_nation_admin_never_makes_an_admin() -> None:
    signed, relied = principal("frank", "FRA", ADMIN_FRA, roles=["admin"])
    deny("grant-above-own", signed, FRA, relied=relied)
    deny("grant-above-own", signed, admin_view(clearance="TOP SECRET"), relied=["role:admin"])


def test_principal_by_a_non_admin_or_an_inactive_admin_or_a_revoked_device() -> None:
    signed, relied = principal("gina", "FRA", ADMIN_FRA)
    deny("not-admin", signed, admin_view(roles=["analyst"]), relied=relied)
    deny("not-admin", signed, admin_view(active=False), relied=relied)
    undisclosed = {k: v for k, v in FRA.facts.items() if k != "role:admin"}
    deny("not-admin", signed, replace(FRA, facts=undisclosed), relied=relied)
    deny("signer-revoked", signed, admin_view(device_active=False), relied=relied)
    # A root device whose own device statement is revoked is no root device.
    deny("signer-revoked", signed, admin_view(device_active=False, is_root_device=True), relied=relied)


def test_an_admin_of_no_nation_administers_no_nation() -> None:
    signed, relied = principal("hugo", "FRA", ADMIN_FRA)
    deny("other-nation", signed, replace(FRA, nation="*"), relied=relied)


# --- invitation --------------------------------------------------------------------------


def invitation(
    signer: DeviceKeys = ADMIN_FRA, principal: str = "alice", nation: str = "FRA", code: str = CODE
) -> SignedStatement:
    st_ = invitation_statement(
        ORIGIN,
        principal=principal,
        nation=nation,
        key=invitation_public(code),
        expires=EXPIRES,
        anchors=bytes(32),
        signer=signer.device_id,
    )
    return sign_statement(signer, st_)


def test_invitation_by_a_root_device_or_an_admin_of_its_nation() -> None:
    allow(invitation(ROOT), ROOT_VIEW)
    allow(invitation(), FRA)
    deny("other-nation", invitation(nation="UKR", principal="bob"), FRA)
    deny("not-admin", invitation(), admin_view(roles=["analyst"]))
    deny("signer-revoked", invitation(), admin_view(device_active=False))


# --- device ------------------------------------------------------------------------------


def enrol(
    keys: DeviceKeys = ALICE,
    inv: SignedStatement | None = None,
    *,
    nation: str = "FRA",
    status: str = "active",
    code: str = CODE,
    signer: DeviceKeys | None = None,
) -> SignedStatement:
    signer = signer or keys
    st_ = device_statement(
        ORIGIN,
        bundle=keys.public,
        principal=keys.principal,
        nation=nation,
        status=status,
        seq=1,
        prev=None,
        signer=signer.device_id,
        invitation=inv,
    )
    return sign_statement(signer, st_, invitation_seed(code) if signer is keys else None)


ALICE_VIEW = view(ALICE, "FRA")


def test_a_device_enrols_with_an_admins_invitation() -> None:
    allow(enrol(ALICE, invitation()), ALICE_VIEW, invitation_signer=FRA)
    allow(enrol(ALICE, invitation(ROOT)), ALICE_VIEW, invitation_signer=ROOT_VIEW)
    allow(enrol(ALICE, invitation()), ALICE_VIEW, invitation_signer=FRA, target_devices_principal="alice")
    deny(
        "principal",
        enrol(ALICE, invitation()),
        ALICE_VIEW,
        invitation_signer=FRA,
        target_devices_principal="bob",
    )


def test_a_root_device_of_the_anchored_roots_needs_no_invitation() -> None:
    signed = enrol(ROOT, None, nation="USA")
    allow(signed, ROOT_VIEW)
    deny("no-invitation", enrol(ALICE, None), ALICE_VIEW)
    deny("no-invitation", signed, replace(ROOT_VIEW, is_root_device=False))


def test_a_device_enrolment_refused() -> None:
    deny("invitation", enrol(ALICE, invitation(principal="bob")), ALICE_VIEW, invitation_signer=FRA)
    deny("invitation", enrol(ALICE, invitation(ROOT, nation="UKR")), ALICE_VIEW, invitation_signer=ROOT_VIEW)
    deny("invitation", enrol(ALICE, invitation()), ALICE_VIEW)  # the invitation's signer is not given
    # The invitation's own authority, against its signer's current records.
    deny("not-admin", enrol(ALICE, invitation()), ALICE_VIEW, invitation_signer=admin_view(roles=["analyst"]))
    deny(
        "signer-revoked",
        enrol(ALICE, invitation()),
        ALICE_VIEW,
        invitation_signer=admin_view(device_active=False),
    )
    deny("signer", enrol(ALICE, invitation()), ALICE_VIEW, invitation_signer=ROOT_VIEW)
    # Signed by another invitation key than the invitation's.
    good = enrol(ALICE, invitation())
    wrong_key = invitation_seed("AAAAA-BBBBB-CCCCC-DDDDD")
    other = replace(good, invitation_signature=ed25519_sign(wrong_key, good.statement.invitation_message()))
    deny("invitation-signature", other, ALICE_VIEW, invitation_signer=FRA)
    # An admin cannot enrol a device on its behalf: the device itself signs its enrolment.
    deny("signer", enrol(ALICE, invitation(), signer=ADMIN_FRA), FRA, invitation_signer=FRA)
    deny("status", enrol(ALICE, invitation(), status="revoked"), ALICE_VIEW, invitation_signer=FRA)


def test_an_invitation_for_another_log_is_refused() -> None:
    st_ = invitation().statement
    moved = Statement.from_json({**st_.to_json(), "origin": "other.example/audit"})
    inv = sign_statement(ADMIN_FRA, moved)
    deny("invitation", enrol(ALICE, inv), ALICE_VIEW, invitation_signer=FRA)


ENROLLED = enrol(ALICE, invitation())


def revoke(
    signer: DeviceKeys, status: str = "revoked", target: SignedStatement = ENROLLED
) -> SignedStatement:
    t = target.statement
    st_ = device_statement(
        ORIGIN,
        bundle=t.bundle,
        principal=t.public["principal"],
        nation=t.nation,
        status=status,
        seq=t.seq + 1,
        prev=t.digest(),
        signer=signer.device_id,
        invitation=None,
    )
    return sign_statement(signer, st_)


def test_a_device_is_revoked_by_itself_its_principal_a_root_device_or_an_admin_of_its_nation() -> None:
    prev = ENROLLED.statement
    allow(revoke(ALICE), ALICE_VIEW, previous=prev)
    allow(revoke(ALICE2), view(ALICE2, "FRA"), previous=prev)
    allow(revoke(ROOT), ROOT_VIEW, previous=prev)
    allow(revoke(ADMIN_FRA), FRA, previous=prev)


def test_a_revocation_refused() -> None:
    prev = ENROLLED.statement
    deny("other-nation", revoke(ADMIN_UKR), admin_view(ADMIN_UKR, "UKR"), previous=prev)
    deny("not-admin", revoke(BOB), view(BOB, "FRA", {"active": True}), previous=prev)
    deny("signer-revoked", revoke(ALICE), replace(ALICE_VIEW, device_active=False), previous=prev)
    deny("status", revoke(ALICE, "active"), ALICE_VIEW, previous=prev)
    revoked = revoke(ALICE)
    with pytest.raises(StatementInvalid) as caught:  # a revoked device stays revoked
        check_authority(revoke(ALICE, target=revoked), ALICE_VIEW, relied=(), previous=revoked.statement)
    assert caught.value.reason == "revoked"


# --- channel -----------------------------------------------------------------------------


def channel(ceiling: Label, signer: DeviceKeys = ADMIN_FRA) -> SignedStatement:
    st_ = channel_statement(
        ORIGIN,
        channel="ops",
        ceiling=ceiling,
        members=["alice", "bob"],
        seq=1,
        prev=None,
        signer=signer.device_id,
    )
    return sign_statement(signer, st_)


SECRET_AIRDEF = Label(POLICY.id, "SECRET", ("FRA", "USA"), ("AIRDEF",))


def test_channel_by_a_root_device_or_an_admin_under_the_ceiling() -> None:
    allow(channel(Label(POLICY.id, "TOP SECRET", ("UKR",), ("CYBER",)), ROOT), ROOT_VIEW)
    allow(channel(SECRET_AIRDEF), FRA)
    allow(channel(Label(POLICY.id, "CONFIDENTIAL", ("FRA",))), FRA)


def test_channel_above_the_admin() -> None:
    deny("grant-above-own", channel(Label(POLICY.id, "TOP SECRET", ("FRA",))), FRA)
    deny("grant-above-own", channel(Label(POLICY.id, "SECRET", ("FRA",), ("AIRDEF", "CYBER"))), FRA)
    deny("other-nation", channel(Label(POLICY.id, "SECRET", ("UKR", "USA"))), FRA)
    deny("not-admin", channel(SECRET_AIRDEF), admin_view(roles=["analyst"]))
    deny("not-admin", channel(SECRET_AIRDEF), admin_view(active=False))
    deny("signer-revoked", channel(SECRET_AIRDEF), admin_view(device_active=False))


# --- signatures and signers --------------------------------------------------------------


def test_signatures_are_verified_and_the_signer_must_be_the_one_named() -> None:
    signed = channel(SECRET_AIRDEF)
    forged = SignedStatement(signed.statement, POLICY1.signatures)
    deny("signature", forged, FRA)
    deny("signer", signed, ROOT_VIEW)
    deny("signer", signed, replace(FRA, bundle=ROOT.public))  # a view whose bundle is not its device


# --- the roots chain ---------------------------------------------------------------------


def test_the_roots_chain_from_the_anchor() -> None:
    second = roots([ROOT, ROOT2], ROOT, 2, ROOTS1.digest())
    third = roots([ROOT2], ROOT2, 3, second.digest())
    bundles = {k.device_id: k.public for k in (ROOT, ROOT2)}
    assert check_roots_chain(ROOTS1.digest(), 1, [ROOTS1, second, third], bundles) == third.statement
    assert check_roots_chain(second.digest(), 2, [second, third], bundles) == third.statement
    assert check_roots_chain(third.digest(), 3, [third], bundles) == third.statement


def test_the_roots_chain_refused() -> None:
    second = roots([ROOT, ROOT2], ROOT, 2, ROOTS1.digest())
    bundles = {k.device_id: k.public for k in (ROOT, ROOT2)}

    def refused(reason: str, *args: Any) -> None:
        with pytest.raises(StatementInvalid) as caught:
            check_roots_chain(*args)
        assert caught.value.reason == reason, caught.value

    refused("anchor", ROOTS1.digest(), 1, [], bundles)
    refused("anchor", second.digest(), 1, [ROOTS1, second], bundles)
    refused("anchor", ROOTS1.digest(), 2, [ROOTS1, second], bundles)
    refused("anchor", POLICY1.digest(), 1, [POLICY1], bundles)
    by_unlisted = roots([ROOT2], ROOT2, 2, ROOTS1.digest())
    refused("not-root", ROOTS1.digest(), 1, [ROOTS1, by_unlisted], bundles)
    refused("signer", ROOTS1.digest(), 1, [ROOTS1, second], {})
    forged = SignedStatement(second.statement, POLICY1.signatures)
    refused("signature", ROOTS1.digest(), 1, [ROOTS1, forged], bundles)
    gap = roots([ROOT], ROOT, 3, second.digest())
    refused("chain", ROOTS1.digest(), 1, [ROOTS1, gap], bundles)
    refused("stale", ROOTS1.digest(), 1, [ROOTS1, second, second], bundles)


# --- the client's decision on a reader (9.9) ------------------------------------------------


def facts_of(**attrs: Any) -> dict[str, bool]:
    base: dict[str, Any] = {
        "kind": "person",
        "clearance": "SECRET",
        "compartments": ["AIRDEF"],
        "roles": [],
        "active": True,
    }
    return principal_facts(POLICY, **{**base, **attrs})


LABEL = Label(POLICY.id, "SECRET", ("FRA", "USA"), ("AIRDEF",))


@pytest.mark.parametrize(
    ("attrs", "nation", "label", "reason"),
    [
        ({}, "FRA", LABEL, None),
        ({"active": False}, "FRA", LABEL, "inactive"),
        ({"clearance": "CONFIDENTIAL"}, "FRA", LABEL, "clearance"),
        ({}, "UKR", LABEL, "releasability"),
        ({"compartments": []}, "FRA", LABEL, "compartment"),
        ({"kind": "system"}, "FRA", LABEL, "system-not-allowed"),
        ({"kind": "system"}, "FRA", Label(POLICY.id, "CONFIDENTIAL", ("FRA",)), None),
        ({}, "*", LABEL, "releasability"),
    ],
)
def test_reader_ok_and_excluded_ok(
    attrs: dict[str, Any], nation: str, label: Label, reason: str | None
) -> None:
    facts = facts_of(**attrs)
    assert reader_ok(POLICY, label, nation=nation, facts=facts) == reason
    assert excluded_ok(POLICY, label, nation=nation, facts=facts) == (reason is not None)


def test_an_undisclosed_predicate_proves_neither() -> None:
    facts = facts_of()
    for missing in ("active", "level>=SECRET", "holds:AIRDEF", "person"):
        partial = {k: v for k, v in facts.items() if k != missing}
        assert reader_ok(POLICY, LABEL, nation="FRA", facts=partial) == "not-disclosed"
        assert not excluded_ok(POLICY, LABEL, nation="FRA", facts=partial)
    assert reader_ok(POLICY, LABEL, nation="FRA", facts={}) == "not-disclosed"
    # One predicate opened false excludes, whatever else is undisclosed.
    assert reader_ok(POLICY, LABEL, nation="FRA", facts={"holds:AIRDEF": False}) == "compartment"
    assert excluded_ok(POLICY, LABEL, nation="FRA", facts={"holds:AIRDEF": False})
    assert excluded_ok(POLICY, LABEL, nation="UKR", facts={})


def test_only_the_needed_predicates_are_needed() -> None:
    needed = {"active": True, "level>=SECRET": True, "holds:AIRDEF": True, "person": True}
    assert reader_ok(POLICY, LABEL, nation="FRA", facts=needed) is None
    # Something other than a boolean true is not true.
    assert reader_ok(POLICY, LABEL, nation="FRA", facts={**needed, "active": 1}) == "not-disclosed"  # type: ignore[dict-item]


_REASONS = {
    "principal-suspended": "inactive",
    "clearance": "clearance",
    "releasability": "releasability",
    "compartment": "compartment",
    "system-level": "system-not-allowed",
}


@settings(max_examples=300, deadline=None)
@given(
    clearance=st.sampled_from([lv.name for lv in POLICY.levels]),
    held=st.sets(st.sampled_from(POLICY.compartments)),
    kind=st.sampled_from(["person", "system"]),
    active=st.booleans(),
    nation=st.sampled_from(POLICY.nations),
    level=st.sampled_from([lv.name for lv in POLICY.levels]),
    rel=st.sets(st.sampled_from(POLICY.nations), min_size=1),
    comps=st.sets(st.sampled_from(POLICY.compartments)),
    roles=st.sets(st.sampled_from(ROLES)),
)
def test_with_every_fact_disclosed_the_client_decides_as_the_policy(
    clearance: str,
    held: set[str],
    kind: str,
    active: bool,
    nation: str,
    level: str,
    rel: set[str],
    comps: set[str],
    roles: set[str],
) -> None:
    label = Label(POLICY.id, level, tuple(rel), tuple(comps))
    facts = principal_facts(
        POLICY, kind=kind, clearance=clearance, compartments=held, roles=roles, active=active
    )
    subject = Subject(nation, clearance, frozenset(held), kind, active)
    try:
        check_dominates(POLICY, subject, label)
        expected = None
    except Exception as e:  # PolicyViolation
        expected = _REASONS[e.reason]  # type: ignore[attr-defined]
    assert reader_ok(POLICY, label, nation=nation, facts=facts) == expected
    assert excluded_ok(POLICY, label, nation=nation, facts=facts) == (expected is not None)
    # Disclosing only what label_needs asks for decides the same.
    from liaison.crypto.statements import label_needs

    needed = {k: facts[k] for k in label_needs(POLICY, label)}
    assert reader_ok(POLICY, label, nation=nation, facts=needed) == expected
