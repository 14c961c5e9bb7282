"""Directory statements (protocol 9.2): signed, chained records of roots, policy, principals,
devices, channels and invitations; their strict JSON, digest, signatures and builders.

A statement is JCS JSON
``{"v": 1, "origin", "type", "record", "seq", "prev", "public", "facts", "signer"}``, signed as
``{"statement": S, "signatures": {...}}`` over ``"liaison/v1/statement" || 0x00 || JCS(S)`` by
every signing key of the signer device; its digest is
``SHA-256("liaison/v1/statement-digest" || 0x00 || JCS(S))`` (signatures outside it). A device's
first statement also carries the invitation key's Ed25519 signature over
``"liaison/v1/statement-invitation" || 0x00 || JCS(S)`` (9.8). `record` is a function of `type`
and `public`, so a statement cannot be filed under another record; `seq`/`prev` chain a
record's statements, so a rollback, a move or a fork is refused (`check_successor`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Final

from . import _primitives as p
from .commitments import COMMITMENT_LEN, Disclosure, commit_all, new_salt, open_facts
from .encoding import b64url_check, b64url_decode, b64url_encode, format_time, jcs, parse_time
from .errors import (
    BadSignature,
    LabelSyntaxError,
    MalformedError,
    MalformedStatement,
    PolicyViolation,
    StatementInvalid,
    UnsupportedSuite,
)
from .invitation import CODE_RE
from .keys import DEVICE_ID_RE, DeviceKeys, PublicBundle, verify_signatures
from .labels import Label
from .names import COMPARTMENT_PATTERN, ED25519, NATION_RE, ROLES, SIGNATURE_ALGS, SLUG_RE
from .policy import Policy

__all__ = [
    "ANY_NATION",
    "DIGEST_DOMAIN",
    "INVITATION_KEY_INFO",
    "INVITATION_SIGNATURE_DOMAIN",
    "LEAF_DOMAIN",
    "STATEMENT_DOMAIN",
    "STATEMENT_TYPES",
    "SignedStatement",
    "Statement",
    "channel_statement",
    "check_successor",
    "check_universe",
    "device_statement",
    "fact_universe",
    "invitation_public",
    "invitation_seed",
    "invitation_statement",
    "label_needs",
    "leaf_value",
    "open_all",
    "open_predicates",
    "policy_statement",
    "principal_facts",
    "principal_statement",
    "roots_statement",
    "sign_statement",
]

STATEMENT_TYPES: Final = ("roots", "policy", "principal", "device", "channel", "invitation")
STATEMENT_DOMAIN: Final = b"liaison/v1/statement"
DIGEST_DOMAIN: Final = b"liaison/v1/statement-digest"
LEAF_DOMAIN: Final = b"liaison/v1/map-leaf"
INVITATION_SIGNATURE_DOMAIN: Final = b"liaison/v1/statement-invitation"
INVITATION_KEY_INFO: Final = b"liaison/v1/invitation-key"
#: The map range of records that belong to no nation (roots, policy, channels), and the
#: nation of a principal that belongs to none: never in a label's release list, admin of none.
ANY_NATION: Final = "*"

_MEMBERS = frozenset({"v", "origin", "type", "record", "seq", "prev", "public", "facts", "signer"})
_MAX_SEQ = 2**53 - 1  # JCS writes integers up to 2^53 - 1 exactly
_DIGEST_LEN = 32
_KEY_LEN = 32
_ORIGIN_RE = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
_LEVEL = r"[A-Z][A-Z0-9 _-]{0,31}"  # policy level names (policy._NAME_RE)
_FACT_RE = re.compile(
    rf"active|person|level>={_LEVEL}|holds:{COMPARTMENT_PATTERN[1:-1]}|role:(?:{'|'.join(ROLES)})"
)
_MAX_LIST = 10_000  # roots devices, channel members: beyond any deployment
_DEVICE_STATUSES = ("active", "revoked")


def _err(msg: str) -> MalformedStatement:
    return MalformedStatement(f"statement: {msg}")


# --- per-type public members ---------------------------------------------------------------


def _exact(public: dict[str, Any], kind: str, members: Iterable[str]) -> None:
    if set(public) != set(members):
        raise _err(f"a {kind} statement's public must have exactly {', '.join(sorted(members))}")


def _slug(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise _err(f"{what} must be a lower-case slug")
    return value


def _nation(value: Any) -> str:
    if not isinstance(value, str) or not (value == ANY_NATION or NATION_RE.fullmatch(value)):
        raise _err('nation must be an ISO 3166-1 alpha-3 code or "*"')
    return value


def _sorted_unique(value: Any, what: str, check: Callable[[Any], bool], non_empty: bool) -> list[str]:
    if not isinstance(value, list) or len(value) > _MAX_LIST or not all(check(x) for x in value):
        raise _err(f"{what} must be a list of ids")
    if value != sorted(set(value)):
        raise _err(f"{what} must be sorted and unique")
    if non_empty and not value:
        raise _err(f"{what} must name at least one")
    return value


def _is_device_id(x: Any) -> bool:
    return isinstance(x, str) and DEVICE_ID_RE.fullmatch(x) is not None


def _is_slug(x: Any) -> bool:
    return isinstance(x, str) and SLUG_RE.fullmatch(x) is not None


def _b64_bytes(value: Any, n: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * n:
        raise _err(f"{what} must be base64url of {n} bytes")
    try:
        raw = b64url_decode(value, field=what)
    except MalformedError as e:
        raise _err(str(e)) from None
    if len(raw) != n:
        raise _err(f"{what} must be base64url of {n} bytes")
    return raw


def _positive_int(value: Any, what: str) -> int:
    if type(value) is not int or not 1 <= value <= _MAX_SEQ:
        raise _err(f"{what} must be an integer from 1 to 2^53 - 1")
    return value


def _roots_public(public: dict[str, Any], seq: int, origin: str) -> str:
    _exact(public, "roots", ("devices",))
    _sorted_unique(public["devices"], "roots devices", _is_device_id, non_empty=True)
    return "roots"


def _policy_public(public: dict[str, Any], seq: int, origin: str) -> str:
    _exact(public, "policy", ("id", "version", "sha256"))
    _slug(public["id"], "policy id")
    _positive_int(public["version"], "policy version")
    if not isinstance(public["sha256"], str) or not _SHA256_HEX_RE.fullmatch(public["sha256"]):
        raise _err("policy sha256 must be the policy file's SHA-256 in lower-case hex")
    return "policy"


def _principal_public(public: dict[str, Any], seq: int, origin: str) -> str:
    _exact(public, "principal", ("principal", "nation"))
    _nation(public["nation"])
    principal = _slug(public["principal"], "principal")
    return f"principal:{principal}"


def _device_public(public: dict[str, Any], seq: int, origin: str) -> str:
    members = ["device", "principal", "nation", "status", "bundle"]
    if seq == 1 and "invitation" in public:
        members.append("invitation")  # absent only for a device of the anchored roots
    _exact(public, "device", members)
    device = public["device"]
    if not _is_device_id(device):
        raise _err("device must be a device id")
    principal = _slug(public["principal"], "device principal")
    _nation(public["nation"])
    if public["status"] not in _DEVICE_STATUSES:
        raise _err('device status must be "active" or "revoked"')
    try:
        bundle = PublicBundle.from_json(public["bundle"])
    except (MalformedError, UnsupportedSuite) as e:
        raise _err(f"device bundle: {e}") from None
    if bundle.device_id != device:
        raise _err("device is not the id of its bundle (SHA-256 of the bundle's JCS)")
    if bundle.principal != principal:
        raise _err("device principal is not its bundle's principal")
    if "invitation" in public:
        invitation = SignedStatement.from_json(public["invitation"])
        if invitation.statement.type != "invitation":
            raise _err("a device's invitation must be an invitation statement")
    return f"device:{device}"


def _channel_public(public: dict[str, Any], seq: int, origin: str) -> str:
    _exact(public, "channel", ("channel", "ceiling", "members"))
    channel = _slug(public["channel"], "channel")
    try:
        Label.from_json(public["ceiling"])
    except LabelSyntaxError as e:
        raise _err(f"channel ceiling: {e}") from None
    _sorted_unique(public["members"], "channel members", _is_slug, non_empty=False)
    return "channel:" + channel


def _invitation_public(public: dict[str, Any], seq: int, origin: str) -> str:
    _exact(public, "invitation", ("principal", "nation", "key", "expires", "anchors"))
    if seq != 1:
        raise _err("an invitation statement is seq 1: it has no successor")
    _slug(public["principal"], "invitation principal")
    _nation(public["nation"])
    _b64_bytes(public["key"], _KEY_LEN, "invitation key")
    _b64_bytes(public["anchors"], _DIGEST_LEN, "invitation anchors")
    expires = public["expires"]
    try:
        canonical = format_time(parse_time(expires, field="invitation expires"), millis=False)
    except MalformedError as e:
        raise _err(str(e)) from None
    if canonical != expires:
        raise _err("invitation expires must be RFC 3339 UTC to the second (YYYY-MM-DDTHH:MM:SSZ)")
    return f"invitation:{public['key']}"


_PUBLIC: dict[str, Callable[[dict[str, Any], int, str], str]] = {
    "roots": _roots_public,
    "policy": _policy_public,
    "principal": _principal_public,
    "device": _device_public,
    "channel": _channel_public,
    "invitation": _invitation_public,
}


# --- the statement -------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """An unsigned statement. Build it with the builders below or `from_json`, which check
    everything that can be checked without the record's chain or its signer (9.2)."""

    origin: str
    type: str
    record: str
    seq: int
    prev: bytes | None
    public: dict[str, Any]
    facts: dict[str, bytes]
    signer: str
    v: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "origin": self.origin,
            "type": self.type,
            "record": self.record,
            "seq": self.seq,
            "prev": "" if self.prev is None else b64url_encode(self.prev),
            "public": self.public,
            "facts": {name: b64url_encode(c) for name, c in self.facts.items()},
            "signer": self.signer,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Statement:
        """Parse strictly (MalformedStatement): exact members; `v` 1; `record` the one its
        `type` and `public` name; `seq` >= 1; `prev` "" iff `seq` is 1, else a 32-byte digest;
        `public` exactly its type's members, each checked (ids, nations, the ceiling's label
        JSON, sorted unique lists, a device's bundle and its id); `facts` only for principals,
        each a predicate name and a 32-byte commitment; `signer` a device id."""
        if not isinstance(obj, dict) or set(obj) != _MEMBERS:
            raise _err(f"must have exactly {', '.join(sorted(_MEMBERS))}")
        if type(obj["v"]) is not int or obj["v"] != 1:
            raise _err("v must be 1")
        origin, kind, record = obj["origin"], obj["type"], obj["record"]
        if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
            raise _err("origin must be the log's origin line (1-255 characters, no controls)")
        if kind not in STATEMENT_TYPES:
            raise _err(f"type must be one of {', '.join(STATEMENT_TYPES)}")
        seq = _positive_int(obj["seq"], "seq")
        prev = cls._prev(obj["prev"], seq)
        public = obj["public"]
        if not isinstance(public, dict):
            raise _err("public must be an object")
        expected = _PUBLIC[kind](public, seq, origin)
        if record != expected:
            raise _err(f"record must be {expected!r} for this {kind} statement")
        facts = cls._facts(obj["facts"], kind)
        if not _is_device_id(obj["signer"]):
            raise _err("signer must be a device id")
        return cls(origin, kind, record, seq, prev, copy.deepcopy(public), facts, obj["signer"])

    @staticmethod
    def _prev(value: Any, seq: int) -> bytes | None:
        if seq == 1:
            if value != "":
                raise _err('prev must be "" at seq 1')
            return None
        if value == "":
            raise _err("prev must be the digest of the record's statement seq - 1")
        return _b64_bytes(value, _DIGEST_LEN, "prev")

    @staticmethod
    def _facts(value: Any, kind: str) -> dict[str, bytes]:
        if not isinstance(value, dict):
            raise _err("facts must be an object")
        if kind != "principal":
            if value:
                raise _err("facts must be empty except for principals")
            return {}
        if not {"active", "person"} <= set(value):
            raise _err("a principal's facts must commit to active and person")
        out: dict[str, bytes] = {}
        for name, c in value.items():
            if not _FACT_RE.fullmatch(name):
                raise _err(f"unknown predicate {name[:80]!r} in facts")
            out[name] = _b64_bytes(c, COMMITMENT_LEN, f"the commitment of {name}")
        return out

    def canonical(self) -> bytes:
        """JCS(S): the bytes signed and hashed."""
        return jcs(self.to_json())

    def digest(self) -> bytes:
        """SHA-256("liaison/v1/statement-digest" || 0x00 || JCS(S)): the map's leaf value and
        the next statement's `prev`."""
        return p.sha256(DIGEST_DOMAIN, b"\x00", self.canonical())

    def message(self) -> bytes:
        """What the signer device's keys sign: "liaison/v1/statement" || 0x00 || JCS(S)."""
        return STATEMENT_DOMAIN + b"\x00" + self.canonical()

    def invitation_message(self) -> bytes:
        """What the invitation key signs: "liaison/v1/statement-invitation" || 0x00 || JCS(S)."""
        return INVITATION_SIGNATURE_DOMAIN + b"\x00" + self.canonical()

    @property
    def nation(self) -> str:
        """The nation of the record's map range: `public["nation"]`, or "*"."""
        value = self.public.get("nation", ANY_NATION)
        return value if isinstance(value, str) else ANY_NATION

    @property
    def id(self) -> str:
        """The record's id: what follows `<type>:` (for roots and policy, the type)."""
        return self.record.partition(":")[2] or self.record

    # Typed views of `public`, for the types that have them (checked by from_json).

    @cached_property
    def bundle(self) -> PublicBundle:
        """A device statement's bundle."""
        self._need("device")
        return PublicBundle.from_json(self.public["bundle"])

    @cached_property
    def invitation(self) -> SignedStatement | None:
        """A device statement's signed invitation (None for a device of the anchored roots
        and after seq 1)."""
        self._need("device")
        raw = self.public.get("invitation")
        return None if raw is None else SignedStatement.from_json(raw)

    @cached_property
    def ceiling(self) -> Label:
        """A channel statement's ceiling."""
        self._need("channel")
        return Label.from_json(self.public["ceiling"])

    @property
    def members(self) -> tuple[str, ...]:
        """A channel statement's members."""
        self._need("channel")
        return tuple(self.public["members"])

    @property
    def devices(self) -> tuple[str, ...]:
        """A roots statement's devices."""
        self._need("roots")
        return tuple(self.public["devices"])

    @property
    def key(self) -> bytes:
        """An invitation statement's invitation key (Ed25519 public key)."""
        self._need("invitation")
        return b64url_decode(self.public["key"], field="invitation key")

    @property
    def expires(self) -> datetime:
        """An invitation statement's expiry."""
        self._need("invitation")
        return parse_time(self.public["expires"], field="invitation expires")

    def _need(self, kind: str) -> None:
        if self.type != kind:
            raise StatementInvalid("type", f"a {self.type} statement is not a {kind} statement")


