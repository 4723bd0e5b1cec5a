"""Export throughput against a real Temporal dev server and the Stripe emulator (rate limit off).

Prints, from one run on one server: exported invoices/s, Stripe calls per invoice, the throughput
of a minimal one-activity workflow (the ceiling this machine and server allow) and their ratio,
and the time to export one 10,000-line invoice.

    .venv/bin/python bench/export_throughput.py [--invoices 200] [--large-lines 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
from baseline_workflow import NoopWorkflow, noop

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.door import export_invoice
from billbridge.starter.samples import SampleLine, build_invoice, large_invoice
from billbridge.starter.seed import seed_catalog, seed_customer, stripe_client
from billbridge.workers.client import connect
from billbridge.workers.codec import generate_key, load_codec
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker

ITEMS = {"item_api_calls": "API calls", "item_storage": "Storage", "item_seats": "Seats"}


def sample(n: int, run: str) -> dict[str, object]:
    return build_invoice(
        f"inv_bench_{run}_{n}",
        "cust_bench",
        "USD",
        [
            SampleLine("item_api_calls", "API calls", Decimal("1234.567") + n, Decimal("0.0012")),
            SampleLine("item_storage", "Storage", Decimal("81.25"), Decimal("0.023")),
            SampleLine("item_seats", "Seats", Decimal(3 + n % 7), Decimal("49.00")),
        ],
        credits=Decimal("1.50"),
    )


async def baseline(client: Client, count: int) -> float:
    queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[NoopWorkflow],
            activities=[noop],
            activity_executor=executor,
            max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        ):
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    client.execute_workflow(
                        NoopWorkflow.run, "x", id=f"bench-noop-{queue}-{i}", task_queue=queue
                    )
                    for i in range(count)
                )
            )
            return count / (time.perf_counter() - started)


async def run(invoices: int, large_lines: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServer(Path(tmp) / "temporal", ui=False) as server,
    ):
        with StripeEmulator(rate_limit_per_second=None) as emulator:
            settings = replace(
                Settings.from_env({}),
                temporal_address=server.address,
                database_url=f"sqlite:///{tmp}/bench.db",
                stripe_api_base=emulator.base_url,
                task_queue=f"bench-export-{uuid.uuid4().hex[:8]}",
            )
            store = Store(settings.database_url)
            stripe = stripe_client(emulator.base_url, settings.stripe_api_key)
            big = large_invoice("inv_bench_large", "cust_bench", large_lines)
            items = dict(ITEMS)
            items.update(
                {li["price"]["item"]["id"]: li["price"]["item"]["name"] for li in big["line_items"]}
            )
            seed_catalog(stripe, store, items)
            seed_customer(stripe, store, {"id": "cust_bench", "name": "Bench", "email": "b@x.test"})
            # A key for this run only: the bench measures exports as production runs them.
            codec = load_codec(settings, {"BILLBRIDGE_CODEC_KEY": generate_key()})
            client = await connect(server.address, codec=codec)
            # The ceiling is measured before and after the exports (a fresh server warms up,
            # and the machine's load drifts), after a short warm-up; the ratio uses the mean.
            await baseline(client, 20)
            noop_before = await baseline(client, invoices)

            run_id = uuid.uuid4().hex[:6]
            payloads = [sample(n, run_id) for n in range(invoices)]
            calls_before = len(emulator.requests())
            with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
                async with build_worker(client, store, settings, executor=executor):
                    started = time.perf_counter()
                    results = await asyncio.gather(
                        *(export_invoice(client, store, p, settings.task_queue) for p in payloads)
                    )
                    elapsed = time.perf_counter() - started
                    calls = len(emulator.requests()) - calls_before
                    large_started = time.perf_counter()
                    large = await export_invoice(client, store, big, settings.task_queue)
                    large_seconds = time.perf_counter() - large_started
            noop_after = await baseline(client, invoices)
            noop_rate = (noop_before + noop_after) / 2
            exported = sum(r.status == ExportStatus.EXPORTED for r in results)
            store.close()
            return {
                "invoices": invoices,
                "exported": exported,
                "export_invoices_per_s": round(invoices / elapsed, 2),
                "stripe_calls_per_invoice": round(calls / invoices, 2),
                "noop_workflows_per_s": round(noop_rate, 2),
                "noop_before_after_per_s": f"{noop_before:.2f} / {noop_after:.2f}",
                "export_to_noop_ratio": round((invoices / elapsed) / noop_rate, 3),
                "large_invoice_lines": large_lines,
                "large_invoice_status": large.status.value,
                "large_invoice_stripe_lines": large.provider_line_count,
                "large_invoice_stripe_calls": large.request_count,
                "large_invoice_seconds": round(large_seconds, 2),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=200)
    parser.add_argument("--large-lines", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args.invoices, args.large_lines))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
