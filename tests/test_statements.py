"""Directory statements (liaison.crypto.statements, protocol 9.2): JSON both directions for
every type, strict parsing (only MalformedStatement escapes), signatures and tampering, the
invitation key, the chain rule, and the facts of a principal."""

from __future__ import annotations

import copy
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto import _primitives as p
from liaison.crypto.commitments import Disclosure, commit, commit_all
from liaison.crypto.encoding import b64url_encode, jcs
from liaison.crypto.errors import (
    BadSignature,
    CommitmentMismatch,
    MalformedError,
    MalformedStatement,
    PolicyViolation,
    StatementInvalid,
)
from liaison.crypto.keys import DeviceKeys
from liaison.crypto.labels import Label
from liaison.crypto.names import ROLES, X25519
from liaison.crypto.policy import Policy, parse_policy
from liaison.crypto.statements import (
    STATEMENT_TYPES,
    SignedStatement,
    Statement,
    channel_statement,
    check_successor,
    check_universe,
    device_statement,
    fact_universe,
    invitation_public,
    invitation_seed,
    invitation_statement,
    label_needs,
    open_all,
    open_predicates,
    policy_statement,
    principal_facts,
    principal_statement,
    roots_statement,
    sign_statement,
)

POLICY: Policy = parse_policy((Path(__file__).parent.parent / "service" / "default_policy.toml").read_bytes())
ORIGIN = "liaison.example/audit"
EXPIRES = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
CODE = "FZNR2-U4DC5-FHO6N-ROPP7"


def _seed(*parts: str, n: int = 32) -> bytes:
    return hashlib.sha256("/".join(("test-statements", *parts)).encode()).digest()[:n]


def device(name: str, principal: str, *, hybrid: bool = False) -> DeviceKeys:
    ml = _seed(name, "mldsa") if hybrid else None
    return DeviceKeys(principal, "2026-11-01T00:00:00Z", _seed(name, "ed"), ml, X25519, _seed(name, "x"))


ROOT = device("root", "root")
ADMIN = device("admin", "admin-fra", hybrid=True)
ALICE = device("alice", "alice")


def _salts() -> Any:
    counter = iter(range(10**6))
    return lambda: _seed("salt", str(next(counter)), n=16)


def principal(
    seq: int = 1, prev: bytes | None = None, **over: Any
) -> tuple[Statement, dict[str, Disclosure]]:
    attrs: dict[str, Any] = {
        "principal": "alice",
        "nation": "FRA",
        "kind": "person",
        "clearance": "SECRET",
        "compartments": ["AIRDEF"],
        "roles": ["analyst"],
        "active": True,
        "signer": ADMIN.device_id,
        "salt": _salts(),
    }
    attrs.update(over)
    return principal_statement(ORIGIN, POLICY, seq=seq, prev=prev, **attrs)


def invitation(code: str = CODE, **over: Any) -> SignedStatement:
    attrs: dict[str, Any] = {
        "principal": "alice",
        "nation": "FRA",
        "key": invitation_public(code),
        "expires": EXPIRES,
        "anchors": _seed("anchors"),
        "signer": ADMIN.device_id,
    }
    attrs.update(over)
    return sign_statement(ADMIN, invitation_statement(ORIGIN, **attrs))


def enrolment(inv: SignedStatement | None = None) -> SignedStatement:
    inv = inv or invitation()
    st = device_statement(
        ORIGIN,
        bundle=ALICE.public,
        principal="alice",
        nation="FRA",
        status="active",
        seq=1,
        prev=None,
        signer=ALICE.device_id,
        invitation=inv,
    )
    return sign_statement(ALICE, st, invitation_seed(CODE))


CEILING = Label(POLICY.id, "SECRET", ("FRA", "USA"), ("AIRDEF",))


def every_type() -> dict[str, SignedStatement]:
    roots = roots_statement(ORIGIN, devices=[ROOT.device_id], seq=1, prev=None, signer=ROOT.device_id)
    chan = channel_statement(
        ORIGIN,
        channel="ops",
        ceiling=CEILING,
        members=["bob", "alice"],
        seq=1,
        prev=None,
        signer=ADMIN.device_id,
    )
    return {
        "roots": sign_statement(ROOT, roots),
        "policy": sign_statement(
            ROOT, policy_statement(ORIGIN, POLICY, seq=1, prev=None, signer=ROOT.device_id)
        ),
        "principal": sign_statement(ADMIN, principal()[0]),
        "device": enrolment(),
        "channel": sign_statement(ADMIN, chan),
        "invitation": invitation(),
    }


