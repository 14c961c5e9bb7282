"""The verifiable directory on the client's side (protocol 9): proofs opened, authority and
eligibility decided from proven statements only, and the statements an admin's client signs.

A lookup's `directory` member (9.9) is opened in three steps, each refusing with
`DirectoryInvalid` (its `why` says which check):

1. `open_directory`: the checkpoint (already trusted by the client: pinned key, consistent
   with the saved one), the `map.head` entry proven at index N - 1, and every record's map
   proof against that head's root: each leaf value must be its statement's digest, and every
   disclosure must open its commitment.
2. `Authority`: the 9.4 table over the proven records, each signer's own device and principal
   proven too (recursively up to the roots), the `roots` chain verified from the profile's
   anchored statement (`verify_roots`), and the served policy held to the root-signed one
   (`verify_policy`).
3. `decide`: every device the server listed must be proven current, active, of a principal
   proven to dominate the label, a member of the proven channel whose ceiling dominates the
   label; anything else refuses the whole send. A member left out without proof is a
   warning (the server decides completeness).

`DirectoryMemory` keeps, beside `log.json`, the anchored roots, the policy floor, the highest
`seq` relied on per record (a lower one is a rollback) and the newest map version seen.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from liaison.crypto import note
from liaison.crypto.anchors import Anchors
from liaison.crypto.authority import SignerView, check_authority, check_roots_chain, excluded_ok, reader_ok
from liaison.crypto.commitments import Disclosure, parse_disclosures
from liaison.crypto.encoding import b64url_decode, b64url_encode
from liaison.crypto.errors import CryptoError, MalformedError, PolicyViolation, StatementInvalid
from liaison.crypto.invitation import new_code
from liaison.crypto.keys import DeviceKeys, PublicBundle
from liaison.crypto.labels import Label
from liaison.crypto.policy import Policy, check_ceiling
from liaison.crypto.statements import (
    SignedStatement,
    Statement,
    channel_statement,
    device_statement,
    fact_universe,
    invitation_public,
    invitation_seed,
    invitation_statement,
    label_needs,
    leaf_value,
    open_predicates,
    policy_statement,
    principal_statement,
    roots_statement,
    sign_statement,
)
from liaison.crypto.vmap import MapProof, map_key, verify_proof

from ._verify import verify_entry
from .errors import DirectoryInvalid, KeyStoreError, MalformedResponse, ProofInvalid
from .keystore import _write_private

__all__ = [
    "Authority",
    "Decision",
    "DirectoryMemory",
    "MapHead",
    "Opened",
    "PrincipalState",
    "Proven",
    "channel_change",
    "decide",
    "device_enrolment",
    "genesis_statements",
    "invitation_change",
    "new_code",
    "open_directory",
    "principal_change",
    "principal_state",
    "revocation",
    "verify_policy",
    "verify_roots",
]

#: The map range of records that belong to no nation (protocol 9.5).
_ANY = "*"


# --- what a lookup proves -------------------------------------------------------------------


@dataclass(frozen=True)
class MapHead:
    """The `map.head` entry at index N - 1 of a checkpoint of size N, proven in it (9.6)."""

    size: int
    version: int
    root: bytes


@dataclass(frozen=True)
class Proven:
    """A record as a lookup proves it: its newest statement at the map head (None: the server
    shows none), and the predicates its disclosures opened (an unopened one is absent)."""

    record: str
    signed: SignedStatement | None
    facts: Mapping[str, bool] = field(default_factory=dict)
    #: The map version its newest statement was written in (its leaf binds it, 9.5).
    version: int = 0

    @property
    def statement(self) -> Statement:
        if self.signed is None:
            raise DirectoryInvalid("unproven", f"the directory proves no statement of {self.record}")
        return self.signed.statement

    @property
    def seq(self) -> int:
        return 0 if self.signed is None else self.signed.statement.seq

    @property
    def digest(self) -> bytes | None:
        return None if self.signed is None else self.signed.digest()


@dataclass
class Opened:
    """A lookup's `directory` member whose map head and map proofs verified."""

    checkpoint: note.Checkpoint
    head: MapHead
    records: dict[str, Proven]
    roots: tuple[SignedStatement, ...]

    def merge(self, other: Opened) -> None:
        """Add the records of another answer proven at the same map head."""
        if other.head != self.head:
            raise DirectoryInvalid("map-head", "two answers for one checkpoint show different map heads")
        for name, proven in other.records.items():
            mine = self.records.get(name)
            if mine is None or (mine.signed is None and proven.signed is not None):
                self.records[name] = proven
            elif proven.signed is not None and mine.digest != proven.digest:
                raise DirectoryInvalid("map-proof", f"two statements of {name} proven at one map head")
            else:
                self.records[name] = Proven(name, mine.signed, {**proven.facts, **mine.facts}, mine.version)
        if len(other.roots) > len(self.roots):
            self.roots = other.roots


