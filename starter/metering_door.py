"""The door of marketplace metering: start, stop, pause, resume, retry and read a customer's
MarketplaceMeteringWorkflow. The Python API `billbridge marketplace` calls.

One workflow per customer (`marketplace-metering/<customer id>`, the issue's id): a customer
reports to one marketplace at a time. A second link of the same customer to another marketplace
is refused at the door (starter/usage_door.link_marketplace and `billbridge marketplace link`;
the message names the `marketplace` field), and a start for a marketplace other than the
running workflow's is refused (MeteringConflict).

Starting is idempotent: a running workflow is reused; a stopped one starts again from the
ledger (the oldest hour with a record not delivered yet, else the hour after the newest record),
so no hour is reported twice: hours the ledger holds as delivered are never sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from billbridge.activities.metering import ingested_to_date, metered_dimensions
from billbridge.activities.store import Store
from billbridge.core.metering import (
    HOUR,
    counts_as_reported,
    hour_start,
    oldest_open_hour,
    still_open,
)
from billbridge.core.metering_messages import (
    DEFAULT_GRACE_SECONDS,
    MeteringInput,
    MeteringState,
    MeteringStatus,
    UsageTotals,
)
from billbridge.core.usage import UsageEvent
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id
from billbridge.workflows.search_attributes import CUSTOMER_ID, EXPORT_STATUS, PROVIDER

# How long a state query waits for a worker to answer before the status falls back to what
# the server alone knows (the ExportStatus search attribute).
QUERY_TIMEOUT = timedelta(seconds=10)
# How long `stop` waits for the final report by default (every closed hour, then the end).
STOP_TIMEOUT = timedelta(minutes=2)

MeteringHandle = WorkflowHandle[MarketplaceMeteringWorkflow, MeteringState]


class MeteringError(RuntimeError):
    """A metering command that cannot be carried out; the message says what to do."""


class MeteringConflict(MeteringError):
    """The customer's workflow meters another marketplace."""


class MeteringNotRunning(MeteringError):
    """No running metering workflow for the customer (never started, or ended)."""


class MeteringStopTimeout(MeteringError):
    """`stop` was signalled, but the final report did not finish in time."""


@dataclass(frozen=True)
class MeteringStart:
    handle: MeteringHandle
    started: bool
    """False: the running workflow was reused."""
    next_hour: datetime | None
    """The first hour the new run reports (None when reused)."""


def resume_hour(
    store: Store,
    customer_id: str,
    marketplace: str,
    now: datetime,
    first_hour: datetime | None = None,
) -> datetime:
    """Where a new run starts: the oldest hour with a record not delivered whose window is
    still open (a stop while it needed attention: the activity resends it as saved), else the
    hour after the newest record, else `first_hour` (default: the current hour); never before
    the oldest hour the marketplace still takes (the usage of hours it no longer takes is not
    lost: the cumulative rule puts it into the first hour reported)."""
    records = [r for r in store.ledger(customer_id) if r.marketplace == marketplace]
    undelivered = [
        r.hour_start
        for r in records
        if not r.delivered and still_open(r.hour_start, now, marketplace)
    ]
    if undelivered:
        return min(undelivered)
    if records:
        after = max(r.hour_start for r in records) + HOUR
    else:
        after = hour_start(first_hour or now)
    return max(after, oldest_open_hour(now, marketplace))


def _handle(client: Client, customer_id: str) -> MeteringHandle:
    return client.get_workflow_handle_for(MarketplaceMeteringWorkflow.run, workflow_id(customer_id))


async def _running_marketplace(handle: MeteringHandle) -> str | None:
    """The running workflow's marketplace ("" if it carries none); None when not running."""
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None
    return description.typed_search_attributes.get(PROVIDER) or ""


