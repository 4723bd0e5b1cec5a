"""Record the MarketplaceMeteringWorkflow histories that tests/test_replay.py replays.

Run after a deliberate, compatible change to the metering workflow (or to add a scenario):
    .venv/bin/python tests/record_metering_histories.py [SCENARIO ...]   (default: all of them)
Each scenario runs on a fresh dev server against the AWS Marketplace emulator and is saved as
tests/histories/metering_<scenario>.json, its payloads decoded (clear JSON, no key needed to
replay). Never re-record to make a failing replay pass: a failing replay means running metering
workflows would break (use workflow.patched instead).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client

from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.emulators.aws_marketplace import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    AwsMarketplaceEmulator,
)
from billbridge.starter.commands.provider import switch_and_wait
from billbridge.starter.metering_door import (
    metering_state,
    pause_metering,
    resume_metering,
    retry_metering,
    start_metering,
    stop_metering,
)
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from billbridge.workers.client import connect
from billbridge.workers.codec import decode_message_payloads, generate_key, load_codec
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import build_worker
from billbridge.workflows.marketplace_metering import workflow_id

HERE = Path(__file__).parent / "histories"
PRODUCT = "prod-billbridgerec"
LICENSE = "arn:aws:license-manager::294406891311:license:l-record{n:04d}"


def account(n: int) -> dict[str, str]:
    return {"customer_aws_account_id": f"{200000000000 + n}", "license_arn": LICENSE.format(n=n)}


async def record() -> None:
    os.environ.setdefault("BILLBRIDGE_CODEC_KEY", generate_key())
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServer(Path(tmp), ui=False) as server,
        AwsMarketplaceEmulator(requests_per_second=None) as aws,
    ):
        settings = replace(
            Settings.from_env({}),
            temporal_address=server.address,
            database_url=f"sqlite:///{tmp}/store.db",
            marketplace_endpoints={"aws": aws.base_url},
            task_queue="record-metering-histories",
        )
        store = Store(settings.database_url)
        keys = {
            "access_key_id": DEFAULT_ACCESS_KEY_ID,
            "secret_access_key": DEFAULT_SECRET_ACCESS_KEY,
        }
        sealed = SecretBox.from_settings(settings).seal(json.dumps(keys), "aws")
        store.upsert_connection(
            "aws", "aws", credentials_ref=sealed, settings={"region": "us-east-1"}
        )
        set_dimension_mapping(store, "aws", {"event_name": "api_call", "dimension": "api_calls"})
        aws.add_product(PRODUCT, ["api_calls"])
        first = hour_start(datetime.now(UTC)) - 3 * HOUR
        every = ("stopped", "paused_resumed", "needs_attention_then_retried", "held_by_provider")
        scenarios = tuple(name for name in every if name in (sys.argv[1:] or every))
        for n, name in enumerate(scenarios):
            customer = f"cust_{name}"
            link_marketplace(
                store,
                {
                    "customer_id": customer,
                    "marketplace": "aws",
                    "connection_id": "aws",
                    "account": account(n),
                },
            )
            if name != "needs_attention_then_retried":
                aws.subscribe(PRODUCT, **account(n))
            ingest_usage(
                store,
                [
                    {
                        "idempotency_key": f"{name}-{k}",
                        "customer_id": customer,
                        "event_name": "api_call",
                        "timestamp": (first + timedelta(minutes=25 * k)).isoformat(),
                        "properties": {},
                    }
                    for k in range(6)
                ],
            )
        codec = load_codec(settings)
        client = await connect(server.address, codec=codec)
        with ThreadPoolExecutor(4) as executor:
            async with build_worker(client, store, settings, executor=executor):
                for n, name in enumerate(scenarios):
                    customer = f"cust_{name}"
                    if name == "held_by_provider":  # `billbridge provider pause aws`
                        await switch(client, store, settings, pause=True)
                    start = await start_metering(
                        client,
                        store,
                        customer,
                        "aws",
                        settings.task_queue,
                        grace_seconds=0,
                        first_hour=first,
                    )
                    if name == "paused_resumed":
                        await pause_metering(client, customer, "recording a pause")
                        await resume_metering(client, customer)
                    if name == "held_by_provider":
                        await status_is(client, customer, "paused")
                        await switch(client, store, settings, pause=False)
                    if name == "needs_attention_then_retried":
                        for _ in range(100):
                            state = await metering_state(client, customer)
                            if state is not None and state.status == "needs_attention":
                                break
                            await asyncio.sleep(0.1)
                        aws.subscribe(PRODUCT, **account(n))
                        await retry_metering(client, customer)
                    await stop_metering(client, customer)
                    history = await start.handle.fetch_history()
                    for event in history.events:
                        await decode_message_payloads(event, codec)
                    (HERE / f"metering_{name}.json").write_text(history.to_json())
                    events = len(history.events)
                    print(f"recorded metering_{name}: {events} events ({workflow_id(customer)})")
        store.close()


async def switch(client: Client, store: Store, settings: Settings, *, pause: bool) -> None:
    """Pause or resume the AWS connection as `billbridge provider pause|resume` does."""
    reason = "recording a connection pause" if pause else ""
    assert await switch_and_wait(
        client, settings.task_queue, store, "aws", "aws", pause=pause, reason=reason
    )


async def status_is(client: Client, customer: str, status: str) -> None:
    while True:
        state = await metering_state(client, customer)
        if state is not None and state.status == status:
            return
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(record())
