"""ExportInvoiceWorkflow end to end: real dev server, real worker, Stripe emulator, SQLite store."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.core.money import to_minor
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import (
    InvalidPayload,
    export_invoice,
    export_result,
    retry_export,
    start_export,
    submit_invoice,
    upsert_customers,
)
from billbridge.starter.samples import (
    LineDiscount,
    SampleLine,
    build_customer,
    build_invoice,
    build_invoice_issued_event,
    large_invoice,
)
from billbridge.starter.seed import seed_customer
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from conftest import StripeAccount, finalized_invoices, map_invoice_items, wait_for

USAGE = [
    SampleLine("item_api_calls", "API calls", Decimal("1234567.891"), Decimal("0.00012")),
    SampleLine("item_storage", "Storage GB-months", Decimal("812.345"), Decimal("0.023")),
    SampleLine("item_seats", "Seats", Decimal("12"), Decimal("49.99")),
]


def stripe_invoice_for(emulator: StripeEmulator, invoice_id: str) -> dict[str, Any]:
    found = finalized_invoices(emulator, invoice_id)
    assert len(found) == 1, f"expected one Stripe invoice for {invoice_id}, found {len(found)}"
    return found[0]


def assert_totals_match(invoice: dict[str, Any], stripe_invoice: dict[str, Any]) -> None:
    currency = invoice["currency"]
    assert stripe_invoice["status"] == ("open" if stripe_invoice["amount_due"] else "paid")
    assert stripe_invoice["total"] == to_minor(Decimal(invoice["total"]), currency)
    assert stripe_invoice["amount_due"] == to_minor(Decimal(invoice["amount_due"]), currency)


async def test_exports_multiline_usage_invoice(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice(
        "inv_usage_1",
        "cust_1",
        "USD",
        USAGE,
        line_discount=LineDiscount(percentage=Decimal("0.10"), lines=(0,)),
        credits=Decimal("25.00"),
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED, result.reason
    stripe_invoice = stripe_invoice_for(emulator, "inv_usage_1")
    assert_totals_match(invoice, stripe_invoice)
    assert stripe_invoice["customer"] == stripe_account.customer_id
    assert stripe_invoice["collection_method"] == "send_invoice"
    assert result.external_id == stripe_invoice["id"]
    assert result.provider_total == invoice["total"]
    # Every billing line is its own Stripe line carrying the mapped product and metadata.
    lines = stripe_invoice["lines"]["data"]
    refs = [line["metadata"]["billbridge_line_ref"] for line in lines]
    assert len(refs) == len(set(refs))
    for billing_line in invoice["line_items"]:
        assert billing_line["id"] in refs
    usage = [line for line in lines if line["metadata"]["billbridge_kind"] == "usage"]
    assert {line["pricing"]["price_details"]["product"] for line in usage} == {
        stripe_account.products[item] for item in ("item_api_calls", "item_storage", "item_seats")
    }
    kinds = {line["metadata"]["billbridge_kind"] for line in lines}
    assert {"discount", "credits"} <= kinds
    record = store.get_export("inv_usage_1", "stripe_invoice")
    assert record is not None and record.status == "exported"
    assert record.external_id == stripe_invoice["id"]


@pytest.mark.parametrize("currency", ["JPY", "KWD", "EUR"])
async def test_minor_units_of_zero_two_and_three_decimal_currencies(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    currency: str,
) -> None:
    customer_id = f"cust_{currency.lower()}"
    seed_customer(stripe_account.client, store, build_customer(customer_id, currency=currency))
    unit = Decimal("3") if currency == "JPY" else Decimal("0.0137")
    invoice = build_invoice(
        f"inv_{currency}",
        customer_id,
        currency,
        [
            SampleLine("item_api_calls", "API calls", Decimal("98765.4321"), unit),
            SampleLine("item_seats", "Seats", Decimal("3"), Decimal("1000")),
        ],
        credits=Decimal("7"),
        # Stripe charges KWD only in amounts ending in 0 (docs.stripe.com/currencies).
        balance_applied=Decimal("-5.006" if currency == "KWD" else "-5"),
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    stripe_invoice = stripe_invoice_for(emulator, f"inv_{currency}")
    assert stripe_invoice["currency"] == currency.lower()
    assert_totals_match(invoice, stripe_invoice)


async def test_zero_total_is_skipped_without_provider_calls(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    before = len(emulator.requests())
    invoice = build_invoice(
        "inv_zero", "cust_1", "USD", [SampleLine("item_seats", "Seats", Decimal(0), Decimal(5))]
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.SKIPPED_ZERO_TOTAL
    assert len(emulator.requests()) == before
    record = store.get_export("inv_zero")
    assert record is not None and record.status == "skipped_zero_total"


async def test_customer_without_invoicing_provider_is_not_exported(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
) -> None:
    upsert_customers(
        store,
        [
            build_customer(
                "cust_card", payment_provider="stripe_charge", payment_provider_id="cus_card"
            )
        ],
    )
    invoice = build_invoice("inv_card", "cust_card", "USD", USAGE[:1])
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.NOT_EXPORTED
    assert "stripe_charge" in result.reason
    assert emulator.requests() == []


async def test_duplicate_start_exports_once(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_dup", "cust_1", "USD", USAGE)
    submit_invoice(store, invoice)
    first, second = (
        await start_export(client, "inv_dup", worker.task_queue),
        await start_export(client, "inv_dup", worker.task_queue),
    )
    assert first.id == second.id == "export-invoice/inv_dup"
    result = await export_result(first, "inv_dup")
    assert result.status == ExportStatus.EXPORTED
    creates_before = _creates(emulator)
    # Started again after it finished: the first run's result, nothing exported twice.
    again = await export_invoice(client, store, invoice, worker.task_queue)
    assert again == result
    assert _creates(emulator) == creates_before == 1
    assert len(finalized_invoices(emulator, "inv_dup")) == 1


def _creates(emulator: StripeEmulator) -> int:
    return sum(
        1
        for r in emulator.requests()
        if r.method == "POST" and r.path == "/v1/invoices" and not r.replayed and r.status == 200
    )


async def test_unmapped_items_wait_for_a_mapping_listing_every_item_and_write_nothing(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice(
        "inv_unmapped",
        "cust_1",
        "USD",
        [
            *USAGE,
            SampleLine("item_gpu", "GPU hours", Decimal("3.5"), Decimal("2.10")),
            SampleLine("item_egress", "Egress GB", Decimal("100"), Decimal("0.09")),
        ],
    )
    before = len(emulator.requests())
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "item_gpu (GPU hours)" in result.reason and "item_egress (Egress GB)" in result.reason
    writes = [r for r in emulator.requests()[before:] if r.method != "GET"]
    assert writes == []
    record = store.get_export("inv_unmapped", "stripe_invoice")
    assert record is not None and record.status == "needs_attention"
    assert "item_gpu" in (record.error or "")
    handle = client.get_workflow_handle("export-invoice/inv_unmapped", result_type=ExportResult)
    progress = await handle.query(ExportInvoiceWorkflow.progress)
    assert progress.step == ExportStatus.NEEDS_ATTENTION and "item_egress" in progress.detail
    # Half a fix: it checks again and goes back to waiting, still writing nothing.
    store.set_mapping("stripe_invoice", "item_gpu", stripe_account.products["item_seats"])
    await retry_export(client, "inv_unmapped")
    await wait_for_record(store, "inv_unmapped", "needs_attention", error_has="item_egress")
    assert [r for r in emulator.requests()[before:] if r.method != "GET"] == []
    # The whole fix: the same workflow goes on by itself and exports.
    store.set_mapping("stripe_invoice", "item_egress", stripe_account.products["item_storage"])
    await retry_export(client, "inv_unmapped")
    retried = await export_result(handle, "inv_unmapped", through_attention=True)
    assert retried.status == ExportStatus.EXPORTED
    assert_totals_match(invoice, stripe_invoice_for(emulator, "inv_unmapped"))


async def test_unknown_stripe_customer_needs_attention_without_writes(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    upsert_customers(store, [build_customer("cust_ghost", payment_provider_id="cus_doesnotexist")])
    invoice = build_invoice("inv_ghost", "cust_ghost", "USD", USAGE)
    before = len(emulator.requests())
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderCustomerMissing" in result.reason and "cus_doesnotexist" in result.reason
    assert [r for r in emulator.requests()[before:] if r.method != "GET"] == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda inv: inv.pop("customer"), "customer"),
        (lambda inv: inv.__setitem__("total", "twelve"), "total"),
        (lambda inv: inv["line_items"][1].__setitem__("amount", None), "line_items.1.amount"),
        (lambda inv: inv.__setitem__("currency", "XYZ"), "currency"),
    ],
)
async def test_bad_payloads_are_refused_at_the_door(
    client: Client,
    store: Store,
    worker: Settings,
    mutate: Any,
    field: str,
) -> None:
    invoice = build_invoice("inv_bad", "cust_1", "USD", USAGE)
    mutate(invoice)
    with pytest.raises(InvalidPayload) as refused:
        await export_invoice(client, store, invoice, worker.task_queue)
    assert field in str(refused.value)
    assert store.get_invoice_header("inv_bad") is None
    # No workflow was started for it.
    found = [wf async for wf in client.list_workflows("WorkflowId = 'export-invoice/inv_bad'")]
    assert found == []


async def test_rate_limit_storm_and_server_errors_are_outlasted(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # 5xx first, then a 429 storm: Temporal's back-off grows with the attempt number, while a
    # 429 retries after exactly its Retry-After.
    emulator.add_fault(Fault(kind="status", status=500, count=3, path_prefix="/v1/invoices"))
    emulator.add_fault(
        Fault(kind="status", status=429, count=6, retry_after=0.2, path_prefix="/v1/invoices")
    )
    invoice = build_invoice("inv_storm", "cust_1", "USD", USAGE, credits=Decimal("3"))
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    statuses = [r.status for r in emulator.requests()]
    assert statuses.count(429) == 6 and statuses.count(500) == 3
    assert_totals_match(invoice, stripe_invoice_for(emulator, "inv_storm"))
    attempts = store.list_attempts("inv_storm")
    assert any("ProviderRateLimited" in a.error for a in attempts)
    assert any("ProviderUnavailable" in a.error for a in attempts)


async def test_progress_query_and_search_attributes(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_visible", "cust_1", "USD", USAGE)
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED
    handle = client.get_workflow_handle("export-invoice/inv_visible")
    progress = await handle.query(ExportInvoiceWorkflow.progress)
    assert progress.step == ExportStatus.EXPORTED and progress.provider == "stripe_invoice"
    description = await handle.describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    attributes.pop("BuildIds", None)  # the server's own
    attributes.pop("TemporalChangeVersion", None)  # the SDK's patch markers
    assert attributes == {
        "InvoiceId": "inv_visible",
        "CustomerId": "cust_1",
        "Provider": "stripe_invoice",
        "ExportStatus": "exported",
    }


async def test_ten_thousand_line_invoice_exports_in_a_few_calls(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = large_invoice("inv_large", "cust_1", 10_000)
    map_invoice_items(stripe_account, store, invoice)
    result: ExportResult = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    stripe_invoice = stripe_invoice_for(emulator, "inv_large")
    assert_totals_match(invoice, stripe_invoice)
    invoice_calls = [r for r in emulator.requests() if r.path.startswith("/v1/invoices")]
    assert len(invoice_calls) < 20


async def test_lost_responses_still_export_exactly_once(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # Stripe executes the create and the first add_lines but their answers are lost; then a
    # connection drops before the finalize request arrives.
    for path in ("/v1/invoices", "/v1/invoices/"):
        emulator.add_fault(Fault(kind="drop_after", method="POST", path_prefix=path, count=1))
    emulator.add_fault(Fault(kind="drop", method="POST", path_prefix="/v1/invoices/", count=1))
    invoice = build_invoice("inv_lost", "cust_1", "USD", USAGE, credits=Decimal("4"))
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert_totals_match(invoice, stripe_invoice_for(emulator, "inv_lost"))
    lost = [r for r in emulator.requests() if r.fault in ("drop_after", "drop")]
    assert len(lost) == 3
    lines = stripe_invoice_for(emulator, "inv_lost")["lines"]["data"]
    refs = [line["metadata"]["billbridge_line_ref"] for line in lines]
    assert len(refs) == len(set(refs))


async def test_history_carries_no_customer_data_or_credentials(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_private", "cust_1", "USD", USAGE, memo="Thanks, Acme Corp!")
    # The door also takes the invoice.issued webhook envelope as Orb sends it.
    event = build_invoice_issued_event(invoice)
    result = await export_invoice(client, store, event, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED
    history = await client.get_workflow_handle("export-invoice/inv_private").fetch_history()
    text = history.to_json()
    assert "inv_private" in text  # the history is there, and readable
    for secret in ("billing@acme.test", "Acme Corp", worker.stripe_api_key, "Thanks"):
        assert secret not in text


async def test_unknown_billing_customer_waits_and_fails_at_the_deadline(
    client: Client, store: Store, worker: Settings, emulator: StripeEmulator
) -> None:
    invoice = build_invoice("inv_nobody", "cust_never_upserted", "USD", USAGE)
    submit_invoice(store, invoice)
    handle = await start_export(
        client, "inv_nobody", worker.task_queue, attention_deadline=timedelta(seconds=3)
    )
    waiting = await export_result(handle, "inv_nobody")
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "UnknownCustomer" in waiting.reason and "customers upsert" in waiting.reason
    final = await export_result(handle, "inv_nobody", through_attention=True)
    assert final.status == ExportStatus.FAILED
    assert "before the deadline" in final.reason and "UnknownCustomer" in final.reason
    record = store.get_export("inv_nobody")
    assert record is not None and record.status == "failed"
    assert emulator.requests() == []


async def wait_for_record(
    store: Store, invoice_id: str, status: str, *, error_has: str = "", within: float = 30
) -> None:
    def recorded() -> bool:
        record = store.get_export(invoice_id)
        return record is not None and record.status == status and error_has in (record.error or "")

    await wait_for(recorded, within=within)


async def test_failure_messages_in_history_are_encrypted_too(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    lines = [SampleLine("item_secret", "Secret project Zephyr", Decimal(1), Decimal(5))]
    invoice = build_invoice("inv_secret_failure", "cust_1", "USD", lines)
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "Secret project Zephyr" in result.reason  # readable through the codec
    handle = client.get_workflow_handle("export-invoice/inv_secret_failure")
    text = (await handle.fetch_history()).to_json()
    # The prepare step is a local activity: its failure is recorded in its marker.
    assert '"markerName": "core_local_activity"' in text and '"failure"' in text
    assert "Zephyr" not in text  # the failure message is sealed in history
