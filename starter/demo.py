"""`billbridge demo`: the main job on the embedded defaults, checked end to end.

Starts what the environment leaves unset (Temporal dev server, the four providers' emulators
and the three marketplaces'), runs a worker in this process, seeds Stripe with products and
customers, authorizes QuickBooks through the real OAuth flow (the demo plays the browser), seeds
QuickBooks', BILL's and NetSuite's items and customers through their own provider modules,
exports the sample invoices of starter/samples.py concurrently, reads every provider invoice back
(Stripe through the official SDK, the others through their APIs), prints a table (or JSON) with
each invoice's provider and provider total, and exits 0 only if every invoice ended as expected
with the provider's totals equal to the billing totals to the cent.

The demo keeps its own data folder, `<data dir>/demo/`: its store (recreated on every run, since
the emulators it seeds forget everything when they stop) and, when it starts one, its Temporal
dev server's state. It never writes the user's store (DATABASE_URL is ignored), and its worker
polls a task queue of its own, so a `billbridge worker` on the same server never takes a demo
export to look for it in the user's store. The payload key is the user's (`<data dir>/codec.key`
or BILLBRIDGE_CODEC_KEY[_FILE]): a `billbridge server` already running decodes the demo's
payloads in its UI with that key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from billbridge.activities.providers.stripe_currencies import billing_text
from billbridge.activities.store import Store
from billbridge.core.config import Settings, is_local_url
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.starter.demo_metering import MeteringRow, run_metering
from billbridge.starter.door import export_invoice
from billbridge.starter.local_services import local_services
from billbridge.starter.samples import DemoSpec, demo_catalog
from billbridge.starter.seed import call_patiently, seed_catalog, seed_customer, stripe_client
from billbridge.starter.seed_providers import (
    provider_module,
    seed_items_and_customers,
    store_emulator_credential,
)
from billbridge.starter.seed_quickbooks import (
    QUICKBOOKS_CONNECTION,
    authorize_with_emulator,
    seed_quickbooks,
)
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker


@dataclasses.dataclass
class DemoRow:
    invoice_id: str
    description: str
    provider: str
    currency: str
    expected: str
    status: str
    provider_invoice_id: str
    billing_total: str
    provider_total: str
    billing_amount_due: str
    provider_amount_due: str
    ok: bool
    reason: str = ""


DEMO_FOLDER = "demo"
METERED = ("aws", "azure", "gcp")
# Providers seeded through their own modules (items and customers found or created there).
ITEM_MAPPED = ("bill.com", "netsuite")
# Where a local emulator issues the credential a user would otherwise get from the provider
# (NetSuite: a certificate uploaded to an integration); BILL's emulator needs none stored.
ISSUED_CREDENTIALS = {"netsuite": "/_emulator/m2m/credentials"}
# What a NetSuite user sets once (`connections set netsuite netsuite_subsidiary=1`): OneWorld
# accounts need a subsidiary, and the emulator's parent subsidiary is 1, as in NetSuite.
DEMO_CONNECTION_SETTINGS = {"netsuite": {"netsuite_subsidiary": "1"}}


def _print_metering(rows: list[MeteringRow]) -> None:
    header = ("customer", "marketplace", "dimension", "ingested", "reported", "ok")
    table = [
        (r.customer_id, r.marketplace, r.dimension, r.ingested, r.reported, "yes" if r.ok else "NO")
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table, strict=True)]
    print()
    for line in (header, tuple("-" * w for w in widths), *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))


def demo_settings(settings: Settings, run: str) -> Settings:
    """The demo's own store (under `<data dir>/demo/`) and task queue; the rest as configured."""
    folder = settings.data_dir / DEMO_FOLDER
    return dataclasses.replace(
        settings,
        database_url=f"sqlite:///{folder / 'billbridge.db'}",
        task_queue=f"billbridge-demo-{run}",
    )


