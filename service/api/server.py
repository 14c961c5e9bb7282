"""The HTTP server's connection layer: uvicorn's httptools protocol with limits it lacks.

`LiaisonServer` is `uvicorn.Server` with its own listeners. Worker processes of one server
accept from one socket, each only in its turn (`balance`). Each accepted connection is
admitted before TLS: from a trusted proxy only, with its PROXY v2 header (`proxyv2`), when
`proxy_protocol` is on; then under a cap of open connections per client address. It is then
handed to TLS and to `_Protocol`, uvicorn's `HttpToolsProtocol` plus:

* a bounded request head: at most `header_max_bytes` in all, `header_line_max_bytes` a line and
  `header_max_count` fields, counted in the parser's callbacks for complete lines and over the
  raw bytes for a line still arriving (httptools buffers an unfinished header line whole and
  has no limit of its own); past a limit, 431 `headers-too-large` and close;
* a deadline for the head: the PROXY header, the TLS handshake and the request head must arrive
  within `head_timeout_seconds` of the accept (or of the end of the previous response on a
  kept-alive connection); else close, with 408 `request-timeout` if part of a head came;
* a deadline for each body read: a client silent for `body_timeout_seconds` in the middle of a
  body gets 408 and is closed. A body that keeps coming, however slowly, is not cut off (the
  body limit bounds its size, the per-address cap how many such connections one address holds).

Adversary: an unauthenticated network client (or many) trying to exhaust the server's memory,
connection slots or file descriptors with large or incomplete requests. Limits: the cap is per
address (per /64 for IPv6), so a client with many addresses holds more; the server as a whole
is bounded by its file descriptor limit. Behind a proxy, the proxy's own limits apply first
(docker/haproxy.cfg).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..config import Settings
from ..problems import Problem
from . import proxyv2
from .balance import WorkerLoad

__all__ = ["LiaisonServer", "Limits", "Listen"]

log = logging.getLogger("liaison.connections")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Limits:
    """The connection limits of one listener (from Settings)."""

    header_max_bytes: int = 64 * 1024
    header_line_max_bytes: int = 16 * 1024
    header_max_count: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    per_address: int = 64
    proxy_protocol: bool = False
    trusted: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            header_max_bytes=s.header_max_bytes,
            header_line_max_bytes=s.header_line_max_bytes,
            header_max_count=s.header_max_count,
            head_timeout=s.head_timeout_seconds,
            body_timeout=s.body_timeout_seconds,
            per_address=s.max_connections_per_address,
            proxy_protocol=s.proxy_protocol,
            trusted=tuple(ipaddress.ip_network(t, strict=False) for t in s.proxy_trusted),
        )

    def is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)


@dataclass(frozen=True)
class Listen:
    """One listening address, the app (as a loaded uvicorn config) it serves, and its limits."""

    config: uvicorn.Config
    host: str
    port: int
    ssl: ssl.SSLContext | None
    limits: Limits
    name: str = "api"
    #: The socket to accept on, bound already (the supervisor's, shared by the worker
    #: processes of `liaison-server run --workers`); None: bound at start.
    sock: socket.socket | None = None
    #: This worker's share of the workers' connections (`balance`): it accepts only in its turn.
    load: WorkerLoad | None = None


def address_key(host: str) -> str:
    """What the per-address cap counts: the address, or its /64 for IPv6 (one client's share)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Throttle:
    """At most `rate` log lines a second for events an attacker can repeat at will; the number
    dropped is reported with the next line that passes."""

    def __init__(self, rate: float = 10.0) -> None:
        self.rate, self.tokens, self.at, self.dropped = rate, rate, time.monotonic(), 0

    def log(self, event: str, **fields: Any) -> None:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            self.dropped += 1
            return
        self.tokens -= 1
        if self.dropped:
            fields["suppressed"] = self.dropped
            self.dropped = 0
        log.info(event, extra={"fields": {"event": event, **fields}})


_throttle = _Throttle()


class _Slots:
    """Open connections per client address."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}

    def take(self, key: str) -> Callable[[], None] | None:
        """A release function for a new connection of `key`, or None when it is at the cap."""
        n = self.open.get(key, 0)
        if n >= self.cap:
            return None
        self.open[key] = n + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.open[key] - 1
            if left:
                self.open[key] = left
            else:
                del self.open[key]

        return release


class _Refused(Exception):
    """Raised inside a parser callback; the protocol answers with its problem."""


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head and deadlines (see the module doc)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        *,
        limits: Limits,
        client: tuple[str, int],
        release: Callable[[], None],
        head_deadline: float,
    ) -> None:
        super().__init__(config, server_state, app_state)
        self._limits = limits
        self._peer = client
        self._release = release
        self._refusal: Problem | None = None
        # The head: bytes seen while one is incomplete (raw), and the exact size and count of
        # its complete lines (from the parser's callbacks).
        self._in_head = True
        self._head_bytes = 0
        self._head_size = 0
        self._head_count = 0
        # One lazy timer each: it is re-armed from the deadline when it fires early, rather than
        # cancelled and re-created on every request or every body chunk.
        self._head_deadline = head_deadline
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_pending = False
        self._body_seen = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    # --- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.client = self._peer  # the real client: from the PROXY header, else the socket
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        self._release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self._limits.header_max_bytes:
            # A line still arriving: httptools would buffer it whole, however long.
            self._answer(self._too_large(f"request head exceeds {self._limits.header_max_bytes} bytes"))
        elif self._body_pending and self._body_timer is None:
            self._body_seen = self.loop.time()
            self._body_timer = self.loop.call_at(self._body_seen + self._limits.body_timeout, self._body_due)

    # --- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = self._head_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self._limits.header_line_max_bytes:
            self._refuse(f"the request line exceeds {self._limits.header_line_max_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 4  # "name: value\r\n"
        self._head_size += line
        self._head_count += 1
        limits = self._limits
        if line > limits.header_line_max_bytes:
            self._refuse(f"a header line exceeds {limits.header_line_max_bytes} bytes")
        if self._head_count > limits.header_max_count:
            self._refuse(f"more than {limits.header_max_count} header fields")
        if self._head_size + len(self.url) > limits.header_max_bytes:
            self._refuse(f"request head exceeds {limits.header_max_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._body_pending = True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_seen = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # The next head's deadline runs from the end of this response.
            self._head_deadline = self.loop.time() + self._limits.head_timeout
            self._arm_head()

    # --- deadlines -----------------------------------------------------------------------

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_due)

    def _head_due(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        serving = self.cycle is not None and not self.cycle.response_complete
        if not self._in_head or serving:
            return  # a request is being read or answered; re-armed when its response ends
        if self.loop.time() < self._head_deadline:
            self._arm_head()
            return
        _throttle.log("http.head_timeout", client=self.client[0] if self.client else "")
        if self._head_bytes:
            detail = f"no complete request head in {self._limits.head_timeout:g} s"
            self._answer(Problem("request-timeout", detail))
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _body_due(self) -> None:
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._body_seen = now  # the server is not reading: the client is not to blame
        due = self._body_seen + self._limits.body_timeout
        if now < due:
            self._body_timer = self.loop.call_at(due, self._body_due)
            return
        _throttle.log("http.body_timeout", client=self.client[0] if self.client else "")
        self._answer(Problem("request-timeout", f"no request body for {self._limits.body_timeout:g} s"))

    # --- answers -------------------------------------------------------------------------

    def _too_large(self, detail: str) -> Problem:
        _throttle.log("http.headers_too_large", client=self.client[0] if self.client else "", detail=detail)
        return Problem("headers-too-large", detail)

    def _refuse(self, detail: str) -> None:
        self._refusal = self._too_large(detail)
        raise _Refused(detail)  # httptools wraps it; uvicorn calls send_400_response

    def send_400_response(self, msg: str) -> None:
        problem, self._refusal = self._refusal, None
        self._answer(problem or Problem("malformed-request", "the request is not valid HTTP/1.1"))

    def _answer(self, problem: Problem) -> None:
        """Answer `problem` and close: the rest of the connection cannot be trusted to frame."""
        self._in_head = self._body_pending = False
        cycle = self.cycle
        if cycle is not None:
            this_request = cycle.scope is self.scope
            if cycle.response_started if this_request else not cycle.response_complete:
                # The app has answered this request (without waiting for its whole body), or is
                # still answering an earlier, pipelined one: another answer would be one the
                # client did not ask for, or garble the stream, so the connection just ends.
                self.transport.close()
                return
            if this_request:
                # The app is waiting for this request's body: it sees a disconnect, sends nothing.
                cycle.disconnected = True
                cycle.message_event.set()
        body = json.dumps(problem.to_json()).encode()
        head = [STATUS_LINE[problem.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()


class _Listener:
    """Accepts connections on one socket and admits each (see the module doc)."""

    def __init__(self, server: LiaisonServer, listen: Listen, sock: socket.socket) -> None:
        self.server, self.listen, self.sock = server, listen, sock
        self.slots = _Slots(listen.limits.per_address)
        self.admitting: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._accept(), name=f"liaison-{self.listen.name}")

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for task in list(self.admitting):
            task.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        tasks = [t for t in (self.task, *self.admitting) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        load = self.listen.load
        if load is not None:
            load.listening()
        while True:
            if load is not None:
                await load.wait_turn()  # a worker with more connections than another waits
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except OSError as e:  # e.g. EMFILE: out of file descriptors; try again shortly
                _throttle.log("connection.accept_failed", error=str(e))
                await asyncio.sleep(0.1)
                continue
            closed = load.opened() if load is not None else _nothing
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._admit(conn, (str(peer[0]), int(peer[1])), closed))
            self.admitting.add(task)
            task.add_done_callback(self.admitting.discard)

    async def _admit(self, conn: socket.socket, peer: tuple[str, int], closed: Callable[[], None]) -> None:
        """Admit one accepted connection; `closed` is called once it is closed (by the
        protocol from the moment it owns the connection, else here)."""
        loop = asyncio.get_running_loop()
        limits = self.listen.limits
        deadline = loop.time() + limits.head_timeout
        client = peer
        release: Callable[[], None] | None = None
        owned = False
        try:
            if limits.proxy_protocol:
                if not limits.is_trusted(peer[0]):
                    _throttle.log("connection.refused", reason="not a trusted proxy", peer=peer[0])
                    conn.close()
                    return
                try:
                    header = await asyncio.wait_for(proxyv2.read_header(loop, conn), deadline - loop.time())
                except (proxyv2.ProxyHeaderError, TimeoutError, OSError) as e:
                    reason = "no PROXY v2 header in time" if isinstance(e, TimeoutError) else str(e)
                    _throttle.log("connection.refused", reason=reason, peer=peer[0])
                    conn.close()
                    return
                if header.source is not None:
                    client = header.source
            release = self.slots.take(address_key(client[0]))
            if release is None:
                reason = "too many connections from this address"
                _throttle.log("connection.refused", reason=reason, client=client[0])
                conn.close()
                return
            timeout = max(deadline - loop.time(), 0.01)
            slot = release

            def protocol_release() -> None:
                slot()
                closed()

            def protocol() -> _Protocol:
                return _Protocol(
                    self.listen.config,
                    self.server.server_state,
                    self.server.app_state(self.listen),
                    limits=limits,
                    client=client,
                    release=protocol_release,
                    head_deadline=deadline,
                )

            try:
                if self.listen.ssl is None:
                    await loop.connect_accepted_socket(protocol, conn)
                else:
                    await loop.connect_accepted_socket(
                        protocol, conn, ssl=self.listen.ssl, ssl_handshake_timeout=timeout
                    )
            except Exception:  # a failed or timed-out TLS handshake: nothing to answer
                release()
                conn.close()  # a no-op when the transport has closed (or detached) it already
            else:
                owned = True  # the protocol releases its slot and counts it closed when it closes
        except asyncio.CancelledError:
            if release is not None:
                release()
            conn.close()
            raise
        finally:
            if not owned:
                closed()


def _nothing() -> None:
    """What a connection's close calls where no worker counts its connections."""


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening, non-blocking TCP socket on `host`:`port` (OSError if it cannot be had)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class LiaisonServer(uvicorn.Server):
    """uvicorn's server (lifespan, signals, graceful shutdown) on `Listen`ers of our own."""

    def __init__(self, config: uvicorn.Config, listens: Sequence[Listen]) -> None:
        super().__init__(config)
        self.listens = list(listens)

    def app_state(self, listen: Listen) -> dict[str, Any]:
        # The lifespan's state goes to the app it started (the API); other listeners' apps
        # (metrics) read what they need from it themselves.
        return self.lifespan.state if listen.config is self.config else {}

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        listeners: list[_Listener] = []
        try:
            for listen in self.listens:
                if not listen.config.loaded:
                    listen.config.load()
                if listen.sock is not None:
                    sock = listen.sock
                else:
                    sock = bind(listen.host, listen.port, self.config.backlog)
                listeners.append(_Listener(self, listen, sock))
        except OSError as e:
            for listener in listeners:
                listener.sock.close()
            logging.getLogger("uvicorn.error").error(e)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        for listener in listeners:
            listener.start()
            log.info(
                "listening",
                extra={
                    "fields": {
                        "event": "listening",
                        "listener": listener.listen.name,
                        "address": f"{listener.listen.host}:{listener.listen.port}",
                        "tls": listener.listen.ssl is not None,
                        "proxy_protocol": listener.listen.limits.proxy_protocol,
                    }
                },
            )
        self.servers = listeners  # type: ignore[assignment]  # close() and wait_closed() are all it uses
        self.started = True