EVERY = every_type()


# --- JSON, both directions -----------------------------------------------------------------


@pytest.mark.parametrize("kind", STATEMENT_TYPES)
def test_every_type_round_trips_both_ways(kind: str) -> None:
    signed = EVERY[kind]
    wire = signed.to_json()
    assert signed.statement.type == kind
    again = SignedStatement.from_json(wire)
    assert again == signed and again.to_json() == wire
    assert Statement.from_json(wire["statement"]).to_json() == wire["statement"]
    assert Statement.from_json(signed.statement.to_json()) == signed.statement
    # Through JCS text too (what is stored and sent).
    assert SignedStatement.from_json(rfc8785_loads(jcs(wire))) == signed


def rfc8785_loads(data: bytes) -> Any:
    from liaison.crypto.encoding import loads_strict

    return loads_strict(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    clearance=st.sampled_from([lv.name for lv in POLICY.levels]),
    compartments=st.sets(st.sampled_from(POLICY.compartments)),
    roles=st.sets(st.sampled_from(ROLES)),
    kind=st.sampled_from(["person", "system"]),
    active=st.booleans(),
    nation=st.sampled_from(POLICY.nations),
    seq=st.integers(min_value=1, max_value=2**53 - 1),
)
def test_principal_statements_round_trip_and_open(
    clearance: str, compartments: set[str], roles: set[str], kind: str, active: bool, nation: str, seq: int
) -> None:
    prev = None if seq == 1 else _seed("prev", str(seq))
    st_, disclosures = principal(
        seq,
        prev,
        clearance=clearance,
        compartments=compartments,
        roles=roles,
        kind=kind,
        active=active,
        nation=nation,
    )
    assert Statement.from_json(st_.to_json()) == st_
    assert st_.nation == nation and st_.record == "principal:alice" and st_.id == "alice"
    facts = open_all(st_, disclosures)
    assert facts == principal_facts(
        POLICY, kind=kind, clearance=clearance, compartments=compartments, roles=roles, active=active
    )
    assert set(st_.facts) == set(fact_universe(POLICY))
    check_universe(POLICY, st_)


@settings(max_examples=60, deadline=None)
@given(members=st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True), max_size=8))
def test_channel_members_are_sorted_and_unique(members: list[str]) -> None:
    st_ = channel_statement(
        ORIGIN, channel="ops", ceiling=CEILING, members=members, seq=1, prev=None, signer=ADMIN.device_id
    )
    assert list(st_.members) == sorted(set(members))
    assert Statement.from_json(st_.to_json()) == st_ and st_.ceiling == CEILING and st_.nation == "*"


def test_typed_views() -> None:
    dev = EVERY["device"].statement
    assert dev.bundle == ALICE.public and dev.invitation is not None
    assert dev.invitation.statement == invitation().statement  # ML-DSA-65 signatures are randomised
    assert EVERY["roots"].statement.devices == (ROOT.device_id,)
    inv = EVERY["invitation"].statement
    assert inv.key == invitation_public(CODE) and inv.expires == EXPIRES
    assert inv.record == "invitation:" + b64url_encode(invitation_public(CODE))
    assert EVERY["policy"].statement.public == {
        "id": POLICY.id,
        "version": POLICY.version,
        "sha256": POLICY.sha256,
    }
    with pytest.raises(StatementInvalid) as caught:
        EVERY["roots"].statement.ceiling  # noqa: B018
    assert caught.value.reason == "type"
    for kind, name in (
        ("principal", "bundle"),
        ("device", "devices"),
        ("channel", "key"),
        ("roots", "members"),
    ):
        with pytest.raises(StatementInvalid):
            getattr(EVERY[kind].statement, name)


def test_digest_and_messages_are_the_spec_bytes() -> None:
    for signed in EVERY.values():
        st_ = signed.statement
        text = rfc8785.dumps(st_.to_json())
        assert st_.canonical() == text
        assert st_.digest() == hashlib.sha256(b"liaison/v1/statement-digest\x00" + text).digest()
        assert st_.message() == b"liaison/v1/statement\x00" + text
        assert st_.invitation_message() == b"liaison/v1/statement-invitation\x00" + text
        assert signed.digest() == st_.digest()


