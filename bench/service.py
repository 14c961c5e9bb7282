"""Service throughput over HTTPS: accepted messages/s and latency at 1, 8 and 32 senders, the
inbox fetch rate, and the server's peak memory.

Run: .venv/bin/python bench/service.py [--postgres URL] [--per-sender 100] [--profile DIR]
                                       [--workers N] [--sqlite-only | --postgres-only]

Each run starts `liaison-server run` as a subprocess, TLS on (its own dev certificate), on a
fresh data directory: SQLite, and PostgreSQL too when --postgres or LIAISON_TEST_POSTGRES_URL
names a server (a fresh database is created and dropped). The server runs with its defaults
except the per-device rate limit, raised so that it does not throttle the load (set-up
waits out the per-address enrolment limit rather than raising it).

What a sender does: SECRET//AIRDEF//REL TO UKR, USA messages of 1 KiB, each sealed to 5
recipient devices (ML-KEM-768+X25519 HPKE, Ed25519 + ML-DSA-65 signatures), submitted with
`to` naming the 5 recipient principals, over one keep-alive TLS connection per sender, each
sender waiting for its answer before the next (closed loop). The client keeps its own CPU out
of the way: envelopes are sealed (in worker processes) and every request is signed (RFC 9421,
a fresh nonce and `created` each) and serialised to bytes just before its phase, and the
HTTP/1.1 client is a few lines over asyncio streams. Latency is from writing a request to
reading its whole response, as the client sees it.

The inbox phase: the 5 recipients page through their inboxes (GET /v1/inbox?limit=100)
concurrently, then fetch messages (GET /v1/messages/{id}, each first fetch logged as
`message.delivered`). Memory is the server process's VmHWM (peak resident set) from /proc.

Below the table, the 32-sender phase's tail: p95, p98, p99 and the slowest request, and the
p99 once more without each sender's first 5 requests. Every sender starts at the same
instant, so the first rounds arrive as one burst and queue behind one another (here
up to 300 ms for a first request with one worker, 100-130 ms with two); a steady load does
not have that convoy. The table's p99 counts every request; the second figure only shows what
part of it the start is.

Besides ok/s and latency, each phase shows the server's CPU (of one core; with --workers N,
of all its processes together), the client's own CPU, and how many requests shared a write
transaction (from liaison_write_batches_total, summed over the workers' metrics listeners).
With --workers N, the 32-sender phase's line also says what share of the accepted messages
each worker took (liaison_messages_accepted_total, per worker): each connection stays with
the worker that accepted it, and an uneven split moves a run's figures (the workers take
connections in turn, `service/api/balance.py`; before, the kernel's hash split them 21 and
11 or worse about one run in nine). The next line gives each serving process's CPU in
that phase, its event loop's thread apart from its other threads (the writer's batches among
them), from /proc: a process runs Python on one core at a time, so the two add up to about
one core when the process is busy.

The ceiling, in the same run (issue 17, item 1): after each backend's phases, the server is
stopped and `bench/_ceiling.py` started on the same TLS stack (uvicorn, httptools, the same
certificate, TLS 1.3, the same gc settings, as many worker processes): `POST /v1/messages`
reads the body, verifies its one Ed25519 request signature and Content-Digest and answers
201, nothing else. The same client sends it the same kind of requests (fresh envelopes, the
same senders and concurrency), and Liaison's submit rate is shown as a ratio of it. Then the
same ceiling once more with the checks Liaison cannot skip for a submit added (the body parsed
as JSON, the envelope parsed, its sender matched to the signer and its Ed25519 and ML-DSA-65
signatures verified): what a server that did nothing but verify could reach here, measured
in the same run, against which the rest of Liaison's cost (policy, database, log, receipt)
shows.

With --profile DIR, py-spy (pip install py-spy) samples the server (stacks holding the GIL)
during the 32-sender phase, writes DIR/<backend>.txt (collapsed stacks) and prints own time
by package and total time of the project's functions. Nothing here asserts a target: it
reports what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _server import create_pg, drop_pg, wait_ready

from liaison.clients._directory import (
    PrincipalState,
    device_enrolment,
    genesis_statements,
    invitation_change,
    new_code,
    principal_change,
)
from liaison.crypto.anchors import Anchors
from liaison.crypto.encoding import b64url_decode, b64url_encode
from liaison.crypto.envelope import parse_envelope, seal, verify_envelope
from liaison.crypto.httpsig import sign_request
from liaison.crypto.keys import DeviceKeys, PublicBundle, generate_device
from liaison.crypto.labels import Label
from liaison.crypto.policy import Policy
from liaison.crypto.statements import SignedStatement, channel_statement, invitation_public, sign_statement

LABEL_TEXT = "SECRET//AIRDEF//REL TO UKR, USA"
LABEL = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))
RECIPIENTS = [f"ukr-recipient-{i}" for i in range(5)]
CONCURRENCY = (1, 8, 32)
#: Requests of each sender that the tail's second p99 leaves out (see `report`).
WARM_UP = 5
BIN = Path(sys.executable).parent
_CL = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


# --- a minimal HTTP/1.1 client over TLS (so the client's CPU stays small) -------------------


class Conn:
    """One keep-alive connection; `call` writes prepared bytes and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, ctx: ssl.SSLContext | None) -> Conn:
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None, limit=1 << 22
        )
        return cls(r, w)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        m = _CL.search(head)
        body = await self.reader.readexactly(int(m.group(1))) if m else b""
        return int(head[9:12]), body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await self.writer.wait_closed()


