"""What a real client signs with each directory change (protocol 9.3), for service tests.

Service tests send raw signed requests; the real client (clients/) builds the statement of
each admin change itself. `with_statement` does the same for a raw request body: it reads
the record's newest statement and the principal or channel as it stands (what the admin's
client would have verified and shown) and signs the statement of the change the body asks
for. A body that already carries a statement, or one the kit cannot build (an unknown level:
the request is to be refused before its statement matters), is sent as it is.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from liaison.crypto.anchors import Anchors
from liaison.crypto.errors import CryptoError
from liaison.crypto.invitation import new_code
from liaison.crypto.keys import DeviceKeys, PublicBundle
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.statements import (
    SignedStatement,
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
from liaison.service.state import AppState
from liaison.service.storage import models
from liaison.service.storage.db import utcnow

__all__ = [
    "anchors_of",
    "bootstrap_statements",
    "device_enrolment",
    "invitation",
    "revocation",
    "with_statement",
]

_PRINCIPAL = re.compile(r"^/v1/admin/principals/([^/?]+)$")
_CODES = re.compile(r"^/v1/admin/principals/([^/?]+)/enrolment-codes$")
_MEMBERS = re.compile(r"^/v1/admin/channels/([^/?]+)/members$")
_REVOKE = re.compile(r"^/v1/admin/devices/([^/?]+)/revoke$")


async def _newest(state: AppState, record: str) -> tuple[int, bytes | None]:
    async with state.db.sessions() as s:
        row = (
            await s.execute(
                select(models.DirectoryStatement.signed)
                .where(models.DirectoryStatement.record == record)
                .order_by(models.DirectoryStatement.seq.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if row is None:
        return 0, None
    st = SignedStatement.from_json(json.loads(row)).statement
    return st.seq, st.digest()


async def _principal(state: AppState, keys: DeviceKeys, row: dict[str, Any]) -> dict[str, Any]:
    seq, prev = await _newest(state, f"principal:{row['id']}")
    st, disclosures = principal_statement(
        state.log.origin,
        state.policy,
        principal=row["id"],
        nation=row["nation"],
        kind=row.get("kind", "person"),
        clearance=row["clearance"],
        compartments=row.get("compartments", []),
        roles=row.get("roles", ["analyst"]),
        active=row.get("status", "active") == "active",
        seq=seq + 1,
        prev=prev,
        signer=keys.device_id,
    )
    return {
        "statement": sign_statement(keys, st).to_json(),
        "disclosures": {k: d.to_json() for k, d in disclosures.items()},
    }


async def _row(state: AppState, pid: str) -> dict[str, Any] | None:
    async with state.db.sessions() as s:
        p = await s.get(models.Principal, pid)
        if p is None:
            return None
        return {
            "id": p.id,
            "nation": p.nation,
            "kind": p.kind,
            "clearance": p.clearance,
            "compartments": json.loads(p.compartments),
            "roles": json.loads(p.roles),
            "status": p.status,
        }


async def _members(state: AppState, cid: str) -> tuple[list[str], Any] | None:
    async with state.db.sessions() as s:
        c = await s.get(models.Channel, cid)
        if c is None:
            return None
        rows = await s.execute(
            select(models.ChannelMember.principal_id).where(models.ChannelMember.channel_id == cid)
        )
        return sorted(r[0] for r in rows), json.loads(c.ceiling)


async def anchors_of(state: AppState) -> Anchors:
    """The anchors an admin's client that verified the current roots pins (protocol 9.7)."""
    seq, digest = await _newest(state, "roots")
    return Anchors(state.log.verifier_key, max(seq, 1), digest or bytes(32), state.policy.version)


async def invitation(state: AppState, keys: DeviceKeys, pid: str, code: str) -> dict[str, Any]:
    """The body of POST .../enrolment-codes: the signed invitation for `code` and its anchors."""
    row = await _row(state, pid)
    nation = row["nation"] if row else "USA"
    anchors = await anchors_of(state)
    ttl = state.settings.enrolment_code_ttl_seconds
    st = invitation_statement(
        state.log.origin,
        principal=pid,
        nation=nation,
        key=invitation_public(code),
        expires=utcnow() + timedelta(seconds=min(ttl, 3600)),
        anchors=anchors.digest,
        signer=keys.device_id,
    )
    return {"invitation": sign_statement(keys, st).to_json(), "anchors": anchors.to_json()}


