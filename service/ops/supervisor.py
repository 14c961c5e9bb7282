"""The worker processes of `liaison-server run --workers N`: start them, restart one that dies,
stop them all on SIGTERM or SIGINT.

Each worker is a fresh interpreter (multiprocessing's spawn: no state forked from this one)
that loads the settings again and serves the API's port from the socket its arguments carry
(the caller binds it once; each worker takes new connections in its turn, `api.balance`), so
a worker's death loses only its own connections: those not yet accepted wait for the others.
What the workers share they share through the data directory and the database:
writes one batch at a time (`Database.writer_lock`, PostgreSQL's advisory lock), rate limits
in `storage.buckets`' shared table, live pushes through the database (`storage.events`).

The supervisor itself serves nothing and holds no database connection. Its rules:

* a worker that exits before it listens (it sets its `ready` event once its sockets are
  bound) failed to start (a port taken, a database gone): every worker is stopped and `run`
  exits with that worker's code;
* a worker that dies later (a crash, the OOM killer) is started again, and that is logged;
  more than `MAX_RESTARTS` restarts within a minute stop the whole server (exit 1), rather
  than restarting a worker that can only die;
* SIGTERM or SIGINT: every worker gets SIGTERM (it ends its streams and drains its requests,
  uvicorn's graceful shutdown), and those still running after `STOP_GRACE` seconds are
  killed. The exit code is then 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any

__all__ = ["MAX_RESTARTS", "STOP_GRACE", "Supervisor"]

log = logging.getLogger("liaison")

#: Restarts within a minute past which the server gives up.
MAX_RESTARTS = 5
#: Seconds the workers have to stop after SIGTERM (uvicorn's graceful shutdown is 5).
STOP_GRACE = 15.0


class Supervisor:
    """Runs `target(index, ready, *args)` in `count` spawned processes (see the module doc);
    the target sets the `ready` event once it listens."""

    def __init__(
        self,
        count: int,
        target: Callable[..., None],
        args: tuple[Any, ...],
        *,
        before_spawn: Callable[[int], None] | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.count, self.target, self.args = count, target, args
        #: Called with a worker's index before it is started (again).
        self.before_spawn = before_spawn
        #: Called once, when the workers are about to be stopped.
        self.on_stop = on_stop
        self._context = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess] = []
        self._ready: list[Event] = []
        self._restarts: deque[float] = deque()
        self._stopping = False
        #: Why `run` returned non-zero, in one line for the operator.
        self.failure: str | None = None

    def _spawn(self, index: int) -> tuple[BaseProcess, Event]:
        if self.before_spawn is not None:
            self.before_spawn(index)
        ready = self._context.Event()
        proc = self._context.Process(
            target=self.target, args=(index, ready, *self.args), name=f"liaison-worker-{index}", daemon=False
        )
        proc.start()
        return proc, ready

    def _signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Serve until a signal; the exit code for `run`."""
        previous = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.count):
                proc, ready = self._spawn(index)
                self._procs.append(proc)
                self._ready.append(ready)
            code = self._watch()
        finally:
            self._stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _watch(self) -> int:
        while not self._stopping:
            wait([p.sentinel for p in self._procs], timeout=0.5)
            for index, proc in enumerate(self._procs):
                if proc.exitcode is None or self._stopping:
                    continue
                code = proc.exitcode
                if not self._ready[index].is_set():  # it never listened: it cannot start
                    self.failure = f"worker {index} could not start (exit {code}); the log above says why"
                    _event("workers.start_failed", self.failure, worker=index, code=code)
                    return code if code > 0 else 1
                now = time.monotonic()
                self._restarts.append(now)
                while self._restarts and now - self._restarts[0] > 60:
                    self._restarts.popleft()
                if len(self._restarts) > MAX_RESTARTS:
                    self.failure = f"workers died {len(self._restarts)} times within a minute: stopped"
                    _event("workers.gave_up", self.failure, worker=index, code=code)
                    return 1
                _event(
                    "workers.restarted",
                    f"worker {index} exited ({code}); started again",
                    worker=index,
                    code=code,
                )
                self._procs[index], self._ready[index] = self._spawn(index)
        return 0

    def _stop(self) -> None:
        """SIGTERM to every worker still running; SIGKILL to those left after `STOP_GRACE`."""
        if self.on_stop is not None:
            self.on_stop()
        for proc in self._procs:
            if proc.exitcode is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                _event("workers.killed", "a worker did not stop in time: killed", worker=proc.name)
                proc.kill()
                proc.join(5)


def _event(event: str, message: str, **fields: Any) -> None:
    log.warning(event, extra={"fields": {"event": event, "message": message, **fields}})
