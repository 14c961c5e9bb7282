"""Liaison's client library: what analysts' tools, partner systems and auditors import.

    from liaison.clients import Client

    with Client.from_profile("ukr-system", passphrase) as c:
        c.send("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"...")
        for item in c.inbox():
            print(c.read(item.id).text)

`AsyncClient` is the asyncio original; `Client` wraps it for blocking code; `enrol` makes a
new profile. Every failure is a `ClientError` (tree in `liaison.clients.errors`).
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
from ._trust import LogMemory, WitnessPolicy, WitnessPolicyFile
from .audit import WitnessKey, verify_log, witness
from .client import DEFAULT_CONTENT_TYPE, AsyncClient
from .enrol import enrol
from .errors import (
    APIError,
    ClientError,
    InputError,
    TransportError,
    VerificationFailed,
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
    "Channel",
    "Checkpoint",
    "Client",
    "ClientError",
    "DeviceInfo",
    "Enrolled",
    "Excluded",
    "InboxEvent",
    "InboxItem",
    "InputError",
    "KeyStore",
    "LogMemory",
    "LogVerification",
    "Me",
    "Message",
    "MessageProof",
    "Plan",
    "Profile",
    "Recipient",
    "Sent",
    "TransportError",
    "VerificationFailed",
    "WitnessKey",
    "WitnessPolicy",
    "WitnessPolicyFile",
    "Witnessing",
    "enrol",
    "validate_stix_bundle",
    "verify_log",
    "witness",
]
