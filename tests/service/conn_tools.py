"""Raw connections to a real `liaison-server run` for the connection-level tests: TLS streams
from a chosen loopback source address, the server's memory, a short-lived server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.service.harness import free_port, server_env, start_server, stop, tls_context, wait_ready

BIN = Path(sys.executable).parent


@dataclass
class Running:
    """A `liaison-server run` subprocess on loopback, TLS with its development certificate."""

    proc: subprocess.Popen[bytes]
    port: int
    cert: str
    init: dict[str, Any]
    data: Path
    env: dict[str, str]
    stderr: str = ""  # the server's log, once stopped

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ctx(self) -> ssl.SSLContext:
        return tls_context(self.cert)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def healthcheck(self, **settings: str) -> subprocess.CompletedProcess[bytes]:
        """`liaison-server healthcheck` against this server, with its settings and `settings`."""
        env = {**self.env, **{f"LIAISON_{k.upper()}": v for k, v in settings.items()}}
        return subprocess.run(
            [
                str(BIN / "liaison-server"),
                "healthcheck",
                "--data-dir",
                str(self.data),
                "--port",
                str(self.port),
            ],
            env=env,
            capture_output=True,
            timeout=30,
        )

    def fds(self) -> int:
        """The server's open file descriptors (sockets included)."""
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    async def open(
        self, source: str = "127.0.0.1", *, tls: bool = True
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1",
            self.port,
            ssl=self.ctx() if tls else None,
            server_hostname="127.0.0.1" if tls else None,
            local_addr=(source, 0),
        )


def init_data(tmp: Path) -> tuple[Path, dict[str, Any]]:
    data = tmp / "data"
    out = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        env=server_env(),
        capture_output=True,
        check=True,
    )
    return data, json.loads(out.stdout)


@contextmanager
def running(tmp: Path, **settings: str) -> Iterator[Running]:
    """`liaison-server run` on a fresh data dir with LIAISON_<NAME> settings; stopped after
    (cleanly: `stop` asserts no traceback and no error line)."""
    data, result = init_data(tmp)
    port = free_port()
    env = server_env(**{f"LIAISON_{k.upper()}": v for k, v in settings.items()})
    proc = start_server(data, port, env)
    srv = Running(proc, port, result["tls_cert"], result, data, env)
    try:
        if settings.get("proxy_protocol") == "true":
            _wait_ready_local(srv)  # direct connections need a header now
        else:
            wait_ready(proc, f"https://127.0.0.1:{port}", result["tls_cert"])
        yield srv
    finally:
        srv.stderr = stop(proc)


def _wait_ready_local(srv: Running, seconds: float = 30) -> None:
    """`wait_ready` for a server that expects PROXY v2: a LOCAL header (as HAProxy's health
    checks send), then TLS and GET /readyz."""
    import socket
    import time

    from liaison.service.api import proxyv2

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise AssertionError(
                f"server exited: {srv.proc.stderr.read().decode()[-2000:] if srv.proc.stderr else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as raw:
                raw.sendall(proxyv2.encode(None))
                with srv.ctx().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                    if tls.recv(64).startswith(b"HTTP/1.1 200"):
                        return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


async def shut(writer: asyncio.StreamWriter) -> None:
    """Close our end and wait for it (else the socket outlives the test's event loop)."""
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


async def read_response(reader: asyncio.StreamReader, seconds: float) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: status, headers, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), seconds)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), seconds)
    return status, headers, body


async def closed(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server still sends until it closes the connection; fails (TimeoutError)
    when it does not close within `seconds`."""
    out = b""

    async def drain() -> None:
        nonlocal out
        try:
            while chunk := await reader.read(65536):
                out += chunk
        except (ConnectionError, ssl.SSLError):
            pass

    await asyncio.wait_for(drain(), seconds)
    return out