# --- strict parsing ------------------------------------------------------------------------


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(obj)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


WIRES = {kind: s.to_json() for kind, s in EVERY.items()}
PATHS = [(kind, path) for kind, wire in WIRES.items() for path in _paths(wire)]
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(PATHS), value=junk)
def test_any_change_is_refused_or_breaks_a_signature(where: tuple[str, tuple[Any, ...]], value: Any) -> None:
    """A changed field either fails to parse (MalformedStatement, never a raw exception) or
    fails verification: nothing the signer did not sign verifies."""
    kind, path = where
    wire = WIRES[kind]
    changed = _set(wire, path, value)
    try:
        signed = SignedStatement.from_json(changed)
    except MalformedStatement:
        return
    if changed == wire or jcs(changed) == jcs(wire):
        return
    signer = {ROOT.device_id: ROOT, ADMIN.device_id: ADMIN, ALICE.device_id: ALICE}.get(
        signed.statement.signer
    )
    bundle = (signer or ROOT).public
    try:
        signed.verify(bundle)
    except BadSignature:
        pass
    else:
        # Only the invitation signature or the embedded invitation's own signatures changed.
        assert path[0] == "invitation_signature" or (kind == "device" and "invitation" in path)
        if path[0] == "invitation_signature":
            with pytest.raises(BadSignature):
                signed.verify_invitation(invitation_public(CODE))


@pytest.mark.parametrize(
    "obj",
    [None, [], "statement", 1, {}, {"statement": WIRES["roots"]["statement"]}],
)
def test_not_a_signed_statement(obj: Any) -> None:
    with pytest.raises(MalformedStatement):
        SignedStatement.from_json(obj)


def _statement_with(kind: str, **over: Any) -> dict[str, Any]:
    return {**WIRES[kind]["statement"], **over}


@pytest.mark.parametrize(
    ("kind", "over"),
    [
        ("roots", {"origin": ""}),
        ("roots", {"origin": "a\nb"}),
        ("roots", {"origin": "x" * 256}),
        ("roots", {"origin": 5}),
        ("roots", {"seq": True}),
        ("roots", {"seq": 2**53}),
        ("roots", {"seq": -1}),
        ("roots", {"public": []}),
        ("roots", {"facts": []}),
        ("roots", {"signer": "d_" + "A" * 26}),
        ("roots", {"record": "roots:x"}),
        ("policy", {"public": {"id": "x", "version": 0, "sha256": "0" * 64}}),
        ("policy", {"public": {"id": "x", "version": 1, "sha256": "A" * 64}}),
        ("policy", {"public": {"id": "X", "version": 1, "sha256": "0" * 64}}),
        ("principal", {"public": {"principal": "alice", "nation": "FRA", "name": "Alice"}}),
        ("principal", {"public": {"principal": "Alice", "nation": "FRA"}, "record": "principal:Alice"}),
        ("principal", {"public": {"principal": "alice", "nation": "FRAN"}}),
        ("principal", {"public": {"principal": "alice", "nation": "**"}}),
        ("principal", {"facts": {"active": b64url_encode(bytes(32))}}),
        ("principal", {"record": "device:alice"}),
        ("channel", {"public": {**WIRES["channel"]["statement"]["public"], "members": ["Bob"]}}),
        ("channel", {"public": {**WIRES["channel"]["statement"]["public"], "ceiling": {"policy": "x"}}}),
        ("channel", {"public": {**WIRES["channel"]["statement"]["public"], "channel": "../x"}}),
        (
            "invitation",
            {"public": {**WIRES["invitation"]["statement"]["public"], "key": b64url_encode(bytes(31))}},
        ),
        ("invitation", {"public": {**WIRES["invitation"]["statement"]["public"], "anchors": ""}}),
        ("invitation", {"public": {**WIRES["invitation"]["statement"]["public"], "expires": "tomorrow"}}),
        (
            "invitation",
            {
                "public": {
                    **WIRES["invitation"]["statement"]["public"],
                    "expires": "2026-12-02T13:00:00+01:00",
                }
            },
        ),
        ("invitation", {"record": "invitation:" + b64url_encode(bytes(32))}),
        ("device", {"public": {**WIRES["device"]["statement"]["public"], "bundle": {}}}),
        ("device", {"public": {**WIRES["device"]["statement"]["public"], "invitation": WIRES["roots"]}}),
        ("device", {"public": {**WIRES["device"]["statement"]["public"], "invitation": {"statement": 1}}}),
    ],
)
def test_statement_refusals(kind: str, over: dict[str, Any]) -> None:
    with pytest.raises(MalformedStatement) as caught:
        Statement.from_json(_statement_with(kind, **over))
    assert caught.value.reason == "malformed" and isinstance(caught.value, MalformedError)
    assert isinstance(caught.value, StatementInvalid)


