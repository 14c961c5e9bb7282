"""Request dependencies as `Annotated` aliases: the state, the signed request, the caller.

The one place where an HTTP request becomes the plain values use cases take
(`IncomingRequest`): the signed target URI, the header fields as received, the body and the
client address. The signature itself is checked by `routing.AuthFirstRoute` before FastAPI
reads or validates anything (an unsigned caller learns nothing else about its request); the
dependencies here hand on what it verified, and verify themselves only on a route outside it.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.types import Scope

from ..config import Settings
from ..problems import Problem
from ..state import AppState
from ..usecases import audit, auth
from ..usecases.auth import Caller, IncomingRequest, SignedRequest

__all__ = [
    "AuditReader",
    "CurrentCaller",
    "Signed",
    "State",
    "get_state",
    "incoming",
    "verified",
]


async def get_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain-def dependency in a worker thread, a thread hop
    # (and a fight for the GIL) on every request for one attribute read.
    state: AppState = request.app.state.liaison
    return state


State = Annotated[AppState, Depends(get_state)]

#: How OpenAPI marks the paths that need a request signature. OpenAPI has no scheme for RFC
#: 9421, so it is declared as the header it needs; docs/api.md section 2 is the scheme.
SIGNATURE = APIKeyHeader(
    name="Signature",
    scheme_name="RequestSignature",
    description="An RFC 9421 HTTP message signature by an enrolled device (Signature-Input, "
    "Signature and Content-Digest): see docs/api.md, section 2.",
    auto_error=False,
)
SignatureHeader = Annotated[str | None, Security(SIGNATURE)]

# --- the URI a client signed -------------------------------------------------------------------

_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=8)
def _authorities(scheme: str, host: str, port: int) -> frozenset[str]:
    """The authorities (host[:port], lower case) this server answers to without a public URL:
    its host setting, and the loopback names when it listens on loopback or on every address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    names = {f"[{address.compressed}]" if address is not None and address.version == 6 else host.lower()}
    if host.lower() == "localhost" or (
        address is not None and (address.is_loopback or address.is_unspecified)
    ):
        names.update(_LOOPBACK)
    out = {f"{name}:{port}" for name in names}
    if port == _DEFAULT_PORTS.get(scheme):  # a client may leave the scheme's default port out
        out.update(names)
    return frozenset(out)


def _path_and_query(scope: Scope) -> str:
    """The request target exactly as received: the raw path (not percent-decoded) and query."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def target_uri(settings: Settings, scope: Scope) -> str:
    """The "@target-uri" to verify: the configured public URL, or this server's own authority
    (from its host and port settings) as the client named it in Host; never an authority that
    the server does not know as its own (`misdirected-request`), and always the path and
    query as sent."""
    rest = _path_and_query(scope)
    if settings.public_url:
        return settings.public_url.rstrip("/") + rest
    scheme = scope.get("scheme", "https")  # the connection's own (TLS or not), never a header
    hosts = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"]
    if len(hosts) != 1 or hosts[0].lower() not in _authorities(scheme, settings.host, settings.port):
        raise Problem(
            "misdirected-request",
            f"this server answers as {scheme}://{settings.host}:{settings.port} (its host and "
            "port); a server reached by another name needs LIAISON_PUBLIC_URL",
        )
    return f"{scheme}://{hosts[0]}{rest}"


async def incoming(state: AppState, request: Request) -> IncomingRequest:
    """The request as use cases see it (its body read whole: bodies are bounded upstream), with
    every header field as received: repeats are kept, for the signature check to refuse."""
    scope = request.scope
    return IncomingRequest(
        method=request.method,
        target=target_uri(state.settings, scope),
        path=scope["path"],
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        body=await request.body(),
        client=request.client.host if request.client else "unknown",
    )


#: Where `verified` leaves the request's verified signature, in the ASGI scope.
_SIGNED = "liaison.signed"


async def verified(state: AppState, request: Request) -> SignedRequest:
    """Verify the request's signature (once per request: the result is kept in its scope)."""
    signed: SignedRequest | None = request.scope.get(_SIGNED)
    if signed is None:
        signed = request.scope[_SIGNED] = await auth.verify_signed(state, await incoming(state, request))
    return signed


async def signed_request(request: Request, state: State, _: SignatureHeader) -> SignedRequest:
    """A request whose signature verified (its nonce is consumed by the use case's job)."""
    return await verified(state, request)


async def current_caller(request: Request, state: State, _: SignatureHeader) -> Caller:
    """The authenticated caller: signature verified, nonce consumed, device and principal
    checked as they are now."""
    signed = await verified(state, request)
    result = await state.writer.run(signed.caller, shares_cache=True, savepoint=False, nonce=signed.claim)
    return result.value


async def audit_reader(request: Request, state: State, _: SignatureHeader) -> Caller | None:
    """Entries and proofs: an auditor's or admin's signed request, or anyone if audit_public
    (a signed request is still authenticated there: its caller receives the openings it is
    entitled to, protocol 10.3; an unsigned one, none)."""
    if state.settings.audit_public:
        if "signature" not in request.headers:
            return None
        return await current_caller(request, state, None)
    caller = await current_caller(request, state, None)
    await audit.require_auditor(state, caller, f"{request.method} {request.scope['path']}"[:200])
    return caller


Signed = Annotated[SignedRequest, Depends(signed_request)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
AuditReader = Annotated[Caller | None, Depends(audit_reader)]