@dataclass(frozen=True)
class SignedStatement:
    """`{"statement", "signatures", "invitation_signature"?}`: a statement with the signer
    device's signatures (base64url, every signing key of its bundle) and, for a device's
    first statement, the invitation key's signature (9.8; at genesis, the key of the
    operator's root code, which no invitation statement names)."""

    statement: Statement
    signatures: dict[str, str]
    invitation_signature: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"statement": self.statement.to_json(), "signatures": dict(self.signatures)}
        if self.invitation_signature is not None:
            out["invitation_signature"] = b64url_encode(self.invitation_signature)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> SignedStatement:
        """Strict (MalformedStatement): `invitation_signature` is present exactly when the
        statement is a device's first; signatures are canonical base64url
        under known algorithm names, Ed25519 among them. (Verification is `verify`.)"""
        if not isinstance(obj, dict) or not {"statement", "signatures"} <= set(obj):
            raise _err("a signed statement must have statement and signatures")
        if set(obj) - {"statement", "signatures", "invitation_signature"}:
            raise _err("a signed statement has only statement, signatures, invitation_signature")
        statement = Statement.from_json(obj["statement"])
        signatures = obj["signatures"]
        if (
            not isinstance(signatures, dict)
            or ED25519 not in signatures
            or not set(signatures) <= set(SIGNATURE_ALGS)
        ):
            raise _err("signatures must map ed25519 (and optionally mldsa65) to base64url")
        for alg, value in signatures.items():
            try:
                b64url_check(value, field=f"{alg} signature")
            except MalformedError as e:
                raise _err(str(e)) from None
        # Every device's first statement is signed by its invitation key: the admin's
        # invitation's, or for a genesis root device (no invitation) the operator's code's.
        wants = statement.type == "device" and statement.seq == 1
        if wants != ("invitation_signature" in obj):
            raise _err("invitation_signature must be present exactly on a device's first statement")
        inv_sig = _b64_bytes(obj["invitation_signature"], 64, "invitation_signature") if wants else None
        return cls(statement, dict(signatures), inv_sig)

    def digest(self) -> bytes:
        return self.statement.digest()

    def verify(self, signer: PublicBundle) -> None:
        """BadSignature unless `signer` is the statement's signer device and every signing key
        of its bundle signed (an ML-DSA-65 signature cannot be stripped)."""
        if signer.device_id != self.statement.signer:
            raise BadSignature("the statement names another signer device")
        verify_signatures(
            signer,
            STATEMENT_DOMAIN,
            self.statement.canonical(),
            self.signatures,
            required=signer.algorithms,
        )

    def verify_invitation(self, key: bytes) -> None:
        """BadSignature unless the invitation key `key` signed the statement (9.8)."""
        if self.invitation_signature is None:
            raise BadSignature("the statement carries no invitation signature")
        if not p.ed25519_verify(key, self.statement.invitation_message(), self.invitation_signature):
            raise BadSignature("the invitation signature does not verify")


