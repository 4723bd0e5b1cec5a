"""MarketplaceMeteringWorkflow: one customer's usage reported to its marketplace, hour by hour.

Long-running, one per customer and marketplace (id `marketplace-metering/<customer id>`). After
each hour closes, plus a grace period for late events, it has the report activity aggregate and
report that hour (and any hours missed while workers or the marketplace were down, oldest
first). The activity writes the exact request to the ledger before sending and resends exactly
that on a retry, so an hour is never reported twice with different quantities; the workflow
only carries the next hour to report.

Signals: `pause` (with a reason) and `resume` (this customer's metering alone);
`provider_resumed` (the connection it is held for was resumed: a paused connection holds every
customer's metering, `billbridge provider pause`); `retry` after a person fixed what it waits for;
`stop` reports every closed hour and ends; `usage_ingested` (sent after an ingest) gives it the
running totals of the hours not reported yet. Query: `state` (status, next hour, last report,
those running totals). Continue-as-new before the history
grows large, carrying its state, once every signal handler has finished.

Search attributes: started through the door (starter/metering_door.py), a run carries
`CustomerId` and `Provider` (the marketplace) and keeps `ExportStatus` at its status (metering,
paused, needs_attention, stopped), so `ExportStatus = "needs_attention"` lists the customers whose
metering waits for a person, without a worker. A run started without them (the time-skipping
test server, which registers no custom attribute and fails the workflow task on an upsert) does
not upsert any.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from billbridge.core import activity_names as names
    from billbridge.core.connection_control import WINDOW_WARNING
    from billbridge.core.errors import NEEDS_ATTENTION, NON_RETRYABLE, ErrorContext, ProviderPaused
    from billbridge.core.metering import HOUR, due_hours, hour_start, window_closes
    from billbridge.core.metering_messages import (
        MeteringInput,
        MeteringState,
        MeteringStatus,
        ReportHoursInput,
        ReportHoursResult,
        UsageTotals,
    )
    from billbridge.core.timeouts import PUSH_HEARTBEAT_TIMEOUT
    from billbridge.workflows.holds import (
        HOLD_RECHECK_FIRST,
        HOLD_RECHECK_MAX,
        connection_paused,
    )
    from billbridge.workflows.search_attributes import (
        CONNECTION_ID,
        CUSTOMER_ID,
        EXPORT_STATUS,
        PROVIDER,
    )

# Hours one report activity takes at most: a catch-up after an outage goes a day at a time.
HOURS_PER_REPORT = 24


def workflow_id(customer_id: str) -> str:
    return f"marketplace-metering/{customer_id}"


@workflow.defn
class MarketplaceMeteringWorkflow:
    def __init__(self) -> None:
        self._state = MeteringState(customer_id="", marketplace="", status=MeteringStatus.METERING)
        self._paused = False
        self._pause_reason = ""
        self._retry_requested = False
        self._stop_requested = False
        self._published: MeteringStatus | None = None
        self._resumed = False

    @workflow.query
    def state(self) -> MeteringState:
        return self._state

    @workflow.signal
    def pause(self, reason: str) -> None:
        """Hold every report until `resume`; hours stay owed (the marketplace's window still
        applies: `state` shows the oldest hour waiting)."""
        self._paused, self._pause_reason = True, reason or "paused"

    @workflow.signal
    def resume(self) -> None:
        self._paused, self._pause_reason = False, ""

    @workflow.signal
    def provider_resumed(self) -> None:
        """Sent when the connection this metering is held for (a paused marketplace
        connection, `billbridge provider pause`) was resumed."""
        self._resumed = True

    @workflow.signal
    def retry(self) -> None:
        """Sent when what the metering waits for was fixed (a subscription, a mapping)."""
        self._retry_requested = True

    @workflow.signal
    def usage_ingested(self, totals: UsageTotals) -> None:
        """Running totals of hours not reported yet, sent after an ingest (informational: the
        report activity reads the store, not these)."""
        for hour, dimensions in totals.hours.items():
            if self._state.next_hour is None or hour >= self._state.next_hour:
                self._state.open_hours[hour] = dict(dimensions)

    @workflow.signal
    def stop(self) -> None:
        """Report every closed hour, then end."""
        self._stop_requested = True

    @workflow.run
    async def run(self, params: MeteringInput) -> MeteringState:
        self._paused, self._pause_reason = params.paused, params.pause_reason
        next_hour = params.next_hour or hour_start(workflow.now())
        self._state = MeteringState(
            customer_id=params.customer_id,
            marketplace=params.marketplace,
            status=MeteringStatus.METERING,
            next_hour=next_hour,
            last_report=params.last_report,
            open_hours=dict(params.open_hours),
        )
        grace = timedelta(seconds=params.grace_seconds)
        while True:
            self._show()
            if self._stop_requested:
                # Every closed hour, without waiting out the grace period: nothing comes after.
                while (due := due_hours(next_hour, workflow.now(), timedelta(0))) and (
                    self._state.status != MeteringStatus.NEEDS_ATTENTION
                ):
                    next_hour = await self._report(params, due[:HOURS_PER_REPORT], next_hour)
                self._state.status = MeteringStatus.STOPPED
                self._publish()
                return self._state
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    params.model_copy(
                        update={
                            "next_hour": next_hour,
                            "paused": self._paused,
                            "pause_reason": self._pause_reason,
                            "last_report": self._state.last_report,
                            "open_hours": self._state.open_hours,
                        }
                    )
                )
            due = [] if self._paused else due_hours(next_hour, workflow.now(), grace)
            if due:
                next_hour = await self._report(params, due[:HOURS_PER_REPORT], next_hour)
                continue
            # Asleep until the next hour is due (paused: until resumed), or a signal changes
            # what is due.
            wake = next_hour + HOUR + grace - workflow.now()
            await self._sleep(None if self._paused else max(wake, timedelta(seconds=1)))

    async def _report(
        self, params: MeteringInput, hours: list[datetime], next_hour: datetime
    ) -> datetime:
        """Report `hours`; on a problem a person must fix, wait for `retry` and try again."""
        while True:
            self._retry_requested = False
            try:
                result: ReportHoursResult = await workflow.execute_activity(
                    names.REPORT_METERING_HOURS,
                    ReportHoursInput(
                        customer_id=params.customer_id,
                        marketplace=params.marketplace,
                        hours=hours,
                    ),
                    result_type=ReportHoursResult,
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=PUSH_HEARTBEAT_TIMEOUT,
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=1),
                        backoff_coefficient=2.0,
                        maximum_interval=timedelta(minutes=5),
                        non_retryable_error_types=NON_RETRYABLE,
                    ),
                )
            except ActivityError as err:
                cause = err.cause
                kind = getattr(cause, "type", None)
                if kind == ProviderPaused.__name__ and isinstance(cause, ApplicationError):
                    await self._hold(cause, hours[0])
                    continue
                if kind not in NEEDS_ATTENTION:
                    raise
                self._state.status = MeteringStatus.NEEDS_ATTENTION
                self._state.reason = f"{kind}: {getattr(cause, 'message', str(cause))}"
                self._show()
                await workflow.wait_condition(lambda: self._retry_requested or self._stop_requested)
                if self._stop_requested and not self._retry_requested:
                    return next_hour
                self._state.status, self._state.reason = MeteringStatus.METERING, ""
                self._publish()
                continue
            self._state.hours_reported += len(hours)
            self._state.last_report = result.last_report or self._state.last_report
            self._state.next_hour = result.next_hour
            self._state.open_hours = {
                hour: totals
                for hour, totals in self._state.open_hours.items()
                if hour >= result.next_hour
            }
            return result.next_hour

    async def _hold(self, cause: ApplicationError, oldest: datetime) -> None:
        """Hold while the connection is paused: status "paused" with the pause's reason and the
        moment the marketplace stops taking the oldest held hour; when the pause nears it, the
        state (and the worker's log) says so. Ends on `provider_resumed`, or when a check of
        its own finds the connection resumed (a missed wake-up). A `stop` meanwhile waits for
        the resume too: it reports every closed hour before it ends, and nothing is lost."""
        connection = ErrorContext.of(cause).connection_id
        marketplace = self._state.marketplace
        closes = window_closes(oldest, marketplace)
        reason = (
            f"{cause.message}; the oldest held hour ({oldest:%Y-%m-%d %H:%M} UTC) must reach "
            f"{marketplace} before {closes:%Y-%m-%d %H:%M} UTC"
        )
        self._state.status, self._state.reason = MeteringStatus.PAUSED, reason
        self._publish(connection_id=connection)
        recheck, warned = HOLD_RECHECK_FIRST, False
        while not self._resumed:
            timeout = recheck
            if not warned:
                timeout = min(timeout, max(closes - WINDOW_WARNING - workflow.now(), timedelta(0)))
            try:
                await workflow.wait_condition(
                    lambda: self._resumed, timeout=max(timeout, timedelta(seconds=1))
                )
            except TimeoutError:
                if not warned and workflow.now() >= closes - WINDOW_WARNING:
                    warned = True
                    self._state.reason = (
                        f"{reason}. WARNING: the pause is about to outlast that window; once it "
                        "has, that hour's usage goes out with the first hour still open"
                    )
                    workflow.logger.warning("metering %s: %s", self._state.customer_id, reason)
                    continue
                if not await connection_paused(connection):
                    break
                recheck = min(recheck * 2, HOLD_RECHECK_MAX)
        self._resumed = False
        self._state.status, self._state.reason = MeteringStatus.METERING, ""
        self._publish(connection_id="")

    async def _sleep(self, duration: timedelta | None) -> None:
        """Until `duration` passes, or `stop`, `pause` or `resume` changes what is due."""
        paused = self._paused
        try:
            await workflow.wait_condition(
                lambda: self._stop_requested or self._paused != paused, timeout=duration
            )
        except TimeoutError:
            pass

    def _show(self) -> None:
        if self._state.status not in (MeteringStatus.NEEDS_ATTENTION, MeteringStatus.STOPPED):
            self._state.status = MeteringStatus.PAUSED if self._paused else MeteringStatus.METERING
            self._state.reason = self._pause_reason if self._paused else ""
        self._publish()

    def _publish(self, *, connection_id: str | None = None) -> None:
        """Upsert the status when it changed (one history event per change), on runs started
        with our search attributes (so registered on that server); `connection_id`: the
        connection it is held for ("": no longer held), which resume finds it by."""
        if self._state.status == self._published and connection_id is None:
            return
        # Set by the starter, so registered on this server; continue-as-new carries them (sdk-core
        # ContinueAsNewWorkflowExecution.search_attributes: "If unset, re-uses the current
        # workflow's search attributes", https://github.com/temporalio/sdk-core/blob/master/
        # crates/protos/protos/local/temporal/sdk/core/workflow_commands/workflow_commands.proto).
        if workflow.info().typed_search_attributes.get(CUSTOMER_ID) is None:
            return
        updates = [EXPORT_STATUS.value_set(self._state.status.value)]
        if connection_id:
            updates.append(CONNECTION_ID.value_set(connection_id))
        elif connection_id is not None:
            updates.append(CONNECTION_ID.value_unset())
        if self._published is None:  # first upsert of this run: who and where, too
            updates += [
                CUSTOMER_ID.value_set(self._state.customer_id),
                PROVIDER.value_set(self._state.marketplace),
            ]
        workflow.upsert_search_attributes(updates)
        self._published = self._state.status
