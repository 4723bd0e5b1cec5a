"""Spacing one worker process's requests to a provider account under the provider's rate limit.

Stripe and QuickBooks limit requests per unit of time per account (Stripe: per second,
https://docs.stripe.com/rate-limits; QuickBooks: 500 a minute and 10 a second per realm,
https://developer.intuit.com/app/developer/qbo/docs/learn/limits-and-throttles). A worker runs
MAX_CONCURRENT_ACTIVITIES activity threads; unpaced, they send as fast as the provider answers
and learn of the limit from its 429s, each of which costs a retry (QuickBooks asks for 60 s).
A pacer keeps them under it before the provider has to say so.

It is a GCRA (a token bucket told as "theoretical arrival times"): each request reserves the
next start time, at least 1/rate after the previous one, `burst` of them possibly at once.
Reservations are handed out in arrival order, so no thread starves; a thread sleeps until its
start. In any span of T seconds a pacer starts at most `burst + rate * T` requests.

A pacer is per process and per account (pacer_for): what a provider module uses when it is built
without the store (tests, `export --dry-run`). Workers use the connection's gate instead
(activities/providers/gate.py), one rate shared by every worker process through the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from billbridge.core.rates import take_turn


class RequestPacer:
    def __init__(
        self,
        per_second: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a pacer needs a positive rate and a burst of at least 1")
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = float("-inf")  # the theoretical start of the next request

    def reserve(self, max_wait: float) -> float | None:
        """Reserve the next start: the seconds until it (0: now), or None, reserving nothing,
        when it is more than `max_wait` away."""
        with self._lock:
            turn = take_turn(self._next, self._clock(), self.per_second, self.burst, max_wait)
            self._next = turn.next_start
            return turn.delay

    def wait(self, max_wait: float) -> float | None:
        """Sleep until this request may start; its wait in seconds, or None (not sent, nothing
        reserved) when the start is more than `max_wait` away."""
        delay = self.reserve(max_wait)
        if delay:
            self._sleep(delay)
        return delay


_pacers: dict[Hashable, RequestPacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(account: Hashable, per_second: float, *, burst: int = 1) -> RequestPacer:
    """The process's pacer for one provider account (a new one if the rate or burst changed)."""
    with _pacers_lock:
        found = _pacers.get(account)
        if found is None or found.per_second != per_second or found.burst != burst:
            found = _pacers[account] = RequestPacer(per_second, burst=burst)
        return found
