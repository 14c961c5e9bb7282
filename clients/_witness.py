"""An always-on witness: the C2SP tlog-witness `add-checkpoint` endpoint (c2sp.org/tlog-witness).

    POST <prefix>/add-checkpoint          old <size>\\n[<base64 hash>\\n ...]\\n<signed checkpoint>
      200 text/plain                      — <witness name> <base64(key id || timestamp || sig)>\\n
      409 text/x.tlog.size                <the size this witness last cosigned>\\n
      400 malformed, or old > size   403 no (valid) signature of the log's key   404 unknown origin
      413 body over 64 KiB           422 inconsistent: bad proof, other root, empty tree's root
      500 its record cannot be read or written (nothing is cosigned)
    GET <prefix>/<hex SHA-256 of origin>/checkpoint     the latest checkpoint it cosigned

The witness is configured with its cosigning key (type 0x04, c2sp.org/tlog-cosignature) and
the verifier key of each log it witnesses (the key's name is the log's origin). For each
origin it keeps, on disk, the size and root of the latest checkpoint it cosigned
(`WitnessState`): checking a request against that record and replacing it happen under one
lock (a thread lock and an exclusive `flock`, so the one-shot `liaison audit witness` of the
same key, in another process, takes turns with the server), and the new record is written
atomically (temporary file, fsync, rename) before the cosignature is returned. So the
witness never cosigns two checkpoints of one origin that are not consistent, never cosigns
a smaller tree than one it already cosigned, and never loses its record in a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liaison.crypto import merkle, note
from liaison.crypto.encoding import b64decode, b64encode
from liaison.crypto.errors import BadSignature, CryptoError, MalformedError, ProofError

from .errors import InputError, KeyStoreError
from .keystore import _write_private

__all__ = [
    "MAX_BODY",
    "Answer",
    "Observed",
    "Witness",
    "WitnessState",
    "cosigned_note",
    "origin_hash",
    "serve",
    "witness_app",
]

log = logging.getLogger("liaison.witness")

#: Largest add-checkpoint body accepted: a checkpoint with the 100 signatures a note may carry
#: and 63 proof lines is well under 16 KiB.
MAX_BODY = 64 * 1024
#: The spec's bound on consistency proof lines.
MAX_PROOF = 63
#: Refused-but-signed checkpoints are kept as evidence of log misbehaviour, up to this size.
MAX_EVIDENCE = 10 * 1024 * 1024

SIZE_TYPE = "text/x.tlog.size"
TEXT_TYPE = "text/plain; charset=utf-8"
_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")
_VERSION = 1


def origin_hash(origin: str) -> str:
    """The monitoring path's name for a log: lowercase hex SHA-256 of its origin line."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


def cosigned_note(signed: bytes, log_key: note.Verifier, line: str) -> str:
    """The checkpoint with only the log key's signature and the witness's cosignature `line`
    (whatever else the note carried is not this witness's to repeat)."""
    opened = note.open_note(signed, [log_key])
    return opened.text + "\n" + "".join(sig.line for sig in opened.signatures) + line


@dataclass(frozen=True)
class Observed:
    """The latest checkpoint this witness cosigned for one origin."""

    size: int
    root_hash: bytes
    #: The checkpoint with the log's signature and this witness's cosignature.
    note: str


class WitnessState:
    """The witness's record, one `Observed` per origin, in one JSON file (0600)::

        {"v": 1, "logs": {"<origin>": {"size": N, "root": "<base64>", "checkpoint": "..."}}}

    Use `update()` for a check-then-replace: it holds the lock across both.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Observed]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise KeyStoreError(f"cannot read the witness state {self.path}: {e.strerror}") from e
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("v") != _VERSION or not isinstance(doc.get("logs"), dict):
                raise ValueError("not a witness state")
            return {
                origin: Observed(int(v["size"]), b64decode(v["root"], field="root"), str(v["checkpoint"]))
                for origin, v in doc["logs"].items()
            }
        except (ValueError, KeyError, TypeError, MalformedError) as e:
            # Never start afresh over a damaged record: that would let the witness cosign a
            # fork of a log it already witnessed.
            raise KeyStoreError(f"the witness state {self.path} is damaged ({e}); refusing to cosign") from e

    def get(self, origin: str) -> Observed | None:
        with self._lock:
            return self._read().get(origin)

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Observed]]:
        """Lock, yield the record to change in place, then write it atomically."""
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                logs = self._read()
                before = dict(logs)
                yield logs
                if logs != before:
                    doc = {
                        "v": _VERSION,
                        "logs": {
                            origin: {
                                "size": o.size,
                                "root": b64encode(o.root_hash),
                                "checkpoint": o.note,
                            }
                            for origin, o in sorted(logs.items())
                        },
                    }
                    _write_private(self.path, (json.dumps(doc, indent=2) + "\n").encode())
            finally:
                os.close(fd)  # releases the flock


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of the witness: status, content type and body."""

    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, status: int, message: str) -> Answer:
        return cls(status, TEXT_TYPE, (message.rstrip("\n") + "\n").encode("utf-8"))


