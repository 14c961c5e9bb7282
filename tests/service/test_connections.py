"""Connection-level limits of the real `liaison-server run` (issue 10, items 2 and 3): request
heads bounded in size and count (431), deadlines for the request head and for each body read,
and a cap on open connections per client address. Each test attacks a real server process
over TLS on loopback; the second client address is 127.0.0.2."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import httpx
import pytest

from liaison.service.problems import PROBLEM_BASE
from tests.service.conn_tools import Running, closed, read_response, running, shut

pytestmark = pytest.mark.slow


def _get(head_lines: list[bytes]) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n" + b"".join(head_lines) + b"\r\n"


async def _refused_431(srv: Running, request: bytes) -> dict[str, object]:
    reader, writer = await srv.open()
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):  # it may close while a long head is sent
            await writer.drain()
        status, headers, body = await read_response(reader, 10)
        assert status == 431, (status, body[:300])
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        problem: dict[str, object] = json.loads(body)
        assert problem["type"] == PROBLEM_BASE + "headers-too-large" and problem["status"] == 431
        await closed(reader, 5)
        return problem
    finally:
        await shut(writer)


async def _healthy(srv: Running, source: str = "127.0.0.1", seconds: float = 10) -> float:
    """Seconds for a complete GET /healthz on a new connection from `source`."""
    start = time.monotonic()
    transport = httpx.AsyncHTTPTransport(verify=srv.ctx(), local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=seconds) as http:
        r = await http.get(srv.base + "/healthz")
    assert r.status_code == 200, r.text
    return time.monotonic() - start


def test_oversized_request_heads_are_refused_with_431(tmp_path: Path) -> None:
    async def go(srv: Running) -> None:
        # One header line over the per-line limit (16 KiB by default).
        p = await _refused_431(srv, _get([b"x-big: " + b"a" * 20_000 + b"\r\n"]))
        assert "line" in str(p["detail"])
        # Lines each under it, more than 64 KiB together.
        p = await _refused_431(srv, _get([b"x-%d: %s\r\n" % (i, b"b" * 10_000) for i in range(8)]))
        assert "65536" in str(p["detail"])
        # More than 100 header fields.
        p = await _refused_431(srv, _get([b"x-%d: c\r\n" % i for i in range(120)]))
        assert "100" in str(p["detail"])
        # A request line (the target) over the line limit.
        p = await _refused_431(srv, b"GET /" + b"d" * 20_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        # Normal requests still work, on the same server; so does the container's health check.
        assert await _healthy(srv) < 5
        probe = srv.healthcheck()
        assert probe.returncode == 0 and probe.stdout == b"healthy\n", probe.stderr

    with running(tmp_path) as srv:
        asyncio.run(go(srv))


def test_huge_headers_do_not_grow_the_server(tmp_path: Path) -> None:
    """The attack as found: four unauthenticated requests with 96 MiB headers (here 32 MiB,
    never completed) grew the server by hundreds of MiB that it never released."""

    async def attack(srv: Running) -> None:
        async def one() -> None:
            reader, writer = await srv.open()
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-junk: ")
            chunk = b"z" * (1 << 20)
            try:
                for _ in range(32):
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 10)
                await closed(reader, 10)
            except (ConnectionError, TimeoutError):
                pass
            finally:
                await shut(writer)

        await asyncio.gather(*(one() for _ in range(4)))

    with running(tmp_path) as srv:
        before = srv.rss_kib()
        asyncio.run(attack(srv))
        grown = srv.rss_kib() - before
        assert grown < 40 * 1024, f"the server grew by {grown // 1024} MiB"
        asyncio.run(_healthy(srv))


def test_half_open_connections_time_out_while_others_are_served(tmp_path: Path) -> None:
    """300 half-open connections (100 that never start TLS, 100 that stop inside TLS' first
    flight, 100 with a partial request head), all from 127.0.0.1 with the per-address cap
    raised above 300 so that every one of them is held by the server: a normal client from
    127.0.0.2 is still served within 2 s, and the deadline (2 s here) closes all 300."""
    head_timeout = 2.0

    async def go(srv: Running) -> None:
        fds = srv.fds()
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(100):  # TCP only: the TLS handshake never starts
            held.append(await srv.open(tls=False))
        for _ in range(100):  # a partial TLS ClientHello
            r, w = await srv.open(tls=False)
            w.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            held.append((r, w))
        for _ in range(100):  # TLS done, then a request head that never ends
            r, w = await srv.open()
            w.write(b"POST /v1/enrol HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
            await w.drain()
            held.append((r, w))
        opened = time.monotonic()
        assert await _healthy(srv, "127.0.0.2", seconds=2) < 2.0
        await asyncio.gather(*(closed(r, head_timeout + 8) for r, _ in held))
        assert time.monotonic() - opened < head_timeout + 8
        await asyncio.gather(*(shut(w) for _, w in held))
        assert await _healthy(srv) < 2.0  # and the server is as it was
        assert srv.fds() <= fds + 5, (fds, srv.fds())  # no socket left behind

    with running(tmp_path, head_timeout_seconds=str(head_timeout), max_connections_per_address="1000") as srv:
        asyncio.run(go(srv))


def test_connections_per_address_are_capped(tmp_path: Path) -> None:
    """With a cap of 20: 300 half-open connections from 127.0.0.1 hold at most 20 slots (the
    rest are closed at once), and 127.0.0.2 is served within 2 s while they are held."""

    async def go(srv: Running) -> None:
        fds = srv.fds()
        held = [await srv.open(tls=False) for _ in range(300)]
        # The server closes every connection past the 20th at once.
        alive = 0
        for r, _ in held:
            try:
                await closed(r, 0.5)
            except TimeoutError:
                alive += 1
        assert alive == 20, alive
        assert await _healthy(srv, "127.0.0.2", seconds=2) < 2.0
        # A slot frees when its connection closes.
        await asyncio.gather(*(shut(w) for _, w in held))
        await asyncio.sleep(0.5)
        assert await _healthy(srv) < 2.0
        assert srv.fds() <= fds + 5, (fds, srv.fds())

    with running(tmp_path, max_connections_per_address="20", head_timeout_seconds="30") as srv:
        asyncio.run(go(srv))


def test_a_stalled_body_is_cut_off_and_a_slow_live_one_is_served(tmp_path: Path) -> None:
    body_timeout = 2.0

    async def go(srv: Running) -> None:
        body = json.dumps({"code": "X" * 20, "bundle": {}}).encode()
        head = (
            b"POST /v1/enrol HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        # Stalled: half the body, then silence. Cut off with 408 after the body deadline.
        reader, writer = await srv.open()
        writer.write(head + body[:10])
        await writer.drain()
        start = time.monotonic()
        status, headers, raw = await read_response(reader, body_timeout + 5)
        assert status == 408, raw[:300]
        assert json.loads(raw)["type"] == PROBLEM_BASE + "request-timeout"
        assert headers["connection"] == "close"
        assert body_timeout - 0.5 < time.monotonic() - start < body_timeout + 3
        await closed(reader, 5)
        await shut(writer)
        # Answered before its body came (GET /healthz does not read one), then silent: the
        # connection ends at the body deadline with no second, unasked-for answer.
        reader, writer = await srv.open()
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n0123456789")
        status, _, raw = await read_response(reader, 5)
        assert status == 200, raw
        assert await closed(reader, body_timeout + 3) == b""
        await shut(writer)
        # Slow but live: a byte every second (under the deadline), 4 s in all: served.
        reader, writer = await srv.open()
        writer.write(head)
        for i in range(0, len(body), len(body) // 4 + 1):
            writer.write(body[i : i + len(body) // 4 + 1])
            await writer.drain()
            await asyncio.sleep(1.0)
        status, _, raw = await read_response(reader, 10)
        assert status not in (408, 500), raw[:300]  # answered by the app (the code is bad)
        await shut(writer)

    with running(tmp_path, body_timeout_seconds=str(body_timeout)) as srv:
        asyncio.run(go(srv))


def test_a_slow_request_head_gets_408(tmp_path: Path) -> None:
    async def go(srv: Running) -> None:
        reader, writer = await srv.open()
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        await writer.drain()
        status, _, raw = await read_response(reader, 8)
        assert status == 408 and json.loads(raw)["type"] == PROBLEM_BASE + "request-timeout"
        await closed(reader, 5)
        await shut(writer)

    with running(tmp_path, head_timeout_seconds="2") as srv:
        asyncio.run(go(srv))
