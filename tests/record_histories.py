"""Record the workflow histories that tests/test_replay.py replays.

Run after a deliberate, compatible workflow change (or to add a scenario):
    .venv/bin/python tests/record_histories.py [SCENARIO ...]     (default: every scenario)
Each scenario runs on a fresh dev server against the Stripe emulator, and its history is saved
as tests/histories/<scenario>.json. Histories of scenarios that no longer exist stay: they are
what workflows started by older code look like (failed_unmapped.json predates needs-attention
and replays through the `needs-attention` patch; five_steps_*.json predate the one-pass export
and replay through the `one-pass-export` patch). The worker runs with payload encryption, as
in production (a key generated for the run); the saved histories are decoded first, so they
hold clear JSON payloads that test_replay.py replays without any key. Never re-record to make a
failing replay pass: a failing replay means running workflows would break (use workflow.patched
instead).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connection_control import workflow_id as control_workflow_id
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.commands.provider import switch_and_wait
from billbridge.starter.door import (
    export_invoice,
    export_result,
    retry_export,
    start_export,
    submit_invoice,
    upsert_customers,
)
from billbridge.starter.samples import LineDiscount, SampleLine, build_customer, build_invoice
from billbridge.starter.seed import seed_catalog, seed_customer, stripe_client
from billbridge.workers.client import connect
from billbridge.workers.codec import (
    EncryptionCodec,
    decode_message_payloads,
    generate_key,
    load_codec,
)
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import build_worker
from billbridge.workflows.export_invoice import workflow_id
from billbridge.workflows.provider_connection import ProviderConnectionWorkflow
from billbridge.workflows.search_attributes import EXPORT_STATUS

HERE = Path(__file__).parent / "histories"
LINES = [
    SampleLine("item_api_calls", "API calls", Decimal("1234.567"), Decimal("0.0012")),
    SampleLine("item_seats", "Seats", Decimal("4"), Decimal("49.00")),
]


async def record() -> None:
    with tempfile.TemporaryDirectory() as tmp, DevServer(Path(tmp), ui=False) as server:
        with StripeEmulator(rate_limit_per_second=None) as emulator:
            settings = replace(
                Settings.from_env({}),
                temporal_address=server.address,
                database_url=f"sqlite:///{tmp}/store.db",
                stripe_api_base=emulator.base_url,
                task_queue="record-histories",
            )
            store = Store(settings.database_url)
            stripe = stripe_client(emulator.base_url, settings.stripe_api_key)
            seed_catalog(stripe, store, {"item_api_calls": "API calls", "item_seats": "Seats"})
            seed_customer(stripe, store, build_customer("cust_1"))
            upsert_customers(store, [build_customer("cust_card", payment_provider="stripe_charge")])
            scenarios = {
                "exported": build_invoice(
                    "inv_exported",
                    "cust_1",
                    "USD",
                    LINES,
                    line_discount=LineDiscount(percentage=Decimal("0.1"), lines=(0,)),
                    credits=Decimal("2"),
                    balance_applied=Decimal("-1"),
                ),
                "exported_after_retries": build_invoice("inv_retried", "cust_1", "EUR", LINES),
                "skipped_zero_total": build_invoice(
                    "inv_zero",
                    "cust_1",
                    "USD",
                    [SampleLine("item_seats", "Seats", Decimal(0), Decimal(1))],
                ),
                "not_exported": build_invoice("inv_card", "cust_card", "USD", LINES),
                "needs_attention_then_exported": build_invoice(
                    "inv_unmapped",
                    "cust_1",
                    "USD",
                    [*LINES, SampleLine("item_x", "X", Decimal(1), Decimal(1))],
                ),
                "paused_then_exported": build_invoice("inv_paused", "cust_1", "USD", LINES),
            }
            wanted = set(sys.argv[1:]) or set(scenarios)
            if unknown := wanted - set(scenarios):
                raise SystemExit(f"unknown scenario(s) {sorted(unknown)}: {sorted(scenarios)}")
            codec = load_codec(settings, {"BILLBRIDGE_CODEC_KEY": generate_key()})
            client = await connect(server.address, codec=codec)
            with ThreadPoolExecutor(4) as executor:
                async with build_worker(client, store, settings, executor=executor):
                    for name, invoice in scenarios.items():
                        if name not in wanted:
                            continue
                        if name == "paused_then_exported":
                            await record_paused(client, store, settings, invoice, codec)
                            continue
                        if name == "exported_after_retries":
                            emulator.add_fault(Fault(kind="status", status=503, count=2))
                            emulator.add_fault(Fault(kind="status", status=429, retry_after=0.1))
                        result = await export_invoice(client, store, invoice, settings.task_queue)
                        if result.status == ExportStatus.NEEDS_ATTENTION:
                            # The fix a person makes, then the signal `mappings set` sends.
                            product = store.list_mappings("stripe_invoice")["item_seats"]
                            store.set_mapping("stripe_invoice", "item_x", product)
                            await retry_export(client, invoice["id"])
                            await export_result(
                                client.get_workflow_handle(
                                    workflow_id(invoice["id"]), result_type=ExportResult
                                ),
                                invoice["id"],
                                through_attention=True,
                            )
                        await save(client, workflow_id(invoice["id"]), name, codec)
            store.close()


async def save(client: Client, wf_id: str, name: str, codec: EncryptionCodec) -> None:
    history = await client.get_workflow_handle(wf_id).fetch_history()
    for event in history.events:
        await decode_message_payloads(event, codec)
    (HERE / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    while True:
        if await check():
            return
        await asyncio.sleep(0.1)


async def record_paused(
    client: Client,
    store: Store,
    settings: Settings,
    invoice: dict[str, Any],
    codec: EncryptionCodec,
) -> None:
    """Stripe paused (`billbridge provider pause`), the export held, then resumed and exported;
    the export's history and the connection's control workflow's."""

    async def switched(pause: bool) -> None:
        assert await switch_and_wait(
            client,
            settings.task_queue,
            store,
            "stripe_invoice",
            "stripe_invoice",
            pause=pause,
            reason="recorded pause" if pause else "",
        )

    await switched(True)
    submitted = submit_invoice(store, invoice)
    handle = await start_export(client, submitted.id, settings.task_queue)

    async def held() -> bool:
        return (await handle.describe()).typed_search_attributes.get(EXPORT_STATUS) == "paused"

    await until(held)
    await switched(False)
    result = await handle.result()
    assert result.status == ExportStatus.EXPORTED, result
    control = client.get_workflow_handle(control_workflow_id("stripe_invoice"))

    async def released() -> bool:
        return (await control.query(ProviderConnectionWorkflow.status)).applied

    await until(released)
    await control.terminate("recorded")
    await save(client, workflow_id(invoice["id"]), "paused_then_exported", codec)
    await save(client, control.id, "provider_connection_paused_resumed", codec)


if __name__ == "__main__":
    asyncio.run(record())
