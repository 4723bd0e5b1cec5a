"""ProviderConnectionWorkflow: one connection's pause switch, as operators see and flip it.

One per connection, id `provider/<connection id>` (the one a user looks for in the Temporal
UI), started by the first `pause` (signal-with-start: `billbridge provider pause`, or the
billing system's own client). Signals: `pause` (with a reason) and `resume`; query: `status`.

The switch itself lives in the store (activities/store/gates.py), where every worker's
provider requests read it: this workflow writes it through an activity, so a pause outlives
worker and server restarts twice over (this workflow's history, the store's row). Workflows
whose request met the paused gate hold (ExportStatus "paused", ConnectionId = the connection);
on resume the release activity wakes them oldest first, at a steady pace, and each goes on
within the connection's shared rate. A held workflow that a wake-up missed checks again by
itself (see the export and metering workflows), so nothing stays held after a resume.

For a marketplace connection the pause says, before the marketplace's window closes on the
oldest hour it holds, that it is about to outlast it (`status().warning`, a warning in the
worker's log).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from billbridge.core import activity_names as names
    from billbridge.core.connection_control import (
        WINDOW_WARNING,
        ConnectionControlInput,
        ConnectionControlState,
        PauseApplied,
        PauseChange,
        PauseRequest,
        ReleaseHeld,
        ReleaseResult,
        window_outlook,
        window_warning,
    )

# Store writes and the release retry until they succeed (a store outage must not lose a pause).
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@workflow.defn
class ProviderConnectionWorkflow:
    def __init__(self) -> None:
        self._state = ConnectionControlState(connection_id="", provider="")
        self._wanted: tuple[bool, str] = (False, "")

    @workflow.query
    def status(self) -> ConnectionControlState:
        return self._state

    @workflow.signal
    def pause(self, request: PauseRequest) -> None:
        """Hold every request to this connection, from every workflow, until `resume`."""
        self._wanted = (True, request.reason or "paused")
        self._state.applied = False

    @workflow.signal
    def resume(self) -> None:
        self._wanted = (False, "")
        self._state.applied = False

    @workflow.run
    async def run(self, params: ConnectionControlInput) -> ConnectionControlState:
        self._state = ConnectionControlState(
            connection_id=params.connection_id,
            provider=params.provider,
            paused=params.paused,
            reason=params.pause_reason,
            paused_since=params.paused_since,
            applied=self._state.applied,
        )
        if self._state.applied:  # no signal yet (continue-as-new): carry the carried state
            self._wanted = (params.paused, params.pause_reason)
        while True:
            if (self._state.paused, self._state.reason) != self._wanted:
                await self._apply(*self._wanted)
                continue
            self._state.applied = True
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if (self._state.paused, self._state.reason) != self._wanted:
                    continue  # a signal came meanwhile: apply it first
                workflow.continue_as_new(
                    params.model_copy(
                        update={
                            "paused": self._state.paused,
                            "pause_reason": self._state.reason,
                            "paused_since": self._state.paused_since,
                        }
                    )
                )
            await self._wait_for_change()

    async def _apply(self, paused: bool, reason: str) -> None:
        was_paused = self._state.paused
        applied: PauseApplied = await workflow.execute_activity(
            names.SET_CONNECTION_PAUSED,
            PauseChange(
                connection_id=self._state.connection_id,
                paused=paused,
                reason=reason,
                at=workflow.now(),
            ),
            result_type=PauseApplied,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        self._state.paused, self._state.reason = paused, reason
        self._state.paused_since = applied.paused_since
        self._state.warning = ""
        self._state.window_closes = None
        if paused:
            since = applied.paused_since or workflow.now()
            self._state.window_closes = window_outlook(self._state.provider, since)
            workflow.logger.info("connection %s paused: %s", self._state.connection_id, reason)
            return
        self._state.resumed_at = workflow.now()
        if was_paused:
            workflow.logger.info("connection %s resumed", self._state.connection_id)
            released: ReleaseResult = await workflow.execute_activity(
                names.RELEASE_HELD_WORKFLOWS,
                ReleaseHeld(connection_id=self._state.connection_id),
                result_type=ReleaseResult,
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=_RETRY,
            )
            self._state.released = released.released

    async def _wait_for_change(self) -> None:
        """Until a signal changes what is wanted; while a marketplace connection is paused,
        wake when its window is about to close on the oldest held hour, and say so."""
        timeout: timedelta | None = None
        closes = self._state.window_closes
        if self._state.paused and closes is not None and not self._state.warning:
            timeout = max(closes - WINDOW_WARNING - workflow.now(), timedelta(seconds=1))
        try:
            await workflow.wait_condition(
                lambda: (self._state.paused, self._state.reason) != self._wanted, timeout=timeout
            )
        except TimeoutError:
            since = self._state.paused_since or workflow.now()
            self._state.warning = window_warning(self._state.provider, since, workflow.now())
            if self._state.warning:
                workflow.logger.warning(
                    "connection %s: %s", self._state.connection_id, self._state.warning
                )
