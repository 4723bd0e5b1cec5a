"""BILL (Bill.com) exports: the plan, the exactly-once push, the limits, each class of error, and
exports through the real workflow on the dev server, a worker SIGKILLed mid-push included."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from billbridge.activities.providers.base import ConnectionConfig, PushContext, check_plan
from billbridge.activities.providers.billcom import BillcomInvoiceProvider, BillcomPlan
from billbridge.activities.providers.billcom_client import BillcomLimits, ProcessLimits
from billbridge.activities.store import Store
from billbridge.core.breakdown import break_down
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import (
    NEEDS_ATTENTION,
    NON_RETRYABLE,
    ExportError,
    ProviderCustomerMissing,
    ProviderItemMissing,
    ProviderRateLimited,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderTotalsDiffer,
    ProviderUnavailable,
)
from billbridge.core.messages import ExportStatus
from billbridge.core.models import Invoice
from billbridge.emulators.billcom import BillcomEmulator, Fault
from billbridge.starter.door import export_result, start_export, submit_invoice, upsert_customers
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from conftest import retry_now, start_worker, wait_for

CONNECTION = "bill.com"
LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


@dataclass
class Books:
    """The emulated BILL organization as seeded: items, one customer, and a provider on it."""

    bill: BillcomEmulator
    provider: BillcomInvoiceProvider
    items: dict[str, str]  # mapping key -> BILL item id
    customer_id: str

    def planned(self, payload: dict[str, Any], customer_id: str | None = None) -> BillcomPlan:
        invoice = Invoice.model_validate(payload)
        breakdown = break_down(invoice, invoice.line_items)
        self.provider.resolve_items(set(self.items.values()))
        plan = self.provider.plan(
            invoice, breakdown, self.items, customer_id or self.customer_id, time.time()
        )
        check_plan(plan, breakdown)
        return plan

    def push(self, plan: BillcomPlan, *, may_have_written: bool = False) -> Any:
        context = PushContext(
            plan.invoice_id, plan.customer_id, time.time(), may_have_written=may_have_written
        )
        return self.provider.push(plan, context)

    def active(self, number: str) -> list[dict[str, Any]]:
        return [
            i for i in self.bill.invoices() if i["invoiceNumber"] == number and not i["archived"]
        ]


def make_provider(
    bill: BillcomEmulator,
    credential: dict[str, Any] | None = None,
    limits: BillcomLimits | None = None,
    connection: ConnectionSettings | None = None,
) -> BillcomInvoiceProvider:
    """A provider of a connection to `bill` (credential None: the emulator's default account),
    with process-wide sessions and counters of its own."""
    settings = Settings(api_bases={CONNECTION: bill.base_url})
    text = json.dumps(credential) if credential is not None else None
    config = ConnectionConfig(CONNECTION, text, connection or ConnectionSettings())
    return BillcomInvoiceProvider.from_settings(
        settings, config, limits=limits, shared=ProcessLimits()
    )


def seeded(
    bill: BillcomEmulator,
    credential: dict[str, Any] | None = None,
    connection: ConnectionSettings | None = None,
) -> Books:
    provider = make_provider(bill, credential, connection=connection)
    items = {
        "item_seats": provider.ensure_item("Seats"),
        "item_api_calls": bill.create_item("API calls"),
        "adjustment:tax": bill.create_item("Sales tax"),
        "adjustment:discount": bill.create_item("Discount", item_type="DISCOUNT"),
    }
    return Books(bill, provider, items, bill.create_customer("Acme Corp", "billing@acme.test"))


@pytest.fixture
def bill() -> Iterator[BillcomEmulator]:
    with BillcomEmulator() as emulator:
        yield emulator


@pytest.fixture
def books(bill: BillcomEmulator) -> Books:
    return seeded(bill)


def posts(bill: BillcomEmulator) -> list[Any]:
    return [r for r in bill.requests() if r.method == "POST" and r.path == "/v3/invoices"]


# -- the plan ------------------------------------------------------------------------------------


def test_each_billing_line_becomes_a_bill_line_with_its_item_and_period(books: Books) -> None:
    payload = build_invoice(
        "inv_plan", "cust_bill", "USD", LINES, tax_rate=Decimal("8.25"), memo="Thank you!"
    )
    plan = books.planned(payload)
    body = plan.body
    assert body["invoiceNumber"] == payload["invoice_number"]
    assert body["invoiceDate"] == payload["invoice_date"][:10]
    assert body["dueDate"] == payload["due_date"][:10]
    assert body["customer"] == {"id": books.customer_id}
    assert body["processingOptions"] == {"sendEmail": False}
    seats, calls, tax_1, tax_2, memo = body["invoiceLineItems"]
    assert (seats["quantity"], seats["price"]) == (3, 12.5)
    assert seats["classifications"] == {"itemId": books.items["item_seats"]}
    assert seats["description"].startswith("Seats (") and " to " in seats["description"]
    # 1234 x 0.0125 = 15.425 billed 15.43: no exact price, so 1 x 15.43 and the quantity noted.
    assert (calls["quantity"], calls["price"]) == (1, 15.43)
    assert "(quantity 1234)" in calls["description"]
    assert {tax_1["classifications"]["itemId"], tax_2["classifications"]["itemId"]} == {
        books.items["adjustment:tax"]
    }
    assert memo == {"quantity": 1, "price": 0, "description": "Thank you!"}
    pushed = books.push(plan)
    assert Decimal(pushed.provider_total) == Decimal(payload["total"])
    [created] = books.bill.invoices()
    assert created["totalAmount"] == float(payload["total"])
    assert [r.path for r in books.bill.requests()].count("/v3/invoices") == 1  # no lookup


@pytest.mark.parametrize(
    ("number", "said"),
    [("INV:7", "contains ':'"), ("A,B", "contains ','"), ("9" * 101, "at most 100")],
)
def test_numbers_bill_cannot_look_up_are_refused_before_anything_is_sent(
    books: Books, number: str, said: str
) -> None:
    payload = build_invoice("inv_number", "cust_bill", "USD", LINES, invoice_number=number)
    books.bill.clear_requests()
    with pytest.raises(ProviderRejected, match=f"invoice_number: .*{said}") as refused:
        books.planned(payload)
    assert refused.value.type_name in NON_RETRYABLE
    assert not [r for r in books.bill.requests() if r.method == "POST" and r.path != "/v3/login"]


def test_a_currency_the_organization_cannot_take_needs_setup_before_any_write() -> None:
    with BillcomEmulator(invoice_currencies=["USD", "EUR"]) as bill:
        usd_only = seeded(bill)
        euros = build_invoice("inv_eur", "cust_bill", "EUR", LINES)
        with pytest.raises(ProviderSetupNeeded, match="billcom_invoice_currencies=EUR") as setup:
            usd_only.planned(euros)
        assert setup.value.type_name in NEEDS_ATTENTION
        international = seeded(
            bill, connection=ConnectionSettings(billcom_invoice_currencies="EUR")
        )
        with pytest.raises(ProviderSetupNeeded, match="invoices in USD"):
            international.planned(euros)  # its customer is a USD customer
        customer = build_customer("cust_eu", payment_provider=CONNECTION, currency="EUR")
        from billbridge.core.models import Customer

        eu_customer = international.provider.find_or_create_customer(
            Customer.model_validate(customer)
        )
        assert {c["id"]: c.get("invoiceCurrency") for c in bill.customers()}[eu_customer] == "EUR"
        pushed = international.push(international.planned(euros, eu_customer))
        assert Decimal(pushed.provider_total) == Decimal(euros["total"])
        assert not posts(bill)[:-1]  # the one create is the only invoice write
        with pytest.raises(ProviderRejected, match="two decimals"):
            international.planned(build_invoice("inv_kwd", "cust_bill", "KWD", LINES))


# -- exactly once ------------------------------------------------------------------------------


def test_a_retry_finds_the_invoice_by_number_instead_of_creating_it_again(books: Books) -> None:
    plan = books.planned(build_invoice("inv_retry", "cust_bill", "USD", LINES))
    # The create went through, its answer was lost.
    books.bill.add_fault(Fault(kind="drop_after", method="POST", path_prefix="/v3/invoices"))
    with pytest.raises(ProviderUnavailable):
        books.push(plan)
    again = books.push(plan, may_have_written=True)
    [kept] = books.active(plan.invoice_number)
    assert again.external_id == kept["id"] and len(posts(books.bill)) == 1


def test_a_late_create_of_an_earlier_attempt_is_found_and_one_invoice_stays(
    books: Books,
) -> None:
    plan = books.planned(build_invoice("inv_late", "cust_bill", "USD", LINES))
    # While this attempt's create is on its way, an earlier attempt's create lands at BILL.
    books.bill.add_fault(Fault(kind="delay", seconds=0.5, method="POST", path_prefix="/v3/inv"))
    answer: list[Any] = []
    pushing = threading.Thread(
        target=lambda: answer.append(books.push(plan, may_have_written=True))
    )
    pushing.start()
    for _ in range(200):
        looked_up = any(r.path == "/v3/invoices" for r in books.bill.requests())
        if looked_up and books.bill.in_flight() == 1:
            break
        time.sleep(0.01)
    with books.bill.store.lock:
        earlier = books.bill.store.create_invoice(plan.body)["id"]
    pushing.join()
    [kept] = books.active(plan.invoice_number)
    assert kept["id"] == earlier == answer[0].external_id
    assert len(books.bill.invoices()) == 2  # the newer one archived, not deleted


def test_a_total_bill_computes_differently_is_archived_and_needs_attention() -> None:
    # BILL keeping two decimals of the price (UNCONFIRMED) would round 0.125 to 0.13.
    with BillcomEmulator(price_places=2) as bill:
        books = seeded(bill)
        lines = [SampleLine("item_api_calls", "API calls", Decimal(4), Decimal("0.125"))]
        plan = books.planned(build_invoice("inv_rounding", "cust_bill", "USD", lines))
        with pytest.raises(
            ProviderTotalsDiffer, match=r"0\.52 differs from the billing total 0\.50"
        ):
            books.push(plan)
        [archived] = bill.invoices()
        assert archived["archived"] and archived["recordStatus"] == "INACTIVE"
        assert ProviderTotalsDiffer.__name__ in NEEDS_ATTENTION


# -- limits -----------------------------------------------------------------------------------


def test_pushes_stay_within_three_concurrent_requests_before_bill_refuses(books: Books) -> None:
    plans = [
        books.planned(build_invoice(f"inv_many_{n}", "cust_bill", "USD", LINES)) for n in range(8)
    ]
    books.bill.add_fault(
        Fault(kind="delay", seconds=0.2, count=None, method="POST", path_prefix="/v3/invoices")
    )
    threads = [threading.Thread(target=books.push, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(books.bill.invoices()) == 8
    assert books.bill.peak_concurrency() == 3
    assert books.bill.refusals() == {"BDC_1144": 0, "BDC_1322": 0}


def test_the_hourly_budget_is_kept_before_bill_refuses(bill: BillcomEmulator) -> None:
    customer = bill.create_customer("Acme Corp", "billing@acme.test")
    provider = make_provider(bill, limits=BillcomLimits(requests_per_hour=3))
    provider.check_credentials()  # the login and one call
    provider.check_customer(customer)
    with pytest.raises(ProviderRateLimited, match="requests for the hour are used up") as spent:
        provider.check_customer(customer)
    assert spent.value.retry_after is not None and spent.value.retry_after.total_seconds() <= 3605
    assert len(bill.requests()) == 3


# -- one test per class of error ----------------------------------------------------------------


def test_retryable_errors(books: Books) -> None:
    provider, customer = books.provider, books.customer_id
    provider.check_customer(customer)
    cases: list[tuple[Fault, type[ExportError]]] = [
        (Fault(kind="status", status=503), ProviderUnavailable),
        (Fault(kind="status", status=400, message="BDC_1001"), ProviderUnavailable),
        (Fault(kind="status", status=500, message="BDC_1002"), ProviderUnavailable),
        (Fault(kind="status", status=400, message="BDC_1322"), ProviderRateLimited),
        (Fault(kind="status", status=429, retry_after=7), ProviderRateLimited),
        (Fault(kind="drop"), ProviderUnavailable),
    ]
    for fault, expected in cases:
        books.bill.add_fault(fault)
        with pytest.raises(expected) as raised:
            provider.check_customer(customer)
        assert raised.value.retryable, fault
    assert raised.type is ProviderUnavailable
    books.bill.add_fault(Fault(kind="status", status=429, retry_after=7))
    with pytest.raises(ProviderRateLimited) as limited:
        provider.check_customer(customer)
    assert limited.value.retry_after is not None and limited.value.retry_after.total_seconds() == 7
    # BDC_1144: wait for the next hour; meanwhile nothing more is sent with this devKey.
    books.bill.add_fault(Fault(kind="status", status=400, message="BDC_1144"))
    with pytest.raises(ProviderRateLimited, match="next hour") as hourly:
        provider.check_customer(customer)
    assert hourly.value.retry_after is not None
    assert 0 < hourly.value.retry_after.total_seconds() <= 3605
    sent = len(books.bill.requests())
    with pytest.raises(ProviderRateLimited, match="used up"):
        provider.check_customer(customer)
    assert len(books.bill.requests()) == sent


def test_needs_attention_errors(books: Books) -> None:
    plan = books.planned(build_invoice("inv_attention", "cust_bill", "USD", LINES))
    books.bill.archive("item", books.items["item_seats"])
    with pytest.raises(ProviderItemMissing, match=books.items["item_seats"]) as item:
        books.push(plan)
    books.bill.archive("customer", books.customer_id)
    with pytest.raises(ProviderCustomerMissing, match="archived") as customer:
        books.push(plan)
    assert {item.value.type_name, customer.value.type_name} <= NEEDS_ATTENTION
    assert not books.bill.invoices()


def test_not_retryable_errors(books: Books) -> None:
    plan = books.planned(build_invoice("inv_invalid", "cust_bill", "USD", LINES))
    books.bill.add_fault(
        Fault(kind="status", status=400, message="BDC_1000 invoiceDate is invalid", method="POST")
    )
    with pytest.raises(ProviderRejected, match="invoiceDate is invalid") as refused:
        books.push(plan)
    assert not refused.value.retryable and refused.value.type_name in NON_RETRYABLE
    assert refused.value.type_name not in NEEDS_ATTENTION
    # "Unknown error" with a 4xx: BILL's own directions point at the request (a misspelt field).
    books.bill.add_fault(Fault(kind="status", status=400, message="BDC_1002", method="POST"))
    with pytest.raises(ProviderRejected, match="unknown or misspelt") as unknown:
        books.push(books.planned(build_invoice("inv_unknown", "cust_bill", "USD", LINES)))
    assert not unknown.value.retryable


# -- through the export workflow on the dev server -----------------------------------------------


@pytest.fixture
def settings(settings: Settings, bill: BillcomEmulator) -> Settings:
    return replace(settings, api_bases={**settings.api_bases, CONNECTION: bill.base_url})


@pytest.fixture
def linked(books: Books, store: Store) -> Books:
    store.set_mappings(CONNECTION, books.items)
    upsert_customers(
        store,
        [
            build_customer(
                "cust_bill",
                payment_provider=CONNECTION,
                payment_provider_id=books.customer_id,
                name="Acme Corp",
                email="billing@acme.test",
            )
        ],
    )
    return books


async def test_export_through_the_workflow(
    client: Client, store: Store, worker: Settings, linked: Books
) -> None:
    payload = build_invoice("inv_bill_1", "cust_bill", "USD", LINES, tax_rate=Decimal("5"))
    invoice = submit_invoice(store, payload)
    result = await export_result(
        await start_export(client, invoice.id, worker.task_queue), invoice.id
    )
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert result.provider == CONNECTION
    created = linked.provider.read_invoice(result.external_id)
    assert linked.bill.invoices() == [created]
    assert (
        Decimal(result.provider_total)
        == Decimal(payload["total"])
        == Decimal(str(created["totalAmount"]))
    )
    assert created["invoiceNumber"] == payload["invoice_number"]
    record = store.get_export(invoice.id, CONNECTION)
    assert record is not None and record.status == "exported" and record.external_id


async def test_missing_customers_are_found_by_email_or_created(
    client: Client, store: Store, worker: Settings, linked: Books
) -> None:
    store.upsert_connection(CONNECTION, CONNECTION, settings={"create_missing_customers": True})
    upsert_customers(
        store,
        [
            build_customer("cust_known", payment_provider=CONNECTION, email="billing@acme.test"),
            build_customer("cust_new", payment_provider=CONNECTION, email="new@example.test"),
        ],
    )
    for customer in ("cust_known", "cust_new"):
        invoice = submit_invoice(store, build_invoice(f"inv_{customer}", customer, "USD", LINES))
        handle = await start_export(client, invoice.id, worker.task_queue)
        result = await export_result(handle, invoice.id)
        assert result.status == ExportStatus.EXPORTED, result.reason
    assert store.get_customer_link(CONNECTION, "cust_known") == linked.customer_id
    created = store.get_customer_link(CONNECTION, "cust_new")
    emails = {c["id"]: c["email"] for c in linked.bill.customers()}
    assert created and created != linked.customer_id and emails[created] == "new@example.test"


async def test_a_customer_bill_does_not_know_waits_as_needs_attention(
    client: Client, store: Store, worker: Settings, linked: Books
) -> None:
    upsert_customers(
        store,
        [build_customer("cust_gone", payment_provider=CONNECTION, payment_provider_id="0cu0x")],
    )
    invoice = submit_invoice(store, build_invoice("inv_gone", "cust_gone", "USD", LINES))
    result = await export_result(
        await start_export(client, invoice.id, worker.task_queue), invoice.id
    )
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderCustomerMissing" in result.reason and "0cu0x" in result.reason
    assert not linked.bill.invoices()


async def test_sigkill_while_creating_the_invoice_exports_exactly_once(
    client: Client,
    store: Store,
    settings: Settings,
    linked: Books,
    worker_process: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    bill = linked.bill
    # BILL takes 8 s over the create (and still creates the invoice, as it would for a client
    # that vanished); the worker is killed while it waits.
    bill.add_fault(Fault(kind="delay", seconds=8.0, method="POST", path_prefix="/v3/invoices"))
    first = start_worker(settings, tmp_path / "worker-1.log")
    worker_process.append(first)
    payload = build_invoice("inv_bill_crash", "cust_bill", "USD", LINES, tax_rate=Decimal("7"))
    invoice = submit_invoice(store, payload)
    handle = await start_export(client, invoice.id, settings.task_queue)
    for _ in range(600):
        progress = await handle.query(ExportInvoiceWorkflow.progress)
        if progress.step == ExportStatus.PUSHING:
            break
        await asyncio.sleep(0.1)
    assert progress.step == ExportStatus.PUSHING
    await asyncio.sleep(2.0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert not bill.invoices(), "killed before BILL answered the create"
    await wait_for(lambda: len(bill.invoices()) == 1, within=15)

    worker_process.append(start_worker(settings, tmp_path / "worker-2.log"))
    await retry_now(client, handle.id)
    result = await export_result(handle, invoice.id)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [created] = bill.invoices()
    assert result.external_id == created["id"] and not created["archived"]
    assert Decimal(str(created["totalAmount"])) == Decimal(payload["total"])
    # The retry found the invoice by its number before writing anything.
    assert len(posts(bill)) == 1
    lookups = [r for r in bill.requests() if r.method == "GET" and r.path == "/v3/invoices"]
    assert lookups[0].query["filters"] == f"invoiceNumber:eq:{payload['invoice_number']}"
    record = store.get_export(invoice.id, CONNECTION)
    assert record is not None and record.status == "exported"