def _fresh_store(database_url: str) -> None:
    """Delete the demo store of an earlier run: its mappings, customer links and QuickBooks
    grant point at emulator objects that vanished when those emulators stopped."""
    path = Path(database_url.removeprefix("sqlite:///"))
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def run_demo(*, as_json: bool = False) -> int:
    # Rate-limited and retried attempts are part of the show, not errors: the table tells the
    # outcome, and the Temporal UI every attempt.
    logging.getLogger("temporalio.activity").setLevel(logging.CRITICAL)
    logging.getLogger("temporalio.workflow").setLevel(logging.ERROR)
    # The demo runs its emulators whatever TEMPORAL_ADDRESS says (core/config.py).
    run = secrets.token_hex(3)  # fresh invoice ids per run: a running server keeps old ones
    settings = demo_settings(Settings.from_env(emulators=True), run)
    _fresh_store(settings.database_url)
    demo_dir = settings.data_dir / DEMO_FOLDER
    with local_services(settings, temporal_dir=demo_dir / "temporal") as services:
        # Marketplace emulators this process started (one another process serves cannot be
        # seeded from here: its customers are left out).
        marketplaces = {
            e.connection: e.instance
            for e in services.emulators
            if e.instance is not None and e.connection in METERED
        }
        rows, metering = asyncio.run(_run(services.settings, run, marketplaces))
        ui_url = services.temporal_ui_url
        server_stops = services.temporal_started
    ok = all(row.ok for row in rows) and all(row.ok for row in metering)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "temporal_ui": ui_url,
                    "store": settings.database_url,
                    "invoices": [dataclasses.asdict(row) for row in rows],
                    "metering": [dataclasses.asdict(row) for row in metering],
                },
                indent=2,
            )
        )
    else:
        _print_table(rows)
        print(f"\n{sum(r.ok for r in rows)}/{len(rows)} invoices ended as expected.")
        if metering:
            _print_metering(metering)
            print(
                f"\n{sum(r.ok for r in metering)}/{len(metering)} metered dimensions: reported "
                "equals ingested (less what a marketplace cannot take yet, which stays owed)."
            )
        for line in closing_lines(settings, ui_url, server_stops=server_stops):
            print(line)
    return 0 if ok else 1


def closing_lines(settings: Settings, ui_url: str | None, *, server_stops: bool) -> list[str]:
    """Where the demo's results can be looked at afterwards; the server "stops with the demo"
    only when the demo started it (a `billbridge server` it used keeps running)."""
    lines = [
        f"The demo's own store: DATABASE_URL={settings.database_url} (your store is untouched; "
        "this one is recreated on every run)"
    ]
    if ui_url:
        stops = (
            " (the server stops with the demo; `billbridge server` keeps one running)"
            if server_stops
            else ""
        )
        lines.append(
            f"Temporal UI: {ui_url}/namespaces/{settings.temporal_namespace}/workflows{stops}"
        )
    return lines


async def _run(
    settings: Settings, run: str, marketplaces: dict[str, Any]
) -> tuple[list[DemoRow], list[MeteringRow]]:
    stripe_base = settings.api_base("stripe_invoice")
    assert settings.temporal_address and stripe_base
    # Fresh customers per run too: a `billbridge server`'s Stripe emulator outlives a run, and
    # a customer reused from an earlier one (same seeding idempotency key) would carry that
    # run's balance (the tiny invoice's carried amount) into this run's invoices.
    specs = [
        dataclasses.replace(
            spec, invoice_id=f"{spec.invoice_id}_{run}", customer_id=f"{spec.customer_id}_{run}"
        )
        for spec in demo_catalog()
    ]
    store = Store(settings.database_url)
    stripe = stripe_client(stripe_base, settings.stripe_api_key)
    on_stripe = [spec for spec in specs if spec.provider == "stripe_invoice"]
    items = {line.item_id: line.item_name for spec in on_stripe for line in spec.lines}
    await asyncio.to_thread(seed_catalog, stripe, store, items)
    customers = {spec.customer_id: spec for spec in on_stripe}
    for spec in customers.values():
        await asyncio.to_thread(
            seed_customer, stripe, store, {**spec.build_customer(), "id": spec.customer_id}
        )
    left_out: set[str] = set()
    on_quickbooks = [spec for spec in specs if spec.provider == QUICKBOOKS_CONNECTION]
    if on_quickbooks:
        if not await asyncio.to_thread(prepare_quickbooks, settings, store, on_quickbooks):
            left_out.add(QUICKBOOKS_CONNECTION)
    for name in ITEM_MAPPED:
        mine = [spec for spec in specs if spec.provider == name]
        if mine and not await asyncio.to_thread(prepare_item_provider, settings, store, name, mine):
            left_out.add(name)
    specs = [spec for spec in specs if spec.provider not in left_out]

    client = await connect(
        settings.temporal_address, settings.temporal_namespace, codec=load_codec(settings)
    )
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        async with build_worker(client, store, settings, executor=executor):
            results = await asyncio.gather(
                *(
                    export_invoice(client, store, spec.build(), settings.task_queue)
                    for spec in specs
                )
            )
            metering = await run_metering(settings, store, client, marketplaces, run)
    rows = [
        await asyncio.to_thread(_check, settings, store, stripe, spec, result)
        for spec, result in zip(specs, results, strict=True)
    ]
    store.close()
    return rows, metering