def leaf_value(digest: bytes, version: int) -> bytes:
    """A record's map leaf (protocol 9.5): its newest statement's digest and the map version
    that statement was written in, `SHA-256("liaison/v1/map-leaf" || 0x00 || digest ||
    u64be(version))`. The version dates the statement, so a signer revoked later still vouches
    for what it signed before (9.4); a server that backdates a leaf is caught by the replay."""
    if len(digest) != 32 or not 0 < version < 2**64:
        raise StatementInvalid("leaf", "a leaf is a 32-byte digest and a map version from 1")
    return p.sha256(LEAF_DOMAIN + b"\x00" + digest + version.to_bytes(8, "big"))


def sign_statement(
    keys: DeviceKeys, statement: Statement, invitation_seed: bytes | None = None
) -> SignedStatement:
    """Sign with every key of the device `keys` (which must be the statement's signer) and,
    with `invitation_seed`, with the invitation key too (a device's first statement)."""
    if keys.device_id != statement.signer:
        raise StatementInvalid("signer", "these keys are not the statement's signer device")
    signatures = keys.sign(STATEMENT_DOMAIN, statement.canonical())  # the agent's keys too
    inv_sig = None
    if invitation_seed is not None:
        invitation = statement.invitation  # StatementInvalid unless a device statement
        # A genesis root device's statement embeds no invitation (the operator's code has
        # none) but is still signed with the code's key: it proves the code was held.
        if invitation is not None and not p.bytes_eq(
            p.ed25519_public(invitation_seed), invitation.statement.key
        ):
            raise StatementInvalid("invitation", "this seed is not the invitation's key")
        inv_sig = p.ed25519_sign(invitation_seed, statement.invitation_message())
    return SignedStatement(statement, signatures, inv_sig)


