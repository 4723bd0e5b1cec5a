"""Operating a customer's metering: `billbridge marketplace link|start|pause|resume|retry|
status|unlink` and the door under them (starter/metering_door.py), on the real dev server and
worker, with AWS Marketplace (the emulator, through boto3) out.

A link starts the customer's MarketplaceMeteringWorkflow; unlink stops it after its final report;
a start after a stop continues from the ledger and never reports an hour twice; a link made
while Temporal is down is kept, and the command says how to start the metering later.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer

from billbridge.activities.metering import MeteringActivities
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import MeteringState, MeteringStatus, ReportHoursInput
from billbridge.core.usage import MarketplaceLink
from billbridge.emulators.aws_marketplace import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    AwsMarketplaceEmulator,
)
from billbridge.starter import metering_door as door
from billbridge.starter.door import InvalidPayload
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id
from billbridge.workflows.search_attributes import CUSTOMER_ID, EXPORT_STATUS, PROVIDER
from conftest import CODEC_TEST_KEY, billbridge

PRODUCT = "prod-billbridge1"
ACCOUNT = "111122223333"
LICENSE = "arn:aws:license-manager::294406891311:license:l-0123456789abcdef"
LINK_FIELDS = (
    "--field",
    f"customer_aws_account_id={ACCOUNT}",
    "--field",
    f"license_arn={LICENSE}",
)


@pytest.fixture
def aws() -> Iterator[AwsMarketplaceEmulator]:
    with AwsMarketplaceEmulator(requests_per_second=None) as emulator:
        emulator.add_product(PRODUCT, ["api_calls"])
        emulator.subscribe(PRODUCT, customer_aws_account_id=ACCOUNT, license_arn=LICENSE)
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, aws: AwsMarketplaceEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals the AWS keys
    return replace(settings, marketplace_endpoints={"aws": aws.base_url})


@pytest.fixture
def connection(store: Store, settings: Settings) -> None:
    """An AWS connection (keys sealed) with one dimension: api_call events counted."""
    keys = {"access_key_id": DEFAULT_ACCESS_KEY_ID, "secret_access_key": DEFAULT_SECRET_ACCESS_KEY}
    sealed = SecretBox.from_settings(settings).seal(json.dumps(keys), "aws")
    store.upsert_connection("aws", "aws", credentials_ref=sealed, settings={"region": "us-east-1"})
    set_dimension_mapping(store, "aws", {"event_name": "api_call", "dimension": "api_calls"})


@pytest_asyncio.fixture
async def customer(client: Client) -> AsyncIterator[str]:
    """A customer id of this test only (workflow ids live on the session's dev server); its
    metering is ended afterwards whatever the test left."""
    customer_id = f"cust_{uuid.uuid4().hex[:10]}"
    yield customer_id
    handle = client.get_workflow_handle(workflow_id(customer_id))
    try:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")
    except Exception:  # never started
        pass


def link_payload(customer_id: str) -> dict[str, object]:
    return {
        "customer_id": customer_id,
        "marketplace": "aws",
        "connection_id": "aws",
        "account": {"customer_aws_account_id": ACCOUNT, "license_arn": LICENSE},
    }


def calls(customer_id: str, hour: datetime, count: int, tag: str) -> list[dict[str, object]]:
    return [
        {
            "idempotency_key": f"{tag}-{n}",
            "customer_id": customer_id,
            "event_name": "api_call",
            "timestamp": (hour + timedelta(minutes=5, seconds=n)).isoformat(),
            "properties": {},
        }
        for n in range(count)
    ]


async def cli(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread: the worker answering its queries runs on this test's loop."""
    return await asyncio.to_thread(billbridge, settings, *args, env=env)


def batch_calls(aws: AwsMarketplaceEmulator) -> int:
    return len([r for r in aws.requests() if r.operation == "BatchMeterUsage"])


async def state_becomes(
    client: Client, customer_id: str, status: MeteringStatus, within: float = 20
) -> MeteringState:
    """The workflow takes a signal a moment after it is sent."""
    seen: list[MeteringState | None] = [None]

    async def check() -> bool:
        seen[0] = await door.metering_state(client, customer_id)
        return seen[0] is not None and seen[0].status == status

    deadline = datetime.now(UTC) + timedelta(seconds=within)
    while not await check():
        if datetime.now(UTC) > deadline:
            raise AssertionError(f"{customer_id}: never {status}; last {seen[0]}")
        await asyncio.sleep(0.1)
    assert seen[0] is not None
    return seen[0]


async def wait_until(predicate: Callable[[], bool], within: float = 20) -> None:
    for _ in range(int(within * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def attributes_become(client: Client, customer_id: str, status: str) -> dict[str, str]:
    handle = client.get_workflow_handle(workflow_id(customer_id))
    for _ in range(100):
        found = (await handle.describe()).typed_search_attributes
        if found.get(EXPORT_STATUS) == status:
            return {key.name: str(value) for key, value in found}
        await asyncio.sleep(0.1)
    raise AssertionError(f"ExportStatus never {status}")


async def test_link_starts_metering_then_pause_resume_status_and_unlink_stops_it(
    client: Client,
    store: Store,
    worker: Settings,
    connection: None,
    customer: str,
) -> None:
    linked = await cli(
        worker, "marketplace", "link", customer, "aws", *LINK_FIELDS, "--grace-seconds", "0"
    )
    assert linked.returncode == 0, linked.stderr
    assert json.loads(linked.stdout)["customer_id"] == customer
    assert f"metering started ({workflow_id(customer)})" in linked.stderr
    state = await state_becomes(client, customer, MeteringStatus.METERING)
    # Nothing in the ledger yet: it meters from the hour it was linked in.
    assert state.marketplace == "aws" and state.next_hour == hour_start(datetime.now(UTC))
    shown = await attributes_become(client, customer, "metering")
    assert shown[CUSTOMER_ID.name] == customer and shown[PROVIDER.name] == "aws"

    # Linking again (a changed field, say) keeps the running workflow.
    again = await cli(worker, "marketplace", "link", customer, "aws", *LINK_FIELDS)
    assert again.returncode == 0 and "metering already running" in again.stderr

    paused = await cli(worker, "marketplace", "pause", customer, "--reason", "audit in progress")
    assert paused.returncode == 0, paused.stderr
    state = await state_becomes(client, customer, MeteringStatus.PAUSED)
    assert state.reason == "audit in progress"
    await attributes_become(client, customer, "paused")
    status = await cli(worker, "marketplace", "status", customer, "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert (row["customer_id"], row["marketplace"], row["status"], row["reason"]) == (
        customer,
        "aws",
        "paused",
        "audit in progress",
    )

    assert (await cli(worker, "marketplace", "resume", customer)).returncode == 0
    await state_becomes(client, customer, MeteringStatus.METERING)
    table = await cli(worker, "marketplace", "status")
    assert table.returncode == 0, table.stderr
    assert any(
        line.split()[:3] == [customer, "aws", "metering"] for line in table.stdout.splitlines()
    )

    unlinked = await cli(worker, "marketplace", "unlink", customer, "aws")
    assert unlinked.returncode == 0, unlinked.stderr
    assert "metering stopped" in unlinked.stdout and "link removed" in unlinked.stdout
    assert store.get_marketplace_link(customer, "aws") is None
    final = await door.metering_state(client, customer)
    assert final is not None and final.status == MeteringStatus.STOPPED
    await attributes_become(client, customer, "stopped")
    # The status upserts replay: the whole history (link, pause, resume, stop) is deterministic.
    history = await client.get_workflow_handle(workflow_id(customer)).fetch_history()
    await Replayer(
        workflows=[MarketplaceMeteringWorkflow], data_converter=client.data_converter
    ).replay_workflow(history)
    # Stopped: signals have nothing to reach.
    resumed = await cli(worker, "marketplace", "resume", customer)
    assert resumed.returncode == 1 and f"marketplace start {customer}" in resumed.stderr


async def test_stop_reports_closed_hours_and_a_new_start_continues_from_the_ledger(
    client: Client,
    store: Store,
    worker: Settings,
    aws: AwsMarketplaceEmulator,
    connection: None,
    customer: str,
) -> None:
    now = datetime.now(UTC)
    hours = [hour_start(now) - n * HOUR for n in (3, 2, 1)]
    for n, hour in enumerate(hours):
        ingest_usage(store, calls(customer, hour, n + 2, f"h{n}"))
    link_marketplace(store, link_payload(customer))
    # The oldest hour was reported before (the ledger says so): a start goes on after it.
    ActivityEnvironment().run(
        MeteringActivities(store, worker).report_metering_hours,
        ReportHoursInput(customer_id=customer, marketplace="aws", hours=hours[:1]),
    )
    assert batch_calls(aws) == 1

    begun = await door.start_metering(
        client, store, customer, "aws", worker.task_queue, grace_seconds=0
    )
    assert begun.started and begun.next_hour == hours[1]
    reused = await door.start_metering(client, store, customer, "aws", worker.task_queue)
    assert not reused.started
    # A second marketplace written to the store behind the door's back: its start and its
    # unlink leave the running aws metering alone.
    store.upsert_connection("azure", "azure")
    store.link_marketplace(
        MarketplaceLink.model_validate(
            {
                "customer_id": customer,
                "marketplace": "azure",
                "connection_id": "azure",
                "account": {"resource_id": "r1", "plan_id": "gold"},
            }
        )
    )
    with pytest.raises(door.MeteringConflict, match="meters aws, not azure"):
        await door.start_metering(client, store, customer, "azure", worker.task_queue)
    with pytest.raises(door.MeteringNotRunning):
        await door.stop_metering(client, customer, marketplace="azure")
    assert store.unlink_marketplace(customer, "azure")

    final = await door.stop_metering(client, customer)
    assert final is not None and final.status == MeteringStatus.STOPPED
    assert final.next_hour == hour_start(now) and final.hours_reported == 2
    held = {(r.dimension, r.hour): r.quantity for r in aws.accepted()}
    assert held == {("api_calls", hour): Decimal(n + 2) for n, hour in enumerate(hours)}

    # Started again after the stop: from the hour after the ledger's newest, nothing resent.
    late = ingest_usage(store, calls(customer, hours[2], 4, "late"))
    assert late.accepted == 4
    restarted = await door.start_metering(
        client, store, customer, "aws", worker.task_queue, grace_seconds=0
    )
    assert restarted.started and restarted.next_hour == hour_start(now)
    before = batch_calls(aws)
    again = await door.stop_metering(client, customer)
    assert again is not None and again.status == MeteringStatus.STOPPED
    assert batch_calls(aws) == before  # the current hour is not closed: nothing to send
    assert [(r.hour_start, r.quantity) for r in store.ledger(customer)] == [
        (hour, Decimal(n + 2)) for n, hour in enumerate(hours)
    ]

    # One workflow per customer: a second marketplace is refused, naming the field.
    with pytest.raises(InvalidPayload, match=r"marketplace: customer .* is already linked to aws"):
        link_marketplace(
            store,
            {
                "customer_id": customer,
                "marketplace": "azure",
                "connection_id": "azure",
                "account": {"resource_id": "r1", "plan_id": "gold"},
            },
        )
    refused = await cli(
        worker,
        "marketplace",
        "link",
        customer,
        "azure",
        "--field",
        "resource_id=r1",
        "--field",
        "plan_id=gold",
    )
    assert refused.returncode == 2 and "already linked to aws" in refused.stderr
    with pytest.raises(door.MeteringNotRunning):
        await door.pause_metering(client, customer, "nothing runs")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_link_while_temporal_is_down_is_kept_and_says_how_to_start(
    client: Client,
    store: Store,
    worker: Settings,
    connection: None,
    customer: str,
) -> None:
    down = {"TEMPORAL_ADDRESS": f"127.0.0.1:{_closed_port()}"}
    linked = await cli(worker, "marketplace", "link", customer, "aws", *LINK_FIELDS, env=down)
    assert linked.returncode == 3, linked.stderr
    assert "the link is stored, but its metering did not start" in linked.stderr
    assert f"`billbridge marketplace start {customer}`" in linked.stderr
    assert store.get_marketplace_link(customer, "aws") is not None
    assert await door.metering_state(client, customer) is None

    status = await cli(worker, "marketplace", "status", customer, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["status"] == "not_started"
    # Unlinking while Temporal is down keeps the link (its final report could not run).
    kept = await cli(worker, "marketplace", "unlink", customer, "aws", env=down)
    assert kept.returncode == 3 and "the link is kept" in kept.stderr

    # Usage ingested before the link can be reported: `--from` an earlier hour.
    earlier = hour_start(datetime.now(UTC)) - HOUR
    started = await cli(
        worker, "marketplace", "start", customer, "--grace-seconds", "0",
        "--from", earlier.isoformat(),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert f"metering started ({workflow_id(customer)}), from the hour {earlier.isoformat()}" in (
        started.stderr
    )
    await state_becomes(client, customer, MeteringStatus.METERING)


async def test_needs_attention_shows_in_status_and_retry_reports_the_waiting_hours(
    client: Client,
    store: Store,
    worker: Settings,
    aws: AwsMarketplaceEmulator,
    connection: None,
    customer: str,
) -> None:
    now = datetime.now(UTC)
    hours = [hour_start(now) - 2 * HOUR, hour_start(now) - HOUR]
    ingest_usage(store, calls(customer, hours[0], 3, "a"))
    ingest_usage(store, calls(customer, hours[1], 5, "b"))
    link_marketplace(store, link_payload(customer))
    aws.unsubscribe(license_arn=LICENSE)  # AWS answers CustomerNotSubscribed

    begun = await door.start_metering(
        client, store, customer, "aws", worker.task_queue, grace_seconds=0, first_hour=hours[0]
    )
    assert begun.next_hour == hours[0]
    waiting = await state_becomes(client, customer, MeteringStatus.NEEDS_ATTENTION)
    assert "CustomerNotSubscribed" in waiting.reason
    await attributes_become(client, customer, "needs_attention")
    status = await cli(worker, "marketplace", "status", customer, "--json")
    (row,) = json.loads(status.stdout)
    assert row["status"] == "needs_attention" and "CustomerNotSubscribed" in row["reason"]
    # Saved and not delivered: a later start would begin with them, not after them.
    assert door.resume_hour(store, customer, "aws", datetime.now(UTC)) == hours[0]

    for _ in range(100):  # visibility catches up a moment later
        if customer in await door.waiting_metering(client):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{customer} never listed as needing attention")

    aws.subscribe(PRODUCT, customer_aws_account_id=ACCOUNT, license_arn=LICENSE)
    # `attention retry` (after any fix) signals waiting metering runs as well as exports.
    retried = await cli(worker, "attention", "retry")
    assert retried.returncode == 0, retried.stderr
    assert "1 marketplace metering run(s)" in retried.stdout
    state = await state_becomes(client, customer, MeteringStatus.METERING)
    await wait_until(lambda: len(aws.accepted()) == 2)
    held = {(r.dimension, r.hour): r.quantity for r in aws.accepted()}
    assert held == {("api_calls", hours[0]): 3, ("api_calls", hours[1]): 5}
    final = await door.stop_metering(client, customer)
    assert final is not None and final.next_hour == hour_start(now)
    assert state.reason == "" and all(r.delivered for r in store.ledger(customer))
