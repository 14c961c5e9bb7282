"""RFC 9421 HTTP message signatures with device keys, and RFC 9530 Content-Digest (SPEC 5).

Covered components: "@method" "@target-uri" and, on a request with a body, "content-digest";
parameters `created`, `keyid` (the device id), `alg` ("ed25519") and `nonce`, in that order.
The signature base of this one profile (RFC 9421 section 2.5) is built by `_signature_base`,
for signing and for verifying alike, so what `sign_request` signs is byte for byte what
`check_request` checks; tests/test_httpsig_fast.py holds it equal to the base that the
`http-message-signatures` package builds, and has that package verify what we sign.
Verification is split in two: `check_request` does every check but the signature itself;
`PendingSignature.verify` is the Ed25519 verification alone. The plain Signature-Input that
`sign_request` writes is read without http_sf (property-tested equal to it); any other form
goes to http_sf. Signing is the device keys' `sign_http_base` (an unlock agent may hold them);
verifying is `_primitives`' Ed25519.

Headers are given as a mapping or, as a server should give them, as the list of (name, value)
fields received: a mapping (a dict built from the request) keeps one of two fields of the same
name, so a repeated Signature-Input, Signature or Content-Digest could not be refused.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv6Address
from typing import Any, NamedTuple, cast

import http_sf

from . import _primitives as p
from .encoding import b64encode
from .errors import MalformedError, RequestSignatureError
from .keys import DEVICE_ID_RE, DeviceKeys
from .names import ED25519

__all__ = [
    "LABEL",
    "Headers",
    "PendingSignature",
    "SignatureParams",
    "check_request",
    "content_digest",
    "digest_sha256",
    "parse_signature_params",
    "sign_request",
    "verify_request",
]

LABEL = "liaison"
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}

# The profile `check_request` accepts: anything else is refused, not interpreted.
_COMPONENTS = frozenset({"@method", "@target-uri", "content-digest"})
_PARAMETERS = frozenset({"created", "keyid", "alg", "nonce"})
_FIELDS = ("signature-input", "signature", "content-digest")
_METHOD_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 section 5.6.2 token
# An RFC 3986 absolute URI with a non-empty path, no userinfo and no fragment: for these,
# RFC 9421 section 2.2.2 "@target-uri" is the URI exactly as given.
_CHARS = r"A-Za-z0-9._~!$&'()*+,;=\-"  # unreserved and sub-delims
_PCT = r"%[0-9A-Fa-f]{2}"
_TARGET_URI_RE = re.compile(
    rf"[A-Za-z][A-Za-z0-9+.\-]*://(?P<host>\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?:[{_CHARS}]|{_PCT})+)"
    rf"(?::[0-9]*)?(?:/(?:[{_CHARS}:@]|{_PCT})*)+(?:\?(?:[{_CHARS}:@/?]|{_PCT})*)?"
)
_SIGNATURE_RE = re.compile(rf"{LABEL}=:([A-Za-z0-9+/]{{86}}==):")  # one 64-byte signature

#: Request headers: a mapping, or every (name, value) field as received (repeats kept).
Headers = Mapping[str, str] | Sequence[tuple[str, str]]


def _pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def _header(headers: Headers, name: str) -> str | None:
    """The first field named `name` (lower case), if any."""
    for k, v in _pairs(headers):
        if k.lower() == name:
            return v
    return None


def _signature_fields(headers: Headers) -> dict[str, list[str]]:
    """The values of Signature-Input, Signature and Content-Digest, each field as received."""
    fields: dict[str, list[str]] = {name: [] for name in _FIELDS}
    for name, value in _pairs(headers):
        if (lower := name.lower()) in fields:
            fields[lower].append(value)
    return fields


def content_digest(body: bytes) -> str:
    """RFC 9530 `Content-Digest` value with sha-256."""
    return f"sha-256=:{b64encode(p.sha256(body))}:"


def digest_sha256(value: str | None) -> bytes | None:
    """The sha-256 member of a `Content-Digest` value (RFC 9530), or None when there is none
    or the value does not parse. Meaningful only once `check_request` verified that value
    against the body: then it is the body's SHA-256, which need not be computed again."""
    if not value:
        return None
    try:
        members = cast(dict[str, Any], http_sf.parse(value.strip().encode("ascii"), tltype="dictionary"))
    except Exception:
        return None
    sha256 = members.get("sha-256", (None,))[0]
    return sha256 if isinstance(sha256, bytes) and len(sha256) == 32 else None


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
    """The headers to add to a request: Content-Digest (with a body), Signature-Input, Signature.

    Only "@method", "@target-uri" and "content-digest" are covered: `headers` are not signed.
    A request that `check_request` would refuse (a method that is not a token, a URL with
    userinfo or a fragment) or a nonce it would refuse raises MalformedError, never a
    signature that cannot verify.
    """
    nonce = secrets.token_urlsafe(18) if nonce is None else nonce
    if not _NONCE_RE.fullmatch(nonce):
        raise MalformedError("cannot sign the request: the nonce must be 16 to 64 base64url characters")
    out: dict[str, str] = {}
    components = ["@method", "@target-uri"]
    digest = None
    if body or method.upper() in _BODY_METHODS:
        digest = out["Content-Digest"] = content_digest(body or b"")
        components.append("content-digest")
    created = int((now or datetime.now(UTC)).timestamp())
    params: dict[str, int | str] = {
        "created": created,
        "keyid": keys.device_id,
        "alg": ED25519,
        "nonce": nonce,
    }
    value = f"{LABEL}={_signature_params(components, params)}"
    sig = _SignatureInput(
        value,
        (keys.device_id, created, nonce, tuple(components)),
        LABEL,
        [(c, {}) for c in components],
        params,
        duplicate=False,
    )
    try:
        base = _signature_base(method, url, digest, sig)
    except RequestSignatureError as e:
        raise MalformedError(f"cannot sign the request: {e.detail}") from None
    out["Signature-Input"] = value
    out["Signature"] = f"{LABEL}=:{b64encode(keys.sign_http_base(base))}:"
    return out


