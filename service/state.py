"""Everything a request needs, built once by the app factory: settings, policy, DB, writer."""

from __future__ import annotations

from dataclasses import dataclass, field

from liaison.crypto.keys import PublicBundle
from liaison.crypto.policy import Policy

from .config import Settings
from .metrics import Metrics
from .storage.blobs import BlobStore
from .storage.db import Database
from .storage.events import EventHub
from .tlog.log import AuditLog
from .usecases.ratelimit import RateLimiter
from .writer import Writer

__all__ = ["AppState"]


@dataclass
class AppState:
    settings: Settings
    policy: Policy
    #: The policy file's exact bytes: clients check them against the root-signed statement.
    policy_file: bytes
    db: Database
    log: AuditLog
    writer: Writer
    hub: EventHub
    metrics: Metrics
    limiter: RateLimiter
    enrol_limiter: RateLimiter
    #: Requests whose signature did not verify, per client address (usecases.auth).
    auth_failure_limiter: RateLimiter
    #: Attachment ciphertext (issue 15): the filesystem store under the data directory.
    blobs: BlobStore
    #: Device bundles never change (the id is their fingerprint), so caching them is safe;
    #: revocation and principal state are always read fresh.
    bundles: dict[str, PublicBundle] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
