"""Pausing a provider connection: `billbridge provider pause|resume|status` end to end.

Real dev server, real worker, the Stripe and BILL emulators. While Stripe is paused no request
reaches it from any export, running or new; the exports hold visibly (ExportStatus "paused",
ConnectionId, the reason in `progress`) while BILL's go on; on resume every held export is
exported once, woken oldest first. The pause is in the store, so a new worker keeps it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from test_billcom import CONNECTION as BILL
from test_billcom import Books, seeded
from test_metering_end_to_end import ACCOUNT, LICENSE, aws  # noqa: F401 (a fixture)

from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connection_control import workflow_id
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import MeteringStatus
from billbridge.emulators.aws_marketplace import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    AwsMarketplaceEmulator,
)
from billbridge.emulators.billcom import BillcomEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.commands.provider import connection_status
from billbridge.starter.door import export_result, start_export, submit_invoice, upsert_customers
from billbridge.starter.metering_door import start_metering
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from billbridge.workflows.export_invoice import workflow_id as export_workflow_id
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow
from billbridge.workflows.search_attributes import CONNECTION_ID, EXPORT_STATUS
from conftest import CODEC_TEST_KEY, StripeAccount, billbridge, finalized_invoices, wait_for

LINES = [SampleLine("item_seats", "Seats", Decimal("3"), Decimal("49.99"))]


@pytest.fixture
def bill() -> Iterator[BillcomEmulator]:
    with BillcomEmulator() as emulator:
        yield emulator


@pytest.fixture
def settings(
    settings: Settings,
    bill: BillcomEmulator,
    aws: AwsMarketplaceEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals the AWS keys
    return replace(
        settings,
        api_bases={**settings.api_bases, BILL: bill.base_url},
        marketplace_endpoints={"aws": aws.base_url},
    )


@pytest.fixture
def books(bill: BillcomEmulator, store: Store) -> Books:
    books = seeded(bill)
    store.set_mappings(BILL, books.items)
    upsert_customers(
        store,
        [
            build_customer(
                "cust_pause_bill",
                payment_provider=BILL,
                payment_provider_id=books.customer_id,
                name="Acme Corp",
                email="billing@acme.test",
            )
        ],
    )
    return books


@pytest.fixture(autouse=True)
async def end_control_workflows(client: Client) -> Any:
    """The control workflows (`provider/<connection>`) run on the test's own task queue and the
    dev server is shared: end them, so the next test starts its own."""
    yield
    query = 'WorkflowType = "ProviderConnectionWorkflow" AND ExecutionStatus = "Running"'
    async for execution in client.list_workflows(query):
        await client.get_workflow_handle(execution.id).terminate("test ended")


async def cli(settings: Settings, *args: str) -> Any:
    """The CLI in its own process (off the event loop the in-process worker runs on)."""
    return await asyncio.to_thread(billbridge, settings, "provider", *args)


async def export_status(handle: WorkflowHandle[Any, Any]) -> tuple[str | None, str | None]:
    attributes = (await handle.describe()).typed_search_attributes
    return attributes.get(EXPORT_STATUS), attributes.get(CONNECTION_ID)


async def start(client: Client, store: Store, invoice_id: str, customer: str, queue: str) -> Any:
    invoice = submit_invoice(store, build_invoice(invoice_id, customer, "USD", LINES))
    return await start_export(client, invoice.id, queue)


async def test_a_paused_connection_holds_its_exports_and_resume_releases_them_in_order(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    books: Books,
    tmp_path: Path,
) -> None:
    paused = await cli(worker, "pause", "stripe_invoice", "--reason", "Stripe incident 42")
    assert paused.returncode == 0, paused.stderr
    assert "stripe_invoice: paused" in paused.stdout
    sent_before = len(emulator.requests())

    ids = [f"inv_pause_{n}" for n in range(3)]
    handles = [await start(client, store, i, "cust_1", worker.task_queue) for i in ids]
    # Another provider carries on meanwhile.
    other = await start(client, store, "inv_pause_bill", "cust_pause_bill", worker.task_queue)
    bill_result = await export_result(other, "inv_pause_bill")
    assert bill_result.status == ExportStatus.EXPORTED, bill_result.reason

    async def all_held() -> bool:
        found = [await export_status(h) for h in handles]
        return found == [("paused", "stripe_invoice")] * len(handles)

    await wait_for_async(all_held)
    for handle in handles:
        progress = await handle.query(ExportInvoiceWorkflow.progress)
        assert progress.step == ExportStatus.PAUSED
        assert "Stripe incident 42" in progress.detail
    # `billbridge export` says so rather than waiting through the pause (exit status 5).
    assert (await export_result(handles[0], ids[0])).status == ExportStatus.PAUSED
    path = tmp_path / "held.json"
    path.write_text(json.dumps(build_invoice("inv_pause_cli", "cust_1", "USD", LINES)))
    held_cli = await asyncio.to_thread(billbridge, worker, "export", str(path))
    assert held_cli.returncode == 5, held_cli.stderr
    assert json.loads(held_cli.stdout)["status"] == "paused"
    ids.append("inv_pause_cli")
    handles.append(
        client.get_workflow_handle(export_workflow_id("inv_pause_cli"), result_type=ExportResult)
    )
    assert len(emulator.requests()) == sent_before  # nothing reached Stripe

    async def listed() -> bool:
        shown = await cli(worker, "status", "stripe_invoice", "--json")
        row = json.loads(shown.stdout)["connections"][0]
        return bool(row["paused"] and row["held_exports"] == len(handles))

    await wait_for_async(listed)
    shown = json.loads((await cli(worker, "status", "--json")).stdout)["connections"]
    stripe_row = next(r for r in shown if r["connection"] == "stripe_invoice")
    assert stripe_row["reason"] == "Stripe incident 42" and stripe_row["paused_since"]
    assert not next(r for r in shown if r["connection"] == BILL)["paused"]

    resumed = await cli(worker, "resume", "stripe_invoice")
    assert resumed.returncode == 0, resumed.stderr
    results: list[ExportResult] = [await h.result() for h in handles]
    assert [r.status for r in results] == [ExportStatus.EXPORTED] * len(handles)
    for invoice_id in ids:
        assert len(finalized_invoices(emulator, invoice_id)) == 1
    # Woken oldest first: the release signalled them in the order they started.
    woken = [await signal_time(h, "provider_resumed") for h in handles]
    assert woken == sorted(woken)

    async def released() -> bool:  # the release lists again a few times before it is done
        return (await connection_status(client, "stripe_invoice")).applied

    await wait_for_async(released)
    control = await connection_status(client, "stripe_invoice")
    assert not control.paused and control.released == len(handles)


async def test_the_pause_outlives_the_worker_and_holds_exports_started_later(
    client: Client,
    store: Store,
    settings: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        async with build_worker(client, store, settings, executor=executor):
            paused = await cli(settings, "pause", "stripe_invoice", "--reason", "maintenance")
            assert paused.returncode == 0, paused.stderr
    # A new worker (a restart): the switch is in the store, and the control workflow in Temporal.
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        async with build_worker(client, store, settings, executor=executor):
            handle = await start(client, store, "inv_pause_later", "cust_1", settings.task_queue)

            async def held() -> bool:
                return await export_status(handle) == ("paused", "stripe_invoice")

            await wait_for_async(held)
            assert finalized_invoices(emulator, "inv_pause_later") == []
            control = await connection_status(client, "stripe_invoice")
            assert control.paused and control.reason == "maintenance"

            resumed = await cli(settings, "resume", "stripe_invoice")
            assert resumed.returncode == 0, resumed.stderr
            result = await handle.result()
            assert result.status == ExportStatus.EXPORTED
            assert len(finalized_invoices(emulator, "inv_pause_later")) == 1


METERED = "cust_metered_pause"


async def test_a_paused_marketplace_holds_metering_says_when_its_window_closes_and_loses_nothing(
    client: Client,
    store: Store,
    worker: Settings,
    aws: AwsMarketplaceEmulator,
    metered: None,
) -> None:
    # Two closed hours owed, the first 22 hours old: AWS takes it for two more hours only.
    first = hour_start(datetime.now(UTC)) - 22 * HOUR
    ingest_usage(store, [call(first, n) for n in range(4)] + [call(first + HOUR, 9)])
    paused = await cli(worker, "pause", "aws", "--reason", "AWS metering degraded")
    assert paused.returncode == 0, paused.stderr
    assert "must reach aws before" in paused.stdout

    started = await start_metering(
        client, store, METERED, "aws", worker.task_queue, grace_seconds=0, first_hour=first
    )
    handle = started.handle

    async def held() -> bool:
        return await export_status(handle) == ("paused", "aws")

    await wait_for_async(held)
    state = await handle.query(MarketplaceMeteringWorkflow.state)
    assert state.status == MeteringStatus.PAUSED
    closes = first + 24 * HOUR
    assert "AWS metering degraded" in state.reason
    assert f"before {closes:%Y-%m-%d %H:%M} UTC" in state.reason

    async def warned() -> bool:  # within WINDOW_WARNING of the window's end: it says so
        state = await handle.query(MarketplaceMeteringWorkflow.state)
        return "WARNING: the pause is about to outlast that window" in state.reason

    await wait_for_async(warned)
    assert [r for r in aws.requests() if r.operation == "BatchMeterUsage"] == []

    resumed = await cli(worker, "resume", "aws")
    assert resumed.returncode == 0, resumed.stderr
    await handle.signal(MarketplaceMeteringWorkflow.stop)
    final = await handle.result()
    assert final.status == MeteringStatus.STOPPED
    held_at_aws = {(r.dimension, r.hour): r.quantity for r in aws.accepted()}
    assert held_at_aws[("api_calls", first)] == 4
    assert held_at_aws[("api_calls", first + HOUR)] == 1
    assert sum(q for (d, _), q in held_at_aws.items() if d == "api_calls") == 5


def call(hour: datetime, n: int) -> dict[str, object]:
    return {
        "idempotency_key": f"pause-call-{hour:%H}-{n}",
        "customer_id": METERED,
        "event_name": "api_call",
        "timestamp": (hour + timedelta(minutes=10, seconds=n)).isoformat(),
        "properties": {},
    }


@pytest.fixture
def metered(store: Store, settings: Settings) -> None:
    keys = {"access_key_id": DEFAULT_ACCESS_KEY_ID, "secret_access_key": DEFAULT_SECRET_ACCESS_KEY}
    sealed = SecretBox.from_settings(settings).seal(json.dumps(keys), "aws")
    store.upsert_connection("aws", "aws", credentials_ref=sealed, settings={"region": "us-east-1"})
    set_dimension_mapping(store, "aws", {"event_name": "api_call", "dimension": "api_calls"})
    link_marketplace(
        store,
        {
            "customer_id": METERED,
            "marketplace": "aws",
            "connection_id": "aws",
            "account": {"customer_aws_account_id": ACCOUNT, "license_arn": LICENSE},
        },
    )


async def test_pause_names_what_is_wrong_with_its_arguments(settings: Settings) -> None:
    unknown = await cli(settings, "pause", "no_such_connection", "--reason", "x")
    assert unknown.returncode == 2 and "connection: 'no_such_connection'" in unknown.stderr
    no_reason = await cli(settings, "pause", "stripe_invoice")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr


async def wait_for_async(predicate: Any, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def signal_time(handle: WorkflowHandle[Any, Any], name: str) -> float:
    async for event in handle.fetch_history_events():
        if (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and event.workflow_execution_signaled_event_attributes.signal_name == name
        ):
            return event.event_time.ToMicroseconds() / 1e6
    raise AssertionError(f"{handle.id} got no {name} signal")


__all__ = ["wait_for", "workflow_id"]
