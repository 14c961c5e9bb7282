"""Resumable attachment uploads on the client (issue 16): the library tries a dropped part again
and sends only what the server lacks; `send(..., journal=DIR)` and `liaison send --attach`
survive an interruption (Ctrl-C, a connection that keeps dropping) and resume on a rerun.

Everything runs against a real server of this module's own, behind a real TCP proxy on
loopback (`CuttingProxy`, asyncio in a thread of its own) that can cut connections and slow
them down; the server's public URL is the proxy's, so every client (the library, the CLI in
process and as a subprocess) goes through it. Upload parts are 64 KiB
(`LIAISON_ATTACHMENT_PART_BYTES`), so a few hundred KiB make several parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from liaison.clients import (
    APIError,
    Attachment,
    Client,
    Conflict,
    InputError,
    KeyStore,
    MalformedResponse,
    NotFound,
    RateLimited,
    Retry,
    ServerError,
    ServerUnreachable,
    TransportError,
    _resume,
)
from liaison.clients import _attachments as att
from liaison.clients import _terminal as term
from liaison.crypto.attachments import ciphertext_size
from tests.clients.conftest import BIN, FAST_KDF, PASSPHRASE, Liaison, Server
from tests.clients.test_attachments import Counting, analysts
from tests.service.harness import free_port

PART = 64 * 1024
LABEL = "UNCLASSIFIED//REL TO UKR, USA"
#: More bytes up a connection, with nothing coming down, than any request but a part's PUT.
BURST = 32 * 1024
#: A quick retry policy for connections that keep dropping.
QUICK = Retry(attempts=3, max_wait=1.0, budget=5.0)
#: What the CLI says of a send it keeps for a rerun.
HINT = "rerun the same command to resume the upload"


# --- a proxy that drops connections ------------------------------------------------------------


@dataclass
class _Flow:
    """One proxied connection: bytes gone up since bytes last came down (a request on its way)."""

    up: int = 0
    passed: bool = False  # this request crossed the threshold and was let through


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server. It passes bytes both ways; when armed,
    it cuts a connection (aborts both sockets, the bytes in hand dropped) as a request going
    up it passes `threshold` bytes: after `skip` such requests, `times` times (None: always).
    `rate` (bytes a second, each connection) slows what goes up."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.cuts = 0
        self.rate: float | None = None
        self._threshold: int | None = None
        self._skip = 0
        self._left: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.WriteTransport] = set()

    def start(self) -> None:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        )
        self._server = started.result(10)

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for transport in list(self._open):
                transport.abort()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def arm(self, threshold: int = BURST, *, skip: int = 0, times: int | None = 1) -> None:
        self._skip, self._left, self.cuts = skip, times, 0
        self._threshold = threshold

    def disarm(self) -> None:
        self._threshold, self.rate = None, None

    def _cut_now(self, flow: _Flow) -> bool:
        if self._threshold is None or flow.passed or flow.up <= self._threshold:
            return False
        if self._skip > 0:
            self._skip -= 1
            flow.passed = True
            return False
        self.cuts += 1
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self._threshold = None
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        ends = [writer.transport, up_writer.transport]
        self._open.update(ends)
        flow = _Flow()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, going_up: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if going_up:
                        flow.up += len(data)
                        if self._cut_now(flow):
                            return
                        if self.rate:
                            await asyncio.sleep(len(data) / self.rate)
                    else:
                        flow.up, flow.passed = 0, False
                    dst.write(data)
                    await dst.drain()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, True)),
            asyncio.create_task(pump(up_reader, writer, False)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for end in ends:  # one side ended (or was cut): so does the other, at once
            end.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._open.difference_update(ends)


@dataclass
class ProxiedServer(Server):
    """The server, reached (and signing checked) at the proxy's URL."""

    proxy_port: int = 0

    @property
    def url(self) -> str:
        return f"https://localhost:{self.proxy_port}"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxiedServer, CuttingProxy]]:
    data = tmp_path_factory.mktemp("resume-server") / "data"
    r = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(data), "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    srv = ProxiedServer(data, json.loads(r.stdout))
    proxy = CuttingProxy(srv.port)
    proxy.start()
    srv.proxy_port = proxy.port
    mp = pytest.MonkeyPatch()
    mp.setenv("LIAISON_ATTACHMENT_PART_BYTES", str(PART))
    mp.setenv("LIAISON_PUBLIC_URL", srv.url)
    try:
        srv.start()
        mp.undo()
        yield srv, proxy
    finally:
        mp.undo()
        srv.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def world_home(proxied: tuple[ProxiedServer, CuttingProxy], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root, a USA and a UKR analyst, one channel `ops` up to SECRET//REL TO UKR, USA."""
    return analysts(tmp_path_factory.mktemp("resume-home"), proxied[0])


@pytest.fixture
def proxy(proxied: tuple[ProxiedServer, CuttingProxy]) -> Iterator[CuttingProxy]:
    yield proxied[1]
    proxied[1].disarm()
    gc.collect()  # a connection the test left open is reported as this test's (unraisable)


@pytest.fixture
def run(
    proxied: tuple[ProxiedServer, CuttingProxy],
    world_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Liaison]:
    home = tmp_path / "home"
    shutil.copytree(world_home, home)
    yield Liaison(home, proxied[0], monkeypatch)
    term.set_json_errors(False)  # the in-process CLI's last --json must not outlive the test


def _client(
    run: Liaison, profile: str, transport: httpx.AsyncBaseTransport | None = None, retry: Retry | None = None
) -> Client:
    store = KeyStore(run.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    return Client.from_profile(profile, PASSPHRASE, store=store, transport=transport, retry=retry)


def _big(tmp_path: Path, parts: int = 6, name: str = "imagery.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom((parts - 1) * PART + 1234))
    return path


def _parts(path: Path) -> int:
    return att.parts_of(ciphertext_size(path.stat().st_size), PART)


def _status(client: Client, aid: str) -> dict[str, Any]:
    return client._run(client.aio._json("GET", f"/v1/attachments/{aid}"))


def _journals(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def _journal_ids(directory: Path) -> tuple[str, list[str]]:
    (path,) = _journals(directory)
    obj = json.loads(path.read_bytes())
    return obj["message"], [a["id"] for a in obj["attachments"]]


def _saved_by_ukr(run: Liaison, message_id: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"saved-{message_id[:8]}"
    out.mkdir()
    with _client(run, "ukr") as ukr:
        (saved,) = ukr.save_attachments(message_id, out)
    assert saved.path is not None
    return Path(saved.path).read_bytes()


# --- the pure pieces ---------------------------------------------------------------------------


def test_stored_parts_are_taken_by_size_and_sha256_where_known() -> None:
    size = 2 * PART + 10
    answer = {
        "stored": [
            {"number": 1, "size": PART, "sha256": "ab" * 32},
            {"number": 2, "size": PART},  # a store that keeps no SHA-256 (S3)
            {"number": 3, "size": 9},  # not the size part 3 must have: sent again
            {"number": 4, "size": PART},  # no such part
        ]
    }
    stored = att._stored_parts(answer, "attachment x", size, PART, 3)
    assert sorted(stored) == [1, 2] and stored[2].sha256 is None
    part = os.urandom(PART)
    assert asyncio.run(att._Stored(PART, None).holds(part))  # the size is trusted
    assert asyncio.run(att._Stored(PART, hashlib.sha256(part).hexdigest()).holds(part))
    assert not asyncio.run(att._Stored(PART, "00" * 32).holds(part))  # another part: sent again
    assert not asyncio.run(att._Stored(PART - 1, None).holds(part))
    bad_answers: list[dict[str, Any]] = [
        {"stored": {}},
        {"stored": [7]},
        {"stored": [{"number": "1", "size": 1}]},
    ]
    for bad in bad_answers:
        with pytest.raises(MalformedResponse):
            att._stored_parts(bad, "attachment x", size, PART, 3)
    with pytest.raises(MalformedResponse, match="64 hex"):
        att._stored_parts({"stored": [{"number": 1, "size": PART, "sha256": "AB"}]}, "a", size, PART, 3)


def test_the_backoff_doubles_within_the_retry_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    error = ServerUnreachable("connection to x failed")

    async def tries(retry: Retry) -> int:
        backoff, n = att.Backoff(retry), 1
        with pytest.raises(ServerUnreachable):
            while True:
                await backoff.wait(error)
                n += 1
        return n

    assert asyncio.run(tries(Retry(attempts=4, max_wait=30, budget=60))) == 4
    assert slept == [0.5, 1.0, 2.0]
    slept.clear()
    assert asyncio.run(tries(Retry(attempts=10, max_wait=1.5, budget=3))) == 4  # 0.5 + 1 + 1.5
    assert slept == [0.5, 1.0, 1.5]
    assert asyncio.run(tries(Retry.never())) == 1


def test_what_a_rerun_can_cure() -> None:
    assert _resume.curable(KeyboardInterrupt()) and _resume.curable(asyncio.CancelledError())
    assert _resume.curable(ServerUnreachable("gone")) and _resume.curable(TransportError("x"))
    assert _resume.curable(ServerError("unavailable", 503, "later"))
    assert _resume.curable(RateLimited("rate-limited", 429, "slow down"))
    assert _resume.curable(APIError("incomplete-upload", 400, "missing part 3"))
    assert not _resume.curable(Conflict("duplicate-attachment", 409, "taken"))
    assert not _resume.curable(APIError("bad-part", 400, "no"))
    assert not _resume.curable(InputError("the file ended early"))
    assert not _resume.curable(KeyError("a bug"))


def _identity(path: str = "/data/map.pdf") -> dict[str, Any]:
    return {"server": "https://x", "attachments": [{"path": path, "name": "map.pdf"}]}


def test_a_journal_is_private_atomic_and_named_by_its_send(tmp_path: Path) -> None:
    directory = tmp_path / "pending"
    journal = _resume.Journal(directory, _identity())
    assert journal.load() is None
    pending = _resume.Pending.new([(1000, 123)])
    journal.save(pending)
    assert [p.name for p in directory.iterdir()] == [journal.path.name]  # no temporary file left
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert journal.load() == pending  # the keys and salts round-trip
    # The name: SHA-256 of the domain and the identity's canonical JSON; another send, another.
    expected = hashlib.sha256(
        b"liaison/v1/send-journal\x00"
        + json.dumps(_identity(), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert journal.path.name == f"{expected}.json"
    assert _resume.Journal(directory, _identity("/data/other.pdf")).path != journal.path
    # An undecodable path (surrogate-escaped) still names a journal.
    assert _resume.Journal(directory, _identity("/data/\udcff.pdf")).path.suffix == ".json"
    journal.discard()
    assert journal.load() is None
    journal.discard()  # twice is harmless


@pytest.mark.parametrize(
    "damage",
    [
        b"not json",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1, "identity": {"server": "https://y"}, "message": "x", "attachments": []}',
    ],
)
def test_a_damaged_journal_is_refused_in_one_line(tmp_path: Path, damage: bytes) -> None:
    journal = _resume.Journal(tmp_path, _identity())
    journal.path.write_bytes(damage)
    with pytest.raises(_resume._Damaged) as e:
        journal.load()
    assert "\n" not in str(e.value)
    # A damaged entry: a key of the wrong length.
    obj = _resume.Pending.new([(1, 2)]).to_json(_identity())
    obj["attachments"][0]["key"] = "AAAA"
    journal.path.write_text(json.dumps(obj))
    with pytest.raises(_resume._Damaged, match="not 32 bytes"):
        journal.load()


# --- the library, against the server behind the proxy ------------------------------------------


def test_a_part_whose_connection_drops_is_sent_again_and_only_it(
    run: Liaison, proxy: CuttingProxy, tmp_path: Path
) -> None:
    """The third part's connection is cut half-way: the library waits, asks the server what it
    holds, sends that part again (and no other), completes and submits; the recipient saves
    the very bytes."""
    big = _big(tmp_path, parts=8)
    parts = _parts(big)
    counting = Counting(run.server.cert)
    seen: list[tuple[str, int, int]] = []
    proxy.arm(skip=2, times=1)
    with _client(run, "usa", counting) as usa:
        sent = usa.send(
            "ops",
            LABEL,
            b"see the imagery",
            attachments=[Attachment(big)],
            progress=lambda *a: seen.append(a),
        )
    assert proxy.cuts == 1
    puts = counting.puts()
    assert len(puts) == parts + 1 and sorted(set(puts)) == list(range(1, parts + 1))
    (again,) = [n for n in set(puts) if puts.count(n) == 2]  # the part cut half-way, sent twice
    assert again > 1
    aid = sent.attachments[0].id
    asked = [p for m, p in counting.seen if m == "GET" and p == f"/v1/attachments/{aid}"]
    assert len(asked) == 1  # where the upload stood, asked once
    assert seen[-1] == ("imagery.bin", big.stat().st_size, big.stat().st_size)
    assert _saved_by_ukr(run, sent.id, tmp_path) == big.read_bytes()


def test_a_connection_that_keeps_dropping_fails_in_one_line_and_no_upload_is_left(
    run: Liaison, proxy: CuttingProxy, tmp_path: Path
) -> None:
    big = _big(tmp_path)
    counting = Counting(run.server.cert)
    proxy.arm(times=None)
    with _client(run, "usa", counting, retry=QUICK) as usa:
        with pytest.raises(TransportError) as e:
            usa.send("ops", LABEL, b"x", attachments=[Attachment(big)])
        assert "\n" not in str(e.value) and "failed" in str(e.value)
        proxy.disarm()
        (aid,) = {p.split("/")[3] for m, p in counting.seen if m == "PUT"}
        assert counting.puts().count(1) == QUICK.attempts  # part 1: tried as often as allowed
        assert ("DELETE", f"/v1/attachments/{aid}") in counting.seen
        with pytest.raises(NotFound):  # no journal: the upload is gone
            _status(usa, aid)


def test_with_a_journal_the_uploads_are_kept_and_a_rerun_resumes(
    run: Liaison, proxy: CuttingProxy, tmp_path: Path
) -> None:
    big = _big(tmp_path, parts=8)
    parts = _parts(big)
    pending = tmp_path / "pending"
    proxy.arm(skip=3, times=None)  # parts 1 to 3 pass, then every part's connection drops
    with _client(run, "usa", retry=QUICK) as usa:
        with pytest.raises(TransportError):
            usa.send("ops", LABEL, b"x", attachments=[Attachment(big)], journal=pending)
        proxy.disarm()
        message, (aid,) = _journal_ids(pending)
        status = _status(usa, aid)  # kept for the rerun
        assert status["state"] == "uploading" and len(status["stored"]) >= 3
    notices: list[str] = []
    counting = Counting(run.server.cert)
    with _client(run, "usa", counting) as usa:
        sent = usa.send(
            "ops", LABEL, b"x", attachments=[Attachment(big)], journal=pending, notice=notices.append
        )
    assert (sent.id, sent.attachments[0].id) == (message, aid)  # the journal's ids
    held = len(status["stored"])
    assert notices == [f"resuming imagery.bin: {held} of {parts} parts already stored"]
    assert len(counting.puts()) == parts - held  # only what the server lacked
    assert _journals(pending) == []
    assert _saved_by_ukr(run, sent.id, tmp_path) == big.read_bytes()


def test_a_send_interrupted_after_its_uploads_completed_only_submits_on_a_rerun(
    run: Liaison, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completed uploads are started again (the server answers them complete), none of their
    parts is sent again, each completion answers the same root, and the message goes."""
    big = _big(tmp_path, parts=3)
    pending = tmp_path / "pending"

    async def lost(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ServerUnreachable("connection to the server failed: the submission was lost")

    with monkeypatch.context() as m, _client(run, "usa") as usa:
        m.setattr(type(usa.aio), "_submit", lost)
        with pytest.raises(ServerUnreachable):
            usa.send("ops", LABEL, b"x", attachments=[Attachment(big)], journal=pending)
        _, (aid,) = _journal_ids(pending)
        assert _status(usa, aid)["state"] == "complete"
    notices: list[str] = []
    counting = Counting(run.server.cert)
    with _client(run, "usa", counting) as usa:
        sent = usa.send(
            "ops", LABEL, b"x", attachments=[Attachment(big)], journal=pending, notice=notices.append
        )
    parts = _parts(big)
    assert notices == [f"resuming imagery.bin: {parts} of {parts} parts already stored"]
    assert counting.puts() == [] and sent.attachments[0].id == aid
    assert _saved_by_ukr(run, sent.id, tmp_path) == big.read_bytes()


def test_a_rerun_of_a_send_already_accepted_says_so(run: Liaison, tmp_path: Path) -> None:
    big = _big(tmp_path, parts=3)
    pending = tmp_path / "pending"
    kept: dict[str, bytes] = {}

    def keep(name: str, done: int, total: int) -> None:  # the journal, as a crash would leave it
        if not kept:
            (journal,) = _journals(pending)
            kept[journal.name] = journal.read_bytes()

    with _client(run, "usa") as usa:
        sent = usa.send("ops", LABEL, b"x", attachments=[Attachment(big)], journal=pending, progress=keep)
        assert _journals(pending) == []  # removed once accepted
        ((name, content),) = kept.items()
        (pending / name).write_bytes(content)
        with pytest.raises(Conflict, match=f"message {sent.id} was already sent") as e:
            usa.send("ops", LABEL, b"x", attachments=[Attachment(big)], journal=pending)
    assert e.value.slug == "duplicate-envelope" and "\n" not in str(e.value)
    assert _journals(pending) == []
    with _client(run, "ukr") as ukr:
        assert [i.id for i in ukr.inbox() if i.id == sent.id] == [sent.id]  # once


def test_a_journal_is_not_used_for_file_objects(run: Liaison, tmp_path: Path) -> None:
    pending = tmp_path / "pending"
    with _client(run, "usa") as usa:
        sent = usa.send(
            "ops", LABEL, b"x", attachments=[Attachment(io.BytesIO(b"abc"), name="a.txt")], journal=pending
        )
    assert sent.attachments[0].length == 3 and not pending.exists()


# --- the CLI -----------------------------------------------------------------------------------


def _send_args(big: Path, body: Path, *extra: str) -> list[str]:
    return ["-p", "usa", "send", "-c", "ops", "-l", LABEL, "--attach", str(big), *extra, str(body)]


def _env(run: Liaison) -> dict[str, str]:
    return {**os.environ, "LIAISON_HOME": str(run.home), "LIAISON_PASSPHRASE": PASSPHRASE}


def _wait_for_a_stored_part(run: Liaison, pending: Path, proc: subprocess.Popen[bytes]) -> str:
    """The attachment id in the child's journal, once the server holds a part of it."""
    deadline = time.monotonic() + 60
    with _client(run, "usa") as usa:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            if _journals(pending):
                aid = _journal_ids(pending)[1][0]
                with contextlib.suppress(NotFound):
                    if _status(usa, aid)["stored"]:
                        return aid
            time.sleep(0.05)
    raise AssertionError("no part was stored in time")


@pytest.mark.slow
def test_cli_send_survives_ctrl_c_and_resumes_on_a_rerun(
    run: Liaison, proxy: CuttingProxy, tmp_path: Path
) -> None:
    big = _big(tmp_path, parts=40)
    body = tmp_path / "body.txt"
    body.write_text("see the imagery")
    pending = run.home / "state" / "usa" / "pending"
    proxy.rate = 256 * 1024  # slow enough to be interrupted half-way
    proc = subprocess.Popen(
        [str(BIN / "liaison"), *_send_args(big, body)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(run),
    )
    try:
        aid = _wait_for_a_stored_part(run, pending, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    proxy.disarm()
    assert proc.returncode == 130, err
    assert out == b"" and "Traceback" not in err.decode()
    assert err.decode().splitlines()[-1] == f"liaison: interrupted: {HINT}"
    assert _journal_ids(pending)[1] == [aid]  # kept, with the upload
    r = subprocess.run(
        [str(BIN / "liaison"), "--json", *_send_args(big, body)],
        capture_output=True,
        env=_env(run),
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    resumed = re.search(rb"resuming imagery\.bin: (\d+) of (\d+) parts already stored", r.stderr)
    assert resumed is not None, r.stderr
    assert int(resumed[1]) > 0 and int(resumed[2]) == _parts(big)
    sent = json.loads(r.stdout)
    assert sent["attachments"][0]["id"] == aid and _journals(pending) == []
    assert _saved_by_ukr(run, sent["id"], tmp_path) == big.read_bytes()


def _interrupted_by_the_network(run: Liaison, proxy: CuttingProxy, big: Path, body: Path) -> str:
    """`liaison send --attach` whose every part's connection drops: exit 1, one line, the
    journal and the upload kept; the attachment id."""
    proxy.arm(times=None)
    line = run.refused(*_send_args(big, body))
    proxy.disarm()
    assert HINT in line
    return _journal_ids(run.home / "state" / "usa" / "pending")[1][0]


def test_cli_a_changed_file_starts_afresh(run: Liaison, proxy: CuttingProxy, tmp_path: Path) -> None:
    big, body = _big(tmp_path, parts=4), tmp_path / "body.txt"
    body.write_text("x")
    old = _interrupted_by_the_network(run, proxy, big, body)
    big.write_bytes(os.urandom(big.stat().st_size))  # the same size, another content
    os.utime(big, ns=(time.time_ns(), time.time_ns() + 10**9))
    r = run("--json", *_send_args(big, body))
    assert "imagery.bin changed since the interrupted send of message" in r.stderr
    assert "starting afresh" in r.stderr and "resuming" not in r.stderr
    sent = r.json()
    assert sent["attachments"][0]["id"] != old
    with _client(run, "usa") as usa, pytest.raises(NotFound):
        _status(usa, old)  # the old upload deleted
    assert _journals(run.home / "state" / "usa" / "pending") == []
    assert _saved_by_ukr(run, sent["id"], tmp_path) == big.read_bytes()


def test_cli_restart_discards_the_interrupted_send(run: Liaison, proxy: CuttingProxy, tmp_path: Path) -> None:
    big, body = _big(tmp_path, parts=4), tmp_path / "body.txt"
    body.write_text("x")
    old = _interrupted_by_the_network(run, proxy, big, body)
    r = run("--json", *_send_args(big, body, "--restart"))
    assert "discarding the interrupted send of message" in r.stderr and "resuming" not in r.stderr
    sent = r.json()
    assert sent["attachments"][0]["id"] != old
    with _client(run, "usa") as usa, pytest.raises(NotFound):
        _status(usa, old)
    assert _saved_by_ukr(run, sent["id"], tmp_path) == big.read_bytes()