def _bytes_eq(a: bytes | None, b: bytes | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a, b)


def _map_head(obj: Any, cp: note.Checkpoint) -> MapHead:
    if not isinstance(obj, dict) or obj.get("log_index") != cp.size - 1:
        raise DirectoryInvalid(
            "map-head", f"the map head is not entry {cp.size - 1}, the last of the checkpoint"
        )
    try:
        entry = verify_entry(obj.get("entry"), cp.size - 1, obj.get("inclusion_proof"), cp)
    except (ProofInvalid, MalformedResponse) as e:
        raise DirectoryInvalid(
            "map-head", f"the map head is not proven in the checkpoint of size {cp.size}: {e}"
        ) from None
    head = entry.json
    version, root = head.get("version"), head.get("root")
    # A v1 head names its actor; a v2 head shows only its type, hour and fields (protocol 10.2).
    if head.get("type") != "map.head" or (head.get("v") == 1 and head.get("actor") != "system"):
        raise DirectoryInvalid(
            "map-head", f"log entry {cp.size - 1} is a {head.get('type')!r} entry, not the map head"
        )
    try:
        if type(version) is not int or version < 0 or not isinstance(root, str) or len(root) != 43:
            raise MalformedError("fields")
        raw = b64url_decode(root, field="root")
    except MalformedError:
        raise DirectoryInvalid("map-head", "the map head's version or root is malformed") from None
    return MapHead(cp.size, version, raw)


def _record(name: str, obj: Any, head: MapHead, origin: str) -> Proven:
    if not isinstance(obj, dict):
        raise DirectoryInvalid("malformed", f"the directory's entry for {name} is not an object")
    try:
        signed = None if obj.get("statement") is None else SignedStatement.from_json(obj["statement"])
        proof = None if obj.get("proof") is None else MapProof.from_json(obj["proof"])
        disclosures: dict[str, Disclosure] = parse_disclosures(obj.get("disclosures") or {})
    except CryptoError as e:
        raise DirectoryInvalid("malformed", f"the directory's entry for {name}: {e}") from None
    if signed is None:
        if proof is not None and _nation_of(name) == _ANY:
            try:
                value = verify_proof(head.root, map_key(_ANY, name), proof)
            except CryptoError as e:
                raise DirectoryInvalid(
                    "map-proof", f"the proof that {name} is absent does not verify: {e}"
                ) from None
            if value is not None:
                raise DirectoryInvalid(
                    "map-proof", f"the map holds a statement of {name} the server does not show"
                )
        return Proven(name, None)
    st = signed.statement
    if st.record != name:
        raise DirectoryInvalid("map-proof", f"the statement shown for {name} is one of {st.record}")
    if st.origin != origin:
        raise DirectoryInvalid(
            "map-proof", f"the statement of {name} is for log {st.origin!r}, not {origin!r}"
        )
    if proof is None:
        raise DirectoryInvalid("map-proof", f"the statement of {name} comes without its map proof")
    version = obj.get("version")
    if type(version) is not int or not 0 < version <= head.version:
        raise DirectoryInvalid(
            "map-proof", f"the statement of {name} comes without the map version it was written in"
        )
    try:
        value = verify_proof(head.root, map_key(st.nation, name), proof)
    except CryptoError as e:
        raise DirectoryInvalid("map-proof", f"the map proof of {name} does not verify: {e}") from None
    if not _bytes_eq(value, leaf_value(st.digest(), version)):
        raise DirectoryInvalid(
            "map-proof",
            f"{name} seq {st.seq} is not the newest statement the map holds at version {head.version}",
        )
    try:
        facts = open_predicates(st, disclosures)
    except CryptoError as e:
        raise DirectoryInvalid("disclosure", f"{name}: {e}") from None
    return Proven(name, signed, facts, version)