@dataclass
class Target:
    port: int
    ctx: ssl.SSLContext
    metrics_port: int = 0  # the server's metrics listener (plain HTTP, loopback)
    workers: int = 1  # worker N's metrics listener is on metrics_port + N

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def prepare(self, keys: DeviceKeys, method: str, path: str, body: Any = None) -> bytes:
        """The request's bytes, signed now with a fresh nonce."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = {"content-type": "application/json"} if data else {}
        headers.update(
            sign_request(
                method, self.base + path, headers, data or None, keys, nonce=secrets.token_urlsafe(18)
            )
        )
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if data:
            lines.append(f"content-length: {len(data)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data

    async def call(
        self, keys: DeviceKeys | None, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        """One request on a fresh connection (set-up only)."""
        if keys is None:
            data = json.dumps(body).encode()
            req = (
                f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-type: "
                f"application/json\r\ncontent-length: {len(data)}\r\n\r\n"
            ).encode() + data
        else:
            req = self.prepare(keys, method, path, body)
        conn = await Conn.open(self.port, self.ctx)
        try:
            status, raw = await conn.call(req)
        finally:
            await conn.close()
        return status, json.loads(raw) if raw else None


# --- the server under test -------------------------------------------------------------------


@dataclass
class Server:
    backend: str
    data: Path
    init: dict[str, Any]
    env: dict[str, str]
    workers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    metrics_port: int = 0
    log: Path | None = None

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.metrics_port = _free_ports(self.workers, avoid=self.port)  # worker N: + N
        self.env["LIAISON_METRICS_PORT"] = str(self.metrics_port)
        self.log = self.data.parent / f"server-{self.backend}.log"
        self.proc = subprocess.Popen(
            [
                *(str(BIN / "liaison-server"), "run", "--data-dir", str(self.data)),
                *("--port", str(self.port), "--workers", str(self.workers)),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        wait_ready(self.proc, self.port, self.init["tls_cert"], self.log, server_hostname="127.0.0.1")

    def stop(self) -> None:
        _terminate(self.proc)

    def status(self) -> dict[str, int]:
        """VmHWM / VmRSS in kB, from /proc: of the serving process, the largest worker's when
        there are several (the supervisor serves nothing); and how many processes serve."""
        serving = self.serving()
        out = {"VmHWM": 0, "VmRSS": 0, "processes": len(serving)}
        for pid in serving:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = max(out[key], int(value.split()[0]))
        return out

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return _cpu_seconds(_pids(self.proc))

    def serving(self) -> list[int]:
        """The processes that serve: the workers, or the one server process."""
        assert self.proc is not None
        pids = _pids(self.proc)
        return [p for p in pids[1:] if _is_worker(p)] if self.workers > 1 else pids[:1]

    def thread_cpu(self) -> list[tuple[float, float]]:
        """`_thread_cpu` of each serving process."""
        return [_thread_cpu(pid) for pid in self.serving()]


def _free_ports(n: int, avoid: int) -> int:
    """The first of `n` consecutive free loopback ports (none of them `avoid`)."""
    for base in range(20_000, 60_000, 97):
        if base <= avoid < base + n:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + n):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise SystemExit(f"no {n} consecutive free ports")


def _pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """A process and its children (a server's or the ceiling's workers)."""
    ps = ["ps", "--ppid", str(proc.pid), "-o", "pid="]
    out = subprocess.run(ps, capture_output=True, text=True)
    return [proc.pid, *map(int, out.stdout.split())]


def _is_worker(pid: int) -> bool:
    """A worker process of `run --workers` (not multiprocessing's resource tracker)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stat_cpu(stat: Path) -> float:
    """User + system CPU seconds from a /proc `stat` file (a process's or one thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _stat_cpu(Path(f"/proc/{pid}/stat"))
    return total


def _thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of `pid` so far: its main thread's, and its other threads' together. In a
    server process, the event loop's, and the rest's (the writer's batches, the threads that
    read SQLite for the loop, the WAL's checkpoints)."""
    main, others = 0.0, 0.0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            cpu = _stat_cpu(task / "stat")
            if int(task.name) == pid:
                main += cpu
            else:
                others += cpu
    return main, others


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, 20 s to exit, then SIGKILL."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def init_server(backend: str, tmp: Path, database_url: str | None, workers: int) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    # The per-device limit (200/s by default) would throttle one closed-loop sender.
    env.update(LIAISON_RATE_LIMIT_PER_SECOND="1000000", LIAISON_RATE_LIMIT_BURST="1000000")
    if database_url:
        env["LIAISON_DATABASE_URL"] = database_url
    data = tmp / f"data-{backend}"
    out = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    return Server(backend, data, json.loads(out.stdout), env, workers)


@dataclass
class Ceiling:
    """bench/_ceiling.py as a process: the least a signed submit costs on this stack."""

    cert: str
    key: str
    workers: int
    #: `signature` (the request's signature only) or `envelope` (also the envelope's two).
    mode: str = "signature"
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self, tmp: Path, senders: list[DeviceKeys]) -> None:
        keys = tmp / "ceiling-keys.json"
        keys.write_text(json.dumps({k.device_id: k.public.to_json() for k in senders}))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        log = tmp / "ceiling.log"
        script = Path(__file__).with_name("_ceiling.py")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(self.port),
                self.cert,
                self.key,
                str(keys),
                str(self.workers),
                self.mode,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the ceiling exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.2)
        raise SystemExit("the ceiling did not start")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return _cpu_seconds(_pids(self.proc))

    def stop(self) -> None:
        _terminate(self.proc)


