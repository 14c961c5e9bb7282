"""Liaison's client library: what analysts' tools, partner systems and auditors import.

    from liaison.clients import Client

    with Client.from_profile("ukr-system", passphrase) as c:
        c.send("airdef", "SECRET//AIRDEF//REL TO UKR, USA", b"...")
        for item in c.inbox():
            print(c.read(item.id).text)

`AsyncClient` is the asyncio original; `Client` wraps it for blocking code; `enrol` makes a
new profile. Every failure is a `ClientError` (tree in `liaison.clients.errors`).

The names below are imported when first used (PEP 562), not with the package: the `liaison`
CLI lives in this package, and `liaison --help` must not pay for httpx and the crypto
libraries. Add a public name to the TYPE_CHECKING imports and to `__all__`; `__getattr__`
finds it in the first of `_SOURCES` that defines it (tests/clients/test_cli_startup.py
checks every name of `__all__`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._attachments import Attachment
    from ._models import (
        AttachmentMeta,
        AuditEntry,
        Channel,
        Checkpoint,
        DeviceInfo,
        Enrolled,
        Excluded,
        InboxEvent,
        InboxItem,
        InboxPage,
        LogVerification,
        Me,
        Message,
        MessageProof,
        NationRange,
        OwnRecords,
        Plan,
        Recipient,
        SavedAttachment,
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
    "Attachment",
    "AttachmentMeta",
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
    "DirectoryInvalid",
    "Enrolled",
    "EnrolmentRefused",
    "Excluded",
    "InboxEvent",
    "InboxItem",
    "InboxPage",
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
    "NationRange",
    "NotFound",
    "NotRecipient",
    "OwnRecords",
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
    "SavedAttachment",
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

#: Where the public names live, lightest first.
_SOURCES = (
    "errors",
    "_models",
    "_retry",
    "keystore",
    "stix",
    "_trust",
    "client",
    "_attachments",
    "audit",
    "enrol",
    "sync",
)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (and keep it, so this runs once per name)."""
    if name in __all__:
        for source in _SOURCES:
            module = importlib.import_module(f".{source}", __name__)
            if name in getattr(module, "__all__", ()):
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """This package, whose `enrol` stays the function when the `enrol` submodule is loaded.

    The import system sets a package's attribute to each submodule it loads; when every name
    was imported with the package, the function's import came after the submodule's and won.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name == "enrol" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
