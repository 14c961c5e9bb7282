"""Directory statements on the server: accept a signed statement with a change, serve proofs.

The server never signs a statement (protocol 9.3). A request that changes a record carries
the statement its actor signed and every disclosure of its commitments; `accept` checks that
the statement says exactly what the request does (the record, the public fields, the opened
facts), that it is the record's next (`seq`, `prev`), that the requesting device signed it,
then stores it, sets the record's map leaf and logs `directory.statement` with the signed
statement (commitments only: the disclosures stay in `directory_statement`, never in the
log). Authority is the admin use case's to check, by the rules of section 4 that 9.4 mirrors.

`proofs` builds the `directory` member of lookups (9.9): a checkpoint, its `map.head` and
inclusion proof, and per record the newest statement at that map version, the disclosures the
asker needs, and the map proof.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from liaison.crypto.anchors import anchors_digest, parse_anchors
from liaison.crypto.commitments import Disclosure, open_facts, parse_disclosures
from liaison.crypto.encoding import b64encode, b64url_decode, b64url_encode, format_time, jcs, parse_time
from liaison.crypto.errors import CryptoError
from liaison.crypto.keys import PublicBundle
from liaison.crypto.labels import Label
from liaison.crypto.policy import Policy
from liaison.crypto.statements import (
    SignedStatement,
    Statement,
    check_successor,
    leaf_value,
    principal_facts,
)
from liaison.crypto.vmap import PersistentMap, map_key, range_siblings

from ..problems import Problem
from ..state import AppState
from ..storage.logstore import LogReader
from ..storage.models import Device, DirectoryStatement, EnrolmentCode, MapLeaf, Principal
from ..tlog.entries import view
from ..tlog.log import AuditLog
from ..writer import Tx, WriterResult
from .audit import with_cosignatures
from .auth import Caller
from .refusals import access_denied, refuse

__all__ = [
    "ALL_FACTS",
    "Expected",
    "Wanted",
    "accept",
    "accept_device",
    "accept_invitation",
    "channel_expected",
    "device_expected",
    "invitation_hash",
    "leaf_receipt",
    "nation_range",
    "newest",
    "principal_expected",
    "proofs",
    "record_of",
    "signer_of",
]


def record_of(type_: str, ident: str) -> str:
    """The record name of a principal, device or channel (protocol 9.2)."""
    return f"{type_}:{ident}"


def invalid(detail: str) -> Problem:
    return Problem("statement-invalid", detail)


@dataclass(frozen=True)
class Expected:
    """What the statement of a request must say: its type and record, its public fields, and
    (principals) the value of every fact."""

    type: str
    record: str
    public: Mapping[str, Any]
    facts: Mapping[str, bool] = field(default_factory=dict)


def principal_expected(policy: Policy, row: Principal) -> Expected:
    """What a principal's statement must say of the row as the request leaves it."""
    facts = principal_facts(
        policy,
        kind=row.kind,
        clearance=row.clearance,
        compartments=json.loads(row.compartments),
        roles=json.loads(row.roles),
        active=row.status == "active",
    )
    return Expected(
        "principal", record_of("principal", row.id), {"principal": row.id, "nation": row.nation}, facts
    )


def channel_expected(cid: str, ceiling: Label, members: Iterable[str]) -> Expected:
    return Expected(
        "channel",
        record_of("channel", cid),
        {"channel": cid, "ceiling": ceiling.to_json(), "members": sorted(set(members))},
    )


def device_expected(
    bundle: PublicBundle, nation: str, status: str, invitation: Mapping[str, Any] | None = None
) -> Expected:
    public: dict[str, Any] = {
        "device": bundle.device_id,
        "principal": bundle.principal,
        "nation": nation,
        "status": status,
        "bundle": bundle.to_json(),
    }
    if invitation is not None:
        public["invitation"] = dict(invitation)
    return Expected("device", record_of("device", bundle.device_id), public)