async def ceiling_phase(
    server: Server,
    scene: Scene,
    per_sender: int,
    pool: concurrent.futures.ProcessPoolExecutor,
    tmp: Path,
    workers: int,
    mode: str = "signature",
) -> Result:
    """The same x32 submit phase against the ceiling (fresh envelopes, the same senders);
    `mode` `envelope`: the ceiling that also verifies what Liaison must of each envelope."""
    n = CONCURRENCY[-1]
    cert = server.init["tls_cert"]
    ceiling = Ceiling(cert, str(Path(cert).with_name("key.pem")), workers, mode)
    ceiling.start(tmp, scene.senders[:n])
    try:
        t = Target(ceiling.port, ssl.create_default_context(cafile=cert))
        jobs = [(scene.senders[i], i, scene.bundles, per_sender, 1024) for i in range(n)]
        envelopes = list(pool.map(_seal_many, jobs))
        queues = [
            [
                t.prepare(scene.senders[i], "POST", "/v1/messages", {"envelope": env, "to": RECIPIENTS})
                for env in envelopes[i]
            ]
            for i in range(n)
        ]
        name = f"ceiling: submit x{n} (one signature check)"
        if mode == "envelope":
            name = f"ceiling + envelope: submit x{n} (3 checks)"
        return await run_phase(t, ceiling, name, queues, 201)
    finally:
        ceiling.stop()


# --- set-up: principals, devices, channels ---------------------------------------------------


@dataclass
class Scene:
    root: DeviceKeys
    senders: list[DeviceKeys]
    recipients: list[DeviceKeys]
    bundles: list[PublicBundle] = field(default_factory=list)


