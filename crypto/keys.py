"""Device keys: signing and KEM key pairs, the public key bundle, its self-signature and device id.

A device's public bundle (SPEC 2) is
``{"principal", "sig": {"ed25519": pk, "mldsa65": pk?}, "kem": {"suite", "pk"}, "created"}``
and its id is a fingerprint of the canonical bundle, so swapping any key changes the id.
The bundle travels as ``{"bundle": {...}, "signatures": {"ed25519": ..., "mldsa65": ...}}``,
self-signed over ``"liaison/v1/bundle" || 0x00 || JCS(bundle)`` by every signing key it names:
possession of each private key is proven at enrolment. The KEM key cannot sign, so its
possession is proven by a challenge: the server seals 32 random bytes to the bundle's KEM key
(HPKE, `info = "liaison/v1/kem-challenge" || 0x00 || device id`) and the device returns them,
signed over ``"liaison/v1/kem-proof" || 0x00 || device id || 0x00 || challenge``
(docs/protocol.md, section 3).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from . import _primitives as p
from .encoding import b64url_decode, b64url_encode, format_time, jcs, parse_time
from .errors import BadSignature, DecryptionFailed, MalformedError, MalformedKey, UnsupportedSuite
from .names import ED25519, KEM_SUITES, MLDSA65, MLKEM768_X25519, SIGNATURE_ALGS, SLUG_RE

__all__ = [
    "BUNDLE_DOMAIN",
    "DEVICE_ID_RE",
    "KEM_CHALLENGE_INFO",
    "KEM_CHALLENGE_LEN",
    "KEM_KEY_DOMAIN",
    "KEM_KEY_ID_RE",
    "KEM_PROOF_DOMAIN",
    "DeviceKeys",
    "PublicBundle",
    "device_id_of",
    "generate_device",
    "kem_challenge_digest",
    "kem_key_id_of",
    "kem_key_id_of_json",
    "kem_proof_message",
    "seal_kem_challenge",
    "sign_with",
    "verify_kem_proof",
    "verify_signatures",
]

BUNDLE_DOMAIN = b"liaison/v1/bundle"
#: HPKE `info` prefix of an enrolment challenge, and the domain of the device's signed answer.
KEM_CHALLENGE_INFO = b"liaison/v1/kem-challenge"
KEM_PROOF_DOMAIN = b"liaison/v1/kem-proof"
KEM_CHALLENGE_LEN = 32
DEVICE_ID_RE = re.compile(r"^d_[a-z2-7]{26}$")
KEM_KEY_ID_RE = re.compile(r"^k_[a-z2-7]{26}$")
_KEYSTORE_VERSION = 1


def _domain(domain: bytes, message: bytes) -> bytes:
    # Domain separation: a signature made for one purpose can never verify for another.
    return domain + b"\x00" + message


def device_id_of(bundle_json: Mapping[str, Any]) -> str:
    """`d_` + first 26 chars of lowercase unpadded base32 of SHA-256(JCS(bundle))."""
    digest = p.sha256(jcs(dict(bundle_json)))
    return "d_" + base64.b32encode(digest).decode("ascii").lower()[:26]


KEM_KEY_DOMAIN = b"liaison/v2/kem-key"


def kem_key_id_of(suite: str, public: bytes) -> str:
    """`k_` + first 26 chars of lowercase unpadded base32 of
    SHA-256("liaison/v2/kem-key" || 0x00 || JCS({"pk", "suite"})), the bundle's `kem` member."""
    return kem_key_id_of_json({"suite": suite, "pk": b64url_encode(public)})


def kem_key_id_of_json(kem: Mapping[str, Any]) -> str:
    """The key id of a bundle's `kem` member as it stands (a server reads it from storage)."""
    digest = p.sha256(_domain(KEM_KEY_DOMAIN, jcs(dict(kem))))
    return "k_" + base64.b32encode(digest).decode("ascii").lower()[:26]


