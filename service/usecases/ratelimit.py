"""Token-bucket rate limits, per device or per client address, refused as `rate-limited`."""

from __future__ import annotations

import time

from ..problems import Problem

__all__ = ["RateLimiter"]


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

    def refund(self, key: str) -> None:
        """Give back one token taken for `key` (never above the burst)."""
        tokens, last = self._buckets.get(key, (self.burst, time.monotonic()))
        self._buckets[key] = (min(self.burst, tokens + 1), last)

    def check(self, key: str, detail: str) -> None:
        """Take a token for `key` or refuse as `rate-limited`, saying when to retry."""
        wait = self.take(key)
        if wait:
            raise Problem("rate-limited", detail, retry_after=max(1, round(wait + 0.5)))