async def enrol(t: Target, code: str, keys: DeviceKeys, origin: str) -> tuple[int, Any]:
    """Enrol as a device does (protocol 9.8): the invitation by the key the code derives, the
    KEM challenge, its signed answer, the enrolment with the device's own statement.
    Enrolment is limited per client address (burst 20, then 1/s): each step waits its turn."""

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        while True:
            status, answer = await t.call(None, method, path, body)
            if status != 429:
                return status, answer
            await asyncio.sleep(1.0)

    key = b64url_encode(invitation_public(code))
    status, doc = await call("GET", f"/v1/enrol/invitations/{key}")
    if status != 200:
        return status, doc
    request = {"invitation_key": key, "bundle": keys.signed_bundle()}
    status, body = await call("POST", "/v1/enrol/challenge", request)
    if status != 200:
        return status, body
    proof = keys.answer_kem_challenge(b64url_decode(body["challenge"]))
    invitation = SignedStatement.from_json(doc["invitation"]) if doc["invitation"] else None
    statement = device_enrolment(keys, origin, doc["nation"], invitation, code).to_json()
    return await call("POST", "/v1/enrol", {**request, "proof": proof, "statement": statement})


async def setup(t: Target, init: dict[str, Any], n_senders: int) -> Scene:
    """Principals, devices and channels, each change with the statement the admin's client
    signs (protocol 9.3), through the same builders as the client library."""
    _, served = await t.call(None, "GET", "/v1/log-key")
    log_key = served["log_verifier_key"]
    origin = log_key.split("+", 1)[0]
    _, policy_doc = await t.call(None, "GET", "/v1/policy")
    policy = Policy.from_json(policy_doc)
    root = generate_device("root")
    status, body = await enrol(t, init["root_enrolment_code"], root, origin)
    assert status == 201, body
    _, me = await t.call(root, "GET", "/v1/me")
    view = me["principal"]
    state = PrincipalState(
        view["nation"],
        view["kind"],
        view["clearance"],
        tuple(view["compartments"]),
        tuple(view["roles"]),
        True,
    )
    roots, pol, rootp = genesis_statements(root, origin, policy, state)
    for item in ({"statement": roots.to_json()}, {"statement": pol.to_json()}, rootp):
        s, b = await t.call(root, "POST", "/v1/directory/statements", item)
        assert s == 201, b
    anchors = Anchors(log_key, 1, roots.statement.digest(), policy.version)

    async def principal(pid: str, nation: str) -> DeviceKeys:
        grant = PrincipalState(nation, "person", "SECRET", ("AIRDEF",), ("analyst",), True)
        body = {
            "id": pid,
            "display_name": pid,
            "nation": nation,
            "clearance": "SECRET",
            "compartments": ["AIRDEF"],
        }
        s, b = await t.call(
            root,
            "POST",
            "/v1/admin/principals",
            {**body, **principal_change(root, origin, policy, None, pid, grant)},
        )
        assert s == 201, b
        code = new_code()
        invitation = invitation_change(
            root,
            origin,
            principal=pid,
            nation=nation,
            code=code,
            expires=datetime.now(UTC) + timedelta(hours=1),
            anchors=anchors.to_json(),
            digest=anchors.digest,
        )
        s, b = await t.call(root, "POST", f"/v1/admin/principals/{pid}/enrolment-codes", invitation)
        assert s == 201, b
        keys = generate_device(pid)
        s, e = await enrol(t, code, keys, origin)
        assert s == 201, e
        return keys

    recipients = [await principal(pid, "UKR") for pid in RECIPIENTS]
    senders = [await principal(f"usa-sender-{i:02d}", "USA") for i in range(n_senders)]
    for i, sender in enumerate(senders):
        cid = f"bench-{i:02d}"
        first = sign_statement(
            root,
            channel_statement(
                origin, channel=cid, ceiling=LABEL, members=[], seq=1, prev=None, signer=root.device_id
            ),
        )
        s, b = await t.call(
            root,
            "POST",
            "/v1/admin/channels",
            {"id": cid, "ceiling": LABEL_TEXT, "statement": first.to_json()},
        )
        assert s == 201, b
        members = sorted([sender.principal, *RECIPIENTS])
        second = channel_statement(
            origin,
            channel=cid,
            ceiling=LABEL,
            members=members,
            seq=2,
            prev=first.statement.digest(),
            signer=root.device_id,
        )
        s, b = await t.call(
            root,
            "PUT",
            f"/v1/admin/channels/{cid}/members",
            {"principals": members, "statement": sign_statement(root, second).to_json()},
        )
        assert s == 200, b
    s, b = await t.call(senders[0], "GET", f"/v1/channels/bench-00/recipients?label={quote(LABEL_TEXT)}")
    assert s == 200, b
    bundles = [
        PublicBundle.from_signed(d["signed_bundle"]) for d in b["devices"] if d["principal"] in RECIPIENTS
    ]
    assert len(bundles) == 5
    return Scene(root, senders, recipients, bundles)


