"""When the client sends a refused request again by itself: `Retry`, and `Retry-After` parsing.

Only answers that say the request was not carried out and when to come back are retried:
`rate-limited` and `too-many-streams` (429: with `Retry-After`, or `default_wait` without
one) and `unavailable` (503, only with `Retry-After`: the server says nothing was stored and
the nonce is not spent). Never `storage-full` (507: it does not pass by itself), a 5xx
without `Retry-After`, or anything below HTTP. Each retry is a new request, signed anew (a
fresh nonce: the server accepts a nonce once).
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import APIError

__all__ = ["Retry", "parse_retry_after"]

#: Statuses retried by themselves (429) and only with `Retry-After` (503).
_ALWAYS, _WITH_RETRY_AFTER = frozenset({429}), frozenset({503})


@dataclass(frozen=True)
class Retry:
    """How many times, and how long, the client waits and tries again (see the module doc).

    `attempts`: tries in all, the first included (1: never retry). `max_wait`: the longest
    single wait; an answer asking for longer is raised at once rather than slept on.
    `budget`: the most time spent waiting over all the retries of one call. `default_wait`:
    the wait after a 429 without `Retry-After`.
    """

    attempts: int = 4
    max_wait: float = 30.0
    budget: float = 60.0
    default_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1")
        for name in ("max_wait", "budget", "default_wait"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"Retry.{name} must be a finite number of seconds, at least 0")

    @classmethod
    def never(cls) -> Retry:
        """Every refusal reaches the caller at once."""
        return cls(attempts=1)

    def delay(self, error: APIError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before trying again after `error` on try `attempt` (1-based),
        `waited` seconds having been spent waiting already; None: raise `error`."""
        if attempt >= self.attempts:
            return None
        if error.status in _ALWAYS:
            wait = error.retry_after if error.retry_after is not None else self.default_wait
        elif error.status in _WITH_RETRY_AFTER and error.retry_after is not None:
            wait = error.retry_after
        else:
            return None
        if wait > self.max_wait or waited + wait > self.budget:
            return None
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` (RFC 9110 section 10.2.3) in seconds from `now`: delay-seconds or an
    HTTP-date (a date in the past is 0); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
