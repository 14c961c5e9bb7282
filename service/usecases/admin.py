"""Admin and enrolment use cases: principals, enrolment codes, enrolment, revocation, channels.

Admins are scoped (SPEC 2): a nation admin manages its own nation only and never grants a
clearance, compartment or role above its own; only the root admin creates admins; channels are
managed only by admins who dominate their ceiling. Every rule is a pure function of
`liaison.crypto.policy` (`check_admin`, `check_grant`, `check_channel_admin`,
`check_members_change`); this module gathers the facts and logs. Every act is logged in the
same transaction as the change, and every refusal as `access.denied`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import delete, select

from liaison.crypto.encoding import b64url_encode, format_time, jcs
from liaison.crypto.errors import (
    BadSignature,
    CryptoError,
    MalformedError,
    MalformedKey,
    PolicyViolation,
    UnsupportedSuite,
)
from liaison.crypto.invitation import new_code
from liaison.crypto.keys import (
    KEM_CHALLENGE_LEN,
    PublicBundle,
    kem_challenge_digest,
    seal_kem_challenge,
    verify_kem_proof,
)
from liaison.crypto.labels import Label
from liaison.crypto.policy import (
    MemberChange,
    check_admin,
    check_channel_admin,
    check_grant,
    check_members_change,
)
from liaison.crypto.statements import invitation_public

from ..problems import Problem
from ..state import AppState
from ..storage import events
from ..storage.models import Channel, ChannelMember, Device, EnrolmentCode, Principal
from ..writer import Refusal, Tx
from .auth import Caller
from .directory import device_records, member_ids
from .readmodels import PrincipalView, label_of
from .refusals import access_denied, refuse
from .statements import (
    accept,
    accept_device,
    accept_invitation,
    channel_expected,
    device_expected,
    invitation_hash,
    leaf_receipt,
    newest,
    principal_expected,
    record_of,
    signer_of,
)

__all__ = [
    "CODE_STATUSES",
    "MAX_CHANNEL_MEMBERS",
    "SYSTEM",
    "CodeStatus",
    "cancel_enrolment_code",
    "change_members",
    "code_hash",
    "code_id",
    "code_record",
    "code_status",
    "create_channel",
    "create_enrolment_code",
    "create_principal",
    "enrol",
    "enrol_challenge",
    "issue_root_code",
    "list_devices",
    "may_manage_principal",
    "revoke_device",
    "set_members",
    "update_principal",
]


def code_hash(code: str) -> str:
    """Codes are stored only as SHA-256; 100 random bits make offline guessing pointless."""
    normalised = code.replace("-", "").strip().upper()
    return hashlib.sha256(b"liaison/v1/enrolment-code\x00" + normalised.encode()).hexdigest()


def code_id(hashed: str) -> str:
    """The id under which a code is listed and cancelled: the first 16 hex digits of its
    stored hash. The code itself is never stored or shown, and 64 bits of a hash of a
    100-bit random code tell nobody anything usable about it."""
    return hashed[:16]


#: A channel's members are listed (with those added and removed) in one `channel.members`
#: audit entry, and an entry holds at most 65,535 bytes (the C2SP entry-bundle limit): 300
#: members of the longest ids (64 characters), replacing 300 others, take about 61,000.
MAX_CHANNEL_MEMBERS = 300
#: Who issued the operator's root codes (`liaison-server init` and `root-code`).
SYSTEM = "system"
#: What an enrolment code can be, as listed: in this order of precedence.
CodeStatus = Literal["used", "cancelled", "expired", "void", "pending"]
CODE_STATUSES: tuple[CodeStatus, ...] = get_args(CodeStatus)


def _denied(caller: Caller, what: str, e: PolicyViolation) -> Refusal:
    return Refusal(Problem(e.reason, e.detail), access_denied(caller.device_id, what, e.reason, None))


def _require_admin(caller: Caller, what: str) -> None:
    try:
        check_admin(caller.principal.subject, caller.principal.roles)
    except PolicyViolation as e:
        raise _denied(caller, what, e) from None


def _check_grant(
    state: AppState,
    caller: Caller,
    what: str,
    nation: str,
    clearance: str,
    compartments: list[str],
    roles: list[str],
) -> None:
    me = caller.principal
    try:
        check_grant(state.policy, me.subject, me.roles, me.is_root, nation, clearance, compartments, roles)
    except PolicyViolation as e:
        raise _denied(caller, what, e) from None


async def create_principal(state: AppState, caller: Caller, req: dict[str, Any]) -> dict[str, Any]:
    what = f"create principal {req['id']}"

    def job(tx: Tx) -> dict[str, Any]:
        _require_admin(caller, what)
        _check_grant(state, caller, what, req["nation"], req["clearance"], req["compartments"], req["roles"])
        if tx.session.get(Principal, req["id"]) is not None:
            raise Problem("conflict", f"principal {req['id']} already exists")
        row = Principal(
            id=req["id"],
            display_name=req["display_name"],
            nation=req["nation"],
            kind=req["kind"],
            roles=json.dumps(sorted(set(req["roles"]))),
            clearance=req["clearance"],
            compartments=json.dumps(sorted(set(req["compartments"]))),
            status="active",
            created_at=tx.now,
            updated_at=tx.now,
        )
        tx.session.add(row)
        view = PrincipalView.of(row)
        tx.audit("principal.created", caller.device_id, row.id, principal=view.to_json())
        accept(
            tx,
            state,
            req.get("statement"),
            req.get("disclosures"),
            principal_expected(state.policy, row),
            signer=signer_of(state, tx, caller),
        )
        return view.to_json()

    result = await state.writer.run(job)
    return {**result.value, "directory": await leaf_receipt(state, result, record_of("principal", req["id"]))}


async def update_principal(
    state: AppState, caller: Caller, pid: str, changes: dict[str, Any]
) -> dict[str, Any]:
    what = f"update principal {pid}"
    statement, disclosures = changes.pop("statement", None), changes.pop("disclosures", None)
    if not changes:
        raise Problem("validation", "nothing to change")

    def job(tx: Tx) -> dict[str, Any]:
        _require_admin(caller, what)
        row = tx.session.get(Principal, pid)
        if row is None:
            raise Problem("not-found", f"no principal {pid}")
        if pid == "root" or (pid == caller.principal.id and not caller.principal.is_root):
            raise _denied(
                caller,
                what,
                PolicyViolation("forbidden", "admins cannot change themselves or the root principal"),
            )
        before = PrincipalView.of(row)
        roles = changes.get("roles", list(before.roles))
        comps = changes.get("compartments", sorted(before.compartments))
        clearance = changes.get("clearance", before.clearance)
        # The admin must be entitled to the principal both as it is and as it will be.
        _check_grant(
            state,
            caller,
            what,
            before.nation,
            before.clearance,
            sorted(before.compartments),
            list(before.roles),
        )
        _check_grant(state, caller, what, before.nation, clearance, comps, roles)
        row.clearance, row.compartments = clearance, json.dumps(sorted(set(comps)))
        row.roles = json.dumps(sorted(set(roles)))
        row.status = changes.get("status", row.status)
        row.display_name = changes.get("display_name", row.display_name)
        row.updated_at = tx.now
        after = PrincipalView.of(row)
        tx.audit(
            "principal.updated", caller.device_id, pid, principal=after.to_json(), changed=sorted(changes)
        )
        if {"clearance", "compartments", "roles", "status"} & set(changes):
            accept(
                tx,
                state,
                statement,
                disclosures,
                principal_expected(state.policy, row),
                signer=signer_of(state, tx, caller),
            )
        return after.to_json()

    result = await state.writer.run(job)
    return {**result.value, "directory": await leaf_receipt(state, result, record_of("principal", pid))}


async def create_enrolment_code(
    state: AppState, caller: Caller, pid: str, invitation: Any = None, anchors: Any = None
) -> dict[str, Any]:
    """Record an invitation (protocol 9.8): the admin's client made the code, derived its
    invitation key and signed the `invitation` statement; the server never sees the code."""
    what = f"enrolment code for {pid}"

    def job(tx: Tx) -> dict[str, Any]:
        row = tx.session.get(Principal, pid)
        if row is None:
            raise Problem("not-found", f"no principal {pid}")
        _check_code_scope(state, caller, what, row)
        latest = tx.now + timedelta(seconds=state.settings.enrolment_code_ttl_seconds)
        signed, key, expires, digest = accept_invitation(
            tx, state, invitation, anchors, row, signer=signer_of(state, tx, caller), latest=latest
        )
        hashed = invitation_hash(key)
        tx.session.add(
            EnrolmentCode(
                code_hash=hashed,
                principal_id=pid,
                created_at=tx.now,
                expires_at=expires,
                issued_by=caller.device_id,  # the code dies with its issuer (see _usable_code)
                invitation_key=key,
                invitation=jcs(signed.to_json()).decode(),
                anchors_digest=digest,
                anchors=jcs(anchors).decode(),
            )
        )
        cid = code_id(hashed)
        tx.audit(
            "enrolment.code_issued",
            caller.device_id,
            pid,
            principal=pid,
            expires=format_time(expires),
            code_id=cid,
        )
        return {"principal": pid, "id": cid, "expires_at": format_time(expires), "invitation_key": key}

    return (await state.writer.run(job)).value


#: How long a device has to answer its KEM challenge.
_CHALLENGE_TTL = timedelta(minutes=5)
_GENESIS_OVER = (
    "a root device has been enrolled (a revoked one counts): only a root device can issue a root "
    "code now (liaison admin enrol-code root); see docs/audit.md, 'Losing a root device'"
)


def code_status(row: EnrolmentCode, now: datetime, *, issuer_live: bool, root_ever: bool) -> str:
    """One of CODE_STATUSES, by the rules `_usable_code` enforces: `void` is a code whose
    issuing device is revoked (`issuer_live` false), or an operator's root code once a root
    device was ever enrolled (`root_ever`)."""
    if row.used_at is not None:
        return "used"
    if row.cancelled_at is not None:
        return "cancelled"
    if row.expires_at < now:
        return "expired"
    if row.issued_by not in (None, SYSTEM):
        return "pending" if issuer_live else "void"
    return "void" if row.principal_id == "root" and root_ever else "pending"


def code_record(row: EnrolmentCode, status: str) -> dict[str, Any]:
    """A code as listed: never the code, only its id, whom it is for, its times and status."""
    return {
        "id": code_id(row.code_hash),
        "principal": row.principal_id,
        "status": status,
        "created_at": format_time(row.created_at),
        "expires_at": format_time(row.expires_at),
        "issued_by": row.issued_by or SYSTEM,
        "used_at": format_time(row.used_at) if row.used_at else None,
        "cancelled_at": format_time(row.cancelled_at) if row.cancelled_at else None,
    }


def may_manage_principal(state: AppState, caller: Caller, row: Principal) -> bool:
    """Whether the caller may issue (so list and cancel) codes for this principal."""
    try:
        _check_code_scope(state, caller, "", row)
    except Refusal:
        return False
    return True


def _check_code_scope(state: AppState, caller: Caller, what: str, row: Principal) -> None:
    """The rule of `create_enrolment_code`: an admin for itself, else `check_grant`."""
    if caller.principal.id == row.id and caller.principal.has_role("admin"):
        return
    _require_admin(caller, what)
    view = PrincipalView.of(row)
    _check_grant(
        state, caller, what, view.nation, view.clearance, sorted(view.compartments), list(view.roles)
    )


async def cancel_enrolment_code(state: AppState, caller: Caller, cid: str) -> dict[str, Any]:
    """Cancel an unused code (`DELETE /v1/admin/enrolment-codes/{id}`): from then on it
    enrols nothing. Who may issue a code for its principal may cancel it; cancelling twice
    answers the same; a used code cannot be cancelled (`conflict`)."""
    what = f"cancel enrolment code {cid}"

    def job(tx: Tx) -> dict[str, Any]:
        _require_admin(caller, what)  # before anything about which codes exist
        rows = (
            tx.session.execute(select(EnrolmentCode).where(EnrolmentCode.code_hash.like(cid + "%")).limit(2))
            .scalars()
            .all()
        )
        if len(rows) != 1 or code_id(rows[0].code_hash) != cid:
            raise Problem("not-found", f"no enrolment code {cid}")
        row = rows[0]
        owner = tx.session.get(Principal, row.principal_id)
        assert owner is not None
        _check_code_scope(state, caller, what, owner)
        if row.used_at is not None:
            raise Problem("conflict", f"enrolment code {cid} was already used")
        if row.cancelled_at is None:
            row.cancelled_at = tx.now
            row.challenge_hash = row.challenge_device = row.challenge_expires_at = None
            tx.audit(
                "enrolment.code_cancelled",
                caller.device_id,
                row.principal_id,
                principal=row.principal_id,
                code_id=cid,
            )
        return code_record(row, "cancelled")

    # Only the code's row changes: nothing the writer's cache of recipients holds.
    return (await state.writer.run(job, shares_cache=True)).value


def _root_device_ever(tx: Tx) -> bool:
    """Whether any root device was ever enrolled. Device rows are never deleted (revocation
    only marks them), so this is "genesis is over"."""
    return (
        tx.session.execute(select(Device.id).where(Device.principal_id == "root").limit(1)).first()
        is not None
    )


async def issue_root_code(state: AppState) -> str:
    """Genesis only (`init`, `root-code`): create the root principal (every nation in scope) if
    it is missing and issue a root enrolment code, refused as `genesis-over` once any root
    device was ever enrolled. After genesis a root code needs a statement signed by a root
    device: `create_enrolment_code` called by one."""
    code = new_code()
    policy = state.policy

    def job(tx: Tx) -> None:
        if _root_device_ever(tx):
            raise Problem("genesis-over", _GENESIS_OVER)
        if tx.session.get(Principal, "root") is None:
            row = Principal(
                id="root",
                display_name="Root administrator",
                nation=policy.nations[0],
                kind="person",
                roles=json.dumps(["admin", "auditor"]),
                clearance=policy.levels[-1].name,
                compartments=json.dumps(sorted(policy.compartments)),
                status="active",
                created_at=tx.now,
                updated_at=tx.now,
            )
            tx.session.add(row)
            tx.session.flush()
            tx.audit("principal.created", SYSTEM, "root", principal=PrincipalView.of(row).to_json())
        expires = tx.now + timedelta(seconds=state.settings.enrolment_code_ttl_seconds)
        tx.session.add(
            EnrolmentCode(
                code_hash=code_hash(code),
                principal_id="root",
                created_at=tx.now,
                expires_at=expires,
                issued_by=SYSTEM,
                # The operator made this code (genesis): the server may know its key.
                invitation_key=b64url_encode(invitation_public(code)),
            )
        )
        tx.audit(
            "enrolment.code_issued",
            SYSTEM,
            "root",
            principal="root",
            expires=format_time(expires),
            code_id=code_id(code_hash(code)),
        )

    await state.writer.run(job)
    return code


def _parse_bundle(signed_bundle: Any) -> PublicBundle:
    """The self-signed bundle, its signatures verified (possession of the signing keys)."""
    try:
        return PublicBundle.from_signed(signed_bundle)
    except UnsupportedSuite as e:
        raise Problem("unsupported-suite", str(e)) from None
    except (MalformedKey, CryptoError) as e:
        raise Problem("bad-bundle", str(e)) from None


def _usable_code(tx: Tx, key: str, bundle: PublicBundle) -> EnrolmentCode:
    """The enrolment code row of invitation key `key`, if it may enrol `bundle` now; else the
    refusal.

    A code is single use and expires; it names the bundle's principal; the device is new. A
    code issued by a device is void once that device is revoked (revoking a stolen admin
    device voids the codes it handed out). An operator's root code (issued by "system", or
    before issuers were recorded) is void once any root device was ever enrolled: genesis.
    """
    row = tx.session.execute(
        select(EnrolmentCode).where(EnrolmentCode.invitation_key == key)
    ).scalar_one_or_none()
    if (
        row is None
        or row.invitation_key is None
        or not hmac.compare_digest(row.invitation_key, key)
        or row.used_at is not None
        or row.cancelled_at is not None
        or row.expires_at < tx.now
    ):
        raise Problem("enrolment-code", "the enrolment code is invalid, used, cancelled or expired")
    if row.principal_id != bundle.principal:
        raise Problem("bad-bundle", "the bundle names another principal than the code")
    if row.issued_by not in (None, SYSTEM):
        issuer = tx.session.get(Device, row.issued_by)
        if issuer is None or issuer.revoked_at is not None:
            raise Problem("enrolment-code", "the device that issued this enrolment code has been revoked")
    elif row.principal_id == "root" and _root_device_ever(tx):
        raise Problem("genesis-over", "this root code is the operator's, and " + _GENESIS_OVER)
    if tx.session.get(Device, bundle.device_id) is not None:
        raise Problem("conflict", "this device is already enrolled")
    return row


async def enrol_challenge(state: AppState, key: str, signed_bundle: Any) -> dict[str, Any]:
    """Step 1 of enrolment: seal a fresh challenge to the bundle's KEM key (docs/protocol.md,
    section 3). The code is checked, not spent; a newer challenge replaces an older one."""
    bundle = _parse_bundle(signed_bundle)
    challenge = secrets.token_bytes(KEM_CHALLENGE_LEN)
    try:
        sealed = seal_kem_challenge(bundle, challenge)
    except CryptoError as e:
        raise Problem("bad-bundle", str(e)) from None

    def job(tx: Tx) -> str:
        row = _usable_code(tx, key, bundle)
        expires = tx.now + _CHALLENGE_TTL
        row.challenge_hash = kem_challenge_digest(challenge)
        row.challenge_device = bundle.device_id
        row.challenge_expires_at = expires
        return format_time(expires)

    # Only the code's row changes: nothing the writer's cache of recipients holds.
    expires = (await state.writer.run(job, shares_cache=True)).value
    return {"device": bundle.device_id, "challenge": b64url_encode(sealed), "expires_at": expires}


async def enrol(
    state: AppState, key: str, signed_bundle: Any, proof: Any = None, statement: Any = None
) -> dict[str, Any]:
    """Step 2: enrol a device with a one-time code. The bundle's self-signatures prove
    possession of its signing keys, `proof` (the answered challenge of step 1) that of its
    KEM key; without both nothing is enrolled."""
    bundle = _parse_bundle(signed_bundle)
    answer: bytes | None = None
    if proof is not None:
        try:
            answer = verify_kem_proof(bundle, proof)
        except (MalformedError, BadSignature) as e:
            raise Problem("kem-proof", f"the proof of KEM key possession is invalid: {e}") from None
    digest = hashlib.sha256(jcs(signed_bundle["bundle"])).hexdigest()

    def job(tx: Tx) -> dict[str, Any]:
        row = _usable_code(tx, key, bundle)
        if answer is None:
            raise Problem(
                "kem-proof",
                "no proof of possession of the KEM key: "
                "POST /v1/enrol/challenge, then send its answer as proof",
            )
        if (
            row.challenge_hash is None
            or row.challenge_device != bundle.device_id
            or row.challenge_expires_at is None
            or row.challenge_expires_at < tx.now
            or not hmac.compare_digest(row.challenge_hash, kem_challenge_digest(answer))
        ):
            raise Problem(
                "kem-proof",
                "the proof does not answer this device's live challenge (wrong, expired or superseded)",
            )
        row.used_at = tx.now
        row.challenge_hash = row.challenge_device = row.challenge_expires_at = None
        index = tx.audit(
            "device.enrolled",
            SYSTEM,
            bundle.device_id,
            device=bundle.device_id,
            principal=bundle.principal,
            bundle_digest=digest,
            suite=bundle.kem_suite,
            issued_by=row.issued_by or "unknown",
        )
        tx.session.add(
            Device(
                id=bundle.device_id,
                principal_id=bundle.principal,
                signed_bundle=jcs(signed_bundle).decode(),
                suite=bundle.kem_suite,
                enrolled_at=tx.now,
                enrol_index=index,
            )
        )
        tx.session.flush()
        # The other processes load its bundle when this commits (PostgreSQL; on SQLite they
        # read it at once at its first request to them).
        tx.notify(events.DEVICE_CHANNEL, bundle.device_id)
        owner = tx.session.get(Principal, bundle.principal)
        assert owner is not None
        accept_device(tx, state, statement, row, bundle, owner.nation)
        return {"device": bundle.device_id, "principal": bundle.principal, "log_index": index}

    result = await state.writer.run(job)
    value = result.value
    # Its first signed request needs the bundle: this process has it now (others read it then).
    state.bundles[bundle.device_id] = bundle
    return {
        **value,
        "receipt": result.receipt(value["log_index"]).to_json(),
        "log_verifier_key": state.log.verifier_key,
        "directory": await leaf_receipt(state, result, record_of("device", bundle.device_id)),
    }


async def revoke_device(
    state: AppState, caller: Caller, device_id: str, statement: Any = None
) -> dict[str, Any]:
    what = f"revoke device {device_id}"

    def job(tx: Tx) -> dict[str, Any]:
        dev = tx.session.get(Device, device_id)
        if dev is None:
            raise Problem("not-found", f"no device {device_id}")
        owner = tx.session.get(Principal, dev.principal_id)
        assert owner is not None
        if dev.principal_id != caller.principal.id:  # anyone may revoke their own devices
            _require_admin(caller, what)
            # Like issuing a code: only for a principal the admin could create as it is (its
            # nation, at or below the admin's access, not an admin), so a nation admin can
            # never lock out the root admin, a peer admin or someone cleared above it.
            view = PrincipalView.of(owner)
            _check_grant(
                state, caller, what, view.nation, view.clearance, sorted(view.compartments), list(view.roles)
            )
        if dev.revoked_at is None:
            dev.revoked_at = tx.now
            dev.revoke_index = tx.audit(
                "device.revoked", caller.device_id, device_id, device=device_id, principal=dev.principal_id
            )
            if newest(tx.session, record_of("device", device_id))[0] is not None:
                bundle = PublicBundle.from_stored(dev.signed_bundle)
                expected = device_expected(bundle, owner.nation, "revoked")
                accept(tx, state, statement, None, expected, signer=signer_of(state, tx, caller))
        return {"device": device_id, "revoked_at": format_time(dev.revoked_at), "log_index": dev.revoke_index}

    result = await state.writer.run(job)
    value = result.value
    receipt = result.receipts.get(value["log_index"])
    return {
        **value,
        "receipt": receipt.to_json() if receipt else None,
        "directory": await leaf_receipt(state, result, record_of("device", device_id)),
    }


async def list_devices(state: AppState, caller: Caller, principal: str | None) -> dict[str, Any]:
    """Admin inventory: every device (revoked too), enrolment and last-seen time, scoped."""
    try:
        check_admin(caller.principal.subject, caller.principal.roles)
    except PolicyViolation as e:
        await refuse(
            state,
            Problem(e.reason, e.detail),
            access_denied(caller.device_id, "device inventory", e.reason, None),
        )
    async with state.db.sessions() as s:
        q = select(Device).join(Principal, Principal.id == Device.principal_id)
        if principal:
            q = q.where(Device.principal_id == principal)
        if not caller.principal.is_root:
            q = q.where(Principal.nation == caller.principal.nation)
        rows = (await s.execute(q.order_by(Device.enrolled_at).limit(1000))).scalars().all()
        return await device_records(s, rows)


async def create_channel(
    state: AppState,
    caller: Caller,
    cid: str,
    name: str,
    ceiling: Label,
    statement: Any = None,
    disclosures: Any = None,
) -> dict[str, Any]:
    what = f"create channel {cid}"

    def job(tx: Tx) -> dict[str, Any]:
        me = caller.principal
        try:  # a nation admin cannot open a channel above what it may itself read
            check_channel_admin(state.policy, me.subject, me.roles, me.is_root, ceiling)
        except PolicyViolation as e:
            raise _denied(caller, what, e) from None
        if tx.session.get(Channel, cid) is not None:
            raise Problem("conflict", f"channel {cid} already exists")
        tx.session.add(Channel(id=cid, name=name, ceiling=jcs(ceiling.to_json()).decode(), created_at=tx.now))
        tx.audit("channel.created", caller.device_id, cid, channel=cid, name=name, ceiling=ceiling.to_json())
        accept(
            tx,
            state,
            statement,
            disclosures,
            channel_expected(cid, ceiling, []),
            signer=signer_of(state, tx, caller),
        )
        return {"id": cid, "name": name, "ceiling": ceiling.to_json(), "members": []}

    result = await state.writer.run(job)
    return {**result.value, "directory": await leaf_receipt(state, result, record_of("channel", cid))}


async def set_members(
    state: AppState, caller: Caller, cid: str, principals: list[str], statement: Any = None
) -> dict[str, Any]:
    """Replace a channel's members with `principals` (the whole list)."""
    wanted = set(principals)
    result = await state.writer.run(
        _members_job(state, caller, cid, lambda current: wanted, wanted, statement)
    )
    return {**result.value, "directory": await leaf_receipt(state, result, record_of("channel", cid))}


