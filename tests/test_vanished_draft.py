"""A vanished provider object: a draft that is gone is replaced, an issued invoice that is gone
waits for a person. Real worker, real emulators.

Stripe deletes drafts only (DELETE /v1/invoices/{id}) and answers 404 resource_missing for them
afterwards: nothing was issued, so the export starts a new draft, under idempotency keys of its
own (the first ones would replay the deleted draft's creation). A finalized invoice cannot be
deleted through the API; when one is gone anyway (the emulator's admin "forget", standing for a
switched account or deleted test data) it may already be with the customer, and the export needs
attention instead of issuing a second one. QuickBooks has no drafts: an invoice an earlier
attempt created and someone deleted is looked for again, else it needs attention.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from billbridge.activities.export import ExportActivities
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus, PushInput
from billbridge.core.money import to_minor
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import (
    export_result,
    retry_export,
    start_export,
    submit_invoice,
)
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed_quickbooks import (
    authorize_with_emulator,
    quickbooks,
    seed_quickbooks,
)
from conftest import (
    CODEC_TEST_KEY,
    StripeAccount,
    finalized_invoices,
    map_invoice_items,
    wait_for,
)

LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


def creates(emulator: StripeEmulator) -> list[Any]:
    return [r for r in emulator.requests() if r.method == "POST" and r.path == "/v1/invoices"]


async def test_deleted_stripe_draft_is_replaced_by_a_new_draft(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_draft_deleted", "cust_1", "USD", LINES)
    map_invoice_items(stripe_account, store, invoice)
    # Every add_lines fails until the test has deleted the draft the first attempt created.
    emulator.add_fault(
        Fault(kind="status", status=500, count=None, method="POST", path_prefix="/v1/invoices/")
    )
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_draft_deleted", worker.task_queue)
    await wait_for(lambda: any(r.fault == "status" for r in emulator.requests()))
    [draft] = finalized_invoices(emulator, "inv_draft_deleted")
    assert draft["status"] == "draft"
    stripe_account.client.v1.invoices.delete(draft["id"])  # someone deletes it in Stripe
    emulator.clear_faults()

    result = await export_result(handle, "inv_draft_deleted")
    assert result.status == ExportStatus.EXPORTED, result.reason
    [stripe_invoice] = finalized_invoices(emulator, "inv_draft_deleted")
    assert stripe_invoice["id"] != draft["id"] and stripe_invoice["status"] == "open"
    assert stripe_invoice["metadata"]["billbridge_replaces"] == draft["id"]
    assert stripe_invoice["total"] == to_minor(Decimal(invoice["total"]), "USD")
    assert result.external_id == stripe_invoice["id"]
    # The stored draft answered 404 in the end; the new one was created under a key of its
    # own, not replayed from the deleted draft's creation.
    lookups = [r for r in emulator.requests() if r.path == f"/v1/invoices/{draft['id']}"]
    assert [r.status for r in lookups if r.method == "GET"][-1] == 404
    first, second = creates(emulator)
    assert first.idempotency_key != second.idempotency_key
    assert not first.replayed and not second.replayed
    assert second.params["metadata"]["billbridge_replaces"] == draft["id"]
    record = store.get_export("inv_draft_deleted", "stripe_invoice")
    assert record is not None and record.external_id == stripe_invoice["id"]


async def test_vanished_finalized_stripe_invoice_needs_attention(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_finalized_then_lost", "cust_1", "USD", LINES)
    map_invoice_items(stripe_account, store, invoice)
    # Stripe finalizes the invoice, but the answer is lost: the attempt fails. Its retries fail
    # at their first read until the test has lost the invoice.
    # (The one POST under /v1/invoices/ before the finalize is the only add_lines.)
    emulator.add_fault(Fault(kind="drop_after", method="POST", path_prefix="/v1/invoices/", skip=1))
    emulator.add_fault(
        Fault(kind="status", status=503, count=None, method="GET", path_prefix="/v1/invoices/")
    )
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_finalized_then_lost", worker.task_queue)

    def finalize_answer_lost() -> bool:
        return any(
            r.path.endswith("/finalize") and r.fault == "drop_after" for r in emulator.requests()
        )

    await wait_for(finalize_answer_lost)
    [issued] = finalized_invoices(emulator, "inv_finalized_then_lost")
    assert issued["status"] == "open"
    emulator.forget_invoice(issued["id"])  # gone from the account, as no API call can do
    emulator.clear_faults()

    result = await export_result(handle, "inv_finalized_then_lost")
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderInvoiceMissing" in result.reason and issued["id"] in result.reason
    assert finalized_invoices(emulator, "inv_finalized_then_lost") == []  # no second invoice
    assert len(creates(emulator)) == 1
    record = store.get_export("inv_finalized_then_lost", "stripe_invoice")
    assert record is not None and record.status == "needs_attention"
    assert record.external_id == issued["id"]
    await handle.terminate()  # it would wait for a person for 30 days


# -- QuickBooks ------------------------------------------------------------------------------


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator(requests_per_minute=None) as emulator:
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, qbo: QuickBooksEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens the grant
    return replace(settings, quickbooks_api_base=qbo.base_url)


async def test_deleted_quickbooks_invoice_needs_attention_and_is_never_recreated(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator
) -> None:
    authorize_with_emulator(worker, store)
    customer = build_customer("cust_qb", payment_provider="quickbooks", email="ap@acme.test")
    items = {line.item_id: line.item_name for line in LINES}
    linked = seed_quickbooks(worker, store, items, [customer])
    invoice = build_invoice("inv_qb_invoice_deleted", "cust_qb", "USD", LINES)
    submit_invoice(store, invoice)
    # An earlier attempt created the invoice and its worker died before reporting back: the
    # real push activity, run once outside the worker, leaves the store as that attempt did.
    earlier = ActivityEnvironment().run(
        ExportActivities(store, worker).push_invoice,
        PushInput(
            invoice_id="inv_qb_invoice_deleted",
            provider="quickbooks",
            connection_id="quickbooks",
            provider_customer_id=linked["cust_qb"],
            push_started_at=time.time(),
        ),
    )
    # Someone deletes it in QuickBooks (the API's delete operation, as an app would).
    token = quickbooks(worker, store).tokens.access_token()
    async with httpx.AsyncClient() as http:
        deleted = await http.post(
            f"{qbo.base_url}/v3/company/{qbo.realm_id}/invoice",
            params={"operation": "delete"},
            json={"Id": earlier.external_id, "SyncToken": "0"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
    assert deleted.json()["Invoice"] == {
        "status": "Deleted",
        "domain": "QBO",
        "Id": earlier.external_id,
    }
    qbo.clear_requests()

    handle = await start_export(client, "inv_qb_invoice_deleted", worker.task_queue)
    waiting = await export_result(handle, "inv_qb_invoice_deleted")
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderInvoiceMissing" in waiting.reason and earlier.external_id in waiting.reason
    assert not qbo.invoices()
    writes = [r for r in qbo.requests() if r.method == "POST" and r.path.endswith("/invoice")]
    assert writes == []

    # A person recreates it in QuickBooks with its number and note (one line for the total),
    # and says so.
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": Decimal(invoice["total"]),
        "SalesItemLineDetail": {
            "ItemRef": {"value": store.list_mappings("quickbooks")["item_seats"]}
        },
    }
    body: dict[str, Any] = {
        "CustomerRef": {"value": linked["cust_qb"]},
        "DocNumber": invoice["invoice_number"],
        "PrivateNote": "billbridge invoice inv_qb_invoice_deleted",
        "Line": [line],
    }
    with qbo.store.lock:
        recreated = qbo.store.create_invoice(body)
    await retry_export(client, "inv_qb_invoice_deleted")
    result = await export_result(handle, "inv_qb_invoice_deleted", through_attention=True)
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert result.external_id == recreated["Id"]
    assert [i["Id"] for i in qbo.invoices()] == [recreated["Id"]]
    writes = [r for r in qbo.requests() if r.method == "POST" and r.path.endswith("/invoice")]
    assert writes == []  # billbridge found it and created nothing
