"""Batches across customers: the report activities of one hour share AWS's 25-record calls,
a batch refused as a whole costs the innocent customers one retry and isolates the one at
fault, and the send queue's rules hold on both databases."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from stores import both_database_urls, both_databases_store, throwaway_postgres  # noqa: F401
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from test_metering_end_to_end import (  # noqa: F401  (fixtures)
    PRODUCT,
    aws,
    batches_of,
    events,
    metered,
    settings,
)

from billbridge.activities.marketplaces.base import (
    MarketplaceAccount,
    PreparedReport,
    UsageRecord,
)
from billbridge.activities.metering import MeteringActivities
from billbridge.activities.store import LedgerConflict, Store
from billbridge.activities.store.metering_queue import QueuedRecord
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import ReportHoursInput, ReportHoursResult
from billbridge.core.usage import record_id
from billbridge.emulators.aws_marketplace import AwsMarketplaceEmulator
from billbridge.starter.usage_door import ingest_usage, link_marketplace


def account(n: int) -> dict[str, str]:
    return {
        "customer_aws_account_id": f"{200000000000 + n}",
        "license_arn": f"arn:aws:license-manager::294406891311:license:l-{n:016x}",
    }


def link_customers(store: Store, aws: AwsMarketplaceEmulator, count: int) -> list[str]:
    customers = []
    for n in range(count):
        customer = f"cust_batch_{n}"
        acct = account(n)
        aws.subscribe(PRODUCT, **acct)
        link_marketplace(
            store,
            {
                "customer_id": customer,
                "marketplace": "aws",
                "connection_id": "aws",
                "account": acct,
            },
        )
        customers.append(customer)
    return customers


def ingest_hour(store: Store, customer: str, hour: datetime, calls: int) -> None:
    batch = events(hour, [1_000_000_000], calls, f"{customer}-{hour:%H}")
    ingest_usage(store, [{**event, "customer_id": customer} for event in batch])


def report_together(
    store: Store, settings: Settings, customers: list[str], hour: datetime
) -> dict[str, ReportHoursResult | BaseException]:
    """Each customer's report activity of `hour`, all at once (as the hour's timers fire)."""
    activities = MeteringActivities(store, settings)
    outcome: dict[str, ReportHoursResult | BaseException] = {}

    def run(customer: str) -> None:
        try:
            outcome[customer] = ActivityEnvironment().run(
                activities.report_metering_hours,
                ReportHoursInput(customer_id=customer, marketplace="aws", hours=[hour]),
            )
        except BaseException as err:
            outcome[customer] = err

    threads = [threading.Thread(target=run, args=(c,)) for c in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcome


def batch_calls(aws: AwsMarketplaceEmulator) -> list[int]:
    """Records per BatchMeterUsage call, in order."""
    return [len(r.body["UsageRecords"]) for r in aws.requests() if r.operation == "BatchMeterUsage"]


def test_one_hour_of_25_customers_goes_out_in_two_full_batches(
    store: Store, settings: Settings, aws: AwsMarketplaceEmulator, metered: None
) -> None:
    customers = link_customers(store, aws, 25)
    hour = hour_start(datetime.now(UTC)) - 2 * HOUR
    for n, customer in enumerate(customers):
        ingest_hour(store, customer, hour, n + 1)
    outcome = report_together(
        store, replace(settings, metering_gather_seconds=600), customers, hour
    )

    assert all(isinstance(r, ReportHoursResult) and r.accepted == 2 for r in outcome.values())
    assert batch_calls(aws) == [25, 25]
    assert len(aws.accepted()) == 50
    for n, customer in enumerate(customers):
        assert store.ledger_record(record_id(customer, "api_calls", hour)).delivered  # type: ignore[union-attr]
        row = store.ledger_record(record_id(customer, "api_calls", hour))
        assert row is not None and row.quantity == n + 1


def test_a_batch_refused_as_a_whole_isolates_the_customer_at_fault(
    store: Store,
    settings: Settings,
    aws: AwsMarketplaceEmulator,
    metered: None,
) -> None:
    """A wrong LicenseArn makes AWS refuse the whole call (InvalidLicenseException). The
    innocent customers' records go again on their own after one retry and are accepted; the
    customer at fault needs attention; nothing is reported twice."""
    customers = link_customers(store, aws, 3)
    wrong = {**account(99)}  # never subscribed: AWS knows no such license
    link_marketplace(
        store,
        {
            "customer_id": "cust_wrong",
            "marketplace": "aws",
            "connection_id": "aws",
            "account": wrong,
        },
    )
    everyone = [*customers, "cust_wrong"]
    hour = hour_start(datetime.now(UTC)) - 2 * HOUR
    for customer in everyone:
        ingest_hour(store, customer, hour, 2)
    # Batches of 8 (four customers' records) and a gather time far longer than the test: the
    # one batch of all four goes as soon as it is full, whatever the threads' timing.
    batches_of(store, 8)
    gathered = replace(settings, metering_gather_seconds=600)

    first = report_together(store, gathered, everyone, hour)
    assert batch_calls(aws) == [8]  # one call for all four, refused
    assert all(isinstance(r, ApplicationError) and not r.non_retryable for r in first.values())
    assert aws.accepted() == []

    # Temporal retries each activity: each customer now goes on its own.
    again = report_together(store, gathered, everyone, hour)
    for customer in customers:
        result = again[customer]
        assert isinstance(result, ReportHoursResult) and result.accepted == 2
    wrong_result = again["cust_wrong"]
    assert isinstance(wrong_result, ApplicationError)
    # Its own activity sent it (AWS's error) or another one did (its records need attention).
    assert wrong_result.type in ("ProviderCustomerMissing", "MarketplaceNeedsAttention")
    assert wrong_result.non_retryable and "InvalidLicenseException" in str(wrong_result)
    assert sorted(batch_calls(aws)[1:]) == [2, 2, 2, 2]
    assert sorted(c for c, _ in {(r.dimension, r.hour) for r in aws.accepted()}) == [
        "api_calls",
        "data_gb",
    ]
    assert len(aws.accepted()) == 6  # three customers x two dimensions, once each


# -- the send queue's rules, on SQLite and PostgreSQL ----------------------------------------------


def usage(customer: str, dimension: str, hour: datetime, quantity: str) -> UsageRecord:
    return UsageRecord(
        record_id=record_id(customer, dimension, hour),
        customer_id=customer,
        account=MarketplaceAccount("aws", account(0)),
        dimension=dimension,
        hour_start=hour,
        quantity=Decimal(quantity),
    )


def one_request(queued: list[QueuedRecord]) -> list[PreparedReport]:
    ids = tuple(q.record.record_id for q in queued)
    return [PreparedReport("aws", ids, {"n": len(ids)})]


def link(store: Store, customer: str) -> None:
    store.upsert_connection("aws", "aws", settings={"region": "us-east-1"})
    link_marketplace(
        store,
        {
            "customer_id": customer,
            "marketplace": "aws",
            "connection_id": "aws",
            "account": account(0),
        },
    )


def test_queued_records_are_batched_once_and_keep_their_quantity(store: Store) -> None:
    hour = datetime(2026, 11, 30, 10, tzinfo=UTC)
    for customer in ("a", "b"):
        link(store, customer)
    store.queue_records("aws", [usage("a", "calls", hour, "3")])
    store.queue_records("aws", [usage("b", "calls", hour, "1.5"), usage("b", "gb", hour, "0")])
    # Queued again with the same quantity (a retried activity): nothing changes.
    store.queue_records("aws", [usage("a", "calls", hour, "3.00")])
    with pytest.raises(LedgerConflict, match="never another quantity"):
        store.queue_records("aws", [usage("a", "calls", hour, "4")])

    seen: list[list[bool]] = []

    def build(queued: list[QueuedRecord]) -> list[PreparedReport]:
        seen.append([q.first_send for q in queued])
        return one_request(queued)

    saved = store.batch_queued("aws", build)
    assert len(saved) == 1 and len(saved[0].record_ids) == 3
    assert seen == [[True, True, True]]  # none sent before
    assert store.batch_queued("aws", build) == []  # nothing queued any more
    row = store.ledger_record(record_id("b", "calls", hour))
    assert row is not None and (row.outcome, row.request_id, row.attempts) == (
        "pending",
        saved[0].id,
        1,
    )
    # Pending in a saved request: queuing it again keeps it there (that request is resent).
    store.queue_records("aws", [usage("b", "calls", hour, "1.5")])
    assert (
        store.requests_carrying([record_id("b", "calls", hour)])[record_id("b", "calls", hour)].id
        == saved[0].id
    )
    with pytest.raises(LedgerConflict):
        store.queue_records("aws", [usage("b", "calls", hour, "2")])


def test_records_without_a_link_stay_queued(store: Store) -> None:
    hour = datetime(2026, 11, 30, 10, tzinfo=UTC)
    store.queue_records("aws", [usage("nolink", "calls", hour, "1")])
    assert store.batch_queued("aws", one_request) == []
    row = store.ledger_record(record_id("nolink", "calls", hour))
    assert row is not None and row.outcome == "queued"