def _nation_of(record: str) -> str | None:
    if record in ("roots", "policy") or record.startswith("channel:"):
        return _ANY
    return None


def open_directory(directory: Any, cp: note.Checkpoint) -> Opened:
    """Verify a `directory` member against its checkpoint `cp` (which the caller has trusted:
    signed by the pinned key, consistent with what it saw): the map head, each record's map
    proof, statement and disclosures. Nothing here checks authority (`Authority`)."""
    if not isinstance(directory, dict):
        raise DirectoryInvalid("unproven", "the server's answer carries no directory proofs (protocol 9.9)")
    if directory.get("tree_size") != cp.size:
        raise DirectoryInvalid("map-head", "the directory's tree size is not its checkpoint's")
    head = _map_head(directory.get("map_head"), cp)
    records = directory.get("records")
    roots = directory.get("roots", [])
    if not isinstance(records, dict) or not isinstance(roots, list):
        raise DirectoryInvalid("malformed", "the directory has no records or roots")
    opened = {str(name): _record(str(name), obj, head, cp.origin) for name, obj in records.items()}
    try:
        chain = tuple(SignedStatement.from_json(s) for s in roots)
    except CryptoError as e:
        raise DirectoryInvalid("roots", f"a roots statement is malformed: {e}") from None
    return Opened(cp, head, opened, chain)


# --- authority (9.4), over proven records -----------------------------------------------------


class Authority:
    """Checks the 9.4 table for proven records, each signer's own records proven and checked
    in turn (its device statement, its principal's opening the predicates relied on), up to
    the roots. Remembers the seq of every record it relied on (`seqs`)."""

    def __init__(self, opened: Opened, roots: Statement) -> None:
        self.opened = opened
        self.roots = roots
        self.seqs: dict[str, int] = {}
        self._done: set[tuple[str, frozenset[str]]] = set()
        self._stack: list[str] = []

    def proven(self, record: str) -> Proven:
        found = self.opened.records.get(record)
        if found is None or found.signed is None:
            raise DirectoryInvalid("unproven", f"the directory proves no statement of {record}")
        return found

    def check(self, record: str, relied: Collection[str] = ()) -> Proven:
        """The record, once its newest statement's signer is proven to have had authority to
        make it; `relied`: the predicates of a principal relied on as true."""
        proven = self.proven(record)
        key = (record, frozenset(relied))
        if key in self._done:
            return proven
        if record in self._stack:
            raise DirectoryInvalid("authority", f"the authority of {record} depends on itself")
        self._stack.append(record)
        try:
            st = proven.statement
            # Authority as it stood when the statement was written (its leaf's version): a
            # signer revoked since still vouches for what it signed before (9.4).
            signer = self.signer(st.signer, _signer_needs(st, relied), at=proven.version)
            invitation_signer = None
            if st.type == "device" and st.seq == 1 and "invitation" in st.public:
                invitation = st.invitation
                assert invitation is not None
                invitation_signer = self.signer(invitation.statement.signer, _ADMIN, at=proven.version)
            assert proven.signed is not None  # self.proven() refuses a record without one
            try:
                check_authority(
                    proven.signed, signer, relied=tuple(relied), invitation_signer=invitation_signer
                )
            except StatementInvalid as e:
                raise DirectoryInvalid(
                    "authority",
                    f"{record} seq {st.seq}: its signer had no authority ({e.reason}: {e.detail})",
                ) from None
        finally:
            self._stack.pop()
        self._done.add(key)
        self.seqs[record] = st.seq
        return proven

    def signer(self, device: str, needs: Collection[str] = (), *, at: int | None = None) -> SignerView:
        """What the directory proves about a signer device: its statement (checked in turn),
        the predicates `needs` of its principal as opened (that statement checked with those
        opened true relied on; no other predicate is lent), whether it is a root device. A
        principal whose check is under way (a statement signed by a device of the principal it
        describes) lends no predicate: only a root device can then sign."""
        record = f"device:{device}"
        dev = self.proven(record)
        if record not in self._stack:
            self.check(record)
        st = dev.statement
        try:
            bundle = PublicBundle.from_json(st.public["bundle"])
        except CryptoError as e:  # pragma: no cover - Statement.from_json parsed it already
            raise DirectoryInvalid("malformed", f"{record}: {e}") from None
        principal = str(st.public["principal"])
        facts: dict[str, bool] = {}
        owner = f"principal:{principal}"
        found = self.opened.records.get(owner)
        if found is not None and found.signed is not None and owner not in self._stack:
            if found.statement.nation != st.nation:
                raise DirectoryInvalid(
                    "authority", f"{record} is of {st.nation}, its principal of {found.statement.nation}"
                )
            facts = {k: v for k, v in found.facts.items() if k in needs}
            self.check(owner, [k for k, v in facts.items() if v is True])
        # Active when it signed: active now, or revoked only in a later map version.
        active = st.public["status"] == "active" or (at is not None and at < dev.version)
        # A root device: listed by the anchored roots, or a device of the root principal (whose
        # invitation only a root device may sign, so this is checked up to the anchor).
        root = device in self.roots.devices or principal == "root"
        return SignerView(device, bundle, principal, st.nation, active, facts, root)


