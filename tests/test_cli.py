"""The `billbridge` command as a user runs it: a separate process, configured by environment."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client

from billbridge.core.config import Settings
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from conftest import StripeAccount, billbridge, finalized_invoices

LINES = [
    SampleLine("item_api_calls", "API calls", Decimal("1234.5"), Decimal("0.002")),
    SampleLine("item_seats", "Seats", Decimal(2), Decimal(10)),
]


def write(path: Path, payload: object) -> str:
    path.write_text(json.dumps(payload))
    return str(path)


def test_schema_invoice_prints_json_schema(settings: Settings) -> None:
    done = billbridge(settings, "schema", "invoice")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert {"id", "line_items", "total", "amount_due", "customer"} <= set(schema["properties"])


def test_bad_invoice_is_refused_naming_the_field(
    settings: Settings, tmp_path: Path, client: Client
) -> None:
    invoice = build_invoice(
        "inv_cli_bad", "cust_1", "JPY", [SampleLine("item_seats", "S", Decimal(1), Decimal(100))]
    )
    invoice["line_items"][0]["amount"] = "100.50"  # JPY has no minor unit
    done = billbridge(settings, "export", write(tmp_path / "bad.json", invoice))
    assert done.returncode == 2
    assert "line_items.0.amount" in done.stderr and "JPY" in done.stderr
    # A file in another encoding than UTF-8 gets the door's message, not a traceback.
    latin = tmp_path / "latin-1.json"
    latin.write_bytes('{"id": "inv_caf\u00e9"}'.encode("latin-1"))
    refused = billbridge(settings, "export", str(latin))
    assert refused.returncode == 2 and "not UTF-8 JSON text" in refused.stderr, refused.stderr


def test_customers_mappings_and_dry_run_write_nothing_to_stripe(
    settings: Settings, tmp_path: Path, emulator: StripeEmulator, stripe_account: StripeAccount
) -> None:
    customer = build_customer("cust_cli", payment_provider_id=stripe_account.customer_id)
    done = billbridge(settings, "customers", "upsert", write(tmp_path / "c.json", [customer]))
    assert done.returncode == 0, done.stderr
    product = stripe_account.products["item_seats"]
    done = billbridge(settings, "mappings", "set", "stripe_invoice", "item_extra", product)
    assert done.returncode == 0, done.stderr
    listed = json.loads(billbridge(settings, "mappings", "list", "stripe_invoice").stdout)
    assert listed["item_extra"] == product

    writes_before = [r for r in emulator.requests() if r.method == "POST"]
    invoice = build_invoice("inv_cli_dry", "cust_cli", "USD", LINES)
    done = billbridge(settings, "export", write(tmp_path / "i.json", invoice), "--dry-run")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    paths = [request["path"] for request in plan["requests"]]
    # Finalized, then sent to the customer (send_invoice with send_email, the default).
    assert paths[0] == "/v1/invoices" and paths[-2].endswith("/finalize")
    assert paths[-1].endswith("/send")
    assert all(request["idempotency_key"].startswith("billbridge-") for request in plan["requests"])
    assert [r for r in emulator.requests() if r.method == "POST"] == writes_before


async def test_export_command_waits_and_prints_the_result(
    worker: Settings, tmp_path: Path, emulator: StripeEmulator, stripe_account: StripeAccount
) -> None:
    invoice = build_invoice("inv_cli", "cust_1", "USD", LINES)
    path = write(tmp_path / "invoice.json", invoice)
    # In a thread: the worker runs on this test's event loop.
    done = await asyncio.to_thread(billbridge, worker, "export", path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "exported" and result["provider_total"] == invoice["total"]
    assert len(finalized_invoices(emulator, "inv_cli")) == 1
    # Again, with --no-wait: the same workflow, nothing new at Stripe.
    again = await asyncio.to_thread(billbridge, worker, "export", path, "--no-wait")
    assert json.loads(again.stdout)["workflow_id"] == "export-invoice/inv_cli"
    assert len(finalized_invoices(emulator, "inv_cli")) == 1
