"""HTTPS plumbing: RFC 9421 request signing as an httpx auth flow, and problem+json to errors."""

from __future__ import annotations

import ssl
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx

from liaison.crypto.errors import MalformedError
from liaison.crypto.httpsig import sign_request
from liaison.crypto.keys import DeviceKeys

from ._retry import parse_retry_after
from .errors import (
    InputError,
    MalformedResponse,
    ServerError,
    ServerUnreachable,
    TLSError,
    TransportError,
    api_error,
)

__all__ = ["SignedAuth", "check_response", "json_of", "new_http", "transport_error"]

USER_AGENT = "liaison-client/0.1"
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class SignedAuth(httpx.Auth):
    """Sign every request with the device's Ed25519 key (SPEC 5).

    The signed @target-uri is exactly `str(request.url)`, the encoded URL that goes on the
    wire, so the server's view of the target matches byte for byte.
    """

    requires_request_body = True

    def __init__(self, keys: DeviceKeys) -> None:
        self.keys = keys

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body = request.content
        headers = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        try:
            signed = sign_request(request.method, str(request.url), headers, body or None, self.keys)
        except MalformedError as e:  # e.g. userinfo in the server URL: no server could verify it
            raise InputError(str(e)) from None
        request.headers.update(signed)
        yield request


def new_http(
    server: str,
    ca_cert: str | None,
    *,
    auth: httpx.Auth | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient for `server`, trusting `ca_cert` (a PEM file) or the system CAs."""
    verify: ssl.SSLContext | bool = True
    if ca_cert is not None and transport is None:
        path = Path(ca_cert).expanduser()
        try:
            verify = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as e:
            raise InputError(f"cannot load the CA certificate {path}: {e}") from None
    return httpx.AsyncClient(
        base_url=server.rstrip("/"),
        verify=verify,
        auth=auth,
        transport=transport,
        timeout=_TIMEOUT,
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
    )


def transport_error(server: str, e: httpx.TransportError) -> TransportError:
    """A one-line, specific error for a failure below HTTP."""
    text = str(e) or type(e).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(e.__context__, ssl.SSLCertVerificationError):
        return TLSError(
            f"the TLS certificate of {server} does not verify: pass --ca-cert with the server's certificate"
        )
    if isinstance(e, httpx.TimeoutException):
        return ServerUnreachable(f"{server} did not answer in time")
    if isinstance(e, httpx.ConnectError):
        return ServerUnreachable(f"cannot connect to {server}: {text.splitlines()[0]}")
    return ServerUnreachable(f"connection to {server} failed: {text.splitlines()[0]}")


def check_response(response: httpx.Response) -> httpx.Response:
    """Return a 2xx response; turn anything else into the specific APIError."""
    if response.is_success:
        return response
    ctype = response.headers.get("content-type", "")
    problem: dict[str, Any] = {}
    if "json" in ctype:
        try:
            body = response.json()
            problem = body if isinstance(body, dict) else {}
        except ValueError:
            problem = {}
    type_uri = problem.get("type")
    if isinstance(type_uri, str) and type_uri.startswith("urn:liaison:problem:"):
        slug = type_uri.removeprefix("urn:liaison:problem:")
        detail = str(problem.get("detail") or "")[:300].replace("\n", " ")
        err = api_error(slug, response.status_code, detail, str(problem.get("title") or ""))
    else:
        err = ServerError(
            "http", response.status_code, f"HTTP {response.status_code} {response.reason_phrase}"
        )
    err.retry_after = parse_retry_after(response.headers.get("retry-after"))
    raise err


def json_of(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object body of a successful response, or MalformedResponse."""
    try:
        body = response.json()
    except ValueError:
        raise MalformedResponse(f"{what}: the server's answer is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedResponse(f"{what}: the server's answer is not a JSON object")
    return body
