"""The shipped proxy itself: HAProxy run with docker/haproxy.cfg (only its addresses changed for
loopback) in front of a real `liaison-server run` with the PROXY protocol on, as compose.yaml
runs them. Skipped where the `haproxy` binary is absent (Debian: `apt-get install haproxy`).

It checks what the file promises: send-proxy-v2 gives each client its own limits, the health
checks (check-send-proxy: a LOCAL header) keep the replica up, and the per-source stick table
and the ClientHello deadline close what they should."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.service.conn_tools import Running, closed, running, shut
from tests.service.harness import free_port
from tests.service.test_proxy_protocol import LIMITS, _bad_codes_until_429, _client, _enrol_root

HAPROXY = shutil.which("haproxy")
SHIPPED = Path(__file__).resolve().parents[2] / "docker" / "haproxy.cfg"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian: apt-get install haproxy)"),
]


def loopback_config(srv: Running, port: int) -> str:
    """docker/haproxy.cfg with loopback addresses instead of compose's names, and health checks
    every second instead of five; every other line as shipped."""
    text = SHIPPED.read_text()
    text = re.sub(r"\nresolvers docker\n(    .*\n)+", "\n", text)
    text = text.replace(" resolvers docker init-addr last,libc,none", "").replace(" inter 5s", " inter 1s")
    text = text.replace("    bind :443\n", f"    bind 127.0.0.1:{port}\n")
    text = text.replace(
        "    server liaison-1 liaison-1:8443\n", f"    server liaison-1 127.0.0.1:{srv.port}\n"
    )
    text = text.replace("    server liaison-2 liaison-2:8443\n", "")
    assert "liaison-1:8443" not in text and "resolvers" not in text and f":{srv.port}" in text
    return text


@contextmanager
def haproxy(srv: Running, tmp: Path) -> Iterator[tuple[int, Path]]:
    assert HAPROXY is not None
    port = free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(loopback_config(srv, port))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp / "haproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while "is UP" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)  # the server starts as up anyway; wait for its first checks
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_haproxy_as_shipped_gives_each_client_its_own_limits(tmp_path: Path) -> None:
    settings = {**LIMITS, "max_connections_per_address": "200"}  # the stick table's turn below
    with (
        running(tmp_path, proxy_protocol="true", proxy_trusted="127.0.0.1", **settings) as srv,
        haproxy(srv, tmp_path) as (port, log),
    ):

        async def go() -> None:
            url = f"https://127.0.0.1:{port}"
            async with _client(srv, "127.0.0.2") as a, _client(srv, "127.0.0.3") as b:
                assert await _bad_codes_until_429(a, url) == 6
                r = await _enrol_root(b, url, srv)
                assert r.status_code == 201, r.text
            # The stick table: 64 connections open from one source, the 65th is closed.
            held = [
                await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.4", 0))
                for _ in range(64)
            ]
            await asyncio.sleep(0.2)
            try:  # refused with a reset, at once: at connect, or as the first read
                r65, w65 = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.4", 0))
            except ConnectionResetError:
                pass
            else:
                assert await closed(r65, 3) == b""
                await shut(w65)
            with pytest.raises(TimeoutError):
                await closed(held[0][0], 0.5)
            # No ClientHello in 10 s (tcp-request inspect-delay): every one is closed.
            await asyncio.gather(*(closed(r, 15) for r, _ in held))
            await asyncio.gather(*(shut(w) for _, w in held))

        asyncio.run(go())
        time.sleep(2.5)  # two more health checks
        text = log.read_text()
    assert "is DOWN" not in text, text[-3000:]
    assert srv.stderr.count('"path": "/readyz"') >= 2  # checks reached the app through LOCAL
    assert '"client": "127.0.0.3"' in srv.stderr and '"client": "127.0.0.2"' in srv.stderr
