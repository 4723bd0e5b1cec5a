"""Per-API-key token buckets (Stripe test mode allows about 25 requests/second)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, rate_per_second: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_second is not None and rate_per_second <= 0:
            rate_per_second = None
        self.rate = rate_per_second
        # Burst equals the per-second rate (at least one request).
        self.capacity = max(rate_per_second or 0.0, 1.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def allow(self, key: str) -> bool:
        if self.rate is None:
            return True
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True
            self._buckets[key] = (tokens, now)
            return False

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
