"""`liaison watch` across a server restart: the real console script, the real server killed and
started again in the middle; every message is shown once, in order, with sender and label."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from typing import Any

import pytest

from tests.clients.conftest import BIN, PASSPHRASE, Liaison, Server
from tests.clients.test_cli import send, world

LABEL = "UNCLASSIFIED//REL TO FRA, UKR, USA"


class Lines:
    """Lines of a child's stdout, read as they come, with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        self.sel.register(proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def next(self, seconds: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        assert self.proc.stdout is not None
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "no line from watch in time"
            if self.sel.select(left):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, (
                    f"watch ended: {self.proc.wait()} {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))


@pytest.mark.slow
def test_watch_resumes_across_a_server_restart(liaison: Liaison, server: Server) -> None:
    n = world(liaison)
    newest = liaison("-p", n["ukr"], "--json", "inbox", "--limit", "1").json()
    cursor = newest[0]["cursor"] if newest else 0
    env = {**os.environ, "LIAISON_HOME": str(liaison.home), "LIAISON_PASSPHRASE": PASSPHRASE}
    proc = subprocess.Popen(
        [str(BIN / "liaison"), "-p", n["ukr"], "--json", "watch", "--count", "4", "--after", str(cursor)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines = Lines(proc)
    try:
        sent = [send(liaison, n["usa"], n["chan"], LABEL, f"before {i}")["id"] for i in range(2)]
        seen = [lines.next(), lines.next()]
        server.restart()  # the stream is cut; the watch retries with backoff
        sent += [send(liaison, n["usa"], n["chan"], LABEL, f"after {i}")["id"] for i in range(2)]
        seen += [lines.next(), lines.next()]
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == b"" and lines.buf == b""  # exactly 4 events: none twice
    assert [e["id"] for e in seen] == sent
    for e in seen:
        assert (e["type"], e["channel"], e["sender"], e["label_text"]) == (
            "message",
            n["chan"],
            n["usa"],
            LABEL,
        )
    assert [e["cursor"] for e in seen] == sorted({e["cursor"] for e in seen})

    notes = [json.loads(line) for line in err.decode().splitlines()]
    assert notes and all(note["type"] == "reconnecting" for note in notes), err
    assert notes[0]["cursor"] == seen[1]["cursor"]  # resumed from the last message shown


def test_watch_shows_sender_label_and_channel_escaped(liaison: Liaison) -> None:
    """The human form: sender, label and channel, each through the terminal sanitiser."""
    n = world(liaison)
    newest = liaison("-p", n["ukr"], "--json", "inbox", "--limit", "1").json()
    cursor = newest[0]["cursor"] if newest else 0
    sent = send(liaison, n["usa"], n["chan"], LABEL, "hello")
    r = liaison("-p", n["ukr"], "watch", "--count", "1", "--after", str(cursor))
    (line,) = r.stdout.splitlines()
    assert f"{n['chan']} {n['usa']}: {LABEL}" in line and f"liaison read {sent['id']}" in line
    assert "Watching for messages" in r.stderr
