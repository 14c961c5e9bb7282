"""Policy: TOML parsing and the pure access decisions, exhaustively and by properties."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.errors import MalformedError, PolicyViolation
from liaison.crypto.labels import Label
from liaison.crypto.names import (
    COMPARTMENT_PATTERN,
    ED25519,
    KEM_SUITES,
    MLDSA65,
    NATION_PATTERN,
    ROLES,
    SLUG_PATTERN,
)
from liaison.crypto.policy import (
    LevelRule,
    MemberChange,
    Policy,
    Subject,
    check_admin,
    check_ceiling,
    check_channel_admin,
    check_dominates,
    check_grant,
    check_members_change,
    check_roles,
    check_suite,
    dominates,
    may_read_message_entry,
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
    check_grant(POLICY, admin, ["admin"], False, "UKR", "SECRET", ["AIRDEF"], ["analyst"])
    for args, reason in [
        (("USA", "SECRET", [], []), "other-nation"),
        (("UKR", "TOP SECRET", [], []), "grant-above-own"),
        (("UKR", "SECRET", ["CYBER"], []), "grant-above-own"),
        (("UKR", "SECRET", [], ["auditor"]), "grant-above-own"),
        (("UKR", "SECRET", [], ["admin"]), "grant-above-own"),
        (("UKR", "SECRET", [], ["wizard"]), "unknown-role"),
        (("XXX", "SECRET", [], []), "unknown-nation"),
        (("UKR", "COSMIC", [], []), "unknown-level"),
        (("UKR", "SECRET", ["SPACE"], []), "unknown-compartment"),
    ]:
        with pytest.raises(PolicyViolation) as e:
            check_grant(POLICY, admin, ["admin"], False, *args)
        assert e.value.reason == reason
    with pytest.raises(PolicyViolation) as e:
        check_grant(POLICY, admin, ["analyst"], False, "UKR", "SECRET", [], [])
    assert e.value.reason == "not-admin"
    # An admin that also audits may make auditors (of its nation, within its access).
    check_grant(POLICY, admin, ["admin", "auditor"], False, "UKR", "SECRET", [], ["auditor"])
    # root may grant anything the policy knows, admins too, but no unknown role
    check_grant(
        POLICY,
        Subject("USA", "UNCLASSIFIED", frozenset()),
        ["admin"],
        True,
        "FRA",
        "TOP SECRET",
        ["HUMINT"],
        ["admin", "auditor"],
    )
    with pytest.raises(PolicyViolation) as e:
        check_grant(POLICY, admin, ["admin"], True, "UKR", "SECRET", [], ["root"])
    assert e.value.reason == "unknown-role"


# --- admins: a model of the rules, written from docs/protocol.md, against the functions ------

ROLE_NAMES = [*ROLES, "wizard"]  # one role the policy does not know


def _grant_model(
    admin: Subject,
    admin_roles: frozenset[str],
    root: bool,
    nation: str,
    clearance: str,
    comps: frozenset[str],
    roles: frozenset[str],
) -> str | None:
    """The reason a grant is refused, or None: the order docs/protocol.md gives."""
    if "admin" not in admin_roles or not admin.active:
        return "not-admin"
    if nation not in POLICY.nations:
        return "unknown-nation"
    if clearance not in LEVELS:
        return "unknown-level"
    if not comps <= set(POLICY.compartments):
        return "unknown-compartment"
    if not roles <= set(ROLES):
        return "unknown-role"
    if root:
        return None
    if nation != admin.nation:
        return "other-nation"
    if LEVELS.index(clearance) > LEVELS.index(admin.clearance) or not comps <= admin.compartments:
        return "grant-above-own"
    if "admin" in roles or not roles <= admin_roles | {"analyst"}:
        return "grant-above-own"
    return None


def _reason(call: Callable[[], None]) -> str | None:
    try:
        call()
    except PolicyViolation as e:
        return e.reason
    return None


def _often(value: Any, others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`value` half of the time: in-scope cases are a small corner of the whole space."""
    return st.one_of(st.just(value), others)


@st.composite
def grants(draw: st.DrawFn) -> tuple[Any, ...]:
    """An admin and a grant, half of each field within the admin's own scope."""
    admin = draw(
        _often(True, st.booleans()).flatmap(lambda a: subjects().map(lambda s: replace(s, active=a)))
    )
    admin_roles = draw(_often(frozenset({"admin"}), st.frozensets(st.sampled_from(ROLE_NAMES))))
    nation = draw(_often(admin.nation, st.sampled_from([*POLICY.nations, "XXX"])))
    own = LEVELS[: LEVELS.index(admin.clearance) + 1]
    clearance = draw(st.one_of(st.sampled_from(own), st.sampled_from([*LEVELS, "COSMIC"])))
    comps = draw(
        st.one_of(
            st.frozensets(st.sampled_from(sorted(admin.compartments)))
            if admin.compartments
            else st.just(frozenset()),
            st.frozensets(st.sampled_from([*POLICY.compartments, "SPACE"])),
        )
    )
    roles = draw(st.frozensets(st.sampled_from(ROLE_NAMES)))
    return admin, admin_roles, draw(_often(False, st.booleans())), nation, clearance, comps, roles