def test_a_device_bundle_with_an_unknown_suite_is_malformed() -> None:
    public = copy.deepcopy(WIRES["device"]["statement"]["public"])
    public["bundle"]["kem"]["suite"] = "P256"
    with pytest.raises(MalformedStatement):
        Statement.from_json(_statement_with("device", public=public))


def test_signature_maps_are_checked_for_shape() -> None:
    sigs: Any
    for sigs in (
        {},
        {"mldsa65": "AAAA"},
        {"ed25519": 5},
        {"ed25519": "A"},
        {"ed25519": "AA==", "x": "AA"},
        [],
    ):
        with pytest.raises(MalformedStatement):
            SignedStatement.from_json({**WIRES["roots"], "signatures": sigs})
    with pytest.raises(MalformedStatement):
        SignedStatement.from_json({**WIRES["roots"], "extra": 1})
    with pytest.raises(MalformedStatement):
        SignedStatement.from_json({**WIRES["device"], "invitation_signature": b64url_encode(bytes(63))})


# --- signatures ----------------------------------------------------------------------------


def test_every_key_of_a_hybrid_signer_must_sign() -> None:
    signed = EVERY["principal"]
    assert set(signed.signatures) == {"ed25519", "mldsa65"}
    signed.verify(ADMIN.public)
    stripped = SignedStatement(signed.statement, {"ed25519": signed.signatures["ed25519"]})
    with pytest.raises(BadSignature):
        stripped.verify(ADMIN.public)
    with pytest.raises(BadSignature):
        signed.verify(ROOT.public)  # not the signer named in the statement


def test_a_signature_for_one_record_does_not_verify_for_another() -> None:
    a = principal()[0]
    b = principal(principal="bob")[0]
    signed = sign_statement(ADMIN, a)
    with pytest.raises(BadSignature):
        SignedStatement(b, signed.signatures).verify(ADMIN.public)
    moved = Statement.from_json({**a.to_json(), "origin": "other.example/audit"})
    with pytest.raises(BadSignature):
        SignedStatement(moved, signed.signatures).verify(ADMIN.public)


def test_the_invitation_signature() -> None:
    signed = EVERY["device"]
    signed.verify(ALICE.public)
    signed.verify_invitation(invitation_public(CODE))
    with pytest.raises(BadSignature):
        signed.verify_invitation(invitation_public("AAAAA-BBBBB-CCCCC-DDDDD"))
    with pytest.raises(BadSignature):
        EVERY["roots"].verify_invitation(invitation_public(CODE))
    # The device keys' signature and the invitation key's are over different messages.
    assert signed.invitation_signature is not None
    assert not p.ed25519_verify(
        invitation_public(CODE), signed.statement.message(), signed.invitation_signature
    )


def test_sign_statement_refuses_other_keys_and_seeds() -> None:
    with pytest.raises(StatementInvalid) as caught:
        sign_statement(ROOT, principal()[0])
    assert caught.value.reason == "signer"
    st_ = enrolment().statement
    with pytest.raises(StatementInvalid) as caught:
        sign_statement(ALICE, st_, invitation_seed("AAAAA-BBBBB-CCCCC-DDDDD"))
    assert caught.value.reason == "invitation"
    with pytest.raises(StatementInvalid):
        sign_statement(ROOT, EVERY["roots"].statement, invitation_seed(CODE))


def test_a_device_first_statement_needs_the_invitation_signature() -> None:
    wire = WIRES["device"]
    without = {k: v for k, v in wire.items() if k != "invitation_signature"}
    with pytest.raises(MalformedStatement):
        SignedStatement.from_json(without)
    with pytest.raises(MalformedStatement):
        SignedStatement.from_json(
            {**WIRES["principal"], "invitation_signature": wire["invitation_signature"]}
        )


