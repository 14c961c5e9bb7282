"""The exception tree of liaison.clients: every failure a user can see is a ClientError.

    ClientError                     base; its message is one line, safe to print as is
    ├── KeyStoreError               a profile or key file that cannot be read or written
    │   ├── WrongPassphrase         the passphrase does not open the profile's keys
    │   ├── ProfileNotFound         no profile of that name
    │   └── ProfileExists           a profile of that name already exists
    ├── InputError                  what the caller gave is unusable (label text, STIX, file)
    ├── TransportError              no usable HTTPS answer at all
    │   ├── ServerUnreachable       connection refused, DNS failure, timeout
    │   └── TLSError                the server's certificate does not verify (see --ca-cert)
    ├── APIError                    the server refused with problem+json (`slug`, `status`)
    │   ├── AuthenticationFailed    unauthenticated, bad/stale/replayed request signature
    │   ├── DeviceRevoked           this device was revoked: it can neither send nor fetch
    │   ├── PermissionDenied        not admin/auditor/member, other nation, suspended ...
    │   ├── PolicyRefused           the label or recipients break the policy
    │   ├── NotFound                no such resource (or no such message for this device)
    │   ├── Conflict                already exists, duplicate envelope
    │   ├── EnrolmentRefused        enrolment code invalid/used/expired, or bad key bundle
    │   ├── InvalidRequest          malformed or invalid request
    │   ├── RateLimited             too many requests (`retry_after` seconds)
    │   └── ServerError             5xx, or an answer that is not a problem document
    ├── SendManyFailed              `send_many` stopped: what was sent, what was not, and why
    └── VerificationFailed          the client's own checks refused what the server sent
        ├── NotRecipient            the envelope carries no key for this device
        ├── KeyRevoked              the sender's (or a recipient's) device key is revoked
        ├── SignatureInvalid        an envelope or key-bundle signature does not verify
        ├── LabelAltered            the label shown is not the label bound to the content
        ├── KeyCommitmentMismatch   this device's content key is not the one the sender committed to
        ├── ContentInvalid          the content does not decrypt or is not in its canonical form
        ├── ProofMissing            a key or message comes without its audit-log proof
        ├── ProofInvalid            an inclusion proof, tile or log entry does not verify
        ├── UntrustedCheckpoint     a checkpoint not signed by the pinned log key
        ├── LogKeyMismatch          at enrolment: the server's log key is not the invitation's
        ├── InconsistentLog         a checkpoint not consistent with the last one seen
        ├── DirectoryInvalid        the directory's proofs do not show what the server claims
        │                           (`why`: ineligible, rollback, authority, map-proof, ...)
        └── MalformedResponse       the server's answer does not have the documented shape

Messages never carry private material; the CLI prints `str(error)` and exits non-zero.
Every `VerificationFailed` has a stable `reason` slug, like the server's problem types.
Every `APIError` has the problem's `slug`, `status`, `detail` and `title`, and `retry_after`
(seconds, or None) when the server said when to come back (429, 503, 507). The client retries
429s and 503s that say when by itself (`Retry`); what reaches the caller is the last answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Sent

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "ClientError",
    "Conflict",
    "ContentInvalid",
    "DeviceRevoked",
    "DirectoryInvalid",
    "EnrolmentRefused",
    "InconsistentLog",
    "InputError",
    "InvalidRequest",
    "KeyCommitmentMismatch",
    "KeyRevoked",
    "KeyStoreError",
    "LabelAltered",
    "LogKeyMismatch",
    "MalformedResponse",
    "NotFound",
    "NotRecipient",
    "PermissionDenied",
    "PolicyRefused",
    "ProfileExists",
    "ProfileNotFound",
    "ProofInvalid",
    "ProofMissing",
    "RateLimited",
    "SendManyFailed",
    "ServerError",
    "ServerUnreachable",
    "SignatureInvalid",
    "TLSError",
    "TransportError",
    "UntrustedCheckpoint",
    "VerificationFailed",
    "WrongPassphrase",
    "api_error",
]


class ClientError(Exception):
    """Base of every error raised by liaison.clients."""


class KeyStoreError(ClientError):
    """A profile or key file that cannot be read or written, or an unusable passphrase."""


class WrongPassphrase(KeyStoreError):
    """The passphrase does not open the profile's private keys (or the file was altered)."""


class ProfileNotFound(KeyStoreError):
    """No profile of that name exists in the key store."""


class ProfileExists(KeyStoreError):
    """A profile of that name already exists and overwriting was not asked for."""


class InputError(ClientError):
    """Input from the caller that cannot be used: label text, a STIX bundle, a file."""


class TransportError(ClientError):
    """No usable HTTPS answer: the server could not be reached or not authenticated."""


class ServerUnreachable(TransportError):
    """Connection refused, name not resolved, or timed out."""


class TLSError(TransportError):
    """The server's TLS certificate does not verify against the trusted CA."""


class APIError(ClientError):
    """The server refused the request with an RFC 9457 problem document.

    `slug` is the problem type (`urn:liaison:problem:<slug>`; branch on it, never on the
    text), `status` the HTTP status, `detail` and `title` the server's words (one line), and
    `retry_after` the seconds the server asked the client to wait (its `Retry-After`), or None.
    """

    def __init__(self, slug: str, status: int, detail: str, title: str = "") -> None:
        super().__init__(f"server refused ({slug}): {detail}" if detail else f"server refused ({slug})")
        self.slug = slug
        self.status = status
        self.detail = detail
        self.title = title
        self.retry_after: float | None = None


