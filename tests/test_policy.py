"""Policy: TOML parsing and the pure access decisions, exhaustively and by properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.errors import MalformedError, PolicyViolation
from liaison.crypto.labels import Label
from liaison.crypto.policy import (
    Policy,
    Subject,
    check_ceiling,
    check_dominates,
    check_grant,
    check_suite,
    dominates,
    parse_policy,
    under_ceiling,
)
from tests.conftest import DEFAULT_POLICY
from tests.test_labels import labels

POLICY = parse_policy(DEFAULT_POLICY.read_bytes())
LEVELS = [lv.name for lv in POLICY.levels]


def subjects() -> st.SearchStrategy[Subject]:
    return st.builds(
        Subject,
        st.sampled_from(POLICY.nations),
        st.sampled_from(LEVELS),
        st.frozensets(st.sampled_from(POLICY.compartments)),
        st.sampled_from(["person", "system"]),
        st.booleans(),
    )


def test_default_policy_loads(policy: Policy) -> None:
    assert policy.id == "coalition-2026"
    assert LEVELS == ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET"]
    assert len(policy.sha256) == 64
    assert policy.rule("SECRET").kem == ("MLKEM768-X25519",)


@given(subjects(), labels())
def test_dominance_is_exactly_the_spec_rule(s: Subject, label: Label) -> None:
    expected = (
        s.active
        and POLICY.rank(s.clearance) >= POLICY.rank(label.classification)
        and s.nation in label.rel
        and set(label.compartments) <= s.compartments
        and (s.kind == "person" or POLICY.rule(label.classification).systems)
    )
    assert dominates(POLICY, s, label) == expected


@given(subjects(), labels())
def test_no_read_up_no_release_outside_rel(s: Subject, label: Label) -> None:
    if dominates(POLICY, s, label):
        assert POLICY.rank(s.clearance) >= POLICY.rank(label.classification)
        assert s.nation in label.rel


@given(labels(), labels())
def test_ceiling_holds(label: Label, ceiling: Label) -> None:
    if under_ceiling(POLICY, label, ceiling):
        assert POLICY.rank(label.classification) <= POLICY.rank(ceiling.classification)
        assert set(label.rel) <= set(ceiling.rel)
        assert set(label.compartments) <= set(ceiling.compartments)
    else:
        with pytest.raises(PolicyViolation) as e:
            check_ceiling(POLICY, label, ceiling)
        assert e.value.reason == "above-ceiling"


def test_each_refusal_has_its_reason() -> None:
    label = Label(POLICY.id, "SECRET", ("UKR", "USA"), ("AIRDEF",))
    ok = Subject("USA", "SECRET", frozenset({"AIRDEF"}))
    check_dominates(POLICY, ok, label)
    cases = {
        "clearance": Subject("USA", "CONFIDENTIAL", frozenset({"AIRDEF"})),
        "releasability": Subject("FRA", "TOP SECRET", frozenset({"AIRDEF"})),
        "compartment": Subject("USA", "TOP SECRET", frozenset()),
        "system-level": Subject("USA", "SECRET", frozenset({"AIRDEF"}), kind="system"),
        "principal-suspended": Subject("USA", "SECRET", frozenset({"AIRDEF"}), active=False),
    }
    for reason, subject in cases.items():
        with pytest.raises(PolicyViolation) as e:
            check_dominates(POLICY, subject, label)
        assert e.value.reason == reason


def test_exhaustive_levels_pairs() -> None:
    for clearance, level in itertools.product(LEVELS, LEVELS):
        s = Subject("UKR", clearance, frozenset())
        label = Label(POLICY.id, level, ("UKR",))
        assert dominates(POLICY, s, label) == (LEVELS.index(clearance) >= LEVELS.index(level))


def test_suite_rules() -> None:
    secret = Label(POLICY.id, "SECRET", ("USA",))
    check_suite(POLICY, secret, "MLKEM768-X25519", ["ed25519", "mldsa65"])
    with pytest.raises(PolicyViolation, match="not allowed") as e:
        check_suite(POLICY, secret, "X25519", ["ed25519", "mldsa65"])
    assert e.value.reason == "suite-not-allowed"
    with pytest.raises(PolicyViolation, match="mldsa65") as e:
        check_suite(POLICY, secret, "MLKEM768-X25519", ["ed25519"])
    assert e.value.reason == "signature-required"
    check_suite(POLICY, Label(POLICY.id, "UNCLASSIFIED", ("USA",)), "X25519", ["ed25519"])


def test_scoped_admin_grants() -> None:
    admin = Subject("UKR", "SECRET", frozenset({"AIRDEF"}))
    check_grant(POLICY, admin, ["admin"], False, "UKR", "SECRET", ["AIRDEF"])
    for args, reason in [
        (("USA", "SECRET", []), "other-nation"),
        (("UKR", "TOP SECRET", []), "grant-above-own"),
        (("UKR", "SECRET", ["CYBER"]), "grant-above-own"),
        (("XXX", "SECRET", []), "unknown-nation"),
        (("UKR", "COSMIC", []), "unknown-level"),
        (("UKR", "SECRET", ["SPACE"]), "unknown-compartment"),
    ]:
        with pytest.raises(PolicyViolation) as e:
            check_grant(POLICY, admin, ["admin"], False, *args)
        assert e.value.reason == reason
    with pytest.raises(PolicyViolation) as e:
        check_grant(POLICY, admin, ["analyst"], False, "UKR", "SECRET", [])
    assert e.value.reason == "not-admin"
    # root may grant anything the policy knows
    check_grant(POLICY, Subject("USA", "UNCLASSIFIED", frozenset()), ["admin"], True,
                "FRA", "TOP SECRET", ["HUMINT"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ('id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n', "levels"),
        ('id = "X Y"\nversion = 1\n', "id must be"),
        ('id = "x"\nversion = 0\n', "version"),
        ('id = "x"\nversion = 1\nnations = ["usa"]\n', "nations has invalid"),
        ('id = "x"\nversion = 1\nnations = ["USA", "USA"]\n', "duplicates"),
        ('id = "x"\nversion = 1\nnations = ["USA"]\nextra = 1\n', "unknown keys"),
        ('id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n[[levels]]\nname = "U"\n'
         'kem = ["RSA"]\nsignatures = ["ed25519"]\nmax_bytes = 10\nretention_days = 1\nsystems = true\n',
         "kem may only"),
        ('id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n[[levels]]\nname = "U"\n'
         'kem = ["X25519"]\nsignatures = ["mldsa65"]\nmax_bytes = 10\nretention_days = 1\nsystems = true\n',
         "must include ed25519"),
        ('id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n[[levels]]\nname = "U"\n'
         'kem = ["X25519"]\nsignatures = ["ed25519"]\nmax_bytes = -1\nretention_days = 1\nsystems = true\n',
         "max_bytes"),
    ],
)
def test_malformed_policy_refused(text: str, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        parse_policy(text)
