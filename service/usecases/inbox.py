"""A device's inbox: its deliveries, filtered and paged either way, and the live stream's items.

Every item is shown only while the principal may read its label now (SPEC 4): a delivery
whose label it no longer dominates (clearance lowered, a compartment or its nation's
releasability gone) is *withheld*, metadata included, and only counted. The same rows and
the same check serve the inbox pages, the stream's catch-up after a cursor and each live
event, so the stream never shows what the inbox would not.

Cursors are delivery serials (`Delivery.seq`): per device, increasing in the order messages
were accepted for it. A page goes oldest first from `after`, or newest first from `before`;
`next` is the cursor to continue from, in the page's direction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from liaison.crypto.encoding import format_time
from liaison.crypto.errors import PolicyViolation
from liaison.crypto.policy import check_dominates

from ..state import AppState
from ..storage.models import Delivery, Message
from .auth import Caller
from .readmodels import label_of

__all__ = ["InboxQuery", "delivered", "inbox"]


@dataclass(frozen=True)
class InboxQuery:
    """What `GET /v1/inbox` asks for (validated by the route): bounds, direction, filters."""

    after: int | None = None  # only cursors above this
    before: int | None = None  # only cursors below this
    limit: int = 100
    newest_first: bool = False
    channel: str | None = None
    unread: bool = False  # not yet acknowledged
    since: datetime | None = None  # accepted at or after (aware UTC)
    prefix: str | None = None  # message ids starting with this (lower-case hex and '-')
    totals: bool = False  # also count every matching delivery, readable and withheld


#: What an inbox item shows: metadata only, never the (large) envelope itself.
_COLUMNS = (
    Delivery.seq,
    Message.id,
    Message.channel_id,
    Message.sender_principal,
    Message.sender_device,
    Message.label,
    Message.created,
    Message.size,
    Delivery.acked_at,
    Delivery.fetched_at,
    Message.expired_at,
    Message.log_index,
)


def _filtered(q: Select[Any], caller: Caller, query: InboxQuery) -> Select[Any]:
    q = q.join(Delivery, Delivery.message_id == Message.id).where(Delivery.device_id == caller.device_id)
    if query.channel is not None:
        q = q.where(Message.channel_id == query.channel)
    if query.unread:
        q = q.where(Delivery.acked_at.is_(None))
    if query.since is not None:
        q = q.where(Message.accepted_at >= query.since)
    if query.prefix is not None:
        q = q.where(Message.id.startswith(query.prefix, autoescape=True))
    return q


def _item(state: AppState, caller: Caller, row: Sequence[Any]) -> dict[str, Any] | None:
    """The inbox item of one row, or None when the principal may no longer read its label."""
    (seq, mid, channel, sender, device, label, created, size, acked, fetched, expired, index) = row
    try:
        check_dominates(state.policy, caller.principal.subject, label_of(label))
    except PolicyViolation:
        return None
    return {
        "cursor": seq,
        "id": mid,
        "channel": channel,
        "sender": sender,
        "sender_device": device,
        "label": json.loads(label),
        "created": format_time(created, millis=False),
        "size": size,
        "read": acked is not None,
        "fetched": fetched is not None,
        "expired": expired is not None,
        "log_index": index,
    }


async def _totals(s: AsyncSession, state: AppState, caller: Caller, query: InboxQuery) -> dict[str, int]:
    """How many deliveries match the filters (cursors aside), readable and withheld: one
    count per distinct label, each label checked once."""
    q = _filtered(select(Message.label, func.count()), caller, query).group_by(Message.label)
    readable = withheld = 0
    for label, n in (await s.execute(q)).all():
        try:
            check_dominates(state.policy, caller.principal.subject, label_of(label))
            readable += n
        except PolicyViolation:
            withheld += n
    return {"total": readable, "withheld_total": withheld}


async def inbox(state: AppState, caller: Caller, query: InboxQuery) -> dict[str, Any]:
    """One page of the device's deliveries, each re-checked against the principal's access now.

    `withheld` counts the rows of this page left out for that reason; with `totals`,
    `total` and `withheld_total` count every matching delivery.
    """
    q = _filtered(select(*_COLUMNS), caller, query)
    if query.after is not None:
        q = q.where(Delivery.seq > query.after)
    if query.before is not None:
        q = q.where(Delivery.seq < query.before)
    q = q.order_by(Delivery.seq.desc() if query.newest_first else Delivery.seq).limit(query.limit)
    async with state.db.sessions() as s:
        rows = (await s.execute(q)).all()
        totals = await _totals(s, state, caller, query) if query.totals else {}
    items = [item for row in rows if (item := _item(state, caller, row)) is not None]
    start = query.before if query.newest_first else query.after
    return {
        "messages": items,
        "next": rows[-1][0] if rows else (start if start is not None else 0),
        "more": len(rows) == query.limit,
        "withheld": len(rows) - len(items),
        **totals,
    }


async def delivered(state: AppState, caller: Caller, message_id: str) -> dict[str, Any] | None:
    """The inbox item of one message delivered to the caller's device (a live event's), or
    None if there is none or the principal may no longer read it."""
    q = _filtered(select(*_COLUMNS), caller, InboxQuery()).where(Message.id == message_id)
    async with state.db.sessions() as s:
        row = (await s.execute(q)).first()
    return _item(state, caller, row) if row is not None else None
