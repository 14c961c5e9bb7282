"""Following the live inbox across disconnects: reconnect with backoff, resume from the cursor.

`follow` drives `AsyncClient.watch`. Every message event carries its inbox cursor; after a
lost connection, a server restart or a stream the server ended for a passing reason, the
next stream is opened with `after=` the last cursor seen, and the server first sends what
was delivered in between. Events at or below the last cursor are dropped, so each message
is yielded once, in cursor order. Only the end of the device's right (revoked, suspended)
and refusals that waiting does not cure (authentication, permission) end the follow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _models as m
from .errors import ClientError, RateLimited, ServerError, ServerUnreachable

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["Backoff", "Ended", "Reconnecting", "follow"]

#: Reasons of a "closed" event after which reconnecting cannot help.
FINAL = frozenset({"device-revoked", "principal-suspended"})


class Ended(ClientError):
    """The server ended the stream for good (`reason`: e.g. `device-revoked`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the server ended the stream: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Backoff:
    """Seconds between attempts: `first`, doubling up to `most`; back to `first` once a
    stream has stayed up for `steady` seconds."""

    first: float = 0.5
    most: float = 30.0
    steady: float = 30.0


@dataclass(frozen=True)
class Reconnecting:
    """Yielded before each wait: why the stream was lost, and how long until the next try."""

    why: str
    wait: float
    cursor: int


async def start_cursor(client: AsyncClient) -> int:
    """The newest inbox cursor now (0 for an empty inbox): where a follow that starts live
    resumes from if its first stream is lost."""
    return (await client.inbox_page(newest_first=True, limit=1)).next


async def follow(
    client: AsyncClient, *, after: int | None = None, backoff: Backoff | None = None
) -> AsyncGenerator[m.InboxEvent | Reconnecting, None]:
    """Message events for this device, forever (or until `Ended` or another ClientError),
    with a `Reconnecting` before each wait. `after`: resume from that cursor (else from now)."""
    backoff = backoff or Backoff()
    cursor = after if after is not None else await start_cursor(client)
    wait = backoff.first
    while True:
        opened = time.monotonic()
        try:
            why = "the server ended the stream"
            # Closed here, not by the loop's shutdown, when the caller stops early or we break.
            async with aclosing(client.watch(after=cursor)) as events:
                async for event in events:
                    if event.type == "closed":
                        if event.reason in FINAL:
                            raise Ended(event.reason)
                        why = f"the server ended the stream ({event.reason or 'no reason given'})"
                        break
                    if event.type != "message" or event.cursor <= cursor:
                        continue
                    cursor = event.cursor
                    yield event
        except (ServerUnreachable, ServerError, RateLimited) as e:
            why = str(e)
            if isinstance(e, RateLimited) and e.retry_after:
                wait = max(wait, min(e.retry_after, backoff.most))
        if time.monotonic() - opened >= backoff.steady:
            wait = backoff.first
        yield Reconnecting(why, wait, cursor)
        await asyncio.sleep(wait)
        wait = min(wait * 2, backoff.most)
