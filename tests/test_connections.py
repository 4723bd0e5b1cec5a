"""Connections: sealed credentials, verified and used by exports; per-connection settings."""

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
from billbridge.starter.door import export_invoice, export_result, upsert_customers
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from conftest import (
    CODEC_TEST_KEY,
    STRIPE_TEST_KEY,
    StripeAccount,
    billbridge,
    finalized_invoices,
    wait_until_listed_as_waiting,
)

CONNECTION_KEY = "sk_test_connection_only_key"
LINES = [SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50"))]


@pytest.fixture
def emulator() -> Iterator[StripeEmulator]:
    # Accepts the seeding key and the connection's key, not the environment's default.
    with StripeEmulator(
        rate_limit_per_second=None, api_keys={STRIPE_TEST_KEY, CONNECTION_KEY}
    ) as emu:
        yield emu


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens credentials
    return replace(settings, stripe_api_key="sk_test_not_accepted")


async def test_sealed_api_key_is_verified_stored_and_used(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    invoice = build_invoice("inv_conn_1", "cust_1", "USD", LINES)
    refused = await export_invoice(client, store, invoice, worker.task_queue)
    assert refused.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderAuthFailed" in refused.reason
    await wait_until_listed_as_waiting(client, "inv_conn_1")
    waiting = json.loads(billbridge(worker, "attention", "list").stdout)
    assert [w["invoice_id"] for w in waiting] == ["inv_conn_1"]

    monkeypatch.setenv("BAD_KEY", "sk_test_wrong")
    bad = billbridge(worker, "connections", "add", "stripe_invoice", "--api-key-env", "BAD_KEY")
    assert bad.returncode == 1 and "credentials refused" in bad.stderr

    monkeypatch.setenv("GOOD_KEY", CONNECTION_KEY)
    added = billbridge(worker, "connections", "add", "stripe_invoice", "--api-key-env", "GOOD_KEY")
    assert added.returncode == 0, added.stderr
    row = store.get_connection("stripe_invoice")
    assert row is not None and row.credentials_ref is not None
    assert CONNECTION_KEY not in row.credentials_ref  # sealed, not stored in clear

    assert "signalled" in added.stdout  # (other tests may leave exports waiting too)
    listed = {
        c["connection"]: c for c in json.loads(billbridge(worker, "connections", "list").stdout)
    }
    assert listed["stripe_invoice"]["credentials"] == "sealed in the store"
    assert listed["stripe_invoice"]["health"] == "credentials accepted"
    # The export that waited for credentials went on by itself once they were added.
    handle = client.get_workflow_handle("export-invoice/inv_conn_1", result_type=ExportResult)
    resumed = await export_result(handle, "inv_conn_1", through_attention=True)
    assert resumed.status == ExportStatus.EXPORTED, resumed.reason

    exported = await export_invoice(
        client, store, build_invoice("inv_conn_2", "cust_1", "USD", LINES), worker.task_queue
    )
    assert exported.status == ExportStatus.EXPORTED, exported.reason
    used = {r.params.get("customer") for r in emulator.requests() if r.path == "/v1/invoices"}
    assert stripe_account.customer_id in used


async def test_connection_settings_cutover_minimum_draft_and_disable(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOD_KEY", CONNECTION_KEY)
    billbridge(worker, "connections", "add", "stripe_invoice", "--api-key-env", "GOOD_KEY")
    bad = billbridge(worker, "connections", "set", "stripe_invoice", "minimum_amount=cheap")
    assert bad.returncode == 2 and "minimum_amount" in bad.stderr
    done = billbridge(
        worker,
        "connections",
        "set",
        "stripe_invoice",
        "cutover_date=2025-01-01",
        "minimum_amount=5.00",
        "leave_as_draft=true",
    )
    assert done.returncode == 0, done.stderr

    def invoice(invoice_id: str, issued: str, seats: int) -> dict[str, object]:
        from datetime import datetime

        lines = [SampleLine("item_seats", "Seats", Decimal(seats), Decimal("1.00"))]
        return build_invoice(
            invoice_id, "cust_1", "USD", lines, issued_at=datetime.fromisoformat(issued)
        )

    old = await export_invoice(
        client, store, invoice("inv_old", "2024-12-01T00:00:00+00:00", 9), worker.task_queue
    )
    assert old.status == ExportStatus.NOT_EXPORTED and "cutover" in old.reason
    small = await export_invoice(
        client, store, invoice("inv_small", "2025-02-01T00:00:00+00:00", 2), worker.task_queue
    )
    assert small.status == ExportStatus.NOT_EXPORTED and "minimum amount" in small.reason
    draft = await export_invoice(
        client, store, invoice("inv_draft", "2025-02-01T00:00:00+00:00", 9), worker.task_queue
    )
    assert draft.status == ExportStatus.EXPORTED and "draft" in draft.reason
    (stripe_invoice,) = finalized_invoices(emulator, "inv_draft")
    assert stripe_invoice["status"] == "draft" and stripe_invoice["total"] == 900

    assert billbridge(worker, "connections", "disable", "stripe_invoice").returncode == 0
    off = await export_invoice(
        client, store, invoice("inv_off", "2025-02-01T00:00:00+00:00", 9), worker.task_queue
    )
    assert off.status == ExportStatus.NEEDS_ATTENTION and "disabled" in off.reason
    await wait_until_listed_as_waiting(client, "inv_off")
    assert billbridge(worker, "connections", "enable", "stripe_invoice").returncode == 0
    handle = client.get_workflow_handle("export-invoice/inv_off", result_type=ExportResult)
    resumed = await export_result(handle, "inv_off", through_attention=True)
    assert resumed.status == ExportStatus.EXPORTED, resumed.reason


async def test_missing_provider_customers_are_found_by_email_or_created_once(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOD_KEY", CONNECTION_KEY)
    billbridge(worker, "connections", "add", "stripe_invoice", "--api-key-env", "GOOD_KEY")
    # Without the setting, a customer with no payment_provider_id cannot be exported.
    upsert_customers(store, [build_customer("cust_new", email="new@example.test")])
    no_id = await export_invoice(
        client, store, build_invoice("inv_new_0", "cust_new", "USD", LINES), worker.task_queue
    )
    assert no_id.status == ExportStatus.NEEDS_ATTENTION
    assert "create_missing_customers" in no_id.reason
    await wait_until_listed_as_waiting(client, "inv_new_0")

    done = billbridge(
        worker, "connections", "set", "stripe_invoice", "create_missing_customers=true"
    )
    assert done.returncode == 0, done.stderr
    # One whose e-mail Stripe already knows (the seeded cust_1's), one that is new.
    upsert_customers(store, [build_customer("cust_known", email="billing@acme.test")])
    known = await export_invoice(
        client, store, build_invoice("inv_known", "cust_known", "USD", LINES), worker.task_queue
    )
    assert known.status == ExportStatus.EXPORTED, known.reason
    assert finalized_invoices(emulator, "inv_known")[0]["customer"] == stripe_account.customer_id

    for n in (1, 2):
        result = await export_invoice(
            client,
            store,
            build_invoice(f"inv_new_{n}", "cust_new", "USD", LINES),
            worker.task_queue,
        )
        assert result.status == ExportStatus.EXPORTED, result.reason
    created = [
        r
        for r in emulator.requests()
        if r.method == "POST"
        and r.path == "/v1/customers"
        and r.status == 200
        and not r.replayed
        and r.params.get("email") == "new@example.test"
    ]
    assert len(created) == 1
    link = store.get_customer_link("stripe_invoice", "cust_new")
    assert link is not None
    assert {finalized_invoices(emulator, f"inv_new_{n}")[0]["customer"] for n in (0, 1, 2)} == {
        link
    }
