"""The activities behind a connection's pause switch (workflows/provider_connection.py).

`set_connection_paused` writes the switch every provider request reads (the store's gate);
`release_held_workflows` wakes, oldest first and at a steady pace, the workflows held while the
connection was paused; `connection_paused` is what a held workflow asks when no wake-up came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecution

from billbridge.activities.store import Store
from billbridge.core import activity_names as names
from billbridge.core.connection_control import (
    ConnectionRef,
    PauseApplied,
    PauseChange,
    ReleaseHeld,
    ReleaseResult,
)
from billbridge.core.messages import ExportStatus
from billbridge.workflows.search_attributes import CONNECTION_ID, EXPORT_STATUS

# Held workflows woken per second on resume, unless the connection's requests_per_second is
# higher: each needs at least one request, so waking them faster than the connection's rate
# only lines them up at its gate; slower, the backlog would drain slower than the rate allows.
RELEASE_PER_SECOND = 10.0
# Visibility is eventually consistent: a workflow that held a moment before the resume may be
# listed only a little later. The release lists again this many times, this far apart; anything
# it still misses checks again by itself (the held workflows' own timers).
RELEASE_PASSES = 3
RELEASE_PASS_GAP = 2.0
PROVIDER_RESUMED = "provider_resumed"


def held_query(connection_id: str) -> str:
    """The visibility query of the running workflows held for `connection_id`."""
    quoted = connection_id.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'{CONNECTION_ID.name} = "{quoted}" AND {EXPORT_STATUS.name} = "{ExportStatus.PAUSED}" '
        'AND ExecutionStatus = "Running"'
    )


class ConnectionControlActivities:
    def __init__(
        self, store: Store, client: Client | None, *, sleep: Callable[[float], Any] = asyncio.sleep
    ) -> None:
        self.store = store
        self.client = client
        self._sleep = sleep

    def activities(self) -> list[Callable[..., Any]]:
        return [self.set_connection_paused, self.connection_paused, self.release_held_workflows]

    @activity.defn(name=names.SET_CONNECTION_PAUSED)
    def set_connection_paused(self, change: PauseChange) -> PauseApplied:
        row = self.store.set_paused(change.connection_id, change.paused, change.reason, change.at)
        return PauseApplied(paused=row.paused, paused_since=row.paused_since)

    @activity.defn(name=names.CONNECTION_PAUSED)
    def connection_paused(self, ref: ConnectionRef) -> bool:
        return self._paused(ref.connection_id)

    @activity.defn(name=names.RELEASE_HELD_WORKFLOWS)
    async def release_held_workflows(self, request: ReleaseHeld) -> ReleaseResult:
        """Signal `provider_resumed` to every workflow held for the connection, oldest first."""
        if self.client is None:
            raise RuntimeError("the release needs the worker's Temporal client")
        pace = 1.0 / self._release_rate(request.connection_id)
        woken: set[tuple[str, str | None]] = set()
        for number in range(RELEASE_PASSES):
            if number:
                await self._sleep(RELEASE_PASS_GAP)
            held = [
                execution
                async for execution in self.client.list_workflows(held_query(request.connection_id))
                if (execution.id, execution.run_id) not in woken
            ]
            held.sort(key=_started)
            for execution in held:
                if self._paused(request.connection_id):
                    return ReleaseResult(released=len(woken))  # paused again: they stay held
                handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
                try:
                    await handle.signal(PROVIDER_RESUMED)
                except Exception as err:  # finished meanwhile: nothing to wake
                    activity.logger.info("not woken: %s (%s)", execution.id, err)
                woken.add((execution.id, execution.run_id))
                activity.heartbeat(len(woken))
                await self._sleep(pace)
        return ReleaseResult(released=len(woken))

    def _paused(self, connection_id: str) -> bool:
        gate = self.store.gate(connection_id)
        return gate is not None and gate.paused

    def _release_rate(self, connection_id: str) -> float:
        row = self.store.get_connection(connection_id)
        configured = (row.settings if row is not None else {}).get("requests_per_second")
        try:
            return max(RELEASE_PER_SECOND, float(configured or 0))
        except (TypeError, ValueError):
            return RELEASE_PER_SECOND


def _started(execution: WorkflowExecution) -> Any:
    return execution.start_time
