"""Live push to connected devices: an in-process hub, fed across processes by the database.

A device's stream is served by one process, and a message may be accepted by any process that
shares the database; each process looks up which of its own streaming devices a message was
delivered to, and publishes it to them through its hub (`EventHub`).

* PostgreSQL (replicas): the writer issues `pg_notify` inside the transaction (delivered only
  if it commits) and every process, this one included, LISTENs (`PgListener`). A notification
  names the message only (`{"type", "id", "channel", "log_index"}`, bounded), never its
  recipients: PostgreSQL refuses payloads over 8,000 bytes, and a recipient list is as long as
  the sender makes it. One recipients lookup for all notifications that arrived together.
* SQLite (one data directory, one or several processes): the writer wakes this process's
  subscribers after commit, having recorded the message as published here before it
  (`EventHub.mark_local`); while this process has subscribers, `sqlite_events.SqliteListener`
  polls `PRAGMA data_version` and publishes the deliveries committed by other processes,
  skipping the recorded ones. A push from another process waits for the next poll (50 ms);
  with no subscribers the listener sends no query at all.

On PostgreSQL the listener also hears of each device enrolled through another process
(`DEVICE_CHANNEL`, notified by the enrolment's batch: the device id only) and reads its stored
bundle into this process's cache (`DeviceCache`), so that the device's first request here
finds it there instead of waiting for a read behind the other requests. On SQLite a bundle
this process lacks is read at once when asked for (`storage.quickread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import asyncpg

__all__ = ["CHANNEL", "DEVICE_CHANNEL", "DeviceCache", "EventHub", "PgListener", "Subscription"]

CHANNEL = "liaison_inbox"
#: A device enrolled (payload: its id), for the other processes' bundle caches.
DEVICE_CHANNEL = "liaison_device"
#: A device id's longest form (`crypto.keys.DEVICE_ID_RE`: 32 characters): anything longer
#: notified on `DEVICE_CHANNEL` is not one.
_DEVICE_ID_MAX = 64
log = logging.getLogger("liaison.events")
_MAX_QUEUE = 1000
#: Message ids published here that `EventHub.is_local` remembers: far more than a poll sees.
_LOCAL_IDS = 10_000

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
    """The live streams of this process, by device; on SQLite also the ids of the messages this
    process's writer publishes itself (`mark_local`), which its listener then skips."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        #: Called (on the loop) when the first stream of this process opens: the SQLite
        #: listener takes its cursor there, so that nothing committed after it is missed.
        self.on_first_subscriber: Callable[[], None] | None = None
        self._local: deque[str] = deque()
        self._local_ids: set[str] = set()
        self._local_lock = threading.Lock()  # marked in the writer's thread, read on the loop

    def subscribe(self, device_id: str) -> Subscription:
        first = not self._subs
        sub = Subscription(device_id)
        self._subs.setdefault(device_id, set()).add(sub)
        if first and self.on_first_subscriber is not None:
            try:
                self.on_first_subscriber()
            except Exception:  # a listener's trouble never refuses a stream
                log.exception("first-subscriber hook failed")
        return sub

    def mark_local(self, message_id: str) -> None:
        """Remember that this process publishes `message_id` itself (after its commit). Called
        in the writer's job, before the commit: a listener may see the commit first."""
        with self._local_lock:
            if message_id in self._local_ids:
                return
            if len(self._local) >= _LOCAL_IDS:
                self._local_ids.discard(self._local.popleft())
            self._local.append(message_id)
            self._local_ids.add(message_id)

    def is_local(self, message_id: str) -> bool:
        """Whether `message_id` was marked by `mark_local` (among the latest 10,000)."""
        with self._local_lock:
            return message_id in self._local_ids

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


#: The stored bundles of notified devices this process does not hold yet.
_BUNDLES = "SELECT id, signed_bundle FROM device WHERE id = ANY($1::text[])"


class DeviceCache(Protocol):
    """Where `PgListener` puts the bundles of devices enrolled through other processes."""

    def wants(self, device_id: str) -> bool:
        """Whether this process lacks the device's bundle."""
        ...

    def put(self, device_id: str, stored: str) -> None:
        """Hold the device's bundle, given as stored (`device.signed_bundle`); may raise when
        it does not parse (the listener then logs a warning and goes on)."""
        ...


class PgListener:
    """LISTEN on PostgreSQL, find which local streaming devices each notified message was
    delivered to, and publish it to them through the local hub; with `devices`, also read
    the bundles of devices enrolled through other processes into it."""

    def __init__(self, dsn: str, hub: EventHub, devices: DeviceCache | None = None) -> None:
        self.dsn = dsn
        self.hub = hub
        self.devices = devices
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._deliver: asyncio.Task[None] | None = None
        self._pending: dict[str, dict[str, Any]] = {}
        self._enrolled: set[str] = set()
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

    def _on_device(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if not payload or len(payload) > _DEVICE_ID_MAX or not payload.isascii():
            log.warning("ignored a malformed device notification")
            return
        if self.devices is not None and self.devices.wants(payload):  # not the enrolling process
            self._enrolled.add(payload)
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
                if self.devices is not None:
                    await self._conn.add_listener(DEVICE_CHANNEL, self._on_device)
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
        """Publish the notified messages to the local devices they were delivered to, and
        load the notified devices' bundles."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            enrolled, self._enrolled = self._enrolled, set()
            if enrolled:
                await self._load_bundles(enrolled)
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

    async def _load_bundles(self, enrolled: set[str]) -> None:
        """One read for every device notified together; one that fails (the connection lost)
        leaves the bundles to be read at the devices' first requests, as before."""
        assert self.devices is not None
        wanted = [d for d in enrolled if self.devices.wants(d)]
        if not wanted:
            return
        try:
            rows = await self._conn.fetch(_BUNDLES, wanted)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("enrolled devices' bundle lookup failed (%s)", type(e).__name__)
            return
        for device_id, stored in rows:
            try:
                self.devices.put(device_id, stored)
            except Exception as e:  # a stored bundle that does not parse: its requests say so
                log.warning("an enrolled device's stored bundle did not load (%s)", type(e).__name__)

    async def stop(self) -> None:
        for task in (self._task, self._deliver):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
