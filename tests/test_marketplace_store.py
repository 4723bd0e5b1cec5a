"""Marketplace links, dimension mappings, hourly aggregation, late events and the ledger, on
SQLite and PostgreSQL; the marketplace CLI and marketplace connections."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
from stores import (  # noqa: F401 (fixtures)
    both_database_urls,
    both_databases_store,
    throwaway_postgres,
)

from billbridge.activities.marketplaces.base import (
    MarketplaceAccount,
    Outcome,
    PreparedReport,
    RecordResult,
    UsageRecord,
)
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import (
    LedgerConflict,
    MarketplaceSetupError,
    SavedRequest,
    Store,
    metering_queue,
)
from billbridge.activities.store.metering_queue import QueuedRecord, RequestBuilder
from billbridge.core.usage import (
    AWS_FIELD_MAX,
    AWS_FIELD_PATTERNS,
    DimensionMapping,
    MarketplaceLink,
    UsageEvent,
    record_id,
)
from billbridge.starter.door import InvalidPayload
from billbridge.starter.usage_door import link_marketplace, set_dimension_mapping
from billbridge.workers.codec import generate_key
from conftest import BILLBRIDGE_CLI

H10 = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
AWS_ACCOUNT = {
    "customer_aws_account_id": "123456789012",
    "license_arn": "arn:aws:license-manager::123456789012:license/l-1",
}


def usage(key: str, at: datetime, name: str = "api_call", **props: Any) -> UsageEvent:
    return UsageEvent(
        idempotency_key=key,
        customer_id="cust_1",
        event_name=name,
        timestamp=at,
        properties=props,
    )


def usage_record(dimension: str, hour: datetime, quantity: str) -> UsageRecord:
    return UsageRecord(
        record_id=record_id("cust_1", dimension, hour),
        customer_id="cust_1",
        account=MarketplaceAccount("aws", AWS_ACCOUNT),
        dimension=dimension,
        hour_start=hour,
        quantity=Decimal(quantity),
    )


def prepared(*records: UsageRecord, sent_at: int = 1_772_359_200) -> PreparedReport:
    """What an AWS client's prepare would build (QuantityAsDecimal is a string there)."""
    return PreparedReport(
        "aws",
        tuple(r.record_id for r in records),
        {
            "UsageRecords": [
                {
                    "Timestamp": int(r.hour_start.timestamp()),
                    "Dimension": r.dimension,
                    "QuantityAsDecimal": str(r.quantity),
                    "CustomerAWSAccountId": AWS_ACCOUNT["customer_aws_account_id"],
                    "LicenseArn": AWS_ACCOUNT["license_arn"],
                }
                for r in records
            ],
            "x-billbridge-prepared-at": sent_at,
        },
    )


# --------------------------------------------------------------------------- links


def test_links_are_validated_per_marketplace() -> None:
    MarketplaceLink(customer_id="c", marketplace="aws", connection_id="a", account=AWS_ACCOUNT)
    legacy = MarketplaceLink(
        customer_id="c",
        marketplace="aws",
        connection_id="a",
        account={"CustomerIdentifier": "cid", "ProductCode": "prod"},
    )
    assert legacy.account == {"customer_identifier": "cid", "product_code": "prod"}
    MarketplaceLink(
        customer_id="c",
        marketplace="gcp",
        connection_id="g",
        account={"usage_reporting_id": "project_number:1", "service_name": "svc.example"},
    )
    cases = [
        ("aws", {"customer_aws_account_id": "1"}, "customer_aws_account_id + license_arn"),
        ("aws", {**AWS_ACCOUNT, "customer_identifier": "x", "product_code": "p"}, "not both"),
        ("azure", {"resource_id": "r"}, "resource_id + plan_id"),
        ("azure", {"resource_id": "r", "plan_id": "p", "region": "x"}, "region: not a field"),
        ("gcp", {"usage_reporting_id": "u", "service_name": " "}, "service_name is empty"),
    ]
    for marketplace, account, message in cases:
        with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
            MarketplaceLink(
                customer_id="c", marketplace=marketplace, connection_id="x", account=account
            )
    with pytest.raises(pydantic.ValidationError, match="billing_amount mode needs"):
        MarketplaceLink(
            customer_id="c",
            marketplace="aws",
            connection_id="a",
            account=AWS_ACCOUNT,
            mode="billing_amount",
        )