async def change_members(
    state: AppState,
    caller: Caller,
    cid: str,
    add: Iterable[str],
    remove: Iterable[str],
    statement: Any = None,
) -> dict[str, Any]:
    """Add and remove single members, leaving the others as they are. The same checks and the
    same `channel.members` entry as `set_members`: only the list sent differs."""
    added, removed = set(add), set(remove)
    both = added & removed
    if both:
        raise Problem("validation", f"both added and removed: {', '.join(sorted(both))}")
    if not added and not removed:
        raise Problem("validation", "nothing to change: name principals to add or remove")

    def wanted(current: set[str]) -> set[str]:
        return (current | added) - removed

    return (
        await state.writer.run(_members_job(state, caller, cid, wanted, added | removed, statement))
    ).value


def _members_job(
    state: AppState,
    caller: Caller,
    cid: str,
    wanted_of: Callable[[set[str]], set[str]],
    named: set[str],
    statement: Any,
) -> Callable[[Tx], dict[str, Any]]:
    """The writer job that gives channel `cid` the members `wanted_of(current members)`.

    `named` are the principals the request names: each must exist (`not-found`)."""
    what = f"members of channel {cid}"
    me = caller.principal

    def decide(check: Any, *args: Any) -> None:
        try:
            check(state.policy, me.subject, me.roles, me.is_root, *args)
        except PolicyViolation as e:
            raise _denied(caller, what, e) from None

    def job(tx: Tx) -> dict[str, Any]:
        _require_admin(caller, what)
        channel = tx.session.get(Channel, cid)
        if channel is None:
            raise Problem("not-found", f"no channel {cid}")
        ceiling = label_of(channel.ceiling)
        # Before anything about the principals: an admin who may not manage this channel
        # learns nothing of who exists or who is a member.
        decide(check_channel_admin, ceiling)
        current = set(member_ids(tx.session, cid))
        wanted = sorted(wanted_of(current))
        if len(wanted) > MAX_CHANNEL_MEMBERS:
            raise Problem(
                "too-many-members", f"{len(wanted)} members; a channel has at most {MAX_CHANNEL_MEMBERS}"
            )
        changed = current.symmetric_difference(wanted)
        rows = tx.session.execute(
            select(Principal.id, Principal.nation).where(Principal.id.in_(changed | set(wanted) | named))
        )
        nations = {pid: nation for pid, nation in rows}
        unknown = sorted(p for p in set(wanted) | named if p not in nations)
        if unknown:
            raise Problem("not-found", f"no principal(s) {', '.join(unknown)}")
        changes = [
            MemberChange(p, nations.get(p, ""), p not in current, p == "root") for p in sorted(changed)
        ]
        decide(check_members_change, ceiling, changes)
        tx.session.execute(delete(ChannelMember).where(ChannelMember.channel_id == cid))
        tx.session.add_all([ChannelMember(channel_id=cid, principal_id=p) for p in wanted])
        tx.audit(
            "channel.members",
            caller.device_id,
            cid,
            channel=cid,
            members=wanted,
            added=sorted(set(wanted) - current),
            removed=sorted(current - set(wanted)),
        )
        accept(
            tx,
            state,
            statement,
            None,
            channel_expected(cid, ceiling, wanted),
            signer=signer_of(state, tx, caller),
        )
        return {"id": cid, "name": channel.name, "ceiling": json.loads(channel.ceiling), "members": wanted}

    return job


