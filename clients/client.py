"""The async client: every request signed, every answer verified before it is used.

    async with AsyncClient.from_profile("ukr-system", passphrase) as c:   # a plain call
        plan = await c.plan("airdef", "SECRET//AIRDEF//REL TO UKR, USA")
        sent = await c.send("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"...")
        many = await c.send_many("airdef", "SECRET//AIRDEF//REL TO UKR, USA", [b"1", b"2"])
        for item in await c.inbox():
            message = await c.read(item.id)

`from_profile` is a plain call (it reads the key store and sends nothing); awaiting the
client it returns also works and gives the same client, so `await AsyncClient.from_profile(...)`
is not an error.

What the client checks itself (and refuses, with a specific VerificationFailed, when it fails):
every checkpoint is signed by the pinned log key and consistent with the last one it saw
(kept on disk); every key it encrypts to or verifies with is self-signed and proven in the
log; every envelope's signatures, its label against the log entry and against the policy,
and the log entry of the message itself. With a witness policy (pinned witness keys, k of
n), each receipt's checkpoint is also checked for k valid cosignatures (`witnessed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from liaison.crypto import merkle, note, tiles
from liaison.crypto.anchors import Anchors
from liaison.crypto.attachments import AttachmentRef, ciphertext_size
from liaison.crypto.content import AttachmentInfo, check_content_type, frame_size
from liaison.crypto.encoding import b64decode, b64encode, b64url_decode, b64url_encode, format_time
from liaison.crypto.envelope import open_envelope, parse_envelope, seal
from liaison.crypto.errors import (
    BadSignature,
    CryptoError,
    DecryptionFailed,
    LabelMismatch,
    LabelSyntaxError,
    MalformedContent,
    MalformedError,
    PolicyViolation,
)
from liaison.crypto.errors import (
    KeyCommitmentMismatch as _CryptoKeyCommitmentMismatch,
)
from liaison.crypto.errors import (
    NotARecipient as _CryptoNotARecipient,
)
from liaison.crypto.invitation import make_invitation_v2
from liaison.crypto.keys import DeviceKeys, PublicBundle
from liaison.crypto.labels import Label, parse_label
from liaison.crypto.names import DEFAULT_ROLES, Role
from liaison.crypto.policy import Policy, check_suite, parse_policy
from liaison.crypto.statements import SignedStatement, Statement, invitation_public, leaf_value
from liaison.crypto.transparency import VerifiedReceipt
from liaison.crypto.vmap import map_key, verify_range

from . import _attachments as _att
from . import _directory as d
from . import _evidence, _resume
from . import _models as m
from ._admin import AdminMethods
from ._attachments import Attachment, Progress
from ._http import SignedAuth, check_response, json_of, new_http, transport_error
from ._retry import Retry
from ._trust import LogMemory, WitnessPolicy, WitnessPolicyFile
from ._verify import (
    Cosigners,
    DeviceRecord,
    check_consistency,
    inspect_cosignatures,
    open_checkpoint,
    parse_entry,
    require_unrevoked,
    verify_device_record,
    verify_entry,
    verify_message_receipt,
)
from .errors import (
    APIError,
    ClientError,
    Conflict,
    ContentInvalid,
    DirectoryInvalid,
    InconsistentLog,
    InputError,
    KeyCommitmentMismatch,
    LabelAltered,
    MalformedResponse,
    NotFound,
    NotRecipient,
    PermissionDenied,
    PolicyRefused,
    ProofInvalid,
    ProofMissing,
    SendManyFailed,
    ServerUnreachable,
    SignatureInvalid,
    TransportError,
    UntrustedCheckpoint,
    VerificationFailed,
)
from .keystore import KeyStore, passphrase_from_env_or_prompt
from .stix import is_stix, validate_stix_bundle

__all__ = ["DEFAULT_CONTENT_TYPE", "INVITATION_LIFETIME", "AsyncClient"]

DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"
#: The roles the audit API answers (anyone else is refused, and the refusal logged).
_LOG_READERS: frozenset[Role] = frozenset({"auditor", "admin"})
#: How often a receipt check asks again for a witnessed checkpoint while it waits (seconds).
_WITNESS_POLL = 0.5
#: Tiles kept in memory (each at most 8 KiB): a tile path names the same bytes forever in an
#: append-only log, and every use still verifies them against the checkpoint at hand.
_TILE_CACHE = 256
#: Submit refusals that mean the recipients plan went stale (a device enrolled or revoked
#: since it was made): `send_many` makes a new plan and seals that message again.
_STALE_PLAN = frozenset({"missing-recipient", "ineligible-recipient"})
#: How many new plans one `send_many` makes at most.
_REPLANS = 2
#: How long an invitation this client signs stays valid: within the server's default code
#: lifetime (24 h), with room for the two clocks to differ.
INVITATION_LIFETIME = 24 * 3600 - 300


class AsyncClient(AdminMethods):
    """One device talking to one server. Use `from_profile`, or build it from keys directly.

    Attributes: `server` (the base URL), `keys` (this device's `DeviceKeys`), `memory` (the
    profile's `LogMemory`: pinned log key, last checkpoint), `profile` (its name, or None),
    `retry` (the `Retry` policy for 429 and 503 answers), `witness_file` (the profile's witness
    policy file); `device_id` and `principal` are properties.
    """

    def __init__(
        self,
        server: str,
        keys: DeviceKeys,
        memory: LogMemory,
        *,
        ca_cert: str | None = None,
        profile: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: Retry | None = None,
        monitor_interval: float | None = 300.0,
    ) -> None:
        self.server = server.rstrip("/")
        #: Check this device's own records (`check_own_records`) whenever a newer checkpoint
        #: is accepted and the last check is at least this many seconds old (0: at every
        #: checkpoint accepted; None: never by itself). Alarms land in `alarms`.
        self.monitor_interval = monitor_interval
        self._alarms: list[str] = []
        self._monitoring = False
        self.keys = keys
        self.memory = memory
        self.profile = profile
        self.retry = retry if retry is not None else Retry()
        self._http = new_http(self.server, ca_cert, auth=SignedAuth(keys), transport=transport)
        self._tiles: dict[str, bytes] = {}
        self._policy: Policy | None = None
        self._me: m.Me | None = None
        #: The profile's witness policy, beside its log memory; only the user changes it.
        self.witness_file = WitnessPolicyFile.beside(memory)
        # The newest checkpoint this client saw with its policy's quorum (note, checkpoint).
        # Kept in memory only: every checkpoint this client trusted is consistent with every
        # other it trusted (each was proven against the saved one), so one witnessed here
        # vouches for every smaller one it trusted.
        self._witnessed: tuple[str, note.Checkpoint] | None = None
        # The last answer to `checkpoint?cosigned=k` and its checkpoint, once trusted: while a
        # receipt check waits, the same answer comes back, and is not proven again each time.
        self._polled: tuple[str, note.Checkpoint] | None = None

    @classmethod
    def from_profile(
        cls,
        profile: str,
        passphrase: str | None = None,
        *,
        store: KeyStore | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: Retry | None = None,
    ) -> AsyncClient:
        """Open a stored profile (passphrase from the argument, $LIAISON_PASSPHRASE or a prompt).

        A plain call, not a coroutine: it reads the key store and sends nothing. (Awaiting its
        result also works: an AsyncClient awaited is itself.) Unsealing the keys is Argon2id,
        about a second of CPU: inside a busy event loop, run it in a thread
        (`await asyncio.to_thread(AsyncClient.from_profile, ...)`).
        """
        store = store or KeyStore.default()
        store.load_public(profile)  # "no such profile" before asking for a passphrase
        pw = passphrase if passphrase is not None else passphrase_from_env_or_prompt()
        prof, keys = store.load(profile, pw)
        memory = LogMemory(store.state_dir(profile) / "log.json")
        return cls(
            prof.server, keys, memory, ca_cert=prof.ca_cert, profile=profile, transport=transport, retry=retry
        )

    def __await__(self) -> Generator[Any, None, Self]:
        """`await AsyncClient.from_profile(...)` is the client itself (the call is not a
        coroutine; this keeps code written as if it were working)."""
        return self._itself().__await__()

    async def _itself(self) -> Self:
        return self

    @property
    def device_id(self) -> str:
        return self.keys.device_id

    @property
    def principal(self) -> str:
        return self.keys.principal

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        """Send one request (signed anew on every try); wait and try again as `self.retry`
        allows when the server says when to come back (429, 503); map every failure to an error.
        `body` goes as JSON, `raw` as application/octet-stream (an attachment's part)."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        content = json.dumps(body).encode() if body is not None else raw
        headers = {}
        if content is not None:
            headers["content-type"] = "application/json" if raw is None else "application/octet-stream"
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                r = await self._http.request(
                    method,
                    path,
                    params=params or None,
                    content=content,
                    headers=headers,
                    auth=httpx.USE_CLIENT_DEFAULT if signed else None,
                )
            except httpx.TransportError as e:
                raise transport_error(self.server, e) from None
            try:
                return check_response(r)
            except APIError as e:
                wait = self.retry.delay(e, attempt, waited)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            waited += wait

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return json_of(await self._request(method, path, **kw), f"{method} {path}")

    async def policy(self) -> Policy:
        """The server's policy (public): its file, parsed as the server parses it, so that its
        SHA-256 is computed here from the very bytes used (the root signs that SHA-256, and the
        directory checks it: protocol 9.7)."""
        if self._policy is None:
            served = await self._request("GET", "/v1/policy/file", signed=False)
            try:
                self._policy = parse_policy(served.content)
            except MalformedError as e:
                raise MalformedResponse(f"the served {e}") from None
        return self._policy

    async def parse_label(self, text: str | Label) -> Label:
        if isinstance(text, Label):
            return Label.from_json(text.to_json(), await self.policy())
        try:
            return parse_label(text, await self.policy())
        except LabelSyntaxError as e:
            raise InputError(f"label {text!r}: {e}") from None

    # --- the log: checkpoints and consistency -----------------------------------------------

    async def trusted_checkpoint(self, signed_note: Any) -> note.Checkpoint:
        """Accept a checkpoint only if the pinned key signed it and it is consistent with the
        last one this profile saw (then remember it if it is newer). Fail-closed."""
        if not isinstance(signed_note, str):
            raise ProofMissing("the server's answer carries no checkpoint")
        cp = open_checkpoint(signed_note, self.memory.log_key)
        saved = self.memory.last()
        if saved is None:
            self.memory.save(signed_note)
            return cp
        old = saved.checkpoint
        try:
            if cp.size > old.size:
                check_consistency(old, cp, await self._consistency_proof(old.size, cp))
            elif cp.size < old.size:
                check_consistency(cp, old, await self._consistency_proof(cp.size, old))
            else:
                check_consistency(old, cp, [])
        except InconsistentLog as e:  # with the evidence: both notes, the failed proof
            raise await _evidence.detected(self, e, saved.note, signed_note) from None
        if cp.size > old.size:
            self.memory.save(signed_note)
            await self._monitor_if_due()
        return cp

    @property
    def alarms(self) -> list[str]:
        """What the automatic and explicit checks of the own records found (protocol 9.10):
        devices of this principal this profile had not seen, one line each, each once."""
        return self._alarms

    async def _monitor_if_due(self) -> None:
        """At a newly accepted checkpoint, check this device's own records (issue 13 item 8)
        when the last check is `monitor_interval` seconds old or more; the check's own
        checkpoints do not start another."""
        if self._monitoring or self.monitor_interval is None:
            return
        memory = self.directory_memory
        if memory.roots() is None or time.time() - memory.own_checked() < self.monitor_interval:
            return
        self._monitoring = True
        try:
            await self.check_own_records()
        finally:
            self._monitoring = False

    async def _consistency_proof(self, old_size: int, new: note.Checkpoint) -> list[bytes]:
        """PROOF(old, new), computed from the public hash tiles.

        The tiles are authenticated against `new` itself (its root recomputed from them), so
        the proof is as good as one from the audit API, which only auditors may call; the
        caller then verifies it against the old root like any other proof.
        """
        if old_size == 0:
            return []
        nodes = [n for group in merkle.consistency_proof_nodes(old_size, new.size) for n in group]
        try:
            needed = tiles.tiles_needed(new.size, nodes)
            reader = await self._verified_tiles(new, needed, self._cached_tile)
        except ProofInvalid as e:
            # The log cannot show the tree it signed: it cannot prove it extends the old one.
            raise InconsistentLog(
                f"cannot prove that the checkpoint of size {new.size} extends "
                f"the one of size {old_size} seen before ({e})"
            ) from None
        except NotFound:
            # It no longer serves a tree it signed: the log was rolled back (or forked).
            raise InconsistentLog(
                f"the server no longer serves the tree of size {new.size} it signed, so it "
                f"cannot prove that tree extends the one of size {old_size}: the log was "
                "rolled back or forked (or this server's view is behind: try again)"
            ) from None
        try:
            proof = merkle.consistency_proof_from(reader, old_size, new.size)
        except CryptoError as e:
            raise ProofInvalid(f"cannot build a consistency proof from the tiles: {e}") from None
        return proof

    async def fetch_tile(self, tile: tiles.Tile) -> bytes:
        """One tile's bytes as the server serves them now; a missing partial tile falls back
        to the full one (cut later)."""
        path = "/v1/audit/" + tile.path
        try:
            return (await self._request("GET", path, signed=tile.entries)).content
        except NotFound:
            if tile.is_full:
                raise
            full = tiles.Tile(tile.level, tile.n, tiles.TILE_WIDTH, tile.entries)
            return (await self._request("GET", "/v1/audit/" + full.path, signed=tile.entries)).content

    async def _cached_tile(self, tile: tiles.Tile) -> bytes:
        """A hash tile for a consistency proof, from memory when this client fetched it before.

        Safe for proofs only: a proof computed from the tiles is verified against both roots,
        so where its bytes came from does not matter. Auditors' whole-log checks
        (`fetch_tile`, `verified_tiles`) always fetch what the server serves now."""
        cached = self._tiles.get(tile.path)
        if cached is None:
            cached = await self.fetch_tile(tile)
            if len(self._tiles) >= _TILE_CACHE:
                self._tiles.pop(next(iter(self._tiles)))  # the oldest
            self._tiles[tile.path] = cached
        return cached

    async def verified_tiles(self, cp: note.Checkpoint, wanted: Sequence[tiles.Tile]) -> tiles.VerifiedTiles:
        """The tiles `wanted`, fetched now and authenticated against `cp` (ProofInvalid if not)."""
        return await self._verified_tiles(cp, wanted, self.fetch_tile)

    async def _verified_tiles(
        self,
        cp: note.Checkpoint,
        wanted: Sequence[tiles.Tile],
        fetch: Callable[[tiles.Tile], Awaitable[bytes]],
    ) -> tiles.VerifiedTiles:
        fetched: dict[tiles.Tile, bytes] = {}
        for t in wanted:
            data = await fetch(t)
            key = (
                t
                if len(data) == t.width * merkle.HASH_SIZE
                else tiles.Tile(t.level, t.n, min(tiles.TILE_WIDTH, max(1, len(data) // merkle.HASH_SIZE)))
            )
            fetched[key] = data
        try:
            return tiles.verify_tiles(cp.size, cp.root_hash, fetched)
        except CryptoError as e:
            raise ProofInvalid(f"hash tiles do not verify against the checkpoint: {e}") from None

    async def checkpoint(self, *, cosigned: int = 0) -> m.Checkpoint:
        """The latest checkpoint (or the newest with `cosigned` witness cosignatures),
        verified and checked for consistency with the saved one.

        Only the profile's pinned witnesses' valid cosignatures are reported (`cosigners`);
        every other signature line is counted in `ignored`. `cosigned=K` needs a witness
        policy and refuses (UntrustedCheckpoint) a checkpoint without valid cosignatures from
        max(K, the policy's k) pinned witnesses.
        """
        policy = self.witness_policy()
        if cosigned:
            if policy is None:
                raise InputError(
                    f"a checkpoint with {cosigned} cosignature(s) can only be checked against "
                    "pinned witness keys, and this profile has no witness policy: set one with "
                    "'liaison audit witnesses set --key KEY ... --k K'"
                )
            if cosigned > len(policy.witnesses):
                raise InputError(
                    f"{cosigned} cosignatures asked for, but the witness policy pins only "
                    f"{len(policy.witnesses)} witness(es)"
                )
        before = self.memory.last()
        params = {"cosigned": cosigned} if cosigned else None
        text = (await self._request("GET", "/v1/audit/checkpoint", params=params, signed=False)).text
        cp = await self.trusted_checkpoint(text)
        seen = self._cosigners(text, policy)
        witnessed = policy is not None and len(seen.verified) >= policy.k
        if witnessed:
            self._remember_witnessed(text, cp)
        if cosigned and policy is not None and len(seen.verified) < max(cosigned, policy.k):
            raise UntrustedCheckpoint(
                f"the checkpoint of size {cp.size} that the server offers as cosigned carries "
                f"valid cosignatures from only {len(seen.verified)} of "
                f"{max(cosigned, policy.k)} required pinned witnesses{_stale(seen)}; "
                f"{seen.ignored} unverifiable signature line(s) ignored"
            )
        return m.Checkpoint(
            cp.origin,
            cp.size,
            b64encode(cp.root_hash),
            text,
            seen.names,
            before.checkpoint.size if before else None,
            seen.ignored,
            policy.describe() if policy is not None else None,
            witnessed,
            seen.stale,
        )

    # --- witnesses ----------------------------------------------------------------------------

    def witness_policy(self) -> WitnessPolicy | None:
        """The profile's witness policy (pinned witness keys, k of n), or None."""
        return self.witness_file.load(self.memory.log_key)

    def _cosigners(self, signed_note: str, policy: WitnessPolicy | None) -> Cosigners:
        return inspect_cosignatures(
            signed_note,
            self.memory.log_key,
            policy.witnesses if policy is not None else (),
            now=int(time.time()),
            max_age=policy.max_age if policy is not None else None,
        )

    def _remember_witnessed(self, signed_note: str, cp: note.Checkpoint) -> None:
        if self._witnessed is None or cp.size >= self._witnessed[1].size:
            self._witnessed = (signed_note, cp)

    async def witnessed(self, signed_note: Any) -> m.Witnessing:
        """Whether a checkpoint is witnessed under the profile's witness policy.

        The checkpoint must be signed by the pinned log key and consistent with what this
        profile saw (else VerificationFailed, as for any checkpoint). Then it is "witnessed"
        when it, or a checkpoint at least as large and proven consistent with it, carries
        valid cosignatures from k pinned witnesses (none older than the policy's max age).
        A fresh checkpoint is usually newer than the newest witnessed one: the client asks
        the service for its newest cosigned checkpoint until the policy's `wait` runs out,
        then reports "not-yet-witnessed" (or, with `require`, raises UntrustedCheckpoint).
        """
        cp = await self.trusted_checkpoint(signed_note)
        return await self._witness(signed_note, cp.size)

    async def _witness(self, signed_note: str, need: int) -> m.Witnessing:
        """The witness status of the (already trusted) checkpoint `signed_note`, which must be
        covered by a witnessed checkpoint of at least `need` entries."""
        policy = self.witness_policy()
        if policy is None:
            return m.Witnessing("no-policy", need)
        pinned = len(policy.witnesses)
        cp = await self.trusted_checkpoint(signed_note)
        if cp.size >= need:
            seen = self._cosigners(signed_note, policy)
            if len(seen.verified) >= policy.k:
                self._remember_witnessed(signed_note, cp)
                return m.Witnessing("witnessed", need, cp.size, seen.names, policy.k, pinned, seen.ignored)
        deadline = time.monotonic() + policy.wait
        newest: int | None = None
        while True:
            found = await self._newest_witnessed(policy)
            if found is not None:
                size, seen = found
                newest = size
                if size >= need:
                    return m.Witnessing("witnessed", need, size, seen.names, policy.k, pinned, seen.ignored)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(_WITNESS_POLL, left))
        status = m.Witnessing("not-yet-witnessed", need, newest, (), policy.k, pinned)
        if policy.require:
            raise UntrustedCheckpoint(
                f"the log's checkpoint of size {need} is {status.summary.removeprefix('logged, ')}, "
                f"and this profile's witness policy requires it"
            )
        return status

    async def _newest_witnessed(self, policy: WitnessPolicy) -> tuple[int, Cosigners] | None:
        """The newest checkpoint with the policy's quorum: the one remembered, or the one the
        service serves as cosigned by k witnesses (checked for consistency before it counts)."""
        if self._witnessed is not None:
            text, cp = self._witnessed
            seen = self._cosigners(text, policy)  # again: a max age may have run out since
            if len(seen.verified) >= policy.k:
                best: tuple[int, Cosigners] | None = (cp.size, seen)
            else:
                best, self._witnessed = None, None
        else:
            best = None
        try:
            r = await self._request(
                "GET", "/v1/audit/checkpoint", params={"cosigned": policy.k}, signed=False
            )
        except (APIError, TransportError):
            # None with that many cosignatures yet (404), or the service cannot say now: the
            # answer is "not yet witnessed", never a failure of what was already checked.
            return best
        if self._polled is not None and self._polled[0] == r.text:
            cp = self._polled[1]
        else:
            cp = await self.trusted_checkpoint(r.text)
            self._polled = (r.text, cp)
        seen = self._cosigners(r.text, policy)
        if len(seen.verified) >= policy.k and (best is None or cp.size > best[0]):
            self._remember_witnessed(r.text, cp)
            return cp.size, seen
        return best

    # --- directory ----------------------------------------------------------------------------

    async def _records(self, body: dict[str, Any]) -> tuple[note.Checkpoint, list[dict[str, Any]]]:
        records = body.get("devices")
        if not isinstance(records, list):
            raise MalformedResponse("directory answer has no device list")
        if not records:
            return (await self._maybe_checkpoint(body)), []
        cp = await self.trusted_checkpoint(body.get("checkpoint"))
        return cp, records

    async def _maybe_checkpoint(self, body: dict[str, Any]) -> note.Checkpoint:
        if body.get("checkpoint") is None:
            return note.Checkpoint("", 0, merkle.EMPTY_ROOT)
        return await self.trusted_checkpoint(body["checkpoint"])

    async def device(self, device_id: str) -> DeviceRecord:
        """A device's verified directory record (its key proven in the log)."""
        return (await self._device(device_id))[0]

    async def _device(self, device_id: str) -> tuple[DeviceRecord, note.Checkpoint]:
        body = await self._json("GET", "/v1/directory/devices", params={"device": device_id})
        cp, records = await self._records(body)
        found = [r for r in records if isinstance(r, dict) and r.get("device") == device_id]
        if len(found) != 1:
            raise ProofMissing(f"the directory does not show device {device_id}")
        return verify_device_record(found[0], cp), cp

    async def devices_of(self, principal: str) -> list[DeviceRecord]:
        body = await self._json("GET", "/v1/directory/devices", params={"principal": principal})
        cp, records = await self._records(body)
        out = [verify_device_record(r, cp) for r in records]
        if any(d.principal != principal for d in out):
            raise MalformedResponse(f"the directory answered for another principal than {principal}")
        return out

    # --- the verifiable directory (protocol 9) -------------------------------------------------

    @property
    def directory_memory(self) -> d.DirectoryMemory:
        """What this profile remembers of the directory (anchored roots, policy floor, the
        highest seq relied on per record), beside its log memory."""
        return d.DirectoryMemory.beside(self.memory.path, self.memory.log_key.key_string)

    async def _origin(self) -> str:
        """The log's origin (the first line of its checkpoints): every statement names it."""
        saved = self.memory.last()
        if saved is None:
            return (await self.checkpoint()).origin
        return saved.checkpoint.origin

    async def _open(self, directory: Any, *, fresh_from: int = 0) -> d.Opened:
        """A `directory` member opened (`_directory.open_directory`) at a checkpoint this
        client trusts: signed by the pinned key, consistent with what it saw, witnessed when
        its witness policy requires it, and no older than `fresh_from` (the size this client
        had seen when it asked: the server's newest cannot be older)."""
        if not isinstance(directory, dict):
            raise DirectoryInvalid(
                "unproven", "the server's answer carries no directory proofs (protocol 9.9)"
            )
        text = directory.get("checkpoint")
        cp = await self.trusted_checkpoint(text)
        if cp.size < fresh_from:
            raise DirectoryInvalid(
                "stale",
                f"the directory is proven at a checkpoint of size {cp.size}, older than the {fresh_from} "
                "this profile had already seen: an old answer is being replayed",
            )
        policy = self.witness_policy()
        if policy is not None and policy.require:
            await self._witness(str(text), cp.size)
        return d.open_directory(directory, cp)

    async def _record_at(self, record: str, at: int | None = None, *, fresh_from: int = 0) -> d.Opened | None:
        """One record proven at the checkpoint of size `at` (the newest if None, or the newest
        witnessed one when the witness policy requires it), or None when the server says there
        is no such record (or none this caller may see)."""
        if at is None:
            at = await self._witnessed_at()
            fresh_from = 0 if at is not None else fresh_from
        try:
            body = await self._json("GET", "/v1/directory/records", params={"record": record, "at": at})
        except NotFound:
            return None
        opened = await self._open(body, fresh_from=fresh_from)
        if at is not None and opened.checkpoint.size != at:
            raise DirectoryInvalid(
                "map-head", f"{record} was asked at size {at}, proven at {opened.checkpoint.size}"
            )
        return opened

    async def _witnessed_at(self) -> int | None:
        """With a witness policy that requires it, the size of the newest checkpoint with the
        policy's quorum: lookups are asked at it (protocol 9.9: at a cosigned checkpoint the
        client names). None without such a policy (lookups are at the newest checkpoint)."""
        policy = self.witness_policy()
        if policy is None or not policy.require:
            return None
        found = await self._newest_witnessed(policy)
        if found is None:
            raise UntrustedCheckpoint(
                f"no checkpoint of the log is witnessed yet ({policy.k} of {len(policy.witnesses)} "
                "pinned witnesses required), and this profile's witness policy requires it: "
                "the directory cannot be proven, nothing was sent"
            )
        return found[0]

    async def _authority(self, opened: d.Opened) -> tuple[d.Authority, Statement, Statement]:
        """The authority checker over `opened`, once the roots chain is verified from this
        profile's anchor and the served policy is the root-signed current one (their records
        fetched at the same checkpoint when the answer lacks them). Returns it, the newest
        roots statement and the policy statement."""
        for name in ("roots", "policy"):
            found = opened.records.get(name)
            if found is None or found.signed is None:
                extra = await self._record_at(name, opened.checkpoint.size)
                if extra is None:
                    raise DirectoryInvalid("unproven", f"the server shows no {name} statement")
                opened.merge(extra)
        memory = self.directory_memory
        anchor = memory.roots()
        if anchor is None:
            raise DirectoryInvalid(
                "roots",
                "this profile has no anchored roots statement: enrol it again with a LIAISON2 invitation",
            )
        roots = d.verify_roots(opened, *anchor)
        auth = d.Authority(opened, roots)
        policy = d.verify_policy(auth, await self.policy(), memory.policy_floor())
        return auth, roots, policy

    def _relied(self, opened: d.Opened, seqs: dict[str, int], roots: Statement, policy: Statement) -> None:
        """Refuse a rollback (a record older than one relied on before, the map going back);
        then remember what was relied on, and move the anchors forward."""
        memory = self.directory_memory
        seqs = {**seqs, "roots": roots.seq}
        memory.check(seqs, opened.head)
        memory.remember(seqs, opened.head)
        memory.advance(roots, int(policy.public["version"]))

    async def _current(self, record: str) -> d.Proven | None:
        """A record's newest statement, proven current (map proof at a trusted checkpoint), for
        the next statement of a change; None if it has none. Not older than one relied on."""
        before = self.memory.last()
        opened = await self._record_at(record, fresh_from=before.checkpoint.size if before else 0)
        found = opened.records.get(record) if opened is not None else None
        if found is None or found.signed is None:
            return None
        known = self.directory_memory.known_seq(record)
        if found.seq < known:
            raise DirectoryInvalid(
                "rollback",
                f"the server shows {record} at seq {found.seq}, this profile relied on seq {known}",
            )
        return found

    async def _decide(
        self,
        directory: Any,
        *,
        label: Label,
        channel: str,
        listed: dict[str, str],
        excluded: dict[str, str],
        fresh_from: int,
        older_map: bool = False,
    ) -> tuple[d.Decision, int]:
        """The client's own decision on a recipients answer (protocol 9.9): every listed device
        proven eligible, or DirectoryInvalid; warnings for members left out without proof.
        Returns it and the size of the checkpoint it was proven at."""
        opened = await self._open(directory, fresh_from=fresh_from)
        self._see_own(opened)
        auth, roots, policy = await self._authority(opened)
        decision = d.decide(auth, await self.policy(), label, channel, listed, excluded, older_map=older_map)
        self._relied(opened, decision.seqs, roots, policy)
        return decision, opened.checkpoint.size

    def _see_own(self, opened: d.Opened) -> list[dict[str, Any]]:
        """Check what `opened` proves of this device and its principal (protocol 9.10): this
        device's record, when shown, must be its own bundle and active (DirectoryInvalid
        `unknown-device`); a device of this principal the profile had not seen is an alarm
        (in `alarms`, raised once) and is returned as `{device, invited_by, version}`."""
        mine = opened.records.get(f"device:{self.device_id}")
        if mine is not None and mine.signed is not None:
            st = mine.statement
            if st.public["bundle"] != self.keys.public.to_json() or st.public["principal"] != self.principal:
                raise DirectoryInvalid(
                    "unknown-device",
                    f"the directory's record of {self.device_id} is not this device's key bundle",
                )
            if st.public["status"] != "active":
                raise DirectoryInvalid(
                    "unknown-device", f"the directory shows this device ({self.device_id}) revoked"
                )
        memory = self.directory_memory
        seen = memory.own_devices()
        new = []
        for proven in opened.records.values():
            if proven.signed is None:
                continue
            st = proven.statement
            if st.type != "device" or st.id == self.device_id or st.id in seen:
                continue
            if st.public["principal"] != self.principal:
                continue
            new.append({"device": st.id, "invited_by": d.invited_by(st), "version": proven.version})
        if new:
            memory.see_own(str(x["device"]) for x in new)
            for x in sorted(new, key=lambda x: str(x["device"])):
                self.alarms.append(
                    f"a device of your principal {self.principal} that this profile had not seen is in "
                    f"the directory: {x['device']} (invited by {x['invited_by']}, map version "
                    f"{x['version']}); if nobody you know enrolled it, tell your nation's admin to revoke it"
                )
        return new

    async def check_own_records(self) -> m.OwnRecords:
        """Monitor this device's own records at the newest checkpoint (protocol 9.10, issue 13
        item 8): its device statement proven current, active and of its own bundle, its
        principal's statement proven current, both signed with authority; and the other
        devices the server lists for its principal, each proven, those this profile had not
        seen reported in `new_devices` and `alarms`. DirectoryInvalid (`why`
        `unknown-device`) when the directory shows this device otherwise. Runs by itself at
        accepted checkpoints (`monitor_interval`)."""
        device, principal = f"device:{self.device_id}", f"principal:{self.principal}"
        before = self.memory.last()
        opened = await self._record_at(device, fresh_from=before.checkpoint.size if before else 0)
        if opened is None or opened.records.get(device, d.Proven(device, None)).signed is None:
            raise DirectoryInvalid(
                "unknown-device", f"the directory does not show this device ({self.device_id})"
            )
        other = await self._record_at(principal, opened.checkpoint.size)
        if other is None:
            raise DirectoryInvalid(
                "unproven", f"the directory does not show this device's principal {self.principal}"
            )
        opened.merge(other)
        listed = await self._json("GET", "/v1/directory/devices", params={"principal": self.principal})
        seen = self.directory_memory.own_devices() | {self.device_id}
        for item in listed.get("devices") or ():
            peer = item.get("device") if isinstance(item, dict) else None
            if not isinstance(peer, str) or peer in seen:
                continue
            found = await self._record_at(f"device:{peer}", opened.checkpoint.size)
            if found is None:
                raise DirectoryInvalid(
                    "unproven", f"the server lists device {peer} of {self.principal}, the map does not"
                )
            opened.merge(found)
        new = self._see_own(opened)
        auth, roots, policy = await self._authority(opened)
        st = auth.check(device).statement
        for x in new:
            auth.check(f"device:{x['device']}")
        mine = auth.proven(principal)
        # Signed by a root device, or an admin of its nation that held every predicate it granted.
        granted = [
            k for k, v in mine.facts.items() if v is True and k.startswith(("level>=", "holds:", "role:"))
        ]
        auth.check(principal, granted)
        self._relied(opened, dict(auth.seqs), roots, policy)
        self.directory_memory.see_own(checked=time.time())
        return m.OwnRecords(
            self.principal,
            self.device_id,
            mine.seq,
            st.seq,
            opened.checkpoint.size,
            opened.head.version,
            dict(mine.facts),
            new,
        )

    async def monitor_nation(self, nation: str | None = None) -> m.NationRange:
        """Monitor a nation's whole directory range (protocol 9.10; root, or an admin of the
        nation): every record of the range at the newest checkpoint this client trusts,
        proven complete (`verify_range`: nothing withheld, no leaf without its statement),
        each statement's signature checked; and the devices this profile had not seen there
        before, with who invited each. DirectoryInvalid when the range does not verify."""
        nation = nation or (await self.whoami()).nation
        before = self.memory.last()
        body = await self._json("GET", "/v1/directory/range", params={"nation": nation})
        records, siblings = body.get("records"), body.get("siblings")
        if body.get("nation") != nation or not isinstance(records, dict):
            raise MalformedResponse("the range answer is for another nation or has no records")
        shell = {k: body.get(k) for k in ("checkpoint", "tree_size", "map_head")}
        # The range's outside signers (a root device, say) come proven at the same head.
        opened = await self._open(
            {**shell, "records": body.get("signers") or {}, "roots": []},
            fresh_from=before.checkpoint.size if before else 0,
        )
        items: dict[bytes, bytes] = {}
        statements: dict[str, tuple[SignedStatement, int]] = {}
        for name, item in records.items():
            try:
                signed = SignedStatement.from_json(item["statement"])
                version = item["version"]
                if type(version) is not int or not 0 < version <= opened.head.version:
                    raise MalformedError("version")
            except (CryptoError, KeyError, TypeError) as e:
                raise DirectoryInvalid("malformed", f"the range's record {name}: {e}") from None
            st = signed.statement
            if st.record != name or st.nation != nation or st.origin != opened.checkpoint.origin:
                raise DirectoryInvalid("map-proof", f"the range's record {name} is not a record of {nation}")
            items[map_key(nation, name)] = leaf_value(st.digest(), version)
            statements[name] = (signed, version)
        if len(items) >= 2 or siblings is not None:
            try:
                hashes = [b64url_decode(str(x), field="sibling") for x in siblings or ()]
                verify_range(opened.head.root, map_key(nation, "")[:2], items, hashes)
            except CryptoError as e:
                raise DirectoryInvalid(
                    "map-proof", f"{nation}'s range is not complete or not the map's: {e}"
                ) from None
        bundles = {
            st.id: st.bundle for signed, _ in statements.values() if (st := signed.statement).type == "device"
        }
        for name, (signed, _) in sorted(statements.items()):
            signer = signed.statement.signer
            bundle = bundles.get(signer)
            if bundle is None:  # a signer outside the range, proven above
                found = opened.records.get(f"device:{signer}")
                if found is None or found.signed is None:
                    raise DirectoryInvalid(
                        "unproven", f"{name} is signed by {signer}, which the directory does not show"
                    )
                bundle = bundles[signer] = found.statement.bundle
            try:
                signed.verify(bundle)
            except CryptoError as e:
                raise DirectoryInvalid("authority", f"{name}: the signature does not verify ({e})") from None
        memory = self.directory_memory
        seen = memory.seen_devices(nation)
        devices = {n: sv for n, sv in statements.items() if sv[0].statement.type == "device"}
        new = []
        for _name, (signed, version) in sorted(devices.items()):
            st = signed.statement
            if st.id in seen:
                continue
            new.append(
                {
                    "device": st.id,
                    "principal": st.public["principal"],
                    "invited_by": d.invited_by(st),
                    "version": version,
                }
            )
        memory.see_devices(nation, (sv[0].statement.id for sv in devices.values()))
        active = sum(1 for sv in devices.values() if sv[0].statement.public["status"] == "active")
        return m.NationRange(
            nation,
            opened.checkpoint.size,
            opened.head.version,
            sum(1 for sv in statements.values() if sv[0].statement.type == "principal"),
            active,
            len(devices) - active,
            new,
        )

    async def _anchors(self) -> tuple[dict[str, Any], bytes]:
        """The anchors an invitation of this client names (protocol 9.7): the pinned log key,
        the newest roots statement it verified (checked again now), the policy version it has
        seen, its witness policy; and their digest."""
        before = self.memory.last()
        opened = await self._record_at("roots", fresh_from=before.checkpoint.size if before else 0)
        if opened is None:
            raise DirectoryInvalid("unproven", "the server shows no roots statement")
        auth, roots, policy = await self._authority(opened)
        self._relied(opened, dict(auth.seqs), roots, policy)
        witnesses = self.witness_policy()
        anchors = Anchors(
            self.memory.log_key.key_string,
            roots.seq,
            roots.digest(),
            self.directory_memory.policy_floor(),
            witnesses.k if witnesses else 0,
            tuple(w.key_string for w in witnesses.witnesses) if witnesses else (),
            witnesses.max_age if witnesses else None,
        )
        return anchors.to_json(), anchors.digest

    # --- analyst -------------------------------------------------------------------------------

    async def whoami(self) -> m.Me:
        """This device's principal as the server sees it now (cached for this client)."""
        if self._me is not None:
            return self._me
        body = await self._json("GET", "/v1/me")
        p = body.get("principal")
        if not isinstance(p, dict) or body.get("device") != self.device_id:
            raise MalformedResponse("/v1/me did not describe this device")
        self._me = m.Me(
            p["id"],
            self.device_id,
            p.get("display_name", ""),
            p.get("nation", ""),
            p.get("kind", ""),
            tuple(p.get("roles", ())),
            p.get("clearance", ""),
            tuple(p.get("compartments", ())),
            p.get("status", ""),
        )
        return self._me

    async def channels(self) -> list[m.Channel]:
        body = await self._json("GET", "/v1/channels")
        policy = await self.policy()
        out = []
        for c in body.get("channels", []):
            try:
                ceiling = Label.from_json(c["ceiling"], policy)
            except (LabelSyntaxError, KeyError, TypeError) as e:
                raise MalformedResponse(f"channel {c.get('id')}: bad ceiling ({e})") from None
            out.append(
                m.Channel(
                    c["id"], c.get("name", c["id"]), ceiling, ceiling.text(), tuple(c.get("members", ()))
                )
            )
        return out

    async def _plan(
        self, channel: str, label: Label, to: Sequence[str] | None
    ) -> tuple[m.Plan, list[PublicBundle]]:
        before = self.memory.last()
        at = await self._witnessed_at()
        body = await self._json(
            "GET", f"/v1/channels/{channel}/recipients", params={"label": label.text(), "at": at}
        )
        try:
            served = Label.from_json(body.get("label"), await self.policy())
        except LabelSyntaxError as e:
            raise MalformedResponse(f"recipients answer: bad label ({e})") from None
        if served != label:
            raise LabelAltered(f"the server planned for {served.text()}, not {label.text()}")
        if body.get("channel", channel) != channel:
            raise MalformedResponse(
                f"the recipients answer is for channel {body.get('channel')}, not {channel}"
            )
        cp, records = await self._records(body)
        verified = [verify_device_record(r, cp) for r in records]
        for rec in verified:
            require_unrevoked(rec, "recipient")
        excluded = [
            m.Excluded(e["principal"], e["reason"])
            for e in body.get("excluded", [])
            if isinstance(e, dict) and {"principal", "reason"} <= set(e)
        ]
        listed = {r.device: r.principal for r in verified}
        if len(listed) != len(verified):
            raise MalformedResponse("the recipients answer lists one device twice")
        # The client's own decision (protocol 9.9): the server's list is only a claim.
        decision, _ = await self._decide(
            body.get("directory"),
            label=label,
            channel=channel,
            listed=listed,
            excluded={e.principal: e.reason for e in excluded},
            fresh_from=before.checkpoint.size if before and at is None else 0,
            older_map=at is not None,
        )
        verified = [r for r in verified if r.device in decision.eligible]
        for rec in verified:
            if decision.eligible[rec.device][1].to_json() != rec.bundle.to_json():
                raise DirectoryInvalid(
                    "ineligible",
                    f"device {rec.device} of {rec.principal}: its key is not the one its statement names",
                )
        if to is not None:
            wanted = set(to)
            known = {r.principal for r in verified}
            for pid in sorted(wanted - known):
                why = next((e.reason for e in excluded if e.principal == pid), "not-member")
                raise InputError(f"{pid} cannot receive {label.text()} on {channel}: {why}")
            excluded += [m.Excluded(p, "not-addressed") for p in sorted(known - wanted)]
            verified = [r for r in verified if r.principal in wanted]
        plan = m.Plan(
            channel,
            label,
            label.text(),
            tuple(m.Recipient(r.principal, r.device, r.enrol_index) for r in verified),
            tuple(sorted(excluded, key=lambda e: e.principal)),
            cp.size,
            decision.warnings,
        )
        return plan, [decision.eligible[r.device][1] for r in verified]

    async def plan(self, channel: str, label: str | Label, *, to: Sequence[str] | None = None) -> m.Plan:
        """Exactly which devices would receive a message, and which members would not, and why."""
        return (await self._plan(channel, await self.parse_label(label), to))[0]

    async def send(
        self,
        channel: str,
        label: str | Label,
        data: bytes,
        *,
        to: Sequence[str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        attachments: Sequence[Attachment] = (),
        progress: Progress | None = None,
        journal: str | os.PathLike[str] | None = None,
        restart: bool = False,
        notice: Callable[[str], None] | None = None,
    ) -> m.Sent:
        """Seal `data` to every verified eligible device (or those of `to`) and submit it.

        `attachments` (files, see `Attachment`) are checked against the level's limits before
        anything is sent, then each is encrypted and uploaded as it is read (never held whole),
        and the envelope names them; `progress(name, done, total)` is called as each is read.
        A dropped connection is tried again, sending only what the server lacks. An upload
        the message does not end up naming is deleted again, unless `journal` keeps it.

        `journal` (a directory), when every attachment is a path: the send's message id and
        its attachments' ids and keys are kept there (`liaison.clients._resume`) until the
        message is accepted, so that the same send, after an interruption (Ctrl-C, a dropped
        connection, the server unavailable), resumes: only the parts the server lacks are
        sent. `restart`: discard such a journal and start afresh. `notice(line)` is told what
        became of a journal (resumed, discarded)."""
        sources = _open_sources(attachments)
        try:
            lab = await self._check_payloads(label, [data], content_type)
            self._check_attachments(lab, data, content_type, sources)
            batch = await self._batch(channel, lab, to)
            ident = _resume.identity(self, channel, lab, to, data, content_type, sources)
            book = _resume.Journal(Path(journal), ident) if journal is not None and ident else None
            uploads = _resume.Uploads(self, book, sources, notice)
            try:
                envelope_id = await uploads.prepare(restart=restart)
                uploaded = await uploads.upload(lab, progress)
                envelope = batch.seal(self.keys, data, content_type, envelope_id, uploaded)
                answer = await self._submit(envelope, to, patient=bool(sources), reused_id=uploads.resumed)
            except BaseException as e:
                await uploads.failed(e)
                raise
            uploads.accepted()
        finally:
            for source in sources:
                source.close()
        cp = await self.trusted_checkpoint(answer.get("checkpoint"))
        receipt = verify_message_receipt(answer, envelope, self.memory.log_key)
        try:
            # The receipt's checkpoint, and the directory's one the recipients' keys came from.
            witness = await self._witness(answer["checkpoint"], max(cp.size, batch.plan.tree_size))
        except VerificationFailed as e:
            raise type(e)(
                f"message {envelope['id']} was accepted (log index {receipt.entry.index}), but {e}"
            ) from None
        recipients = int(answer.get("recipients", 0))
        return m.Sent(
            envelope["id"],
            receipt.entry.index,
            recipients,
            cp.size,
            lab.text(),
            witness,
            batch.plan.warnings,
            _metas(uploaded),
        )

    def _check_attachments(
        self, lab: Label, data: bytes, content_type: str, sources: Sequence[_att.Source]
    ) -> None:
        """The level's limits on attachments (count, each one's ciphertext size) and on the
        body that names them, and names distinct, before anything is uploaded."""
        if not sources:
            return
        assert self._policy is not None  # _check_payloads fetched it
        rule = self._policy.rule(lab.classification)
        if len(sources) > rule.max_attachments:
            allowed = f"at most {rule.max_attachments}" if rule.max_attachments else "none"
            raise InputError(f"{len(sources)} attachments: {rule.name} allows {allowed}")
        names: set[str] = set()
        for src in sources:
            size = ciphertext_size(src.length)
            if size > rule.max_attachment_bytes:
                raise InputError(
                    f"attachment {src.name!r}: {src.length} bytes ({size} encrypted) is more than the "
                    f"{rule.max_attachment_bytes} encrypted bytes allowed at {rule.name}"
                )
            if src.name in names:
                raise InputError(f"two attachments are named {src.name!r}: give each its own name")
            names.add(src.name)
        # The body's members have their final size already (a zero key and hash stand in).
        members = [
            AttachmentInfo(_SIZING_ID, bytes(32), s.name, s.media_type, s.length, "0" * 64) for s in sources
        ]
        padded = frame_size(data, content_type, members)
        if padded > rule.max_bytes:
            raise InputError(
                f"{len(data)} bytes and {len(sources)} attachments' names and keys ({padded} padded) "
                f"are more than {rule.max_bytes} allowed at {rule.name}"
            )

    async def send_many(
        self,
        channel: str,
        label: str | Label,
        payloads: Sequence[bytes],
        *,
        to: Sequence[str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        concurrency: int = 4,
    ) -> list[m.Sent]:
        """Send many messages to one channel at one label, each sealed and verified as `send`
        does, on one recipients plan: the recipients are fetched and their keys proven once,
        up to `concurrency` submissions are in flight at a time, and the receipts are checked
        together (one consistency proof for all of them). Returns one `Sent` per payload, in
        order.

        Every payload is checked (size, STIX) before anything is sent. If the plan goes stale
        on the way (a device enrolled or revoked: `missing-recipient`, `ineligible-recipient`),
        a new plan is made and that message sealed again. Any other failure stops the sending
        (those in flight finish) and raises `SendManyFailed`, which says which payloads were
        sent (`sent`, verified) and which were not (`unsent`).
        """
        if concurrency < 1:
            raise InputError("concurrency must be at least 1")
        lab = await self._check_payloads(label, payloads, content_type)
        if not payloads:
            return []
        batch = await self._batch(channel, lab, to)
        accepted: dict[int, tuple[dict[str, Any], dict[str, Any], _Batch]] = {}
        failures: dict[int, ClientError] = {}
        replanning = asyncio.Lock()
        next_index = iter(range(len(payloads)))

        async def one(i: int) -> None:
            nonlocal batch
            replans = 0
            while True:
                current = batch
                envelope = current.seal(self.keys, payloads[i], content_type)
                try:
                    accepted[i] = (envelope, await self._submit(envelope, to), current)
                    return
                except PolicyRefused as e:
                    if e.slug not in _STALE_PLAN or replans >= _REPLANS:
                        raise
                async with replanning:
                    if batch is current:  # nobody else has made a new plan since
                        batch = await self._batch(channel, lab, to)
                replans += 1

        async def worker() -> None:
            for i in next_index:
                if failures:
                    return
                try:
                    await one(i)
                except ClientError as e:
                    failures[i] = e
                    return

        async with asyncio.TaskGroup() as group:  # a bug in one cancels the others
            for _ in range(min(concurrency, len(payloads))):
                group.create_task(worker())
        return await self._receipts(lab, accepted, failures, len(payloads))

    async def _receipts(
        self,
        lab: Label,
        accepted: dict[int, tuple[dict[str, Any], dict[str, Any], _Batch]],
        failures: dict[int, ClientError],
        count: int,
    ) -> list[m.Sent]:
        """Verify the receipts of `send_many`'s accepted messages, the largest checkpoint first
        (then each smaller one is a prefix of it: its proof comes from the same tiles)."""
        sent: dict[int, m.Sent] = {}
        unsent = tuple(i for i in range(count) if i not in accepted)
        first: ClientError | None = failures[min(failures)] if failures else None
        order = sorted(accepted, key=lambda i: -_tree_size(accepted[i][1]))
        need = 0
        try:
            for i in order:
                envelope, answer, used = accepted[i]
                cp = await self.trusted_checkpoint(answer.get("checkpoint"))
                receipt = verify_message_receipt(answer, envelope, self.memory.log_key)
                recipients = int(answer.get("recipients", 0))
                sent[i] = m.Sent(
                    envelope["id"],
                    receipt.entry.index,
                    recipients,
                    cp.size,
                    lab.text(),
                    None,
                    used.plan.warnings,
                )
                need = max(need, cp.size, used.plan.tree_size)
        except VerificationFailed as e:
            first = first or e
        if sent and first is None:
            largest = accepted[order[0]][1]["checkpoint"]
            try:
                witness = await self._witness(largest, need)
            except VerificationFailed as e:
                witness, first = None, e
            for i, item in sent.items():
                sent[i] = dataclasses.replace(item, witness=_witness_for(witness, item.tree_size))
        if first is not None:
            done = ", ".join(f"{s.id} (log index {s.log_index})" for _, s in sorted(sent.items()))
            raise SendManyFailed(
                f"{len(sent)} of {count} messages sent and verified{': ' + done if done else ''}; "
                f"{len(unsent)} not sent: {first}",
                sent=dict(sorted(sent.items())),
                unsent=unsent,
                error=first,
            )
        return [sent[i] for i in range(count)]

    async def _check_payloads(
        self, label: str | Label, payloads: Sequence[bytes], content_type: str
    ) -> Label:
        """The label, checked; every payload within its level's size (and a valid STIX bundle
        when it says it is one), before anything is sent."""
        lab = await self.parse_label(label)
        policy = await self.policy()
        self.witness_policy()  # a damaged witness policy is refused before anything is sent
        try:
            check_content_type(content_type)
        except MalformedContent as e:
            raise InputError(f"content type refused: {e}") from None
        rule = policy.rule(lab.classification)
        for data in payloads:
            if is_stix(content_type):
                validate_stix_bundle(data)
            padded = frame_size(data, content_type)
            if padded > rule.max_bytes:
                limit = f"{rule.max_bytes} allowed at {rule.name}"
                raise InputError(f"{len(data)} bytes ({padded} padded) is more than {limit}")
        return lab

    async def _batch(self, channel: str, lab: Label, to: Sequence[str] | None) -> _Batch:
        """A verified recipients plan and the one KEM suite to seal with, for sealing many."""
        plan, bundles = await self._plan(channel, lab, to)
        if not bundles:
            raise InputError(f"nobody on {channel} can receive {lab.text()}")
        suites = {b.kem_suite for b in bundles}
        suite = suites.pop() if len(suites) == 1 else ""
        if not suite:
            raise InputError("the recipients' devices use different KEM suites; send to each group with --to")
        try:
            check_suite(await self.policy(), lab, suite, self.keys.public.algorithms)
        except PolicyViolation as e:
            raise InputError(f"cannot send at {lab.classification}: {e.detail}") from None
        return _Batch(channel, lab, plan, tuple(bundles), suite)

    async def _submit(
        self,
        envelope: dict[str, Any],
        to: Sequence[str] | None,
        *,
        patient: bool = False,
        reused_id: bool = False,
    ) -> dict[str, Any]:
        """POST the envelope; the server's answer (a receipt) for exactly this envelope.

        `patient`: a dropped connection is tried again (`_att.Backoff`; the same envelope, so a
        try stored before its answer was lost is the duplicate below). `reused_id`: the id is
        an interrupted send's (a journal's), so a duplicate at the first try is that send,
        accepted already (`_resume.already_sent`)."""
        body: dict[str, Any] = {"envelope": envelope}
        if to is not None:
            body["to"] = sorted(set(to))
        backoff = _att.Backoff(self.retry if patient else Retry.never())
        try:
            while True:
                try:
                    answer = await self._json("POST", "/v1/messages", body=body)
                    break
                except ServerUnreachable as e:
                    await backoff.wait(e)
                reused_id = False
        except Conflict as e:
            if e.slug != "duplicate-envelope":
                raise
            if reused_id:
                raise _resume.already_sent(envelope["id"]) from None
            # Each envelope id is a fresh UUIDv7 (a journal's, reused, is handled above): a
            # duplicate is an earlier try of this very request that was stored though its
            # answer was lost (a 503 or a dropped connection while committing). The log's
            # proof of it is the receipt (checked against this envelope's digest like any other).
            answer = await self._json("GET", f"/v1/audit/messages/{envelope['id']}")
            answer.setdefault("recipients", len(envelope.get("recipients", ())))
        if answer.get("id") != envelope["id"]:
            raise MalformedResponse("the server's receipt is not for this message")
        return answer

    async def inbox(self, *, after: int = 0, limit: int | None = None) -> list[m.InboxItem]:
        """This device's messages after a cursor (all pages, or at most `limit`)."""
        items: list[m.InboxItem] = []
        while True:
            page = min(100, limit - len(items)) if limit is not None else 100
            if page <= 0:
                break
            got = await self.inbox_page(after=after, limit=page)
            items += got.items
            if not got.more or got.next <= after:
                break
            after = got.next
        return items

    async def inbox_page(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
        channel: str | None = None,
        unread: bool = False,
        since: str | None = None,
        prefix: str | None = None,
        totals: bool = False,
    ) -> m.InboxPage:
        """One page of this device's messages: oldest first after the cursor `after`, or
        newest first below `before`; only those on `channel`, not yet acknowledged (`unread`),
        accepted at or after `since` (RFC 3339) or whose id starts with `prefix` (8 or more
        characters). `totals` also counts every match, readable and withheld."""
        params: dict[str, Any] = {
            "after": after,
            "before": before,
            "limit": limit,
            "order": "newest" if newest_first else None,
            "channel": channel,
            "unread": "true" if unread else None,
            "since": since,
            "prefix": prefix,
            "totals": "true" if totals else None,
        }
        body = await self._json("GET", "/v1/inbox", params=params)
        policy = await self.policy()
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise MalformedResponse("inbox answer has no message list")
        try:
            return m.InboxPage(
                tuple(_inbox_item(x, policy) for x in messages),
                int(body["next"]),
                bool(body.get("more")),
                int(body.get("withheld", 0)),
                _opt_int(body.get("total")),
                _opt_int(body.get("withheld_total")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MalformedResponse(f"inbox answer is malformed ({e})") from None

    async def read(self, message_id: str, *, expected_label: Label | None = None) -> m.Message:
        """Fetch, verify and decrypt one message; VerificationFailed says why when it cannot.

        `expected_label` is a label something else claimed for the message (an inbox listing):
        it must be the label the sender signed. Its attachments are listed
        (`Message.attachments`), not fetched: `save_attachment` does that.
        """
        return (await self._read(message_id, expected_label))[0]

    async def _read(
        self, message_id: str, expected_label: Label | None = None
    ) -> tuple[m.Message, tuple[AttachmentInfo, ...]]:
        """`read`, and the attachments' body members (their keys) for `save_attachment`."""
        try:
            body = await self._json("GET", f"/v1/messages/{message_id}")
        except NotFound as e:
            if e.slug == "not-recipient":
                raise NotRecipient(
                    f"this device ({self.device_id}) is not a recipient of message {message_id}"
                ) from None
            raise
        envelope = body.get("envelope")
        try:
            parsed = parse_envelope(envelope)
        except CryptoError as e:
            raise MalformedResponse(f"message {message_id}: {e}") from None
        assert isinstance(envelope, dict)
        policy = await self.policy()
        if parsed.id != message_id or parsed.channel != body.get("channel"):
            raise MalformedResponse(f"message {message_id}: the envelope is for another id/channel")
        try:
            label = Label.from_json(envelope["label"], policy)
        except LabelSyntaxError as e:
            raise LabelAltered(f"message {message_id}: the label does not fit the policy ({e})") from None
        if expected_label is None and isinstance(body.get("label"), dict):
            # The server's own index label, when it sends one, must be the signed one too.
            try:
                expected_label = Label.from_json(body["label"], policy)
            except LabelSyntaxError as e:
                raise LabelAltered(f"message {message_id}: the label shown is malformed ({e})") from None
        sender, directory = await self._device(parsed.sender)
        require_unrevoked(sender, "sender")
        if sender.principal != body.get("sender"):
            raise SignatureInvalid(
                f"message {message_id}: the server names sender "
                f"{body.get('sender')}, but the key is {sender.principal}'s"
            )
        try:
            opened = open_envelope(
                envelope,
                self.keys,
                sender.bundle,
                expected_label=expected_label,
                required=policy.rule(label.classification).signatures,
                v1_refused=policy.v1_refused(datetime.now(UTC)),
            )
        except BadSignature as e:
            raise SignatureInvalid(f"message {message_id}: signature invalid ({e})") from None
        except LabelMismatch as e:
            raise LabelAltered(f"message {message_id}: {e}") from None
        except _CryptoNotARecipient:
            raise NotRecipient(
                f"message {message_id} carries no key for this device ({self.device_id})"
            ) from None
        except _CryptoKeyCommitmentMismatch:
            raise KeyCommitmentMismatch(
                f"message {message_id}: the sender gave this device a different content key than the "
                "one its signed envelope commits to; other recipients may read another content"
            ) from None
        except (DecryptionFailed, MalformedContent) as e:
            raise ContentInvalid(f"message {message_id}: {e}") from None
        except CryptoError as e:
            raise MalformedResponse(f"message {message_id}: {e}") from None
        proven = await self._message_receipt(message_id, envelope, body)
        if proven is not None and proven.entry.json.get("label") != label.to_json():
            raise LabelAltered(
                f"message {message_id}: the label the log recorded "
                f"({_text(proven.entry.json.get('label'))}) is not the label the "
                f"sender signed ({label.text()})"
            )
        witness = None
        if proven is not None:
            # The proof's checkpoint, and the directory's one the sender's key came from.
            witness = await self._witness(proven.note, max(proven.checkpoint.size, directory.size))
        return m.Message(
            parsed.id,
            parsed.channel,
            sender.principal,
            parsed.sender,
            label,
            label.text(),
            format_time(parsed.created, millis=False),
            opened.content_type,
            opened.plaintext,
            proven.entry.index if proven else int(body.get("log_index", -1)),
            proven is not None,
            witness,
            _metas(zip(parsed.attachments, opened.attachments, strict=True)),
        ), opened.attachments

    async def save_attachment(
        self,
        message_id: str,
        attachment: int | str,
        dest: BinaryIO | str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> m.SavedAttachment:
        """Download, decrypt and check one attachment of a message (`attachment`: its index
        from 1, or its id), the message read and verified first as `read` does.

        `dest` is a binary file object (the plaintext is written to it as it is decrypted: on
        an error it holds a prefix, which the caller discards) or a directory: the file is
        written there under the sender's name (a leading `.` saved as `_.`), complete only once
        every check passed (a temporary file until then, removed on any failure), never over
        an existing file unless `overwrite`. ContentInvalid when the download is not what the
        sender sealed."""
        folder = _directory(dest) if isinstance(dest, str | os.PathLike) else None
        msg, infos = await self._read(message_id)
        meta = _pick(msg, attachment)
        key = infos[meta.index - 1].key
        if folder is None:
            assert not isinstance(dest, str | os.PathLike)
            await _att.download(self, msg, meta, key, dest, progress)
            return _saved(msg, meta, None)
        return await self._save_into(msg, meta, key, folder, overwrite, progress)

    async def save_attachments(
        self,
        message_id: str,
        directory: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> list[m.SavedAttachment]:
        """Save every attachment of a message into `directory`, as `save_attachment` saves
        one (the message read and verified once). Every name is checked free first: when one
        exists (and not `overwrite`) nothing is downloaded."""
        folder = _directory(directory)
        msg, infos = await self._read(message_id)
        names: dict[str, m.AttachmentMeta] = {}
        for meta in msg.attachments:
            name = _att.safe_file_name(meta.name)
            if name in names:
                raise InputError(
                    f"attachments {names[name].index} and {meta.index} of message {msg.id} are both named "
                    f"{name!r}: save them one at a time into different directories"
                )
            names[name] = meta
            target = folder / name
            if not overwrite and (target.exists() or target.is_symlink()):
                raise InputError(
                    f"{target} exists: nothing was saved (remove it, or choose another directory)"
                )
        return [
            await self._save_into(msg, meta, infos[meta.index - 1].key, folder, overwrite, progress)
            for meta in msg.attachments
        ]

    async def _save_into(
        self,
        msg: m.Message,
        meta: m.AttachmentMeta,
        key: bytes,
        folder: Path,
        overwrite: bool,
        progress: Progress | None,
    ) -> m.SavedAttachment:
        target = _att.DirectoryTarget(folder, meta.name, overwrite=overwrite)
        try:
            await _att.download(self, msg, meta, key, target.file, progress)
        except BaseException:
            target.discard()
            raise
        return _saved(msg, meta, str(target.commit()))

    async def _message_receipt(
        self, message_id: str, envelope: dict[str, Any], body: dict[str, Any]
    ) -> VerifiedReceipt | None:
        """The proof that the log accepted exactly this envelope, or None if none is offered.

        Taken from the fetch answer's `receipt` when the server includes one, else from the
        audit API (auditors and admins). A proof that is offered must verify: a bad one
        refuses the message; an absent one is reported as `log_proven=False`.
        """
        receipt = body.get("receipt")
        if not isinstance(receipt, dict):
            if not _LOG_READERS.intersection((await self.whoami()).roles):
                return None  # the audit API would refuse (and log the refusal)
            try:
                receipt = await self._json("GET", f"/v1/audit/messages/{message_id}")
            except (PermissionDenied, NotFound):
                return None
        await self.trusted_checkpoint(receipt.get("checkpoint"))
        proven = verify_message_receipt(receipt, envelope, self.memory.log_key)
        if body.get("log_index") not in (None, proven.entry.index):
            raise ProofInvalid(f"message {message_id}: two different log indexes claimed")
        return proven

    async def prove(self, message_id: str) -> m.MessageProof:
        """Prove a message's acceptance is in the log (and, as a recipient, its envelope)."""
        proof = await self._json("GET", f"/v1/audit/messages/{message_id}")
        cp = await self.trusted_checkpoint(proof.get("checkpoint"))
        if proof.get("tree_size") != cp.size:
            raise MalformedResponse("the message proof's tree size is not its checkpoint's")
        entry = verify_entry(
            proof.get("entry"), proof.get("log_index"), proof.get("inclusion_proof"), cp, proof.get("opening")
        )
        if (entry.json.get("type"), entry.json.get("id")) != ("message.accepted", message_id):
            raise ProofInvalid(f"log entry {entry.index} is not the acceptance of {message_id}")
        checked = False
        try:
            body = await self._json("GET", f"/v1/messages/{message_id}")
        except APIError:
            body = {}  # not a recipient: the entry alone is proven
        envelope = body.get("envelope")
        if isinstance(envelope, dict):
            verify_message_receipt(proof, envelope, self.memory.log_key)
            checked = True
        witness = await self._witness(proof["checkpoint"], cp.size)
        return m.MessageProof(message_id, entry.index, cp.size, entry.json, checked, witness)

    async def ack(self, message_id: str) -> str:
        try:
            body = await self._json("POST", f"/v1/messages/{message_id}/ack", body={})
        except NotFound as e:
            if e.slug == "not-recipient":
                raise NotRecipient(f"this device is not a recipient of message {message_id}") from None
            raise
        return str(body.get("acked_at", ""))

    async def watch(self, *, after: int | None = None) -> AsyncGenerator[m.InboxEvent, None]:
        """Live events for this device (server-sent events), until the server closes.

        With `after` (an inbox cursor, e.g. the last event's), the messages delivered since
        come first, then the live ones, each once. A "closed" event (with its `reason`) is the
        server ending the stream; `liaison.clients._watch.follow` reconnects and resumes.
        """
        params = {"after": after} if after is not None else None
        policy = await self.policy()
        try:
            async with self._http.stream(
                "GET", "/v1/inbox/stream", params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as r:
                if not r.is_success:
                    await r.aread()
                    check_response(r)
                event, data = "", ""
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "":
                        if event in ("message", "closed") and data:
                            yield _event(event, data, policy)
                        event, data = "", ""
        except httpx.TransportError as e:
            raise transport_error(self.server, e) from None

    # --- admin ---------------------------------------------------------------------------------
    #
    # Every change carries the statement this device signs for it (protocol 9.3): the record's
    # next, chained to its newest statement as the directory proves it, saying exactly the
    # state the request leaves. The server checks it and refuses anything else.

    async def create_principal(
        self,
        pid: str,
        *,
        name: str,
        nation: str,
        clearance: str,
        compartments: Sequence[str] = (),
        roles: Sequence[str] = DEFAULT_ROLES,
        kind: str = "person",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": pid,
            "display_name": name,
            "nation": nation.upper(),
            "clearance": clearance,
            "compartments": [c.upper() for c in compartments],
            "roles": list(roles),
            "kind": kind,
        }
        state = d.PrincipalState(
            body["nation"], kind, clearance, tuple(body["compartments"]), tuple(body["roles"]), True
        )
        body.update(await self._principal_change(pid, state, await self._current(f"principal:{pid}")))
        return await self._json("POST", "/v1/admin/principals", body=body)

    async def update_principal(self, pid: str, **changes: Any) -> dict[str, Any]:
        body = {k: v for k, v in changes.items() if v is not None}
        if {"clearance", "compartments", "roles", "status"} & set(body):
            current = await self._current(f"principal:{pid}")
            now = await self._principal_now(pid, current)
            state = d.PrincipalState(
                now.nation,
                now.kind,
                str(body.get("clearance", now.clearance)),
                tuple(body.get("compartments", now.compartments)),
                tuple(body.get("roles", now.roles)),
                body.get("status", "active" if now.active else "suspended") == "active",
            )
            body.update(await self._principal_change(pid, state, current))
        return await self._json("PATCH", f"/v1/admin/principals/{pid}", body=body)

    async def _principal_now(self, pid: str, current: d.Proven | None) -> d.PrincipalState:
        """A principal's attributes before a change: as its proven statement says them (all
        facts are disclosed to an admin of its nation), else as the admin API lists them."""
        policy = await self.policy()
        if current is not None:
            state = d.principal_state(policy, current)
            if state is not None:
                return state
        listed = [p for p in await self.list_principals(search=pid) if p.id == pid]
        if not listed:
            raise NotFound("not-found", 404, f"no principal {pid}")
        p = listed[0]
        return d.PrincipalState(p.nation, p.kind, p.clearance, p.compartments, p.roles, p.status == "active")

    async def _principal_change(
        self, pid: str, state: d.PrincipalState, current: d.Proven | None
    ) -> dict[str, Any]:
        """The statement of a principal's change; none when the change itself is invalid (an
        id, level or compartment the policy refuses): the server then says why, as always."""
        try:
            return d.principal_change(
                self.keys, await self._origin(), await self.policy(), current, pid, state
            )
        except (PolicyViolation, MalformedError):
            return {}

    async def enrolment_code(self, pid: str, *, valid_for: int = INVITATION_LIFETIME) -> dict[str, Any]:
        """A one-time code for `pid`, made here and never sent to the server (protocol 9.8),
        with `invitation`: `LIAISON2-<code>-<digest of the anchors>`, the anchors this client
        has verified (its pinned log key, the newest roots statement, the policy version, its
        witness policy) for the new device to pin. The server stores the invitation statement
        this device signs (the code's public key), valid for `valid_for` seconds."""
        code = d.new_code()
        current = await self._current(f"principal:{pid}")
        nation = (
            current.statement.nation if current is not None else (await self._principal_now(pid, None)).nation
        )
        anchors, digest = await self._anchors()
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=valid_for)
        request = d.invitation_change(
            self.keys,
            await self._origin(),
            principal=pid,
            nation=nation,
            code=code,
            expires=expires,
            anchors=anchors,
            digest=digest,
        )
        body = await self._json("POST", f"/v1/admin/principals/{pid}/enrolment-codes", body=request)
        if body.get("invitation_key") != b64url_encode(invitation_public(code)):
            raise MalformedResponse("the server recorded another invitation key than this code's")
        return {**body, "code": code, "invitation": str(make_invitation_v2(code, digest))}

    async def list_devices(self, principal: str | None = None) -> list[m.DeviceInfo]:
        body = await self._json("GET", "/v1/admin/devices", params={"principal": principal})
        return [
            m.DeviceInfo(
                x["device"],
                x["principal"],
                x.get("enrolled_at"),
                bool(x["revoked"]),
                x.get("revoked_at"),
                x.get("last_seen_at"),
            )
            for x in body.get("devices", [])
        ]

    async def revoke_device(self, device_id: str) -> dict[str, Any]:
        """Revoke a device, with the statement that closes its directory record (if it has one)."""
        current = await self._current(f"device:{device_id}")
        body = d.revocation(self.keys, await self._origin(), current) if current is not None else {}
        return await self._json("POST", f"/v1/admin/devices/{device_id}/revoke", body=body)

    async def create_channel(self, cid: str, ceiling: str, name: str | None = None) -> dict[str, Any]:
        lab = await self.parse_label(ceiling)
        body: dict[str, Any] = {"id": cid, "ceiling": lab.to_json()}
        if name:
            body["name"] = name
        current = await self._current(f"channel:{cid}")
        origin = await self._origin()
        with contextlib.suppress(MalformedError):  # an id no statement names: the server says why
            body.update(d.channel_change(self.keys, origin, current, cid, lab, []))
        return await self._json("POST", "/v1/admin/channels", body=body)

    async def set_members(self, cid: str, principals: Sequence[str]) -> dict[str, Any]:
        statement = await self._members_statement(cid, lambda current: set(principals))
        return await self._json(
            "PUT", f"/v1/admin/channels/{cid}/members", body={"principals": list(principals), **statement}
        )

    async def _members_statement(self, cid: str, wanted: Callable[[set[str]], set[str]]) -> dict[str, Any]:
        """The statement of channel `cid` with the members `wanted(current members)`, chained
        to its proven newest statement (whose ceiling it keeps)."""
        current = await self._current(f"channel:{cid}")
        if current is None:
            return {}  # no such channel (or none this caller sees): the server says which
        st = current.statement
        members = wanted(set(st.members))
        try:
            return d.channel_change(self.keys, await self._origin(), current, cid, st.ceiling, members)
        except MalformedError:
            return {}  # a member id no statement can name: the server refuses and says why

    # --- audit -----------------------------------------------------------------------------

    async def audit_entries(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        type: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 1000,
    ) -> list[m.AuditEntry]:
        """Log entries (auditors); each entry's JSON is parsed from its bytes, not the server's."""
        out: list[m.AuditEntry] = []
        cursor: int | None = start
        while cursor is not None and len(out) < limit:
            body = await self._json(
                "GET",
                "/v1/audit/entries",
                params={"start": cursor, "end": end, "type": type, "actor": actor, "since": since},
            )
            for e in body.get("entries", []):
                if not isinstance(e, dict) or not _entry_ok(e):
                    raise MalformedResponse("an audit entry is malformed")
                data = _b64(e["entry"])
                # A v2 entry (protocol 10): its clear view and what the opening opens, each
                # recomputed against its commitment; the rest stays sealed.
                obj = parse_entry(data, e.get("opening"))
                sealed = _sealed(data, obj)
                out.append(
                    m.AuditEntry(
                        int(e["index"]),
                        obj["type"],
                        str(obj.get("time", obj.get("hour", ""))),
                        str(obj.get("actor", "")),
                        {k: v for k, v in obj.items() if k not in ("v", "type", "time", "actor", "hour")},
                        sealed,
                    )
                )
            nxt = body.get("next")
            more = bool(body.get("entries")) and isinstance(nxt, int) and nxt > cursor
            cursor = nxt if more else None
        return out[:limit]


def _sealed(data: bytes, view: Mapping[str, Any]) -> tuple[str, ...]:
    """The committed fields of a v2 entry that `view` does not open (none for v1)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return ()
    committed = obj.get("c") if isinstance(obj, dict) and obj.get("v") == 2 else None
    return tuple(sorted(set(committed) - set(view))) if isinstance(committed, dict) else ()


@dataclasses.dataclass(frozen=True)
class _Batch:
    """A verified recipients plan for one channel and label, and the suite to seal with."""

    channel: str
    label: Label
    plan: m.Plan
    bundles: tuple[PublicBundle, ...]
    suite: str

    def seal(
        self,
        keys: DeviceKeys,
        data: bytes,
        content_type: str,
        envelope_id: str | None = None,
        attachments: Sequence[tuple[AttachmentRef, AttachmentInfo]] = (),
    ) -> dict[str, Any]:
        return seal(
            data,
            channel=self.channel,
            label=self.label,
            sender=keys,
            recipients=list(self.bundles),
            content_type=content_type,
            suite=self.suite,
            envelope_id=envelope_id,
            attachments=attachments,
        )


#: A well-formed id for the stand-in body members that size a body before the uploads.
_SIZING_ID = "a_" + "a" * 26


def _open_sources(attachments: Sequence[Attachment]) -> list[_att.Source]:
    """Every attachment opened (readable, its length known, its name valid) before anything
    is sent; those opened are closed again if one is not."""
    sources: list[_att.Source] = []
    try:
        for a in attachments:
            if not isinstance(a, Attachment):
                raise InputError("attachments are Attachment(path or file object, name=, media_type=)")
            sources.append(_att.open_source(a))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def _metas(pairs: Iterable[tuple[AttachmentRef, AttachmentInfo]]) -> tuple[m.AttachmentMeta, ...]:
    return tuple(
        m.AttachmentMeta(i, ref.id, info.name, info.media_type, info.length, info.sha256, ref.size, ref.root)
        for i, (ref, info) in enumerate(pairs, start=1)
    )


def _pick(msg: m.Message, attachment: int | str) -> m.AttachmentMeta:
    """The attachment of `msg` at index `attachment` (from 1) or with that id."""
    found = [
        a
        for a in msg.attachments
        if (a.index == attachment if isinstance(attachment, int) else a.id == attachment)
    ]
    if not found:
        count = len(msg.attachments)
        has = f"has {count} attachment{'s' if count != 1 else ''}" if count else "has no attachments"
        raise InputError(f"message {msg.id} {has}: no attachment {attachment!r}")
    return found[0]


def _directory(dest: str | os.PathLike[str]) -> Path:
    folder = Path(dest).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory")
    return folder


def _saved(msg: m.Message, meta: m.AttachmentMeta, path: str | None) -> m.SavedAttachment:
    return m.SavedAttachment(
        msg.id, meta.index, meta.id, meta.name, meta.media_type, meta.length, meta.sha256, path
    )


def _tree_size(answer: dict[str, Any]) -> int:
    size = answer.get("tree_size")
    return size if type(size) is int else 0


def _witness_for(status: m.Witnessing | None, size: int) -> m.Witnessing | None:
    """One message's share of its batch's witness status: the batch's largest checkpoint
    covers every message's (each is a proven prefix of it)."""
    if status is None:
        return None
    if status.status == "no-policy":
        return m.Witnessing("no-policy", size)
    return dataclasses.replace(status, size=size)


def _stale(seen: Cosigners) -> str:
    return f" ({', '.join(seen.stale)}: older than the policy's max age)" if seen.stale else ""


def _entry_ok(e: dict[str, Any]) -> bool:
    return isinstance(e.get("entry"), str) and type(e.get("index")) is int


def _b64(text: str) -> bytes:
    try:
        data = b64decode(text, field="entry")
    except MalformedError as e:
        raise MalformedResponse(str(e)) from None
    return data


def _text(label: Any) -> str:
    try:
        text = Label.from_json(label).text()
    except (LabelSyntaxError, TypeError):
        return json.dumps(label)
    return text


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _inbox_item(x: Any, policy: Policy) -> m.InboxItem:
    """An inbox entry as the server lists it (a page's, or a stream event's)."""
    try:
        lab = Label.from_json(x["label"], policy)
        return m.InboxItem(
            x["id"],
            x["channel"],
            x["sender"],
            x["sender_device"],
            lab,
            lab.text(),
            x["created"],
            int(x["size"]),
            bool(x["read"]),
            bool(x.get("expired")),
            int(x["log_index"]),
            int(x["cursor"]),
        )
    except (KeyError, TypeError, ValueError, LabelSyntaxError) as e:
        raise MalformedResponse(f"inbox entry is malformed ({e})") from None


def _event(kind: str, data: str, policy: Policy) -> m.InboxEvent:
    try:
        obj = json.loads(data)
        if kind == "closed":
            return m.InboxEvent("closed", "", "", -1, reason=str(obj.get("reason", "")))
        item = _inbox_item(obj, policy)
    except (ValueError, AttributeError) as e:
        raise MalformedResponse(f"stream event is malformed ({e})") from None
    return m.InboxEvent(
        "message",
        item.id,
        item.channel,
        item.log_index,
        item.cursor,
        item.sender,
        item.sender_device,
        item.label_text,
        item.created,
        item.size,
    )