# --- the invitation key (9.8) --------------------------------------------------------------


def invitation_seed(code: str) -> bytes:
    """HKDF-SHA-256(ikm = UTF-8(code), salt = "", info = "liaison/v1/invitation-key", 32): the
    Ed25519 seed of the invitation key, from the code as the server issued it."""
    if not isinstance(code, str) or not CODE_RE.fullmatch(code):
        raise MalformedError("an enrolment code is four groups of five upper-case base32 characters")
    return p.hkdf_sha256(code.encode("ascii"), b"", INVITATION_KEY_INFO, 32)


def invitation_public(code: str) -> bytes:
    """The invitation key's Ed25519 public key (32 bytes)."""
    return p.ed25519_public(invitation_seed(code))


# --- facts (9.2) ---------------------------------------------------------------------------


def fact_universe(policy: Policy) -> tuple[str, ...]:
    """Every predicate a principal statement commits to under `policy`, in a fixed order."""
    return (
        "active",
        "person",
        *(f"level>={lv.name}" for lv in policy.levels),
        *(f"holds:{c}" for c in policy.compartments),
        *(f"role:{r}" for r in ROLES),
    )


def principal_facts(
    policy: Policy,
    *,
    kind: str,
    clearance: str,
    compartments: Iterable[str],
    roles: Iterable[str],
    active: bool,
) -> dict[str, bool]:
    """The principal's value of every predicate of the policy's universe (monotone booleans)."""
    if kind not in ("person", "system"):
        raise PolicyViolation("unknown-kind", f"kind must be person or system, not {kind!r}")
    rank = policy.rank(clearance)  # PolicyViolation unknown-level
    held, granted = set(compartments), set(roles)
    if held - set(policy.compartments):
        raise PolicyViolation(
            "unknown-compartment", f"unknown compartment(s) {sorted(held - set(policy.compartments))}"
        )
    if granted - set(ROLES):
        raise PolicyViolation("unknown-role", f"unknown role(s) {sorted(granted - set(ROLES))}")
    facts = {"active": bool(active), "person": kind == "person"}
    facts.update({f"level>={lv.name}": rank >= i for i, lv in enumerate(policy.levels)})
    facts.update({f"holds:{c}": c in held for c in policy.compartments})
    facts.update({f"role:{r}": r in granted for r in ROLES})
    return facts


