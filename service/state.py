"""Everything a request needs, built once by the app factory: settings, policy, DB, writer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from liaison.crypto.keys import PublicBundle
from liaison.crypto.policy import Policy

from .config import Settings
from .metrics import Metrics
from .storage.db import Database
from .storage.events import EventHub
from .tlog.log import AuditLog
from .writer import Writer

__all__ = ["AppState", "RateLimiter"]


class RateLimiter:
    """Token buckets per key (device id, or client address before authentication)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 if allowed, else the seconds to wait before a token is available."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:  # bound memory: forget the idle ones
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


@dataclass
class AppState:
    settings: Settings
    policy: Policy
    db: Database
    log: AuditLog
    writer: Writer
    hub: EventHub
    metrics: Metrics
    limiter: RateLimiter
    enrol_limiter: RateLimiter
    #: Device bundles never change (the id is their fingerprint), so caching them is safe;
    #: revocation and principal state are always read fresh.
    bundles: dict[str, PublicBundle] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
