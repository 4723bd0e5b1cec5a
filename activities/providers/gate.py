"""The gate every provider request passes: the connection's pause switch and its request rate.

A provider module asks its gate before each request (`before_request`) and tells it when the
provider refused one for its rate (`refused_for_rate`). Workers build each connection's gate on
the store (ConnectionGate): one pause switch and one rate per connection, shared by every worker
process on the same database, so two workers do not double the rate and a paused connection
gets no request from any of them.

Why the store and not a Temporal task queue with a queue-wide activity rate
(`max_task_queue_activities_per_second`): that rate counts activity starts, and one push is 2 to
9+ provider requests (a Stripe invoice with many lines, a lookup before a create, a read-back
after it); providers count requests. A queue rate low enough for the largest invoice wastes most
of the limit on small ones, and adapting it after a 429 means restarting every worker's poller
("last poller wins"). The gate reserves each request's start in one short transaction, on the
same rule as the per-process pacer (GCRA, core/rates.py), and slows the whole connection down
when the provider says 429, honouring its Retry-After for everyone, then recovers.

Built without a store (tests, `export --dry-run` of a provider module alone), a provider keeps
the per-process pacer (ProcessGate): no pause, the documented rate per process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Protocol

from billbridge.activities.providers.pacing import RequestPacer, pacer_for
from billbridge.activities.store import GateRow, GateTurn
from billbridge.core.errors import ExportError, ProviderPaused, ProviderRateLimited

# The share of a provider's documented rate a connection uses unless its `requests_per_second`
# setting says otherwise: the rest is left to the account's other clients (dashboards, other
# integrations), which the provider counts against the same limit.
PACED_SHARE = 0.95
# The longest a request waits for its turn inside an activity; a turn further off fails the
# attempt as rate-limited, and Temporal retries it when the turn would have come.
MAX_TURN_WAIT = 10.0


class RequestGate(Protocol):
    def before_request(self, doing: str) -> None:
        """Wait for this request's turn; ProviderPaused when the connection is paused,
        ProviderRateLimited when its turn is more than MAX_TURN_WAIT away."""

    def refused_for_rate(self, error: ExportError) -> None:
        """The provider answered a request with its rate limit (`error` a ProviderRateLimited);
        other errors are ignored."""


class GateStore(Protocol):
    def take_turn(
        self,
        connection_id: str,
        per_second: float | None,
        now: float,
        max_wait: float,
        *,
        burst: int = 1,
    ) -> GateTurn: ...

    def slow_down(self, connection_id: str, retry_after: float, now: float) -> None: ...

    def gate(self, connection_id: str) -> GateRow | None: ...


GateFactory = Callable[[str, str, float | None], RequestGate]
"""(connection id, provider label, requests per second or None) -> the connection's gate."""


class ConnectionGate:
    """One connection's gate in the store, shared by every worker process."""

    def __init__(
        self,
        store: GateStore,
        connection_id: str,
        label: str,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.connection_id = connection_id
        self.label = label
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep

    def before_request(self, doing: str) -> None:
        now = self._clock()
        turn = self.store.take_turn(self.connection_id, self.per_second, now, MAX_TURN_WAIT)
        if turn.paused is not None:
            raise self._paused(doing, turn.paused)
        if turn.delay is None:
            wait = max(turn.earliest - now, 0.0)
            raise ProviderRateLimited(
                f"{self.label} {doing}: the requests of every worker to connection "
                f"{self.connection_id} keep to {self.per_second:g}/s, and none is free within "
                f"{MAX_TURN_WAIT:g} s (next in {wait:.1f} s)",
                timedelta(seconds=wait),
            )
        if turn.delay > 0:
            self._sleep(turn.delay)
            # Paused while it waited for its turn: it does not go either.
            found = self.store.gate(self.connection_id)
            if found is not None and found.paused:
                raise self._paused(doing, found)

    def _paused(self, doing: str, gate: GateRow) -> ProviderPaused:
        since = gate.paused_since
        when = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""
        return ProviderPaused(
            f"{self.label} {doing}: connection {self.connection_id} is paused{when}: "
            f"{gate.pause_reason or 'no reason given'}",
            self.connection_id,
        )

    def refused_for_rate(self, error: ExportError) -> None:
        if isinstance(error, ProviderRateLimited):
            wait = error.retry_after.total_seconds() if error.retry_after else 0.0
            self.store.slow_down(self.connection_id, wait, self._clock())


class ProcessGate:
    """A provider module built without the store: its documented rate, paced per process."""

    def __init__(self, label: str, pacer: RequestPacer | None) -> None:
        self.label = label
        self.pacer = pacer

    def before_request(self, doing: str) -> None:
        if self.pacer is not None and self.pacer.wait(MAX_TURN_WAIT) is None:
            raise ProviderRateLimited(
                f"{self.label} {doing}: this worker's requests to the account are paced under "
                f"its rate limit and none is free within {MAX_TURN_WAIT:g} s",
                timedelta(seconds=MAX_TURN_WAIT),
            )

    def refused_for_rate(self, error: ExportError) -> None:
        pass


def gate_for(
    gates: GateFactory | None,
    connection_id: str,
    label: str,
    per_second: float | None,
    account: Hashable,
) -> RequestGate:
    """The connection's gate from `gates` (workers: the store), else a per-process pacer of the
    account at `per_second` (None: no pacing)."""
    if gates is not None:
        return gates(connection_id, label, per_second)
    return ProcessGate(label, pacer_for(account, per_second) if per_second else None)


def connection_rate(configured: float | None, documented: float | None) -> float | None:
    """Requests per second a connection keeps to: its `requests_per_second` setting, else
    PACED_SHARE of the provider's documented rate (None: the provider documents none)."""
    if configured is not None:
        return configured
    return documented * PACED_SHARE if documented else None


def store_gates(store: GateStore) -> GateFactory:
    """Gates kept in `store`: what a worker hands every provider it builds."""

    def gate(connection_id: str, label: str, per_second: float | None) -> RequestGate:
        return ConnectionGate(store, connection_id, label, per_second)

    return gate