def test_a_genesis_root_device_statement_is_signed_by_the_root_code_key() -> None:
    st_ = device_statement(
        ORIGIN,
        bundle=ROOT.public,
        principal="root",
        nation="USA",
        status="active",
        seq=1,
        prev=None,
        signer=ROOT.device_id,
        invitation=None,
    )
    signed = sign_statement(ROOT, st_, invitation_seed(CODE))
    assert SignedStatement.from_json(signed.to_json()) == signed and signed.statement.invitation is None
    signed.verify_invitation(invitation_public(CODE))


def test_device_statement_refuses_an_invitation_after_seq_1() -> None:
    with pytest.raises(MalformedStatement):
        device_statement(
            ORIGIN,
            bundle=ALICE.public,
            principal="alice",
            nation="FRA",
            status="revoked",
            seq=2,
            prev=bytes(32),
            signer=ALICE.device_id,
            invitation=invitation(),
        )


# --- the invitation key --------------------------------------------------------------------


def test_invitation_seed_is_hkdf_sha256_of_the_code() -> None:
    prk = hmac.new(bytes(32), CODE.encode(), hashlib.sha256).digest()
    okm = hmac.new(prk, b"liaison/v1/invitation-key\x01", hashlib.sha256).digest()
    assert invitation_seed(CODE) == okm
    assert invitation_public(CODE) == p.ed25519_public(okm)
    assert invitation_public(CODE) != invitation_public("FZNR2-U4DC5-FHO6N-ROPP6")


@pytest.mark.parametrize(
    "code", ["", "fznr2-u4dc5-fho6n-ropp7", "FZNR2-U4DC5-FHO6N", "FZNR1-U4DC5-FHO6N-ROPP7", None]
)
def test_invitation_seed_refuses_what_is_not_a_code(code: Any) -> None:
    with pytest.raises(MalformedError):
        invitation_seed(code)


def test_invitation_expiry_is_to_the_second() -> None:
    signed = invitation(expires=EXPIRES + timedelta(microseconds=999_999))
    assert signed.statement.public["expires"] == "2026-12-02T12:00:00Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        invitation(expires=datetime(2026, 12, 2))


# --- the chain -----------------------------------------------------------------------------


def test_the_chain_rule() -> None:
    first, _ = principal()
    second, _ = principal(2, first.digest(), active=False)
    check_successor(None, first)
    check_successor(first, second)
    cases: list[tuple[Statement | None, Statement, str]] = [
        (None, second, "chain"),
        (first, first, "stale"),
        (second, first, "stale"),
        (first, principal(3, first.digest())[0], "chain"),
        (first, principal(2, bytes(32))[0], "chain"),
        (first, principal(2, first.digest(), principal="bob")[0], "record"),
        (first, Statement.from_json({**second.to_json(), "origin": "other.example/audit"}), "origin"),
        (first, principal(2, first.digest(), nation="UKR")[0], "nation"),
    ]
    for previous, new, reason in cases:
        with pytest.raises(StatementInvalid) as caught:
            check_successor(previous, new)
        assert caught.value.reason == reason, (reason, caught.value)


def test_two_successors_of_one_statement_are_a_fork() -> None:
    first, _ = principal()
    a, _ = principal(2, first.digest(), active=False)
    b, _ = principal(2, first.digest(), clearance="TOP SECRET")
    check_successor(first, a)
    check_successor(first, b)  # each alone is a successor: the server keeps the first
    with pytest.raises(StatementInvalid) as caught:
        check_successor(a, b)
    assert caught.value.reason == "stale"


def test_a_revoked_device_record_is_closed_and_policy_versions_rise() -> None:
    first = enrolment().statement

    def dev(seq: int, prev: bytes, status: str) -> Statement:
        return device_statement(
            ORIGIN,
            bundle=ALICE.public,
            principal="alice",
            nation="FRA",
            status=status,
            seq=seq,
            prev=prev,
            signer=ALICE.device_id,
            invitation=None,
        )

    revoked = dev(2, first.digest(), "revoked")
    check_successor(first, revoked)
    with pytest.raises(StatementInvalid) as caught:
        check_successor(revoked, dev(3, revoked.digest(), "revoked"))
    assert caught.value.reason == "revoked"
    pol = EVERY["policy"].statement
    same = policy_statement(ORIGIN, POLICY, seq=2, prev=pol.digest(), signer=ROOT.device_id)
    with pytest.raises(StatementInvalid) as caught:
        check_successor(pol, same)
    assert caught.value.reason == "version"
    newer = Policy(
        POLICY.id, POLICY.version + 1, POLICY.nations, POLICY.compartments, POLICY.levels, "1" * 64
    )
    check_successor(pol, policy_statement(ORIGIN, newer, seq=2, prev=pol.digest(), signer=ROOT.device_id))


