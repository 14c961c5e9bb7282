"""Push each new checkpoint to the configured witnesses (c2sp.org/tlog-witness), keep their cosignatures.

One task per service process (`WitnessPusher.run`, started by the app's lifespan) works in
rounds: it reads the newest stored checkpoint (one indexed query every
`witness_poll_seconds`), and when that is newer than what a witness last cosigned, sends it
to every such witness at once (`POST <url>/add-checkpoint`: `old <size>`, the consistency
proof from that size, a blank line, the signed checkpoint). So:

* it never blocks the writer: it runs after commits, on its own, reading like any reader;
* it coalesces: a round pushes only the newest checkpoint, however many were signed since;
  and all witnesses get the same one, so that one checkpoint gathers k cosignatures even
  when the log grows faster than the witnesses answer;
* a 409 (the witness holds another size, e.g. after this process restarted or another
  replica pushed) is answered at once with a proof from the witness's size;
* any other failure (network, 403, 404, 422, a cosignature that does not verify) retries
  that witness with exponential backoff (0.5 s doubling to 60 s), with the then-newest
  checkpoint;
* a returned cosignature is kept only if it verifies with the configured key of that witness
  on exactly this checkpoint and is not dated in the future; it is stored (table
  `cosignature`) without a log entry of its own: logging it would sign a new checkpoint,
  to push again, for ever. `POST /v1/audit/cosignatures` (a witness that pulls) still logs
  `witness.cosigned`.

Each replica runs its own pusher; they may push the same checkpoint twice (the second gets
a fresh cosignature, and the store keeps the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field

import httpx

from liaison.crypto import note
from liaison.crypto.encoding import b64encode
from liaison.crypto.errors import BadSignature, CryptoError

from ..config import Settings, SettingsError
from ..state import AppState
from ..storage.logstore import CheckpointRow, LogReader
from ..tlog.log import AuditLog
from ..writer import Tx

__all__ = ["Target", "WitnessPusher", "WitnessStatus", "targets"]

log = logging.getLogger("liaison.witnesses")

#: Seconds one add-checkpoint request may take.
TIMEOUT = 10.0
#: Backoff after a failure: FIRST_RETRY seconds, doubling, at most MAX_RETRY.
FIRST_RETRY = 0.5
MAX_RETRY = 60.0
#: A witness's answer larger than this is refused unread (a few cosignature lines are < 1 KiB).
MAX_ANSWER = 64 * 1024
_SIZE = re.compile(r"(0|[1-9][0-9]{0,19})\n")


@dataclass(frozen=True)
class Target:
    """A witness to push to: its key name, submission URL and configured verifier key(s)."""

    name: str
    url: str
    keys: tuple[note.Verifier, ...]


def targets(settings: Settings) -> list[Target]:
    """The witnesses of `witness_urls`, each with its key(s) from `witness_keys`."""
    keys: dict[str, list[note.Verifier]] = {}
    for text in settings.witness_keys:
        try:
            v = note.parse_verifier_key(text)
        except CryptoError as e:
            raise SettingsError(f"a key of witness_keys is invalid: {e}") from None
        if v.sig_type != note.SIG_COSIGNATURE_V1:
            raise SettingsError(f"witness key {v.name} is not a cosignature key (type 0x04)")
        keys.setdefault(v.name, []).append(v)
    out = []
    for name, url in sorted(settings.witness_urls.items()):
        if name not in keys:
            raise SettingsError(
                f"witness_urls names {name!r}, which is not the name of a key in witness_keys"
            )
        out.append(Target(name, url.rstrip("/"), tuple(keys[name])))
    if settings.witness_ca_cert is not None and not settings.witness_ca_cert.is_file():
        raise SettingsError(f"witness_ca_cert {settings.witness_ca_cert} is not a file")
    return out


@dataclass
class WitnessStatus:
    """What the pusher knows of one witness (for logs, operators and tests)."""

    #: The size the witness said it holds (from a 200 or a 409); None until it answered.
    size: int | None = None
    #: The newest size whose cosignature from this witness was verified here.
    cosigned: int = 0
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None
    answers: dict[int, int] = field(default_factory=dict)


class _PushError(Exception):
    pass


class WitnessPusher:
    """Pushes the newest checkpoint to every witness, in rounds (see the module docstring)."""

    def __init__(self, state: AppState, witnesses: list[Target], *, http: httpx.AsyncClient | None = None):
        self.state = state
        self.witnesses = witnesses
        self.status = {t.name: WitnessStatus() for t in witnesses}
        self.poll = state.settings.witness_poll_seconds
        self.clock = time.monotonic
        self._http = http or _http(state.settings)
        self._log_key = state.log.signer.verifier

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self) -> None:
        """Push rounds until cancelled; a failing round is logged and the next one tried."""
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("witness push round failed")
            await asyncio.sleep(self.poll)

    async def round(self) -> int:
        """Push the newest checkpoint to every witness that is due; returns how many cosigned."""
        async with self.state.db.sessions() as s:
            row = await LogReader(s).latest_checkpoint()
        if row is None:
            return 0
        now = self.clock()
        due = [t for t in self.witnesses if self._due(self.status[t.name], row.size, now)]
        if not due:
            return 0
        cp = note.parse_checkpoint(note.open_note(row.note.encode("utf-8"), [self._log_key]).text)
        lines = await asyncio.gather(*(self._push(t, row, cp) for t in due))
        got = [(t.name, line) for t, line in zip(due, lines, strict=True) if line is not None]
        if got:
            await self._store(row.size, got)
        return len(got)

    @staticmethod
    def _due(st: WitnessStatus, size: int, now: float) -> bool:
        if st.cosigned >= size or now < st.retry_at:
            return False
        # A witness that holds a larger tree than our newest checkpoint waits for ours to grow
        # (another replica pushed a newer one); it cannot cosign a smaller tree.
        return st.size is None or st.size <= size

    async def _push(self, target: Target, row: CheckpointRow, cp: note.Checkpoint) -> str | None:
        st = self.status[target.name]
        try:
            line = await self._add_checkpoint(target, st, row, cp)
        except _PushError as e:
            st.failures += 1
            delay = min(MAX_RETRY, FIRST_RETRY * 2 ** (st.failures - 1)) * _jitter()
            st.retry_at = self.clock() + delay
            st.last_error = str(e)
            log.warning(
                "witness %s did not cosign size %d: %s (retry in %.1f s)", target.name, row.size, e, delay
            )
            return None
        if st.failures:
            log.info("witness %s cosigns again (size %d)", target.name, row.size)
        st.failures, st.retry_at, st.last_error = 0, 0.0, None
        st.size, st.cosigned = row.size, row.size
        return line

    async def _add_checkpoint(
        self, target: Target, st: WitnessStatus, row: CheckpointRow, cp: note.Checkpoint
    ) -> str:
        old = st.size if st.size is not None and st.size <= row.size else 0
        for _ in range(2):  # a 409 tells us the witness's size: one more try, with its proof
            status, body = await self._post(target, await self._request_body(old, row))
            st.answers[status] = st.answers.get(status, 0) + 1
            if status == 200:
                return self._cosignature(target, cp, body)
            if status != 409:
                raise _PushError(f"answered {status}: {_excerpt(body)}")
            match = _SIZE.fullmatch(body)
            if match is None:
                raise _PushError(f"answered 409 without a tree size: {_excerpt(body)}")
            st.size = int(match.group(1))
            if st.size > row.size:
                raise _PushError(
                    f"it holds size {st.size}, larger than this log's newest checkpoint {row.size} "
                    "(another replica's newer checkpoint, or a fork of this log under our key)"
                )
            old = st.size
        raise _PushError("answered 409 twice")

    async def _request_body(self, old: int, row: CheckpointRow) -> str:
        proof: list[bytes] = []
        if 0 < old < row.size:
            async with self.state.db.sessions() as s:
                proof = await AuditLog.consistency_proof(LogReader(s), old, row.size)
        return f"old {old}\n" + "".join(b64encode(h) + "\n" for h in proof) + "\n" + row.note

    async def _post(self, target: Target, body: str) -> tuple[int, str]:
        try:
            async with self._http.stream(
                "POST",
                target.url + "/add-checkpoint",
                content=body.encode("utf-8"),
                headers={"content-type": "text/plain; charset=utf-8"},
            ) as r:
                data = b""
                async for chunk in r.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_ANSWER:
                        raise _PushError(f"answered more than {MAX_ANSWER} bytes")
                return r.status_code, data.decode("utf-8", "replace")
        except httpx.HTTPError as e:
            raise _PushError(f"unreachable ({type(e).__name__}: {e})") from None

    def _cosignature(self, target: Target, cp: note.Checkpoint, body: str) -> str:
        """The first line of the answer that is this witness's valid cosignature on `cp`;
        lines from other keys are ignored, as the spec says."""
        not_after = int(time.time()) + self.state.settings.clock_skew_seconds
        for line in body.split("\n"):
            if not line.startswith("\u2014 "):
                continue
            try:
                return note.verify_cosignature_line(line, cp, target.keys, not_after=not_after).line
            except (BadSignature, CryptoError):
                continue
        raise _PushError("answered 200 without a valid cosignature from its configured key")

    async def _store(self, size: int, lines: list[tuple[str, str]]) -> None:
        def job(tx: Tx) -> int:
            stored = 0
            for name, line in lines:
                # The writer serialises every write (and, on PostgreSQL, every replica's), so
                # no other cosignature of this (size, witness) lands between check and insert.
                if not tx.log.has_cosignature(size, name):
                    tx.log.put_cosignature(size, name, line, tx.now)
                    stored += 1
            return stored

        await self.state.writer.run(job, shares_cache=True)


def _http(settings: Settings) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if settings.witness_ca_cert is not None:
        verify = ssl.create_default_context(cafile=str(settings.witness_ca_cert))
    return httpx.AsyncClient(
        timeout=TIMEOUT,
        verify=verify,
        follow_redirects=False,
        headers={"user-agent": "liaison-server witness push"},
    )


def _jitter() -> float:
    """0.8 to 1.0: replicas that failed together do not retry in lock-step."""
    return 0.8 + secrets.randbelow(201) / 1000


def _excerpt(text: str) -> str:
    """A witness's words, bounded, for a log line (JSON logs escape the rest)."""
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


async def start(state: AppState) -> tuple[WitnessPusher, asyncio.Task[None]] | None:
    """Start pushing if witnesses are configured (the app's lifespan calls this)."""
    configured = targets(state.settings)
    if not configured:
        return None
    pusher = WitnessPusher(state, configured)
    names = ", ".join(t.name for t in configured)
    log.info("pushing checkpoints to %d witness(es): %s", len(configured), names)
    return pusher, asyncio.create_task(pusher.run(), name="liaison-witness-push")


async def stop(started: tuple[WitnessPusher, asyncio.Task[None]] | None) -> None:
    if started is None:
        return
    pusher, task = started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await pusher.aclose()
