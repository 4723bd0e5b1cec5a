"""NetSuite exports through the real workflow (Temporal dev server, the NetSuite emulator over
HTTP): every field carried over, both auth methods, customers found or created by external id,
totals that differ, currencies not set up, a SIGKILLed worker in the middle of the upsert; and
the provider's error classes, exactly-once retries and concurrency cap against the emulator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from billbridge.activities.providers.base import ConnectionConfig, PushContext
from billbridge.activities.providers.netsuite import (
    NetSuiteInvoiceProvider,
    NetSuitePlan,
    external_id,
)
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.breakdown import break_down
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import (
    NEEDS_ATTENTION,
    NON_RETRYABLE,
    ExportError,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderItemMissing,
    ProviderRateLimited,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderUnavailable,
)
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.core.models import Invoice
from billbridge.emulators.netsuite import Fault, NetSuiteEmulator
from billbridge.starter.door import (
    export_result,
    retry_export,
    start_export,
    submit_invoice,
    upsert_customers,
)
from billbridge.starter.samples import LineDiscount, SampleLine, build_customer, build_invoice
from billbridge.workers.dev_server import DevServer
from conftest import CODEC_TEST_KEY, process_env, retry_now, wait_for, workflow_show

CONNECTION = "netsuite"
INVOICE_PATH = "/services/rest/record/v1/invoice/"
LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


@pytest.fixture
def ns() -> Iterator[NetSuiteEmulator]:
    with NetSuiteEmulator(concurrency_limit=5) as emulator:
        yield emulator


@pytest.fixture
def settings(settings: Settings, ns: NetSuiteEmulator, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens credentials
    return replace(settings, api_bases={**settings.api_bases, CONNECTION: ns.base_url})


def connect(
    store: Store, settings: Settings, credentials: dict[str, str], **connection: Any
) -> None:
    """Seal the credential in the store, as `connections add` does after checking it."""
    sealed = SecretBox.from_settings(settings).seal(json.dumps(credentials), CONNECTION)
    store.upsert_connection(
        CONNECTION,
        CONNECTION,
        credentials_ref=sealed,
        settings=ConnectionSettings(**connection).model_dump(mode="json"),
    )


@dataclass
class Books:
    items: dict[str, str]  # mapping key -> NetSuite item id
    customer_id: str


@pytest.fixture
def books(ns: NetSuiteEmulator, store: Store, settings: Settings) -> Books:
    items = {line.item_id: ns.create_item(line.item_name) for line in LINES}
    items["adjustment:tax"] = ns.create_item("Sales tax (as billed)", "otherChargeSaleItem")
    items["adjustment:discount"] = ns.create_item("Discount", "discountItem")
    store.set_mappings(CONNECTION, items)
    customer_id = ns.create_customer("Acme Corp", "billing@acme.test")
    upsert_customers(
        store,
        [
            build_customer(
                "cust_ns",
                payment_provider=CONNECTION,
                payment_provider_id=customer_id,
                name="Acme Corp",
                email="billing@acme.test",
            )
        ],
    )
    connect(store, settings, ns.m2m_credentials(), netsuite_subsidiary="1")
    return Books(items, customer_id)


def payload(invoice_id: str, customer: str = "cust_ns", **options: Any) -> dict[str, Any]:
    return build_invoice(invoice_id, customer, options.pop("currency", "USD"), LINES, **options)


async def export(
    client: Client, store: Store, task_queue: str, body: dict[str, Any]
) -> ExportResult:
    invoice = submit_invoice(store, body)
    handle = await start_export(client, invoice.id, task_queue)
    return await export_result(handle, invoice.id)


# -- through the workflow ------------------------------------------------------------------------


async def test_export_carries_every_field_and_checks_the_total(
    client: Client,
    store: Store,
    worker: Settings,
    ns: NetSuiteEmulator,
    books: Books,
    temporal_server: DevServer,
) -> None:
    ns.configure(allow_tran_id_override=True)
    connect(store, worker, ns.m2m_credentials(), netsuite_subsidiary="1", netsuite_set_tran_id=True)
    body = payload(
        "inv_ns_1",
        tax_rate=Decimal("8.25"),
        line_discount=LineDiscount(percentage=Decimal("0.10"), lines=(0,)),
        invoice_number="INV-42",
        memo="Thank you",
    )
    result = await export(client, store, worker.task_queue, body)

    assert result.status == ExportStatus.EXPORTED, result.reason
    invoice = ns.invoice("inv_ns_1")
    assert invoice is not None and result.external_id == invoice["id"]
    assert (
        Decimal(str(invoice["total"])) == Decimal(body["total"]) == Decimal(result.provider_total)
    )
    assert invoice["entity"]["id"] == books.customer_id
    assert invoice["subsidiary"] == {"id": "1"} and invoice["currency"]["id"] == "1"
    assert invoice["tranId"] == "INV-42" and invoice["memo"] == "Thank you"
    assert invoice["tranDate"] == body["invoice_date"][:10]
    assert invoice["dueDate"] == body["due_date"][:10]
    lines = invoice["item"]["items"]
    assert [line["item"]["id"] for line in lines] == [
        books.items["item_seats"],
        books.items["adjustment:discount"],
        books.items["item_api_calls"],
        books.items["adjustment:tax"],
        books.items["adjustment:tax"],
    ]
    seats = lines[0]
    assert (
        seats["quantity"] == 3
        and seats["rate"] == Decimal("12.5")
        and seats["amount"] == Decimal("37.5")
    )
    assert "service period" in seats["description"] and seats["description"].startswith("Seats")
    assert lines[1]["amount"] < 0  # the discount, a mapped line of its own
    [put] = [r for r in ns.requests() if r.method == "PUT" and r.path.startswith(INVOICE_PATH)]
    assert put.path.endswith("/eid:inv_ns_1") and put.query == {"replace": "item"}
    assert put.auth == "Bearer"
    record = store.get_export("inv_ns_1", CONNECTION)
    assert (
        record is not None and record.status == "exported" and record.external_id == invoice["id"]
    )
    # No credential and no customer data in Temporal's history.
    show = await workflow_show(temporal_server.address, "export-invoice/inv_ns_1")
    assert show.returncode == 0, show.stderr
    for secret in ("BEGIN PRIVATE KEY", ns.client_id, "billing@acme.test", "Acme Corp"):
        assert secret not in show.stdout


async def test_tba_export_with_the_accounts_own_numbering(
    client: Client, store: Store, worker: Settings, ns: NetSuiteEmulator, books: Books
) -> None:
    connect(store, worker, ns.tba_credentials())
    body = payload("inv_ns_tba", invoice_number="INV-7")
    result = await export(client, store, worker.task_queue, body)
    assert result.status == ExportStatus.EXPORTED, result.reason
    invoice = ns.invoice("inv_ns_tba")
    assert invoice is not None and Decimal(str(invoice["total"])) == Decimal(body["total"])
    assert invoice["tranId"] != "INV-7" and invoice["memo"] == "Invoice INV-7"
    assert {r.auth for r in ns.requests() if r.path.startswith("/services/rest/record")} == {
        "OAuth"
    }


async def test_missing_customers_are_found_or_created_by_external_id(
    client: Client, store: Store, worker: Settings, ns: NetSuiteEmulator, books: Books
) -> None:
    connect(
        store, worker, ns.m2m_credentials(), netsuite_subsidiary="1", create_missing_customers=True
    )
    known = ns.create_customer("Known Co", external_id="cust_known")
    upsert_customers(
        store,
        [
            build_customer("cust_known", payment_provider=CONNECTION, email="known@example.test"),
            build_customer("cust.new", payment_provider=CONNECTION, email="new@example.test"),
        ],
    )
    results = [
        await export(client, store, worker.task_queue, payload(invoice_id, customer))
        for invoice_id, customer in (
            ("inv_ns_known", "cust_known"),
            ("inv_ns_new_1", "cust.new"),
            ("inv_ns_new_2", "cust.new"),
        )
    ]
    assert [r.status for r in results] == [ExportStatus.EXPORTED] * 3, [r.reason for r in results]
    assert store.get_customer_link(CONNECTION, "cust_known") == known
    created = store.get_customer_link(CONNECTION, "cust.new")
    [customer] = [c for c in ns.customers() if c["id"] == created]
    assert customer["externalId"] == external_id("cust.new") != "cust.new"  # normalised
    assert customer["email"] == "new@example.test" and customer["subsidiary"] == {"id": "1"}
    assert len(ns.customers()) == 3  # Acme, Known Co and the one created, once
    invoices = {i["externalId"]: i["entity"]["id"] for i in ns.invoices()}
    assert invoices == {"inv_ns_known": known, "inv_ns_new_1": created, "inv_ns_new_2": created}


async def test_a_total_netsuite_computes_differently_is_removed_and_waits(
    client: Client, store: Store, worker: Settings, ns: NetSuiteEmulator, books: Books
) -> None:
    ns.configure(tax_rate=Decimal(10))  # a SuiteTax engine taxing the lines on its own
    invoice = submit_invoice(store, payload("inv_ns_taxed"))
    handle = await start_export(client, invoice.id, worker.task_queue)
    waiting = await export_result(handle, invoice.id)
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderTotalsDiffer" in waiting.reason and "deleted" in waiting.reason
    assert ns.invoices() == []  # nothing left in the books
    ns.configure(tax_rate=None)  # the tax codes fixed in NetSuite
    await retry_export(client, invoice.id)
    done = await export_result(handle, invoice.id, through_attention=True)
    assert done.status == ExportStatus.EXPORTED, done.reason
    assert [i["externalId"] for i in ns.invoices()] == ["inv_ns_taxed"]


async def test_a_currency_the_account_lacks_waits_before_anything_is_written(
    client: Client, store: Store, worker: Settings, ns: NetSuiteEmulator, books: Books
) -> None:
    result = await export(client, store, worker.task_queue, payload("inv_ns_chf", currency="CHF"))
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderSetupNeeded" in result.reason and "CHF is not set up" in result.reason
    assert not [r for r in ns.requests() if r.method in ("PUT", "POST") and "record" in r.path]


async def test_sigkill_during_the_upsert_leaves_one_invoice(
    client: Client,
    store: Store,
    settings: Settings,
    ns: NetSuiteEmulator,
    books: Books,
    worker_process: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # NetSuite takes 8 s over the upsert (and still writes the invoice, as it would for a
    # client that vanished); the worker is killed while it waits for the answer.
    ns.add_fault(Fault(kind="delay", seconds=8.0, method="PUT", path_prefix=INVOICE_PATH))
    env = {**process_env(settings), "NETSUITE_API_BASE": ns.base_url}

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / name, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "billbridge.workers.export_worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker_process.append(process)
        return process

    first = start_worker("worker-1.log")
    body = payload("inv_ns_crash")
    invoice = submit_invoice(store, body)
    handle = await start_export(client, invoice.id, settings.task_queue)
    # The push's upsert is in flight at NetSuite: the worker dies waiting for its answer.
    await wait_for(
        lambda: any(
            method == "PUT" and path.startswith(INVOICE_PATH)
            for method, path in ns.requests_in_flight()
        ),
        within=60,
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert ns.invoice("inv_ns_crash") is None, "killed before NetSuite answered the upsert"
    await wait_for(lambda: ns.invoice("inv_ns_crash") is not None, within=15)

    start_worker("worker-2.log")
    await retry_now(client, handle.id)
    result = await export_result(handle, invoice.id)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [written] = [i for i in ns.invoices() if i["externalId"] == "inv_ns_crash"]
    assert Decimal(str(written["total"])) == Decimal(body["total"])
    assert result.external_id == written["id"]
    # The retry read the invoice by its external id and wrote nothing more.
    puts = [r for r in ns.requests() if r.method == "PUT" and r.path.startswith(INVOICE_PATH)]
    assert len(puts) == 1


# -- the provider against the emulator -----------------------------------------------------------


def make_provider(
    ns: NetSuiteEmulator, credentials: dict[str, str], **connection: Any
) -> NetSuiteInvoiceProvider:
    built = NetSuiteInvoiceProvider.from_settings(
        Settings(api_bases={CONNECTION: ns.base_url}),
        ConnectionConfig(CONNECTION, json.dumps(credentials), ConnectionSettings(**connection)),
    )
    built.client.sleep = lambda seconds: None  # the pauses are the client's; not waited here
    return built


def planned(
    provider: NetSuiteInvoiceProvider, items: dict[str, str], customer_id: str, invoice_id: str
) -> NetSuitePlan:
    invoice = Invoice.model_validate(payload(invoice_id))
    breakdown = break_down(invoice, invoice.line_items)
    mapped = {**provider.resolve_items(set(items.values())), **items}
    mapped.update(provider.resolve_more_mappings(breakdown, lambda keys: {}))
    return provider.plan(invoice, breakdown, mapped, customer_id, 0.0)


def context(plan: NetSuitePlan, *, may_have_written: bool = False) -> PushContext:
    return PushContext(
        invoice_id=plan.invoice_id,
        provider_customer_id="",
        push_started_at=0.0,
        may_have_written=may_have_written,
    )


@pytest.fixture
def direct(ns: NetSuiteEmulator) -> tuple[NetSuiteInvoiceProvider, dict[str, str], str]:
    items = {line.item_id: ns.create_item(line.item_name) for line in LINES}
    return make_provider(ns, ns.tba_credentials()), items, ns.create_customer("Direct Co")


def test_error_classes(
    ns: NetSuiteEmulator, direct: tuple[NetSuiteInvoiceProvider, dict[str, str], str]
) -> None:
    provider, items, customer = direct

    def push_fails(invoice_id: str, change: Any = None) -> ExportError:
        plan = planned(provider, items, customer, invoice_id)
        if change is not None:
            change(plan)
        with pytest.raises(ExportError) as caught:
            provider.push(plan, context(plan))
        return caught.value

    # retryable: 5xx, and a 429 that outlasts the client's own retries
    ns.add_fault(Fault(kind="status", status=503, method="PUT"))
    assert isinstance(push_fails("inv_e1"), ProviderUnavailable)
    ns.add_fault(Fault(kind="status", status=429, method="PUT", count=None))
    limited = push_fails("inv_e2")
    assert isinstance(limited, ProviderRateLimited) and limited.retryable
    ns.clear_faults()
    # needs attention: the mapped item went inactive, the customer went inactive, no permission
    ns.deactivate_item(items["item_seats"])  # after resolve_items checked it
    item_missing = push_fails("inv_e3")
    assert isinstance(item_missing, ProviderItemMissing) and "item.items[0].item" in str(
        item_missing
    )
    ns.store.records["item"][items["item_seats"]]["isInactive"] = False
    ns.deactivate_customer(customer)
    assert isinstance(push_fails("inv_e4"), ProviderCustomerMissing)
    ns.store.records["customer"][customer]["isInactive"] = False
    ns.add_fault(Fault(kind="status", status=403, method="PUT"))
    assert isinstance(push_fails("inv_e5"), ProviderAuthFailed)
    for needs_attention in (ProviderItemMissing, ProviderCustomerMissing, ProviderAuthFailed):
        assert needs_attention.__name__ in NEEDS_ATTENTION
    # not retryable: NetSuite refuses our data
    rejected = push_fails("inv_e6", lambda plan: plan.body.update(dueDate="31/01/2025"))
    assert isinstance(rejected, ProviderRejected) and rejected.type_name == "ProviderRejected"
    assert "INVALID_CONTENT at dueDate" in str(rejected) and "ProviderRejected" in NON_RETRYABLE
    assert ns.invoices() == []


def test_currency_checks_come_before_any_write(
    ns: NetSuiteEmulator, direct: tuple[NetSuiteInvoiceProvider, dict[str, str], str]
) -> None:
    provider, _, _ = direct
    ns.add_currency("CHF", 2, inactive=True)
    for symbol, state in (("CHF", "is inactive"), ("SEK", "is not set up")):
        with pytest.raises(ProviderSetupNeeded) as caught:
            provider.currency(symbol)
        assert state in str(caught.value)
    ns.add_currency("KWD", 2)  # NetSuite keeps 0 or 2 decimals; KWD bills 3
    invoice = Invoice.model_validate(
        build_invoice("inv_kwd", "c", "KWD", [SampleLine("i", "I", Decimal(1), Decimal("1.005"))])
    )
    breakdown = break_down(invoice, invoice.line_items)
    mapped = {"i": "1", **provider.resolve_more_mappings(breakdown, lambda keys: {})}
    with pytest.raises(ProviderRejected, match="KWD with 2 decimals"):
        provider.plan(invoice, breakdown, mapped, "1", 0.0)
    assert not [r for r in ns.requests() if r.method != "POST"]  # only SuiteQL lookups


def test_a_write_whose_answer_was_lost_is_found_not_repeated(
    ns: NetSuiteEmulator, direct: tuple[NetSuiteInvoiceProvider, dict[str, str], str]
) -> None:
    provider, items, customer = direct
    plan = planned(provider, items, customer, "inv.lost/1")
    assert plan.external_id.startswith("inv_lost_1-")  # normalised, with a digest
    ns.add_fault(Fault(kind="drop_after", method="PUT", path_prefix=INVOICE_PATH))
    with pytest.raises(ProviderUnavailable):
        provider.push(plan, context(plan))
    result = provider.push(plan, context(plan, may_have_written=True))
    [invoice] = ns.invoices()
    assert result.external_id == invoice["id"] and invoice["externalId"] == plan.external_id
    assert len([r for r in ns.requests() if r.method == "PUT"]) == 1
    # Even a second upsert of the same plan keeps one invoice with its lines once.
    provider.push(plan, context(plan))
    [again] = ns.invoices()
    assert len(again["item"]["items"]) == len(plan.body["item"]["items"])
    assert Decimal(str(again["total"])) == Decimal(result.provider_total)


def test_the_worker_stays_under_the_accounts_concurrency_limit(ns: NetSuiteEmulator) -> None:
    items = {line.item_id: ns.create_item(line.item_name) for line in LINES}
    customer = ns.create_customer("Busy Co")
    ns.set_concurrency_limit(3)
    provider = make_provider(ns, ns.tba_credentials(), netsuite_concurrency_limit=3)
    plans = [planned(provider, items, customer, f"inv_busy_{n}") for n in range(8)]
    ns.add_fault(Fault(kind="delay", seconds=0.2, count=None, path_prefix=INVOICE_PATH))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda plan: provider.push(plan, context(plan)), plans))
    assert len(results) == 8 and len(ns.invoices()) == 8
    stats = ns.concurrency_stats()
    assert stats.refused == 0 and stats.peak == 3


@pytest.mark.parametrize("answer", [429, 401])
def test_refusals_over_the_limit_are_retried_safely(ns: NetSuiteEmulator, answer: int) -> None:
    """The connection claims more than the account has (other integrations share it): NetSuite
    refuses some requests with 429, or 401 INVALID_LOGIN, and the client retries them."""
    items = {line.item_id: ns.create_item(line.item_name) for line in LINES}
    customer = ns.create_customer("Crowded Co")
    provider = make_provider(ns, ns.tba_credentials(), netsuite_concurrency_limit=4)
    plans = [planned(provider, items, customer, f"inv_crowd_{answer}_{n}") for n in range(4)]
    ns.set_concurrency_limit(3, over_limit_status=answer)
    # Long enough that the four PUTs overlap even on a busy machine (threads start staggered).
    ns.add_fault(Fault(kind="delay", seconds=1.0, count=4, method="PUT", path_prefix=INVOICE_PATH))
    real_sleep = __import__("time").sleep
    provider.client.sleep = real_sleep  # the retries must wait for a slot to free up
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda plan: provider.push(plan, context(plan)), plans))
    assert len(results) == 4 and len(ns.invoices()) == 4
    assert ns.concurrency_stats().refused >= 1
