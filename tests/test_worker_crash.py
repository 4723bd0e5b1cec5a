"""Exactly-once under a crash: the worker process is SIGKILLed in the middle of a Stripe push.

The worker runs as a separate process (python -m billbridge.workers.export_worker) sharing the
SQLite store file with the test. A slow Stripe response holds it inside an `add_lines` call when
it is killed; a fresh worker then takes over the retried activity. Stripe must end up holding one
finalized invoice with every billing line exactly once and the billing total to the cent.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.core.money import to_minor
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import export_result, start_export, submit_invoice
from billbridge.starter.samples import large_invoice
from conftest import (
    StripeAccount,
    finalized_invoices,
    map_invoice_items,
    retry_now,
    start_worker,
    wait_for,
)


async def test_sigkill_mid_push_exports_exactly_once(
    client: Client,
    store: Store,
    settings: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    worker_process: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    invoice = large_invoice("inv_crash", "cust_1", 180)
    map_invoice_items(stripe_account, store, invoice)
    # The second add_lines batch answers after 4 s: the worker is killed while waiting for it.
    # (The emulator still executes that request, as Stripe would for a client that vanished.)
    emulator.add_fault(
        Fault(
            kind="delay", seconds=4.0, count=1, method="POST", path_prefix="/v1/invoices/", skip=1
        )
    )

    first = start_worker(settings, tmp_path / "worker-1.log")
    worker_process.append(first)
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_crash", settings.task_queue)

    def first_batch_added() -> bool:
        drafts = finalized_invoices(emulator, "inv_crash")
        return bool(drafts) and drafts[0]["lines"]["total_count"] > 0

    # The first batch is in; the worker is now waiting on the delayed second one.
    await wait_for(first_batch_added, within=60)
    await asyncio.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    drafts = finalized_invoices(emulator, "inv_crash")
    assert len(drafts) == 1 and drafts[0]["status"] == "draft", "killed before finalizing"

    worker_process.append(start_worker(settings, tmp_path / "worker-2.log"))
    await retry_now(client, handle.id)
    result = await export_result(handle, "inv_crash")

    assert result.status == ExportStatus.EXPORTED, result.reason
    stripe_invoices = finalized_invoices(emulator, "inv_crash")
    assert len(stripe_invoices) == 1
    stripe_invoice = stripe_invoices[0]
    assert stripe_invoice["status"] == "open"
    assert stripe_invoice["total"] == to_minor(Decimal(invoice["total"]), "USD")
    refs = Counter(
        line["metadata"]["billbridge_line_ref"] for line in stripe_invoice["lines"]["data"]
    )
    assert all(count == 1 for count in refs.values())
    assert set(refs) == {line["id"] for line in invoice["line_items"]}
    record = store.get_export("inv_crash", "stripe_invoice")
    assert record is not None and record.status == "exported"
    assert record.external_id == stripe_invoice["id"]
