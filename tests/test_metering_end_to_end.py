"""Usage in, MarketplaceMeteringWorkflow on the real dev server and worker, AWS Marketplace
(the emulator, through boto3) out: every closed hour once, and what was reported equals what
was ingested after unit conversion."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from billbridge.activities.metering import MeteringActivities
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import MeteringInput, MeteringStatus, ReportHoursInput
from billbridge.core.usage import record_id
from billbridge.emulators.aws_marketplace import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    AwsMarketplaceEmulator,
    Fault,
)
from billbridge.starter.metering_door import reconcile_metering
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id
from conftest import CODEC_TEST_KEY, billbridge, retry_now, start_worker, wait_for

PRODUCT = "prod-billbridge1"
ACCOUNT = "111122223333"
LICENSE = "arn:aws:license-manager::294406891311:license:l-0123456789abcdef"
CUSTOMER = "cust_metered"


@pytest.fixture
def aws() -> Iterator[AwsMarketplaceEmulator]:
    with AwsMarketplaceEmulator(requests_per_second=None) as emulator:
        emulator.add_product(PRODUCT, ["api_calls", "data_gb"])
        emulator.subscribe(PRODUCT, customer_aws_account_id=ACCOUNT, license_arn=LICENSE)
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, aws: AwsMarketplaceEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals the AWS keys
    return replace(settings, marketplace_endpoints={"aws": aws.base_url})


@pytest.fixture
def metered(store: Store, settings: Settings) -> None:
    """An AWS connection (keys sealed), two dimensions, the customer linked."""
    keys = {"access_key_id": DEFAULT_ACCESS_KEY_ID, "secret_access_key": DEFAULT_SECRET_ACCESS_KEY}
    sealed = SecretBox.from_settings(settings).seal(json.dumps(keys), "aws")
    store.upsert_connection("aws", "aws", credentials_ref=sealed, settings={"region": "us-east-1"})
    set_dimension_mapping(store, "aws", {"event_name": "api_call", "dimension": "api_calls"})
    set_dimension_mapping(
        store,
        "aws",
        {"event_name": "upload", "property": "bytes", "dimension": "data_gb", "factor": "1e-9"},
    )
    link_marketplace(
        store,
        {
            "customer_id": CUSTOMER,
            "marketplace": "aws",
            "connection_id": "aws",
            "account": {"customer_aws_account_id": ACCOUNT, "license_arn": LICENSE},
        },
    )


def batches_of(store: Store, size: int) -> None:
    """The AWS connection's `batch_size` (`connections add aws --batch-size`)."""
    row = store.get_connection("aws")
    assert row is not None
    store.upsert_connection(
        "aws",
        "aws",
        credentials_ref=row.credentials_ref,
        settings={**row.settings, "batch_size": str(size)},
    )