#: What a signer's principal must open for any authority but a root device's (9.4).
_ADMIN = ("active", "role:admin")


def _signer_needs(st: Statement, relied: Collection[str]) -> tuple[str, ...]:
    """The predicates of the signer's principal that the 9.4 table consults for `st`: `active`
    and `role:admin`; for a principal, the granted predicates relied on (the signer must hold
    them); for a channel, those of its ceiling."""
    if st.type == "principal":
        granted = sorted(f for f in relied if f.startswith(("level>=", "holds:")) or f == "role:auditor")
        return (*_ADMIN, *granted)
    if st.type == "channel":
        ceiling = st.ceiling
        return (*_ADMIN, f"level>={ceiling.classification}", *(f"holds:{c}" for c in ceiling.compartments))
    return _ADMIN


def verify_roots(opened: Opened, anchor_seq: int, anchor_digest: bytes) -> Statement:
    """The newest `roots` statement: the chain from the anchored one (seq and digest) through
    each successor, signed by a device its predecessor lists, ending at the statement the map
    proves current."""
    chain = [s for s in opened.roots if s.statement.seq >= anchor_seq]
    bundles: dict[str, PublicBundle] = {}
    for s in chain[1:]:
        found = opened.records.get(f"device:{s.statement.signer}")
        if found is not None and found.signed is not None:
            bundles[s.statement.signer] = PublicBundle.from_json(found.statement.public["bundle"])
    try:
        newest = check_roots_chain(anchor_digest, anchor_seq, chain, bundles)
    except StatementInvalid as e:
        raise DirectoryInvalid(
            "roots", f"the roots chain does not verify from this profile's anchor: {e}"
        ) from None
    current = opened.records.get("roots")
    if current is None or current.signed is None:
        raise DirectoryInvalid("roots", "the roots statement is not proven current")
    if not _bytes_eq(current.digest, newest.digest()):
        raise DirectoryInvalid(
            "roots",
            f"the roots chain shown ends at seq {newest.seq}, the map proves seq {current.seq} current",
        )
    return newest


def verify_policy(auth: Authority, served: Policy, floor: int) -> Statement:
    """The root-signed, proven-current policy statement, which must name the policy the server
    serves (id, version, SHA-256 of its file) at or above the profile's floor."""
    st = auth.check("policy").statement
    version = st.public["version"]
    if version < floor:
        raise DirectoryInvalid(
            "policy", f"policy version {version} is below version {floor} this profile has seen"
        )
    named = (st.public["id"], version, st.public["sha256"])
    if named != (served.id, served.version, served.sha256):
        raise DirectoryInvalid(
            "policy",
            f"the server's policy ({served.id} v{served.version}) is not the one the root signed "
            f"({named[0]} v{named[1]}, sha256 {named[2][:16]}...)",
        )
    return st


