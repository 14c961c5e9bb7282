"""Write the directory test vectors (protocol 9.1, 9.2, 9.4, 9.7, 9.8) of this directory.

    python tests/vectors/directory/generate.py            # (re)write the vectors here
    python tests/vectors/directory/generate.py --out DIR  # write them elsewhere
    python tests/vectors/directory/generate.py --check    # compare with the files here, byte for byte

Everything is deterministic: device keys are RFC 8032 section 7.1 test seeds (Ed25519 only:
Ed25519 signatures are deterministic) with X25519 KEM keys from fixed seeds, salts come from a
counter, times are fixed. Files (all bytes unpadded base64url as on the wire, digests also hex):

* `commitments.json`: `key` (K_c), `valid` commitments (name, value, salt, commitment,
  disclosure), `invalid` (commitments and disclosures that `open_facts` or the disclosure
  parser must refuse, with the error and the field).
* `statements.json`: the `policy` TOML, the `devices` (seed, KEM key, bundle, id),
  `invitation_keys` (code -> HKDF seed -> Ed25519 public key), `valid` signed statements of
  every type (JCS text, digest, the signer view and what is relied on, under which
  `check_authority` passes), `invalid` ones with the error class and reason: parse refusals
  (`MalformedStatement`), tampered signatures (`BadSignature`), chain refusals
  (`StatementInvalid`, with `previous`) and authority refusals (`AuthorityError`).
* `anchors.json`: anchors objects with their digests and LIAISON2 invitations, and invalid
  anchors objects and invitation strings.

tests/test_directory_vectors.py recomputes digests, commitments, signatures and invitation
keys with hashlib, hmac, rfc8785 and PyNaCl (not with liaison.crypto), checks the library
against every case, and re-runs this script with --check.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from liaison.crypto import _primitives as p  # noqa: E402
from liaison.crypto import note  # noqa: E402
from liaison.crypto.anchors import Anchors, anchors_digest  # noqa: E402
from liaison.crypto.commitments import COMMITMENT_KEY, Disclosure, commit  # noqa: E402
from liaison.crypto.encoding import b64url_encode, jcs  # noqa: E402
from liaison.crypto.invitation import make_invitation_v2  # noqa: E402
from liaison.crypto.keys import DeviceKeys  # noqa: E402
from liaison.crypto.labels import Label  # noqa: E402
from liaison.crypto.names import X25519  # noqa: E402
from liaison.crypto.policy import parse_policy  # noqa: E402
from liaison.crypto.statements import (  # noqa: E402
    SignedStatement,
    Statement,
    channel_statement,
    device_statement,
    invitation_public,
    invitation_seed,
    invitation_statement,
    policy_statement,
    principal_statement,
    roots_statement,
    sign_statement,
)

ORIGIN = "liaison.example/audit"
SOURCE = "this project (docs/protocol.md, section 9); Ed25519 seeds from RFC 8032 section 7.1"
CREATED = "2026-11-01T00:00:00Z"
EXPIRES = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
POLICY_TOML = """id = "coalition-2026"
version = 1
nations = ["FRA", "UKR", "USA"]
compartments = ["AIRDEF", "CYBER"]

[[levels]]
name = "UNCLASSIFIED"
kem = ["X25519", "MLKEM768-X25519"]
signatures = ["ed25519"]
max_bytes = 1048576
retention_days = 365
systems = true

[[levels]]
name = "SECRET"
kem = ["X25519", "MLKEM768-X25519"]
signatures = ["ed25519"]
max_bytes = 1048576
retention_days = 90
systems = false

