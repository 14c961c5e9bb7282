"""A thin blocking wrapper around AsyncClient, for scripts and partner systems without asyncio.

Each `Client` owns one private event loop and runs every call to completion on it, so it
must not be used from inside a running event loop (use AsyncClient there).

Every public method of AsyncClient has a twin here with the same signature, returning `T`
where the original returns an awaitable of `T` (`Iterator[T]` for `AsyncIterator[T]`);
`connect` is the twin of `AsyncClient(...)` and `close` of `aclose`.
tests/clients/test_sync_parity.py fails on any difference, missing or extra method.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, BinaryIO, Self, TypeVar

import httpx

from liaison.crypto import note, tiles
from liaison.crypto.keys import DeviceKeys
from liaison.crypto.labels import Label
from liaison.crypto.names import DEFAULT_ROLES
from liaison.crypto.policy import Policy

from . import _models as m
from ._admin import AdminSync
from ._attachments import Attachment, Progress
from ._directory import DirectoryMemory
from ._retry import Retry
from ._trust import LogMemory, WitnessPolicy
from ._verify import DeviceRecord
from .client import DEFAULT_CONTENT_TYPE, INVITATION_LIFETIME, AsyncClient
from .keystore import KeyStore

__all__ = ["Client"]

T = TypeVar("T")


class Client(AdminSync):
    """The blocking client: the same methods as AsyncClient, returning the same types."""

    def __init__(self, aio: AsyncClient) -> None:
        self._loop = asyncio.new_event_loop()
        self.aio = aio

    @classmethod
    def from_profile(
        cls,
        profile: str,
        passphrase: str | None = None,
        *,
        store: KeyStore | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: Retry | None = None,
    ) -> Client:
        """Open a stored profile (see AsyncClient.from_profile)."""
        aio = AsyncClient.from_profile(profile, passphrase, store=store, transport=transport, retry=retry)
        return cls(aio)

    @classmethod
    def connect(
        cls,
        server: str,
        keys: DeviceKeys,
        memory: LogMemory,
        *,
        ca_cert: str | None = None,
        profile: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: Retry | None = None,
        monitor_interval: float | None = 300.0,
    ) -> Client:
        """A client from keys held elsewhere (an HSM wrapper, a secrets manager)."""
        return cls(
            AsyncClient(
                server,
                keys,
                memory,
                ca_cert=ca_cert,
                profile=profile,
                transport=transport,
                retry=retry,
                monitor_interval=monitor_interval,
            )
        )

    @property
    def alarms(self) -> list[str]:
        """What the checks of this device's own records found (see AsyncClient.alarms)."""
        return self.aio.alarms

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator on this client's loop, one item per step."""

        async def step() -> tuple[T] | None:
            try:
                return (await anext(source),)
            except StopAsyncIteration:
                return None

        try:
            while (got := self._run(step())) is not None:
                yield got[0]
        finally:
            if isinstance(source, AsyncGenerator):
                self._run(source.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.aio.aclose())
            self._loop.close()

    @property
    def device_id(self) -> str:
        return self.aio.device_id

    @property
    def principal(self) -> str:
        return self.aio.principal

    def policy(self) -> Policy:
        return self._run(self.aio.policy())

    def parse_label(self, text: str | Label) -> Label:
        return self._run(self.aio.parse_label(text))

    # the log

    def trusted_checkpoint(self, signed_note: Any) -> note.Checkpoint:
        return self._run(self.aio.trusted_checkpoint(signed_note))

    def fetch_tile(self, tile: tiles.Tile) -> bytes:
        return self._run(self.aio.fetch_tile(tile))

    def verified_tiles(self, cp: note.Checkpoint, wanted: Sequence[tiles.Tile]) -> tiles.VerifiedTiles:
        return self._run(self.aio.verified_tiles(cp, wanted))

    def checkpoint(self, *, cosigned: int = 0) -> m.Checkpoint:
        return self._run(self.aio.checkpoint(cosigned=cosigned))

    def witness_policy(self) -> WitnessPolicy | None:
        return self.aio.witness_policy()

    def witnessed(self, signed_note: Any) -> m.Witnessing:
        return self._run(self.aio.witnessed(signed_note))

    # directory

    def device(self, device_id: str) -> DeviceRecord:
        return self._run(self.aio.device(device_id))

    def devices_of(self, principal: str) -> list[DeviceRecord]:
        return self._run(self.aio.devices_of(principal))

    @property
    def directory_memory(self) -> DirectoryMemory:
        return self.aio.directory_memory

    def check_own_records(self) -> m.OwnRecords:
        return self._run(self.aio.check_own_records())

    def monitor_nation(self, nation: str | None = None) -> m.NationRange:
        return self._run(self.aio.monitor_nation(nation))

    # analyst

    def whoami(self) -> m.Me:
        return self._run(self.aio.whoami())

    def channels(self) -> list[m.Channel]:
        return self._run(self.aio.channels())

    def plan(self, channel: str, label: str | Label, *, to: Sequence[str] | None = None) -> m.Plan:
        return self._run(self.aio.plan(channel, label, to=to))

    def send(
        self,
        channel: str,
        label: str | Label,
        data: bytes,
        *,
        to: Sequence[str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        attachments: Sequence[Attachment] = (),
        progress: Progress | None = None,
        journal: str | os.PathLike[str] | None = None,
        restart: bool = False,
        notice: Callable[[str], None] | None = None,
    ) -> m.Sent:
        return self._run(
            self.aio.send(
                channel,
                label,
                data,
                to=to,
                content_type=content_type,
                attachments=attachments,
                progress=progress,
                journal=journal,
                restart=restart,
                notice=notice,
            )
        )

    def send_many(
        self,
        channel: str,
        label: str | Label,
        payloads: Sequence[bytes],
        *,
        to: Sequence[str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        concurrency: int = 4,
    ) -> list[m.Sent]:
        return self._run(
            self.aio.send_many(
                channel, label, payloads, to=to, content_type=content_type, concurrency=concurrency
            )
        )

    def inbox(self, *, after: int = 0, limit: int | None = None) -> list[m.InboxItem]:
        return self._run(self.aio.inbox(after=after, limit=limit))

    def inbox_page(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
        channel: str | None = None,
        unread: bool = False,
        since: str | None = None,
        prefix: str | None = None,
        totals: bool = False,
    ) -> m.InboxPage:
        return self._run(
            self.aio.inbox_page(
                after=after,
                before=before,
                limit=limit,
                newest_first=newest_first,
                channel=channel,
                unread=unread,
                since=since,
                prefix=prefix,
                totals=totals,
            )
        )

    def read(self, message_id: str, *, expected_label: Label | None = None) -> m.Message:
        return self._run(self.aio.read(message_id, expected_label=expected_label))

    def save_attachment(
        self,
        message_id: str,
        attachment: int | str,
        dest: BinaryIO | str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> m.SavedAttachment:
        return self._run(
            self.aio.save_attachment(message_id, attachment, dest, overwrite=overwrite, progress=progress)
        )

    def save_attachments(
        self,
        message_id: str,
        directory: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> list[m.SavedAttachment]:
        return self._run(
            self.aio.save_attachments(message_id, directory, overwrite=overwrite, progress=progress)
        )

    def prove(self, message_id: str) -> m.MessageProof:
        return self._run(self.aio.prove(message_id))

    def ack(self, message_id: str) -> str:
        return self._run(self.aio.ack(message_id))

    def watch(self, *, after: int | None = None) -> Iterator[m.InboxEvent]:
        """Blocking iterator over live events (until the server closes the stream)."""
        return self._iterate(self.aio.watch(after=after))

    # admin

    def create_principal(
        self,
        pid: str,
        *,
        name: str,
        nation: str,
        clearance: str,
        compartments: Sequence[str] = (),
        roles: Sequence[str] = DEFAULT_ROLES,
        kind: str = "person",
    ) -> dict[str, Any]:
        return self._run(
            self.aio.create_principal(
                pid,
                name=name,
                nation=nation,
                clearance=clearance,
                compartments=compartments,
                roles=roles,
                kind=kind,
            )
        )

    def update_principal(self, pid: str, **changes: Any) -> dict[str, Any]:
        return self._run(self.aio.update_principal(pid, **changes))

    def enrolment_code(self, pid: str, *, valid_for: int = INVITATION_LIFETIME) -> dict[str, Any]:
        return self._run(self.aio.enrolment_code(pid, valid_for=valid_for))

    def list_devices(self, principal: str | None = None) -> list[m.DeviceInfo]:
        return self._run(self.aio.list_devices(principal))

    def revoke_device(self, device_id: str) -> dict[str, Any]:
        return self._run(self.aio.revoke_device(device_id))

    def create_channel(self, cid: str, ceiling: str, name: str | None = None) -> dict[str, Any]:
        return self._run(self.aio.create_channel(cid, ceiling, name))

    def set_members(self, cid: str, principals: Sequence[str]) -> dict[str, Any]:
        return self._run(self.aio.set_members(cid, principals))

    # audit

    def audit_entries(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        type: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 1000,
    ) -> list[m.AuditEntry]:
        return self._run(
            self.aio.audit_entries(start=start, end=end, type=type, actor=actor, since=since, limit=limit)
        )