def events(hour: datetime, uploads: list[int], calls: int, tag: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for n, size in enumerate(uploads):
        out.append(
            {
                "idempotency_key": f"{tag}-up-{n}",
                "customer_id": CUSTOMER,
                "event_name": "upload",
                "timestamp": (hour + timedelta(minutes=n + 1)).isoformat(),
                "properties": {"bytes": size},
            }
        )
    for n in range(calls):
        out.append(
            {
                "idempotency_key": f"{tag}-call-{n}",
                "customer_id": CUSTOMER,
                "event_name": "api_call",
                "timestamp": (hour + timedelta(minutes=30, seconds=n)).isoformat(),
                "properties": {},
            }
        )
    return out


def reported(aws: AwsMarketplaceEmulator) -> dict[tuple[str, datetime], Decimal]:
    return {(r.dimension, r.hour): r.quantity for r in aws.accepted()}


async def test_closed_hours_are_reported_once_and_conserve_usage(
    client: Client,
    store: Store,
    worker: Settings,
    aws: AwsMarketplaceEmulator,
    metered: None,
) -> None:
    now = datetime.now(UTC)
    first = hour_start(now) - 3 * HOUR
    hours = [first + n * HOUR for n in range(3)]
    ingest_usage(store, events(hours[0], [1_500_000_000, 250_000_001], 7, "h0"))
    ingest_usage(store, events(hours[2], [3_000_000_000], 0, "h2"))  # no calls that hour
    handle = await client.start_workflow(
        MarketplaceMeteringWorkflow.run,
        MeteringInput(customer_id=CUSTOMER, marketplace="aws", grace_seconds=0, next_hour=first),
        id=workflow_id(CUSTOMER),
        task_queue=worker.task_queue,
    )
    await handle.signal(MarketplaceMeteringWorkflow.stop)
    final = await handle.result()

    assert final.status == MeteringStatus.STOPPED
    assert final.next_hour == hour_start(now)
    held = reported(aws)
    # Every closed hour, every dimension, once: AWS asks for an hourly record even when zero.
    assert sorted(held) == sorted((d, h) for d in ("api_calls", "data_gb") for h in hours)
    assert held[("api_calls", hours[0])] == 7 and held[("api_calls", hours[2])] == 0
    assert held[("data_gb", hours[1])] == 0
    # 1.750000001 GB: AWS keeps 6 decimals; the 1e-9 rides along to the next hour.
    assert held[("data_gb", hours[0])] == Decimal("1.75")
    assert held[("data_gb", hours[2])] == Decimal("3")
    ingested_gb = Decimal("4.750000001")
    sent_gb = sum((q for (d, _), q in held.items() if d == "data_gb"), Decimal(0))
    assert Decimal(0) <= ingested_gb - sent_gb < Decimal("0.000001")
    ledger = store.ledger(CUSTOMER)
    assert len(ledger) == 6 and all(r.delivered for r in ledger)


def test_a_late_event_goes_into_the_next_hour_and_nothing_is_sent_twice(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    activities = MeteringActivities(store, settings)
    env = ActivityEnvironment()
    first = hour_start(datetime.now(UTC)) - 4 * HOUR
    ingest_usage(store, events(first, [], 5, "a"))
    env.run(
        activities.report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[first]),
    )
    # Late: timestamped in the reported hour, arriving afterwards.
    ingest_usage(store, events(first, [], 3, "late"))
    # The same hour asked again (a retried activity) sends nothing new.
    env.run(
        activities.report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[first]),
    )
    env.run(
        activities.report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[first + HOUR]),
    )
    held = reported(aws)
    assert held[("api_calls", first)] == 5
    assert held[("api_calls", first + HOUR)] == 3  # the late calls, never a second report
    batch_calls = [r for r in aws.requests() if r.operation == "BatchMeterUsage"]
    assert len(batch_calls) == 2


async def test_sigkill_mid_report_reports_each_hour_once(
    client: Client,
    store: Store,
    settings: Settings,
    aws: AwsMarketplaceEmulator,
    metered: None,
    worker_process: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """The worker process is killed while AWS holds its BatchMeterUsage: a fresh worker resends
    the saved request, and AWS holds each hour once, with the quantity first sent."""
    first = hour_start(datetime.now(UTC)) - 3 * HOUR
    hours = [first + n * HOUR for n in range(3)]
    for n, hour in enumerate(hours):
        ingest_usage(store, events(hour, [1_000_000_000 * (n + 1)], n + 2, f"k{n}"))
    # The first report's answer comes after 4 s; the worker is killed while waiting for it.
    aws.add_fault(Fault(kind="delay", seconds=4.0, count=1, method="POST"))
    first_worker = start_worker(settings, tmp_path / "worker-1.log")
    worker_process.append(first_worker)
    handle = await client.start_workflow(
        MarketplaceMeteringWorkflow.run,
        MeteringInput(customer_id=CUSTOMER, marketplace="aws", grace_seconds=0, next_hour=first),
        id=workflow_id(CUSTOMER),
        task_queue=settings.task_queue,
    )
    await handle.signal(MarketplaceMeteringWorkflow.stop)
    # Saved before it is sent: once the request is in the ledger, the worker is on its way.
    await wait_for(lambda: bool(store.unanswered_requests("aws")), within=60)
    await asyncio.sleep(1.0)
    first_worker.send_signal(signal.SIGKILL)
    first_worker.wait(timeout=10)

    worker_process.append(start_worker(settings, tmp_path / "worker-2.log"))
    await retry_now(client, handle.id)
    final = await handle.result()

    assert final.status == MeteringStatus.STOPPED
    held = reported(aws)
    assert sorted(held) == sorted((d, h) for d in ("api_calls", "data_gb") for h in hours)
    assert [held[("api_calls", h)] for h in hours] == [2, 3, 4]
    assert [held[("data_gb", h)] for h in hours] == [1, 2, 3]
    assert len(aws.accepted()) == 6  # each hour once
    # The killed worker's request, then the fresh worker's resend of the same saved request.
    sent = [r for r in aws.requests() if r.operation == "BatchMeterUsage"]
    assert len(sent) >= 2 and all(r.body == sent[0].body for r in sent)
    assert all(r.delivered for r in store.ledger(CUSTOMER))


async def test_state_shows_the_open_hours_running_totals_after_an_ingest(
    client: Client,
    store: Store,
    worker: Settings,
    aws: AwsMarketplaceEmulator,
    metered: None,
    tmp_path: Path,
) -> None:
    now = hour_start(datetime.now(UTC))
    handle = await client.start_workflow(
        MarketplaceMeteringWorkflow.run,
        MeteringInput(customer_id=CUSTOMER, marketplace="aws", next_hour=now),
        id=workflow_id(CUSTOMER),
        task_queue=worker.task_queue,
    )
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events(now, [2_500_000_000], 4, "open")))
    done = billbridge(worker, "usage", "ingest", str(path))
    assert done.returncode == 0, done.stderr
    assert "told 1 metering run(s)" in done.stderr
    # The same file again: duplicates, and the totals stay what the store holds.
    again = billbridge(worker, "usage", "ingest", str(path))
    assert again.returncode == 0, again.stderr
    state = await handle.query(MarketplaceMeteringWorkflow.state)
    assert state.open_hours == {now: {"api_calls": "4", "data_gb": "2.500000000"}}
    assert aws.accepted() == []  # nothing reported: the hour is still open
    await handle.terminate("test over")