@given(grants())
def test_grant_is_exactly_the_documented_rule(grant: tuple[Any, ...]) -> None:
    admin, admin_roles, root, nation, clearance, comps, roles = grant
    got = _reason(
        lambda: check_grant(POLICY, admin, sorted(admin_roles), root, nation, clearance, sorted(comps), roles)
    )
    assert got == _grant_model(admin, admin_roles, root, nation, clearance, comps, roles)


@given(subjects(), st.frozensets(st.sampled_from(ROLE_NAMES)), st.frozensets(st.sampled_from(ROLE_NAMES)))
def test_no_admin_but_root_grants_a_role_above_its_own(
    admin: Subject, admin_roles: frozenset[str], roles: frozenset[str]
) -> None:
    """Whatever a nation admin may grant, it holds itself (bar `analyst`), and never `admin`."""
    if _reason(lambda: check_roles(admin_roles, False, roles)) is None:
        assert roles <= (admin_roles & set(ROLES)) | {"analyst"} and "admin" not in roles
        if _reason(lambda: check_admin(admin, admin_roles)) is None:
            check_grant(POLICY, admin, admin_roles, False, admin.nation, admin.clearance, [], roles)


def _member_changes(nation: str) -> st.SearchStrategy[list[MemberChange]]:
    return st.lists(
        st.builds(
            MemberChange,
            st.sampled_from(["root", "usa-a", "ukr-a", "fra-a"]),
            _often(nation, st.sampled_from(POLICY.nations)),
            st.booleans(),
            st.booleans(),
        ),
        max_size=4,
    )


@st.composite
def membership_changes(draw: st.DrawFn) -> tuple[Any, ...]:
    """An admin, a channel ceiling (half of them ones it dominates) and changes to the members."""
    admin = draw(
        _often(True, st.booleans()).flatmap(lambda a: subjects().map(lambda s: replace(s, active=a)))
    )
    admin_roles = draw(_often(frozenset({"admin"}), st.frozensets(st.sampled_from(ROLE_NAMES))))
    own = Label(POLICY.id, admin.clearance, (admin.nation,), tuple(sorted(admin.compartments)))
    ceiling = draw(_often(own, labels()))
    return (
        admin,
        admin_roles,
        draw(_often(False, st.booleans())),
        ceiling,
        draw(_member_changes(admin.nation)),
    )


@given(membership_changes())
def test_membership_change_is_exactly_the_documented_rule(case: tuple[Any, ...]) -> None:
    admin, admin_roles, root, ceiling, changes = case
    got = _reason(lambda: check_members_change(POLICY, admin, admin_roles, root, ceiling, changes))
    if "admin" not in admin_roles or not admin.active:
        expected: str | None = "not-admin"
    elif root:
        expected = None
    elif not dominates(POLICY, admin, ceiling):
        expected = "grant-above-own"
    elif any(c.root and not c.added for c in changes):
        expected = "forbidden"
    elif any(c.nation != admin.nation for c in changes):
        expected = "other-nation"
    else:
        expected = None
    assert got == expected
    # The channel-level half is the same rule as creating a channel with that ceiling.
    channel = _reason(lambda: check_channel_admin(POLICY, admin, admin_roles, root, ceiling))
    assert channel == (got if got in ("not-admin", "grant-above-own") else None)


@given(membership_changes())
def test_root_is_never_removed_by_another_admin(case: tuple[Any, ...]) -> None:
    admin, admin_roles, _, ceiling, changes = case
    removal = [*changes, MemberChange("root", admin.nation, added=False, root=True)]
    assert _reason(lambda: check_members_change(POLICY, admin, admin_roles, False, ceiling, removal))
    # ...and root may remove itself.
    if "admin" in admin_roles and admin.active:
        check_members_change(POLICY, admin, admin_roles, True, ceiling, removal)