class AuthenticationFailed(APIError):
    """The server did not accept this device's request signature."""


class DeviceRevoked(APIError):
    """This device was revoked."""


class PermissionDenied(APIError):
    """The principal may not do this (role, nation scope, membership, status)."""


class PolicyRefused(APIError):
    """The label, suite or recipients break the classification policy."""


class NotFound(APIError):
    """No such resource, or no such message for this device."""


class Conflict(APIError):
    """The resource already exists (or the envelope id was already used)."""


class EnrolmentRefused(APIError):
    """The enrolment code is invalid, used or expired, or the key bundle was refused."""


class InvalidRequest(APIError):
    """The request was malformed or failed validation."""


class RateLimited(APIError):
    """Too many requests (429); `retry_after` seconds, when the server said."""


class ServerError(APIError):
    """The server failed (5xx) or answered with something that is not a problem document."""


class SendManyFailed(ClientError):
    """`send_many` could not send every message.

    `sent` maps the index of each payload that was accepted and verified to its `Sent`;
    `unsent` lists the indexes of the payloads the server did not accept (refused, or never
    submitted after the first failure): sending exactly those again is safe. An index in
    neither was accepted by the server but its receipt did not verify (`error` says why).
    `error` is the first failure, the cause.
    """

    def __init__(
        self, message: str, *, sent: dict[int, Sent], unsent: tuple[int, ...], error: ClientError
    ) -> None:
        super().__init__(message)
        self.sent = sent
        self.unsent = unsent
        self.error = error


class VerificationFailed(ClientError):
    """The client's own verification refused what the server sent; `reason` is a stable slug."""

    reason = "verification-failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail = message


class NotRecipient(VerificationFailed):
    reason = "not-recipient"


class KeyRevoked(VerificationFailed):
    reason = "key-revoked"


class SignatureInvalid(VerificationFailed):
    reason = "signature-invalid"


class LabelAltered(VerificationFailed):
    reason = "label-altered"


class KeyCommitmentMismatch(VerificationFailed):
    """The sender gave this device a content key other than the one its signed header commits
    to: other recipients may read a content this device cannot (protocol 5.3)."""

    reason = "key-commitment-mismatch"


class ContentInvalid(VerificationFailed):
    """The content does not decrypt (a chunk fails, the key was wrapped to another key of this
    device) or its frame or body is not in the one form the protocol allows."""

    reason = "content-invalid"


class ProofMissing(VerificationFailed):
    reason = "proof-missing"


class ProofInvalid(VerificationFailed):
    reason = "proof-invalid"


class UntrustedCheckpoint(VerificationFailed):
    reason = "untrusted-checkpoint"


class LogKeyMismatch(VerificationFailed):
    """The log key a server presents at enrolment is not the one the invitation names."""

    reason = "log-key-mismatch"


class InconsistentLog(VerificationFailed):
    reason = "inconsistent-log"


class DirectoryInvalid(VerificationFailed):
    """The verifiable directory (protocol 9.9) does not prove what the server's answer claims:
    a listed recipient that is not proven eligible, a statement older than one this client
    relied on (`rollback`), a signer without authority, a map proof or map head that does not
    verify. `reason` is the family's stable slug (`directory-invalid`); `why` the specific
    cause, e.g. `ineligible`, `rollback`, `authority`, `map-proof`, `map-head`, `roots`,
    `policy`, `unproven`, `unknown-device`. The message names the device or principal."""

    reason = "directory-invalid"

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


class MalformedResponse(VerificationFailed):
    reason = "malformed-response"


_BY_SLUG: dict[str, type[APIError]] = {}
for _cls, _slugs in (
    (
        AuthenticationFailed,
        "unauthenticated bad-request-signature stale-request replayed-request content-digest",
    ),
    (DeviceRevoked, "device-revoked"),
    (
        PermissionDenied,
        "forbidden not-admin other-nation grant-above-own not-auditor "
        "principal-suspended not-member sender-mismatch unknown-witness",
    ),
    (
        PolicyRefused,
        "clearance releasability compartment system-level above-ceiling wrong-policy "
        "suite-not-allowed signature-required missing-recipient ineligible-recipient "
        "too-large unknown-level unknown-nation unknown-compartment "
        "attachment-too-large too-many-attachments attachment-quota",
    ),
    (NotFound, "not-found not-recipient"),
    (Conflict, "conflict duplicate-envelope duplicate-attachment upload-complete attachment-mismatch"),
    (EnrolmentRefused, "enrolment-code bad-bundle kem-proof genesis-over"),
    (InvalidRequest, "statement-invalid"),
    (RateLimited, "rate-limited too-many-streams"),
    (ServerError, "unavailable internal storage-full"),
):
    for _slug in _slugs.split():
        _BY_SLUG[_slug] = _cls


def api_error(slug: str, status: int, detail: str, title: str = "") -> APIError:
    """The specific APIError subclass for a problem `slug` (InvalidRequest / ServerError otherwise)."""
    cls = _BY_SLUG.get(slug)
    if cls is None:
        cls = ServerError if status >= 500 else InvalidRequest
    return cls(slug, status, detail, title)