def signer_of(state: AppState, tx: Tx, caller: Caller) -> PublicBundle:
    """The requesting device's bundle (cached: a device id is its bundle's fingerprint)."""
    bundle = state.bundles.get(caller.device_id)
    if bundle is None:
        row = tx.session.get(Device, caller.device_id)
        if row is None:
            raise Problem("unauthorized", "unknown device")
        bundle = PublicBundle.from_stored(row.signed_bundle)
    return bundle


def invitation_hash(key: str) -> str:
    """The enrolment-code row's key for an invitation key (the code itself is never known)."""
    return hashlib.sha256(b"liaison/v1/invitation-row\x00" + key.encode("ascii")).hexdigest()


def accept_invitation(
    tx: Tx,
    state: AppState,
    invitation: Any,
    anchors: Any,
    principal: Principal,
    *,
    signer: PublicBundle,
    latest: datetime,
) -> tuple[SignedStatement, str, datetime, str]:
    """Check an admin's invitation statement and its anchors (9.7, 9.8); returns the signed
    statement, its key (base64url), its expiry and the anchors' digest (base64url). An
    invitation is not a map record: it travels inside the device statement it authorises."""
    signed = parse_signed(invitation)
    st = signed.statement
    try:
        parsed = parse_anchors(anchors)
    except CryptoError as e:
        raise invalid(f"malformed anchors: {e}") from None
    digest = anchors_digest(parsed.to_json())
    if st.type != "invitation" or st.seq != 1 or st.origin != state.log.origin:
        raise invalid("an enrolment code needs an invitation statement (seq 1) for this log")
    if st.signer != signer.device_id:
        raise invalid(f"the invitation names signer {st.signer}, the request is from {signer.device_id}")
    try:
        signed.verify(signer)
    except CryptoError as e:
        raise invalid(f"the invitation's signature does not verify: {e}") from None
    pub = st.public
    if pub.get("principal") != principal.id or pub.get("nation") != principal.nation:
        raise invalid(f"the invitation is for {pub.get('principal')} of {pub.get('nation')}")
    if pub.get("anchors") != b64url_encode(digest):
        raise invalid("the invitation does not name the digest of the anchors sent with it")
    if parsed.log_key != state.log.verifier_key:
        raise invalid("the anchors name another log key than this server's")
    expires = parse_time(str(pub.get("expires")), field="expires")
    if not tx.now < expires <= latest:
        raise invalid(f"the invitation must expire after now and by {format_time(latest)}")
    key = str(pub.get("key"))
    if st.record != record_of("invitation", key):
        raise invalid("the invitation's record must name its key")
    taken = tx.session.execute(
        select(EnrolmentCode.code_hash).where(EnrolmentCode.invitation_key == key)
    ).first()
    if taken is not None:
        raise Problem("conflict", "this invitation key was already used for a code")
    return signed, key, expires, b64url_encode(digest)


def accept_device(
    tx: Tx, state: AppState, statement: Any, code: EnrolmentCode, bundle: PublicBundle, nation: str
) -> SignedStatement:
    """The new device's own statement (9.8): signed by its keys and by the invitation key, and
    embedding the admin's invitation (none for the operator's genesis root code)."""
    invitation = json.loads(code.invitation) if code.invitation else None
    expected = device_expected(bundle, nation, "active", invitation)
    signed = parse_signed(statement)
    key = code.invitation_key
    if key is None:
        raise invalid("this enrolment code has no invitation key")
    try:
        signed.verify_invitation(b64url_decode(key, field="invitation_key"))
    except CryptoError as e:
        raise invalid(f"the statement is not signed by the invitation key: {e}") from None
    return accept(tx, state, statement, None, expected, signer=bundle)


