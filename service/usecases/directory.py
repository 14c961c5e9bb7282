"""Directory reads: devices with their key-transparency proofs, channels, and who is eligible."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from liaison.crypto.encoding import b64encode, format_time
from liaison.crypto.errors import PolicyViolation
from liaison.crypto.labels import Label
from liaison.crypto.names import MLKEM768_X25519
from liaison.crypto.policy import Policy, Subject, check_dominates

from ..problems import Problem
from ..state import AppState
from ..storage.logstore import LogReader
from ..storage.models import Channel, ChannelMember, Device, Principal
from ..tlog.log import AuditLog
from .auth import Caller

__all__ = [
    "Eligibility",
    "default_suite",
    "device_records",
    "devices",
    "eligibility",
    "member_ids",
    "recipients",
]


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
    for dev, pid, dev_suite in conn.execute(
        select(Device.id, Device.principal_id, Device.suite).where(
            Device.principal_id.in_(members), Device.revoked_at.is_(None)
        )
    ):
        devices.setdefault(pid, []).append((dev, dev_suite))
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
    return Eligibility(eligible, excluded, suite, frozenset(members))


async def devices(state: AppState, principal: str | None, device: str | None) -> dict[str, Any]:
    """The devices of a principal, or one device, with their enrolment proofs."""
    if principal is None and device is None:
        raise Problem("validation", "give principal= or device=")
    async with state.db.sessions() as s:
        q = select(Device)
        q = q.where(Device.principal_id == principal) if principal else q.where(Device.id == device)
        rows = (await s.execute(q.order_by(Device.enrolled_at).limit(100))).scalars().all()
        return await device_records(s, rows)


async def recipients(
    state: AppState, caller: Caller, channel_id: str, label: Label, suite: str | None
) -> dict[str, Any]:
    """Exactly the device bundles a member must encrypt `label` to on a channel, with their
    enrolment proofs, and the members left out with the reason."""
    chosen = suite or default_suite(state.policy, label)
    allowed = state.policy.rule(label.classification).kem
    if chosen not in allowed:
        raise Problem(
            "suite-not-allowed",
            f"suite {chosen} is not allowed at {label.classification} ({', '.join(allowed)})",
        )
    async with state.db.sessions() as s:
        if await s.get(Channel, channel_id) is None:
            raise Problem("not-found", f"no channel {channel_id}")
        if await s.get(ChannelMember, (channel_id, caller.principal.id)) is None:
            raise Problem("not-member", f"{caller.principal.id} is not a member of {channel_id}")
        elig = await s.run_sync(lambda ss: eligibility(ss, state.policy, channel_id, label, chosen))
        rows = (
            (await s.execute(select(Device).where(Device.id.in_(list(elig.devices))).order_by(Device.id)))
            .scalars()
            .all()
        )
        records = await device_records(s, rows)
    return {
        "channel": channel_id,
        "label": label.to_json(),
        "label_text": label.text(),
        **records,
        **elig.to_json(),
    }