def _spin(seconds: float) -> int:
    """Pure-Python work for `seconds` of wall time: how many loop rounds it did."""
    rounds, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            pass
        rounds += 1
    return rounds


def parallel_capacity(pool: concurrent.futures.ProcessPoolExecutor, n: int, seconds: float = 1.0) -> float:
    """How much more CPU work `n` processes do at once than one alone (n on n idle cores; 1.0
    when they share one core's worth, e.g. hyperthreads or a CPU quota): what workers can gain."""
    one = pool.submit(_spin, seconds).result()
    many = sum(pool.map(_spin, [seconds] * n))
    return many / one


def _seal_many(args: tuple[DeviceKeys, int, list[PublicBundle], int, int]) -> list[dict[str, Any]]:
    sender, index, bundles, count, size = args
    return [
        seal(os.urandom(size), channel=f"bench-{index:02d}", label=LABEL, sender=sender, recipients=bundles)
        for _ in range(count)
    ]


def envelope_signatures_cost(scene: Scene, seconds: float = 1.0) -> float:
    """CPU seconds, in this process, to verify one bench envelope's two signatures (Ed25519
    and ML-DSA-65, as `verify_envelope` does on the server for every submit): work the
    ceiling does not do, whatever else Liaison's submit path costs."""
    sender = scene.senders[0]
    env = _seal_many((sender, 0, scene.bundles, 1, 1024))[0]
    parsed = parse_envelope(env)
    n, start = 0, time.process_time()
    while n < 10 or time.process_time() - start < seconds:
        verify_envelope(parsed, sender.public)
        n += 1
    return (time.process_time() - start) / n


# --- phases ----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    ok: int
    errors: collections.Counter[int]
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float
    batches: float
    #: Each latency's position in its sender's sequence (0: the sender's first request).
    positions: list[int]
    #: Messages each worker accepted in the phase (empty for the ceiling).
    accepted: list[float] = field(default_factory=list)
    #: Each serving process's CPU in the phase, as shares of one core: its main thread (the
    #: event loop) and its other threads (empty for the ceiling).
    threads: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def pct(self, q: float, *, after: int = 0) -> float:
        """The q-quantile of the latencies in ms; with `after`, of each sender's requests after
        its first `after` only."""
        xs = sorted(x for x, k in zip(self.latencies, self.positions, strict=True) if k >= after)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def run_phase(
    t: Target, server: Server | Ceiling, name: str, queues: list[list[bytes]], ok_status: int
) -> Result:
    conns = [await Conn.open(t.port, t.ctx) for _ in queues]
    latencies: list[float] = []
    positions: list[int] = []
    errors: collections.Counter[int] = collections.Counter()
    ok = 0

    async def worker(conn: Conn, requests: list[bytes]) -> None:
        nonlocal ok
        for k, req in enumerate(requests):
            start = time.perf_counter()
            status, _ = await conn.call(req)
            latencies.append(time.perf_counter() - start)
            positions.append(k)
            if status == ok_status:
                ok += 1
            else:
                errors[status] += 1

    before = await worker_counters(t)
    threads0 = server.thread_cpu() if isinstance(server, Server) else []
    cpu0, own0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(c, q) for c, q in zip(conns, queues, strict=True)))
    seconds = time.perf_counter() - t0
    cpu, own = server.cpu_seconds() - cpu0, time.process_time() - own0
    threads1 = server.thread_cpu() if threads0 and isinstance(server, Server) else []
    threads = [
        ((m1 - m0) / seconds, (o1 - o0) / seconds)
        for (m0, o0), (m1, o1) in zip(threads0, threads1, strict=True)
    ]
    after = await worker_counters(t)
    for c in conns:
        await c.close()
    batches = sum(_grown(before, after, "liaison_write_batches_total")) if t.metrics_port else float("nan")
    accepted = _grown(before, after, "liaison_messages_accepted_total")
    return Result(name, ok, errors, seconds, latencies, cpu, own, batches, positions, accepted, threads)