async def start_metering(
    client: Client,
    store: Store,
    customer_id: str,
    marketplace: str,
    task_queue: str,
    *,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    first_hour: datetime | None = None,
) -> MeteringStart:
    """Start (or find) the customer's metering to `marketplace`.

    The customer must be linked to it (the report activity reads the link). A running workflow
    is reused (raises MeteringConflict when it meters another marketplace); a stopped one
    starts again from the ledger (resume_hour). `first_hour`: where a customer with nothing in
    the ledger starts (usage ingested before the link; default: the current hour).
    """
    if store.get_marketplace_link(customer_id, marketplace) is None:
        raise MeteringError(
            f"customer {customer_id} has no {marketplace} link: "
            f"`billbridge marketplace link {customer_id} {marketplace} ...` first"
        )
    handle = _handle(client, customer_id)
    running = await _running_marketplace(handle)
    if running is not None:
        if running and running != marketplace:
            raise MeteringConflict(
                f"{workflow_id(customer_id)} meters {running}, not {marketplace}: "
                f"`billbridge marketplace unlink {customer_id} {running}` stops it first"
            )
        return MeteringStart(handle, started=False, next_hour=None)
    next_hour = resume_hour(store, customer_id, marketplace, datetime.now(UTC), first_hour)
    started = await client.start_workflow(
        MarketplaceMeteringWorkflow.run,
        MeteringInput(
            customer_id=customer_id,
            marketplace=marketplace,
            grace_seconds=grace_seconds,
            next_hour=next_hour,
        ),
        id=workflow_id(customer_id),
        task_queue=task_queue,
        # A stopped (or failed) run may start again: it continues from the ledger. Two starts
        # at once: the second gets the first's run. (Reuse and conflict policies:
        # https://docs.temporal.io/workflow-execution/workflowid-runid#workflow-id-conflict-policy)
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(CUSTOMER_ID, customer_id),
                SearchAttributePair(PROVIDER, marketplace),
                SearchAttributePair(EXPORT_STATUS, MeteringStatus.METERING.value),
            ]
        ),
    )
    return MeteringStart(started, started=True, next_hour=next_hour)


async def _signal(client: Client, customer_id: str, signal: Any, *args: Any) -> None:
    try:
        await _handle(client, customer_id).signal(signal, *args)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise MeteringNotRunning(
            f"no metering running for {customer_id}: `billbridge marketplace start {customer_id}`"
        ) from err


async def pause_metering(client: Client, customer_id: str, reason: str) -> None:
    """Hold every report until resume_metering; the hours stay owed (the marketplace's window
    still applies)."""
    await _signal(client, customer_id, MarketplaceMeteringWorkflow.pause, reason)


async def resume_metering(client: Client, customer_id: str) -> None:
    await _signal(client, customer_id, MarketplaceMeteringWorkflow.resume)


async def retry_metering(client: Client, customer_id: str) -> None:
    """After a fix (a subscription, a mapping): report the waiting hours again, as saved."""
    await _signal(client, customer_id, MarketplaceMeteringWorkflow.retry)


async def stop_metering(
    client: Client,
    customer_id: str,
    *,
    wait: timedelta | None = STOP_TIMEOUT,
    marketplace: str | None = None,
) -> MeteringState | None:
    """Report every closed hour, then end. Waits up to `wait` for the final state (None: do
    not wait, returns None). Raises MeteringNotRunning when nothing runs (for `marketplace`,
    when given: unlinking another marketplace leaves the customer's metering alone),
    MeteringStopTimeout when the final report takes longer (no worker running, or the
    marketplace down)."""
    if marketplace is not None:
        running = await _running_marketplace(_handle(client, customer_id))
        if running is None or (running and running != marketplace):
            raise MeteringNotRunning(f"no {marketplace} metering running for {customer_id}")
    await _signal(client, customer_id, MarketplaceMeteringWorkflow.stop)
    if wait is None:
        return None
    try:
        return await asyncio.wait_for(_handle(client, customer_id).result(), wait.total_seconds())
    except TimeoutError as err:
        raise MeteringStopTimeout(
            f"{workflow_id(customer_id)} was asked to stop but has not finished its final "
            f"report within {int(wait.total_seconds())} s (is a worker running? "
            f"`billbridge marketplace status {customer_id}` says what it waits for)"
        ) from err