def test_membership_examples() -> None:
    admin = Subject("USA", "SECRET", frozenset())
    ts_humint = Label(POLICY.id, "TOP SECRET", ("USA",), ("HUMINT",))
    secret_usa = Label(POLICY.id, "SECRET", ("USA",))
    joins = [MemberChange("usa-admin", "USA", added=True)]
    with pytest.raises(PolicyViolation, match="ceiling is above the admin: clearance") as e:
        check_members_change(POLICY, admin, ["admin"], False, ts_humint, joins)
    assert e.value.reason == "grant-above-own"
    check_members_change(POLICY, admin, ["admin"], False, secret_usa, joins)
    check_members_change(POLICY, admin, ["admin"], False, secret_usa, [])
    for changes, reason in [
        ([MemberChange("root", "USA", added=False, root=True)], "forbidden"),
        ([MemberChange("ukr-a", "UKR", added=True)], "other-nation"),
        ([MemberChange("ukr-a", "UKR", added=False)], "other-nation"),
    ]:
        with pytest.raises(PolicyViolation) as e:
            check_members_change(POLICY, admin, ["admin"], False, secret_usa, changes)
        assert e.value.reason == reason
    with pytest.raises(PolicyViolation) as e:
        check_members_change(POLICY, admin, ["analyst"], False, secret_usa, [])
    assert e.value.reason == "not-admin"
    check_members_change(
        POLICY, admin, ["admin"], True, ts_humint, [MemberChange("root", "USA", False, True)]
    )