def test_an_hour_past_its_window_goes_out_with_the_next_open_hour(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    """After an outage longer than AWS's 24-hour window the old hour is not sent (AWS would
    refuse the whole batch): its usage goes out with the first hour AWS still takes."""
    activities = MeteringActivities(store, settings)
    env = ActivityEnvironment()
    now = hour_start(datetime.now(UTC))
    closed, open_hour = now - 30 * HOUR, now - 2 * HOUR
    ingest_usage(store, events(closed, [], 6, "old"))
    ingest_usage(store, events(open_hour, [], 1, "new"))
    env.run(
        activities.report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[closed, open_hour]),
    )
    held = reported(aws)
    assert ("api_calls", closed) not in held
    assert held[("api_calls", open_hour)] == 7  # the closed hour's 6 and its own 1


def test_billing_amount_mode_reports_the_increase_in_charges_in_cents(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    """One `usage_fee` dimension priced at $0.01: each hour reports the increase of the
    customer's charges to date, in whole cents; a fraction of a cent rides along."""
    other_account = "444455556666"
    other_license = "arn:aws:license-manager::294406891311:license:l-fedcba9876543210"
    aws.add_product(PRODUCT, ["usage_fee"])
    aws.subscribe(PRODUCT, customer_aws_account_id=other_account, license_arn=other_license)
    link_marketplace(
        store,
        {
            "customer_id": "cust_fees",
            "marketplace": "aws",
            "connection_id": "aws",
            "account": {"customer_aws_account_id": other_account, "license_arn": other_license},
            "mode": "billing_amount",
            "billing_amount_dimension": "usage_fee",
        },
    )
    first = hour_start(datetime.now(UTC)) - 4 * HOUR
    snapshots = [(first, "12.345"), (first + HOUR + timedelta(minutes=30), "20.00")]
    ingest_usage(
        store,
        [
            {
                "idempotency_key": f"fees-{n}",
                "customer_id": "cust_fees",
                "event_name": "charges_to_date",
                "timestamp": (moment + timedelta(minutes=5)).isoformat(),
                "properties": {"amount": amount},
            }
            for n, (moment, amount) in enumerate(snapshots)
        ],
    )
    ActivityEnvironment().run(
        MeteringActivities(store, settings).report_metering_hours,
        ReportHoursInput(
            customer_id="cust_fees",
            marketplace="aws",
            hours=[first, first + HOUR, first + 2 * HOUR],
        ),
    )
    fees = {r.hour: r.quantity for r in aws.accepted() if r.dimension == "usage_fee"}
    # 1234.5 cents: 1234 now, the half cent rides along; then 2000 - 1234; then no change.
    assert [fees[first + n * HOUR] for n in range(3)] == [1234, 766, 0]


def test_reconcile_shows_ingested_against_reported_per_dimension(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    first = hour_start(datetime.now(UTC)) - 3 * HOUR
    ingest_usage(store, events(first, [1_250_000_000, 1], 3, "r0"))
    ActivityEnvironment().run(
        MeteringActivities(store, settings).report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[first, first + HOUR]),
    )
    # Late usage of a reported hour: owed, to go out with the next hour.
    ingest_usage(store, events(first, [], 2, "late"))
    done = billbridge(settings, "marketplace", "reconcile", CUSTOMER, "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["dimension"]: row for row in json.loads(done.stdout)}
    assert (rows["api_calls"]["delivered"], rows["api_calls"]["owed"]) == ("3", "2")
    # 1.250000001 GB: 1.25 reported, the 1e-9 AWS cannot take still owed.
    assert Decimal(rows["data_gb"]["delivered"]) == Decimal("1.25")
    assert Decimal(rows["data_gb"]["owed"]) == Decimal("0.000000001")
    assert all(row["ok"] and row["held"] == "0" for row in rows.values())
    delivered_at_aws = sum(
        (r.quantity for r in aws.accepted() if r.dimension == "data_gb"), Decimal(0)
    )
    assert delivered_at_aws == Decimal(rows["data_gb"]["delivered"])


MAY_31_22 = datetime(2026, 5, 31, 22, tzinfo=UTC)
MONTH_HOURS = [MAY_31_22, MAY_31_22 + HOUR, MAY_31_22 + 2 * HOUR]  # 22:00, 23:00, June 1 00:00


def report_at(store: Store, settings: Settings, aws: AwsMarketplaceEmulator, now: datetime) -> None:
    """The month's last two hours and June's first, reported with both clocks (ours and AWS's)
    at `now`."""
    aws.set_now(now)
    ActivityEnvironment().run(
        MeteringActivities(store, settings, clock=lambda: now).report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=MONTH_HOURS),
    )


def test_the_month_end_hours_go_out_until_six_on_the_first_with_their_own_timestamps(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    for n, hour in enumerate(MONTH_HOURS):
        ingest_usage(store, events(hour, [], n + 1, f"m{n}"))
    report_at(store, settings, aws, datetime(2026, 6, 1, 5, 30, tzinfo=UTC))
    held = reported(aws)
    assert [held[("api_calls", h)] for h in MONTH_HOURS] == [1, 2, 3]


def test_after_six_on_the_first_may_usage_goes_out_with_junes_first_hour(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    """AWS closes May at 06:00 UTC on June 1, before May's last hours are 24 hours old: a
    catch-up after that sends none of May's hours (AWS would refuse the batch), and their usage
    goes out with June's first hour."""
    for n, hour in enumerate(MONTH_HOURS):
        ingest_usage(store, events(hour, [], n + 1, f"m{n}"))
    report_at(store, settings, aws, datetime(2026, 6, 1, 6, 0, tzinfo=UTC))
    held = reported(aws)
    assert sorted(h for _, h in held) == [MONTH_HOURS[2]] * 2  # both dimensions, June only
    assert held[("api_calls", MONTH_HOURS[2])] == 1 + 2 + 3
    assert all(row.owed == 0 and row.ok for row in reconcile_metering(store, CUSTOMER))


def test_a_refused_hour_whose_window_closed_goes_out_with_a_later_hour(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    """CustomerNotSubscribed keeps the hour for a resend; when the subscription comes back only
    after the hour's window closed, AWS holds nothing for it, so its usage is not counted as
    reported but goes out with the next hour (conservation), and reconcile shows it owed, not
    held, in between."""
    first = datetime(2026, 3, 10, 9, tzinfo=UTC)
    later = first + 30 * HOUR
    ingest_usage(store, events(first, [], 4, "refused"))
    ingest_usage(store, events(later, [], 1, "later"))
    aws.unsubscribe(license_arn=LICENSE)
    aws.set_now(first + 2 * HOUR)
    activities = MeteringActivities(store, settings, clock=lambda: first + 2 * HOUR)
    with pytest.raises(ApplicationError, match="CustomerNotSubscribed"):
        ActivityEnvironment().run(
            activities.report_metering_hours,
            ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[first]),
        )
    assert store.ledger_record(record_id(CUSTOMER, "api_calls", first)).outcome == (  # type: ignore[union-attr]
        "needs_attention"
    )
    calls = next(r for r in reconcile_metering(store, CUSTOMER) if r.dimension == "api_calls")
    assert (calls.held, calls.owed) == (0, 4)  # the wall clock is past both windows

    aws.subscribe(PRODUCT, customer_aws_account_id=ACCOUNT, license_arn=LICENSE)
    aws.set_now(later + 2 * HOUR)
    ActivityEnvironment().run(
        MeteringActivities(store, settings, clock=lambda: later + 2 * HOUR).report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace="aws", hours=[first, later]),
    )
    held = reported(aws)
    assert ("api_calls", first) not in held
    assert held[("api_calls", later)] == 4 + 1
    calls = next(r for r in reconcile_metering(store, CUSTOMER) if r.dimension == "api_calls")
    assert (calls.delivered, calls.held, calls.owed) == (5, 0, 0)


async def test_sigkill_while_a_batch_of_two_customers_is_at_aws_reports_each_hour_once(
    client: Client,
    store: Store,
    settings: Settings,
    aws: AwsMarketplaceEmulator,
    metered: None,
    worker_process: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """Two customers' hours share one BatchMeterUsage call; the worker dies while AWS holds it.
    The fresh worker's activities find their records in that saved request and resend it as
    saved: AWS holds each customer's hours once, with the quantities first sent."""
    other_account = "555566667777"
    other_license = "arn:aws:license-manager::294406891311:license:l-00000000000000b2"
    aws.subscribe(PRODUCT, customer_aws_account_id=other_account, license_arn=other_license)
    link_marketplace(
        store,
        {
            "customer_id": "cust_second",
            "marketplace": "aws",
            "connection_id": "aws",
            "account": {"customer_aws_account_id": other_account, "license_arn": other_license},
        },
    )
    first = hour_start(datetime.now(UTC)) - 2 * HOUR
    hours = [first, first + HOUR]
    for n, hour in enumerate(hours):
        ingest_usage(store, events(hour, [], n + 1, f"one{n}"))
        second = events(hour, [], n + 5, f"two{n}")
        ingest_usage(store, [{**event, "customer_id": "cust_second"} for event in second])
    # A gather time far longer than the test, with batches of 8: both customers' 8 records
    # (2 hours x 2 dimensions each) go in one call as soon as both are queued.
    gathered = replace(settings, metering_gather_seconds=600)
    batches_of(store, 8)
    aws.add_fault(Fault(kind="delay", seconds=4.0, count=1, method="POST"))
    first_worker = start_worker(gathered, tmp_path / "worker-1.log")
    worker_process.append(first_worker)
    handles = [
        await client.start_workflow(
            MarketplaceMeteringWorkflow.run,
            MeteringInput(
                customer_id=customer, marketplace="aws", grace_seconds=0, next_hour=first
            ),
            id=workflow_id(customer),
            task_queue=settings.task_queue,
        )
        for customer in (CUSTOMER, "cust_second")
    ]
    for handle in handles:
        await handle.signal(MarketplaceMeteringWorkflow.stop)
    await wait_for(lambda: bool(store.unanswered_requests("aws")), within=60)
    await asyncio.sleep(1.0)
    first_worker.send_signal(signal.SIGKILL)
    first_worker.wait(timeout=10)

    worker_process.append(start_worker(gathered, tmp_path / "worker-2.log"))
    await retry_now(client, *(handle.id for handle in handles))
    for handle in handles:
        assert (await handle.result()).status == MeteringStatus.STOPPED

    sent = [r for r in aws.requests() if r.operation == "BatchMeterUsage"]
    assert len(sent[0].body["UsageRecords"]) == 8  # both customers in one call
    assert all(r.body == sent[0].body for r in sent)  # resent as saved, never rebuilt
    held = {(r.customer_aws_account_id, r.dimension, r.hour): r.quantity for r in aws.accepted()}
    assert len(held) == len(aws.accepted()) == 8  # each customer's hours once
    assert [held[(ACCOUNT, "api_calls", h)] for h in hours] == [1, 2]
    assert [held[(other_account, "api_calls", h)] for h in hours] == [5, 6]
