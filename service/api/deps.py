"""Request dependencies as `Annotated` aliases: the state, the signed request, the caller.

The one place where an HTTP request becomes the plain values use cases take
(`IncomingRequest`): the signed target URI, headers, body and client address.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..state import AppState
from ..usecases import audit, auth
from ..usecases.auth import Caller, IncomingRequest, SignedRequest

__all__ = ["AuditReader", "CurrentCaller", "Signed", "State", "get_state", "incoming"]


async def get_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain-def dependency in a worker thread, a thread hop
    # (and a fight for the GIL) on every request for one attribute read.
    state: AppState = request.app.state.liaison
    return state


State = Annotated[AppState, Depends(get_state)]


def target_uri(state: AppState, request: Request) -> str:
    """The URI the client signed: the configured public URL, or the request's own."""
    if state.settings.public_url:
        base = state.settings.public_url.rstrip("/")
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{base}{request.url.path}{query}"
    return str(request.url)


async def incoming(state: AppState, request: Request) -> IncomingRequest:
    """The request as use cases see it (its body read whole: bodies are bounded upstream)."""
    return IncomingRequest(
        method=request.method,
        target=target_uri(state, request),
        path=request.url.path,
        headers=dict(request.headers),
        body=await request.body(),
        client=request.client.host if request.client else "unknown",
    )


async def signed_request(request: Request, state: State) -> SignedRequest:
    """A request whose signature verified (its nonce is consumed by the use case's job)."""
    return await auth.verify_signed(state, await incoming(state, request))


async def current_caller(request: Request, state: State) -> Caller:
    """The authenticated caller: signature verified, nonce consumed, device and principal
    checked as they are now."""
    return await auth.authenticate(state, await incoming(state, request))


async def audit_reader(request: Request, state: State) -> Caller | None:
    """Entries and proofs: an auditor's or admin's signed request, or anyone if audit_public."""
    if state.settings.audit_public:
        return None
    req = await incoming(state, request)
    caller = await auth.authenticate(state, req)
    await audit.require_auditor(state, caller, f"{req.method} {req.path}")
    return caller


Signed = Annotated[SignedRequest, Depends(signed_request)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
AuditReader = Annotated[Caller | None, Depends(audit_reader)]
