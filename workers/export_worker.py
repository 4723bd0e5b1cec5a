"""The export worker: ExportInvoiceWorkflow and its activities on one task queue.

Run it with `billbridge worker` (which also starts the embedded Temporal server and the local
Stripe emulator when TEMPORAL_ADDRESS / STRIPE_API_BASE are unset), or as
`python -m billbridge.workers.export_worker` against services that already run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from billbridge.activities.export import ExportActivities
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow

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
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[ExportInvoiceWorkflow],
        activities=activities.activities(),
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
    codec = load_codec(settings)  # before the store: a missing key stops here, clearly
    store = Store(settings.database_url)
    client = await connect(address, settings.temporal_namespace, codec=codec)
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        worker = build_worker(client, store, settings, executor=executor)
        async with worker:
            logging.getLogger("billbridge").info(
                "worker polling %s on %s (namespace %s)",
                settings.task_queue,
                address,
                settings.temporal_namespace,
            )
            await stop.wait()
    store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    if settings.temporal_address is None:
        raise SystemExit("set TEMPORAL_ADDRESS, or use `billbridge worker` to start one")
    asyncio.run(run_worker(settings, settings.temporal_address))


if __name__ == "__main__":
    main()
