"""QuickBooks export throughput against a real Temporal dev server and the QuickBooks emulator.

The connection is authorized through the real OAuth flow; access tokens live `--token-ttl`
seconds, so the batch runs through several refreshes (each rotating the refresh token, which
must be stored before the next use). Prints exported invoices/s, QuickBooks API calls per
invoice, token refreshes, and refused refreshes (must be 0: no worker spent a rotated token).

    .venv/bin/python bench/quickbooks_export.py [--invoices 200] [--token-ttl 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.starter.door import export_invoice
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed_quickbooks import authorize_with_emulator, seed_quickbooks
from billbridge.workers.client import connect
from billbridge.workers.codec import generate_key, load_codec
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker

ITEMS = {"item_api_calls": "API calls", "item_storage": "Storage", "item_seats": "Seats"}


def sample(n: int, run: str) -> dict[str, object]:
    return build_invoice(
        f"inv_qbench_{run}_{n}",
        "cust_qbench",
        "USD",
        [
            SampleLine("item_api_calls", "API calls", Decimal("1234.567") + n, Decimal("0.0012")),
            SampleLine("item_storage", "Storage", Decimal("81.25"), Decimal("0.023")),
            SampleLine("item_seats", "Seats", Decimal(3 + n % 7), Decimal("49.00")),
        ],
        credits=Decimal("1.50"),
    )


async def run(invoices: int, token_ttl: float) -> dict[str, object]:
    # A key for this run only: grants are sealed, payloads encrypted, as in production.
    os.environ["BILLBRIDGE_CODEC_KEY"] = generate_key()
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServer(Path(tmp) / "temporal", ui=False) as server,
        QuickBooksEmulator(requests_per_minute=None) as qbo,
    ):
        settings = replace(
            Settings.from_env(),
            temporal_address=server.address,
            database_url=f"sqlite:///{tmp}/bench.db",
            quickbooks_api_base=qbo.base_url,
            task_queue=f"bench-qbo-{uuid.uuid4().hex[:8]}",
        )
        store = Store(settings.database_url)
        authorize_with_emulator(settings, store)
        customer = build_customer("cust_qbench", payment_provider="quickbooks", email="q@x.test")
        seed_quickbooks(settings, store, ITEMS, [customer])
        qbo.set_access_token_ttl(token_ttl)
        qbo.expire_access_tokens()
        client = await connect(server.address, codec=load_codec(settings))
        run_id = uuid.uuid4().hex[:6]
        payloads = [sample(n, run_id) for n in range(invoices)]
        calls_before = len([r for r in qbo.requests() if r.path.startswith("/v3/")])
        refreshes_before = qbo.refresh_count
        with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
            async with build_worker(client, store, settings, executor=executor):
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(export_invoice(client, store, p, settings.task_queue) for p in payloads)
                )
                elapsed = time.perf_counter() - started
        calls = len([r for r in qbo.requests() if r.path.startswith("/v3/")]) - calls_before
        exported = sum(r.status == ExportStatus.EXPORTED for r in results)
        store.close()
        return {
            "invoices": invoices,
            "exported": exported,
            "quickbooks_invoices": len(qbo.invoices()),
            "export_invoices_per_s": round(invoices / elapsed, 2),
            "quickbooks_calls_per_invoice": round(calls / invoices, 2),
            "access_token_ttl_s": token_ttl,
            "token_refreshes": qbo.refresh_count - refreshes_before,
            "refused_refreshes": sum(not g["ok"] for g in qbo.token_grants()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=200)
    parser.add_argument("--token-ttl", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args.invoices, args.token_ttl))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:30} {value}")


if __name__ == "__main__":
    main()
