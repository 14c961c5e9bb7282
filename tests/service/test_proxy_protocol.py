"""Per-client limits behind the shipped proxy (issue 10, item 16): PROXY protocol v2.

HAProxy passes TLS through, so without help every client reaches the service from the proxy's
one address and shares its rate-limit bucket and connection cap. With `proxy_protocol` on, the
proxy (`send-proxy-v2` in docker/haproxy.cfg) writes a PROXY v2 header first and the service
takes the client's address from it, accepting headers only from `proxy_trusted` addresses.

The compose topology on loopback: a real `liaison-server run` on 127.0.0.1, and in front of it
a small TCP forwarder (as HAProxy in TCP mode) that connects from 127.0.0.1 and, like
`send-proxy-v2`, writes the client's address first; clients come from 127.0.0.2 and 127.0.0.3.
The header parser is tested on its own with valid and invalid headers, from the spec's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from liaison.crypto.keys import generate_device
from liaison.service.api import proxyv2
from liaison.service.api.proxyv2 import ProxyHeaderError
from tests.service.conn_tools import Running, closed, read_response, running, shut
from tests.service.harness import enrol_device

SIG = bytes.fromhex("0d0a0d0a000d0a515549540a")


# --- the header parser --------------------------------------------------------------------------


def _hdr(ver_cmd: int, fam: int, body: bytes, length: int | None = None) -> bytes:
    return SIG + bytes([ver_cmd, fam]) + struct.pack("!H", len(body) if length is None else length) + body


#: TCP over IPv4, 127.0.0.2:54321 -> 127.0.0.1:8443, written out byte by byte from section 2.2.
TCP4 = bytes.fromhex("0d0a0d0a000d0a515549540a2111000c7f0000027f000001d43120fb")


def test_parses_tcp_over_ipv4_and_ipv6() -> None:
    h = proxyv2.parse(TCP4)
    assert (h.command, h.source, h.destination, h.length) == (
        "proxy",
        ("127.0.0.2", 54321),
        ("127.0.0.1", 8443),
        28,
    )
    six = bytes.fromhex("20010db8" + "00" * 11 + "01") + bytes.fromhex("fe80" + "00" * 13 + "02")
    h = proxyv2.parse(_hdr(0x21, 0x21, six + struct.pack("!HH", 1, 2)))
    assert h.source == ("2001:db8::1", 1) and h.destination == ("fe80::2", 2)
    # An IPv4 client seen through an IPv6 socket is that IPv4 client.
    mapped = bytes.fromhex("00" * 10 + "ffff" + "c0000201")
    h = proxyv2.parse(_hdr(0x21, 0x21, mapped + mapped + struct.pack("!HH", 7, 8)))
    assert h.source == ("192.0.2.1", 7)
    # TLVs after the addresses (here NOOP and UNIQUE_ID) are skipped.
    tlvs = bytes([0x04, 0, 2, 0, 0, 0x05, 0, 3]) + b"abc"
    h = proxyv2.parse(_hdr(0x21, 0x11, TCP4[16:] + tlvs))
    assert h.source == ("127.0.0.2", 54321) and h.length == 28 + len(tlvs)
    assert proxyv2.encode(("127.0.0.2", 54321), ("127.0.0.1", 8443)) == TCP4


def test_local_uses_the_real_endpoints() -> None:
    """LOCAL (a proxy's health check): no client address; an address block, even of an
    unknown family, must be skipped, not refused."""
    for header in (_hdr(0x20, 0x00, b""), _hdr(0x20, 0x11, TCP4[16:]), _hdr(0x20, 0x00, b"\xff" * 7)):
        h = proxyv2.parse(header)
        assert h.command == "local" and h.source is None and h.length == len(header)
    assert proxyv2.encode(None) == _hdr(0x20, 0x00, b"")


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2\r\n", "signature"),  # version 1 (text): not accepted
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 5, "signature"),  # a TLS hello
        (b"GET / HTTP/1.1\r\nhost: x\r\n", "signature"),
        (TCP4[:15], "16 bytes"),
        (SIG + b"\x11\x11\x00\x0c" + TCP4[16:], "version 1"),
        (SIG + b"\x31\x11\x00\x0c" + TCP4[16:], "version 3"),
        (_hdr(0x22, 0x11, TCP4[16:]), "command 0x2"),
        (_hdr(0x2F, 0x11, TCP4[16:]), "command 0xf"),
        (_hdr(0x21, 0x41, TCP4[16:]), "family or protocol 0x41"),
        (_hdr(0x21, 0x13, TCP4[16:]), "family or protocol 0x13"),
        (_hdr(0x21, 0x00, b""), "not TCP"),  # PROXY with UNSPEC: whose address?
        (_hdr(0x21, 0x12, TCP4[16:]), "not TCP"),  # UDP
        (_hdr(0x21, 0x31, b"\x00" * 216), "not TCP"),  # UNIX stream
        (
            _hdr(0x21, 0x11, b"\x7f\x00\x00\x02"),
            "TCP needs 12",
        ),  # short block (a bare struct.error elsewhere)
        (_hdr(0x21, 0x21, TCP4[16:]), "TCP needs 36"),  # an IPv4-sized block said to be IPv6
        (_hdr(0x21, 0x11, TCP4[16:], length=20), "its length says"),  # truncated
        (TCP4 + b"\x16", "its length says"),  # a byte past the header
        (_hdr(0x21, 0x11, TCP4[16:] + b"\x04\x00"), "TLV truncated"),
        (_hdr(0x21, 0x11, TCP4[16:] + b"\x04\x00\x09abc"), "TLV longer"),
    ],
)
def test_refuses_invalid_headers(header: bytes, why: str) -> None:
    with pytest.raises(ProxyHeaderError, match=why):
        proxyv2.parse(header)


# --- the compose topology on loopback ---------------------------------------------------------


@asynccontextmanager
async def forwarder(srv: Running, *, send_header: bool = True) -> AsyncIterator[int]:
    """HAProxy in TCP mode, reduced: accept on 127.0.0.1, connect to the server from
    127.0.0.1, write the client's PROXY v2 header first (`send-proxy-v2`), then pass bytes
    through both ways untouched. Yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        client = c_writer.get_extra_info("peername")
        local = c_writer.get_extra_info("sockname")
        try:
            s_reader, s_writer = await asyncio.open_connection(
                "127.0.0.1", srv.port, local_addr=("127.0.0.1", 0)
            )
        except OSError:
            await shut(c_writer)
            return
        if send_header:
            s_writer.write(proxyv2.encode((client[0], client[1]), (local[0], local[1])))
        try:
            await asyncio.gather(pipe(c_reader, s_writer), pipe(s_reader, c_writer))
        finally:
            await shut(s_writer)
            await shut(c_writer)

    def spawn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(r, w))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _client(srv: Running, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(verify=srv.ctx(), local_address=source)
    return httpx.AsyncClient(transport=transport, timeout=10)


async def _bad_codes_until_429(http: httpx.AsyncClient, url: str) -> int:
    """Enrol with wrong codes until refused as rate-limited; returns how many tries it took."""
    keys = generate_device("nobody")
    for n in range(1, 50):
        r = await enrol_device(http, "AAAAA-BBBBB-CCCCC-DDDDD", keys, url)
        if r.status_code == 429:
            assert r.json()["type"].endswith(":rate-limited")
            return n
        assert r.status_code == 403, r.text  # enrolment-code
    raise AssertionError("never rate-limited")


async def _enrol_root(http: httpx.AsyncClient, url: str, srv: Running) -> httpx.Response:
    return await enrol_device(http, srv.init["root_enrolment_code"], generate_device("root"), url)


LIMITS: dict[str, str] = {
    "enrol_rate_per_second": "0.01",  # a bucket that does not refill during the test
    "enrol_rate_burst": "5",
    "max_connections_per_address": "3",
}


@pytest.mark.slow
def test_behind_a_plain_tcp_proxy_every_client_shares_one_bucket(tmp_path: Path) -> None:
    """The finding, reproduced: without the PROXY protocol, one client's bad enrolment codes
    lock every other client out, since all of them come from the proxy's address."""

    async def go(srv: Running) -> None:
        async with forwarder(srv, send_header=False) as port:
            url = f"https://127.0.0.1:{port}"
            async with _client(srv, "127.0.0.2") as a, _client(srv, "127.0.0.3") as b:
                assert await _bad_codes_until_429(a, url) == 6
                r = await _enrol_root(b, url, srv)
                assert r.status_code == 429, r.text

    with running(tmp_path, **LIMITS) as srv:
        asyncio.run(go(srv))


@pytest.mark.slow
def test_proxy_protocol_gives_each_client_its_own_limits(tmp_path: Path) -> None:
    async def go(srv: Running) -> None:
        async with forwarder(srv) as port:
            url = f"https://127.0.0.1:{port}"
            async with _client(srv, "127.0.0.2") as a, _client(srv, "127.0.0.3") as b:
                # One client exhausts its enrolment attempts; the other still enrols.
                assert await _bad_codes_until_429(a, url) == 6
                r = await _enrol_root(b, url, srv)
                assert r.status_code == 201, r.text
            # The connection cap counts the client's address, not the proxy's: 127.0.0.2 holds
            # 3 connections, its 4th is closed, and 127.0.0.3 still connects.
            held = [await _tls_via(srv, port, "127.0.0.2") for _ in range(3)]
            reader, writer = await _tls_via(srv, port, "127.0.0.2", handshake=False)
            assert await closed(reader, 5) == b""
            await shut(writer)
            async with _client(srv, "127.0.0.3") as b:
                assert (await b.get(url + "/healthz")).status_code == 200
            for _, w in held:
                await shut(w)

    with running(tmp_path, proxy_protocol="true", proxy_trusted="127.0.0.1", **LIMITS) as srv:
        asyncio.run(go(srv))
    log = [json.loads(line) for line in srv.stderr.splitlines() if line.startswith("{")]
    clients = {
        e["client"] for e in log if e.get("event") == "request" and e.get("path", "").startswith("/v1/enrol")
    }
    assert clients == {"127.0.0.2", "127.0.0.3"}  # the logs name the real clients
    refused = [e for e in log if e.get("event") == "connection.refused"]
    assert refused and all(e["client"] == "127.0.0.2" for e in refused)


async def _tls_via(
    srv: Running, port: int, source: str, *, handshake: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection through the forwarder from `source`; TLS when `handshake` (raw TCP, else)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        port,
        ssl=srv.ctx() if handshake else None,
        server_hostname="127.0.0.1" if handshake else None,
        local_addr=(source, 0),
    )
    return reader, writer


@pytest.mark.slow
def test_only_trusted_proxies_and_valid_headers_are_served(tmp_path: Path) -> None:
    async def go(srv: Running) -> None:
        # Direct, from an address that is not a trusted proxy: closed before TLS.
        reader, writer = await srv.open("127.0.0.5", tls=False)
        writer.write(proxyv2.encode(("203.0.113.9", 1234)))  # a forged header changes nothing
        assert await closed(reader, 5) == b""
        await shut(writer)
        # From the trusted proxy's address but with no header (plain TLS): closed.
        reader, writer = await srv.open("127.0.0.1", tls=False)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
        assert await closed(reader, 5) == b""
        await shut(writer)
        # A malformed header (PROXY over UDP): closed.
        reader, writer = await srv.open("127.0.0.1", tls=False)
        writer.write(_hdr(0x21, 0x12, TCP4[16:]))
        assert await closed(reader, 5) == b""
        await shut(writer)
        # A LOCAL header (the proxy's health check), then TLS and a request: served.
        reader, writer = await srv.open("127.0.0.1", tls=False)
        writer.write(proxyv2.encode(None))
        await writer.drain()
        await writer.start_tls(srv.ctx(), server_hostname="127.0.0.1")
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        status, _, body = await read_response(reader, 5)
        assert status == 200 and json.loads(body) == {"status": "ok"}
        await shut(writer)
        # Silence after connecting: closed at the head deadline.
        reader, writer = await srv.open("127.0.0.1", tls=False)
        assert await closed(reader, 6) == b""
        await shut(writer)
        # The container's health check speaks the same way (a LOCAL header first).
        ok = srv.healthcheck()
        assert ok.returncode == 0 and ok.stdout == b"healthy\n", ok.stderr
        bad = srv.healthcheck(proxy_protocol="false")
        assert bad.returncode == 1 and bad.stderr.startswith(b"liaison-server: unhealthy: "), bad.stderr

    with running(
        tmp_path, proxy_protocol="true", proxy_trusted="127.0.0.1/32", head_timeout_seconds="2"
    ) as srv:
        asyncio.run(go(srv))
    log = [json.loads(line) for line in srv.stderr.splitlines() if line.startswith("{")]
    reasons = [e["reason"] for e in log if e.get("event") == "connection.refused"]
    assert reasons[0] == "not a trusted proxy"
    assert "no PROXY v2 signature" in reasons[1]
    assert "not TCP" in reasons[2]
    assert reasons[3] == "no PROXY v2 header in time"
    assert "Traceback" not in srv.stderr


def test_settings_refuse_proxy_protocol_without_trusted_proxies(tmp_path: Path) -> None:
    from liaison.service.config import SettingsError, load_settings

    (tmp_path / "d").mkdir()
    with pytest.raises(SettingsError, match="proxy_trusted"):
        load_settings(tmp_path / "d", proxy_protocol=True)
    with pytest.raises(SettingsError, match="not an IP address"):
        load_settings(tmp_path / "d", proxy_protocol=True, proxy_trusted="haproxy")
    s = load_settings(tmp_path / "d", proxy_trusted='["10.0.0.0/8", "::1"]')
    assert s.proxy_trusted == ["10.0.0.0/8", "::1"]
