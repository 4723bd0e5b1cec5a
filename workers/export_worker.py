"""The worker: ExportInvoiceWorkflow, MarketplaceMeteringWorkflow, ProviderConnectionWorkflow
and their activities on one task queue.

Run it with `billbridge worker` (which also starts the embedded Temporal server when
TEMPORAL_ADDRESS is unset, and the local provider emulators when core/config.py allows them), or
as `python -m billbridge.workers.export_worker` against services that already run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from billbridge.activities.connection_control import ConnectionControlActivities
from billbridge.activities.export import ExportActivities
from billbridge.activities.metering import MeteringActivities
from billbridge.activities.store import Store
from billbridge.core.config import Settings, is_local_url
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workers.operator_errors import explain, store_unavailable
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow
from billbridge.workflows.provider_connection import ProviderConnectionWorkflow

# Activities are synchronous (sqlmodel, the stripe SDK) and run in this many threads.
MAX_CONCURRENT_ACTIVITIES = 16


def build_worker(
    client: Client,
    store: Store,
    settings: Settings,
    *,
    task_queue: str | None = None,
    executor: ThreadPoolExecutor | None = None,
) -> Worker:
    activities = ExportActivities(store, settings)
    metering = MeteringActivities(store, settings)
    control = ConnectionControlActivities(store, client)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[ExportInvoiceWorkflow, MarketplaceMeteringWorkflow, ProviderConnectionWorkflow],
        activities=[*activities.activities(), *metering.activities(), *control.activities()],
        activity_executor=executor or ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES),
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
    )


async def run_worker(settings: Settings, address: str, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    log = logging.getLogger("billbridge")
    # Say where invoices go before taking any: a wrong endpoint is the costliest mistake.
    for connection, url in settings.endpoints().items():
        where = "LOCAL EMULATOR" if is_local_url(url) else "real provider"
        log.info("connection %s exports to %s (%s)", connection, url, where)
    codec = load_codec(settings)  # before the store: a missing key stops here, clearly
    try:
        store = Store(settings.database_url)
    except OSError as err:  # e.g. the SQLite file's folder cannot be created
        raise store_unavailable(settings, str(err)) from err
    try:
        client = await connect(address, settings.temporal_namespace, codec=codec)
        with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
            worker = build_worker(client, store, settings, executor=executor)
            async with worker:
                log.info(
                    "worker polling %s on %s (namespace %s)",
                    settings.task_queue,
                    address,
                    settings.temporal_namespace,
                )
                await stop.wait()
    finally:
        store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    if settings.temporal_address is None:
        raise SystemExit("set TEMPORAL_ADDRESS, or use `billbridge worker` to start one")
    try:
        asyncio.run(run_worker(settings, settings.temporal_address))
    except Exception as err:
        explained = explain(err, settings)
        if explained is None:
            raise
        print(f"billbridge worker: {explained.message}", file=sys.stderr)
        raise SystemExit(explained.exit_code) from None


if __name__ == "__main__":
    main()
