"""Connections spread evenly over the worker processes of `liaison-server run --workers N`.

The supervisor binds the API's port once and hands the socket to every worker: a new
connection waits in that one queue until a worker accepts it. Each worker counts its open
connections in a slot of a small array in shared memory (`Load`), and takes the next one only
while it holds no more than the least loaded worker that is listening (`WorkerLoad.my_turn`);
a busier worker leaves it to the others. So 32 long-lived connections split 16 and 16, where
SO_REUSEPORT's hash of each connection's addresses split them 21 and 11 or worse about one
run in nine (a 69/31 run: the busier worker's core saturated, 667 messages/s where even
splits gave 824 to 934; docs/scaling.md 2e).

A worker that is not listening (starting, dead, or being started again) has the slot -1 and
is left out. A worker never waits for its turn longer than `TURN_WAIT`, and after such a wait
not again until another worker's count moves: a listening worker whose event loop is stuck
cannot stop the others from accepting, nor slow them to one connection per `TURN_WAIT`.
Each slot is written by its own worker only (and reset by the supervisor around a start), so
no lock is needed; a reader may see a count a moment old, which only shifts one connection.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from typing import Any

__all__ = ["TURN_POLL", "TURN_WAIT", "Load", "WorkerLoad"]

#: The longest a worker waits for its turn to accept (seconds).
TURN_WAIT = 0.5
#: How often a waiting worker looks again (seconds).
TURN_POLL = 0.002

_DOWN = -1


class Load:
    """The open connections of each worker (the supervisor's side: made before the workers,
    each slot set down before its worker starts)."""

    def __init__(self, workers: int) -> None:
        # Shared memory that the (spawned) workers receive as an argument of their start.
        self.slots: Any = multiprocessing.get_context("spawn").RawArray("i", [_DOWN] * workers)

    def down(self, index: int) -> None:
        """Worker `index` is not listening (before it starts, and once it has died)."""
        self.slots[index] = _DOWN

    def of(self, index: int) -> WorkerLoad:
        return WorkerLoad(self.slots, index)


class WorkerLoad:
    """One worker's view: its own count, and whether it is its turn to accept."""

    def __init__(self, slots: Any, index: int) -> None:
        self.slots, self.index = slots, index
        #: The other workers' counts when a wait for the turn last ran out: while they stay
        #: so, those workers are taking nothing (stuck, say), and this one does not wait again.
        self._stalled: list[int] | None = None

    def listening(self) -> None:
        """This worker accepts connections from now on (none open yet)."""
        self.slots[self.index] = 0

    @property
    def count(self) -> int:
        return int(self.slots[self.index])

    def my_turn(self) -> bool:
        """Whether this worker holds no more connections than any listening worker."""
        mine = self.slots[self.index]
        return all(n < 0 or mine <= n for n in self.slots)

    def _others(self) -> list[int]:
        return [n for i, n in enumerate(self.slots) if i != self.index]

    async def wait_turn(self) -> None:
        """Until it is this worker's turn, or `TURN_WAIT` has passed. After a wait that ran
        out, no more waiting until another worker's count changes: a worker that takes no
        connection must not slow every accept of the others to one per `TURN_WAIT`."""
        if self.my_turn() or self._stalled == self._others():
            return
        self._stalled = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TURN_WAIT
        # The counts change in other processes: there is no event to wait on, only polling.
        while not self.my_turn():
            if loop.time() >= deadline:
                self._stalled = self._others()
                return
            await asyncio.sleep(TURN_POLL)

    def opened(self) -> Callable[[], None]:
        """Count one more connection; returns what uncounts it (once, however often called)."""
        self.slots[self.index] += 1
        done = False

        def closed() -> None:
            nonlocal done
            if not done:
                done = True
                self.slots[self.index] -= 1

        return closed
