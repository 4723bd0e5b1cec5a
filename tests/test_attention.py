"""Needs attention tells the truth: a fix is never lost, a fix signals only the exports it
concerns, the attention list empties when exports end, and a bug waits instead of retrying
forever. Real dev server, real worker, Stripe emulator."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from billbridge.activities.export import ExportActivities
from billbridge.activities.providers import PROVIDERS
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import UNEXPECTED_ERROR_ATTEMPTS
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import (
    export_result,
    retry_export,
    retry_exports_concerned,
    start_export,
    submit_invoice,
    upsert_customers,
)
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from conftest import StripeAccount, billbridge, finalized_invoices, wait_for

SEATS = [SampleLine("item_seats", "Seats", Decimal("3"), Decimal("10.00"))]
UNMAPPED = [SampleLine("item_unmapped", "Unmapped thing", Decimal("1"), Decimal("7.00"))]


async def _waiting(
    client: Client, store: Store, invoice_id: str, task_queue: str
) -> WorkflowHandle[Any, ExportResult]:
    handle = await start_export(client, invoice_id, task_queue)
    result = await export_result(handle, invoice_id)
    assert result.status == ExportStatus.NEEDS_ATTENTION, result
    return handle


def _fault_fired(emulator: StripeEmulator) -> bool:
    """Whether the armed fault met its request: the emulator is holding that request now."""
    return not any(fault["remaining"] for fault in emulator.faults())


async def test_a_fix_signalled_while_the_failing_pass_runs_is_not_lost(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # The mapping points at a product Stripe does not have; looking it up takes 3 s, and the
    # fix (mapping and signal) arrives while that lookup is still in flight.
    store.set_mapping("stripe_invoice", "item_seats", "prod_gone")
    emulator.add_fault(Fault(kind="delay", seconds=3, path_prefix="/v1/products/prod_gone"))
    submit_invoice(store, build_invoice("inv_fix_mid_pass", "cust_1", "USD", SEATS))
    handle = await start_export(client, "inv_fix_mid_pass", worker.task_queue)
    await wait_for(lambda: _fault_fired(emulator))  # the lookup of the old mapping is in flight
    store.set_mapping("stripe_invoice", "item_seats", stripe_account.products["item_seats"])
    await retry_export(client, "inv_fix_mid_pass")

    # The pass in flight fails (it read the old mapping), then the counted signal runs the next
    # pass at once: no waiting for the 30-day deadline.
    result = await asyncio.wait_for(
        export_result(handle, "inv_fix_mid_pass", through_attention=True), 60
    )
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert any("prod_gone" in a.error for a in store.list_attempts("inv_fix_mid_pass"))
    assert len(finalized_invoices(emulator, "inv_fix_mid_pass")) == 1


async def test_the_attention_list_empties_when_the_export_ends(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # Fails before it is routed (the customer is unknown), then exports once the customer is.
    submit_invoice(store, build_invoice("inv_late_customer", "cust_late", "USD", SEATS))
    handle = await _waiting(client, store, "inv_late_customer", worker.task_queue)
    assert [r.invoice_id for r in store.list_exports("needs_attention")] == ["inv_late_customer"]
    customer = build_customer("cust_late", payment_provider_id=stripe_account.customer_id)
    upsert_customers(store, [customer])
    assert await retry_exports_concerned(client, store, customer_ids=["cust_late"]) == 1
    result = await export_result(handle, "inv_late_customer", through_attention=True)
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert store.list_exports("needs_attention") == []
    assert billbridge(worker, "attention", "list").stdout.strip() == "[]"


async def test_a_fix_signals_only_the_exports_it_concerns(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    tmp_path: Path,
) -> None:
    submit_invoice(store, build_invoice("inv_needs_mapping", "cust_1", "USD", UNMAPPED))
    submit_invoice(store, build_invoice("inv_needs_customer", "cust_missing", "USD", SEATS))
    await _waiting(client, store, "inv_needs_mapping", worker.task_queue)
    await _waiting(client, store, "inv_needs_customer", worker.task_queue)

    def tries(invoice_id: str) -> int:
        return len(store.list_attempts(invoice_id))

    before = {i: tries(i) for i in ("inv_needs_mapping", "inv_needs_customer")}
    assert store.waiting_invoice_ids(connection_id="stripe_invoice") == ["inv_needs_mapping"]
    assert store.waiting_invoice_ids(customer_ids=["cust_missing"]) == ["inv_needs_customer"]
    assert await retry_exports_concerned(client, store, connection_id="stripe_invoice") == 1
    await wait_for(lambda: tries("inv_needs_mapping") > before["inv_needs_mapping"])
    assert await retry_exports_concerned(client, store, customer_ids=["cust_1"]) == 1
    await wait_for(lambda: tries("inv_needs_mapping") > before["inv_needs_mapping"] + 1)
    # Neither fix concerned the export that waits for its customer: it was never re-run.
    assert tries("inv_needs_customer") == before["inv_needs_customer"]
    assert await retry_exports_concerned(client, store, customer_ids=["cust_nobody"]) == 0

    # The CLI's fixes do the same: each signals the one export it concerns, which then exports.
    product = stripe_account.products["item_seats"]
    mapped = billbridge(worker, "mappings", "set", "stripe_invoice", "item_unmapped", product)
    assert mapped.returncode == 0, mapped.stderr
    assert "signalled 1 export(s)" in mapped.stdout
    customer = build_customer("cust_missing", payment_provider_id=stripe_account.customer_id)
    path = tmp_path / "customer.json"
    path.write_text(json.dumps(customer))
    upserted = billbridge(worker, "customers", "upsert", str(path))
    assert upserted.returncode == 0, upserted.stderr
    assert "signalled 1 export(s)" in upserted.stdout
    for invoice_id in ("inv_needs_mapping", "inv_needs_customer"):
        handle = client.get_workflow_handle(
            f"export-invoice/{invoice_id}", result_type=ExportResult
        )
        result = await export_result(handle, invoice_id, through_attention=True)
        assert result.status == ExportStatus.EXPORTED, result.reason
    assert store.list_exports("needs_attention") == []


class BuggyPlans:
    """A Stripe provider whose plan has a bug (KeyError) until the fix is "deployed"."""

    def __init__(self) -> None:
        self.fixed = threading.Event()

    def factory(self, settings: Settings, config: Any) -> Any:
        provider = PROVIDERS["stripe_invoice"](settings, config)
        real_plan = provider.plan

        def plan(*args: Any, **kwargs: Any) -> Any:
            if not self.fixed.is_set():
                raise KeyError("unit_amount_decimal")
            return real_plan(*args, **kwargs)

        provider.plan = plan  # type: ignore[method-assign]
        return provider


@pytest.fixture
def buggy() -> Iterator[BuggyPlans]:
    yield BuggyPlans()


async def test_a_bug_waits_as_needs_attention_after_a_few_attempts_then_resumes(
    client: Client,
    store: Store,
    settings: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    buggy: BuggyPlans,
) -> None:
    activities = ExportActivities(store, settings, {"stripe_invoice": buggy.factory})
    with ThreadPoolExecutor(4) as executor:
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[ExportInvoiceWorkflow],
            activities=activities.activities(),
            activity_executor=executor,
        ):
            submit_invoice(store, build_invoice("inv_bug", "cust_1", "USD", SEATS))
            handle = await start_export(client, "inv_bug", settings.task_queue)
            waiting = await asyncio.wait_for(export_result(handle, "inv_bug"), 60)
            assert waiting.status == ExportStatus.NEEDS_ATTENTION
            assert "UnexpectedError" in waiting.reason and "KeyError" in waiting.reason
            attempts = store.list_attempts("inv_bug")
            assert len(attempts) == UNEXPECTED_ERROR_ATTEMPTS
            assert all("KeyError: 'unit_amount_decimal'" in a.error for a in attempts)
            listed = store.list_exports("needs_attention")
            assert [r.invoice_id for r in listed] == ["inv_bug"]
            assert "KeyError" in (listed[0].error or "")

            buggy.fixed.set()  # the fix is deployed; the operator resumes waiting exports
            retried = billbridge(settings, "attention", "retry")
            assert retried.returncode == 0, retried.stderr
            result = await export_result(handle, "inv_bug", through_attention=True)
            assert result.status == ExportStatus.EXPORTED, result.reason
            assert len(store.list_attempts("inv_bug")) == UNEXPECTED_ERROR_ATTEMPTS
            assert len(finalized_invoices(emulator, "inv_bug")) == 1