async def metering_state(
    client: Client, customer_id: str, *, query_wait: timedelta = QUERY_TIMEOUT
) -> MeteringState | None:
    """The customer's metering: the running workflow's `state` query, the final state of an
    ended one; None when never started. Without a worker to answer, what the server knows:
    the status search attribute, with the reason saying so."""
    handle = _handle(client, customer_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    attributes = description.typed_search_attributes
    marketplace = attributes.get(PROVIDER) or ""
    if description.status == WorkflowExecutionStatus.RUNNING:
        try:
            return await asyncio.wait_for(
                handle.query(MarketplaceMeteringWorkflow.state), query_wait.total_seconds()
            )
        except (TimeoutError, RPCError, WorkflowQueryFailedError):
            known = attributes.get(EXPORT_STATUS) or MeteringStatus.METERING.value
            return MeteringState(
                customer_id=customer_id,
                marketplace=marketplace,
                status=MeteringStatus(known),
                reason="no worker answered the state query; status as last recorded",
            )
    if description.status == WorkflowExecutionStatus.COMPLETED:
        try:
            return await handle.result()
        except WorkflowFailureError:
            pass
    ended = description.status.name.lower() if description.status else "ended"
    return MeteringState(
        customer_id=customer_id,
        marketplace=marketplace,
        status=MeteringStatus.STOPPED,
        reason=f"the workflow {ended}",
    )


# Visibility: which customers' metering waits for a person (no worker needed to answer).
WAITING_QUERY = (
    'WorkflowType = "MarketplaceMeteringWorkflow" AND '
    f'{EXPORT_STATUS.name} = "{MeteringStatus.NEEDS_ATTENTION.value}" AND '
    'ExecutionStatus = "Running"'
)


async def waiting_metering(client: Client) -> list[str]:
    """The customers whose metering needs attention (visibility lags a moment behind)."""
    found = []
    async for execution in client.list_workflows(WAITING_QUERY):
        customer_id = execution.typed_search_attributes.get(CUSTOMER_ID)
        if customer_id:
            found.append(customer_id)
    return sorted(found)


async def retry_waiting_metering(client: Client) -> int:
    """Signal `retry` to every metering that needs attention (after a fix the store cannot
    tell apart, as `billbridge attention retry` does for exports); how many were signalled."""
    count = 0
    for customer_id in await waiting_metering(client):
        try:
            await retry_metering(client, customer_id)
        except MeteringNotRunning:  # ended since it was listed
            continue
        count += 1
    return count


async def notify_usage(client: Client, store: Store, events: Sequence[UsageEvent]) -> int:
    """After an ingest: tell each linked customer's metering run the running totals of the
    hours the events fall in (absolute totals from the store, so duplicates and repeats change
    nothing), for its `state` query. Informational: reports read the store. Returns how many
    runs were told; customers without a running workflow are skipped."""
    links = {link.customer_id: link for link in store.marketplace_links()}
    if not links:
        return 0
    by_external: dict[str, str] = {}
    for customer_id in links:
        customer = store.get_customer(customer_id)
        if customer is not None and customer.external_customer_id:
            by_external[customer.external_customer_id] = customer_id
    touched: dict[str, set[datetime]] = {}
    for event in events:
        owner = event.customer_id or by_external.get(event.external_customer_id or "")
        if owner is not None and owner in links:
            touched.setdefault(owner, set()).add(hour_start(event.timestamp))
    told = 0
    for customer_id, hours in sorted(touched.items()):
        link = links[customer_id]
        if link.mode != "dimensions":
            continue  # billing-amount snapshots have no per-hour running total
        mappings = store.dimension_mappings(link.connection_id)
        hourly = store.hourly_usage_totals(customer_id, min(hours), max(hours) + HOUR, mappings)
        totals = UsageTotals(
            hours={
                hour: {dimension: str(q) for dimension, q in hourly[hour].totals.items()}
                for hour in sorted(hours)
                if hour in hourly
            }
        )
        handle = client.get_workflow_handle(workflow_id(customer_id))
        try:
            await handle.signal(MarketplaceMeteringWorkflow.usage_ingested, totals)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # not metering (yet, or any more)
        told += 1
    return told


@dataclass(frozen=True)
class ReconcileRow:
    """One customer dimension: what was ingested up to the end of the newest hour in the
    ledger, against what the ledger says the marketplace holds (delivered), what it keeps for
    a resend (held: saved, not delivered yet) and what is still owed (late usage and fractions
    that go out with the next hour). Never reported more than ingested: `owed` >= 0."""

    customer_id: str
    marketplace: str
    dimension: str
    through: datetime | None
    ingested: Decimal
    delivered: Decimal
    held: Decimal
    owed: Decimal

    @property
    def ok(self) -> bool:
        return self.owed >= 0 and self.held == 0


def reconcile_metering(store: Store, customer_id: str) -> list[ReconcileRow]:
    """The conservation audit of one linked customer (`billbridge marketplace reconcile`)."""
    link = next(iter(store.marketplace_links(customer_id=customer_id)), None)
    if link is None:
        raise MeteringError(f"customer {customer_id} has no marketplace link")
    records = store.ledger(customer_id)
    now = datetime.now(UTC)
    through = max((r.hour_start for r in records), default=None)
    end = through + HOUR if through is not None else None
    mappings = store.dimension_mappings(link.connection_id)
    dimensions = metered_dimensions(link, mappings)
    rows = []
    for dimension in dimensions:
        mine = [r for r in records if r.dimension == dimension]
        delivered = sum((r.quantity for r in mine if r.delivered), Decimal(0))
        # Refused records whose window closed hold nothing: their usage is owed again.
        held = sum(
            (r.quantity for r in mine if not r.delivered and counts_as_reported(r, now)),
            Decimal(0),
        )
        total = (
            ingested_to_date(store, link, mappings, dimension, end)
            if end is not None
            else Decimal(0)
        )
        rows.append(
            ReconcileRow(
                customer_id,
                link.marketplace,
                dimension,
                through,
                total,
                delivered,
                held,
                total - delivered - held,
            )
        )
    return rows
