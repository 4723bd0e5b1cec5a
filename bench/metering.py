"""Marketplace metering figures, against a real dev server and the AWS Marketplace emulator.

Prints: usage events ingested per second (the door, in batches, on a SQLite store); marketplace
calls per reported record when a day of hours is caught up, and when one hour of 200 customers
is reported as their timers fire together (AWS takes 25 records a call, so the floor is
1/25 = 0.04); and the worker's resident memory per idle MarketplaceMeteringWorkflow with 1,000
linked customers on one worker.

    .venv/bin/python bench/metering.py [--events 100000] [--customers 1000]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import MeteringInput
from billbridge.emulators.aws_marketplace import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    AwsMarketplaceEmulator,
)
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from billbridge.workers.client import connect
from billbridge.workers.codec import generate_key, load_codec
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id

PRODUCT = "prod-billbridgebench"
LICENSE = "arn:aws:license-manager::294406891311:license:l-bench{n:04d}"
CATCH_UP_HOURS = 20  # inside AWS's 24-hour window
HOURLY_CUSTOMERS = 200  # customers whose same hour is reported at once


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def account(n: int) -> dict[str, str]:
    return {"customer_aws_account_id": f"{100000000000 + n}", "license_arn": LICENSE.format(n=n)}


def events(customer: str, start: datetime, count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "idempotency_key": f"{tag}-{n}",
            "customer_id": customer,
            "event_name": "api_call" if n % 3 else "upload",
            "timestamp": (
                start + timedelta(seconds=(n * 37) % (CATCH_UP_HOURS * 3600))
            ).isoformat(),
            "properties": {"bytes": 1000 + n},
        }
        for n in range(count)
    ]


async def run(event_count: int, customers: int) -> dict[str, object]:
    # A payload and sealing key for this run only.
    os.environ.setdefault("BILLBRIDGE_CODEC_KEY", generate_key())
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServer(Path(tmp) / "temporal", ui=False) as server,
        AwsMarketplaceEmulator(requests_per_second=None) as aws,
    ):
        settings = replace(
            Settings.from_env({}),
            temporal_address=server.address,
            database_url=f"sqlite:///{tmp}/bench.db",
            marketplace_endpoints={"aws": aws.base_url},
            task_queue=f"bench-metering-{uuid.uuid4().hex[:8]}",
            data_dir=Path(tmp),
        )
        store = Store(settings.database_url)
        keys = {
            "access_key_id": DEFAULT_ACCESS_KEY_ID,
            "secret_access_key": DEFAULT_SECRET_ACCESS_KEY,
        }
        box = SecretBox.from_settings(settings)
        store.upsert_connection(
            "aws",
            "aws",
            credentials_ref=box.seal(json.dumps(keys), "aws"),
            settings={"region": "us-east-1"},
        )
        set_dimension_mapping(store, "aws", {"event_name": "api_call", "dimension": "api_calls"})
        set_dimension_mapping(
            store,
            "aws",
            {
                "event_name": "upload",
                "property": "bytes",
                "dimension": "data_kb",
                "factor": "0.001",
            },
        )
        aws.add_product(PRODUCT, ["api_calls", "data_kb"])

        # 1. Ingest.
        first = hour_start(datetime.now(UTC)) - CATCH_UP_HOURS * HOUR
        link_marketplace(
            store,
            {
                "customer_id": "cust_0",
                "marketplace": "aws",
                "connection_id": "aws",
                "account": account(0),
            },
        )
        aws.subscribe(PRODUCT, **account(0))
        payload = events("cust_0", first, event_count, "bench")
        started = time.perf_counter()
        for offset in range(0, len(payload), 1000):
            ingest_usage(store, payload[offset : offset + 1000])
        ingest_seconds = time.perf_counter() - started

        codec = load_codec(settings)
        client = await connect(server.address, codec=codec)
        with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
            async with build_worker(client, store, settings, executor=executor):
                # 2. A day of hours caught up at once: calls per record.
                handle = await client.start_workflow(
                    MarketplaceMeteringWorkflow.run,
                    MeteringInput(
                        customer_id="cust_0", marketplace="aws", grace_seconds=0, next_hour=first
                    ),
                    id=workflow_id("cust_0"),
                    task_queue=settings.task_queue,
                )
                await handle.signal(MarketplaceMeteringWorkflow.stop)
                await handle.result()
                calls = sum(1 for r in aws.requests() if r.operation == "BatchMeterUsage")
                records = len(aws.accepted())

                # 3. Idle workflows: resident memory per workflow.
                for n in range(1, customers + 1):
                    link_marketplace(
                        store,
                        {
                            "customer_id": f"cust_{n}",
                            "marketplace": "aws",
                            "connection_id": "aws",
                            "account": account(n),
                        },
                    )
                before = rss_bytes()
                now = hour_start(datetime.now(UTC))
                handles = await asyncio.gather(
                    *(
                        client.start_workflow(
                            MarketplaceMeteringWorkflow.run,
                            MeteringInput(
                                customer_id=f"cust_{n}",
                                marketplace="aws",
                                grace_seconds=3000,
                                next_hour=now,
                            ),
                            id=workflow_id(f"cust_{n}"),
                            task_queue=settings.task_queue,
                        )
                        for n in range(1, customers + 1)
                    )
                )
                # Each has run its first task and sleeps until its hour is due.
                await asyncio.gather(*(h.query(MarketplaceMeteringWorkflow.state) for h in handles))
                after = rss_bytes()
                for h in handles:
                    await h.terminate("bench over")

                # 4. One hour of many customers, as their timers fire together: batches are
                # shared across customers (settings.metering_gather_seconds).
                hourly = min(customers, HOURLY_CUSTOMERS)
                for n in range(1, hourly + 1):
                    aws.subscribe(PRODUCT, **account(n))
                sent_before = sum(1 for r in aws.requests() if r.operation == "BatchMeterUsage")
                accepted_before = len(aws.accepted())
                hour_handles = await asyncio.gather(
                    *(
                        client.start_workflow(
                            MarketplaceMeteringWorkflow.run,
                            MeteringInput(
                                customer_id=f"cust_{n}",
                                marketplace="aws",
                                grace_seconds=0,
                                next_hour=now - HOUR,
                            ),
                            id=workflow_id(f"cust_{n}"),
                            task_queue=settings.task_queue,
                        )
                        for n in range(1, hourly + 1)
                    )
                )
                await asyncio.gather(
                    *(h.signal(MarketplaceMeteringWorkflow.stop) for h in hour_handles)
                )
                await asyncio.gather(*(h.result() for h in hour_handles))
                hour_calls = (
                    sum(1 for r in aws.requests() if r.operation == "BatchMeterUsage") - sent_before
                )
                hour_records = len(aws.accepted()) - accepted_before
        store.close()
        return {
            "events_ingested": event_count,
            "ingest_events_per_s": round(event_count / ingest_seconds),
            "hours_caught_up": CATCH_UP_HOURS,
            "records_reported": records,
            "batch_meter_usage_calls": calls,
            "calls_per_record": round(calls / records, 3) if records else None,
            "customers_in_one_hour": hourly,
            "one_hour_records": hour_records,
            "one_hour_calls": hour_calls,
            "one_hour_calls_per_record": round(hour_calls / hour_records, 3)
            if hour_records
            else None,
            "idle_workflows": customers,
            "worker_rss_growth_mib": round((after - before) / 2**20, 1),
            "rss_per_idle_workflow_kib": round((after - before) / customers / 1024, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=1000)
    args = parser.parse_args()
    for key, value in asyncio.run(run(args.events, args.customers)).items():
        print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
