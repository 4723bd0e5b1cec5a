"""`billbridge demo`: the main job on the embedded defaults, checked end to end.

Starts what the environment leaves unset (Temporal dev server, Stripe emulator), runs a worker in
this process, seeds Stripe with products and customers, exports the sample invoices of
starter/samples.py concurrently, reads every Stripe invoice back through the official SDK, prints
a table (or JSON) and exits 0 only if every invoice ended as expected with Stripe's totals equal
to the billing totals to the cent.
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
from typing import Any

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.core.money import from_minor
from billbridge.starter.door import export_invoice
from billbridge.starter.local_services import local_services
from billbridge.starter.samples import DemoSpec, demo_catalog
from billbridge.starter.seed import call_patiently, seed_catalog, seed_customer, stripe_client
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker


@dataclasses.dataclass
class DemoRow:
    invoice_id: str
    description: str
    currency: str
    expected: str
    status: str
    stripe_invoice_id: str
    billing_total: str
    stripe_total: str
    billing_amount_due: str
    stripe_amount_due: str
    ok: bool
    reason: str = ""


def run_demo(*, as_json: bool = False) -> int:
    # Rate-limited and retried attempts are part of the show, not errors: the table tells the
    # outcome, and the Temporal UI every attempt.
    logging.getLogger("temporalio.activity").setLevel(logging.CRITICAL)
    logging.getLogger("temporalio.workflow").setLevel(logging.ERROR)
    settings = Settings.from_env()
    with local_services(settings) as services:
        rows = asyncio.run(_run(services.settings))
        ui_url = services.temporal_ui_url
    ok = all(row.ok for row in rows)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "temporal_ui": ui_url,
                    "invoices": [dataclasses.asdict(row) for row in rows],
                },
                indent=2,
            )
        )
    else:
        _print_table(rows)
        print(f"\n{sum(r.ok for r in rows)}/{len(rows)} invoices ended as expected.")
        if ui_url:
            print(
                f"Temporal UI: {ui_url}/namespaces/{settings.temporal_namespace}/workflows "
                "(the server stops with the demo; `billbridge server` keeps one running)"
            )
    return 0 if ok else 1


async def _run(settings: Settings) -> list[DemoRow]:
    assert settings.temporal_address and settings.stripe_api_base
    run = secrets.token_hex(3)  # fresh invoice ids per run: the store and server persist
    specs = [
        dataclasses.replace(spec, invoice_id=f"{spec.invoice_id}_{run}") for spec in demo_catalog()
    ]
    store = Store(settings.database_url)
    stripe = stripe_client(settings.stripe_api_base, settings.stripe_api_key)
    items = {line.item_id: line.item_name for spec in specs for line in spec.lines}
    await asyncio.to_thread(seed_catalog, stripe, store, items)
    customers = {spec.customer_id: spec for spec in specs}
    for spec in customers.values():
        await asyncio.to_thread(
            seed_customer, stripe, store, {**spec.build_customer(), "id": spec.customer_id}
        )

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
    rows = [
        await asyncio.to_thread(_check, stripe, spec, result)
        for spec, result in zip(specs, results, strict=True)
    ]
    store.close()
    return rows


def _check(stripe: Any, spec: DemoSpec, result: ExportResult) -> DemoRow:
    invoice = spec.build()
    row = DemoRow(
        invoice_id=spec.invoice_id,
        description=spec.description,
        currency=spec.currency,
        expected=spec.expected,
        status=result.status.value,
        stripe_invoice_id=result.external_id,
        billing_total=invoice["total"],
        stripe_total="",
        billing_amount_due=invoice["amount_due"],
        stripe_amount_due="",
        ok=result.status.value == spec.expected,
        reason=result.reason,
    )
    if result.status == ExportStatus.EXPORTED:
        # Read back from Stripe itself, not from what the export reported.
        found = call_patiently(lambda: stripe.v1.invoices.retrieve(result.external_id))
        # Below Stripe's minimum charge the amount due moves to the customer's balance
        # (ending_balance) and is collected on the next invoice: it is still due.
        carried = max(found.ending_balance or 0, 0) if found.amount_due == 0 else 0
        row.stripe_total = str(from_minor(found.total, spec.currency))
        row.stripe_amount_due = str(from_minor(found.amount_due + carried, spec.currency))
        row.ok = row.ok and (
            Decimal(row.stripe_total) == Decimal(row.billing_total)
            and Decimal(row.stripe_amount_due) == Decimal(row.billing_amount_due)
            and found.status == ("open" if found.amount_due else "paid")
        )
    return row


def _print_table(rows: list[DemoRow]) -> None:
    headers = (
        "invoice",
        "cur",
        "status",
        "stripe invoice",
        "billing total",
        "stripe total",
        "amount due",
        "ok",
    )
    table = [
        (
            r.invoice_id,
            r.currency,
            r.status,
            r.stripe_invoice_id or "-",
            r.billing_total,
            r.stripe_total or "-",
            f"{r.billing_amount_due}/{r.stripe_amount_due or '-'}",
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