@dataclass(frozen=True)
class PublicBundle:
    """A device's public keys, as published in the directory."""

    principal: str
    ed25519: bytes
    mldsa65: bytes | None
    kem_suite: str
    kem_pk: bytes
    created: str

    def to_json(self) -> dict[str, Any]:
        sig: dict[str, str] = {ED25519: b64url_encode(self.ed25519)}
        if self.mldsa65 is not None:
            sig[MLDSA65] = b64url_encode(self.mldsa65)
        return {
            "principal": self.principal,
            "sig": sig,
            "kem": {"suite": self.kem_suite, "pk": b64url_encode(self.kem_pk)},
            "created": self.created,
        }

    @cached_property
    def device_id(self) -> str:
        return device_id_of(self.to_json())

    @cached_property
    def kem_key_id(self) -> str:
        """The fingerprint of this device's KEM key: what an envelope v2 wraps to."""
        return kem_key_id_of(self.kem_suite, self.kem_pk)

    @property
    def algorithms(self) -> tuple[str, ...]:
        return SIGNATURE_ALGS if self.mldsa65 is not None else (ED25519,)

    @classmethod
    def from_json(cls, obj: Any) -> PublicBundle:
        """Parse a bundle strictly: exact fields, known suite, keys of the right length, and a
        KEM key that takes an encapsulation."""
        return cls._parse(obj, check_kem=True)

    @classmethod
    def from_stored(cls, signed_bundle: str) -> PublicBundle:
        """The bundle of a signed bundle as the service stored it (`device.signed_bundle`,
        checked in full by `from_signed` when the device enrolled): parsed as strictly, but
        without `from_json`'s trial encapsulation to the KEM key (about 0.3 ms: an ML-KEM-768
        and an X25519 operation), which a device's first request would otherwise pay on the
        event loop, and the start-up's bundle warm-up once per device."""
        try:
            obj = json.loads(signed_bundle)
        except ValueError as e:
            raise MalformedKey(f"stored bundle is not JSON: {e}") from None
        if not isinstance(obj, dict) or "bundle" not in obj:
            raise MalformedKey("stored bundle has no bundle")
        return cls._parse(obj["bundle"], check_kem=False)

    @classmethod
    def _parse(cls, obj: Any, *, check_kem: bool) -> PublicBundle:
        if not isinstance(obj, dict) or set(obj) != {"principal", "sig", "kem", "created"}:
            raise MalformedKey("bundle must have exactly principal, sig, kem, created")
        principal, sig, kem, created = obj["principal"], obj["sig"], obj["kem"], obj["created"]
        if not isinstance(principal, str) or not SLUG_RE.fullmatch(principal):
            raise MalformedKey("bundle principal is not a valid principal id")
        if not isinstance(sig, dict) or ED25519 not in sig or not set(sig) <= set(SIGNATURE_ALGS):
            raise MalformedKey("bundle sig must name ed25519 and optionally mldsa65")
        if not isinstance(kem, dict) or set(kem) != {"suite", "pk"}:
            raise MalformedKey("bundle kem must have exactly suite and pk")
        if kem["suite"] not in KEM_SUITES:
            raise UnsupportedSuite(f"unsupported KEM suite {kem['suite']!r}")
        if not isinstance(created, str):
            raise MalformedKey("bundle created must be an RFC 3339 string")
        try:
            parse_time(created, field="bundle created")
            ed = b64url_decode(sig[ED25519], field="ed25519 key")
            ml = b64url_decode(sig[MLDSA65], field="mldsa65 key") if MLDSA65 in sig else None
            kem_pk = b64url_decode(kem["pk"], field="kem pk")
        except MalformedError as e:
            raise MalformedKey(str(e)) from e
        if len(ed) != 32:
            raise MalformedKey("ed25519 key must be 32 bytes")
        if ml is not None and len(ml) != p.MLDSA65_PUBLIC_LEN:
            raise MalformedKey(f"mldsa65 key must be {p.MLDSA65_PUBLIC_LEN} bytes")
        if check_kem:
            try:
                p.hpke_seal(kem["suite"], kem_pk, b"", b"liaison/v1/key-check")
            except p.PrimitiveError as e:
                raise MalformedKey(f"kem pk is not a valid {kem['suite']} public key") from e
        return cls(principal, ed, ml, kem["suite"], kem_pk, created)

    @classmethod
    def from_signed(cls, obj: Any) -> PublicBundle:
        """Parse `{"bundle", "signatures"}` and verify every self-signature it must carry."""
        if not isinstance(obj, dict) or set(obj) != {"bundle", "signatures"}:
            raise MalformedKey("signed bundle must have exactly bundle and signatures")
        bundle = cls.from_json(obj["bundle"])
        verify_signatures(
            bundle, BUNDLE_DOMAIN, jcs(obj["bundle"]), obj["signatures"], required=bundle.algorithms
        )
        return bundle