def test_aws_account_fields_follow_botocores_model() -> None:
    """The patterns core/usage.py checks are the installed botocore model's."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("meteringmarketplace")
    shapes = {
        "customer_aws_account_id": model.shape_for("CustomerAWSAccountId"),
        "license_arn": model.shape_for("LicenseArn"),
        "customer_identifier": model.shape_for("CustomerIdentifier"),
        "product_code": model.shape_for("ProductCode"),
    }
    for name, shape in shapes.items():
        assert AWS_FIELD_PATTERNS[name] == shape.metadata["pattern"], name
        if name != "license_arn":
            assert shape.metadata["max"] == AWS_FIELD_MAX
    with pytest.raises(pydantic.ValidationError, match="customer_aws_account_id"):
        MarketplaceLink(
            customer_id="c",
            marketplace="aws",
            connection_id="a",
            account={**AWS_ACCOUNT, "customer_aws_account_id": "12-34"},
        )
    with pytest.raises(pydantic.ValidationError, match="license_arn"):
        MarketplaceLink(
            customer_id="c",
            marketplace="aws",
            connection_id="a",
            account={**AWS_ACCOUNT, "license_arn": "l-1"},
        )


def test_link_crud_needs_a_connection_of_the_same_marketplace(store: Store) -> None:
    link = MarketplaceLink(
        customer_id="cust_1",
        marketplace="aws",
        connection_id="aws-prod",
        account=AWS_ACCOUNT,
        mode="billing_amount",
        billing_amount_dimension="usage_fee",
    )
    with pytest.raises(MarketplaceSetupError, match="does not exist"):
        store.link_marketplace(link)
    store.upsert_connection("aws-prod", "azure")
    with pytest.raises(MarketplaceSetupError, match="is a azure connection, not aws"):
        store.link_marketplace(link)
    store.upsert_connection("aws-prod", "aws", settings={"region": "us-east-1"})
    store.upsert_connection("az", "azure")
    store.link_marketplace(link)
    azure = MarketplaceLink(
        customer_id="cust_1",
        marketplace="azure",
        connection_id="az",
        account={"resourceId": "sub-1", "planId": "gold"},
    )
    store.link_marketplace(azure)
    assert store.get_marketplace_link("cust_1", "aws") == link
    assert store.marketplace_links(marketplace="azure") == [azure]
    assert store.marketplace_links(customer_id="cust_1") == [link, azure]
    assert store.marketplace_links(connection_id="aws-prod") == [link]
    assert store.unlink_marketplace("cust_1", "aws")
    assert not store.unlink_marketplace("cust_1", "aws")
    assert store.marketplace_links() == [azure]


def test_the_python_door_names_the_field(store: Store) -> None:
    payload = {
        "customer_id": "cust_1",
        "marketplace": "gcp",
        "connection_id": "g",
        "account": {"usageReportingId": "project_number:1"},
    }
    with pytest.raises(InvalidPayload, match="account: a link to gcp needs usage_reporting_id"):
        link_marketplace(store, payload)
    payload["account"] = {"usage_reporting_id": "project_number:1", "service_name": "s.example"}
    with pytest.raises(InvalidPayload, match="connection: 'g' does not exist"):
        link_marketplace(store, payload)
    store.upsert_connection("g", "gcp", settings={"provider_id": "p"})
    assert link_marketplace(store, payload).account["service_name"] == "s.example"
    with pytest.raises(InvalidPayload, match="factor: factor must be a number greater than 0"):
        set_dimension_mapping(store, "g", {"event_name": "e", "dimension": "d", "factor": "0"})
    with pytest.raises(InvalidPayload, match="'nope' is not a marketplace connection"):
        set_dimension_mapping(store, "nope", {"event_name": "e", "dimension": "d"})
    set_dimension_mapping(store, "g", {"event_name": "e", "dimension": "d", "factor": "2.5"})
    assert store.dimension_mappings("g")[0].factor == Decimal("2.5")


def test_dimension_mappings_crud(store: Store) -> None:
    count = DimensionMapping(event_name="api_call", dimension="requests", factor="0.001")
    summed = DimensionMapping(event_name="upload", property="bytes", dimension="gb", factor=1e-9)
    store.set_dimension_mapping("aws-prod", count)
    store.set_dimension_mapping("aws-prod", summed)
    assert store.dimension_mappings("aws-prod") == [summed, count]
    assert summed.factor == Decimal("1E-9")
    store.set_dimension_mapping("aws-prod", count.model_copy(update={"factor": Decimal(2)}))
    assert store.dimension_mappings("aws-prod")[1].factor == Decimal(2)
    assert store.delete_dimension_mapping("aws-prod", "upload", "gb")
    assert not store.delete_dimension_mapping("aws-prod", "upload", "gb")
    assert store.dimension_mappings("other") == []
    for bad in ("0", "-1", "abc"):
        with pytest.raises(pydantic.ValidationError, match="factor"):
            DimensionMapping(event_name="e", dimension="d", factor=bad)


# --------------------------------------------------------------------------- aggregation


def test_hourly_totals_sum_and_count_with_factors_exactly(store: Store) -> None:
    store.ingest_usage(
        [
            usage("a", H10, bytes=1_500_000_000),
            usage("b", H10 + timedelta(minutes=59, seconds=59), bytes="0.5"),
            usage("c", H10 + HOUR, bytes=Decimal("0.1")),
            usage("d", H10 + HOUR, note="no bytes"),  # counted, adds no bytes
            usage("e", H10 + HOUR, bytes="lots"),  # counted, bytes skipped and reported
            usage("f", H10 + 2 * HOUR),  # the end is exclusive
            usage("g", H10, name="other", bytes=7),
        ]
    )
    mappings = [
        DimensionMapping(event_name="api_call", property="bytes", dimension="gb", factor="1E-9"),
        DimensionMapping(event_name="api_call", dimension="calls", factor="0.5"),
    ]
    hourly = store.hourly_usage_totals("cust_1", H10, H10 + 2 * HOUR, mappings)
    assert list(hourly) == [H10, H10 + HOUR]
    assert hourly[H10].totals == {"gb": Decimal("1.5000000005"), "calls": Decimal(1)}
    assert hourly[H10].event_count == 2
    second = hourly[H10 + HOUR]
    assert second.totals == {"gb": Decimal("1E-10"), "calls": Decimal("1.5")}
    assert [(s.idempotency_key, s.dimension) for s in second.skipped] == [("e", "gb")]
    assert "'lots' is not a number" in second.skipped[0].reason
    whole = store.usage_totals("cust_1", H10, H10 + 2 * HOUR, mappings)
    assert whole == {"gb": Decimal("1.5000000006"), "calls": Decimal("2.5")}
    assert store.usage_totals("cust_1", H10, H10 + HOUR, []) == {}


def test_late_events_are_found_by_when_they_arrived(store: Store) -> None:
    store.ingest_usage([usage("on_time", H10 + timedelta(minutes=5))])
    (first,) = store.usage_received_between("cust_1", H10 - timedelta(days=365))
    reported_at = first.received_at + timedelta(microseconds=1)
    store.ingest_usage([usage("late", H10 + timedelta(minutes=50)), usage("new", H10 + HOUR)])
    late = store.usage_received_between("cust_1", reported_at)
    assert [s.event.idempotency_key for s in late] == ["late", "new"]
    assert store.usage_hours_received_between("cust_1", reported_at) == [H10, H10 + HOUR]
    assert store.usage_received_between("cust_1", reported_at, first.received_at) == []


def test_billing_amount_mode_reads_the_increase_of_charges_to_date_in_cents(
    store: Store,
) -> None:
    def charges(key: str, at: datetime, amount: str) -> UsageEvent:
        return usage(key, at, name="charges_to_date", amount=amount)

    store.ingest_usage(
        [
            charges("t1", H10 - timedelta(minutes=30), "10.00"),
            charges("t2", H10 + timedelta(minutes=10), "10.005"),
            charges("t3", H10 + timedelta(minutes=40), "12.345"),
            charges("t4", H10 + HOUR, "99"),  # the next hour's
        ]
    )
    assert store.charges_to_date("cust_1", H10) == Decimal("10.00")
    assert store.billing_amount_cents("cust_1", H10, H10 + HOUR) == Decimal("234.5")
    assert store.billing_amount_cents("cust_1", H10 - 5 * HOUR, H10 - 4 * HOUR) == 0


# --------------------------------------------------------------------------- ledger


def linked(store: Store) -> None:
    """cust_1 linked on the AWS connection aws-prod: queued records of a linked customer only
    are batched."""
    store.upsert_connection("aws-prod", "aws", settings={"region": "us-east-1"})
    link_marketplace(
        store,
        {
            "customer_id": "cust_1",
            "marketplace": "aws",
            "connection_id": "aws-prod",
            "account": AWS_ACCOUNT,
        },
    )


def one_request(sent_at: int = 100) -> RequestBuilder:
    return lambda queued: [prepared(*(q.record for q in queued), sent_at=sent_at)]


def save(store: Store, records: list[UsageRecord], sent_at: int = 100) -> SavedRequest:
    """What the report activity does before it sends: queue the records, batch them."""
    store.queue_records("aws-prod", records)
    (saved,) = store.batch_queued("aws-prod", one_request(sent_at))
    return saved


def test_the_request_is_saved_before_sending_and_a_retry_gets_the_same_bytes(
    store: Store,
) -> None:
    linked(store)
    records = [usage_record("requests", H10, "17.42"), usage_record("gb", H10, "0")]
    store.queue_records("aws-prod", records)
    assert [r.outcome for r in store.ledger("cust_1")] == ["queued", "queued"]
    assert store.unanswered_requests() == []  # queued: certainly not sent
    (saved,) = store.batch_queued("aws-prod", one_request(100))
    assert [r.outcome for r in store.ledger("cust_1")] == ["pending", "pending"]
    assert store.unanswered_requests() == [saved]
    assert store.batch_queued("aws-prod", one_request(300)) == []  # in no second request
    # The activity crashed before the answer; its retry computes the records again and finds
    # them in the saved request, to send exactly that (its prepared-at included).
    store.queue_records("aws-prod", records)
    assert store.batch_queued("aws-prod", one_request(200)) == []
    carrying = store.requests_carrying([r.record_id for r in records])
    assert list(carrying.values()) == [saved, saved]
    assert saved.payload["x-billbridge-prepared-at"] == 100
    sent = {r["Dimension"]: r["QuantityAsDecimal"] for r in saved.payload["UsageRecords"]}
    assert sent == {"requests": "17.42", "gb": "0"}
    results = [
        RecordResult(records[0].record_id, Outcome.ACCEPTED, "mrid-1", "Success"),
        RecordResult(records[1].record_id, Outcome.ACCEPTED, "mrid-2", "Success"),
    ]
    assert store.record_answers(saved.id, results) == 2
    assert store.unanswered_requests() == []
    assert store.requests_carrying([r.record_id for r in records]) == {}
    answered = store.saved_request(saved.id)
    assert answered is not None and answered.answered_at is not None
    (_gb, req) = store.ledger("cust_1")
    assert (req.outcome, req.marketplace_ref, req.delivered) == ("accepted", "mrid-1", True)
    assert store.reported_total("cust_1", "requests", H10, H10 + HOUR) == Decimal("17.42")
    assert store.reported_total("cust_1", "requests", H10 + HOUR, H10 + 2 * HOUR) == 0
    # Answered: never queued (so never sent) again, with this quantity or another.
    for quantity in ("17.42", "18"):
        with pytest.raises(LedgerConflict, match="already answered accepted"):
            store.queue_records("aws-prod", [usage_record("requests", H10, quantity)])


def test_a_sent_hour_is_never_saved_with_another_quantity(store: Store) -> None:
    linked(store)
    first = [usage_record("requests", H10, "17")]
    saved = save(store, first)
    changed = [usage_record("requests", H10, "18")]
    with pytest.raises(LedgerConflict, match=r"never another quantity \(18\)"):
        store.queue_records("aws-prod", changed)
    # Throttled: the same quantity may go again (17 == 17.00), in a new request.
    store.record_answer(first[0].record_id, "retry", detail="ThrottlingException")
    with pytest.raises(LedgerConflict, match=r"never another quantity \(18\)"):
        store.queue_records("aws-prod", changed)
    resent = save(store, [usage_record("requests", H10, "17.00")])
    assert resent.id != saved.id
    record = store.ledger_record(first[0].record_id)
    assert record is not None and (record.attempts, record.request_id) == (2, resent.id)
    # An answer to the older request no longer applies to the record.
    assert not store.record_answer(first[0].record_id, "accepted", request_id=saved.id)
    store.record_answer(
        first[0].record_id, "duplicate", "", "DuplicateRecord", Decimal("16"), request_id=resent.id
    )
    record = store.ledger_record(first[0].record_id)
    assert record is not None and not record.delivered
    with pytest.raises(LedgerConflict, match="already answered duplicate"):
        store.queue_records("aws-prod", changed)


def test_a_writer_racing_on_the_same_hour_cannot_save_another_quantity(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process queues the hour between this queue's check and its write (PostgreSQL,
    read committed; SQLite writers queue up behind BEGIN IMMEDIATE instead)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite serializes writers")
    linked(store)
    other = Store(str(store._engine.url))
    ours = [usage_record("requests", H10, "17")]
    theirs = [usage_record("requests", H10, "18")]
    original = metering_queue.canonical_number
    raced: list[bool] = []

    def meanwhile(value: Decimal) -> str:
        # Called after this writer read the (missing) row, before it writes it.
        if not raced:  # once: the other writer's own queue goes through this hook too
            raced.append(True)
            other.queue_records("aws-prod", theirs)
        return original(value)

    monkeypatch.setattr(metering_queue, "canonical_number", meanwhile)
    try:
        with pytest.raises(LedgerConflict, match="saved meanwhile"):
            store.queue_records("aws-prod", ours)
    finally:
        other.close()
    record = store.ledger_record(ours[0].record_id)
    assert record is not None and (record.quantity, record.outcome) == (Decimal(18), "queued")


def test_an_hour_the_marketplace_refused_can_go_again_with_a_new_quantity(store: Store) -> None:
    linked(store)
    first = [usage_record("requests", H10, "5")]
    saved = save(store, first)
    store.record_answers(
        saved.id, [RecordResult(first[0].record_id, Outcome.NEEDS_ATTENTION, "", "NotSubscribed")]
    )
    assert store.reported_total("cust_1", "requests", H10, H10 + HOUR) == 0
    later = [usage_record("requests", H10, "6")]  # late events arrived meanwhile
    again = save(store, later)
    record = store.ledger_record(first[0].record_id)
    assert record is not None
    assert (record.quantity, record.outcome, record.attempts, record.request_id) == (
        Decimal(6),
        "pending",
        2,
        again.id,
    )


def test_the_saved_payload_is_exact_json(store: Store) -> None:
    linked(store)
    store.queue_records("aws-prod", [usage_record("requests", H10, "0.1")])

    def exact(queued: list[QueuedRecord]) -> list[PreparedReport]:
        ids = tuple(q.record.record_id for q in queued)
        return [PreparedReport("aws", ids, {"quantity": Decimal("0.10"), "n": 3, "ok": True})]

    (saved,) = store.batch_queued("aws-prod", exact)
    assert saved.payload == {"quantity": Decimal("0.10"), "n": 3, "ok": True}
    assert str(saved.payload["quantity"]) == "0.10"
    floats = [usage_record("requests", H10 + HOUR, "0.1")]
    store.queue_records("aws-prod", floats)

    def with_float(queued: list[QueuedRecord]) -> list[PreparedReport]:
        ids = tuple(q.record.record_id for q in queued)
        return [PreparedReport("aws", ids, {"quantity": 0.1})]

    with pytest.raises(ValueError, match="never float"):
        store.batch_queued("aws-prod", with_float)
    record = store.ledger_record(floats[0].record_id)
    assert record is not None and record.outcome == "queued"  # nothing saved: still queued
    with pytest.raises(ValueError, match="quantity -1 is not >= 0"):
        store.queue_records("aws-prod", [usage_record("requests", H10 + 2 * HOUR, "-1")])


def test_marketplace_config_opens_the_sealed_credentials(store: Store) -> None:
    box = SecretBox([os.urandom(32)])
    credentials = {"tenant_id": "t", "client_id": "c", "client_secret": "s3cret"}
    store.upsert_connection(
        "az", "azure", credentials_ref=box.seal(json.dumps(credentials), "az"), settings={}
    )
    store.upsert_connection("aws-default", "aws", settings={"region": "eu-west-1"})
    config = store.marketplace_config("az", box)
    assert (config.marketplace, dict(config.credentials)) == ("azure", credentials)
    aws = store.marketplace_config("aws-default", None)
    assert (dict(aws.credentials), dict(aws.settings)) == ({}, {"region": "eu-west-1"})
    store.upsert_connection("stripe_invoice", "stripe_invoice")
    with pytest.raises(MarketplaceSetupError, match="not a marketplace connection"):
        store.marketplace_config("stripe_invoice", box)


# --------------------------------------------------------------------------- CLI


def test_cli_connections_links_dimensions_and_ledger(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BILLBRIDGE_CODEC_KEY")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "BILLBRIDGE_CODEC_KEY": generate_key(),
        "AZ_SECRET": "very-secret-value",
        # No Temporal here (never a server another process runs on the default port).
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*BILLBRIDGE_CLI, *args], env=env, capture_output=True, text=True, timeout=60
        )

    added = cli(
        "connections", "add", "azure", "--id", "az", "--tenant-id", "t1", "--client-id", "c1",
        "--client-secret-env", "AZ_SECRET", "--no-verify",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "very-secret-value" not in added.stdout
    assert json.loads(added.stdout)[0]["credentials"] == "sealed in the store"
    missing = cli("connections", "add", "azure", "--id", "az2", "--tenant-id", "t1")
    assert missing.returncode == 2 and "--client-id" in missing.stderr
    listed = cli("connections", "list", "--no-verify")
    assert listed.returncode == 0, listed.stderr
    assert "very-secret-value" not in listed.stdout
    assert [c["provider"] for c in json.loads(listed.stdout) if c["connection"] == "az"] == [
        "azure"
    ]
    bad = cli("marketplace", "link", "cust_1", "azure", "--connection", "az", "--field", "x=1")
    assert bad.returncode == 2 and "x: not a field of a link to azure" in bad.stderr
    linked = cli(
        "marketplace", "link", "cust_1", "azure", "--connection", "az",
        "--field", "resourceId=sub-1", "--field", "planId=gold", "--no-start",
    )  # fmt: skip
    assert linked.returncode == 0, linked.stderr
    shown = cli("marketplace", "list", "--json")
    assert json.loads(shown.stdout)[0]["account"] == {"resource_id": "sub-1", "plan_id": "gold"}
    dims = cli("marketplace", "dimensions", "set", "az", "upload", "gb", "--property", "bytes",
               "--factor", "0.000000001")  # fmt: skip
    assert dims.returncode == 0, dims.stderr
    listed_dims = json.loads(cli("marketplace", "dimensions", "list", "az").stdout)
    assert listed_dims == [
        {"event_name": "upload", "property": "bytes", "dimension": "gb", "factor": "1E-9"}
    ]
    not_marketplace = cli("marketplace", "dimensions", "set", "nope", "e", "d")
    assert not_marketplace.returncode == 2
    with Store(env["DATABASE_URL"]) as store:
        store.queue_records("az", [usage_record("gb", H10, "2.5")])
    ledger = cli("marketplace", "ledger", "cust_1", "--json")
    assert ledger.returncode == 0, ledger.stderr
    (row,) = json.loads(ledger.stdout)
    assert (row["quantity"], row["outcome"]) == ("2.5", "queued")
    assert cli("marketplace", "unlink", "cust_1", "azure", "--force").returncode == 0
    assert cli("marketplace", "unlink", "cust_1", "azure").returncode == 1
