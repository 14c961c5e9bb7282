"""What the benches share: starting a `liaison-server` of their own (a fresh data directory,
TLS, its dev certificate) and waiting for it to be ready, and stopping it; or the service's
state opened in the bench's own process (`throwaway_state`); a fresh PostgreSQL database of
their own on a server (`create_pg`, dropped by `drop_pg`)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liaison.service.state import AppState

BIN = Path(sys.executable).parent


def wait_ready(
    proc: subprocess.Popen[bytes], port: int, cert: str, log: Path, *, server_hostname: str = "localhost"
) -> None:
    """Poll GET /readyz over TLS on 127.0.0.1:`port` until it answers 200 (60 s at most); exit
    with the end of the server's log if the server stops first."""
    ctx = ssl.create_default_context(cafile=cert)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                tls.sendall(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready")


def start_server(
    base: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """`liaison-server init` in `base/data`, then `run` on a free loopback port in its own
    session (output to `base/server.log`), the rate limits raised out of a bench's way and
    `extra_env` added; (the process, its https://localhost URL, init's JSON) once ready."""
    data = base / "data"
    init = json.loads(
        subprocess.run(
            [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
            capture_output=True,
            check=True,
        ).stdout
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "LIAISON_RATE_LIMIT_PER_SECOND": "100000",
        "LIAISON_RATE_LIMIT_BURST": "100000",
        "LIAISON_ENROL_RATE_PER_SECOND": "1000",
        "LIAISON_ENROL_RATE_BURST": "1000",
        **(extra_env or {}),
    }
    log = base / "server.log"
    proc = subprocess.Popen(
        [str(BIN / "liaison-server"), "run", "--data-dir", str(data), "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    wait_ready(proc, port, init["tls_cert"], log)
    return proc, f"https://localhost:{port}", init


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its session, 15 s to exit, then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.asynccontextmanager
async def throwaway_state(database_url: str | None) -> AsyncIterator[AppState]:
    """The service's state, opened in this process on a fresh data directory: its SQLite
    database, or `database_url` (an empty PostgreSQL database); closed and removed after."""
    from liaison.service.app import close_state, open_state
    from liaison.service.config import load_settings
    from liaison.service.ops.bootstrap import write_files

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        write_files(data_dir)
        overrides = {"database_url": database_url} if database_url else {}
        state = await open_state(load_settings(data_dir, **overrides))
        try:
            yield state
        finally:
            await close_state(state)


def latency_ms(samples: list[float], digits: int = 2) -> str:
    """p50, p99 and the slowest of `samples` (seconds), in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    w = digits + 4
    return (
        f"p50 {statistics.median(ordered) * 1e3:{w}.{digits}f} ms  p99 {p99 * 1e3:{w}.{digits}f} ms  "
        f"max {ordered[-1] * 1e3:{w}.{digits}f} ms"
    )


async def create_pg(url: str) -> str:
    """A new, empty database on the PostgreSQL server of `url`; its URL."""
    import asyncpg
    from sqlalchemy.engine.url import make_url

    u = make_url(url)
    name = f"liaison_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(u.set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return u.set(database=name).render_as_string(False)


async def drop_pg(url: str) -> None:
    """Drop the database of `url` (its sessions ended first)."""
    import asyncpg
    from sqlalchemy.engine.url import make_url

    u = make_url(url)
    conn = await asyncpg.connect(u.set(drivername="postgresql", database="postgres").render_as_string(False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
    finally:
        await conn.close()
