"""Authentication (RFC 9421 request signatures by enrolled devices) and the caller's identity.

Every authenticated path goes through `authenticate`: verify the signature (CPU only), then,
in the writer, consume the (keyid, nonce) pair once and read the device and principal
fresh, so a revoked device or a suspended principal is refused from the next request on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Request
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from liaison.crypto.errors import CryptoError, RequestSignatureError
from liaison.crypto.httpsig import check_request, parse_signature_params
from liaison.crypto.keys import PublicBundle

from ..problems import Problem
from ..state import AppState
from ..storage.models import Device, Nonce
from ..writer import Refusal, Tx
from .readmodels import PrincipalView

__all__ = ["Caller", "CurrentCaller", "SignedRequest", "State", "authenticate",
           "get_state", "purge_nonces", "target_uri", "verify_signed"]

_LAST_SEEN_EVERY = 60.0


async def get_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain-def dependency in a worker thread, a thread hop
    # (and a fight for the GIL) on every request for one attribute read.
    state: AppState = request.app.state.liaison
    return state


State = Annotated[AppState, Depends(get_state)]


@dataclass(frozen=True)
class Caller:
    """The authenticated device and its principal, as read in this request's transaction."""

    device_id: str
    bundle: PublicBundle
    principal: PrincipalView


def target_uri(state: AppState, request: Request) -> str:
    """The URI the client signed: the configured public URL, or the request's own."""
    if state.settings.public_url:
        base = state.settings.public_url.rstrip("/")
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{base}{request.url.path}{query}"
    return str(request.url)


async def load_bundle(state: AppState, session: AsyncSession, device_id: str) -> PublicBundle | None:
    """The device's public bundle, from the cache or the database (None if not enrolled)."""
    cached = state.bundles.get(device_id)
    if cached is not None:
        return cached
    row = await session.get(Device, device_id)
    if row is None:
        return None
    bundle = PublicBundle.from_json(json.loads(row.signed_bundle)["bundle"])
    state.bundles[device_id] = bundle
    return bundle


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature verified; its nonce and the device's state are not yet
    checked: that happens in the writer (`consume`), in the same batch as the request's work."""

    device_id: str
    bundle: PublicBundle
    nonce: str
    what: str
    touch: bool

    def consume(self, tx: Tx, skew: int) -> PrincipalView:
        """Accept the (keyid, nonce) pair once and check the device and principal as they are
        now (from `Tx.cache`, which every change to them empties).

        Runs inside a writer job; every refusal comes before the one write (the nonce), so the
        job needs no savepoint. A replay is refused as such before any other reason.
        """
        raw = tx.raw
        key = ("device", self.device_id)
        known: tuple[Any, PrincipalView] | None = tx.cache.get(key)
        if known is None:
            row = raw.execute(_DEVICE_STATE, (self.device_id,)).fetchone()
            if row is None:  # the bundle was cached but the device is gone: cannot happen
                raise Refusal(Problem("unauthenticated", "the signing device is not enrolled"),
                              None)
            known = tx.cache[key] = (row[0], PrincipalView.of(_PrincipalRow(*row[1:])))
        revoked_at, view = known
        refusal = None
        if revoked_at is not None:
            refusal = "device-revoked", "this device was revoked"
        elif view.status != "active":
            refusal = "principal-suspended", "this principal is suspended"
        if refusal is not None:  # nothing is written for a refused device; a replay is named
            if raw.execute(_NONCE_SEEN, (self.device_id, self.nonce)).fetchone() is not None:
                refusal = "replayed-request", "this request was already received"
            raise Refusal(Problem(*refusal), _denial(self.device_id, self.what, refusal[0]))
        expires = raw.time(tx.now + timedelta(seconds=2 * skew + 60))
        if raw.execute(_INSERT_NONCE, (self.device_id, self.nonce, expires)).rowcount != 1:
            raise Refusal(Problem("replayed-request", "this request was already received"),
                          _denial(self.device_id, self.what, "replayed-request"))
        if self.touch:
            raw.execute(_TOUCH, (raw.time(tx.now), self.device_id))
        return view


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
    "WHERE device.id = ?")
