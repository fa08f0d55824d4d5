"""Per-key request rate and daily quota, answered with 429 and Retry-After.

Counting is done by the `limits` library in this process's memory, so limits hold per
replica: with N replicas behind a load balancer a key gets up to N times the rate. The rate
uses a moving window (no burst of twice the rate at a window edge); the quota a fixed
24-hour window that starts with the key's first request.
"""

from __future__ import annotations

import math
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from veracity.errors import RateLimitedError

ANONYMOUS = "anonymous"  # the one bucket shared when authentication is disabled


class KeyLimiter:
    """Applies the configured limits to each key id; a no-op when neither is set."""

    def __init__(self, rate: str | None = None, daily_quota: int | None = None) -> None:
        self._rate = limits.parse(rate) if rate else None
        self._quota = limits.RateLimitItemPerDay(daily_quota) if daily_quota else None
        storage = MemoryStorage()
        self._moving = MovingWindowRateLimiter(storage)
        self._fixed = FixedWindowRateLimiter(storage)

    def hit(self, key_id: str | None) -> None:
        """Count one request for ``key_id``.

        Raises:
            RateLimitedError: over the rate (code ``rate_limited``) or the daily quota
                (code ``quota_exceeded``). A request refused by the rate does not use quota.
        """
        bucket = key_id or ANONYMOUS
        if self._rate is not None and not self._moving.hit(self._rate, bucket):
            raise RateLimitedError(
                f"rate limit of {self._rate} exceeded for this key; slow down and retry "
                "after the delay in Retry-After",
                retry_after_s=self._seconds_to_reset(self._moving, self._rate, bucket),
            )
        if self._quota is not None and not self._fixed.hit(self._quota, bucket):
            raise RateLimitedError(
                f"daily quota of {self._quota.amount} requests used up for this key; it "
                "renews after the delay in Retry-After",
                retry_after_s=self._seconds_to_reset(self._fixed, self._quota, bucket),
                code="quota_exceeded",
            )

    @staticmethod
    def _seconds_to_reset(
        limiter: MovingWindowRateLimiter | FixedWindowRateLimiter,
        item: limits.RateLimitItem,
        bucket: str,
    ) -> int:
        # `limits` reports reset times on the wall clock.
        reset_at = limiter.get_window_stats(item, bucket).reset_time
        return max(1, math.ceil(reset_at - time.time()))