class _SignatureInput(NamedTuple):
    """The Signature-Input field as parsed, kept so that `check_request` need not parse it again."""

    raw: str  # the field value
    public: tuple[str, int, str, tuple[str, ...]]  # what SignatureParams shows of it
    label: str
    items: list[Any]  # the inner list: [(bare item, parameters), ...]
    params: dict[str, Any]  # the signature parameters, in their order
    duplicate: bool  # a label or parameter name appeared twice


@dataclass(frozen=True)
class SignatureParams:
    """The parameters of a request signature, read (unverified) from Signature-Input."""

    keyid: str
    created: int
    nonce: str
    components: tuple[str, ...]
    _input: _SignatureInput | None = field(default=None, repr=False, compare=False)


# The plain form `sign_request` writes: one member, an inner list of strings, parameters that
# are strings or integers, no optional whitespace. Anything else goes to http_sf.
_SF_KEY = r"[a-z*][a-z0-9_.*-]*"
_SF_STRING = r'"[ !#-\[\]-~]*"'
_PLAIN_INPUT = re.compile(
    rf"({_SF_KEY})=\(((?:{_SF_STRING}(?: {_SF_STRING})*)?)\)"
    rf"((?:;{_SF_KEY}=(?:-?[0-9]{{1,15}}|{_SF_STRING}))*)"
)
_PLAIN_ITEM = re.compile(_SF_STRING)  # strings hold no '"': each match is one whole item
_PLAIN_PARAM = re.compile(rf";({_SF_KEY})=(-?[0-9]{{1,15}}|{_SF_STRING})")


def _parse_plain(raw: str, duplicates: list[str]) -> dict[str, Any] | None:
    """`http_sf.parse(raw, tltype="dictionary")` for the plain form, or None for any other
    (tests hold the two equal). Strings here have no escapes, so their text is their value."""
    m = _PLAIN_INPUT.fullmatch(raw)
    if m is None:
        return None
    label, inner, tail = m.groups()
    items: list[Any] = [(c[1:-1], {}) for c in _PLAIN_ITEM.findall(inner)]
    params: dict[str, Any] = {}
    for key, value in _PLAIN_PARAM.findall(tail):
        if key in params:
            duplicates.append(key)
        params[key] = value[1:-1] if value.startswith('"') else int(value)
    return {label: (items, params)}


