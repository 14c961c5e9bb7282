"""Live inbox streams: opening one (a capped number per device), and ending them when the
device's right to them ends.

A stream is authenticated when it opens, like any request. It is then re-checked every
`stream_recheck_seconds`: one query for all the devices streaming from this process, and
every stream of a device that was revoked, or whose principal was suspended, is closed
saying why. The check reads the database, so it sees a revocation made through any replica.
"""

from __future__ import annotations

from sqlalchemy import select

from ..problems import Problem
from ..state import AppState
from ..storage.events import Subscription
from ..storage.models import Device, Principal
from .auth import Caller

__all__ = ["close_ended", "open_stream"]

#: Devices checked per query.
_CHUNK = 500
#: What a client over the cap is told to wait: a stream whose client vanished is noticed at
#: its next keep-alive, at most 15 s later.
_RETRY_AFTER = 15


def open_stream(state: AppState, caller: Caller) -> Subscription:
    """Subscribe the caller's device to its live events, unless it already holds the most
    streams a device may (`too-many-streams`, 429)."""
    cap = state.settings.max_streams_per_device
    if state.hub.count(caller.device_id) >= cap:
        raise Problem(
            "too-many-streams",
            f"this device already has {cap} open streams (the most a device may hold)",
            retry_after=_RETRY_AFTER,
        )
    return state.hub.subscribe(caller.device_id)


async def close_ended(state: AppState) -> int:
    """Close every stream of a device that is revoked, or whose principal is not active;
    returns how many streams were closed."""
    devices = state.hub.devices()
    closed = 0
    for i in range(0, len(devices), _CHUNK):
        async with state.db.sessions() as s:
            rows = (
                await s.execute(
                    select(Device.id, Device.revoked_at, Principal.status)
                    .join(Principal, Principal.id == Device.principal_id)
                    .where(Device.id.in_(devices[i : i + _CHUNK]))
                )
            ).all()
        for device_id, revoked_at, status in rows:
            if revoked_at is not None:
                closed += state.hub.close(device_id, "device-revoked")
            elif status != "active":
                closed += state.hub.close(device_id, "principal-suspended")
    return closed