# --- facts ---------------------------------------------------------------------------------


@given(
    clearance=st.sampled_from([lv.name for lv in POLICY.levels]),
    compartments=st.sets(st.sampled_from(POLICY.compartments)),
    roles=st.sets(st.sampled_from(ROLES)),
)
def test_facts_are_monotone_predicates_over_the_universe(
    clearance: str, compartments: set[str], roles: set[str]
) -> None:
    facts = principal_facts(
        POLICY, kind="system", clearance=clearance, compartments=compartments, roles=roles, active=False
    )
    assert list(facts) == list(fact_universe(POLICY))
    assert facts["active"] is False and facts["person"] is False
    for lv in POLICY.levels:
        assert facts[f"level>={lv.name}"] == (POLICY.rank(clearance) >= POLICY.rank(lv.name))
    assert {c for c in POLICY.compartments if facts[f"holds:{c}"]} == compartments
    assert {r for r in ROLES if facts[f"role:{r}"]} == roles


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"kind": "robot"}, "unknown-kind"),
        ({"clearance": "COSMIC"}, "unknown-level"),
        ({"compartments": ["NOPE"]}, "unknown-compartment"),
        ({"roles": ["king"]}, "unknown-role"),
    ],
)
def test_principal_facts_refuse_unknown_names(attrs: dict[str, Any], reason: str) -> None:
    base: dict[str, Any] = {
        "kind": "person",
        "clearance": "SECRET",
        "compartments": [],
        "roles": [],
        "active": True,
    }
    with pytest.raises(PolicyViolation) as caught:
        principal_facts(POLICY, **{**base, **attrs})
    assert caught.value.reason == reason


def test_a_principal_of_an_unknown_nation_is_refused() -> None:
    with pytest.raises(PolicyViolation) as caught:
        principal(nation="XYZ")
    assert caught.value.reason == "unknown-nation"


def test_label_needs() -> None:
    secret = Label(POLICY.id, "SECRET", ("FRA",), ("AIRDEF", "CYBER"))
    assert label_needs(POLICY, secret) == ("active", "level>=SECRET", "holds:AIRDEF", "holds:CYBER", "person")
    low = Label(POLICY.id, "UNCLASSIFIED", ("FRA",))
    assert label_needs(POLICY, low) == ("active", "level>=UNCLASSIFIED")
    with pytest.raises(PolicyViolation):
        label_needs(POLICY, Label("other", "SECRET", ("FRA",)))
    with pytest.raises(PolicyViolation):
        label_needs(POLICY, Label(POLICY.id, "COSMIC", ("FRA",)))


def test_check_universe_refuses_a_statement_for_another_universe() -> None:
    st_, _ = principal()
    fewer = {k: v for k, v in st_.facts.items() if k != "holds:HUMINT"}
    partial = Statement.from_json({**st_.to_json(), "facts": {k: b64url_encode(v) for k, v in fewer.items()}})
    with pytest.raises(StatementInvalid) as caught:
        check_universe(POLICY, partial)
    assert caught.value.reason == "universe"
    check_universe(POLICY, EVERY["channel"].statement)  # no facts to check


def test_opening_predicates() -> None:
    st_, disclosures = principal()
    assert open_predicates(st_, {"active": disclosures["active"]}) == {"active": True}
    with pytest.raises(StatementInvalid) as caught:
        open_all(st_, {"active": disclosures["active"]})
    assert caught.value.reason == "disclosures"
    with pytest.raises(CommitmentMismatch):
        open_predicates(st_, {"active": Disclosure(disclosures["active"].salt, False)})
    with pytest.raises(CommitmentMismatch):  # the disclosure of one predicate shown as another's
        open_predicates(st_, {"role:admin": disclosures["role:analyst"]})
    # A signer that committed to a non-boolean: the statement is refused when opened.
    facts, odd = commit_all({"active": "yes", "person": True}, _salts())
    weird = Statement.from_json({**st_.to_json(), "facts": {k: b64url_encode(v) for k, v in facts.items()}})
    with pytest.raises(StatementInvalid) as caught:
        open_predicates(weird, odd)
    assert caught.value.reason == "not-boolean"
    assert commit("active", "yes", odd["active"].salt) == facts["active"]