def newest(session: Session, record: str) -> tuple[Statement | None, str | None]:
    """The record's newest statement (parsed) and its stored disclosures (JSON), if any."""
    row = session.execute(
        select(DirectoryStatement.signed, DirectoryStatement.disclosures)
        .where(DirectoryStatement.record == record)
        .order_by(DirectoryStatement.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None, None
    return SignedStatement.from_json(json.loads(row[0])).statement, row[1]


def parse_signed(value: Any) -> SignedStatement:
    if value is None:
        raise invalid(
            "this change needs the statement its actor signed (protocol 9.3): "
            "send 'statement' and 'disclosures'; the liaison client does"
        )
    try:
        return SignedStatement.from_json(value)
    except CryptoError as e:
        raise invalid(f"malformed statement: {e}") from None


def accept(
    tx: Tx,
    state: AppState,
    signed_json: Any,
    disclosures_json: Any,
    expected: Expected,
    *,
    signer: PublicBundle,
) -> SignedStatement:
    """Check and store the statement of one change (see the module docstring); returns it.

    `signer` is the bundle that must have signed it: the requesting device's, or for an
    enrolment the new device's own. Raises `statement-invalid` (400) with the reason."""
    signed = parse_signed(signed_json)
    st = signed.statement
    if st.origin != state.log.origin:
        raise invalid(f"the statement is for log {st.origin!r}, not {state.log.origin!r}")
    if st.type != expected.type or st.record != expected.record:
        raise invalid(f"the statement is for {st.type} {st.record}, the request changes {expected.record}")
    previous, _ = newest(tx.session, st.record)
    try:
        check_successor(previous, st)
    except CryptoError as e:
        raise invalid(f"not the record's next statement: {e}") from None
    if st.signer != signer.device_id:
        raise invalid(f"the statement names signer {st.signer}, the request is from {signer.device_id}")
    try:
        signed.verify(signer)
    except CryptoError as e:
        raise invalid(f"the statement's signature does not verify: {e}") from None
    if jcs(dict(st.public)) != jcs(dict(expected.public)):
        raise invalid(
            f"the statement's public fields {json.dumps(st.public, sort_keys=True)[:300]} "
            f"are not what the request does: {json.dumps(dict(expected.public), sort_keys=True)[:300]}"
        )
    disclosures: dict[str, Disclosure] = {}
    if st.facts or expected.facts:
        try:
            disclosures = parse_disclosures(disclosures_json)
            opened = open_facts(st.facts, disclosures)
        except CryptoError as e:
            raise invalid(f"the disclosures do not open the statement's facts: {e}") from None
        if set(opened) != set(st.facts):
            missing = sorted(set(st.facts) - set(opened))
            raise invalid(f"every fact must be disclosed to the server; missing: {', '.join(missing)}")
        if opened != dict(expected.facts):
            wrong = sorted(
                k for k in set(opened) | set(expected.facts) if opened.get(k) != expected.facts.get(k)
            )
            raise invalid(f"the statement's facts are not the record the request makes: {', '.join(wrong)}")
    store(tx, signed, disclosures)
    return signed


def store(tx: Tx, signed: SignedStatement, disclosures: Mapping[str, Disclosure]) -> int:
    """Append the statement, set its map leaf and log it; returns the entry's index."""
    st = signed.statement
    digest = st.digest()
    wire = signed.to_json()
    index = tx.audit(
        "directory.statement",
        st.signer,
        st.record[:64],
        record=st.record,
        seq=st.seq,
        digest=b64url_encode(digest),
        statement=wire,
    )
    tx.session.add(
        DirectoryStatement(
            record=st.record,
            seq=st.seq,
            type=st.type,
            nation=st.nation,
            digest=b64url_encode(digest),
            signed=jcs(wire).decode(),
            disclosures=jcs({k: d.to_json() for k, d in disclosures.items()}).decode(),
            log_index=index,
            map_version=tx.map_version,
        )
    )
    tx.session.flush()
    tx.set_leaf(map_key(st.nation, st.record), leaf_value(digest, tx.map_version))
    return index


# --- proofs for lookups (9.9) ----------------------------------------------------------------


@dataclass
class Wanted:
    """The records a lookup answer proves, and which facts of each it opens."""

    records: dict[str, set[str]] = field(default_factory=dict)

    def add(self, record: str, facts: Iterable[str] = ()) -> None:
        self.records.setdefault(record, set()).update(facts)


async def _map_at(state: AppState, s: AsyncSession, version: int) -> PersistentMap:
    found = state.writer.map.at(version)
    if found is not None:
        return found
    rows = await s.execute(
        select(MapLeaf.key, MapLeaf.value).where(MapLeaf.version <= version).order_by(MapLeaf.version)
    )
    return PersistentMap.from_items({bytes(k): bytes(v) for k, v in rows})


async def _statement_at(s: AsyncSession, record: str, version: int) -> DirectoryStatement | None:
    return (
        await s.execute(
            select(DirectoryStatement)
            .where(DirectoryStatement.record == record, DirectoryStatement.map_version <= version)
            .order_by(DirectoryStatement.seq.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def proofs(
    state: AppState,
    s: AsyncSession,
    wanted: Wanted,
    *,
    at: int | None = None,
    signers: bool = True,
) -> dict[str, Any]:
    """The `directory` member of a lookup: proofs of `wanted`'s records at the checkpoint of
    size `at` (the newest if None or not reached), with the records of every signer they
    rely on (their devices, their principals opening `active` and `role:admin`, and the roots
    chain) when `signers`."""
    at_cp = await _at_checkpoint(state, s, at)
    version, tree = at_cp.version, at_cp.tree
    records: dict[str, Any] = {}
    todo = dict(wanted.records)
    while todo:
        record, facts = todo.popitem()
        if record.startswith(_PRINCIPAL_OF):
            # A signer's principal: named by the signer's device statement.
            dev = await _statement_at(s, record_of("device", record[len(_PRINCIPAL_OF) :]), version)
            if dev is not None:
                owner = record_of("principal", json.loads(dev.signed)["statement"]["public"]["principal"])
                todo.setdefault(owner, set()).update(facts)
            continue
        if record in records:
            item = records[record]
            extra = set(facts) - item["_facts"]
            item["_facts"].update(extra)
            if extra and signers and item["statement"] is not None:
                for rec, need in _signer_records(item["statement"], extra):
                    todo.setdefault(rec, set()).update(need)
            continue
        row = await _statement_at(s, record, version)
        if row is None:
            records[record] = {"_facts": set(facts), "statement": None, "nation": None}
            continue
        signed = json.loads(row.signed)
        records[record] = {
            "_facts": set(facts),
            "_row": row,
            "statement": signed,
            "nation": row.nation,
        }
        if ALL_FACTS in facts:  # every fact opened: the signer must show it held the true ones
            stored = json.loads(row.disclosures)
            facts = {k for k, d in stored.items() if isinstance(d, dict) and d.get("value") is True}
        if signers:
            for rec, need in _signer_records(signed, facts):
                todo.setdefault(rec, set()).update(need)
    roots: list[Any] = []
    if signers:
        rows = await s.execute(
            select(DirectoryStatement.signed)
            .where(DirectoryStatement.record == "roots", DirectoryStatement.map_version <= version)
            .order_by(DirectoryStatement.seq)
        )
        roots = [json.loads(r) for (r,) in rows]
    out: dict[str, Any] = {}
    for record, item in records.items():
        nation = item["nation"] or _nation_guess(record)
        proof = tree.prove(map_key(nation, record)).to_json() if nation else None
        entry: dict[str, Any] = {"statement": item["statement"], "proof": proof}
        row = item.get("_row")
        if row is not None:
            entry["version"] = row.map_version  # the leaf binds it: leaf_value(digest, version)
        if row is not None and item["_facts"]:
            stored = json.loads(row.disclosures)
            names = stored if ALL_FACTS in item["_facts"] else item["_facts"]
            entry["disclosures"] = {k: stored[k] for k in sorted(names) if k in stored}
        out[record] = entry
    return {**at_cp.to_json(), "records": out, "roots": roots}


@dataclass(frozen=True)
class _AtCheckpoint:
    """A checkpoint a lookup answers at, its `map.head` (proven) and that version's map."""

    note: str
    size: int
    head: bytes
    head_proof: list[bytes]
    version: int
    tree: PersistentMap

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.note,
            "tree_size": self.size,
            "map_head": {
                "log_index": self.size - 1,
                "entry": b64encode(self.head),
                "inclusion_proof": [b64encode(h) for h in self.head_proof],
            },
        }


async def _at_checkpoint(state: AppState, s: AsyncSession, at: int | None) -> _AtCheckpoint:
    """The checkpoint of size `at` (the newest if None or not reached) and its map."""
    reader = LogReader(s)
    cp = await reader.latest_checkpoint()
    if cp is None:
        raise Problem("unavailable", "the log has no checkpoint yet")
    if at is not None and 0 < at < cp.size:
        older = await reader.checkpoint_at(at)
        if older is None:
            raise Problem("not-found", f"no checkpoint of size {at}")
        cp = older
    head = await reader.entry(cp.size - 1)
    if head is None:
        raise LookupError(f"log entry {cp.size - 1} is missing")
    parsed = view(head, None)  # a map head shows its fields in the clear (protocol 10.2)
    if parsed.get("type") != "map.head":
        raise Problem("unavailable", "this checkpoint predates the directory map; ask for a newer one")
    version = int(parsed["version"])
    return _AtCheckpoint(
        await with_cosignatures(reader, cp),
        cp.size,
        head,
        await AuditLog.inclusion_proof(reader, cp.size - 1, cp.size),
        version,
        await _map_at(state, s, version),
    )


async def nation_range(state: AppState, caller: Caller, nation: str, at: int | None) -> dict[str, Any]:
    """`GET /v1/directory/range`: every record of a nation's key range at a checkpoint, with
    the siblings that prove the range complete (9.5 `verify_range`), for that nation's admins
    (and root) to monitor: a device they did not enrol, a principal they did not make, a leaf
    with no statement behind it."""
    me = caller.principal
    if not (me.is_root or (me.has_role("admin") and me.nation == nation)):
        await refuse(
            state,
            Problem("other-nation", f"only root and {nation}'s admins monitor {nation}'s range"),
            access_denied(caller.device_id, f"directory range {nation}", "other-nation", None),
        )
    async with state.db.sessions() as s:
        at_cp = await _at_checkpoint(state, s, at)
        rows = await s.execute(
            select(DirectoryStatement.record, DirectoryStatement.signed, DirectoryStatement.map_version)
            .where(DirectoryStatement.nation == nation, DirectoryStatement.map_version <= at_cp.version)
            .order_by(DirectoryStatement.record, DirectoryStatement.seq)
        )
        newest_of: dict[str, Any] = {}
        for record, signed, version in rows:
            newest_of[record] = {"statement": json.loads(signed), "version": version}
        # The devices that signed statements of the range from outside it (a root device, an
        # admin of another range's invitation): proven at the same head, to check signatures.
        inside = set(newest_of)
        outside = Wanted()
        for x in newest_of.values():
            st = x["statement"]["statement"]
            for dev in (
                st["signer"],
                (st["public"].get("invitation") or {}).get("statement", {}).get("signer"),
            ):
                if dev and f"device:{dev}" not in inside:
                    outside.add(record_of("device", dev))
        signers = (
            (await proofs(state, s, outside, at=at_cp.size, signers=False))["records"]
            if outside.records
            else {}
        )
    siblings: list[str] | None = None
    if len(newest_of) >= 2:
        key = map_key(nation, next(iter(newest_of)))
        siblings = [b64url_encode(h) for h in range_siblings(at_cp.tree.prove(key))]
    return {
        **at_cp.to_json(),
        "nation": nation,
        "records": newest_of,
        "siblings": siblings,
        "signers": signers,
    }


def _nation_guess(record: str) -> str | None:
    """The map range of a record with no statement: `*` for the coalition-wide ones; for a
    principal or device the range is unknown (no proof of absence is given)."""
    if record in ("roots", "policy") or record.startswith("channel:"):
        return "*"
    return None


_PRINCIPAL_OF = "_principal_of:"
#: Asked as a fact name: every fact of the record (its own principal, an admin's nation).
ALL_FACTS = "*"

#: What a signer's principal must open for each kind of statement it signed (9.4).
_SIGNER_FACTS = ("active", "role:admin")


def _signer_records(signed: Mapping[str, Any], relied: Collection[str]) -> list[tuple[str, set[str]]]:
    """The records a relying party needs to check the authority of `signed`: its signer's
    device and principal (opening `active`, `role:admin` and the predicates relied on), and
    for a device's first statement the same for its invitation's signer."""
    out: list[tuple[str, set[str]]] = []
    st = signed["statement"]
    need = set(_SIGNER_FACTS)
    if st["type"] == "principal":
        need |= {f for f in relied if f.startswith(("level>=", "holds:", "role:"))}
    elif st["type"] == "channel":
        need |= _ceiling_facts(st["public"]["ceiling"])
    own = st["type"] == "device" and st["signer"] == st["public"].get("device")
    if not own:  # a device's own first statement needs no authority of its principal's
        out.append((record_of("device", st["signer"]), set()))
        out.append((_PRINCIPAL_OF + st["signer"], need))
    invitation = st["public"].get("invitation") if st["type"] == "device" else None
    if isinstance(invitation, Mapping):
        inner = invitation["statement"]
        out.append((record_of("device", inner["signer"]), set()))
        out.append((_PRINCIPAL_OF + inner["signer"], set(_SIGNER_FACTS)))
    return out


def _ceiling_facts(ceiling: Mapping[str, Any]) -> set[str]:
    return {f"level>={ceiling['classification']}"} | {f"holds:{c}" for c in ceiling.get("compartments", ())}


async def leaf_receipt(state: AppState, result: WriterResult[Any], record: str) -> dict[str, Any] | None:
    """The proof of `record`'s new leaf at the checkpoint of the write's receipt (protocol
    9.3): whoever made the change can check at once that the map took it."""
    if not result.receipts:
        return None
    size = max(r.size for r in result.receipts.values())
    wanted = Wanted()
    wanted.add(record)
    async with state.db.sessions() as s:
        return await proofs(state, s, wanted, at=size, signers=False)


# --- statements with no other request: the roots, the policy, the root principal -------------


def roots_now(session: Session) -> frozenset[str]:
    """The devices of the current `roots` statement (empty before genesis completes)."""
    st, _ = newest(session, "roots")
    return frozenset(st.public["devices"]) if st is not None else frozenset()


async def post_statement(state: AppState, caller: Caller, statement: Any, disclosures: Any) -> dict[str, Any]:
    """`POST /v1/directory/statements`: a statement that changes no row, only the directory:
    the `roots` (the genesis root device makes `seq` 1), the `policy` the server loaded, and
    the root principal's own statement. Signed by a root device (9.4)."""
    signed = parse_signed(statement)
    st = signed.statement

    def job(tx: Tx) -> dict[str, Any]:
        signer = signer_of(state, tx, caller)
        roots = roots_now(tx.session)
        if st.type == "roots":
            devices = st.public.get("devices")
            if not isinstance(devices, list) or not devices:
                raise invalid("a roots statement lists at least one device")
            live = {
                d
                for (d,) in tx.session.execute(
                    select(Device.id).where(
                        Device.id.in_([str(x) for x in devices]),
                        Device.principal_id == "root",
                        Device.revoked_at.is_(None),
                    )
                )
            }
            if set(devices) != live:
                raise invalid("every device of the roots must be an enrolled, unrevoked root device")
            if roots and caller.device_id not in roots:
                raise invalid("only a device of the current roots may change them")
            if not roots and caller.device_id not in devices:
                raise invalid("the first roots statement is made by a device it lists")
            expected = Expected("roots", "roots", {"devices": sorted(devices)})
        elif caller.device_id not in roots:
            raise Problem("forbidden", "only a root device signs the policy and the root principal")
        elif st.type == "policy":
            p = state.policy
            expected = Expected("policy", "policy", {"id": p.id, "version": p.version, "sha256": p.sha256})
        elif st.type == "principal" and st.record == "principal:root":
            row = tx.session.get(Principal, "root")
            assert row is not None
            expected = principal_expected(state.policy, row)
        else:
            raise invalid(f"a {st.type} statement comes with the request that makes its change")
        accept(tx, state, statement, disclosures, expected, signer=signer)
        return {"record": st.record, "seq": st.seq}

    result = await state.writer.run(job)
    return {
        **result.value,
        "receipt": next(iter(result.receipts.values())).to_json(),
        "directory": await leaf_receipt(state, result, st.record),
    }


async def invitation_for(state: AppState, key: str) -> dict[str, Any]:
    """`GET /v1/enrol/invitations/{key}`: what a device enrolling with this invitation key
    embeds and pins (9.7, 9.8): the admin's signed invitation and the anchors object. Only a
    holder of the code knows the key; an unknown or spent key is answered `enrolment-code`."""
    async with state.db.sessions() as s:
        row = (
            await s.execute(select(EnrolmentCode).where(EnrolmentCode.invitation_key == key))
        ).scalar_one_or_none()
        if row is None or row.used_at is not None or row.cancelled_at is not None:
            raise Problem("enrolment-code", "the enrolment code is invalid, used, cancelled or expired")
        owner = await s.get(Principal, row.principal_id)
        return {
            "principal": row.principal_id,
            "nation": owner.nation if owner is not None else None,
            "invitation": json.loads(row.invitation) if row.invitation else None,
            "anchors": json.loads(row.anchors) if row.anchors else None,
            "log_verifier_key": state.log.verifier_key,
        }


# --- disclosures for an auditor's authority replay (9.10) -----------------------------------

#: Most statements one `GET /v1/audit/disclosures` answers.
MAX_DISCLOSED = 1000


async def disclosures_for_audit(state: AppState, caller: Caller, start: int, end: int) -> dict[str, Any]:
    """`GET /v1/audit/disclosures`: the disclosures of the directory statements logged in
    [start, end) that the caller is entitled to, so that its `audit verify` checks each
    signer's authority (9.10): root's auditors every one; another auditor (or admin) those of
    its own nation's records. Records without committed facts need none; the others are
    listed as `sealed`. At most 1000 statements; `next` is where to continue. The request is
    logged (`audit.disclosed`)."""
    me = caller.principal
    if not (me.has_role("auditor") or me.has_role("admin")):
        await refuse(
            state,
            Problem("not-auditor", "only an auditor or admin replays the directory's authority"),
            access_denied(caller.device_id, "audit disclosures", "not-auditor", None),
        )
    if end < start:
        raise Problem("validation", "end must not be below start")
    async with state.db.sessions() as s:
        rows = (
            await s.execute(
                select(
                    DirectoryStatement.log_index, DirectoryStatement.nation, DirectoryStatement.disclosures
                )
                .where(DirectoryStatement.log_index >= start, DirectoryStatement.log_index < end)
                .order_by(DirectoryStatement.log_index)
                .limit(MAX_DISCLOSED + 1)
            )
        ).all()
    following = end
    if len(rows) > MAX_DISCLOSED:
        following = int(rows[MAX_DISCLOSED][0])
        rows = rows[:MAX_DISCLOSED]
    opened: dict[str, Any] = {}
    sealed: list[int] = []
    for index, nation, raw in rows:
        found = json.loads(raw)
        if not found:
            continue
        if me.is_root or nation == me.nation:
            opened[str(index)] = found
        else:
            sealed.append(int(index))

    def job(tx: Tx) -> None:
        tx.audit(
            "audit.disclosed",
            caller.device_id,
            caller.device_id,
            start=start,
            end=following,
            opened=len(opened),
            sealed=len(sealed),
        )

    await state.writer.run(job)
    return {"start": start, "next": following, "disclosures": opened, "sealed": sealed}
