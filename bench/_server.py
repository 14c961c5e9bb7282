"""What the benches share: waiting for a `liaison-server run` they started to be ready."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path


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