def parse_signature_params(headers: Headers) -> SignatureParams:
    """Read keyid, created and nonce so the caller can look the key up; verifies nothing.

    A repeated Signature-Input, Signature or Content-Digest field is refused here, before any
    key is looked up (`duplicate-signature-field`): which copy counts would depend on the reader.
    """
    fields = _signature_fields(headers)
    if not fields["signature-input"] or not fields["signature"]:
        raise RequestSignatureError(
            "unauthenticated", "the request is not signed (Signature-Input and Signature headers required)"
        )
    _refuse_repeats(fields)
    raw = fields["signature-input"][0]
    duplicates: list[str] = []
    parsed = _parse_plain(raw, duplicates)
    if parsed is None:
        try:
            parsed = cast(
                dict[str, Any],
                http_sf.parse(
                    raw.encode("ascii"),
                    tltype="dictionary",
                    on_duplicate_key=lambda key, _context: duplicates.append(key),
                ),
            )
        except Exception as e:  # http_sf raises plain ValueErrors of several kinds
            raise RequestSignatureError("unauthenticated", "Signature-Input does not parse") from e
    if len(parsed) != 1:
        raise RequestSignatureError("unauthenticated", "exactly one request signature expected")
    ((label, (items, params)),) = parsed.items()
    if not isinstance(items, list):
        raise RequestSignatureError("unauthenticated", "Signature-Input must be an inner list")
    keyid, created, nonce = params.get("keyid"), params.get("created"), params.get("nonce")
    if not isinstance(keyid, str) or not DEVICE_ID_RE.fullmatch(keyid):
        raise RequestSignatureError("unauthenticated", "keyid must be a device id")
    if type(created) is not int:
        raise RequestSignatureError("unauthenticated", "created parameter is required")
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise RequestSignatureError(
            "unauthenticated", "nonce parameter (16-64 base64url characters) is required"
        )
    if params.get("alg", ED25519) != ED25519:
        raise RequestSignatureError("unauthenticated", "alg must be ed25519")
    public = keyid, created, nonce, tuple(str(item[0]) for item in items)
    return SignatureParams(
        *public, _input=_SignatureInput(raw, public, label, items, params, bool(duplicates))
    )


def _refuse_repeats(fields: dict[str, list[str]]) -> None:
    repeated = [name for name, values in fields.items() if len(values) > 1]
    if repeated:
        raise RequestSignatureError(
            "duplicate-signature-field",
            f"{', '.join(repeated)} may appear once (fields of one name are not combined)",
        )


@dataclass(frozen=True)
class PendingSignature:
    """Everything checked except the Ed25519 signature itself."""

    params: SignatureParams
    message: bytes  # the RFC 9421 signature base
    signature: bytes  # the raw signature bytes

    def verify(self, ed25519_public: bytes) -> None:
        """Check the signature with the device's raw public key (one Ed25519 verification)."""
        if not p.ed25519_verify(ed25519_public, self.message, self.signature):
            raise RequestSignatureError("bad-request-signature", "the request signature does not verify")


def _refused(detail: str) -> RequestSignatureError:
    return RequestSignatureError("bad-request-signature", detail)


def _signature_params(components: list[str], params: Mapping[str, int | str]) -> str:
    """RFC 9421 section 2.3 "@signature-params" value: the inner list as RFC 8941 serialises it.

    Only for names that are RFC 8941 keys and strings that need no escaping (no '"' or '\\').
    """
    inner = " ".join(f'"{c}"' for c in components)
    return f"({inner})" + "".join(f";{k}={v}" if type(v) is int else f';{k}="{v}"' for k, v in params.items())


