"""Directory reads: devices with their key-transparency proofs, channels, and who is eligible.

Each answer is limited to what its caller needs: the directory shows the devices of
principals the caller shares a channel with (`sees_devices_of`), and the recipients answer
only questions about labels the caller could send on that channel (`recipients`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from liaison.crypto.encoding import b64encode, format_time
from liaison.crypto.errors import PolicyViolation
from liaison.crypto.keys import kem_key_id_of_json
from liaison.crypto.labels import Label
from liaison.crypto.names import MLKEM768_X25519
from liaison.crypto.policy import Policy, Subject, check_ceiling, check_channel_admin, check_dominates
from liaison.crypto.statements import label_needs

from ..problems import Problem
from ..state import AppState
from ..storage.logstore import LogReader
from ..storage.models import Channel, ChannelMember, Delivery, Device, Message, Principal
from ..tlog.entries import Opening
from ..tlog.log import AuditLog
from ..writer import Refusal, Tx
from .auth import Caller, SignedRequest
from .readmodels import PrincipalView, label_of
from .refusals import access_denied
from .statements import ALL_FACTS, Wanted, proofs, record_of

__all__ = [
    "Eligibility",
    "default_suite",
    "device_records",
    "devices",
    "eligibility",
    "member_ids",
    "recipients",
    "record",
    "sees_devices_of",
]


#: The committed fields of a device's enrolment and revocation entries its record opens: the
#: device, its principal and its bundle's digest, which the record shows anyway.
_DEVICE_FIELDS = ("device", "principal", "bundle_digest")


def _time(t: datetime | None) -> str | None:
    return format_time(t) if t is not None else None


async def device_records(session: AsyncSession, devices: Sequence[Device]) -> dict[str, Any]:
    """Devices as the directory shows them, each with the proof of its `device.enrolled` entry.

    Clients verify each proof against the checkpoint (and that checkpoint's consistency with
    the last one they saw) before they encrypt to the key: the server cannot show one key to
    one client and another key to everyone else without the log showing it.
    """
    reader = LogReader(session)
    cp = await reader.latest_checkpoint()
    openings = await reader.openings(
        i for d in devices for i in (d.enrol_index, d.revoke_index) if i is not None
    )
    out = []
    for d in devices:
        rec: dict[str, Any] = {
            "device": d.id,
            "principal": d.principal_id,
            "signed_bundle": json.loads(d.signed_bundle),
            "enrolled_at": _time(d.enrolled_at),
            "revoked": d.revoked_at is not None,
            "revoked_at": _time(d.revoked_at),
            "last_seen_at": _time(d.last_seen_at),
        }
        for key, index in (("enrolment", d.enrol_index), ("revocation", d.revoke_index)):
            if index is not None and cp is not None and index < cp.size:
                entry = await reader.entry(index)
                if entry is None:
                    raise LookupError(f"log entry {index} is missing")
                proof = await AuditLog.inclusion_proof(reader, index, cp.size)
                rec[key] = {
                    "log_index": index,
                    "entry": b64encode(entry),
                    "inclusion_proof": [b64encode(h) for h in proof],
                }
                if index in openings:  # what the record shows anyway (protocol 10.5)
                    rec[key]["opening"] = Opening.from_row(*openings[index]).disclose(_DEVICE_FIELDS)
        out.append(rec)
    return {"checkpoint": cp.note if cp else None, "tree_size": cp.size if cp else 0, "devices": out}


def member_ids(session: Session, channel_id: str) -> list[str]:
    rows = session.connection().execute(
        select(ChannelMember.principal_id).where(ChannelMember.channel_id == channel_id)
    )
    return sorted(r[0] for r in rows)


@dataclass(frozen=True)
class Eligibility:
    """Who may receive a label on a channel, for envelopes of one KEM suite: the eligible
    devices (device id -> principal id) and the excluded members with the reason."""

    devices: dict[str, str]
    excluded: dict[str, str]  # principal id -> reason slug
    suite: str
    members: frozenset[str]
    key_ids: dict[str, str] = field(default_factory=dict)  # eligible device id -> KEM key id

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "excluded": [{"principal": p, "reason": r} for p, r in sorted(self.excluded.items())],
        }


def default_suite(policy: Policy, label: Label) -> str:
    """The suite a sender uses unless it chooses: hybrid post-quantum whenever allowed."""
    allowed = policy.rule(label.classification).kem
    return MLKEM768_X25519 if MLKEM768_X25519 in allowed else allowed[0]


def eligibility(session: Session, policy: Policy, channel_id: str, label: Label, suite: str) -> Eligibility:
    """Every active, unrevoked device of every member principal that dominates `label`, among
    the devices whose key is of `suite` (one envelope has one suite). Synchronous: the writer
    calls it; readers go through `AsyncSession.run_sync`."""
    members = member_ids(session, channel_id)
    conn = session.connection()
    subjects = {
        pid: Subject(nation, clearance, frozenset(json.loads(comps)), kind, status == "active")
        for pid, nation, clearance, comps, kind, status in conn.execute(
            select(
                Principal.id,
                Principal.nation,
                Principal.clearance,
                Principal.compartments,
                Principal.kind,
                Principal.status,
            ).where(Principal.id.in_(members))
        )
    }
    devices: dict[str, list[tuple[str, str]]] = {}
    bundles: dict[str, str] = {}
    for dev, pid, dev_suite, signed_bundle in conn.execute(
        select(Device.id, Device.principal_id, Device.suite, Device.signed_bundle).where(
            Device.principal_id.in_(members), Device.revoked_at.is_(None)
        )
    ):
        devices.setdefault(pid, []).append((dev, dev_suite))
        bundles[dev] = signed_bundle
    eligible: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for pid in members:
        try:
            check_dominates(policy, subjects[pid], label)
        except PolicyViolation as e:
            excluded[pid] = e.reason
            continue
        if not devices.get(pid):
            excluded[pid] = "no-device"
            continue
        usable = [dev for dev, dev_suite in devices[pid] if dev_suite == suite]
        if not usable:
            excluded[pid] = "no-device-for-suite"
        eligible.update(dict.fromkeys(usable, pid))
    # The key id each eligible device's envelope v2 entry must name: its enrolled KEM key.
    key_ids = {dev: kem_key_id_of_json(json.loads(bundles[dev])["bundle"]["kem"]) for dev in eligible}
    return Eligibility(eligible, excluded, suite, frozenset(members), key_ids)


def _manages(state: AppState, me: PrincipalView, channel: Channel) -> bool:
    try:
        check_channel_admin(state.policy, me.subject, me.roles, me.is_root, label_of(channel.ceiling))
    except PolicyViolation:
        return False
    return True


def sees_devices_of(session: Session, viewer: PrincipalView, target: str) -> bool:
    """Whether `viewer` may see the devices of principal `target` in the directory.

    Its own; every principal's for the root admin; its own nation's for a nation admin; those
    of a principal it shares a channel with (it may have to encrypt to them); and those of a
    principal that sent a message to one of its devices (it must check the sender's key, even
    after the sender left the channel). Nobody else's: the directory answers for them exactly
    as for a principal that does not exist. Synchronous (through `AsyncSession.run_sync`).
    """
    if viewer.is_root or target == viewer.id:
        return True
    conn = session.connection()
    if viewer.has_role("admin"):
        nation = conn.execute(select(Principal.nation).where(Principal.id == target)).scalar()
        if nation == viewer.nation:
            return True
    mine, theirs = aliased(ChannelMember), aliased(ChannelMember)
    shared = conn.execute(
        select(mine.channel_id)
        .join(theirs, theirs.channel_id == mine.channel_id)
        .where(mine.principal_id == viewer.id, theirs.principal_id == target)
        .limit(1)
    ).first()
    if shared is not None:
        return True
    sent = conn.execute(
        select(Delivery.seq)
        .join(Message, Message.id == Delivery.message_id)
        .where(
            Delivery.device_id.in_(select(Device.id).where(Device.principal_id == viewer.id)),
            Message.sender_principal == target,
        )
        .limit(1)
    ).first()
    return sent is not None


async def devices(
    state: AppState, caller: Caller, principal: str | None, device: str | None
) -> dict[str, Any]:
    """The devices of a principal, or one device, with their enrolment proofs, if the caller
    may see them (`sees_devices_of`); otherwise the answer for a principal with no devices."""
    if principal is None and device is None:
        raise Problem("validation", "give principal= or device=")
    async with state.db.sessions() as s:
        q = select(Device)
        q = q.where(Device.principal_id == principal) if principal else q.where(Device.id == device)
        rows = (await s.execute(q.order_by(Device.enrolled_at).limit(100))).scalars().all()
        # The same checks run whether the principal or device exists or not, so that a hidden
        # one is answered like a missing one in content and, as far as practical, in time.
        target = principal or (rows[0].principal_id if rows else "")
        visible = await s.run_sync(sees_devices_of, caller.principal, target)
        return await device_records(s, [d for d in rows if visible and d.principal_id == target])


async def recipients(
    state: AppState,
    signed: SignedRequest,
    channel_id: str,
    label: Label,
    suite: str | None,
    at: int | None = None,
) -> dict[str, Any]:
    """Exactly the device bundles a member must encrypt `label` to on a channel, with their
    enrolment proofs, and the members left out with the reason.

    It answers only a question the caller could act on: it is a member, it dominates the label
    (it could write at it) and the label is under the channel's ceiling (it could be sent
    there). Anything else would tell it who holds which clearance and compartments. Every
    question is logged, in the job that consumes the request: `recipients.queried` (`channel`,
    `label`), or `access.denied` with the reason of the refusal.
    """
    chosen = suite or default_suite(state.policy, label)
    allowed = state.policy.rule(label.classification).kem
    subject = channel_id[:64]  # the path is the caller's; the entry's subject is bounded

    def job(tx: Tx) -> None:
        caller = signed.caller(tx)
        if chosen not in allowed:  # a malformed question: nothing about the channel is asked
            raise Problem(
                "suite-not-allowed",
                f"suite {chosen} is not allowed at {label.classification} ({', '.join(allowed)})",
            )

        def refused(reason: str, detail: str) -> Refusal:
            entry = access_denied(caller.device_id, f"recipients {channel_id}", reason, subject)
            return Refusal(Problem(reason, detail), entry)

        ceiling = tx.session.scalar(select(Channel.ceiling).where(Channel.id == channel_id))
        if ceiling is None:
            raise refused("not-found", f"no channel {channel_id}")
        if tx.session.get(ChannelMember, (channel_id, caller.principal.id)) is None:
            raise refused("not-member", f"{caller.principal.id} is not a member of {channel_id}")
        try:
            check_dominates(state.policy, caller.principal.subject, label)
            check_ceiling(state.policy, label, label_of(ceiling))
        except PolicyViolation as e:
            raise refused(e.reason, e.detail) from None
        tx.audit("recipients.queried", caller.device_id, subject, channel=channel_id, label=label.to_json())

    # Only the nonce and the one entry are written: nothing the writer's cache holds.
    await state.writer.run(job, shares_cache=True, savepoint=False)
    async with state.db.sessions() as s:
        elig = await s.run_sync(lambda ss: eligibility(ss, state.policy, channel_id, label, chosen))
        rows = (
            (await s.execute(select(Device).where(Device.id.in_(list(elig.devices))).order_by(Device.id)))
            .scalars()
            .all()
        )
        records = await device_records(s, rows)
        # What the client checks for itself (protocol 9.9): every record the answer relies on.
        needs = label_needs(state.policy, label)
        wanted = Wanted()
        wanted.add("roots")  # the chain's end and the policy: the client checks both each time
        wanted.add("policy")
        wanted.add(record_of("channel", channel_id))
        for dev, pid in elig.devices.items():
            wanted.add(record_of("device", dev))
            wanted.add(record_of("principal", pid), needs)
        for pid, reason in elig.excluded.items():
            if reason not in ("no-device", "no-device-for-suite"):
                wanted.add(record_of("principal", pid), needs)
        proven = await proofs(state, s, wanted, at=at)
    return {
        "channel": channel_id,
        "label": label.to_json(),
        "label_text": label.text(),
        **records,
        **elig.to_json(),
        "directory": proven,
    }


async def record(state: AppState, caller: Caller, name: str, at: int | None) -> dict[str, Any]:
    """`GET /v1/directory/records`: one record proven at a checkpoint (protocol 9.9), for the
    caller's own monitoring and an admin's next statement. Facts are opened in full for the
    caller's own principal, for an admin's principals of its nation and for root; a record
    the caller may not see is answered like one that does not exist."""
    kind, _, ident = name.partition(":")
    me = caller.principal
    facts: set[str] = set()
    async with state.db.sessions() as s:
        if name in ("roots", "policy"):
            visible = True
        elif kind == "principal":
            visible = await s.run_sync(sees_devices_of, me, ident)
            row = await s.get(Principal, ident)
            if row is not None and (
                ident == me.id or me.is_root or (me.has_role("admin") and row.nation == me.nation)
            ):
                facts = {ALL_FACTS}
        elif kind == "device":
            dev = await s.get(Device, ident)
            visible = dev is not None and await s.run_sync(sees_devices_of, me, dev.principal_id)
        elif kind == "channel":
            member = await s.get(ChannelMember, (ident, me.id))
            channel = await s.get(Channel, ident)
            # As GET /v1/channels: members, root, and admins that may manage it (never a
            # channel above a nation admin).
            visible = channel is not None and (
                member is not None or me.is_root or _manages(state, me, channel)
            )
        else:
            raise Problem(
                "validation", "a record is roots, policy, or principal:, device:, channel: and an id"
            )
        if not visible:
            raise Problem("not-found", f"no record {name}")
        wanted = Wanted()
        wanted.add(name, facts)
        return await proofs(state, s, wanted, at=at)
