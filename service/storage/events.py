"""Live push to connected devices: an in-process hub, fed across replicas by PostgreSQL NOTIFY.

On SQLite (one process) the writer wakes local subscribers after commit. On PostgreSQL the
writer issues `pg_notify` inside the transaction (delivered only if it commits) and every
process, this one included, LISTENs and wakes its own subscribers, so a device streaming
from any replica hears of a message accepted by any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Any

import asyncpg

__all__ = ["CHANNEL", "EventHub", "PgListener"]

CHANNEL = "liaison_inbox"
log = logging.getLogger("liaison.events")
_MAX_QUEUE = 1000


class EventHub:
    """Per-device subscriber queues in this process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def subscribe(self, device_id: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=_MAX_QUEUE)
        self._subs[device_id].add(q)
        return q

    def unsubscribe(self, device_id: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subs[device_id].discard(q)
        if not self._subs[device_id]:
            del self._subs[device_id]

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver `event` (with a `devices` list) to every local subscriber it names."""
        for device in event.get("devices", ()):
            for q in list(self._subs.get(device, ())):
                with contextlib.suppress(asyncio.QueueFull):  # a stuck client loses live hints,
                    q.put_nowait(event)  # never data: the inbox has it

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())


class PgListener:
    """LISTEN on PostgreSQL and republish notifications to the local hub."""

    def __init__(self, dsn: str, hub: EventHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.hub.publish(json.loads(payload))
        except (ValueError, TypeError):
            log.warning("ignored a malformed inbox notification")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="liaison-pg-listen")

    async def _run(self) -> None:
        while True:
            try:
                closed = asyncio.Event()
                self._conn = await asyncpg.connect(self.dsn)
                self._conn.add_termination_listener(lambda _c, ev=closed: ev.set())
                await self._conn.add_listener(CHANNEL, self._on_notify)
                self.ready.set()
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("LISTEN connection lost; reconnecting")
            self.ready.clear()
            await asyncio.sleep(1)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
