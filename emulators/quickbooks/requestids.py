"""``requestid`` bookkeeping (https://blogs.intuit.com/2015/04/06/15346/).

A POST carrying a ``requestid`` already seen in the same realm is not executed again: QuickBooks
answers with the original response, whatever its status (a 400 too) and whatever the new body
says. Responses that never reached execution (authentication, throttling, injected faults) are
not saved. Intuit does not document how long ids are remembered; by default they never expire
here (``ttl_seconds`` makes them expire).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# UNCONFIRMED: Intuit documents no maximum; 50 characters is what client libraries assume.
MAX_REQUEST_ID_LENGTH = 50


@dataclass(frozen=True)
class SavedReply:
    status: int
    headers: dict[str, str]
    body: bytes


class RequestIdStore:
    def __init__(
        self, ttl_seconds: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._saved: dict[tuple[str, str], tuple[float, SavedReply]] = {}

    def get(self, realm_id: str, request_id: str) -> SavedReply | None:
        with self._lock:
            found = self._saved.get((realm_id, request_id))
            if found is None:
                return None
            saved_at, reply = found
            if self.ttl_seconds is not None and self._clock() - saved_at >= self.ttl_seconds:
                del self._saved[(realm_id, request_id)]
                return None
            return reply

    def save(self, realm_id: str, request_id: str, reply: SavedReply) -> None:
        with self._lock:
            self._saved[(realm_id, request_id)] = (self._clock(), reply)

    def clear(self) -> None:
        with self._lock:
            self._saved.clear()