class _Refused(Exception):
    def __init__(self, answer: Answer, *, evidence: bool = False) -> None:
        super().__init__(answer.body.decode("utf-8", "replace").strip())
        self.answer = answer
        self.evidence = evidence


def _refuse(status: int, message: str, *, evidence: bool = False) -> _Refused:
    return _Refused(Answer.text(status, message), evidence=evidence)


@dataclass(frozen=True)
class _Request:
    old: int
    proof: list[bytes]
    signed: bytes
    checkpoint: note.Checkpoint


def _parse(body: bytes) -> _Request:
    """The request's structure (c2sp.org/tlog-witness); nothing verified yet. 400 if malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(400, "the body is not UTF-8") from None
    head, sep, signed = text.partition("\n\n")
    if not sep:
        raise _refuse(400, "the body needs an old size line, proof lines, an empty line and a checkpoint")
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if match is None:
        raise _refuse(400, "the first line must be 'old <size>' in decimal without leading zeros")
    old = int(match.group(1))
    if old >= 1 << 64:
        raise _refuse(400, "the old size must be below 2**64")
    if len(lines) - 1 > MAX_PROOF:
        raise _refuse(400, f"more than {MAX_PROOF} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = b64decode(line, field="proof")
        except MalformedError:
            raise _refuse(400, "a consistency proof line is not canonical base64") from None
        if len(h) != merkle.HASH_SIZE:
            raise _refuse(400, "a consistency proof line is not a 32-byte hash")
        proof.append(h)
    end = signed.rfind("\n\n")
    if end < 0:
        raise _refuse(400, "the checkpoint is not a signed note")
    try:
        cp = note.parse_checkpoint(signed[: end + 1])
    except CryptoError as e:
        raise _refuse(400, f"the checkpoint does not parse: {e}") from None
    if old > cp.size:
        raise _refuse(400, f"old size {old} is greater than the checkpoint's size {cp.size}")
    return _Request(old, proof, signed.encode("utf-8"), cp)


class Witness:
    """Verifies and cosigns checkpoints of the logs it knows; see the module docstring."""

    def __init__(
        self,
        signer: note.Signer,
        logs: Sequence[note.Verifier],
        state: WitnessState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if signer.sig_type != note.SIG_COSIGNATURE_V1:
            raise InputError("a witness needs a cosignature key (type 0x04)")
        self.signer = signer
        self.logs: dict[str, note.Verifier] = {}
        for key in logs:
            if key.sig_type != note.SIG_ED25519:
                raise InputError(f"log key {key.name} is not an Ed25519 note key (type 0x01)")
            if key.name in self.logs and self.logs[key.name] != key:
                raise InputError(f"two log keys for origin {key.name}")
            self.logs[key.name] = key
        if not self.logs:
            raise InputError("a witness needs the verifier key of at least one log")
        self.state = state
        self.clock = clock
        self.evidence = state.path.with_name(state.path.name + ".evidence")
        #: Answers given, by status (for operators and tests).
        self.answers: Counter[int] = Counter()

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle one add-checkpoint body; never raises."""
        try:
            answer = self._add(body)
        except _Refused as r:
            answer = r.answer
            log.warning("refused add-checkpoint (%d): %s", answer.status, r)
            if r.evidence:
                self._keep_evidence(body, answer)
        except (KeyStoreError, OSError) as e:
            # Nothing was cosigned: a cosignature leaves only after its record is on disk.
            log.error("witness state: %s", e)
            answer = Answer.text(500, "the witness cannot read or write its state")
        self.answers[answer.status] += 1
        return answer

    def _add(self, body: bytes) -> Answer:
        req = _parse(body)
        cp = req.checkpoint
        key = self.logs.get(cp.origin)
        if key is None:
            raise _refuse(404, "unknown log origin")
        try:
            note.open_checkpoint(req.signed, key)
        except BadSignature:
            raise _refuse(403, "no valid signature from the log's key") from None
        except CryptoError as e:
            raise _refuse(400, f"the checkpoint is not a valid signed note: {e}") from None
        with self.state.update() as logs:
            seen = logs.get(cp.origin)
            size, root = (seen.size, seen.root_hash) if seen else (0, merkle.EMPTY_ROOT)
            if req.old != size:
                return Answer(409, SIZE_TYPE, f"{size}\n".encode("ascii"))
            self._check(req, root)
            timestamp = max(1, int(self.clock()))  # the spec forbids a zero timestamp
            line = note.cosign_checkpoint(cp, self.signer, timestamp)
            logs[cp.origin] = Observed(cp.size, cp.root_hash, cosigned_note(req.signed, key, line))
        log.info("cosigned %s at size %d", cp.origin, cp.size)
        return Answer(200, TEXT_TYPE, line.encode("utf-8"))

    @staticmethod
    def _check(req: _Request, old_root: bytes) -> None:
        cp = req.checkpoint
        if cp.size == 0 and cp.root_hash != merkle.EMPTY_ROOT:
            raise _refuse(422, "a checkpoint of size 0 must have the empty tree's root", evidence=True)
        if req.old == 0 and req.proof:
            raise _refuse(422, "a proof from size 0 must be empty", evidence=True)
        try:
            merkle.verify_consistency(req.old, cp.size, old_root, cp.root_hash, req.proof)
        except ProofError as e:
            raise _refuse(
                422,
                f"the checkpoint of size {cp.size} is not consistent with the one of size "
                f"{req.old} this witness cosigned: {e}",
                evidence=True,
            ) from None

    def _keep_evidence(self, body: bytes, answer: Answer) -> None:
        """Keep a validly signed checkpoint the witness refused: it may prove a forked log."""
        record = {
            "time": int(self.clock()),
            "status": answer.status,
            "reason": answer.body.decode("utf-8", "replace").strip(),
            "request": body.decode("utf-8", "replace"),
        }
        line = (json.dumps(record) + "\n").encode("utf-8")
        try:
            size = self.evidence.stat().st_size if self.evidence.exists() else 0
            if size + len(line) > MAX_EVIDENCE:
                log.warning("evidence file %s is full; not keeping this refusal", self.evidence)
                return
            fd = os.open(self.evidence, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            log.error("cannot keep evidence in %s: %s", self.evidence, e.strerror)

    def latest(self, hashed_origin: str) -> Answer:
        """The monitoring path: the latest checkpoint cosigned for the origin with this hash."""
        for origin in self.logs:
            if origin_hash(origin) == hashed_origin:
                try:
                    seen = self.state.get(origin)
                except KeyStoreError as e:
                    log.error("%s", e)
                    return Answer.text(500, "the witness cannot read its state")
                if seen is not None:
                    return Answer(200, TEXT_TYPE, seen.note.encode("utf-8"))
        return Answer.text(404, "this witness has cosigned no checkpoint of that log")


# --- HTTP ------------------------------------------------------------------------------------

_MONITOR = re.compile(r"/([0-9a-f]{64})/checkpoint")


def witness_app(witness: Witness, prefix: str = "") -> Any:
    """A minimal ASGI app serving the witness under `prefix` (e.g. "" or "/witness")."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if not path.startswith(prefix):
            answer = Answer.text(404, "not found")
        elif path[len(prefix) :] == "/add-checkpoint":
            if method != "POST":
                answer = Answer.text(405, "add-checkpoint takes POST")
            else:
                try:
                    body = await _body(receive)
                except _Gone:
                    return  # the client left before sending its whole body: nothing to answer
                if body is None:
                    answer = Answer.text(413, f"the body is larger than {MAX_BODY} bytes")
                else:
                    answer = await asyncio.to_thread(witness.add_checkpoint, body)
        elif (m := _MONITOR.fullmatch(path[len(prefix) :])) and method in ("GET", "HEAD"):
            answer = await asyncio.to_thread(witness.latest, m.group(1))
        else:
            answer = Answer.text(404, "not found")
        headers = [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})

    return app


class _Gone(Exception):
    """The client disconnected."""


async def _body(receive: Any) -> bytes | None:
    """The request body, or None once it grows past MAX_BODY (nothing more is read)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def serve(
    witness: Witness,
    host: str,
    port: int,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    prefix: str = "",
) -> None:
    """Run the witness over HTTP (or HTTPS, TLS 1.3 only, with a certificate and key) until
    interrupted."""
    import ssl

    import uvicorn

    config = uvicorn.Config(
        witness_app(witness, prefix),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=5,
        limit_concurrency=64,
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        timeout_graceful_shutdown=5,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )
    if tls_cert:
        try:
            config.load()
        except (ssl.SSLError, OSError) as e:
            raise InputError(f"the TLS certificate or key is unusable: {e}") from None
        assert config.ssl is not None
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    uvicorn.Server(config).run()
