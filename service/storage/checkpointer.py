"""SQLite's WAL checkpoints in a thread of their own, off the writer's commits.

In WAL mode with `synchronous=NORMAL` a commit appends to the WAL without waiting for the
disk; the one wait is the checkpoint that copies the WAL back into the database file and
syncs it. SQLite runs it inside the commit that takes the WAL past 1,000 pages, so every few
hundred batches one batch (with every request waiting for it, in every process waiting for
the writers' lock) waited for the disk: bench/service.py's slowest requests of a single
sender (p99 8.5 to 10.0 ms with them, 5.1 to 6.7 ms with this thread). The writer's
connections turn that off (`PRAGMA wal_autocheckpoint=0`, `Database.sync_engine`) and this
thread checkpoints instead:
PASSIVE (it never waits for, nor blocks, a writer or a reader), once per `every` seconds at
most while batches commit. The WAL starts over once a checkpoint has copied all of it, its
file then cut back to `WAL_KEEP` bytes (`journal_size_limit`), so it stays about one
interval's writes long.

Several processes on one database run one each; SQLite runs one checkpoint at a time and
the others return at once. A checkpoint that fails (a full disk) is logged and tried again
after the next commit; the database stays correct without it, only its WAL grows meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["WAL_KEEP", "WalCheckpointer"]

log = logging.getLogger("liaison.writer")

#: Bytes the WAL file is cut back to when it starts over (`PRAGMA journal_size_limit`).
WAL_KEEP = 64 * 1024 * 1024


class WalCheckpointer:
    """A daemon thread that checkpoints one SQLite database's WAL after commits (`kick`)."""

    def __init__(self, path: str, *, every: float = 0.5) -> None:
        self.path = path
        self.every = every
        #: Checkpoints run, and the last one's (frames in the WAL, frames copied back).
        self.runs = 0
        self.last: tuple[int, int] | None = None
        self._kicked = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="liaison-checkpointer", daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """A batch committed: its frames are to be copied back (within `every` seconds)."""
        self._kicked.set()

    def stop(self) -> None:
        """Stop once the checkpoint under way, if any, is done (SQLite checkpoints the rest
        when the database's last connection closes)."""
        if self._thread is not None:
            self._stopping.set()
            self._kicked.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._kicked.wait()
                if self._stopping.is_set():
                    return
                self._kicked.clear()
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                    _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.last = (int(frames), int(copied))
                    self.runs += 1
                except sqlite3.Error as e:
                    log.warning("WAL checkpoint failed: %s", e)
                if self._stopping.wait(self.every):  # what commits meanwhile waits for the next
                    return
        finally:
            if conn is not None:
                conn.close()