def prepare_quickbooks(settings: Settings, store: Store, specs: list[DemoSpec]) -> bool:
    """Authorize (against the emulator) and seed QuickBooks; False if it cannot be used."""
    quickbooks_base = settings.api_base(QUICKBOOKS_CONNECTION)
    assert quickbooks_base is not None
    if "intuit.com" in quickbooks_base:
        print(
            "QuickBooks: QUICKBOOKS_API_BASE is Intuit's; its invoices are left out of the demo",
            file=sys.stderr,
        )
        return False
    authorize_with_emulator(settings, store)
    items = {line.item_id: line.item_name for spec in specs for line in spec.lines}
    customers = {spec.customer_id: spec.build_customer() for spec in specs}
    seed_quickbooks(settings, store, items, customers.values())
    return True


def prepare_item_provider(
    settings: Settings, store: Store, name: str, specs: list[DemoSpec]
) -> bool:
    """Seed BILL or NetSuite (its local emulator only); False if it cannot be used."""
    base = settings.api_base(name)
    assert base is not None
    if not is_local_url(base):
        print(
            f"{name}: its API base is the real provider's; its invoices are left out of the demo",
            file=sys.stderr,
        )
        return False
    credential = ISSUED_CREDENTIALS.get(name)
    if credential is not None:
        # What `connections add NAME --api-key-file` would seal: here the emulator issues it.
        issued = httpx.post(f"{base.rstrip('/')}{credential}", timeout=30)
        issued.raise_for_status()
        store_emulator_credential(
            settings, store, name, issued.json(), DEMO_CONNECTION_SETTINGS.get(name)
        )
    items = {line.item_id: line.item_name for spec in specs for line in spec.lines}
    customers = {spec.customer_id: spec.build_customer() for spec in specs}
    seed_items_and_customers(settings, store, name, items, customers.values())
    return True


def _check(
    settings: Settings, store: Store, stripe: Any, spec: DemoSpec, result: ExportResult
) -> DemoRow:
    invoice = spec.build()
    row = DemoRow(
        invoice_id=spec.invoice_id,
        description=spec.description,
        provider=spec.provider,
        currency=spec.currency,
        expected=spec.expected,
        status=result.status.value,
        provider_invoice_id=result.external_id,
        billing_total=invoice["total"],
        provider_total="",
        billing_amount_due=invoice["amount_due"],
        provider_amount_due="",
        ok=result.status.value == spec.expected,
        reason=result.reason,
    )
    if result.status != ExportStatus.EXPORTED:
        return row
    # Read back from the provider itself, not from what the export reported.
    if spec.provider != "stripe_invoice":
        provider = provider_module(settings, store, spec.provider)
        total, amount_due = provider.read_totals(result.external_id)
        row.provider_total, row.provider_amount_due = str(total), str(amount_due)
    else:
        found = call_patiently(lambda: stripe.v1.invoices.retrieve(result.external_id))
        # Below Stripe's minimum charge the amount due moves to the customer's balance
        # (ending_balance) and is collected on the next invoice: it is still due.
        carried = max(found.ending_balance or 0, 0) if found.amount_due == 0 else 0
        # Stripe's minor units, not ISO 4217's (ISK: two decimals at Stripe, none in ISO).
        row.provider_total = billing_text(found.total, spec.currency)
        row.provider_amount_due = billing_text(found.amount_due + carried, spec.currency)
        row.ok = row.ok and found.status == ("open" if found.amount_due else "paid")
    row.ok = row.ok and (
        Decimal(row.provider_total) == Decimal(row.billing_total)
        and Decimal(row.provider_amount_due) == Decimal(row.billing_amount_due)
    )
    return row


def _print_table(rows: list[DemoRow]) -> None:
    headers = (
        "invoice",
        "provider",
        "cur",
        "status",
        "provider invoice",
        "billing total",
        "provider total",
        "amount due",
        "ok",
    )
    table = [
        (
            r.invoice_id,
            r.provider,
            r.currency,
            r.status,
            r.provider_invoice_id or "-",
            r.billing_total,
            r.provider_total or "-",
            f"{r.billing_amount_due}/{r.provider_amount_due or '-'}",
            "yes" if r.ok else "NO",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    for line in (headers, tuple("-" * w for w in widths), *table):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)))
    for r in rows:
        if not r.ok:
            print(
                f"\n{r.invoice_id}: expected {r.expected}, got {r.status}: {r.reason}",
                file=sys.stderr,
            )
