"""Liaison's client library: what analysts' tools, partner systems and auditors import.

    from liaison.clients import Client

    with Client.from_profile("ukr-system", passphrase) as c:
        c.send("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"...")
        for item in c.inbox():
            print(c.read(item.id).text)

`AsyncClient` is the asyncio original; `Client` wraps it for blocking code; `enrol` makes a
new profile. Every failure is a `ClientError`; every error class is importable from here (the
tree is drawn in `liaison.clients.errors`). `Retry` sets how 429 and 503 answers are retried.
"""

from ._models import (
    AuditEntry,
    Channel,
    Checkpoint,
    DeviceInfo,
    Enrolled,
    Excluded,
    InboxEvent,
    InboxItem,
    LogVerification,
    Me,
    Message,
    MessageProof,
    Plan,
    Recipient,
    Sent,
    Witnessing,
)
from ._retry import Retry
from ._trust import LogMemory, WitnessPolicy, WitnessPolicyFile
from .audit import WitnessKey, verify_log, witness
from .client import DEFAULT_CONTENT_TYPE, AsyncClient
from .enrol import enrol
from .errors import (
    APIError,
    AuthenticationFailed,
    ClientError,
    Conflict,
    ContentInvalid,
    DeviceRevoked,
    EnrolmentRefused,
    InconsistentLog,
    InputError,
    InvalidRequest,
    KeyCommitmentMismatch,
    KeyRevoked,
    KeyStoreError,
    LabelAltered,
    LogKeyMismatch,
    MalformedResponse,
    NotFound,
    NotRecipient,
    PermissionDenied,
    PolicyRefused,
    ProfileExists,
    ProfileNotFound,
    ProofInvalid,
    ProofMissing,
    RateLimited,
    SendManyFailed,
    ServerError,
    ServerUnreachable,
    SignatureInvalid,
    TLSError,
    TransportError,
    UntrustedCheckpoint,
    VerificationFailed,
    WrongPassphrase,
)
from .keystore import KeyStore, Profile
from .stix import STIX_CONTENT_TYPE, validate_stix_bundle
from .sync import Client

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "STIX_CONTENT_TYPE",
    "APIError",
    "AsyncClient",
    "AuditEntry",
    "AuthenticationFailed",
    "Channel",
    "Checkpoint",
    "Client",
    "ClientError",
    "Conflict",
    "ContentInvalid",
    "DeviceInfo",
    "DeviceRevoked",
    "Enrolled",
    "EnrolmentRefused",
    "Excluded",
    "InboxEvent",
    "InboxItem",
    "InconsistentLog",
    "InputError",
    "InvalidRequest",
    "KeyCommitmentMismatch",
    "KeyRevoked",
    "KeyStore",
    "KeyStoreError",
    "LabelAltered",
    "LogKeyMismatch",
    "LogMemory",
    "LogVerification",
    "MalformedResponse",
    "Me",
    "Message",
    "MessageProof",
    "NotFound",
    "NotRecipient",
    "PermissionDenied",
    "Plan",
    "PolicyRefused",
    "Profile",
    "ProfileExists",
    "ProfileNotFound",
    "ProofInvalid",
    "ProofMissing",
    "RateLimited",
    "Recipient",
    "Retry",
    "SendManyFailed",
    "Sent",
    "ServerError",
    "ServerUnreachable",
    "SignatureInvalid",
    "TLSError",
    "TransportError",
    "UntrustedCheckpoint",
    "VerificationFailed",
    "WitnessKey",
    "WitnessPolicy",
    "WitnessPolicyFile",
    "Witnessing",
    "WrongPassphrase",
    "enrol",
    "validate_stix_bundle",
    "verify_log",
    "witness",
]
