"""The PROXY protocol version 2 header (haproxy's proxy-protocol.txt, section 2.2), receiver side.

A proxy that passes TLS through (HAProxy in TCP mode) writes this binary header before the
client's first byte, so that the server learns the client's address. Only what the service
needs is accepted, strictly:

    12 bytes  signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
    1 byte    version (high nibble, must be 2) and command (low nibble: 0 LOCAL, 1 PROXY)
    1 byte    address family (high nibble) and transport protocol (low nibble)
    2 bytes   length of what follows (big-endian): addresses, then TLVs

* LOCAL (the proxy's own connection, e.g. a health check): the connection's real endpoints are
  used; the address block, whatever its family, is skipped.
* PROXY: only TCP over IPv4 (0x11, 12 address bytes) or IPv6 (0x21, 36 bytes) is accepted. Every
  other family or protocol (UNSPEC, UDP, UNIX, unassigned values) is refused: taking the
  connection's own address instead would put every such client behind the proxy's one address,
  which is the very thing the header exists to avoid.
* TLVs after the addresses are checked for framing (each fits in the length) and otherwise
  ignored, as the spec allows; a CRC32C TLV is not verified (optional for a receiver), which is
  safe here because the header is only read from trusted proxies over the local network.

Anything else, including a short or truncated header, is a `ProxyHeaderError` and the
connection is dropped (the spec: "the receiver must reject incoming connections containing
partial protocol headers"). There is no version 1 (text) support.

No well-kept PyPI library was found: `proxy-protocol` (0.11.3, "Alpha") lets a malformed
address length through as a bare `struct.error`, so this is written from the spec and tested
with valid and invalid headers (`tests/service/test_proxy_protocol.py`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Literal

__all__ = ["SIGNATURE", "ProxyHeader", "ProxyHeaderError", "encode", "parse", "parse_prefix", "read_header"]

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_LEN = 16
_TCP4, _TCP6 = 0x11, 0x21
_ADDRESS_LEN = {_TCP4: 12, _TCP6: 36}
_KNOWN_FAMILY_PROTOCOL = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32}


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY v2 header this service accepts; the message says why."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header: `source` is the client's (address, port) for PROXY, None for LOCAL."""

    command: Literal["local", "proxy"]
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int  # of the whole header, 16 + the length field


def parse_prefix(prefix: bytes) -> int:
    """Check the fixed 16 bytes; returns how many bytes follow (the length field)."""
    if len(prefix) != PREFIX_LEN:
        raise ProxyHeaderError(f"a PROXY v2 header starts with 16 bytes, got {len(prefix)}")
    if prefix[:12] != SIGNATURE:
        raise ProxyHeaderError("no PROXY v2 signature")
    version, command = prefix[12] >> 4, prefix[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version}, not 2")
    if command not in (0, 1):
        raise ProxyHeaderError(f"unassigned PROXY v2 command {command:#x}")
    if prefix[13] not in _KNOWN_FAMILY_PROTOCOL:
        raise ProxyHeaderError(f"unassigned PROXY v2 address family or protocol {prefix[13]:#04x}")
    (length,) = struct.unpack_from("!H", prefix, 14)
    return int(length)


def parse(header: bytes) -> ProxyHeader:
    """Parse one complete header (exactly 16 + its length field bytes)."""
    length = parse_prefix(header[:PREFIX_LEN])
    if len(header) != PREFIX_LEN + length:
        raise ProxyHeaderError(
            f"PROXY v2 header of {len(header)} bytes, its length says {PREFIX_LEN + length}"
        )
    body = header[PREFIX_LEN:]
    if header[12] & 0x0F == 0:  # LOCAL: the address block is skipped, whatever it holds
        return ProxyHeader("local", None, None, len(header))
    kind = header[13]
    if kind not in _ADDRESS_LEN:
        raise ProxyHeaderError(
            f"PROXY v2 address family and protocol {kind:#04x} is not TCP over IPv4 or IPv6"
        )
    need = _ADDRESS_LEN[kind]
    if length < need:
        raise ProxyHeaderError(f"PROXY v2 address block of {length} bytes, TCP needs {need}")
    size = 4 if kind == _TCP4 else 16
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size : 2 * size])
    src_port, dst_port = struct.unpack_from("!HH", body, 2 * size)
    _check_tlvs(body[need:])
    return ProxyHeader("proxy", (_plain(src), src_port), (_plain(dst), dst_port), len(header))


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is that IPv4 address, so
    that it shares its limits with its own connections made over IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _check_tlvs(data: bytes) -> None:
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyHeaderError("PROXY v2 TLV truncated")
        (size,) = struct.unpack_from("!H", data, at + 1)
        at += 3 + size
        if at > len(data):
            raise ProxyHeaderError("PROXY v2 TLV longer than the header")


def encode(source: tuple[str, int] | None, destination: tuple[str, int] | None = None) -> bytes:
    """A PROXY v2 header for a TCP connection from `source` (LOCAL when None): what a proxy
    sends. Used by tests and the container's health probe."""
    if source is None:
        return SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    src = ipaddress.ip_address(source[0])
    unspecified = "0.0.0.0" if src.version == 4 else "::"  # noqa: S104 (an address, not a bind)
    dst = ipaddress.ip_address(destination[0] if destination else unspecified)
    if src.version != dst.version:
        raise ValueError("source and destination must be of one address family")
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1] if destination else 0)
    kind = _TCP4 if src.version == 4 else _TCP6
    return SIGNATURE + bytes([0x21, kind]) + struct.pack("!H", len(body)) + body


async def read_header(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> ProxyHeader:
    """Read exactly one header from a non-blocking socket, never a byte past it (the TLS
    handshake that follows is read by the TLS layer)."""
    prefix = await _read_exactly(loop, sock, PREFIX_LEN)
    rest = await _read_exactly(loop, sock, parse_prefix(prefix))
    return parse(prefix + rest)


async def _read_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = await loop.sock_recv(sock, n - len(out))
        if not chunk:
            raise ProxyHeaderError(f"connection closed inside the PROXY v2 header ({len(out)} of {n} bytes)")
        out += chunk
    return out