async def with_statement(
    state: AppState, keys: DeviceKeys, method: str, path: str, body: Any
) -> tuple[Any, str | None]:
    """`body` with the statement a real client would attach, and the enrolment code it made
    (for an enrolment-code request: the code stays with the client; the answer lacks it)."""
    if not isinstance(body, dict) or "statement" in body or "invitation" in body:
        return body, None
    bare = path.split("?", 1)[0]
    try:
        if method == "POST" and bare == "/v1/admin/principals":
            return {**body, **await _principal(state, keys, {**body, "status": "active"})}, None
        if method == "PATCH" and (m := _PRINCIPAL.match(bare)):
            row = await _row(state, m.group(1))
            if row is None or not {"clearance", "compartments", "roles", "status"} & set(body):
                return body, None
            return {**body, **await _principal(state, keys, {**row, **body})}, None
        if method == "POST" and (m := _CODES.match(bare)):
            code = new_code()
            return {**body, **await invitation(state, keys, m.group(1), code)}, code
        if method == "POST" and bare == "/v1/admin/channels":
            raw = body["ceiling"]
            ceiling = (
                Label.from_json(raw, state.policy)
                if isinstance(raw, dict)
                else parse_label(raw, state.policy)
            )
            seq, prev = await _newest(state, f"channel:{body['id']}")
            st = channel_statement(
                state.log.origin,
                channel=body["id"],
                ceiling=ceiling,
                members=[],
                seq=seq + 1,
                prev=prev,
                signer=keys.device_id,
            )
            return {**body, "statement": sign_statement(keys, st).to_json()}, None
        if method in ("PUT", "PATCH") and (m := _MEMBERS.match(bare)):
            found = await _members(state, m.group(1))
            if found is None:
                return body, None
            current, ceiling = found
            if method == "PUT":
                wanted = set(body.get("principals", []))
            else:
                wanted = (set(current) | set(body.get("add", []))) - set(body.get("remove", []))
            seq, prev = await _newest(state, f"channel:{m.group(1)}")
            st = channel_statement(
                state.log.origin,
                channel=m.group(1),
                ceiling=Label.from_json(ceiling, state.policy),
                members=sorted(wanted),
                seq=seq + 1,
                prev=prev,
                signer=keys.device_id,
            )
            return {**body, "statement": sign_statement(keys, st).to_json()}, None
        if method == "POST" and (m := _REVOKE.match(bare)):
            statement = await revocation(state, keys, m.group(1))
            return ({**body, "statement": statement} if statement else body), None
    except (CryptoError, KeyError, TypeError, ValueError):
        return body, None
    return body, None


async def revocation(state: AppState, keys: DeviceKeys, device_id: str) -> dict[str, Any] | None:
    seq, prev = await _newest(state, f"device:{device_id}")
    if seq == 0:
        return None
    async with state.db.sessions() as s:
        dev = await s.get(models.Device, device_id)
        assert dev is not None
        owner = await s.get(models.Principal, dev.principal_id)
        assert owner is not None
        bundle = PublicBundle.from_json(json.loads(dev.signed_bundle)["bundle"])
    st = device_statement(
        state.log.origin,
        bundle=bundle,
        principal=dev.principal_id,
        nation=owner.nation,
        status="revoked",
        seq=seq + 1,
        prev=prev,
        signer=keys.device_id,
        invitation=None,
    )
    return sign_statement(keys, st).to_json()


def device_enrolment(doc: dict[str, Any], code: str, keys: DeviceKeys, origin: str) -> dict[str, Any]:
    """The device's own statement for an enrolment (protocol 9.8), from the server's answer
    to GET /v1/enrol/invitations/{key} (`doc`)."""
    inv = doc.get("invitation")
    st = device_statement(
        origin,
        bundle=keys.public,
        principal=keys.public.principal,
        nation=doc["nation"],
        status="active",
        seq=1,
        prev=None,
        signer=keys.device_id,
        invitation=SignedStatement.from_json(inv) if inv else None,
    )
    return sign_statement(keys, st, invitation_seed=invitation_seed(code)).to_json()


async def bootstrap_statements(state: AppState, keys: DeviceKeys) -> list[dict[str, Any]]:
    """What the genesis root device's client signs right after enrolling: the roots, the
    policy and the root principal (protocol 9.7)."""
    origin = state.log.origin
    roots = roots_statement(origin, devices=[keys.device_id], seq=1, prev=None, signer=keys.device_id)
    policy = policy_statement(origin, state.policy, seq=1, prev=None, signer=keys.device_id)
    row = await _row(state, "root")
    assert row is not None
    principal = await _principal(state, keys, row)
    return [
        {"statement": sign_statement(keys, roots).to_json()},
        {"statement": sign_statement(keys, policy).to_json()},
        principal,
    ]