def label_needs(policy: Policy, label: Label) -> tuple[str, ...]:
    """The predicates a reader of `label` must open as true: `active`, `level>=<level>`, each
    `holds:<C>`, and `person` when the level does not admit systems (section 4)."""
    if label.policy != policy.id:
        raise PolicyViolation("wrong-policy", f"label is for policy {label.policy!r}")
    needs = ["active", f"level>={label.classification}", *(f"holds:{c}" for c in label.compartments)]
    if not policy.rule(label.classification).systems:
        needs.append("person")
    return tuple(needs)


def check_universe(policy: Policy, statement: Statement) -> None:
    """StatementInvalid (`universe`) unless a principal statement commits to exactly the
    predicates of `policy` (what the server checks on write)."""
    if statement.type == "principal" and set(statement.facts) != set(fact_universe(policy)):
        raise StatementInvalid("universe", "the facts are not exactly the policy's predicates")


def open_predicates(statement: Statement, disclosures: Mapping[str, Disclosure]) -> dict[str, bool]:
    """The predicates `disclosures` open (CommitmentMismatch if one does not open), each a JSON
    boolean (StatementInvalid `not-boolean` otherwise). Unopened predicates are absent: a
    verifier that needs one and does not find it holds it false."""
    opened = open_facts(statement.facts, disclosures)
    bad = sorted(name for name, value in opened.items() if type(value) is not bool)
    if bad:
        raise StatementInvalid("not-boolean", f"predicate(s) {', '.join(bad)} opened to a non-boolean")
    return opened


