"""Token-bucket rate limits, per device or per client address, refused as `rate-limited`.

A limiter's buckets live in this process's memory, or, given a `SharedBuckets` table, in a
file that every process serving the data directory shares (one file per limiter: a table holds
buckets of one rate and burst). The arithmetic is written once, in `take_token` and
`refund_token`, which both backends call.
"""

from __future__ import annotations

import math
import time

from ..problems import Problem
from ..storage.buckets import Bucket, SharedBuckets

__all__ = ["RateLimiter", "refund_token", "take_token"]

#: Past this many keys in memory, the idle ones are forgotten.
MAX_KEYS = 100_000


def _readable(bucket: Bucket | None, burst: float) -> bool:
    """Whether `bucket` holds a usable value: finite, with tokens in [0, burst] (a shared table's
    file may hold anything: such a bucket counts as full)."""
    if bucket is None:
        return False
    tokens, last = bucket
    return math.isfinite(tokens) and math.isfinite(last) and 0 <= tokens <= burst


def _level(bucket: Bucket | None, now: float, rate: float, burst: float) -> float:
    """The tokens in `bucket` at `now`: full when there is none or it is unreadable; a clock
    stepped back refills nothing."""
    if bucket is None or not _readable(bucket, burst):
        return burst
    tokens, last = bucket
    return min(burst, tokens + max(0.0, now - last) * rate)


def take_token(bucket: Bucket | None, now: float, rate: float, burst: float) -> tuple[Bucket, float]:
    """The bucket after trying to take a token at `now`, and 0 if one was taken, else the
    seconds to wait before one is available."""
    tokens = _level(bucket, now, rate, burst)
    if tokens >= 1:
        return (tokens - 1, now), 0.0
    return (tokens, now), (1 - tokens) / rate


def refund_token(bucket: Bucket | None, now: float, burst: float) -> Bucket:
    """The bucket with one token given back (never above the burst; no refill counted)."""
    if bucket is None or not _readable(bucket, burst):
        return (burst, now)  # none, or unreadable: full
    tokens, last = bucket
    return (min(burst, tokens + 1), last)


class RateLimiter:
    """Token buckets per key (device id, or client address before authentication).

    With `table`, the buckets are in that shared table (its own file, for this limiter only),
    timed by its clock (Unix time); without, in a dict of this process, timed by the monotonic
    clock and bounded to about `MAX_KEYS` keys.
    """

    def __init__(self, rate: float, burst: int, *, table: SharedBuckets | None = None) -> None:
        self.rate, self.burst = rate, float(burst)
        self._table = table
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str) -> float:
        """0 if allowed, else the seconds to wait before a token is available."""
        if self._table is not None:
            return self._table.update(key, lambda bucket, now: take_token(bucket, now, self.rate, self.burst))
        now = time.monotonic()
        self._buckets[key], wait = take_token(self._buckets.get(key), now, self.rate, self.burst)
        if not wait and len(self._buckets) > MAX_KEYS:  # bound memory: forget the idle ones
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return wait

    def refund(self, key: str) -> None:
        """Give back one token taken for `key` (never above the burst)."""
        if self._table is not None:
            self._table.update(key, lambda bucket, now: (refund_token(bucket, now, self.burst), None))
            return
        self._buckets[key] = refund_token(self._buckets.get(key), time.monotonic(), self.burst)

    def reset(self) -> None:
        """Forget every bucket (tests that send more than a limit allows on purpose)."""
        if self._table is not None:
            self._table.clear()
        self._buckets.clear()

    def close(self) -> None:
        """Unmap the shared table, if any (the in-memory buckets need nothing)."""
        if self._table is not None:
            self._table.close()

    def check(self, key: str, detail: str) -> None:
        """Take a token for `key` or refuse as `rate-limited`, saying when to retry."""
        wait = self.take(key)
        if wait:
            raise Problem("rate-limited", detail, retry_after=max(1, round(wait + 0.5)))