# --- the client's decision (9.9) ----------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The devices proven eligible (device id -> principal, bundle), warnings about members left
    out without proof, and the seq of every record relied on."""

    eligible: dict[str, tuple[str, PublicBundle]]
    warnings: tuple[str, ...]
    seqs: dict[str, int]


def decide(
    auth: Authority,
    policy: Policy,
    label: Label,
    channel: str,
    listed: Mapping[str, str],
    excluded: Mapping[str, str],
    *,
    older_map: bool = False,
) -> Decision:
    """Accept every device the server `listed` (device id -> principal) only if the directory
    proves it may read `label` on `channel`; otherwise DirectoryInvalid naming it. Members
    left out (`excluded`: the server's reasons) without a verifiable reason are warnings.

    `older_map`: the directory was asked at an older (witnessed) checkpoint than the list, so
    a listed device the map does not hold yet (enrolled since) is left out, with a warning,
    rather than refusing the send (leaving a device out never discloses anything)."""
    chan = auth.check(f"channel:{channel}").statement
    try:
        check_ceiling(policy, label, chan.ceiling)
    except (PolicyViolation, CryptoError) as e:
        raise DirectoryInvalid(
            "ineligible", f"{label.text()} is not under the proven ceiling of {channel}: {e}"
        ) from None
    members = set(chan.members)
    needs = label_needs(policy, label)
    eligible: dict[str, tuple[str, PublicBundle]] = {}
    warnings = []
    for device, said in sorted(listed.items()):
        found = auth.opened.records.get(f"device:{device}")
        if older_map and (found is None or found.signed is None):
            warnings.append(
                f"device {device} of {said} is not in the map of the witnessed checkpoint of size "
                f"{auth.opened.head.size}: left out"
            )
            continue
        eligible[device] = _reader(auth, policy, label, channel, members, needs, device, said)
    readers = {p for p, _ in eligible.values()}
    for pid in sorted(members - readers):
        why = excluded.get(pid, "not listed")
        if not _proven_excluded(auth, policy, label, pid):
            proven = _eligible_principal(auth, policy, label, pid)
            if proven:
                warnings.append(f"{pid} is proven eligible, but the server lists no device of it ({why})")
            else:
                warnings.append(f"{pid} is left out ({why}) without proof")
    return Decision(eligible, tuple(warnings), dict(auth.seqs))


def _reader(
    auth: Authority,
    policy: Policy,
    label: Label,
    channel: str,
    members: set[str],
    needs: tuple[str, ...],
    device: str,
    said: str,
) -> tuple[str, PublicBundle]:
    who = f"device {device} of {said}"
    try:
        st = auth.check(f"device:{device}").statement
    except DirectoryInvalid as e:
        raise DirectoryInvalid(e.why, f"the server lists {who}, but {e}") from None
    principal = str(st.public["principal"])
    if principal != said:
        raise DirectoryInvalid(
            "ineligible", f"the server lists {who}, but the directory shows it is {principal}'s"
        )
    if st.public["status"] != "active":
        raise DirectoryInvalid("ineligible", f"the server lists {who}, but the directory shows it revoked")
    if principal not in members:
        raise DirectoryInvalid(
            "ineligible", f"the server lists {who}, but {principal} is not a member of {channel}"
        )
    record = f"principal:{principal}"
    found = auth.opened.records.get(record)
    if found is None or found.signed is None:
        raise DirectoryInvalid(
            "unproven", f"the server lists {who}, but the directory proves nothing of {principal}"
        )
    nation = found.statement.nation
    if nation != st.nation:
        raise DirectoryInvalid("ineligible", f"{who} is of {st.nation}, its principal of {nation}")
    refused = reader_ok(policy, label, nation=nation, facts=found.facts)
    if refused is not None:
        raise DirectoryInvalid(
            "ineligible",
            f"the server lists {who} ({nation}) for {label.text()}, but the directory does not prove "
            f"that {principal} may read it ({refused})",
        )
    try:
        auth.check(record, [n for n in needs if found.facts.get(n) is True])
    except DirectoryInvalid as e:
        raise DirectoryInvalid(e.why, f"the server lists {who}, but {e}") from None
    return principal, PublicBundle.from_json(st.public["bundle"])


def _proven_excluded(auth: Authority, policy: Policy, label: Label, pid: str) -> bool:
    found = auth.opened.records.get(f"principal:{pid}")
    if found is None or found.signed is None:
        return False
    if not excluded_ok(policy, label, nation=found.statement.nation, facts=found.facts):
        return False
    try:
        auth.check(f"principal:{pid}")
    except DirectoryInvalid:
        return False
    return True


def _eligible_principal(auth: Authority, policy: Policy, label: Label, pid: str) -> bool:
    found = auth.opened.records.get(f"principal:{pid}")
    if found is None or found.signed is None:
        return False
    return reader_ok(policy, label, nation=found.statement.nation, facts=found.facts) is None


# --- memory ---------------------------------------------------------------------------------

_VERSION = 1
_MAX_FILE = 4 * 1024 * 1024


class DirectoryMemory:
    """What one profile remembers of the directory, in ``state/<profile>/directory.json``::

        {"v": 1, "log_key": "<pinned>", "roots": {"seq", "digest"}, "policy": {"version"},
         "seqs": {"<record>": <highest seq relied on>}, "map": {"size", "version"},
         "monitor": {"<nation>": [<device>, ...]}, "own": {"devices": [...], "checked": <time>}}

    The roots anchor moves forward only along a verified chain; the policy floor and the seqs
    only rise. Bound to the pinned log key (a file for another key is refused)."""

    def __init__(self, path: Path, log_key: str) -> None:
        self.path = Path(path)
        self.log_key = log_key

    @classmethod
    def beside(cls, log_json: Path, log_key: str) -> DirectoryMemory:
        return cls(Path(log_json).with_name("directory.json"), log_key)

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()[: _MAX_FILE + 1]
        except FileNotFoundError:
            return {"v": _VERSION, "log_key": self.log_key, "seqs": {}}
        except OSError as e:
            raise KeyStoreError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise KeyStoreError(f"{self.path} is damaged (not JSON)") from e
        if not isinstance(doc, dict) or doc.get("v") != _VERSION or not isinstance(doc.get("seqs"), dict):
            raise KeyStoreError(f"{self.path} is damaged or of an unknown version")
        if doc.get("log_key") != self.log_key:
            raise KeyStoreError(f"{self.path} was written for another log key; this profile cannot use it")
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    def roots(self) -> tuple[int, bytes] | None:
        """The anchored roots statement (seq, digest), or None."""
        found = self._read().get("roots")
        if not isinstance(found, dict):
            return None
        try:
            return int(found["seq"]), b64url_decode(str(found["digest"]), field="roots digest")
        except (KeyError, TypeError, ValueError, MalformedError):
            raise KeyStoreError(f"{self.path} is damaged (roots)") from None

    def policy_floor(self) -> int:
        found = self._read().get("policy")
        return int(found["version"]) if isinstance(found, dict) and type(found.get("version")) is int else 1

    def anchor(self, anchors: Anchors) -> None:
        """Pin what an invitation's anchors name (at enrolment)."""
        doc = self._read()
        doc["roots"] = {"seq": anchors.roots_seq, "digest": b64url_encode(anchors.roots_digest)}
        doc["policy"] = {"version": anchors.policy_version}
        self._write(doc)

    def advance(self, roots: Statement | None = None, policy_version: int | None = None) -> None:
        """Move the roots anchor to a newer verified statement, raise the policy floor."""
        doc = self._read()
        if roots is not None:
            known = doc.get("roots")
            if not isinstance(known, dict) or int(known.get("seq", 0)) <= roots.seq:
                doc["roots"] = {"seq": roots.seq, "digest": b64url_encode(roots.digest())}
        if policy_version is not None:
            doc["policy"] = {"version": max(policy_version, self.policy_floor())}
        self._write(doc)

    def check(self, seqs: Mapping[str, int], head: MapHead) -> None:
        """DirectoryInvalid (`rollback`) if a record relied on is older than one relied on
        before, or the map's version went back."""
        doc = self._read()
        known = doc["seqs"]
        for record, seq in sorted(seqs.items()):
            before = known.get(record)
            if type(before) is int and seq < before:
                raise DirectoryInvalid(
                    "rollback",
                    f"the server shows {record} at seq {seq}, but this profile relied on seq {before} "
                    "before: an older statement is being replayed",
                )
        seen = doc.get("map")
        if (
            not isinstance(seen, dict)
            or type(seen.get("size")) is not int
            or type(seen.get("version")) is not int
        ):
            return
        size, version = seen["size"], seen["version"]
        if (head.size >= size and head.version < version) or (head.size <= size and head.version > version):
            raise DirectoryInvalid(
                "rollback",
                f"the map is at version {head.version} at size {head.size}, but was at version "
                f"{version} at size {size}",
            )

    def remember(self, seqs: Mapping[str, int], head: MapHead) -> None:
        doc = self._read()
        known = doc["seqs"]
        for record, seq in seqs.items():
            if seq > int(known.get(record, 0)):
                known[record] = seq
        seen = doc.get("map")
        if not isinstance(seen, dict) or type(seen.get("size")) is not int or head.size >= seen["size"]:
            doc["map"] = {"size": head.size, "version": head.version}
        self._write(doc)

    def seen_devices(self, nation: str) -> set[str]:
        """The devices `monitor_nation` has seen in `nation`'s range before."""
        found = self._read().get("monitor", {})
        seen = found.get(nation, []) if isinstance(found, dict) else []
        return {str(x) for x in seen} if isinstance(seen, list) else set()

    def see_devices(self, nation: str, devices: Iterable[str]) -> None:
        doc = self._read()
        monitor = doc.get("monitor")
        if not isinstance(monitor, dict):
            monitor = doc["monitor"] = {}
        monitor[nation] = sorted(set(monitor.get(nation, [])) | set(devices))
        self._write(doc)

    def own_devices(self) -> set[str]:
        """The other devices of this profile's principal it has seen proven before."""
        found = self._read().get("own")
        seen = found.get("devices", []) if isinstance(found, dict) else []
        return {str(x) for x in seen} if isinstance(seen, list) else set()

    def see_own(self, devices: Iterable[str] = (), *, checked: float | None = None) -> None:
        """Remember devices of this profile's principal (each alarmed once), and when the own
        records were last checked (`checked`, Unix time)."""
        doc = self._read()
        own = doc.get("own")
        if not isinstance(own, dict):
            own = doc["own"] = {"devices": [], "checked": 0}
        own["devices"] = sorted(set(own.get("devices", [])) | set(devices))
        if checked is not None:
            own["checked"] = checked
        self._write(doc)

    def own_checked(self) -> float:
        """When this profile last checked its own records (Unix time; 0: never)."""
        found = self._read().get("own")
        value = found.get("checked") if isinstance(found, dict) else 0
        return float(value) if isinstance(value, int | float) else 0.0

    def known_seq(self, record: str) -> int:
        value = self._read()["seqs"].get(record)
        return value if type(value) is int else 0


def invited_by(st: Statement) -> str:
    """Who a device statement says invited the device: the device that signed its invitation,
    "genesis" (the first root device), or unknown when the newest statement is a revocation."""
    if st.seq > 1:
        return "unknown (seen first revoked)"
    invitation = st.invitation
    return invitation.statement.signer if invitation is not None else "genesis"


# --- statements an admin's client signs (9.3) ------------------------------------------------


@dataclass(frozen=True)
class PrincipalState:
    """The attributes of a principal that its statement commits to."""

    nation: str
    kind: str
    clearance: str
    compartments: tuple[str, ...]
    roles: tuple[str, ...]
    active: bool


def principal_state(policy: Policy, proven: Proven) -> PrincipalState | None:
    """The principal's attributes as its proven statement says them, when every predicate of
    the policy's universe is disclosed (its own principal, an admin's own nation); else None."""
    if proven.signed is None or set(fact_universe(policy)) - set(proven.facts):
        return None
    f = proven.facts
    levels = [lv.name for lv in policy.levels if f.get(f"level>={lv.name}") is True]
    if not levels:
        return None
    return PrincipalState(
        proven.statement.nation,
        "person" if f.get("person") else "system",
        levels[-1],
        tuple(c for c in policy.compartments if f.get(f"holds:{c}") is True),
        tuple(
            name.removeprefix("role:") for name in sorted(f) if name.startswith("role:") and f[name] is True
        ),
        f.get("active") is True,
    )


def _prev(current: Proven | None) -> tuple[int, bytes | None]:
    if current is None or current.signed is None:
        return 1, None
    return current.seq + 1, current.digest


def principal_change(
    keys: DeviceKeys,
    origin: str,
    policy: Policy,
    current: Proven | None,
    principal: str,
    state: PrincipalState,
) -> dict[str, Any]:
    """The `statement` and every `disclosure` of a principal's next statement."""
    seq, prev = _prev(current)
    st, disclosures = principal_statement(
        origin,
        policy,
        principal=principal,
        nation=state.nation,
        kind=state.kind,
        clearance=state.clearance,
        compartments=state.compartments,
        roles=state.roles,
        active=state.active,
        seq=seq,
        prev=prev,
        signer=keys.device_id,
    )
    return {
        "statement": sign_statement(keys, st).to_json(),
        "disclosures": {k: d.to_json() for k, d in disclosures.items()},
    }


def channel_change(
    keys: DeviceKeys,
    origin: str,
    current: Proven | None,
    channel: str,
    ceiling: Label,
    members: Iterable[str],
) -> dict[str, Any]:
    """The `statement` of a channel's next state (its whole member list)."""
    seq, prev = _prev(current)
    st = channel_statement(
        origin,
        channel=channel,
        ceiling=ceiling,
        members=sorted(set(members)),
        seq=seq,
        prev=prev,
        signer=keys.device_id,
    )
    return {"statement": sign_statement(keys, st).to_json()}


def revocation(keys: DeviceKeys, origin: str, current: Proven) -> dict[str, Any]:
    """The `statement` revoking the device `current` describes."""
    st = current.statement
    bundle = PublicBundle.from_json(st.public["bundle"])
    seq, prev = _prev(current)
    new = device_statement(
        origin,
        bundle=bundle,
        principal=str(st.public["principal"]),
        nation=st.nation,
        status="revoked",
        seq=seq,
        prev=prev,
        signer=keys.device_id,
        invitation=None,
    )
    return {"statement": sign_statement(keys, new).to_json()}


def invitation_change(
    keys: DeviceKeys,
    origin: str,
    *,
    principal: str,
    nation: str,
    code: str,
    expires: datetime,
    anchors: Mapping[str, Any],
    digest: bytes,
) -> dict[str, Any]:
    """The body of an enrolment-code request: the signed invitation for `code` and its anchors."""
    st = invitation_statement(
        origin,
        principal=principal,
        nation=nation,
        key=invitation_public(code),
        expires=expires,
        anchors=digest,
        signer=keys.device_id,
    )
    return {"invitation": sign_statement(keys, st).to_json(), "anchors": dict(anchors)}


def device_enrolment(
    keys: DeviceKeys, origin: str, nation: str, invitation: SignedStatement | None, code: str
) -> SignedStatement:
    """A new device's own statement (9.8): signed by its keys and by the invitation key the
    code derives."""
    st = device_statement(
        origin,
        bundle=keys.public,
        principal=keys.public.principal,
        nation=nation,
        status="active",
        seq=1,
        prev=None,
        signer=keys.device_id,
        invitation=invitation,
    )
    # Also without an invitation (the operator's genesis code): the code's key signs, which
    # shows the server that the code was held.
    return sign_statement(keys, st, invitation_seed=invitation_seed(code))


def genesis_statements(
    keys: DeviceKeys, origin: str, policy: Policy, root: PrincipalState
) -> tuple[SignedStatement, SignedStatement, dict[str, Any]]:
    """What the genesis root device signs right after enrolling (9.7): `roots` seq 1 listing
    itself, the policy, and the root principal (its statement and disclosures)."""
    me = keys.device_id
    roots = sign_statement(keys, roots_statement(origin, devices=[me], seq=1, prev=None, signer=me))
    pol = sign_statement(keys, policy_statement(origin, policy, seq=1, prev=None, signer=me))
    principal = principal_change(keys, origin, policy, None, "root", root)
    return roots, pol, principal
