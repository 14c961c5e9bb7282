"""RFC 9421 HTTP message signatures with device keys, and RFC 9530 Content-Digest (SPEC 5).

Covered components: "@method" "@target-uri" and, on a request with a body, "content-digest";
parameters `created`, `keyid` (the device id), `alg` ("ed25519") and `nonce`. The signature
base is built by the `http-message-signatures` package; the Ed25519 operations are ours, on
raw device keys, so no key object crosses the package boundary.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import http_sf
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
)
from http_message_signatures import InvalidSignature as _LibInvalid
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from . import _primitives as p
from .encoding import b64encode
from .errors import RequestSignatureError
from .keys import DEVICE_ID_RE, DeviceKeys

__all__ = ["LABEL", "SignatureParams", "content_digest", "parse_signature_params", "sign_request",
           "verify_request"]

LABEL = "liaison"
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class _Ed25519Raw(HTTPSignatureAlgorithm):
    """The library's algorithm interface over raw 32-byte keys and our primitives."""

    algorithm_id = "ed25519"

    def __init__(self, public_key: bytes | None = None, private_key: bytes | None = None) -> None:
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        assert self.private_key is not None
        return p.ed25519_sign(self.private_key, message)

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None or not p.ed25519_verify(self.public_key, message, signature):
            raise _LibInvalid("signature does not verify")


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, keyid: str, public: bytes | None = None, private: bytes | None = None):
        self.keyid, self.public, self.private = keyid, public, private

    def resolve_public_key(self, key_id: str) -> bytes | None:
        return self.public if key_id == self.keyid else None

    def resolve_private_key(self, key_id: str) -> bytes | None:
        return self.private if key_id == self.keyid else None


def content_digest(body: bytes) -> str:
    """RFC 9530 `Content-Digest` value with sha-256."""
    return f"sha-256=:{b64encode(p.sha256(body))}:"


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    keys: DeviceKeys,
    *,
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers to add to a request: Content-Digest (with a body), Signature-Input, Signature."""
    out: dict[str, str] = {}
    components = ["@method", "@target-uri"]
    if body or method.upper() in _BODY_METHODS:
        out["Content-Digest"] = content_digest(body or b"")
        components.append("content-digest")
    msg = SimpleNamespace(method=method.upper(), url=url, headers={**headers, **out})
    signer = HTTPMessageSigner(signature_algorithm=_Ed25519Raw,
                               key_resolver=_OneKey(keys.device_id, private=keys.ed25519))
    signer.sign(msg, key_id=keys.device_id, created=now or datetime.now(UTC),
                nonce=nonce or secrets.token_urlsafe(18), label=LABEL,
                covered_component_ids=components)
    out["Signature-Input"] = msg.headers["Signature-Input"]
    out["Signature"] = msg.headers["Signature"]
    return out


@dataclass(frozen=True)
class SignatureParams:
    """The parameters of a request signature, read (unverified) from Signature-Input."""

    keyid: str
    created: int
    nonce: str
    components: tuple[str, ...]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def parse_signature_params(headers: Mapping[str, str]) -> SignatureParams:
    """Read keyid, created and nonce so the caller can look the key up; verifies nothing."""
    raw = _header(headers, "signature-input")
    if raw is None or _header(headers, "signature") is None:
        raise RequestSignatureError("unauthenticated", "the request is not signed "
                                    "(Signature-Input and Signature headers required)")
    try:
        parsed = cast(dict[str, Any], http_sf.parse(raw.encode("ascii"), tltype="dictionary"))
    except Exception as e:  # http_sf raises plain ValueErrors of several kinds
        raise RequestSignatureError("unauthenticated", "Signature-Input does not parse") from e
    if len(parsed) != 1:
        raise RequestSignatureError("unauthenticated", "exactly one request signature expected")
    (items, params), = parsed.values()
    if not isinstance(items, list):
        raise RequestSignatureError("unauthenticated", "Signature-Input must be an inner list")
    keyid, created, nonce = params.get("keyid"), params.get("created"), params.get("nonce")
    if not isinstance(keyid, str) or not DEVICE_ID_RE.fullmatch(keyid):
        raise RequestSignatureError("unauthenticated", "keyid must be a device id")
    if type(created) is not int:
        raise RequestSignatureError("unauthenticated", "created parameter is required")
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise RequestSignatureError("unauthenticated", "nonce parameter (16-64 base64url "
                                    "characters) is required")
    if params.get("alg", "ed25519") != "ed25519":
        raise RequestSignatureError("unauthenticated", "alg must be ed25519")
    components = tuple(str(item[0]) for item in items)
    return SignatureParams(keyid, created, nonce, components)


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    ed25519_public: bytes,
    *,
    now: datetime | None = None,
    skew_seconds: int = 300,
) -> SignatureParams:
    """Verify a request signed by `sign_request`; raises RequestSignatureError with a reason."""
    params = parse_signature_params(headers)
    now = now or datetime.now(UTC)
    if abs(now.timestamp() - params.created) > skew_seconds:
        raise RequestSignatureError("stale-request", f"signature created more than "
                                    f"{skew_seconds} s from the server's clock")
    needed = {"@method", "@target-uri"}
    if body or method.upper() in _BODY_METHODS:
        needed.add("content-digest")
        digest = _header(headers, "content-digest")
        if digest is None:
            raise RequestSignatureError("content-digest", "Content-Digest header is required")
        if not hmac.compare_digest(digest.strip().encode(), content_digest(body).encode()):
            try:
                members = cast(dict[str, Any],
                               http_sf.parse(digest.encode("ascii"), tltype="dictionary"))
                value = members.get("sha-256", (None,))[0]
            except Exception:
                value = None
            if not isinstance(value, bytes) or not hmac.compare_digest(value, p.sha256(body)):
                raise RequestSignatureError("content-digest",
                                            "Content-Digest does not match the body")
    missing = needed - set(params.components)
    if missing:
        raise RequestSignatureError("bad-request-signature",
                                    f"signature must cover {', '.join(sorted(missing))}")
    verifier = HTTPMessageVerifier(signature_algorithm=_Ed25519Raw,
                                   key_resolver=_OneKey(params.keyid, public=ed25519_public))
    verifier.max_clock_skew = timedelta(seconds=skew_seconds)
    msg = SimpleNamespace(method=method.upper(), url=url, headers=headers)
    try:
        verifier.verify(msg, max_age=timedelta(seconds=skew_seconds))
    except (HTTPMessageSignaturesException, ValueError) as e:
        raise RequestSignatureError("bad-request-signature",
                                    "the request signature does not verify") from e
    return params
