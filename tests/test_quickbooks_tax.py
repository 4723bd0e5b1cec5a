"""QuickBooks Online: tax on QuickBooks' tax fields, currencies, 7-decimal quantities, requestids.

Each test exports through the workflow (or the provider's own httpx client where the point is a
single request) against the QuickBooks emulator set up as a US company with or without automated
sales tax, or as a VAT/GST company (GB, CA).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client

from billbridge.activities.export import ExportActivities
from billbridge.activities.providers.base import PushContext
from billbridge.activities.providers.quickbooks import (
    QuickBooksFault,
    QuickBooksInvoiceProvider,
    QuickBooksPlan,
)
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import ProviderSetupNeeded
from billbridge.core.messages import ExportStatus
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.quickbooks.company import CompanySettings
from billbridge.starter.authorize import store_grant
from billbridge.starter.door import (
    export_result,
    parse_invoice,
    retry_export,
    start_export,
    submit_invoice,
    upsert_customers,
)
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from conftest import CODEC_TEST_KEY, billbridge, emulator_grant

CONNECTION = "quickbooks"
LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.35")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    # AST would charge 7% where billing charged 8.25%: only an override gives billing's tax.
    company = CompanySettings(automated_tax_rate=Decimal("7"))
    with QuickBooksEmulator(requests_per_minute=None, company=company) as emulator:
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, qbo: QuickBooksEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)
    return replace(settings, quickbooks_api_base=qbo.base_url)


@pytest.fixture
def customer_id(qbo: QuickBooksEmulator, store: Store, settings: Settings) -> str:
    """Authorized (a token pair straight from the emulator), items mapped, one customer linked."""
    grant = emulator_grant(qbo)
    store_grant(store, settings, CONNECTION, grant)
    items = {line.item_id: qbo.create_item(line.item_name) for line in LINES}
    store.set_mappings(CONNECTION, items)
    customer = qbo.create_customer("Acme Corp", "billing@acme.test")
    link(store, "cust_qb", customer)
    return customer


def link(store: Store, billing_id: str, quickbooks_id: str | None, email: str = "") -> None:
    upsert_customers(
        store,
        [
            build_customer(
                billing_id,
                payment_provider="quickbooks",
                payment_provider_id=quickbooks_id,
                name=billing_id,
                email=email or f"{billing_id}@example.test",
            )
        ],
    )


def payload(
    invoice_id: str, currency: str = "USD", *, tax: str | None = "8.25", customer: str = "cust_qb"
) -> dict[str, Any]:
    rate = Decimal(tax) if tax is not None else None
    return build_invoice(invoice_id, customer, currency, LINES, tax_rate=rate)


async def export(client: Client, store: Store, worker: Settings, body: dict[str, Any]) -> Any:
    invoice = submit_invoice(store, body)
    handle = await start_export(client, invoice.id, worker.task_queue)
    return handle, await export_result(handle, invoice.id)


def ours(qbo: QuickBooksEmulator, invoice_id: str) -> list[dict[str, Any]]:
    return [i for i in qbo.invoices() if i.get("PrivateNote") == f"billbridge invoice {invoice_id}"]


def billing_tax(body: dict[str, Any]) -> Decimal:
    return sum(
        (Decimal(t["amount"]) for line in body["line_items"] for t in line["tax_amounts"]),
        Decimal(0),
    )


def sales_lines(invoice: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]


def assert_matches_billing(invoice: dict[str, Any], body: dict[str, Any]) -> None:
    assert Decimal(str(invoice["TotalAmt"])) == Decimal(body["total"])
    assert Decimal(str(invoice["TxnTaxDetail"]["TotalTax"])) == billing_tax(body)
    # Tax is on QuickBooks' tax fields, never an item line.
    assert len(sales_lines(invoice)) == len(LINES)


def posts(qbo: QuickBooksEmulator) -> list[Any]:
    return [r for r in qbo.requests() if r.method == "POST" and "/v3/" in r.path]


async def test_us_automated_sales_tax_is_overridden_with_the_billing_tax(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    bodies = [payload("inv_ast_1"), payload("inv_ast_2")]
    for body in bodies:
        _, result = await export(client, store, worker, body)
        assert result.status == ExportStatus.EXPORTED, result.reason
        [invoice] = ours(qbo, body["id"])
        assert_matches_billing(invoice, body)
        assert {
            line["SalesItemLineDetail"]["TaxCodeRef"]["value"] for line in sales_lines(invoice)
        } == {"TAX"}
    # The company's settings were read once for both exports.
    reads = [r.path for r in qbo.requests() if r.method == "GET"]
    assert sum(path.endswith("/preferences") for path in reads) == 1


async def test_us_company_without_automated_tax_gets_the_mapped_tax_code(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    qbo.configure_company(automated_sales_tax=False)
    code = qbo.create_tax_code("Springfield", [("State", "8")])  # billing says 8.25%
    body = payload("inv_us_codes")
    handle, waiting = await export(client, store, worker, body)
    # No tax code mapped: needs attention before anything is written, naming the keys.
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "tax:Tax 8.25%" in waiting.reason and "tax:*" in waiting.reason
    assert not posts(qbo)

    # `mappings set` checks a tax: key against QuickBooks' tax codes, not its items.
    refused = billbridge(worker, "mappings", "set", CONNECTION, "tax:8.25", "999")
    assert refused.returncode == 1 and "tax codes do not exist" in refused.stderr
    mapped = billbridge(worker, "mappings", "set", CONNECTION, "tax:8.25", code)
    assert mapped.returncode == 0, mapped.stderr
    result = await export_result(handle, body["id"], through_attention=True)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [invoice] = ours(qbo, body["id"])
    assert_matches_billing(invoice, body)
    assert invoice["TxnTaxDetail"]["TxnTaxCodeRef"]["value"] == code


async def test_vat_company_puts_a_tax_code_on_every_line(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    qbo.configure_company(country="GB", multicurrency=True)
    standard = qbo.create_tax_code("20.0% S", [("20.0% S", "20")])
    zero = qbo.create_tax_code("0.0% Z", [("0.0% Z", "0")])
    store.set_mappings(CONNECTION, {"tax:20": standard, "tax:none": zero})
    link(store, "cust_gb", qbo.create_customer("Albion Ltd", currency="GBP"))
    for body in (
        payload("inv_vat", "GBP", tax="20", customer="cust_gb"),
        payload("inv_zero_rated", "GBP", tax=None, customer="cust_gb"),
    ):
        _, result = await export(client, store, worker, body)
        assert result.status == ExportStatus.EXPORTED, result.reason
        [invoice] = ours(qbo, body["id"])
        assert_matches_billing(invoice, body)
        assert invoice["GlobalTaxCalculation"] == "TaxExcluded"
        codes = {
            line["SalesItemLineDetail"]["TaxCodeRef"]["value"] for line in sales_lines(invoice)
        }
        assert codes == ({standard} if body["id"] == "inv_vat" else {zero})


def provider(store: Store, settings: Settings) -> QuickBooksInvoiceProvider:
    found = ExportActivities(store, settings).provider(CONNECTION, CONNECTION)
    assert isinstance(found, QuickBooksInvoiceProvider)
    return found


def test_vat_line_without_tax_code_is_fault_6000(
    store: Store, settings: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    qbo.configure_company(country="CA")
    client = provider(store, settings)
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": 10.0,
        "SalesItemLineDetail": {"ItemRef": {"value": qbo.items()[0]["Id"]}},
    }
    with pytest.raises(QuickBooksFault) as refused:
        client._call(
            "creating the invoice",
            "POST",
            "invoice",
            json_body={"CustomerRef": {"value": customer_id}, "Line": [line]},
        )
    assert refused.value.code == "6000"
    assert "GST/HST rate" in str(refused.value)


async def test_tax_quickbooks_computes_differently_leaves_nothing_and_needs_attention(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    qbo.configure_company(country="CA", multicurrency=True)
    # GST + QST: a code with two rates, which QuickBooks computes itself.
    combined = qbo.create_tax_code("GST/QST QC", [("GST", "5"), ("QST", "9.975")])
    store.set_mappings(CONNECTION, {"tax:*": combined})
    link(store, "cust_ca", qbo.create_customer("Maple Inc", currency="CAD"))
    body = payload("inv_qst", "CAD", tax="15", customer="cust_ca")
    _, result = await export(client, store, worker, body)
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderTotalsDiffer" in result.reason
    assert (
        "TxnTaxDetail.TotalTax" in result.reason and "differs from the billing tax" in result.reason
    )
    assert not qbo.invoices()  # created, compared, deleted again


async def test_a_fix_made_in_quickbooks_is_not_answered_with_the_deleted_invoice(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    """The fix is a rate edited in QuickBooks: the request body is the same, so its requestid
    is too, and QuickBooks answers it with the invoice it created (and billbridge deleted) the
    first time. The export must create the invoice again under a new requestid."""
    qbo.configure_company(country="CA", multicurrency=True)
    combined = qbo.create_tax_code("GST/QST QC", [("GST", "5"), ("QST", "9.975")])
    store.set_mappings(CONNECTION, {"tax:*": combined})
    link(store, "cust_ca", qbo.create_customer("Maple Inc", currency="CAD"))
    body = payload("inv_qst_fixed", "CAD", tax="15", customer="cust_ca")
    handle, result = await export(client, store, worker, body)
    assert "ProviderTotalsDiffer" in result.reason
    assert not qbo.invoices()

    qbo.set_tax_rate("QST", "10")  # 5% + 10% is the 15% billing charged
    await retry_export(client, body["id"])
    result = await handle.result()

    assert result.status == ExportStatus.EXPORTED, result.reason
    [invoice] = ours(qbo, body["id"])
    assert_matches_billing(invoice, body)
    creates = [
        r
        for r in qbo.requests()
        if r.method == "POST" and r.path.endswith("/invoice") and "operation" not in r.query
    ]
    # The first id twice (the second answered from QuickBooks' cache), then a new one.
    assert [r.replayed for r in creates] == [False, True, False]
    ids = [r.request_id for r in creates]
    assert ids[0] == ids[1] != ids[2]


async def test_foreign_currency_needs_multicurrency_then_a_customer_in_that_currency(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    body = payload("inv_eur", "EUR")
    handle, waiting = await export(client, store, worker, body)
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderSetupNeeded" in waiting.reason and "multicurrency is off" in waiting.reason
    assert "Currency > Multicurrency" in waiting.reason  # which setting to change
    assert not posts(qbo)

    qbo.configure_company(multicurrency=True)
    await retry_export(client, body["id"])
    # The linked QuickBooks customer is in USD: a person picks or creates one in EUR.
    for _ in range(100):
        waiting = await export_result(handle, body["id"])
        if "one currency" in waiting.reason:
            break
        await asyncio.sleep(0.1)
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert f"customer {customer_id} is in USD" in waiting.reason, waiting.reason
    assert not posts(qbo)


async def test_created_customer_gets_the_invoice_currency(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    qbo.configure_company(multicurrency=True)
    changed = billbridge(worker, "connections", "set", CONNECTION, "create_missing_customers=true")
    assert changed.returncode == 0, changed.stderr
    link(store, "cust_eu", None, "eu@example.test")
    body = payload("inv_eu_new", "EUR", customer="cust_eu")
    _, result = await export(client, store, worker, body)
    assert result.status == ExportStatus.EXPORTED, result.reason
    created = store.get_customer_link(CONNECTION, "cust_eu")
    [customer] = [c for c in qbo.customers() if c["Id"] == created]
    assert customer["CurrencyRef"]["value"] == "EUR"
    [invoice] = ours(qbo, body["id"])
    assert invoice["CurrencyRef"]["value"] == "EUR"
    assert_matches_billing(invoice, body)


async def test_quantities_with_more_than_seven_decimals_keep_the_exact_amount(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    lines = [
        SampleLine("item_seats", "Seats", Decimal("2.123456789"), Decimal("10.00")),
        SampleLine(
            "item_api_calls", "API calls", Decimal("1234.56789012"), Decimal("0.00123456789")
        ),
        # QuickBooks keeps Qty 1.0000000: sent as is, 1.0000000 x 1000000 would not give 1000000.04.
        SampleLine("item_seats", "Seats", Decimal("1.00000004"), Decimal("1000000")),
    ]
    body = build_invoice("inv_decimals", "cust_qb", "USD", lines)
    _, result = await export(client, store, worker, body)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [invoice] = ours(qbo, body["id"])
    amounts = [Decimal(str(line["Amount"])) for line in sales_lines(invoice)]
    assert amounts == [Decimal(line["amount"]) for line in body["line_items"]]
    for line in sales_lines(invoice):
        detail = line["SalesItemLineDetail"]
        for value in (detail["Qty"], detail["UnitPrice"]):
            assert -Decimal(str(value)).as_tuple().exponent <= 7  # type: ignore[operator]
    assert Decimal(str(invoice["TotalAmt"])) == Decimal(body["total"])
    assert "(quantity 1.00000004)" in sales_lines(invoice)[2]["Description"]


def test_quickbooks_keeps_seven_decimals_of_qty(
    store: Store, settings: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    client = provider(store, settings)
    detail = {"ItemRef": {"value": qbo.items()[0]["Id"]}, "Qty": 1.00000004, "UnitPrice": 1000000}
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": 1000000.04,
        "SalesItemLineDetail": detail,
    }
    with pytest.raises(QuickBooksFault) as refused:
        client._call(
            "creating the invoice",
            "POST",
            "invoice",
            json_body={"CustomerRef": {"value": customer_id}, "Line": [line]},
        )
    assert refused.value.code == "6070"


def test_corrected_request_gets_a_new_requestid(
    store: Store, settings: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    """A fault QuickBooks saved under a requestid does not block the corrected invoice."""
    qbo.configure_company(country="GB")
    first = qbo.create_tax_code("20.0% S", [("20.0% S", "20")])
    store.set_mappings(CONNECTION, {"tax:*": first})
    link(store, "cust_gb", qbo.create_customer("Albion Ltd", currency="GBP"))
    invoice = parse_invoice(payload("inv_fixed", "GBP", tax="20", customer="cust_gb"))
    submit_invoice(store, payload("inv_fixed", "GBP", tax="20", customer="cust_gb"))
    activities = ExportActivities(store, settings)
    lines = activities.load_invoice(invoice.id)[1]

    def planned() -> QuickBooksPlan:
        prepared = activities.prepare(invoice, lines, 1_700_000_000.0, write=True)
        assert isinstance(prepared.plan, QuickBooksPlan)
        return prepared.plan

    def push(plan: QuickBooksPlan) -> Any:
        quickbooks = activities.provider(CONNECTION, CONNECTION)
        context = PushContext(invoice.id, plan.body["CustomerRef"]["value"], 0.0)
        return quickbooks.push(plan, context)

    broken = planned()
    assert broken.request_id == planned().request_id  # the same request, the same id
    qbo.deactivate_tax_code(first)  # someone retires the code between check and write
    with pytest.raises(ProviderSetupNeeded, match="TaxCode"):
        push(broken)
    with pytest.raises(ProviderSetupNeeded, match="TaxCode"):
        push(broken)  # the same requestid: QuickBooks replays its fault
    replayed = [r for r in posts(qbo) if r.query.get("requestid") == broken.request_id]
    assert len(replayed) == 2

    second = qbo.create_tax_code("20.0% S (new)", [("20.0% S", "20")])
    store.set_mappings(CONNECTION, {"tax:*": second})
    fixed = planned()
    assert fixed.request_id != broken.request_id
    result = push(fixed)
    [created] = ours(qbo, invoice.id)
    assert result.external_id == created["Id"]
    assert Decimal(str(created["TxnTaxDetail"]["TotalTax"])) == billing_tax(
        payload("inv_fixed", "GBP", tax="20", customer="cust_gb")
    )


async def test_tax_fault_reads_the_company_again_and_the_fixed_invoice_gets_through(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    """Settings cached from an earlier export are stale: QuickBooks' fault 6000 makes the export
    wait, the retry reads the company again, and the corrected request is not answered with the
    fault QuickBooks saved for the first requestid."""
    _, first = await export(client, store, worker, payload("inv_cached"))
    assert first.status == ExportStatus.EXPORTED, first.reason
    qbo.configure_company(country="GB", home_currency="USD")  # now a VAT company
    store.set_mappings(CONNECTION, {"tax:*": qbo.create_tax_code("20.0% S", [("VAT", "20")])})
    body = payload("inv_stale", tax="20")
    handle, waiting = await export(client, store, worker, body)
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "TaxCode id TAX" in waiting.reason and "ProviderSetupNeeded" in waiting.reason

    await retry_export(client, body["id"])
    result = await export_result(handle, body["id"], through_attention=True)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [invoice] = ours(qbo, body["id"])
    assert_matches_billing(invoice, body)
    creates = [
        r.query.get("requestid")
        for r in posts(qbo)
        if r.path.endswith("/invoice") and "inv_stale" in str(r.body)
    ]
    assert len(creates) == 2 and len(set(creates)) == 2


async def test_code_with_two_rates_gets_each_billing_amount(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, customer_id: str
) -> None:
    qbo.configure_company(country="CA")
    combined = qbo.create_tax_code("GST/QST QC", [("GST", "5"), ("QST", "9.975")])
    store.set_mappings(CONNECTION, {"tax:*": combined})
    link(store, "cust_ca", qbo.create_customer("Maple Inc", currency="CAD"))
    body = payload("inv_gst_qst", "CAD", tax="14.975", customer="cust_ca")
    for line in body["line_items"]:  # billing states GST and QST apart
        [tax] = line["tax_amounts"]
        gst = (Decimal(line["amount"]) * Decimal("0.05")).quantize(Decimal("0.01"))
        qst = Decimal(tax["amount"]) - gst
        line["tax_amounts"] = [
            {**tax, "amount": str(gst), "tax_rate_description": "GST", "tax_rate_percentage": "5"},
            {
                **tax,
                "amount": str(qst),
                "tax_rate_description": "QST",
                "tax_rate_percentage": "9.975",
            },
        ]
    _, result = await export(client, store, worker, body)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [invoice] = ours(qbo, body["id"])
    assert_matches_billing(invoice, body)
    by_rate = {
        t["TaxLineDetail"]["TaxRateRef"]["name"]: Decimal(str(t["Amount"]))
        for t in invoice["TxnTaxDetail"]["TaxLine"]
    }
    stated = {
        name: sum(
            (
                Decimal(t["amount"])
                for line in body["line_items"]
                for t in line["tax_amounts"]
                if t["tax_rate_description"] == name
            ),
            Decimal(0),
        )
        for name in ("GST", "QST")
    }
    assert by_rate == stated
