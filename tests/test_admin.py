"""Item mappings (set, delete, CSV import/export, default item) and the export audit trail."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.commands.mappings import BadMappingsFile, parse_mappings_csv
from billbridge.starter.door import export_invoice, upsert_customers
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from conftest import StripeAccount, billbridge, finalized_invoices


def test_mappings_csv_parses_and_names_every_bad_row() -> None:
    good = "billing_item_id,provider_item_id\nitem_a,prod_a\n adjustment:tax , prod_tax\n"
    assert parse_mappings_csv(good) == {"item_a": "prod_a", "adjustment:tax": "prod_tax"}
    with pytest.raises(BadMappingsFile, match="header"):
        parse_mappings_csv("item,product\nitem_a,prod_a\n")
    bad = "billing_item_id,provider_item_id\nitem_a,\n,prod_b\nitem_c,prod_c\nitem_c,prod_d\n"
    with pytest.raises(BadMappingsFile) as refused:
        parse_mappings_csv(bad)
    message = str(refused.value)
    assert "row 2, provider_item_id: empty" in message
    assert "row 3, billing_item_id: empty" in message
    assert "row 5, billing_item_id: item_c is mapped twice" in message


def test_mappings_import_export_delete(settings: Settings, tmp_path: Path, store: Store) -> None:
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text("billing_item_id,provider_item_id\nitem_a,prod_a\nitem_b,price_b\n")
    done = billbridge(settings, "mappings", "import", "stripe_invoice", str(csv_file))
    assert done.returncode == 0, done.stderr
    assert store.list_mappings("stripe_invoice") == {"item_a": "prod_a", "item_b": "price_b"}

    exported = billbridge(settings, "mappings", "export", "stripe_invoice").stdout
    assert exported.splitlines() == [
        "billing_item_id,provider_item_id",
        "item_a,prod_a",
        "item_b,price_b",
    ]

    broken = tmp_path / "broken.csv"
    broken.write_text("billing_item_id,provider_item_id\nitem_c,prod_c\nitem_d,\n")
    refused = billbridge(settings, "mappings", "import", "stripe_invoice", str(broken))
    assert refused.returncode == 2 and "row 3, provider_item_id" in refused.stderr
    assert "item_c" not in store.list_mappings("stripe_invoice")  # all rows or none

    assert billbridge(settings, "mappings", "delete", "stripe_invoice", "item_a").returncode == 0
    assert store.list_mappings("stripe_invoice") == {"item_b": "price_b"}
    missing = billbridge(settings, "mappings", "delete", "stripe_invoice", "item_a")
    assert missing.returncode == 1 and "not mapped" in missing.stderr


async def test_default_item_stands_in_for_unmapped_items(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    store.set_mapping("stripe_invoice", "*", stripe_account.products["item_seats"])
    invoice = build_invoice(
        "inv_default",
        "cust_1",
        "USD",
        [
            SampleLine("item_api_calls", "API calls", Decimal("10"), Decimal("0.5")),
            SampleLine("item_brand_new", "Brand new", Decimal("3"), Decimal("7")),
        ],
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    (stripe_invoice,) = finalized_invoices(emulator, "inv_default")
    products = {
        line["metadata"]["billbridge_line_ref"]: line["pricing"]["price_details"]["product"]
        for line in stripe_invoice["lines"]["data"]
    }
    new_line = invoice["line_items"][1]["id"]
    assert products[new_line] == stripe_account.products["item_seats"]


async def test_exports_list_and_show_tell_every_attempt(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    emulator.add_fault(Fault(kind="status", status=503, count=2, path_prefix="/v1/invoices"))
    invoice = build_invoice(
        "inv_audit", "cust_1", "USD", [SampleLine("item_seats", "Seats", Decimal(2), Decimal(9))]
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED

    listed = billbridge(worker, "exports", "list", "--status", "exported")
    assert listed.returncode == 0, listed.stderr
    assert "inv_audit" in listed.stdout and result.external_id in listed.stdout

    shown = billbridge(worker, "exports", "show", "inv_audit")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "exported" and record["provider_total"] == "18.00"
    assert [a["step"] for a in record["attempts"]] == ["push", "push"]
    assert all("ProviderUnavailable" in a["error"] for a in record["attempts"])

    absent = billbridge(worker, "exports", "show", "inv_never")
    assert absent.returncode == 1


async def test_default_provider_and_customer_allow_list_route_exports(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # A customer with no payment_provider of its own, but a Stripe customer id.
    upsert_customers(
        store,
        [
            build_customer(
                "cust_plain", payment_provider=None, payment_provider_id=stripe_account.customer_id
            )
        ],
    )
    lines = [SampleLine("item_seats", "Seats", Decimal(1), Decimal(5))]
    first = await export_invoice(
        client, store, build_invoice("inv_plain_1", "cust_plain", "USD", lines), worker.task_queue
    )
    assert first.status == ExportStatus.NOT_EXPORTED and "no default provider" in first.reason

    done = billbridge(worker, "settings", "set", "default_provider", "stripe_invoice")
    assert done.returncode == 0, done.stderr
    second = await export_invoice(
        client, store, build_invoice("inv_plain_2", "cust_plain", "USD", lines), worker.task_queue
    )
    assert second.status == ExportStatus.EXPORTED, second.reason

    done = billbridge(worker, "settings", "set", "export_customers", "cust_1, cust_other")
    assert json.loads(done.stdout)["export_customers"] == ["cust_1", "cust_other"]
    third = await export_invoice(
        client, store, build_invoice("inv_plain_3", "cust_plain", "USD", lines), worker.task_queue
    )
    assert third.status == ExportStatus.NOT_EXPORTED and "cust_plain" in third.reason
    assert len(finalized_invoices(emulator, "inv_plain_3")) == 0

    refused = billbridge(worker, "settings", "set", "default_provider", "paypal")
    assert refused.returncode == 2 and "default_provider" in refused.stderr