def _signature_base(method: str, url: str, digest: str | None, sig: _SignatureInput) -> bytes:
    """The RFC 9421 section 2.5 signature base of a request in our profile, or refused."""
    if sig.duplicate:
        raise _refused("Signature-Input repeats a label or a parameter")
    if sig.label != LABEL:
        raise _refused(f'the request signature must be labelled "{LABEL}"')
    components: list[str] = []
    for value, item_params in sig.items:
        if type(value) is not str or value not in _COMPONENTS or item_params or value in components:
            raise _refused(
                'Signature-Input may cover only "@method", "@target-uri" and '
                '"content-digest", each once and without parameters'
            )
        components.append(value)
    if not sig.params.keys() <= _PARAMETERS or any(
        type(v) is not (int if k == "created" else str) for k, v in sig.params.items()
    ):
        raise _refused(
            "Signature-Input parameters may be only created (an integer), and keyid, alg and nonce (strings)"
        )
    if not _METHOD_RE.fullmatch(method):
        raise _refused("the request method is not a token")
    uri = _TARGET_URI_RE.fullmatch(url)
    if uri is None:
        raise _refused("the request URL is not an absolute URL without userinfo or fragment")
    if uri["ipv6"] is not None:
        try:
            IPv6Address(uri["ipv6"])
        except ValueError:
            raise _refused("the request URL has an invalid IPv6 address") from None
    values = {"@method": method.upper(), "@target-uri": url}
    if "content-digest" in components:
        if digest is None:
            raise _refused("the signature covers Content-Digest, which the request lacks")
        digest = digest.strip(" \t")  # RFC 9421 section 2.1: without leading or trailing space
        if not digest.isascii() or not digest.replace("\t", " ").isprintable():
            raise _refused("Content-Digest has characters a signature base cannot carry")
        values["content-digest"] = digest
    lines = [f'"{c}": {values[c]}' for c in components]
    lines.append(f'"@signature-params": {_signature_params(components, sig.params)}')
    return "\n".join(lines).encode("ascii")


def check_request(
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    *,
    params: SignatureParams | None = None,
    now: datetime | None = None,
    skew_seconds: int = 300,
) -> PendingSignature:
    """Check a request signed by `sign_request`, all but the Ed25519 signature itself.

    `params` is `parse_signature_params(headers)` if the caller has it already (ValueError if
    it is not). Raises RequestSignatureError with a reason; `PendingSignature.verify` does the
    rest. Only our profile is accepted: label "liaison", the components and parameters that
    `sign_request` writes (in any order, alg optional), one Signature-Input, Signature and
    Content-Digest field each (give `headers` as the received fields, repeats kept), and a URL
    that is its own "@target-uri".
    """
    if params is None:
        params = parse_signature_params(headers)
    fields = _signature_fields(headers)
    sig = params._input
    if (
        sig is None
        or fields["signature-input"][:1] != [sig.raw]
        or (params.keyid, params.created, params.nonce, params.components) != sig.public
    ):
        raise ValueError("params must be what parse_signature_params returned for these headers")
    _refuse_repeats(fields)  # parse_signature_params did, for these very headers
    if abs((now.timestamp() if now else time.time()) - params.created) > skew_seconds:
        raise RequestSignatureError(
            "stale-request", f"signature created more than {skew_seconds} s from the server's clock"
        )
    digest = fields["content-digest"][0] if fields["content-digest"] else None
    needed = {"@method", "@target-uri"}
    if body or method.upper() in _BODY_METHODS:
        needed.add("content-digest")
        if digest is None:
            raise RequestSignatureError("content-digest", "Content-Digest header is required")
        if not hmac.compare_digest(digest.strip().encode(), content_digest(body).encode()):
            try:
                members = cast(dict[str, Any], http_sf.parse(digest.encode("ascii"), tltype="dictionary"))
                sha256 = members.get("sha-256", (None,))[0]
            except Exception:
                sha256 = None
            if not isinstance(sha256, bytes) or not hmac.compare_digest(sha256, p.sha256(body)):
                raise RequestSignatureError("content-digest", "Content-Digest does not match the body")
    missing = needed - set(params.components)
    if missing:
        raise RequestSignatureError(
            "bad-request-signature", f"signature must cover {', '.join(sorted(missing))}"
        )
    message = _signature_base(method, url, digest, sig)
    signatures = fields["signature"]
    signature = _SIGNATURE_RE.fullmatch(signatures[0].strip(" \t")) if signatures else None
    if signature is None:
        raise _refused(f'Signature must be one Ed25519 signature labelled "{LABEL}"')
    return PendingSignature(params, message, base64.b64decode(signature[1], validate=True))


def verify_request(
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    ed25519_public: bytes,
    *,
    now: datetime | None = None,
    skew_seconds: int = 300,
) -> SignatureParams:
    """Verify a request signed by `sign_request`; raises RequestSignatureError with a reason."""
    pending = check_request(method, url, headers, body, now=now, skew_seconds=skew_seconds)
    pending.verify(ed25519_public)
    return pending.params
