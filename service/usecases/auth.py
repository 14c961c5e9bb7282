"""Authentication (RFC 9421 request signatures by enrolled devices) and the caller's identity.

Every authenticated request goes through `verify_signed` (the signature: CPU only) and then,
inside the writer job that does the request's work, `SignedRequest.consume`: the (keyid,
nonce) pair is accepted once and the device and principal are read fresh, so a revoked
device or a suspended principal is refused from the next request on.

Nothing here knows HTTP frameworks: the API layer hands over an `IncomingRequest`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, select

from liaison.crypto.errors import CryptoError, RequestSignatureError
from liaison.crypto.httpsig import Headers, check_request, parse_signature_params
from liaison.crypto.keys import PublicBundle

from ..problems import Problem
from ..state import AppState
from ..storage.db import faults_as_problems
from ..storage.models import Device, Nonce
from ..writer import CacheSlot, Claim, Entry, Refusal, Tx
from .readmodels import PrincipalView
from .refusals import access_denied

__all__ = [
    "WARM_BUNDLES",
    "BundleCache",
    "Caller",
    "IncomingRequest",
    "SignedRequest",
    "authenticate",
    "purge_nonces",
    "verify_signed",
    "warm_bundles",
]

_LAST_SEEN_EVERY = 60.0
_BUNDLE = "SELECT signed_bundle FROM device WHERE id = ?"
_auth_log = logging.getLogger("liaison.auth")

#: A device's revocation time and its principal, as of the writer's cache.
DEVICE_STATE: CacheSlot[tuple[datetime | None, PrincipalView]] = CacheSlot("device")


@dataclass(frozen=True)
class IncomingRequest:
    """What authentication needs of an HTTP request, as plain values.

    `target` is the URI the client signed (the configured public URL's form of the request's
    own), `path` the path as received, `headers` every field as received (repeats kept, so
    that a repeated signature field is refused), `client` the peer's address.
    """

    method: str
    target: str
    path: str
    headers: Headers
    body: bytes
    client: str

    @property
    def what(self) -> str:
        """How log entries name this request (bounded: the path is the client's)."""
        return f"{self.method} {self.path}"[:200]


@dataclass(frozen=True)
class Caller:
    """The authenticated device and its principal, as read in this request's transaction."""

    device_id: str
    bundle: PublicBundle
    principal: PrincipalView


class _PrincipalRow(NamedTuple):
    id: str
    display_name: str
    nation: str
    kind: str
    roles: str
    clearance: str
    compartments: str
    status: str


#: The hot path's statements, on the writer's raw connection (`Tx.raw`).
_DEVICE_STATE = (  # the columns of _PrincipalRow, in its order
    "SELECT device.revoked_at, principal.id, principal.display_name, principal.nation, "
    "principal.kind, principal.roles, principal.clearance, principal.compartments, "
    "principal.status FROM device JOIN principal ON principal.id = device.principal_id "
    "WHERE device.id = ?"
)
_NONCE_SEEN = "SELECT 1 FROM request_nonce WHERE keyid = ? AND nonce = ?"
_DELETE_NONCE = "DELETE FROM request_nonce WHERE keyid = ? AND nonce = ?"
_INSERT_NONCE = "INSERT INTO request_nonce (keyid, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_TOUCH = "UPDATE device SET last_seen_at = ? WHERE id = ?"


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature verified; its nonce and the device's state are not yet
    checked: that happens in the writer (`consume`), in the same batch as the request's work."""

    device_id: str
    bundle: PublicBundle
    nonce: str
    what: str
    touch: bool
    skew: int

    def consume(self, tx: Tx) -> PrincipalView:
        """Accept the (keyid, nonce) pair once and check the device and principal as they are
        now (from `Tx.cache`, which every change to them empties).

        Runs inside a writer job; every refusal comes before the one write (the nonce), so the
        job needs no savepoint. A replay is refused as such before any other reason.
        """
        raw = tx.raw
        known = tx.cache.get(DEVICE_STATE, self.device_id)
        if known is None:
            row = raw.execute(_DEVICE_STATE, (self.device_id,)).fetchone()
            if row is None:  # the bundle was cached but the device is gone: cannot happen
                raise Refusal(Problem("unauthenticated", "the signing device is not enrolled"), None)
            known = tx.cache.put(
                DEVICE_STATE, self.device_id, (row[0], PrincipalView.of(_PrincipalRow(*row[1:])))
            )
        revoked_at, view = known
        refusal = None
        if revoked_at is not None:
            refusal = "device-revoked", "this device was revoked"
        elif view.status != "active":
            refusal = "principal-suspended", "this principal is suspended"
        claimed = tx.nonce_claimed(self.device_id, self.nonce)  # None: not claimed for the batch
        if refusal is not None:  # nothing is written for a refused device; a replay is named
            if claimed:  # the batch inserted it: take it back
                raw.execute(_DELETE_NONCE, (self.device_id, self.nonce))
            elif claimed is False or raw.execute(_NONCE_SEEN, (self.device_id, self.nonce)).fetchone():
                refusal = "replayed-request", "this request was already received"
            raise Refusal(Problem(*refusal), self.denied(refusal[0]))
        if claimed is None:
            expires = raw.time(tx.now + timedelta(seconds=self.claim.seconds))
            claimed = raw.execute(_INSERT_NONCE, (self.device_id, self.nonce, expires)).rowcount == 1
        if not claimed:
            raise Refusal(
                Problem("replayed-request", "this request was already received"),
                self.denied("replayed-request"),
            )
        if self.touch:
            raw.execute(_TOUCH, (raw.time(tx.now), self.device_id))
        return view

    @property
    def claim(self) -> Claim:
        """The nonce this request's job consumes, for the writer to claim with its batch's
        others (`Writer.run`'s `nonce`): kept for 2 x skew + 60 s, as `purge_nonces` assumes."""
        return Claim(self.device_id, self.nonce, 2 * self.skew + 60)

    def caller(self, tx: Tx) -> Caller:
        """`consume`, as the authenticated `Caller`."""
        return Caller(self.device_id, self.bundle, self.consume(tx))

    def denied(self, why: str) -> Entry:
        """The `access.denied` entry of this request, refused for `why`."""
        return access_denied(self.device_id, self.what, why, self.device_id)


async def _bundle(state: AppState, device_id: str) -> PublicBundle | None:
    """The device's public bundle, from the cache or the database (None if not enrolled).
    Bundles never change (the id is their fingerprint), so caching them is safe. On SQLite
    the row is read at once on the loop's thread (`storage.quickread`), else, or if that
    cannot be done now, through the async driver."""
    cached = state.bundles.get(device_id)
    if cached is not None:
        return cached
    read, stored = _read_at_once(state, device_id)
    if not read:
        with faults_as_problems():  # a database outage is a 503 here too, not a server error
            async with state.db.sessions() as session:
                device = await session.get(Device, device_id)
        stored = None if device is None else device.signed_bundle
    if stored is None:
        return None
    bundle = PublicBundle.from_stored(stored)
    state.bundles[device_id] = bundle
    return bundle


#: Bundles `warm_bundles` loads at start: every enrolled device of a coalition's deployment
#: (docs/scaling.md: 5,000 analysts), at 3.6 KiB each in memory (its ML-DSA-65 and
#: ML-KEM-768 keys) and 52-78 us each to load (bench/bundles.py); past it, the most recently
#: seen devices' (the others are read at their first request, as any device enrolled later).
WARM_BUNDLES = 20_000
#: Rows `warm_bundles` reads at a time.
_WARM_PAGE = 500


async def warm_bundles(state: AppState, limit: int = WARM_BUNDLES) -> int:
    """Load the bundles of up to `limit` devices not revoked into `state.bundles` (the most
    recently seen first); returns how many. Without it, the first request of each device
    after a start waited for its own read of the database, and when many devices arrived
    together (every client reconnecting after a restart), some waited hundreds of
    milliseconds behind the others' (docs/scaling.md 2c). A stored bundle that does not
    parse is left to its device's first request, which fails as before."""
    loaded = 0
    query = (
        select(Device.id, Device.signed_bundle)
        .where(Device.revoked_at.is_(None))
        .order_by(Device.last_seen_at.desc().nulls_last(), Device.id)
        .limit(limit)
        .execution_options(yield_per=_WARM_PAGE)
    )
    async with state.db.sessions() as session:
        # Streamed a page at a time: the stored bundles' JSON (about 9 KiB each) is never all
        # in memory at once, only the parsed keys are kept.
        result = await session.stream(query)
        async for page in result.partitions():
            for device_id, signed_bundle in page:
                if device_id in state.bundles:
                    continue
                try:
                    state.bundles[device_id] = PublicBundle.from_stored(signed_bundle)
                except CryptoError:
                    continue
                loaded += 1
    return loaded


class BundleCache:
    """`state.bundles` as the PostgreSQL listener's `DeviceCache`: the bundles of devices
    enrolled through other processes, loaded when their enrolment is notified."""

    def __init__(self, state: AppState) -> None:
        self.bundles = state.bundles

    def wants(self, device_id: str) -> bool:
        return device_id not in self.bundles

    def put(self, device_id: str, stored: str) -> None:
        bundle = PublicBundle.from_stored(stored)
        if bundle.device_id != device_id:  # the id is the bundle's fingerprint: never so
            raise CryptoError(f"the stored bundle of {device_id} is another device's")
        self.bundles.setdefault(device_id, bundle)


def _read_at_once(state: AppState, device_id: str) -> tuple[bool, str | None]:
    """(True, the stored signed bundle or None if no such device) when the database could
    answer at once (SQLite); (False, None) when it must be read the usual way."""
    quick = state.db.quick_reader
    if quick is None:
        return False, None
    try:
        row = quick.one(_BUNDLE, (device_id,))
    except sqlite3.Error:
        return False, None
    return True, None if row is None else str(row[0])


async def verify_signed(state: AppState, request: IncomingRequest) -> SignedRequest:
    """Check the RFC 9421 signature (CPU only); refusals of known devices are logged.

    The Ed25519 check runs here, on the event loop: handing it to a thread (cryptography
    releases the GIL while it verifies) measured slower, every hand-off a wait for the GIL.
    """
    try:
        params = parse_signature_params(request.headers)
    except RequestSignatureError as e:
        raise Problem(e.reason, e.detail) from None
    bundle = state.bundles.get(params.keyid) or await _bundle(state, params.keyid)
    if bundle is None:
        raise Problem("unauthenticated", "the signing device is not enrolled")
    skew = state.settings.clock_skew_seconds
    try:
        pending = check_request(
            request.method, request.target, request.headers, request.body, params=params, skew_seconds=skew
        )
        pending.verify(bundle.ed25519)
    except (RequestSignatureError, CryptoError) as e:
        reason, detail = (
            (e.reason, e.detail)
            if isinstance(e, RequestSignatureError)
            else ("bad-request-signature", str(e))
        )
        # Not attributed to the (unverified) keyid, neither logged against it nor charged to
        # it: device ids are public (see `_signature_failed`).
        _signature_failed(state, request.client, reason)
        raise Problem(reason, detail) from None
    state.limiter.check(params.keyid, "too many requests from this device")
    touch = time.monotonic() - state.last_seen.get(params.keyid, 0.0) > _LAST_SEEN_EVERY
    if touch:
        state.last_seen[params.keyid] = time.monotonic()
    return SignedRequest(params.keyid, bundle, params.nonce, request.what, touch, skew)


def _signature_failed(state: AppState, client: str, reason: str) -> None:
    """Account for a request whose signature did not verify, before anything else happens.

    Such a request proves nothing about who sent it: device ids are public, so anyone can name
    any device. It is therefore never attributed to the device it names, and nothing is
    written to the audit log (an entry per forgery would let anyone blame a device, and fill
    the permanent log, at will: see docs/audit.md). It is counted by reason
    (`liaison_request_signature_failures_total`) and limited per client address: past the
    limit the answer is 429 instead of 401, and only failures within the limit get a warning
    line (so the operational log grows by at most the limit's rate per address). A valid
    request is never charged here, so forgeries from an address do not lock out the honest
    clients behind it.
    """
    state.metrics.signature_failures.labels(reason).inc()
    state.auth_failure_limiter.check(f"addr:{client}", "too many failed request signatures from this address")
    _auth_log.warning(
        "request signature failed",
        extra={"fields": {"event": "request-signature-failed", "reason": reason, "client": client[:64]}},
    )


async def authenticate(state: AppState, request: IncomingRequest) -> Caller:
    """Verify, then consume in the writer: the caller of an authenticated request."""
    signed = await verify_signed(state, request)
    result = await state.writer.run(signed.caller, shares_cache=True, savepoint=False, nonce=signed.claim)
    return result.value


async def purge_nonces(state: AppState) -> int:
    """Forget seen nonces whose window has passed. Safe: a nonce is kept for 2 x skew + 60 s
    after it was accepted, and by then any replay of it fails the `created` check anyway."""

    def job(tx: Tx) -> int:
        result = tx.session.execute(delete(Nonce).where(Nonce.expires_at < tx.now))
        return int(getattr(result, "rowcount", 0) or 0)

    return (await state.writer.run(job, shares_cache=True)).value  # nonces: nothing cached