_NONCE_SEEN = "SELECT 1 FROM request_nonce WHERE keyid = ? AND nonce = ?"
_INSERT_NONCE = ("INSERT INTO request_nonce (keyid, nonce, expires_at) VALUES (?, ?, ?) "
                 "ON CONFLICT DO NOTHING")
_TOUCH = "UPDATE device SET last_seen_at = ? WHERE id = ?"


async def verify_signed(request: Request, state: AppState) -> SignedRequest:
    """Check the RFC 9421 signature (CPU only); refusals of known devices are logged.

    The Ed25519 check runs here, on the event loop: handing it to a thread (cryptography
    releases the GIL while it verifies) measured slower, every hand-off a wait for the GIL.
    """
    body = await request.body()
    headers = dict(request.headers)
    try:
        params = parse_signature_params(headers)
    except RequestSignatureError as e:
        raise Problem(e.reason, e.detail) from None
    bundle = state.bundles.get(params.keyid)
    if bundle is None:
        async with state.db.sessions() as session:
            bundle = await load_bundle(state, session, params.keyid)
    if bundle is None:
        raise Problem("unauthenticated", "the signing device is not enrolled")
    what = f"{request.method} {request.url.path}"[:200]
    try:
        pending = check_request(request.method, target_uri(state, request), headers, body,
                                params=params, skew_seconds=state.settings.clock_skew_seconds)
        pending.verify(bundle.ed25519)
    except (RequestSignatureError, CryptoError) as e:
        reason, detail = (e.reason, e.detail) if isinstance(e, RequestSignatureError) else (
            "bad-request-signature", str(e))
        # Failures are limited per client address, not per the (unverified) keyid: device ids
        # are public, so charging the named device would let anyone lock a device out.
        _limit(state, f"addr:{request.client.host if request.client else 'unknown'}",
               "too many failed request signatures from this address")
        await _deny(state, params.keyid, what, reason, detail)
        raise AssertionError("unreachable") from e
    _limit(state, params.keyid, "too many requests from this device")
    touch = time.monotonic() - state.last_seen.get(params.keyid, 0.0) > _LAST_SEEN_EVERY
    if touch:
        state.last_seen[params.keyid] = time.monotonic()
    return SignedRequest(params.keyid, bundle, params.nonce, what, touch)


async def authenticate(request: Request, state: State) -> Caller:
    """The dependency of every authenticated path: verify, then consume in the writer."""
    signed = await verify_signed(request, state)
    skew = state.settings.clock_skew_seconds
    result = await state.writer.run(lambda tx: signed.consume(tx, skew), shares_cache=True,
                                    savepoint=False)
    return Caller(signed.device_id, signed.bundle, result.value)


def _limit(state: AppState, key: str, detail: str) -> None:
    wait = state.limiter.take(key)
    if wait:
        raise Problem("rate-limited", detail,
                      headers={"Retry-After": str(max(1, round(wait + 0.5)))})


def _denial(device_id: str, what: str, reason: str) -> tuple[str, str, str | None, dict[str, Any]]:
    # `what` is bounded by the caller (the path is the client's: a huge one must not overflow
    # the entry's 65535 bytes).
    return ("access.denied", device_id, device_id, {"who": device_id, "what": what, "why": reason})


async def _deny(state: AppState, device_id: str, what: str, reason: str, detail: str) -> None:
    """Log an authentication failure of a known device, then refuse."""
    entry = _denial(device_id, what, reason)

    def job(tx: Tx) -> None:
        raise Refusal(Problem(reason, detail), entry)

    await state.writer.run(job)


async def purge_nonces(state: AppState) -> int:
    """Forget seen nonces whose window has passed. Safe: a nonce is kept for 2 x skew + 60 s
    after it was accepted, and by then any replay of it fails the `created` check anyway."""

    def job(tx: Tx) -> int:
        result = tx.session.execute(delete(Nonce).where(Nonce.expires_at < tx.now))
        return int(getattr(result, "rowcount", 0) or 0)

    return (await state.writer.run(job)).value


CurrentCaller = Annotated[Caller, Depends(authenticate)]
