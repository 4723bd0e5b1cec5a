"""Connection ids are values of their own: `connections add PROVIDER --id NAME`, commands that
take the id, and exports routed to the customer's provider's connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.door import export_invoice, export_result
from billbridge.starter.samples import SampleLine, build_invoice
from conftest import (
    CODEC_TEST_KEY,
    STRIPE_TEST_KEY,
    StripeAccount,
    billbridge,
    finalized_invoices,
    wait_until_listed_as_waiting,
)

CONNECTION_KEY = "sk_test_eu_connection_key"
LINES = [SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50"))]


@pytest.fixture
def emulator() -> Iterator[StripeEmulator]:
    # Accepts the seeding key and the connections' key, not the environment's default: an
    # export that works went through a stored connection.
    with StripeEmulator(
        rate_limit_per_second=None, api_keys={STRIPE_TEST_KEY, CONNECTION_KEY}
    ) as emu:
        yield emu


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens credentials
    monkeypatch.setenv("EU_KEY", CONNECTION_KEY)
    return replace(settings, stripe_api_key="sk_test_not_accepted")


def stripe_line_products(emulator: StripeEmulator, invoice_id: str) -> set[str]:
    (stripe_invoice,) = finalized_invoices(emulator, invoice_id)
    return {line["pricing"]["price_details"]["product"] for line in stripe_invoice["lines"]["data"]}


async def test_a_connection_with_its_own_id_exports_with_its_mappings(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    added = billbridge(
        worker,
        "connections",
        "add",
        "stripe_invoice",
        "--id",
        "stripe_eu",
        "--api-key-env",
        "EU_KEY",
    )
    assert added.returncode == 0, added.stderr
    row = store.get_connection("stripe_eu")
    assert row is not None and row.provider == "stripe_invoice" and row.credentials_ref
    assert store.get_connection("stripe_invoice") is None  # the default one is untouched
    listed = {c["connection"]: c for c in json.loads(added.stdout)}
    assert listed["stripe_eu"]["provider"] == "stripe_invoice"
    assert listed["stripe_eu"]["health"] == "credentials accepted (just now)"

    # Mappings keyed by the new id: a product only this connection maps the item to.
    eu_product = stripe_account.client.v1.products.create(params={"name": "Seats (EU)"}).id
    mapped = billbridge(worker, "mappings", "set", "stripe_eu", "item_seats", eu_product)
    assert mapped.returncode == 0, mapped.stderr
    assert store.get_mappings("stripe_eu", {"item_seats"}) == {"item_seats": eu_product}

    # Commands that take a connection take its id, and read the provider from its row.
    drafts = billbridge(worker, "connections", "set", "stripe_eu", "create_missing_customers=true")
    assert drafts.returncode == 0, drafts.stderr
    unknown = billbridge(worker, "mappings", "list", "stripe_moon")
    assert unknown.returncode == 2 and "stripe_eu" in unknown.stderr  # the choices named
    clash = billbridge(
        worker, "connections", "authorize", "quickbooks", "--id", "stripe_eu", "--port", "0"
    )
    assert clash.returncode == 2 and "exports to stripe_invoice" in clash.stderr

    # The customer pays through stripe_invoice; its one connection is stripe_eu (the
    # environment's key is refused, so nothing else could have exported it).
    result = await export_invoice(
        client, store, build_invoice("inv_eu_1", "cust_1", "USD", LINES), worker.task_queue
    )
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert stripe_line_products(emulator, "inv_eu_1") == {eu_product}


async def test_two_connections_of_a_provider_wait_until_the_account_chooses_one(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    for connection in ("stripe_eu", "stripe_us"):
        added = billbridge(
            worker,
            "connections",
            "add",
            "stripe_invoice",
            "--id",
            connection,
            "--api-key-env",
            "EU_KEY",
        )
        assert added.returncode == 0, added.stderr
        store.set_mapping(connection, "item_seats", stripe_account.products["item_seats"])

    waiting = await export_invoice(
        client, store, build_invoice("inv_two_1", "cust_1", "USD", LINES), worker.task_queue
    )
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "ConnectionAmbiguous" in waiting.reason
    assert "stripe_eu" in waiting.reason and "stripe_us" in waiting.reason
    assert "connection.stripe_invoice" in waiting.reason  # how to choose
    assert finalized_invoices(emulator, "inv_two_1") == []
    await wait_until_listed_as_waiting(client, "inv_two_1")

    refused = billbridge(worker, "settings", "set", "connection.stripe_invoice", "stripe_moon")
    assert refused.returncode == 2 and "stripe_eu" in refused.stderr
    chosen = billbridge(worker, "settings", "set", "connection.stripe_invoice", "stripe_us")
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout.split("\nsignalled")[0])["connection.stripe_invoice"] == (
        "stripe_us"
    )
    assert "signalled" in chosen.stdout
    # The waiting export goes on by itself through the chosen connection.
    handle = client.get_workflow_handle("export-invoice/inv_two_1", result_type=ExportResult)
    resumed = await export_result(handle, "inv_two_1", through_attention=True)
    assert resumed.status == ExportStatus.EXPORTED, resumed.reason
    assert store.get_customer_link("stripe_us", "cust_1") == stripe_account.customer_id
