"""Directory reads: devices with their key-transparency proofs, channels, and who is eligible."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from liaison.crypto.encoding import b64encode, format_time
from liaison.crypto.errors import PolicyViolation
from liaison.crypto.labels import Label
from liaison.crypto.policy import Policy, check_dominates

from .audit import AuditLog
from .models import AuditEntry, Channel, ChannelMember, Device, Principal
from .views import PrincipalView, label_of

__all__ = ["Eligibility", "device_records", "eligibility", "member_ids"]


def _time(t: Any) -> str | None:
    return format_time(t) if t is not None else None


async def device_records(session: AsyncSession, log: AuditLog, devices: Sequence[Device]
                         ) -> dict[str, Any]:
    """Devices as the directory shows them, each with the proof of its `device.enrolled` entry.

    Clients verify each proof against the checkpoint (and that checkpoint's consistency with
    the last one they saw) before they encrypt to the key: the server cannot show one key to
    one client and another key to everyone else without the log showing it.
    """
    cp = await log.latest_checkpoint(session)
    out = []
    for d in devices:
        rec: dict[str, Any] = {
            "device": d.id, "principal": d.principal_id, "signed_bundle": json.loads(d.signed_bundle),
            "enrolled_at": _time(d.enrolled_at), "revoked": d.revoked_at is not None,
            "revoked_at": _time(d.revoked_at), "last_seen_at": _time(d.last_seen_at),
        }
        for key, index in (("enrolment", d.enrol_index), ("revocation", d.revoke_index)):
            if index is not None and cp is not None and index < cp.size:
                entry = await session.get(AuditEntry, index)
                assert entry is not None
                proof = await log.inclusion_proof(session, index, cp.size)
                rec[key] = {"log_index": index, "entry": b64encode(entry.data),
                            "inclusion_proof": [b64encode(h) for h in proof]}
        out.append(rec)
    return {"checkpoint": cp.note if cp else None, "tree_size": cp.size if cp else 0,
            "devices": out}


async def member_ids(session: AsyncSession, channel_id: str) -> list[str]:
    rows = await session.execute(select(ChannelMember.principal_id)
                                 .where(ChannelMember.channel_id == channel_id))
    return sorted(r[0] for r in rows)


@dataclass(frozen=True)
class Eligibility:
    """Who may receive a label on a channel: eligible devices, and excluded members with why."""

    channel: Channel
    ceiling: Label
    devices: dict[str, tuple[PrincipalView, Device]]
    excluded: dict[str, str]  # principal id -> reason slug

    def to_json(self) -> dict[str, Any]:
        return {"excluded": [{"principal": p, "reason": r} for p, r in sorted(self.excluded.items())]}


async def eligibility(session: AsyncSession, policy: Policy, channel: Channel, label: Label
                      ) -> Eligibility:
    """Every active, unrevoked device of every member principal that dominates `label`."""
    members = await member_ids(session, channel.id)
    principals = {p.id: PrincipalView.of(p) for p in (await session.execute(
        select(Principal).where(Principal.id.in_(members)))).scalars()}
    devices: dict[str, list[Device]] = {}
    for d in (await session.execute(select(Device).where(
            Device.principal_id.in_(members), Device.revoked_at.is_(None)))).scalars():
        devices.setdefault(d.principal_id, []).append(d)
    eligible: dict[str, tuple[PrincipalView, Device]] = {}
    excluded: dict[str, str] = {}
    for pid in members:
        view = principals[pid]
        try:
            check_dominates(policy, view.subject, label)
        except PolicyViolation as e:
            excluded[pid] = e.reason
            continue
        if not devices.get(pid):
            excluded[pid] = "no-device"
            continue
        for d in devices[pid]:
            eligible[d.id] = (view, d)
    return Eligibility(channel, label_of(channel.ceiling), eligible, excluded)