@given(subjects(), st.frozensets(st.sampled_from(ROLE_NAMES)), st.booleans(), labels(), st.booleans())
def test_who_may_read_a_message_entry(
    reader: Subject, roles: frozenset[str], root: bool, label: Label, party: bool
) -> None:
    got = may_read_message_entry(POLICY, reader, roles, root, label, party)
    assert got == (
        root or (dominates(POLICY, reader, label) and (party or bool({"auditor", "admin"} & roles)))
    )
    if got and not root:  # never above the reader's own access, whatever its role
        assert dominates(POLICY, reader, label)


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
        (
            'id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n[[levels]]\nname = "U"\n'
            'kem = ["RSA"]\nsignatures = ["ed25519"]\nmax_bytes = 10\nretention_days = 1\nsystems = true\n',
            "kem may only",
        ),
        (
            'id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n[[levels]]\nname = "U"\n'
            'kem = ["X25519"]\nsignatures = ["mldsa65"]\nmax_bytes = 10\nretention_days = 1\n'
            "systems = true\n",
            "must include ed25519",
        ),
        (
            'id = "x"\nversion = 1\nnations = ["USA"]\ncompartments = []\n[[levels]]\nname = "U"\n'
            'kem = ["X25519"]\nsignatures = ["ed25519"]\nmax_bytes = -1\nretention_days = 1\n'
            "systems = true\n",
            "max_bytes",
        ),
    ],
)
def test_malformed_policy_refused(text: str, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        parse_policy(text)


# --- the JSON form: the same validator as the TOML file, both directions ---------------------


def _unique(strategy: st.SearchStrategy[str], min_size: int) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(strategy, min_size=min_size, max_size=5, unique=True).map(tuple)


def _ordered_subset(items: tuple[str, ...], *, must: str | None = None) -> st.SearchStrategy[tuple[str, ...]]:
    return (
        st.permutations(items)
        .flatmap(lambda order: st.integers(1, len(order)).map(lambda n: tuple(order[:n])))
        .filter(lambda chosen: must is None or must in chosen)
    )


level_rules = st.builds(
    LevelRule,
    name=st.from_regex(r"[A-Z][A-Z0-9 _-]{0,31}", fullmatch=True),
    kem=_ordered_subset(KEM_SUITES),
    signatures=_ordered_subset((ED25519, MLDSA65), must=ED25519),
    max_bytes=st.integers(1, 1 << 30),
    retention_days=st.integers(1, 36500),
    systems=st.booleans(),
)
policies = st.builds(
    Policy,
    id=st.from_regex(SLUG_PATTERN, fullmatch=True),
    version=st.integers(1, 1 << 40),
    nations=_unique(st.from_regex(NATION_PATTERN, fullmatch=True), 1),
    compartments=_unique(st.from_regex(COMPARTMENT_PATTERN, fullmatch=True), 0),
    levels=st.lists(level_rules, min_size=1, max_size=5, unique_by=lambda lv: lv.name).map(tuple),
    sha256=st.one_of(st.just(""), st.binary(min_size=32, max_size=32).map(bytes.hex)),
)


def _toml_value(value: Any) -> str:
    # JSON writes strings, integers and booleans as TOML does; arrays and inline tables nest.
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _toml(obj: dict[str, Any]) -> str:
    """The policy file with `to_json`'s fields (all but sha256, the file's own hash)."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in obj.items() if k != "sha256")


@given(policies)
def test_policy_json_round_trip(policy: Policy) -> None:
    """to_json then from_json gives the policy back, sha256 included, as JSON text too."""
    served = policy.to_json()
    assert Policy.from_json(served) == policy
    assert Policy.from_json(json.loads(json.dumps(served))) == policy
    assert Policy.from_json(served).to_json() == served


@given(policies)
def test_the_file_and_the_json_give_the_same_policy(policy: Policy) -> None:
    """The policy file with the same fields parses to the same policy; only sha256 differs (it
    is the file's hash, and from_json keeps the one it is given)."""
    text = _toml(policy.to_json())
    parsed = parse_policy(text)
    assert parsed.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert Policy.from_json({**parsed.to_json(), "sha256": policy.sha256}) == policy
    assert Policy.from_json(parsed.to_json()) == parsed


def test_the_default_policy_round_trips(policy: Policy) -> None:
    assert Policy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
    assert policy.sha256 == hashlib.sha256(DEFAULT_POLICY.read_bytes()).hexdigest()


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "no levels": (lambda p: p.pop("levels"), "levels must be"),
    "empty levels": (lambda p: p.update(levels=[]), "levels must be"),
    "id": (lambda p: p.update(id="Not A Slug"), "id must be"),
    "id type": (lambda p: p.update(id=7), "id must be"),
    "version": (lambda p: p.update(version=0), "version must be"),
    "version bool": (lambda p: p.update(version=True), "version must be"),
    "nations type": (lambda p: p.update(nations=[1, 2]), "nations must be"),
    "nations case": (lambda p: p.update(nations=["usa"]), "nations has invalid"),
    "compartments": (lambda p: p.update(compartments=["a b"]), "compartments has invalid"),
    "extra": (lambda p: p.update(extra=1), "unknown keys"),
    "level extra": (lambda p: p["levels"][0].update(extra=1), "unknown keys"),
    "level type": (lambda p: p["levels"].append("x"), "must be a table"),
    "kem": (lambda p: p["levels"][0].update(kem=["RSA"]), "kem may only"),
    "signatures": (lambda p: p["levels"][0].update(signatures=[MLDSA65]), "must include ed25519"),
    "max_bytes": (lambda p: p["levels"][0].update(max_bytes=1 << 31), "max_bytes"),
    "retention": (lambda p: p["levels"][0].update(retention_days=0), "retention_days"),
    "systems": (lambda p: p["levels"][0].update(systems=1), "systems must be"),
    "level names": (lambda p: p["levels"].append(dict(p["levels"][0])), "unique"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_json_and_file_refuse_alike(policy: Policy, name: str) -> None:
    """One validator: each mutation is refused from JSON and from the file, with one message."""
    mutate, message = MUTATIONS[name]
    obj = copy.deepcopy(policy.to_json())
    mutate(obj)
    with pytest.raises(MalformedError, match=message) as from_json:
        Policy.from_json(obj)
    with pytest.raises(MalformedError, match=message) as from_file:
        parse_policy(_toml(obj))
    assert str(from_json.value) == str(from_file.value)


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "policy",
        {"sha256": ""},
        {**POLICY.to_json(), "sha256": "ABC"},
        {**POLICY.to_json(), "sha256": 1},
        {k: v for k, v in POLICY.to_json().items() if k != "sha256"},
    ],
)
def test_from_json_refuses_what_is_not_to_json_output(obj: Any) -> None:
    with pytest.raises(MalformedError, match=r"^policy: "):
        Policy.from_json(obj)


def test_v1_readable_until_date() -> None:
    """`[envelopes] v1_readable_until` (protocol 5.4): parsed from TOML, kept through JSON."""
    from datetime import UTC, datetime

    text = DEFAULT_POLICY.read_text() + "\n[envelopes]\nv1_readable_until = 2027-06-30T00:00:00Z\n"
    policy = parse_policy(text)
    assert policy.v1_readable_until == datetime(2027, 6, 30, tzinfo=UTC)
    assert not policy.v1_refused(datetime(2027, 6, 29, 23, 59, tzinfo=UTC))
    assert policy.v1_refused(datetime(2027, 6, 30, tzinfo=UTC))
    again = Policy.from_json(policy.to_json())
    assert again.v1_readable_until == policy.v1_readable_until and again == policy
    assert not POLICY.v1_refused(datetime(2100, 1, 1, tzinfo=UTC)) and "envelopes" not in POLICY.to_json()
    for bad in (
        "v1_readable_until = 2027-06-30T00:00:00",  # no offset: which day is it?
        "v1_readable_until = 2027-06-30",
        'v1_readable_until = "soon"',
        "v2_readable_until = 2027-06-30T00:00:00Z",
    ):
        with pytest.raises(MalformedError, match="envelopes"):
            parse_policy(DEFAULT_POLICY.read_text() + f"\n[envelopes]\n{bad}\n")
