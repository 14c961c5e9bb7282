"""The exception tree of liaison.crypto: every failure is a specific subclass of CryptoError.

CryptoError
├── MalformedError              bytes or JSON that do not parse as the format says
│   ├── MalformedEnvelope       an envelope with a missing, extra or ill-typed field
│   ├── MalformedKey            a key, bundle or key-store blob that does not parse
│   ├── LabelSyntaxError        label text or JSON that does not parse
│   ├── NoteSyntaxError         a signed note or checkpoint that does not parse
│   ├── MalformedContent        a decrypted frame or body that is not canonical (v2 padding)
│   ├── JSONRefused             JSON that parses but is ambiguous or unsafe (not I-JSON)
│   ├── MalformedAnchors        an anchors object (protocol 9.7) that does not parse
│   └── MalformedStatement      a directory statement or disclosure that does not parse
│                               (also a StatementInvalid, reason `malformed`)
├── UnsupportedSuite            a KEM suite or signature algorithm we do not implement
├── BadSignature                a signature that does not verify (envelope, bundle, note)
├── LabelMismatch               a label that is not the one bound to the ciphertext
├── NotARecipient               the envelope carries no wrapped key for this device
├── DecryptionFailed            the wrapped key or the content did not decrypt
│   ├── KeyCommitmentMismatch   the unwrapped key is not the one the signed header commits to
│   └── WrongKeyId              the envelope wrapped the key to another key of this device
├── PolicyViolation             a label or principal that the policy refuses
├── ProofError                  an inclusion or consistency proof that does not verify
├── RequestSignatureError       an RFC 9421 request signature that is missing, stale or bad
├── CommitmentMismatch          a disclosure that does not open its commitment (protocol 9.1)
└── StatementInvalid            a directory statement refused (protocol 9.2-9.4); `reason`
    └── AuthorityError          its signer had no authority to make it (the 9.4 table)
"""

from __future__ import annotations

__all__ = [
    "AuthorityError",
    "BadSignature",
    "CommitmentMismatch",
    "CryptoError",
    "DecryptionFailed",
    "JSONRefused",
    "KeyCommitmentMismatch",
    "LabelMismatch",
    "LabelSyntaxError",
    "MalformedAnchors",
    "MalformedContent",
    "MalformedEnvelope",
    "MalformedError",
    "MalformedKey",
    "MalformedStatement",
    "NotARecipient",
    "NoteSyntaxError",
    "PolicyViolation",
    "ProofError",
    "RequestSignatureError",
    "StatementInvalid",
    "UnsupportedSuite",
    "WrongKeyId",
]


class CryptoError(Exception):
    """Base of every error raised by liaison.crypto."""


class MalformedError(CryptoError, ValueError):
    """Input that does not parse as its format says."""


class MalformedEnvelope(MalformedError):
    """An envelope with a missing, extra or ill-typed field."""


class MalformedKey(MalformedError):
    """A key, key bundle or key-store blob that does not parse."""


class LabelSyntaxError(MalformedError):
    """Label text or label JSON that does not parse."""


class NoteSyntaxError(MalformedError):
    """A signed note, checkpoint or verifier key that does not parse."""


class JSONRefused(MalformedError):
    """JSON that parses but that `encoding.loads_strict` refuses; `reason` is a stable slug:
    `duplicate-key` (a member name repeated), `json-too-deep` (nesting past the limit),
    `invalid-character` (a lone surrogate, or U+0000 where refused)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class UnsupportedSuite(CryptoError):
    """A KEM suite or signature algorithm that this version does not implement."""


class BadSignature(CryptoError):
    """A signature that does not verify."""


class LabelMismatch(CryptoError):
    """The label presented is not the label bound to the ciphertext."""


class NotARecipient(CryptoError):
    """The envelope carries no wrapped key for this device."""


class DecryptionFailed(CryptoError):
    """The wrapped key or the content did not decrypt (tampered or wrong key)."""


class PolicyViolation(CryptoError):
    """A label, principal or channel that the policy refuses; `reason` is a stable slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ProofError(CryptoError):
    """An inclusion or consistency proof, or a tile, that does not verify."""


class RequestSignatureError(CryptoError):
    """An HTTP request signature (RFC 9421) that is missing, malformed, stale or invalid.

    `reason` is one of `unauthenticated`, `bad-request-signature`, `stale-request`,
    `content-digest`, `duplicate-signature-field`.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class MalformedContent(MalformedError):
    """A decrypted v2 frame or body that is not exactly as the sender must write it: a length
    beyond the frame, non-zero or too much padding, or a body that is not canonical JSON."""


class KeyCommitmentMismatch(DecryptionFailed):
    """The content key this device unwrapped is not the key the signed header commits to: the
    sender gave different recipients different keys (or the header was sealed for another
    content). Raised before any content is decrypted. Slug: `key-commitment-mismatch`."""

    slug = "key-commitment-mismatch"


class WrongKeyId(DecryptionFailed):
    """The envelope wrapped this device's content key to a KEM key other than its own."""


class CommitmentMismatch(CryptoError):
    """A disclosure that does not open the commitment of the same name, or one for a name that
    has no commitment (protocol 9.1): refused, never skipped. `field` names it; slug
    `commitment-mismatch`."""

    reason = "commitment-mismatch"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class StatementInvalid(CryptoError):
    """A directory statement that is refused (protocol 9.2-9.4): the service answers
    `statement-invalid` with `reason`, a stable slug. The chain rule: `stale`, `chain`,
    `origin`, `record`, `nation`, `revoked`, `version`; opening facts: `disclosures`,
    `not-boolean`, `universe`; `malformed` (MalformedStatement); `type`, `signer` and
    `invitation` (a statement used or signed as what it is not); and the reasons of
    AuthorityError."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class AuthorityError(StatementInvalid):
    """The statement's signer had no authority to make it (the table of protocol 9.4), or its
    signatures do not verify. `reason`: `signature`, `signer`, `signer-revoked`, `not-root`,
    `not-admin`, `other-nation`, `grant-above-own`, `no-invitation`, `invitation`,
    `invitation-signature`, `status`, `principal`, `chain` (a predecessor needed),
    `anchor` (a roots chain not from the anchored statement)."""


class MalformedAnchors(MalformedError):
    """An anchors object (protocol 9.7) with a missing, extra or ill-typed member."""


class MalformedStatement(MalformedError, StatementInvalid):
    """A directory statement, signed statement or disclosure that does not parse as protocol
    9.1-9.2 says: a MalformedError, and a StatementInvalid whose `reason` is `malformed`."""

    def __init__(self, detail: str) -> None:
        StatementInvalid.__init__(self, "malformed", detail)