async def worker_counters(t: Target) -> dict[str, list[float]]:
    """Each worker's write batches and accepted messages so far, from its metrics listener
    (empty lists for a server without one: the ceiling)."""
    out: dict[str, list[float]] = {name: [] for name in _COUNTERS}
    if not t.metrics_port:
        return out
    for port in range(t.metrics_port, t.metrics_port + t.workers):
        conn = await Conn.open(port, None)
        try:
            _, body = await conn.call(f"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode())
        finally:
            await conn.close()
        for name in _COUNTERS:
            m = re.search(rb"^" + name.encode() + rb" ([0-9.e+]+)$", body, re.MULTILINE)
            out[name].append(float(m.group(1)) if m else float("nan"))
    return out


#: The counters `worker_counters` reads.
_COUNTERS = ("liaison_write_batches_total", "liaison_messages_accepted_total")


def _grown(before: dict[str, list[float]], after: dict[str, list[float]], name: str) -> list[float]:
    """How much counter `name` grew in each worker between two readings."""
    return [b - a for a, b in zip(before[name], after[name], strict=True)]


async def send_phases(
    t: Target,
    server: Server,
    scene: Scene,
    per_sender: int,
    pool: concurrent.futures.ProcessPoolExecutor,
    profile: Path | None,
) -> list[Result]:
    results = []
    for n in CONCURRENCY:
        jobs = [
            (scene.senders[i], i, scene.bundles, per_sender if n > 1 else per_sender * 4, 1024)
            for i in range(n)
        ]
        envelopes = list(pool.map(_seal_many, jobs))
        queues = [
            [
                t.prepare(scene.senders[i], "POST", "/v1/messages", {"envelope": env, "to": RECIPIENTS})
                for env in envelopes[i]
            ]
            for i in range(n)
        ]
        spy = _start_profiler(server, profile) if profile and n == CONCURRENCY[-1] else None
        results.append(await run_phase(t, server, f"submit x{n}", queues, 201))
        if spy:
            _finish_profiler(spy, profile, server.backend)  # type: ignore[arg-type]
    return results


async def inbox_phases(t: Target, server: Server, scene: Scene, fetches: int) -> list[Result]:
    # Learn each recipient's cursors (untimed), then page through again with prepared requests.
    pages: list[list[str]] = []
    ids: list[list[str]] = []
    for keys in scene.recipients:
        after, paths, mine = 0, [], []
        while True:
            path = f"/v1/inbox?after={after}&limit=100"
            s, b = await t.call(keys, "GET", path)
            assert s == 200, b
            paths.append(path)
            mine += [m["id"] for m in b["messages"]]
            if not b["more"]:
                break
            after = b["next"]
        pages.append(paths)
        ids.append(mine)
    listing = [[t.prepare(k, "GET", p) for p in ps] for k, ps in zip(scene.recipients, pages, strict=True)]
    r1 = await run_phase(t, server, "inbox pages (100 items) x5", listing, 200)
    r1.name += f" = {r1.rate * 100:,.0f} items/s"
    fetch = [
        [t.prepare(k, "GET", f"/v1/messages/{m}") for m in mine[:fetches]]
        for k, mine in zip(scene.recipients, ids, strict=True)
    ]
    r2 = await run_phase(t, server, "message fetch (first, logged) x5", fetch, 200)
    return [r1, r2]


def _start_profiler(server: Server, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(spy).exists():
        print("  (py-spy not installed: pip install py-spy; not profiling)")
        return None
    out.mkdir(parents=True, exist_ok=True)
    assert server.proc is not None
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--subprocesses",  # the workers, when there are several
            "--format",
            "raw",
            "--rate",
            "250",
            "--nonblocking",
            "--gil",
            "-o",
            str(out / f"{server.backend}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach
    return proc


def _finish_profiler(spy: subprocess.Popen[bytes], out: Path, backend: str) -> None:
    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=30)
    summarise_profile(out / f"{backend}.txt")


def _package(frame: str) -> str:
    """`func (path/to/file.py:12)` -> the first part of the path ("sqlalchemy", "service")."""
    where = frame.rpartition(" (")[2].rstrip(")")
    return where.split("/")[0] if "/" in where else where.split(":")[0]


def summarise_profile(path: Path, top: int = 10) -> None:
    """Own time by package (where the CPU is spent) and total time of project functions."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        samples += n
        leaf = frames[-1]
        # A stack that ends in the event loop's own frame is time in C under it: uvloop,
        # TLS, HTTP parsing (py-spy sees no Python frame there).
        own["event loop, TLS, HTTP (C)" if "runners.py" in leaf else _package(leaf)] += n
        for f in set(frames):
            if f.rpartition(" (")[2].startswith(("service/", "crypto/")):
                total[f] += n
    if not samples:
        print("  profile: no samples")
        return
    print(f"  profile: {samples} samples holding the GIL -> {path}")
    print("  own time by package:")
    for name, n in own.most_common(top):
        print(f"    {100 * n / samples:5.1f}%  {name}")
    print("  total time of project functions:")
    for f, n in total.most_common(top):
        print(f"    {100 * n / samples:5.1f}%  {f}")


# --- main ------------------------------------------------------------------------------------


def report(
    backend: str,
    results: list[Result],
    mem: dict[str, int],
    wall: float,
    ceiling: Result | None,
    signatures: float | None = None,
    checked: Result | None = None,
) -> None:
    n = mem["processes"]
    print(f"\n== {backend} (TLS, {'one server process' if n == 1 else f'{n} worker processes'}) ==")
    print(
        f"{'phase':<46} {'ok/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'ok':>5} {'errors':>7} "
        f"{'srv CPU':>7} {'cli CPU':>7} {'req/batch':>9}"
    )
    for r in results + [c for c in (ceiling, checked) if c is not None]:
        errs = ",".join(f"{k}:{v}" for k, v in sorted(r.errors.items())) or "-"
        per_batch = (r.ok + sum(r.errors.values())) / r.batches if r.batches else float("nan")
        print(
            f"{r.name:<46} {r.rate:7,.0f} {r.pct(0.5):7.1f} {r.pct(0.99):7.1f} {r.ok:5d} "
            f"{errs:>7} {r.server_cpu / r.seconds:7.0%} {r.client_cpu / r.seconds:7.0%} "
            f"{per_batch:9.1f}"
        )
    print(
        f"server memory{' (largest worker)' if n > 1 else ''}: peak {mem['VmHWM'] / 1024:.0f} MB "
        f"(VmHWM), now {mem['VmRSS'] / 1024:.0f} MB; bench wall time {wall:.0f} s"
    )
    top = next((r for r in results if r.name == f"submit x{CONCURRENCY[-1]}"), None)
    if top is not None:
        # Every sender starts at once: the first rounds queue behind one another (a convoy
        # that a steady load does not have); shown apart, never instead of the p99 above.
        print(
            f"submit x{CONCURRENCY[-1]} tail: p95 {top.pct(0.95):.1f}, p98 {top.pct(0.98):.1f}, "
            f"p99 {top.pct(0.99):.1f}, max {top.pct(1.0):.1f} ms; p99 without each sender's first "
            f"{WARM_UP} requests (the simultaneous start): {top.pct(0.99, after=WARM_UP):.1f} ms"
        )
        if len(top.accepted) > 1 and sum(top.accepted) > 0:
            shares = " / ".join(f"{a / sum(top.accepted):.0%}" for a in top.accepted)
            print(
                f"submit x{CONCURRENCY[-1]} across the {len(top.accepted)} workers: {shares} of the "
                f"accepted messages (each connection stays with the worker that accepted it)"
            )
        if top.threads:
            # A process runs Python on one core at a time (the GIL), whatever its threads.
            each = "; ".join(f"event loop {m:.0%} + other threads {o:.0%}" for m, o in top.threads)
            print(f"submit x{CONCURRENCY[-1]}, CPU of each serving process (of one core): {each}")
    if ceiling is not None:
        mine = next(r for r in results if r.name == f"submit x{CONCURRENCY[-1]}")
        print(
            f"submit x{CONCURRENCY[-1]}: {mine.rate:,.0f}/s = {mine.rate / ceiling.rate:.0%} of the "
            f"same-run ceiling ({ceiling.rate:,.0f}/s, one signature check per request, "
            f"{n} worker{'s' if n > 1 else ''})"
        )
        if signatures is not None and ceiling.ok:
            # The ceiling's whole cost per request (HTTP, TLS, one Ed25519 check), in server CPU,
            # against what Liaison must add for the envelope's two signatures alone.
            c = ceiling.server_cpu / ceiling.ok
            print(
                f"the envelope's two signatures (Ed25519 + ML-DSA-65), verified for each submit: "
                f"{signatures * 1e6:,.0f} us of CPU; the ceiling's whole request: {c * 1e6:,.0f} us; "
                f"so at most {c / (c + signatures):.0%} of the ceiling even if nothing else cost anything"
            )
        if checked is not None and checked.ok:
            # Measured, not summed: the same stack doing only the checks Liaison cannot skip.
            print(
                f"a server that verified only what Liaison must of each submit (the request's "
                f"signature, the envelope's form and its two signatures): {checked.rate:,.0f}/s = "
                f"{checked.rate / ceiling.rate:.0%} of the ceiling; Liaison did "
                f"{mine.rate / checked.rate:.0%} of that"
            )


async def bench(
    backend: str,
    database_url: str | None,
    args: argparse.Namespace,
    pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as tmp:
        server = init_server(backend, Path(tmp), database_url, args.workers)
        server.start()
        try:
            target = Target(
                server.port,
                ssl.create_default_context(cafile=server.init["tls_cert"]),
                server.metrics_port,
                args.workers,
            )
            scene = await setup(target, server.init, max(CONCURRENCY))
            results = await send_phases(target, server, scene, args.per_sender, pool, args.profile)
            results += await inbox_phases(target, server, scene, args.fetches)
            mem = server.status()
        finally:
            server.stop()
        ceiling, signatures, checked = None, None, None
        if not args.no_ceiling:
            ceiling = await ceiling_phase(server, scene, args.per_sender, pool, Path(tmp), args.workers)
            checked = await ceiling_phase(
                server, scene, args.per_sender, pool, Path(tmp), args.workers, "envelope"
            )
            signatures = envelope_signatures_cost(scene)
        report(backend, results, mem, time.perf_counter() - t0, ceiling, signatures, checked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--postgres",
        default=os.environ.get("LIAISON_TEST_POSTGRES_URL"),
        help="PostgreSQL server URL (postgresql+asyncpg://...); a fresh database is created on it",
    )
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--sqlite-only", action="store_true")
    which.add_argument("--postgres-only", action="store_true", help="skip SQLite (needs --postgres)")
    ap.add_argument(
        "--per-sender",
        type=int,
        default=100,
        help="messages per sender at 8 and 32 senders (4x that for 1 sender)",
    )
    ap.add_argument("--fetches", type=int, default=300, help="message fetches per recipient")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling phase")
    ap.add_argument(
        "--workers", type=int, default=1, help="server worker processes (liaison-server run --workers)"
    )
    ap.add_argument(
        "--profile", type=Path, default=None, help="sample the server with py-spy during the 32-sender phase"
    )
    args = ap.parse_args()
    print(
        f"liaison service bench: {os.cpu_count()} CPUs, 1 KiB messages to 5 recipients at "
        f"{LABEL_TEXT}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        cpus = os.cpu_count() or 2
        print(
            f"parallel capacity: {cpus} processes at once do {parallel_capacity(pool, cpus):.2f}x "
            "the work of one (pure Python, 1 s)"
        )
        if args.postgres_only and not args.postgres:
            raise SystemExit("--postgres-only needs --postgres URL or LIAISON_TEST_POSTGRES_URL")
        if not args.postgres_only:
            asyncio.run(bench("sqlite", None, args, pool))
        if args.postgres and not args.sqlite_only:
            url = asyncio.run(create_pg(args.postgres))
            try:
                asyncio.run(bench("postgres", url, args, pool))
            finally:
                asyncio.run(drop_pg(url))
    print(
        "\nTargets: >= 1,000 accepted msg/s at 32 senders with p99 < 100 ms, < 300 MB RSS "
        "(SQLite, TLS, 2 cores)."
    )


if __name__ == "__main__":
    main()
