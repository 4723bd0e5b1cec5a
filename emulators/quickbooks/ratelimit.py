"""Per-realm request throttling over a sliding one-minute window.

Intuit documents 500 requests per minute per realm and app for the Accounting API (plus limits on
concurrency and batch calls that the emulator does not model). A sliding log is exact: the n-th
request within any 60 s span is refused, and refused requests do not count.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class MinuteWindow:
    def __init__(
        self,
        per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        if per_minute is not None and per_minute <= 0:
            per_minute = None
        self.per_minute = per_minute
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        if self.per_minute is None:
            return True
        with self._lock:
            now = self._clock()
            seen = self._seen.setdefault(key, deque())
            while seen and now - seen[0] >= self.window_seconds:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return False
            seen.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
