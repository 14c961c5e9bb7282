"""Admin listings (principals, enrolment codes) and a device's own inventory, paged and scoped.

Scoped as the acts they precede: the root admin sees everything; a nation admin sees its own
nation's principals (a filter naming another nation is refused, `other-nation`), and the codes
of the principals it may issue codes for (`admin.may_manage_principal`). Anyone else is
refused (`not-admin`) and the refusal logged, except for `my_devices`: every device may list
its own principal's devices. No answer ever holds an enrolment code, only its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from liaison.crypto.encoding import format_time
from liaison.crypto.errors import PolicyViolation
from liaison.crypto.policy import check_admin

from ..problems import Problem
from ..state import AppState
from ..storage.db import utcnow
from ..storage.models import Device, EnrolmentCode, Principal
from .admin import code_record, code_status, may_manage_principal
from .auth import Caller
from .directory import device_records
from .readmodels import PrincipalView
from .refusals import access_denied, refuse

__all__ = ["MAX_PAGE", "CodeQuery", "PrincipalQuery", "list_codes", "list_principals", "my_devices"]

#: The most items one page holds (and the default page is DEFAULT_PAGE).
MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: Rows read per round while a page is filled with the rows the caller may see.
_BATCH = 200


@dataclass(frozen=True)
class PrincipalQuery:
    """Filters of `GET /v1/admin/principals` (each None: any), a page after `after` (an id)."""

    nation: str | None = None
    role: str | None = None
    status: str | None = None
    kind: str | None = None
    prefix: str | None = None  # of the id or the display name, case-insensitive
    after: str | None = None
    limit: int = DEFAULT_PAGE


@dataclass(frozen=True)
class CodeQuery:
    """Filters of `GET /v1/admin/enrolment-codes`, a page from `offset` (newest first)."""

    principal: str | None = None
    status: str | None = None
    offset: int = 0
    limit: int = DEFAULT_PAGE


async def _admin_or_refuse(state: AppState, caller: Caller, what: str) -> None:
    try:
        check_admin(caller.principal.subject, caller.principal.roles)
    except PolicyViolation as e:
        await refuse(
            state, Problem(e.reason, e.detail), access_denied(caller.device_id, what, e.reason, None)
        )


def _like_prefix(text: str) -> str:
    """`text` as a LIKE prefix pattern, its wildcards escaped (escape character `\\`)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _principal_filters(q: PrincipalQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if q.nation:
        where.append(Principal.nation == q.nation)
    if q.role:
        # Roles are a sorted JSON list of names without quotes or wildcards: exact as text.
        where.append(Principal.roles.like(f'%"{q.role}"%'))
    if q.status:
        where.append(Principal.status == q.status)
    if q.kind:
        where.append(Principal.kind == q.kind)
    if q.prefix:
        pattern = _like_prefix(q.prefix)
        where.append(
            or_(
                func.lower(Principal.id).like(pattern, escape="\\"),
                func.lower(Principal.display_name).like(pattern, escape="\\"),
            )
        )
    if q.after:
        where.append(Principal.id > q.after)
    return where


async def list_principals(state: AppState, caller: Caller, q: PrincipalQuery) -> dict[str, Any]:
    """A page of principals by id; `next` is the `after` of the next page (None at the end)."""
    me = caller.principal
    await _admin_or_refuse(state, caller, "list principals")
    if not me.is_root and q.nation and q.nation != me.nation:
        await refuse(
            state,
            Problem("other-nation", f"a {me.nation} admin cannot list {q.nation}'s principals"),
            access_denied(caller.device_id, f"list principals of {q.nation}", "other-nation", None),
        )
    where = _principal_filters(q)
    if not me.is_root:
        where.append(Principal.nation == me.nation)
    async with state.db.sessions() as s:
        rows = (
            (await s.execute(select(Principal).where(*where).order_by(Principal.id).limit(q.limit + 1)))
            .scalars()
            .all()
        )
    page = rows[: q.limit]
    return {
        "principals": [_principal_json(r) for r in page],
        "next": page[-1].id if len(rows) > q.limit else None,
    }


def _principal_json(row: Principal) -> dict[str, Any]:
    return {
        **PrincipalView.of(row).to_json(),
        "created_at": format_time(row.created_at),
        "updated_at": format_time(row.updated_at),
    }


def _code_filters(q: CodeQuery, now: datetime) -> list[ColumnElement[bool]]:
    """What SQL can narrow (the exact status is decided per row by `admin.code_status`)."""
    where: list[ColumnElement[bool]] = []
    if q.principal:
        where.append(EnrolmentCode.principal_id == q.principal)
    if q.status == "used":
        where.append(EnrolmentCode.used_at.is_not(None))
    elif q.status is not None:
        where.append(EnrolmentCode.used_at.is_(None))
        if q.status == "cancelled":
            where.append(EnrolmentCode.cancelled_at.is_not(None))
        else:
            where.append(EnrolmentCode.cancelled_at.is_(None))
            if q.status == "expired":
                where.append(EnrolmentCode.expires_at < now)
            else:  # pending, void
                where.append(EnrolmentCode.expires_at >= now)
    return where


async def list_codes(state: AppState, caller: Caller, q: CodeQuery) -> dict[str, Any]:
    """A page of the enrolment codes the caller may manage, newest first; `next` is the
    `offset` of the next page (None at the end). A `principal` filter naming one the caller
    may not manage is refused like issuing it a code would be."""
    me = caller.principal
    await _admin_or_refuse(state, caller, "list enrolment codes")
    now = utcnow()
    issuer = aliased(Device)
    stmt = (
        select(EnrolmentCode, Principal, issuer.revoked_at, issuer.id)
        .join(Principal, Principal.id == EnrolmentCode.principal_id)
        .outerjoin(issuer, issuer.id == EnrolmentCode.issued_by)
        .where(*_code_filters(q, now))
        .order_by(EnrolmentCode.created_at.desc(), EnrolmentCode.code_hash)
    )
    if not me.is_root:
        stmt = stmt.where(Principal.nation == me.nation)
    async with state.db.sessions() as s:
        if q.principal and not me.is_root:
            target = await s.get(Principal, q.principal)
            if target is not None and not may_manage_principal(state, caller, target):
                await refuse(
                    state,
                    Problem("forbidden", f"you may not manage {q.principal}'s enrolment codes"),
                    access_denied(
                        caller.device_id, f"list enrolment codes of {q.principal}", "forbidden", None
                    ),
                )
        root_ever = (
            await s.execute(select(Device.id).where(Device.principal_id == "root").limit(1))
        ).first() is not None
        out: list[dict[str, Any]] = []
        position, more = q.offset, True
        while len(out) < q.limit and more:
            rows = (await s.execute(stmt.offset(position).limit(_BATCH))).all()
            more = len(rows) == _BATCH
            for i, (code, owner, revoked_at, issuer_id) in enumerate(rows):
                position += 1
                if me.is_root or may_manage_principal(state, caller, owner):
                    live = issuer_id is not None and revoked_at is None
                    status = code_status(code, now, issuer_live=live, root_ever=root_ever)
                    if q.status is None or status == q.status:
                        out.append(code_record(code, status))
                if len(out) == q.limit:
                    more = more or i < len(rows) - 1  # rows of this batch are left
                    break
    return {"codes": out, "next": position if more else None}


async def my_devices(state: AppState, caller: Caller) -> dict[str, Any]:
    """Every device of the caller's own principal (revoked ones too), with enrolment proofs,
    marking the one that asked (`current`)."""
    async with state.db.sessions() as s:
        q = select(Device).where(Device.principal_id == caller.principal.id).order_by(Device.enrolled_at)
        rows = (await s.execute(q.limit(MAX_PAGE))).scalars().all()
        body = await device_records(s, rows)
    for d in body["devices"]:
        d["current"] = d["device"] == caller.device_id
    return body