def verify_signatures(
    bundle: PublicBundle,
    domain: bytes,
    message: bytes,
    signatures: Any,
    *,
    required: tuple[str, ...] | list[str] = (ED25519,),
) -> None:
    """Verify a `{"ed25519": b64url, "mldsa65": b64url}` map by `bundle`'s keys.

    Every present signature must verify, every `required` algorithm must be present, and an
    ML-DSA-65 signature is required whenever the bundle has an ML-DSA-65 key (so stripping the
    post-quantum signature from a hybrid device's message is detected).
    """
    if not isinstance(signatures, dict) or not set(signatures) <= set(SIGNATURE_ALGS):
        raise BadSignature("signatures must be a map of ed25519 / mldsa65")
    needed = set(required) | set(bundle.algorithms)
    missing = needed - set(signatures)
    if missing:
        raise BadSignature(f"missing signature(s): {', '.join(sorted(missing))}")
    signed = _domain(domain, message)
    for alg, value in signatures.items():
        try:
            sig = b64url_decode(value, field=f"{alg} signature")
        except MalformedError as e:
            raise BadSignature(str(e)) from e
        if alg == ED25519:
            ok = p.ed25519_verify(bundle.ed25519, signed, sig)
        elif bundle.mldsa65 is None:
            raise BadSignature("mldsa65 signature from a device without an mldsa65 key")
        else:
            ok = p.mldsa65_verify(bundle.mldsa65, signed, sig)
        if not ok:
            raise BadSignature(f"{alg} signature does not verify")


@dataclass(frozen=True, repr=False)
class DeviceKeys:
    """A device's private keys. `repr` is suppressed so keys never reach a log by accident."""

    principal: str
    created: str
    ed25519: bytes
    mldsa65: bytes | None
    kem_suite: str
    kem: bytes

    def __repr__(self) -> str:
        return f"DeviceKeys(principal={self.principal!r}, device={self.device_id!r})"

    @cached_property
    def public(self) -> PublicBundle:
        return PublicBundle(
            principal=self.principal,
            ed25519=p.ed25519_public(self.ed25519),
            mldsa65=p.mldsa65_public(self.mldsa65) if self.mldsa65 is not None else None,
            kem_suite=self.kem_suite,
            kem_pk=p.kem_public(self.kem_suite, self.kem),
            created=self.created,
        )

    @cached_property
    def device_id(self) -> str:
        return self.public.device_id

    def sign(self, domain: bytes, message: bytes) -> dict[str, str]:
        return sign_with(self, domain, message)

    def signed_bundle(self) -> dict[str, Any]:
        bundle = self.public.to_json()
        return {"bundle": bundle, "signatures": self.sign(BUNDLE_DOMAIN, jcs(bundle))}

    def sign_http_base(self, base: bytes) -> bytes:
        """Ed25519 over an RFC 9421 signature base (`httpsig`). The base has a structure of
        its own (it starts `"@method": `), so it takes no domain prefix; it can never be a
        domain-separated message, which starts `liaison/`."""
        return p.ed25519_sign(self.ed25519, base)

    def unwrap(self, sealed: bytes, info: bytes) -> bytes:
        return p.hpke_open(self.kem_suite, self.kem, sealed, info)

    def answer_kem_challenge(self, sealed: bytes) -> dict[str, Any]:
        """Open an enrolment challenge sealed to this device's KEM key and sign the answer:
        `{"challenge": b64url, "signatures": {...}}`, the `proof` of `POST /v1/enrol`.

        Only a challenge sealed for this very device id opens (HPKE binds `info`), so no
        server can use a device as an oracle for another bundle's challenge or for envelope
        keys (those are wrapped under another `info`). DecryptionFailed if it does not open.
        """
        try:
            challenge = p.hpke_open(self.kem_suite, self.kem, sealed, _challenge_info(self.device_id))
        except p.PrimitiveError:
            raise DecryptionFailed(
                "the enrolment challenge does not open with this device's KEM key"
            ) from None
        if len(challenge) != KEM_CHALLENGE_LEN:
            raise DecryptionFailed(f"the enrolment challenge is not {KEM_CHALLENGE_LEN} bytes")
        return {
            "challenge": b64url_encode(challenge),
            "signatures": self.sign(KEM_PROOF_DOMAIN, kem_proof_message(self.device_id, challenge)),
        }

    def to_bytes(self) -> bytes:
        """Serialise the private keys for the client key store (encrypt before writing!)."""
        obj = {
            "v": _KEYSTORE_VERSION,
            "principal": self.principal,
            "created": self.created,
            ED25519: b64url_encode(self.ed25519),
            "kem": {"suite": self.kem_suite, "sk": b64url_encode(self.kem)},
        }
        if self.mldsa65 is not None:
            obj[MLDSA65] = b64url_encode(self.mldsa65)
        return jcs(obj)

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceKeys:
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict) or obj.get("v") != _KEYSTORE_VERSION:
                raise MalformedKey("unknown key-store format version")
            keys = cls(
                principal=obj["principal"],
                created=obj["created"],
                ed25519=b64url_decode(obj[ED25519]),
                mldsa65=b64url_decode(obj[MLDSA65]) if MLDSA65 in obj else None,
                kem_suite=obj["kem"]["suite"],
                kem=b64url_decode(obj["kem"]["sk"]),
            )
            keys.public  # noqa: B018  -- derive every public key now: fails on a bad length
        except MalformedKey:
            raise
        except (ValueError, KeyError, TypeError, MalformedError, p.PrimitiveError) as e:
            raise MalformedKey("private key material does not parse") from e
        return keys