def _may_manage(state: AppState, caller: Caller, ceiling: Label) -> bool:
    me = caller.principal
    try:
        check_channel_admin(state.policy, me.subject, me.roles, me.is_root, ceiling)
    except PolicyViolation:
        return False
    return True


async def list_channels(state: AppState, caller: Caller) -> dict[str, Any]:
    """Channels the caller belongs to, and for an admin the channels it may manage (the root
    admin: every channel; a nation admin: those whose ceiling it dominates). A channel above a
    nation admin is not shown to it, not even its name, unless it is a member."""
    me = caller.principal
    async with state.db.sessions() as s:
        mine = select(ChannelMember.channel_id).where(ChannelMember.principal_id == me.id)
        q = select(Channel).order_by(Channel.id)
        scoped = me.has_role("admin") and not me.is_root
        member_of: set[str] = set((await s.execute(mine)).scalars()) if scoped else set()
        if not me.has_role("admin"):
            q = q.where(Channel.id.in_(mine))
        out = []
        for c in (await s.execute(q)).scalars():
            ceiling = label_of(c.ceiling)
            if scoped and c.id not in member_of and not _may_manage(state, caller, ceiling):
                continue
            out.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "ceiling": ceiling.to_json(),
                    "ceiling_text": ceiling.text(),
                    "members": await s.run_sync(member_ids, c.id),
                }
            )
            if len(out) == 1000:
                break
        return {"channels": out}
