"""The account's concurrency limit: requests in flight at once, shared by every integration.

"Concurrency Governance and Session Management"
(https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/subsect_1559222360.html): REST
concurrency is governed by an account limit, every request counting toward it, shared with SOAP
and RESTlets. The limit is 5 on the shared tier and developer accounts, 15 on Tier 1, plus 10 per
SuiteCloud Plus licence (contract notes; configurable here). The token endpoint is not counted
(UNCONFIRMED). What a refused request gets back is configurable (errors.concurrency_exceeded).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Stats:
    admitted: int = 0
    refused: int = 0
    peak: int = 0


class ConcurrencyLimit:
    def __init__(self, limit: int | None, over_limit_status: int = 429) -> None:
        if over_limit_status not in (401, 429):
            raise ValueError("over_limit_status must be 429 or 401")
        self.limit = limit
        self.over_limit_status = over_limit_status
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stats = Stats()

    def enter(self) -> int | None:
        """Admit a request: the number in flight with it, or None when over the limit."""
        with self._lock:
            if self.limit is not None and self._in_flight >= self.limit:
                self._stats.refused += 1
                return None
            self._in_flight += 1
            self._stats.admitted += 1
            self._stats.peak = max(self._stats.peak, self._in_flight)
            return self._in_flight

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def stats(self) -> Stats:
        with self._lock:
            return Stats(self._stats.admitted, self._stats.refused, self._stats.peak)

    def reset(self) -> None:
        with self._lock:
            self._stats = Stats()
