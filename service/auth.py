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
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from liaison.crypto.errors import CryptoError, RequestSignatureError
from liaison.crypto.httpsig import parse_signature_params, verify_request
from liaison.crypto.keys import PublicBundle

from .models import Device, Nonce, Principal
from .problems import Problem
from .state import AppState
from .views import PrincipalView
from .writer import Refusal, Tx

__all__ = ["Caller", "CurrentCaller", "State", "authenticate", "get_state", "purge_nonces",
           "target_uri"]

_LAST_SEEN_EVERY = 60.0


def get_state(request: Request) -> AppState:
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


async def authenticate(request: Request, state: State) -> Caller:
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
    try:
        verify_request(request.method, target_uri(state, request), headers, body, bundle.ed25519,
                       skew_seconds=state.settings.clock_skew_seconds)
    except (RequestSignatureError, CryptoError) as e:
        reason, detail = (e.reason, e.detail) if isinstance(e, RequestSignatureError) else (
            "bad-request-signature", str(e))
        # Failures are limited per client address, not per the (unverified) keyid: device ids
        # are public, so charging the named device would let anyone lock a device out.
        _limit(state, f"addr:{request.client.host if request.client else 'unknown'}",
               "too many failed request signatures from this address")
        await _deny(state, params.keyid, request, reason, detail)
        raise AssertionError("unreachable") from e
    _limit(state, params.keyid, "too many requests from this device")

    skew = state.settings.clock_skew_seconds
    device_id = params.keyid
    touch = time.monotonic() - state.last_seen.get(device_id, 0.0) > _LAST_SEEN_EVERY

    def consume(tx: Tx) -> PrincipalView:
        s = tx.session
        seen = s.scalar(select(Nonce.keyid).where(Nonce.keyid == device_id,
                                                  Nonce.nonce == params.nonce))
        if seen is not None:
            raise Refusal(Problem("replayed-request", "this request was already received"),
                          _denial(device_id, request, "replayed-request"))
        s.execute(insert(Nonce).values(keyid=device_id, nonce=params.nonce,
                                       expires_at=tx.now + timedelta(seconds=2 * skew + 60)))
        row = s.execute(select(Device.revoked_at, Principal).join(
            Principal, Principal.id == Device.principal_id).where(Device.id == device_id)).one()
        revoked_at, principal = row
        if revoked_at is not None:
            raise Refusal(Problem("device-revoked", "this device was revoked"),
                          _denial(device_id, request, "device-revoked"))
        if principal.status != "active":
            raise Refusal(Problem("principal-suspended", "this principal is suspended"),
                          _denial(device_id, request, "principal-suspended"))
        if touch:
            s.execute(update(Device).where(Device.id == device_id).values(last_seen_at=tx.now))
        return PrincipalView.of(principal)

    result = await state.writer.run(consume, shares_cache=True)
    if touch:
        state.last_seen[device_id] = time.monotonic()
    return Caller(device_id, bundle, result.value)


def _limit(state: AppState, key: str, detail: str) -> None:
    wait = state.limiter.take(key)
    if wait:
        raise Problem("rate-limited", detail,
                      headers={"Retry-After": str(max(1, round(wait + 0.5)))})


def _denial(device_id: str, request: Request, reason: str) -> tuple[str, str, str | None, dict]:
    # The path is the client's: bounded, so a huge one cannot overflow the entry (65535 bytes).
    return ("access.denied", device_id, device_id,
            {"who": device_id, "what": f"{request.method} {request.url.path}"[:200], "why": reason})


async def _deny(state: AppState, device_id: str, request: Request, reason: str, detail: str) -> None:
    """Log an authentication failure of a known device, then refuse."""
    entry = _denial(device_id, request, reason)

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
