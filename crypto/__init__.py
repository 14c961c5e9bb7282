"""Liaison's cryptographic core: pure, typed, with no web or database imports.

Modules (each one concept):
    names         the protocol's words: id patterns, algorithm and suite names, roles
    encoding      RFC 8785 JSON, strict base64/base64url, RFC 3339 times
    keys          device keys, public bundles, self-signatures, device ids, KEM proofs
    invitation    enrolment invitations: a code and the digest of the log key to pin
    labels        classification labels: JSON model and banner text form
    policy        the policy file and pure access decisions
    envelope      envelopes v2 (and v1, read only): seal, parse, verify, open
    content       the v2 plaintext: structured body, Padmé-padded frame
    chunked       C2SP chunked encryption (Cobblestone-256) with key commitment
    httpsig       RFC 9421 request signatures with device keys
    passphrase    Argon2id + AEAD sealing of key-store secrets
    merkle        RFC 6962/9162 tree hashes and proofs
    note          C2SP signed notes, checkpoints, cosignatures, witness policies
    tiles         C2SP tlog-tiles paths, bundles and tile verification
    errors        the exception tree (CryptoError and its subclasses)

Only `_primitives` touches `cryptography.hazmat` and `nacl`.
"""

from .envelope import open_envelope, parse_envelope, seal, verify_envelope
from .errors import CryptoError
from .keys import DeviceKeys, PublicBundle, generate_device
from .labels import Label, format_label, parse_label
from .policy import Policy, Subject, parse_policy

__all__ = [
    "CryptoError",
    "DeviceKeys",
    "Label",
    "Policy",
    "PublicBundle",
    "Subject",
    "format_label",
    "generate_device",
    "open_envelope",
    "parse_envelope",
    "parse_label",
    "parse_policy",
    "seal",
    "verify_envelope",
]