def open_all(statement: Statement, disclosures: Mapping[str, Disclosure]) -> dict[str, bool]:
    """Every commitment opened (what a write carries, 9.3): StatementInvalid `disclosures`
    if one is left unopened, CommitmentMismatch if one does not open."""
    missing = sorted(set(statement.facts) - set(disclosures))
    if missing:
        raise StatementInvalid("disclosures", f"no disclosure for {', '.join(missing)}")
    return open_predicates(statement, disclosures)


# --- builders ------------------------------------------------------------------------------


def _build(
    origin: str,
    kind: str,
    record: str,
    seq: int,
    prev: bytes | None,
    public: dict[str, Any],
    signer: str,
    facts: Mapping[str, bytes] | None = None,
) -> Statement:
    """The statement, validated exactly as a verifier will parse it (MalformedStatement)."""
    obj = {
        "v": 1,
        "origin": origin,
        "type": kind,
        "record": record,
        "seq": seq,
        "prev": "" if prev is None else b64url_encode(prev),
        "public": public,
        "facts": {n: b64url_encode(c) for n, c in (facts or {}).items()},
        "signer": signer,
    }
    return Statement.from_json(obj)


def principal_statement(
    origin: str,
    policy: Policy,
    *,
    principal: str,
    nation: str,
    kind: str,
    clearance: str,
    compartments: Iterable[str],
    roles: Iterable[str],
    active: bool,
    seq: int,
    prev: bytes | None,
    signer: str,
    salt: Callable[[], bytes] = new_salt,
) -> tuple[Statement, dict[str, Disclosure]]:
    """A principal's statement, committing to every predicate of the policy's universe with a
    fresh salt each, and all its disclosures (which a write carries, 9.3)."""
    if nation != ANY_NATION and nation not in policy.nations:
        raise PolicyViolation("unknown-nation", f"{nation} is not a nation of the policy")
    values = principal_facts(
        policy, kind=kind, clearance=clearance, compartments=compartments, roles=roles, active=active
    )
    facts, disclosures = commit_all(values, salt)
    public = {"principal": principal, "nation": nation}
    return _build(
        origin, "principal", f"principal:{principal}", seq, prev, public, signer, facts
    ), disclosures