[[levels]]
name = "TOP SECRET"
kem = ["X25519", "MLKEM768-X25519"]
signatures = ["ed25519"]
max_bytes = 1048576
retention_days = 30
systems = false
"""
POLICY = parse_policy(POLICY_TOML)

#: RFC 8032 section 7.1: TEST 1, 2, 3 and 1024 secret keys (the 32-byte seeds).
RFC8032 = {
    "TEST 1": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    "TEST 2": "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "TEST 3": "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    "TEST 1024": "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
}
#: name -> (principal, RFC 8032 test)
DEVICE_PLAN = {
    "root": ("root", "TEST 1"),
    "admin-fra": ("admin-fra", "TEST 2"),
    "alice": ("alice", "TEST 3"),
    "root-2": ("root", "TEST 1024"),
}
CODES = {
    "genesis": "ROOTS-GENES-ISCOD-EAAAA",
    "admin-fra": "FZNR2-U4DC5-FHO6N-ROPP7",
    "alice": "ALICE-FRA22-U4DC5-QRST7",
}


def seed(*parts: str, n: int = 32) -> bytes:
    return hashlib.sha256("/".join(("liaison-vectors-directory", *parts)).encode()).digest()[:n]


def device(name: str) -> DeviceKeys:
    principal, test = DEVICE_PLAN[name]
    return DeviceKeys(principal, CREATED, bytes.fromhex(RFC8032[test]), None, X25519, seed(name, "x25519"))


DEVICES = {name: device(name) for name in DEVICE_PLAN}


class Salts:
    """Deterministic 16-byte salts: SHA-256 of a counter."""

    def __init__(self, label: str) -> None:
        self.label, self.n = label, 0

    def __call__(self) -> bytes:
        self.n += 1
        return seed("salt", self.label, str(self.n), n=16)


def dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


# --- commitments.json ------------------------------------------------------------------


def commitments() -> dict[str, Any]:
    cases: list[tuple[str, Any]] = [
        ("active", True),
        ("active", False),
        ("level>=TOP SECRET", True),
        ("holds:AIRDEF", False),
        ("role:admin", True),
        ("display_name", "Zoë Ångström"),
        ("attributes", {"b": [1, 2.5, None], "a": "x\u2028y"}),
        ("n", 1),
    ]
    valid = []
    for i, (name, value) in enumerate(cases):
        salt = seed("commitment", str(i), n=16)
        c = commit(name, value, salt)
        valid.append(
            {
                "name": name,
                "value": value,
                "salt": b64url_encode(salt),
                "commitment": b64url_encode(c),
                "commitment_hex": c.hex(),
                "disclosure": Disclosure(salt, value).to_json(),
            }
        )
    v = valid
    com = {x["name"]: x["commitment"] for x in v[2:5]}  # level>=TOP SECRET, holds:AIRDEF, role:admin

    def disc(i: int, **over: Any) -> dict[str, Any]:
        return {**v[i]["disclosure"], **over}

    other_salt = b64url_encode(seed("commitment", "other", n=16))
    invalid = [
        ("a wrong salt", com, {"role:admin": disc(4, salt=other_salt)}, "CommitmentMismatch", "role:admin"),
        (
            "the opposite value",
            com,
            {"holds:AIRDEF": disc(3, value=True)},
            "CommitmentMismatch",
            "holds:AIRDEF",
        ),
        (
            "1 for true (JCS differs)",
            com,
            {"role:admin": disc(4, value=1)},
            "CommitmentMismatch",
            "role:admin",
        ),
        (
            "one field's opening shown as another's",
            com,
            {"level>=TOP SECRET": v[4]["disclosure"]},
            "CommitmentMismatch",
            "level>=TOP SECRET",
        ),
        (
            "a disclosure with no commitment",
            com,
            {"active": v[0]["disclosure"]},
            "CommitmentMismatch",
            "active",
        ),
        (
            "one good and one bad disclosure",
            com,
            {"role:admin": v[4]["disclosure"], "holds:AIRDEF": disc(3, value=True)},
            "CommitmentMismatch",
            "holds:AIRDEF",
        ),
        ("a 15-byte salt", com, {"role:admin": disc(4, salt=other_salt[:20])}, "MalformedStatement", None),
        ("a 17-byte salt", com, {"role:admin": disc(4, salt=other_salt + "AA")}, "MalformedStatement", None),
        (
            "a non-canonical salt (spare bits set)",
            com,
            {"role:admin": disc(4, salt=v[4]["disclosure"]["salt"][:-1] + "B")},
            "MalformedStatement",
            None,
        ),
        (
            "an extra member",
            com,
            {"role:admin": {**disc(4), "name": "role:admin"}},
            "MalformedStatement",
            None,
        ),
        ("no value", com, {"role:admin": {"salt": v[4]["disclosure"]["salt"]}}, "MalformedStatement", None),
        (
            "padded salt",
            com,
            {"role:admin": disc(4, salt=v[4]["disclosure"]["salt"] + "==")},
            "MalformedStatement",
            None,
        ),
    ]
    return {
        "source": SOURCE,
        "formula": "HMAC-SHA-256(K_c, salt || u16be(len N) || N || u32be(len J) || J), "
        "K_c = SHA-256('liaison/v1/commitment-key'), N = UTF-8(name), J = JCS(value)",
        "key": COMMITMENT_KEY.hex(),
        "valid": valid,
        "invalid": [
            {"why": why, "commitments": c, "disclosures": d, "error": err, "field": f}
            for why, c, d, err, f in invalid
        ],
    }


# --- statements.json -------------------------------------------------------------------


class World:
    """The statements of a small deployment, made in order, with what was proven of each
    signer when it signed (the signer views of the vectors)."""

    def __init__(self) -> None:
        self.signed: dict[str, SignedStatement] = {}
        self.disclosures: dict[str, dict[str, Disclosure]] = {}
        self.valid: list[dict[str, Any]] = []
        self.salts = Salts("world")

    def add(
        self,
        name: str,
        signed: SignedStatement,
        signer: dict[str, Any],
        *,
        relied: list[str] | None = None,
        previous: str | None = None,
        invitation_signer: dict[str, Any] | None = None,
        disclosures: dict[str, Disclosure] | None = None,
    ) -> SignedStatement:
        self.signed[name] = signed
        case: dict[str, Any] = {
            "name": name,
            "signed": signed.to_json(),
            "jcs": signed.statement.canonical().decode("utf-8"),
            "digest": b64url_encode(signed.digest()),
            "digest_hex": signed.digest().hex(),
            "signer": signer,
            "relied": relied or [],
            "previous": previous,
            "invitation_signer": invitation_signer,
        }
        if disclosures is not None:
            self.disclosures[name] = disclosures
            case["disclosures"] = {k: d.to_json() for k, d in sorted(disclosures.items())}
        self.valid.append(case)
        return signed

    def digest(self, name: str) -> bytes:
        return self.signed[name].digest()


def view(
    name: str, nation: str, facts: dict[str, bool], *, root: bool = False, active: bool = True
) -> dict[str, Any]:
    keys = DEVICES[name]
    return {
        "device": keys.device_id,
        "principal": keys.principal,
        "nation": nation,
        "device_active": active,
        "facts": dict(sorted(facts.items())),
        "is_root_device": root,
    }


def true_facts(facts: dict[str, bool]) -> list[str]:
    return sorted(k for k, v in facts.items() if v)


ROOT_FACTS = {"active": True, "role:admin": True}
ADMIN_FRA: dict[str, Any] = {
    "kind": "person",
    "clearance": "SECRET",
    "compartments": ["AIRDEF"],
    "roles": ["admin", "analyst"],
    "active": True,
}
ALICE: dict[str, Any] = {
    "kind": "person",
    "clearance": "SECRET",
    "compartments": ["AIRDEF"],
    "roles": ["analyst"],
    "active": True,
}


def admin_view(**over: Any) -> dict[str, Any]:
    facts = {"active": True, "role:admin": True, "level>=UNCLASSIFIED": True, "level>=SECRET": True}
    facts.update({"holds:AIRDEF": True, "role:auditor": False, "level>=TOP SECRET": False})
    facts.update(over.pop("facts", {}))
    facts = {k: v for k, v in facts.items() if v is not None}  # None: not disclosed
    return view("admin-fra", over.pop("nation", "FRA"), facts, **over)


def build_world() -> World:
    w = World()
    root, admin, alice, root2 = (DEVICES[n] for n in ("root", "admin-fra", "alice", "root-2"))
    root_view = view("root", "USA", ROOT_FACTS, root=True)
    sign = sign_statement
    w.add(
        "roots-1",
        sign(
            root, roots_statement(ORIGIN, devices=[root.device_id], seq=1, prev=None, signer=root.device_id)
        ),
        root_view,
    )
    w.add(
        "policy-1",
        sign(root, policy_statement(ORIGIN, POLICY, seq=1, prev=None, signer=root.device_id)),
        root_view,
    )
    st, d = principal_statement(
        ORIGIN,
        POLICY,
        principal="root",
        nation="USA",
        kind="person",
        clearance="TOP SECRET",
        compartments=POLICY.compartments,
        roles=["admin", "auditor"],
        active=True,
        seq=1,
        prev=None,
        signer=root.device_id,
        salt=w.salts,
    )
    values = {k: x.value for k, x in d.items()}
    w.add("principal-root-1", sign(root, st), root_view, relied=true_facts(values), disclosures=d)
    st = device_statement(
        ORIGIN,
        bundle=root.public,
        principal="root",
        nation="USA",
        status="active",
        seq=1,
        prev=None,
        signer=root.device_id,
        invitation=None,
    )
    w.add("device-root-1", sign(root, st, invitation_seed(CODES["genesis"])), root_view)
    st, d = principal_statement(
        ORIGIN,
        POLICY,
        principal="admin-fra",
        nation="FRA",
        **ADMIN_FRA,
        seq=1,
        prev=None,
        signer=root.device_id,
        salt=w.salts,
    )
    w.add(
        "principal-admin-fra-1",
        sign(root, st),
        root_view,
        relied=true_facts({k: x.value for k, x in d.items()}),
        disclosures=d,
    )
    st = invitation_statement(
        ORIGIN,
        principal="admin-fra",
        nation="FRA",
        key=invitation_public(CODES["admin-fra"]),
        expires=EXPIRES,
        anchors=ANCHORS[0].digest,
        signer=root.device_id,
    )
    inv_admin = w.add("invitation-admin-fra", sign(root, st), root_view)
    st = device_statement(
        ORIGIN,
        bundle=admin.public,
        principal="admin-fra",
        nation="FRA",
        status="active",
        seq=1,
        prev=None,
        signer=admin.device_id,
        invitation=inv_admin,
    )
    w.add(
        "device-admin-fra-1",
        sign(admin, st, invitation_seed(CODES["admin-fra"])),
        view("admin-fra", "FRA", {}),
        invitation_signer=root_view,
    )
    st = invitation_statement(
        ORIGIN,
        principal="alice",
        nation="FRA",
        key=invitation_public(CODES["alice"]),
        expires=EXPIRES,
        anchors=ANCHORS[1].digest,
        signer=admin.device_id,
    )
    inv_alice = w.add("invitation-alice", sign(admin, st), admin_view())
    st, d = principal_statement(
        ORIGIN,
        POLICY,
        principal="alice",
        nation="FRA",
        **ALICE,
        seq=1,
        prev=None,
        signer=admin.device_id,
        salt=w.salts,
    )
    w.add(
        "principal-alice-1",
        sign(admin, st),
        admin_view(),
        relied=true_facts({k: x.value for k, x in d.items()}),
        disclosures=d,
    )
    st = device_statement(
        ORIGIN,
        bundle=alice.public,
        principal="alice",
        nation="FRA",
        status="active",
        seq=1,
        prev=None,
        signer=alice.device_id,
        invitation=inv_alice,
    )
    w.add(
        "device-alice-1",
        sign(alice, st, invitation_seed(CODES["alice"])),
        view("alice", "FRA", {}),
        invitation_signer=admin_view(),
    )
    ceiling = Label(POLICY.id, "SECRET", ("FRA", "USA"), ("AIRDEF",))
    st = channel_statement(
        ORIGIN,
        channel="airdef-ops",
        ceiling=ceiling,
        members=["alice", "admin-fra", "root"],
        seq=1,
        prev=None,
        signer=admin.device_id,
    )
    w.add("channel-airdef-ops-1", sign(admin, st), admin_view())
    st, d = principal_statement(
        ORIGIN,
        POLICY,
        principal="alice",
        nation="FRA",
        **{**ALICE, "active": False},
        seq=2,
        prev=w.digest("principal-alice-1"),
        signer=admin.device_id,
        salt=w.salts,
    )
    w.add(
        "principal-alice-2",
        sign(admin, st),
        admin_view(),
        relied=true_facts({k: x.value for k, x in d.items()}),
        previous="principal-alice-1",
        disclosures=d,
    )
    st = device_statement(
        ORIGIN,
        bundle=alice.public,
        principal="alice",
        nation="FRA",
        status="revoked",
        seq=2,
        prev=w.digest("device-alice-1"),
        signer=alice.device_id,
        invitation=None,
    )
    w.add("device-alice-2", sign(alice, st), view("alice", "FRA", {}), previous="device-alice-1")
    st = roots_statement(
        ORIGIN,
        devices=[root.device_id, root2.device_id],
        seq=2,
        prev=w.digest("roots-1"),
        signer=root.device_id,
    )
    w.add("roots-2", sign(root, st), root_view, previous="roots-1")
    return w


def _mutated(signed: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(signed)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()


def invalid_statements(w: World) -> list[dict[str, Any]]:
    s = {name: x.to_json() for name, x in w.signed.items()}
    root, admin, alice, root2 = (DEVICES[n] for n in ("root", "admin-fra", "alice", "root-2"))
    root_view = view("root", "USA", ROOT_FACTS, root=True)
    out: list[dict[str, Any]] = []

    def parse(why: str, name: str, path: tuple[str, ...], value: Any) -> None:
        out.append(
            {
                "why": why,
                "signed": _mutated(s[name], path, value),
                "error": "MalformedStatement",
                "reason": "malformed",
            }
        )

    st = ("statement",)
    parse("an extra member", "roots-1", (*st, "extra"), 1)
    parse("v 2", "roots-1", (*st, "v"), 2)
    parse("v true", "roots-1", (*st, "v"), True)
    parse("a type its record does not name", "roots-1", (*st, "type"), "policy")
    parse("a record naming another principal", "principal-alice-1", (*st, "record"), "principal:bob")
    parse("an unknown type", "roots-1", (*st, "type"), "group")
    parse("seq 0", "roots-1", (*st, "seq"), 0)
    parse("seq 1.0 (a float)", "roots-1", (*st, "seq"), 1.0)
    parse("prev not empty at seq 1", "roots-1", (*st, "prev"), b64url_encode(bytes(32)))
    parse('prev "" at seq 2', "roots-2", (*st, "prev"), "")
    parse("prev of 31 bytes", "roots-2", (*st, "prev"), b64url_encode(bytes(31)))
    parse(
        "roots devices unsorted",
        "roots-2",
        (*st, "public", "devices"),
        sorted([root.device_id, root2.device_id])[::-1],
    )
    parse("roots devices empty", "roots-1", (*st, "public", "devices"), [])
    parse(
        "channel members repeated",
        "channel-airdef-ops-1",
        (*st, "public", "members"),
        ["admin-fra", "alice", "alice"],
    )
    parse("a lower-case nation", "principal-alice-1", (*st, "public", "nation"), "fra")
    parse(
        "a device id that is not its bundle's", "device-alice-1", (*st, "public", "device"), admin.device_id
    )
    parse(
        "a device of another principal than its bundle's",
        "device-alice-1",
        (*st, "public", "principal"),
        "bob",
    )
    parse(
        "a device status other than active or revoked",
        "device-alice-2",
        (*st, "public", "status"),
        "suspended",
    )
    parse("a commitment of 31 bytes", "principal-alice-1", (*st, "facts", "active"), b64url_encode(bytes(31)))
    parse("facts on a channel", "channel-airdef-ops-1", (*st, "facts"), {"active": b64url_encode(bytes(32))})
    parse(
        "an unknown predicate", "principal-alice-1", (*st, "facts", "level>=secret"), b64url_encode(bytes(32))
    )
    parse("a principal without active", "principal-alice-1", (*st, "facts", "active"), _DELETE)
    parse(
        "a ceiling that is not label JSON",
        "channel-airdef-ops-1",
        (*st, "public", "ceiling", "rel"),
        ["USA", "FRA"],
    )
    parse("an invitation at seq 2", "invitation-alice", (*st, "seq"), 2)
    parse(
        "an invitation expiry with milliseconds",
        "invitation-alice",
        (*st, "public", "expires"),
        "2026-12-02T12:00:00.000Z",
    )
    parse(
        "a device's invitation at seq 2",
        "device-alice-2",
        (*st, "public", "invitation"),
        s["invitation-alice"],
    )
    parse(
        "a device's first statement without invitation_signature",
        "device-alice-1",
        ("invitation_signature",),
        _DELETE,
    )
    parse(
        "invitation_signature on a principal",
        "principal-alice-1",
        ("invitation_signature",),
        s["device-alice-1"]["invitation_signature"],
    )
    parse("no ed25519 signature", "roots-1", ("signatures", "ed25519"), _DELETE)
    parse("an unknown signature algorithm", "roots-1", ("signatures", "rsa"), "AAAA")
    parse("a signer that is not a device id", "roots-1", (*st, "signer"), "root")

    def tampered(why: str, name: str, signer: str, path: tuple[str, ...], value: Any) -> None:
        out.append(
            {
                "why": why,
                "signed": _mutated(s[name], path, value),
                "verify_with": DEVICES[signer].device_id,
                "error": "BadSignature",
                "reason": None,
            }
        )

    tampered(
        "the nation changed after signing", "principal-alice-1", "admin-fra", (*st, "public", "nation"), "UKR"
    )
    tampered(
        "a member added after signing",
        "channel-airdef-ops-1",
        "admin-fra",
        (*st, "public", "members"),
        ["admin-fra", "alice", "bob", "root"],
    )
    tampered("seq changed after signing", "roots-2", "root", (*st, "seq"), 3)
    tampered("the origin changed after signing", "roots-1", "root", (*st, "origin"), "other.example/audit")
    tampered(
        "a commitment swapped after signing",
        "principal-alice-1",
        "admin-fra",
        (*st, "facts", "active"),
        s["principal-alice-2"]["statement"]["facts"]["active"],
    )
    tampered(
        "another statement's signatures",
        "principal-alice-2",
        "admin-fra",
        ("signatures",),
        s["principal-alice-1"]["signatures"],
    )
    out.append(
        {
            "why": "verified with another device's bundle than its signer's",
            "signed": s["roots-1"],
            "verify_with": admin.device_id,
            "error": "BadSignature",
            "reason": None,
        }
    )

    def chain(why: str, previous: str, new: dict[str, Any], reason: str) -> None:
        out.append(
            {
                "why": why,
                "signed": new,
                "previous": s[previous],
                "error": "StatementInvalid",
                "reason": reason,
            }
        )

    chain("seq 1 again (a replay)", "roots-1", s["roots-1"], "stale")
    chain("a rollback to seq 1", "roots-2", s["roots-1"], "stale")
    fork = sign_statement(
        root, roots_statement(ORIGIN, devices=[root2.device_id], seq=2, prev=bytes(32), signer=root.device_id)
    )
    chain("prev is not the predecessor's digest (a fork)", "roots-1", fork.to_json(), "chain")
    gap = sign_statement(
        root,
        roots_statement(
            ORIGIN, devices=[root.device_id], seq=3, prev=w.digest("roots-2"), signer=root.device_id
        ),
    )
    chain("a gap (seq 3 after seq 1)", "roots-1", gap.to_json(), "chain")
    chain("another record", "principal-admin-fra-1", s["principal-alice-2"], "record")
    other = copy.deepcopy(s["roots-2"])
    other["statement"]["origin"] = "other.example/audit"
    other = sign_statement(root, Statement.from_json(other["statement"])).to_json()
    chain("another log's origin", "roots-1", other, "origin")
    again = device_statement(
        ORIGIN,
        bundle=alice.public,
        principal="alice",
        nation="FRA",
        status="revoked",
        seq=3,
        prev=w.digest("device-alice-2"),
        signer=alice.device_id,
        invitation=None,
    )
    chain(
        "a revoked device's record continued",
        "device-alice-2",
        sign_statement(alice, again).to_json(),
        "revoked",
    )
    same = policy_statement(ORIGIN, POLICY, seq=2, prev=w.digest("policy-1"), signer=root.device_id)
    chain("a policy version that does not rise", "policy-1", sign_statement(root, same).to_json(), "version")
    moved, _ = principal_statement(
        ORIGIN,
        POLICY,
        principal="alice",
        nation="UKR",
        **ALICE,
        seq=2,
        prev=w.digest("principal-alice-1"),
        signer=admin.device_id,
        salt=Salts("moved"),
    )
    chain(
        "a principal's nation changed (it keys the map)",
        "principal-alice-1",
        sign_statement(admin, moved).to_json(),
        "nation",
    )

    def authority(
        why: str,
        signed: SignedStatement,
        signer: dict[str, Any],
        reason: str,
        *,
        relied: list[str] | None = None,
        previous: str | None = None,
        invitation_signer: dict[str, Any] | None = None,
    ) -> None:
        out.append(
            {
                "why": why,
                "signed": signed.to_json(),
                "signer": signer,
                "relied": relied or [],
                "previous": s[previous] if previous else None,
                "invitation_signer": invitation_signer,
                "error": "AuthorityError",
                "reason": reason,
            }
        )

    salts = Salts("authority")

    def principal(
        name: str, nation: str, signer: DeviceKeys, **attrs: Any
    ) -> tuple[SignedStatement, list[str]]:
        st, d = principal_statement(
            ORIGIN,
            POLICY,
            principal=name,
            nation=nation,
            seq=1,
            prev=None,
            signer=signer.device_id,
            salt=salts,
            **{**ALICE, **attrs},
        )
        return sign_statement(signer, st), true_facts({k: x.value for k, x in d.items()})

    bob, relied = principal("bob", "UKR", admin)
    authority("a FRA admin signs a UKR principal", bob, admin_view(), "other-nation", relied=relied)
    top, relied = principal("carol", "FRA", admin, clearance="TOP SECRET")
    authority(
        "an admin vouches for a level it does not hold", top, admin_view(), "grant-above-own", relied=relied
    )
    cyber, relied = principal("dave", "FRA", admin, compartments=["CYBER"])
    authority(
        "an admin vouches for a compartment it does not hold",
        cyber,
        admin_view(),
        "grant-above-own",
        relied=relied,
    )
    aud, relied = principal("erin", "FRA", admin, roles=["auditor"])
    authority(
        "an admin vouches for role:auditor it does not hold",
        aud,
        admin_view(),
        "grant-above-own",
        relied=relied,
    )
    adm, relied = principal("frank", "FRA", admin, roles=["admin"])
    authority("a nation admin makes an admin", adm, admin_view(), "grant-above-own", relied=relied)
    plain, relied = principal("gina", "FRA", admin)
    authority(
        "a signer that is not an admin",
        plain,
        admin_view(facts={"role:admin": False}),
        "not-admin",
        relied=relied,
    )
    authority("an inactive admin", plain, admin_view(facts={"active": False}), "not-admin", relied=relied)
    authority(
        "an admin whose role:admin is not disclosed",
        plain,
        admin_view(facts={"role:admin": None}),
        "not-admin",
        relied=relied,
    )
    authority("a revoked admin device", plain, admin_view(active=False), "signer-revoked", relied=relied)
    authority(
        "a revoked root device", plain, admin_view(root=True, active=False), "signer-revoked", relied=relied
    )
    pol = sign_statement(admin, policy_statement(ORIGIN, POLICY, seq=1, prev=None, signer=admin.device_id))
    authority("a policy signed by an admin that is not a root device", pol, admin_view(), "not-root")
    high = channel_statement(
        ORIGIN,
        channel="top",
        ceiling=Label(POLICY.id, "TOP SECRET", ("FRA",)),
        members=["alice"],
        seq=1,
        prev=None,
        signer=admin.device_id,
    )
    authority(
        "a channel ceiling above its signer's level",
        sign_statement(admin, high),
        admin_view(),
        "grant-above-own",
    )
    comp = channel_statement(
        ORIGIN,
        channel="cyber",
        ceiling=Label(POLICY.id, "SECRET", ("FRA",), ("CYBER",)),
        members=["alice"],
        seq=1,
        prev=None,
        signer=admin.device_id,
    )
    authority(
        "a channel ceiling with a compartment its signer lacks",
        sign_statement(admin, comp),
        admin_view(),
        "grant-above-own",
    )
    usa = channel_statement(
        ORIGIN,
        channel="usa-only",
        ceiling=Label(POLICY.id, "SECRET", ("USA",)),
        members=[],
        seq=1,
        prev=None,
        signer=admin.device_id,
    )
    authority(
        "a channel not released to its signer's nation",
        sign_statement(admin, usa),
        admin_view(),
        "other-nation",
    )
    inv_ukr = invitation_statement(
        ORIGIN,
        principal="bob",
        nation="UKR",
        key=invitation_public("BOBBY-UKR22-AAAAA-BBBBB"),
        expires=EXPIRES,
        anchors=ANCHORS[0].digest,
        signer=admin.device_id,
    )
    authority(
        "an invitation for another nation's principal",
        sign_statement(admin, inv_ukr),
        admin_view(),
        "other-nation",
    )
    bare = device_statement(
        ORIGIN,
        bundle=alice.public,
        principal="alice",
        nation="FRA",
        status="active",
        seq=1,
        prev=None,
        signer=alice.device_id,
        invitation=None,
    )
    authority(
        "a device without an invitation that is not a root device",
        sign_statement(alice, bare, invitation_seed(CODES["alice"])),
        view("alice", "FRA", {}),
        "no-invitation",
    )
    inv_bob = invitation_statement(
        ORIGIN,
        principal="admin-fra",
        nation="FRA",
        key=invitation_public(CODES["alice"]),
        expires=EXPIRES,
        anchors=ANCHORS[0].digest,
        signer=admin.device_id,
    )
    wrong = device_statement(
        ORIGIN,
        bundle=alice.public,
        principal="alice",
        nation="FRA",
        status="active",
        seq=1,
        prev=None,
        signer=alice.device_id,
        invitation=sign_statement(admin, inv_bob),
    )
    authority(
        "an invitation for another principal",
        sign_statement(alice, wrong, invitation_seed(CODES["alice"])),
        view("alice", "FRA", {}),
        "invitation",
        invitation_signer=admin_view(),
    )
    forged = SignedStatement(
        w.signed["device-alice-1"].statement,
        w.signed["device-alice-1"].signatures,
        p.ed25519_sign(
            invitation_seed(CODES["admin-fra"]), w.signed["device-alice-1"].statement.invitation_message()
        ),
    )
    authority(
        "an invitation signature by another invitation key",
        forged,
        view("alice", "FRA", {}),
        "invitation-signature",
        invitation_signer=admin_view(),
    )
    authority(
        "an invitation whose signer is no longer an admin",
        w.signed["device-alice-1"],
        view("alice", "FRA", {}),
        "not-admin",
        invitation_signer=admin_view(facts={"role:admin": False}),
    )
    revived = device_statement(
        ORIGIN,
        bundle=alice.public,
        principal="alice",
        nation="FRA",
        status="active",
        seq=2,
        prev=w.digest("device-alice-1"),
        signer=alice.device_id,
        invitation=None,
    )
    authority(
        "a device's later statement that does not revoke it",
        sign_statement(alice, revived),
        view("alice", "FRA", {}),
        "status",
        previous="device-alice-1",
    )
    bad_roots = roots_statement(
        ORIGIN,
        devices=[root.device_id, root2.device_id],
        seq=2,
        prev=w.digest("roots-1"),
        signer=root2.device_id,
    )
    authority(
        "roots seq 2 signed by a device seq 1 does not list",
        sign_statement(root2, bad_roots),
        view("root-2", "USA", ROOT_FACTS, root=True),
        "not-root",
        previous="roots-1",
    )
    genesis = roots_statement(ORIGIN, devices=[root.device_id], seq=1, prev=None, signer=root2.device_id)
    authority(
        "roots seq 1 signed by a device it does not list",
        sign_statement(root2, genesis),
        view("root-2", "USA", ROOT_FACTS),
        "not-root",
    )
    authority(
        "the signer view is another device's",
        w.signed["roots-1"],
        view("root-2", "USA", ROOT_FACTS, root=True),
        "signer",
    )
    del root_view
    return out


def statements() -> dict[str, Any]:
    w = build_world()
    invitation_keys = []
    for name, code in CODES.items():
        s = invitation_seed(code)
        invitation_keys.append(
            {
                "for": name,
                "code": code,
                "seed_hex": s.hex(),
                "public_hex": p.ed25519_public(s).hex(),
                "key": b64url_encode(p.ed25519_public(s)),
            }
        )
    devices = {
        name: {
            "rfc8032": DEVICE_PLAN[name][1],
            "ed25519_seed_hex": keys.ed25519.hex(),
            "x25519_hex": keys.kem.hex(),
            "bundle": keys.public.to_json(),
            "device": keys.device_id,
        }
        for name, keys in DEVICES.items()
    }
    return {
        "source": SOURCE,
        "origin": ORIGIN,
        "policy_toml": POLICY_TOML,
        "devices": devices,
        "invitation_keys": invitation_keys,
        "valid": w.valid,
        "invalid": invalid_statements(w),
    }


# --- anchors.json ----------------------------------------------------------------------

LOG_KEY = note.format_verifier_key(
    "liaison.example/audit", bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
)
WITNESSES = sorted(
    note.Signer.from_seed(name, seed("witness", name), note.SIG_COSIGNATURE_V1).verifier.key_string
    for name in ("witness-a.example", "witness-b.example")
)
ROOTS_DIGEST = seed("roots-digest-placeholder")
ANCHORS = [
    Anchors(LOG_KEY, 1, ROOTS_DIGEST, 1),
    Anchors(LOG_KEY, 2, seed("roots-2"), 3, 1, tuple(WITNESSES), 3600),
    Anchors(LOG_KEY, 7, seed("roots-7"), 1, 2, tuple(WITNESSES), None),
]


def anchors() -> dict[str, Any]:
    valid: list[dict[str, Any]] = []
    for i, a in enumerate(ANCHORS):
        code = ("FZNR2-U4DC5-FHO6N-ROPP7", "ALICE-FRA22-U4DC5-QRST7", "AAAAA-BBBBB-CCCCC-DDDDD")[i]
        obj = a.to_json()
        digest = anchors_digest(obj)
        valid.append(
            {
                "anchors": obj,
                "jcs": jcs(obj).decode("utf-8"),
                "digest_hex": digest.hex(),
                "code": code,
                "invitation": str(make_invitation_v2(code, digest)),
            }
        )
    base = ANCHORS[1].to_json()

    def bad(why: str, path: tuple[str, ...], value: Any, obj: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"why": why, "anchors": _mutated(obj or base, path, value)}

    ed_witness = note.format_verifier_key("witness-c.example", p.ed25519_public(seed("witness-c")))
    invalid = [
        bad("v 2", ("v",), 2),
        bad("an extra member", ("extra",), None),
        bad("no witnesses member", ("witnesses",), _DELETE),
        bad(
            "a log key with a wrong key id",
            ("log_key",),
            "+".join((*LOG_KEY.split("+")[:1], "00000000", LOG_KEY.split("+")[2])),
        ),
        bad("a log key in a non-canonical spelling", ("log_key",), LOG_KEY + "\n"),
        bad("a witness key as the log key", ("log_key",), WITNESSES[0]),
        bad("roots seq 0", ("roots", "seq"), 0),
        bad("roots seq a string", ("roots", "seq"), "2"),
        bad("a roots digest of 31 bytes", ("roots", "digest"), b64url_encode(bytes(31))),
        bad("a roots digest in hex", ("roots", "digest"), bytes(32).hex()),
        bad("policy version 0", ("policy", "version"), 0),
        bad("an extra policy member", ("policy", "id"), "coalition-2026"),
        bad("k above the number of keys", ("witnesses", "k"), 3),
        bad("k 0 with keys", ("witnesses", "k"), 0),
        bad("witness keys unsorted", ("witnesses", "keys"), WITNESSES[::-1]),
        bad("a witness key twice", ("witnesses", "keys"), [WITNESSES[0], WITNESSES[0]]),
        bad(
            "an Ed25519 (not cosignature) witness key",
            ("witnesses", "keys"),
            sorted([WITNESSES[0], ed_witness]),
        ),
        bad("max_age 0", ("witnesses", "max_age"), 0),
        bad("max_age as a float", ("witnesses", "max_age"), 3600.0),
        bad("max_age without witnesses", ("witnesses",), {"k": 0, "keys": [], "max_age": 60}),
        bad("k 1 without witnesses", ("witnesses",), {"k": 1, "keys": [], "max_age": None}),
    ]
    first: str = valid[0]["invitation"]
    invitations_invalid = [
        {"why": "LIAISON3", "text": "LIAISON3" + first[8:]},
        {"why": "digest one character short", "text": first[:-1]},
        {"why": "non-zero unused trailing bits", "text": first[:-1] + ("B" if first[-1] == "A" else "A")},
        {"why": "no code", "text": "LIAISON2-" + first[33:]},
        {"why": "a long s", "text": "LIAI\u017fON2" + first[8:]},
    ]
    return {
        "source": SOURCE,
        "domain": "liaison/v1/anchors",
        "valid": valid,
        "invalid": invalid,
        "invalid_invitations": invitations_invalid,
    }


FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "commitments.json": commitments,
    "statements.json": statements,
    "anchors.json": anchors,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true", help="compare with the files here; write nothing")
    args = parser.parse_args()
    differ = []
    for name, make in FILES.items():
        data = dump(make())
        if args.check:
            if not (HERE / name).exists() or (HERE / name).read_bytes() != data:
                differ.append(name)
            if args.out != HERE:
                (args.out / name).write_bytes(data)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / name).write_bytes(data)
    if differ:
        print("differ:", ", ".join(differ), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
