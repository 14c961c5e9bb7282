"""Live push to connected devices: an in-process hub, fed across replicas by PostgreSQL NOTIFY.

On SQLite (one process) the writer wakes local subscribers after commit. On PostgreSQL the
writer issues `pg_notify` inside the transaction (delivered only if it commits) and every
process, this one included, LISTENs and wakes its own subscribers, so a device streaming
from any replica hears of a message accepted by any other.

A notification names the message only (`{"type", "id", "channel", "log_index"}`, bounded),
never its recipients: PostgreSQL refuses payloads over 8,000 bytes, and a recipient list is as
long as the sender makes it. Each process looks up which of its own streaming devices the
message was delivered to (`PgListener`), one query for all notifications that arrived
together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

__all__ = ["CHANNEL", "EventHub", "PgListener", "Subscription"]

CHANNEL = "liaison_inbox"
log = logging.getLogger("liaison.events")
_MAX_QUEUE = 1000

#: The recipients lookup: which of these devices (this process's streaming ones) were
#: delivered which of these messages.
_DELIVERED = (
    "SELECT message_id, device_id FROM delivery "
    "WHERE message_id = ANY($1::text[]) AND device_id = ANY($2::text[])"
)


class Subscription:
    """One live stream's events, until the client goes or the server closes it (`closed` then
    says why, e.g. `device-revoked`)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.closed: str | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=_MAX_QUEUE)

    def put(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a stuck client loses live hints,
            self._queue.put_nowait(event)  # never data: the inbox has them

    def close(self, reason: str) -> None:
        if self.closed is not None:
            return
        self.closed = reason
        if self._queue.full():
            self._queue.get_nowait()  # make room for the wake-up; hints only
        self._queue.put_nowait(None)

    async def next(self, idle: float) -> dict[str, Any] | None:
        """The next event; None once the stream is closed; TimeoutError after `idle` seconds
        without one."""
        if self.closed is not None:
            return None
        event = await asyncio.wait_for(self._queue.get(), idle)
        return None if self.closed is not None else event


class EventHub:
    """The live streams of this process, by device."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    def subscribe(self, device_id: str) -> Subscription:
        sub = Subscription(device_id)
        self._subs.setdefault(device_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget `sub` (idempotent)."""
        subs = self._subs.get(sub.device_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.device_id]

    def count(self, device_id: str) -> int:
        return len(self._subs.get(device_id, ()))

    def devices(self) -> list[str]:
        """The devices streaming from this process."""
        return list(self._subs)

    def publish(self, event: dict[str, Any], devices: Iterable[str]) -> None:
        """Deliver `event` to every local subscriber of `devices`."""
        for device in devices:
            for sub in list(self._subs.get(device, ())):
                sub.put(event)

    def close(self, device_id: str, reason: str) -> int:
        """End every stream of `device_id` here, saying `reason`; how many there were."""
        subs = self._subs.pop(device_id, set())
        for sub in subs:
            sub.close(reason)
        return len(subs)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())


class PgListener:
    """LISTEN on PostgreSQL, find which local streaming devices each notified message was
    delivered to, and publish it to them through the local hub."""

    def __init__(self, dsn: str, hub: EventHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._deliver: asyncio.Task[None] | None = None
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
            mid = event["id"]
            if not isinstance(mid, str):
                raise TypeError("id")
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a malformed inbox notification")
            return
        if self.hub.subscribers:  # else nobody here is to be told
            self._pending[mid] = event
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="liaison-pg-listen")
        self._deliver = asyncio.create_task(self._delivering(), name="liaison-pg-deliver")

    async def _run(self) -> None:
        while True:
            try:
                closed = asyncio.Event()
                self._conn = await asyncpg.connect(self.dsn, timeout=5)
                self._conn.add_termination_listener(lambda _c, ev=closed: ev.set())
                await self._conn.add_listener(CHANNEL, self._on_notify)
                if not self.ready.is_set():
                    log.info("listening for inbox notifications")
                self.ready.set()
                await closed.wait()
                log.warning("LISTEN connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is down or restarting: try again shortly
                log.warning("LISTEN connection failed (%s); retrying", type(e).__name__)
            self.ready.clear()
            await asyncio.sleep(1)

    async def _delivering(self) -> None:
        """Publish the notified messages to the local devices they were delivered to."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            devices = self.hub.devices()
            if not batch or not devices:
                continue
            try:
                rows = await self._conn.fetch(_DELIVERED, list(batch), devices)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # connection lost: these hints are lost, never the messages
                log.warning("inbox notification lookup failed (%s)", type(e).__name__)
                continue
            to: dict[str, list[str]] = {}
            for mid, device in rows:
                to.setdefault(mid, []).append(device)
            for mid, event in batch.items():  # in the order they were notified
                if mid in to:
                    self.hub.publish(event, to[mid])

    async def stop(self) -> None:
        for task in (self._task, self._deliver):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