def device_statement(
    origin: str,
    *,
    bundle: PublicBundle,
    principal: str,
    nation: str,
    status: str,
    seq: int,
    prev: bytes | None,
    signer: str,
    invitation: SignedStatement | None,
) -> Statement:
    """A device's statement: its enrolment (seq 1, with the invitation unless it is a device
    of the anchored roots) or its revocation (seq > 1)."""
    public: dict[str, Any] = {
        "device": bundle.device_id,
        "principal": principal,
        "nation": nation,
        "status": status,
        "bundle": bundle.to_json(),
    }
    if invitation is not None:
        if seq != 1:
            raise _err("only a device's first statement carries its invitation")
        public["invitation"] = invitation.to_json()
    return _build(origin, "device", f"device:{bundle.device_id}", seq, prev, public, signer)


def channel_statement(
    origin: str,
    *,
    channel: str,
    ceiling: Label,
    members: Iterable[str],
    seq: int,
    prev: bytes | None,
    signer: str,
) -> Statement:
    public = {"channel": channel, "ceiling": ceiling.to_json(), "members": sorted(set(members))}
    return _build(origin, "channel", f"channel:{channel}", seq, prev, public, signer)


def roots_statement(
    origin: str, *, devices: Iterable[str], seq: int, prev: bytes | None, signer: str
) -> Statement:
    return _build(origin, "roots", "roots", seq, prev, {"devices": sorted(set(devices))}, signer)


def policy_statement(origin: str, policy: Policy, *, seq: int, prev: bytes | None, signer: str) -> Statement:
    """The policy's `{"id", "version", "sha256"}` (the SHA-256 of its file)."""
    public = {"id": policy.id, "version": policy.version, "sha256": policy.sha256}
    return _build(origin, "policy", "policy", seq, prev, public, signer)


def invitation_statement(
    origin: str,
    *,
    principal: str,
    nation: str,
    key: bytes,
    expires: datetime,
    anchors: bytes,
    signer: str,
) -> Statement:
    """An admin's invitation (seq 1, not in the map): the invitation key, its expiry (to the
    second) and the digest of the anchors the new device will pin."""
    key_text = b64url_encode(key)
    public = {
        "principal": principal,
        "nation": nation,
        "key": key_text,
        "expires": format_time(expires, millis=False),
        "anchors": b64url_encode(anchors),
    }
    return _build(origin, "invitation", f"invitation:{key_text}", 1, None, public, signer)


# --- chains --------------------------------------------------------------------------------


def check_successor(previous: Statement | None, new: Statement) -> None:
    """StatementInvalid unless `new` is the next statement of `previous`'s record (None: the
    record has none yet). Reasons: `chain` (not seq 1 of a new record, a gap, or `prev` not
    the predecessor's digest: a fork), `stale` (a seq already taken: a rollback or replay),
    `origin`, `record` (another record or type), `nation` (a record's nation never changes:
    it fixes its map key, 9.5), `revoked` (a revoked device's record is closed), `version` (a
    policy's version must rise)."""
    if previous is None:
        if new.seq != 1:
            raise StatementInvalid("chain", f"seq {new.seq} of {new.record} has no predecessor")
        return
    if new.origin != previous.origin:
        raise StatementInvalid("origin", "the statement is for another log")
    if new.record != previous.record or new.type != previous.type:
        raise StatementInvalid("record", f"{new.record} does not continue {previous.record}")
    if new.seq <= previous.seq:
        raise StatementInvalid("stale", f"{new.record} is at seq {previous.seq}; seq {new.seq} is stale")
    if new.seq != previous.seq + 1:
        raise StatementInvalid("chain", f"{new.record} is at seq {previous.seq}; seq {new.seq} skips")
    if new.prev is None or not p.bytes_eq(new.prev, previous.digest()):
        raise StatementInvalid("chain", f"prev of {new.record} seq {new.seq} is not its predecessor's digest")
    if new.nation != previous.nation:
        raise StatementInvalid("nation", f"the nation of {new.record} cannot change (it keys the map)")
    if new.type == "device" and previous.public["status"] == "revoked":
        raise StatementInvalid("revoked", f"{new.record} is revoked: its record is closed")
    if new.type == "policy" and new.public["version"] <= previous.public["version"]:
        raise StatementInvalid("version", "a policy statement's version must exceed the previous one's")