def _challenge_info(device_id: str) -> bytes:
    return KEM_CHALLENGE_INFO + b"\x00" + device_id.encode("ascii")


def kem_proof_message(device_id: str, challenge: bytes) -> bytes:
    """What the device signs (under KEM_PROOF_DOMAIN): `device id || 0x00 || challenge`."""
    return device_id.encode("ascii") + b"\x00" + challenge


def seal_kem_challenge(bundle: PublicBundle, challenge: bytes) -> bytes:
    """The server's half: seal `challenge` (32 random bytes) to the bundle's KEM key, bound to
    its device id; returns HPKE `enc || ct`."""
    if len(challenge) != KEM_CHALLENGE_LEN:
        raise MalformedError(f"a KEM challenge is {KEM_CHALLENGE_LEN} bytes")
    try:
        return p.hpke_seal(bundle.kem_suite, bundle.kem_pk, challenge, _challenge_info(bundle.device_id))
    except p.PrimitiveError as e:
        raise MalformedKey(f"kem pk is not a valid {bundle.kem_suite} public key") from e


def kem_challenge_digest(challenge: bytes) -> str:
    """What the server keeps of a challenge it issued: hex SHA-256 under the challenge domain."""
    return p.sha256(KEM_CHALLENGE_INFO + b"\x00" + challenge).hex()


def verify_kem_proof(bundle: PublicBundle, proof: Any) -> bytes:
    """Parse a `{"challenge", "signatures"}` proof strictly and verify its signatures by the
    bundle's keys; returns the challenge, which the caller must compare (in constant time)
    with the one it sealed. MalformedKey or BadSignature otherwise."""
    if not isinstance(proof, dict) or set(proof) != {"challenge", "signatures"}:
        raise MalformedKey("the KEM proof must have exactly challenge and signatures")
    if not isinstance(proof["challenge"], str) or len(proof["challenge"]) > 64:
        raise MalformedKey("the KEM proof's challenge must be base64url")
    try:
        challenge = b64url_decode(proof["challenge"], field="KEM challenge")
    except MalformedError as e:
        raise MalformedKey(str(e)) from e
    if len(challenge) != KEM_CHALLENGE_LEN:
        raise MalformedKey(f"the KEM proof's challenge must be {KEM_CHALLENGE_LEN} bytes")
    verify_signatures(
        bundle,
        KEM_PROOF_DOMAIN,
        kem_proof_message(bundle.device_id, challenge),
        proof["signatures"],
        required=bundle.algorithms,
    )
    return challenge


def sign_with(keys: DeviceKeys, domain: bytes, message: bytes) -> dict[str, str]:
    """Sign `domain || 0x00 || message` with every signing key of the device."""
    signed = _domain(domain, message)
    out = {ED25519: b64url_encode(p.ed25519_sign(keys.ed25519, signed))}
    if keys.mldsa65 is not None:
        out[MLDSA65] = b64url_encode(p.mldsa65_sign(keys.mldsa65, signed))
    return out


def generate_device(
    principal: str,
    *,
    suite: str = MLKEM768_X25519,
    mldsa65: bool = True,
    now: datetime | None = None,
) -> DeviceKeys:
    """Fresh keys for a new device of `principal` (hybrid post-quantum by default)."""
    if suite not in KEM_SUITES:
        raise UnsupportedSuite(f"unsupported KEM suite {suite!r}")
    if not SLUG_RE.fullmatch(principal):
        raise MalformedKey(f"{principal!r} is not a valid principal id")
    created = format_time(now or datetime.now().astimezone(), millis=False)
    return DeviceKeys(
        principal=principal,
        created=created,
        ed25519=p.ed25519_generate(),
        mldsa65=p.mldsa65_generate() if mldsa65 else None,
        kem_suite=suite,
        kem=p.kem_generate(suite),
    )
