"""The arithmetic of a shared request rate: GCRA turns and the back-off after a refusal.

Pure (no I/O, no clock of its own), so the per-process pacer (activities/providers/pacing.py)
and the store's connection gate (activities/store/gates.py), which every worker process shares,
follow the same rule.

GCRA ("generic cell rate algorithm", a token bucket told as theoretical arrival times): each
request takes the next start time, at least 1/rate after the previous one, `burst` of them
possibly at once. In any span of T seconds at most `burst + rate * T` requests start.

Adaptive: a provider that refuses a request for its rate (HTTP 429) is sent to at a smaller
share of the configured rate (halved, down to MIN_FACTOR), which then grows back by
RECOVERY_PER_SECOND (from half to full in 30 s): an additive-increase, multiplicative-decrease
rule, as TCP treats congestion, since a provider's own limit can be lower than documented (its
other clients share it) and change.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_FACTOR = 0.1
RECOVERY_PER_SECOND = 1 / 60


@dataclass(frozen=True)
class Turn:
    """A request's place in line: `delay` seconds from now (0: at once), or None when its start
    would be more than the wait allowed; then `earliest` is when it could start and nothing is
    reserved."""

    delay: float | None
    next_start: float
    earliest: float = 0.0


def take_turn(
    next_start: float, now: float, per_second: float, burst: int, max_wait: float
) -> Turn:
    """The next request's start given the theoretical start of the next one (`next_start`)."""
    if per_second <= 0 or burst < 1:
        raise ValueError("a rate needs a positive rate and a burst of at least 1")
    interval = 1.0 / per_second
    theoretical = max(next_start, now)
    start = max(now, theoretical - (burst - 1) * interval)
    if start - now > max_wait:
        return Turn(delay=None, next_start=next_start, earliest=start)
    return Turn(delay=start - now, next_start=theoretical + interval, earliest=start)


def recovered(factor: float, since: float, now: float) -> float:
    """The share of the rate in use at `now`, grown back since the last change at `since`."""
    return min(1.0, factor + max(0.0, now - since) * RECOVERY_PER_SECOND)


def slowed(factor: float) -> float:
    """The share of the rate after the provider refused a request for its rate."""
    return max(MIN_FACTOR, factor / 2)
