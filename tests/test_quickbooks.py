"""QuickBooks Online: OAuth authorization through the CLI, exports, token expiry and revocation.

Everything runs against the real Temporal dev server and the QuickBooks emulator; the OAuth flow
is the CLI's own (`billbridge connections authorize quickbooks`), its browser step played by an
HTTP client that follows the emulator's consent redirect to the CLI's local callback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from billbridge.activities.oauth import OAuthGrant
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.emulators.quickbooks import Fault, QuickBooksEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.door import export_result, start_export, submit_invoice, upsert_customers
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.workers.codec import generate_key
from billbridge.workers.dev_server import DevServer
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from conftest import (
    BILLBRIDGE_CLI,
    CODEC_TEST_KEY,
    StripeAccount,
    billbridge,
    finalized_invoices,
    map_invoice_items,
    process_env,
    retry_now,
    start_worker,
    wait_for,
    wait_until_listed_as_waiting,
    workflow_show,
)

CONNECTION = "quickbooks"
LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator(requests_per_minute=None) as emulator:
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, qbo: QuickBooksEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens grants
    return replace(settings, quickbooks_api_base=qbo.base_url)


@dataclass
class Books:
    """The QuickBooks company as seeded: items mapped, one customer linked."""

    items: dict[str, str]
    customer_id: str


@pytest.fixture
def books(qbo: QuickBooksEmulator, store: Store) -> Books:
    items = {line.item_id: qbo.create_item(line.item_name) for line in LINES}
    store.set_mappings(CONNECTION, items)
    customer_id = qbo.create_customer("Acme Corp", "billing@acme.test")
    upsert_customers(
        store,
        [
            build_customer(
                "cust_qb",
                payment_provider="quickbooks",
                payment_provider_id=customer_id,
                name="Acme Corp",
                email="billing@acme.test",
            )
        ],
    )
    return Books(items=items, customer_id=customer_id)


def authorize(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`billbridge connections authorize quickbooks`, with a client in the browser's place."""
    options = ["--port", "0", "--timeout", "60"]
    command = [*BILLBRIDGE_CLI, "connections", "authorize", CONNECTION, *options]
    process = subprocess.Popen(
        command,
        env=process_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("http"):
            # The emulator consents at once and redirects to the CLI's local callback.
            consent = httpx.get(line.strip(), follow_redirects=True, timeout=30)
            assert consent.status_code == 200, consent.text
            break
    out, err = process.communicate(timeout=90)
    return subprocess.CompletedProcess(command, process.returncode, "".join(seen) + out, err)


def stored_grant(store: Store) -> OAuthGrant:
    row = store.get_connection(CONNECTION)
    assert row is not None and row.credentials_ref is not None
    box = SecretBox.from_settings(Settings.from_env({"BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY}))
    return OAuthGrant.from_json(box.open(row.credentials_ref, CONNECTION))


def invoice_payload(invoice_id: str) -> dict[str, Any]:
    return build_invoice(invoice_id, "cust_qb", "USD", LINES)


def ours(qbo: QuickBooksEmulator, invoice_id: str) -> list[dict[str, Any]]:
    return [i for i in qbo.invoices() if i.get("PrivateNote") == f"billbridge invoice {invoice_id}"]


async def export(client: Client, store: Store, worker: Settings, invoice_id: str) -> ExportResult:
    invoice = submit_invoice(store, invoice_payload(invoice_id))
    handle = await start_export(client, invoice.id, worker.task_queue)
    return await export_result(handle, invoice.id)


async def test_authorize_with_the_cli_then_export(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    listed = json.loads(billbridge(worker, "connections", "list").stdout)
    before = next(c for c in listed if c["connection"] == CONNECTION)
    assert before["credentials"].startswith("not authorized") and not before["connected"]
    assert "not authorized" in before["health"]

    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    assert f"authorized (company {qbo.realm_id})" in done.stdout
    grant = stored_grant(store)
    assert grant.company_id == qbo.realm_id
    assert grant.refresh_token in qbo.valid_refresh_tokens()
    row = store.get_connection(CONNECTION)
    assert row is not None and row.credentials_ref is not None
    for secret in (grant.access_token, grant.refresh_token, grant.client_secret):
        assert secret not in row.credentials_ref  # sealed, never in clear

    listed = json.loads(billbridge(worker, "connections", "list").stdout)
    after = next(c for c in listed if c["connection"] == CONNECTION)
    assert after["credentials"] == "OAuth grant sealed in the store" and after["connected"]
    assert after["health"] == "credentials accepted"
    assert after["company_id"] == qbo.realm_id and after["access_token_expires_at"]

    result = await export(client, store, worker, "inv_qb_1")
    assert result.status == ExportStatus.EXPORTED, result.reason
    [invoice] = ours(qbo, "inv_qb_1")
    assert result.external_id == invoice["Id"]
    billing_total = Decimal(invoice_payload("inv_qb_1")["total"])
    assert Decimal(str(invoice["TotalAmt"])) == billing_total == Decimal(result.provider_total)
    assert invoice["CustomerRef"]["value"] == books.customer_id
    sales = [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in sales] == [
        books.items["item_seats"],
        books.items["item_api_calls"],
    ]
    [create] = [r for r in qbo.requests() if r.method == "POST" and r.path.endswith("/invoice")]
    assert create.query.get("requestid", "").startswith("bb-")

    # Disconnecting revokes the grant at QuickBooks and forgets it here.
    revoked = billbridge(worker, "connections", "revoke", CONNECTION)
    assert revoked.returncode == 0, revoked.stderr
    assert not qbo.valid_refresh_tokens()
    row = store.get_connection(CONNECTION)
    assert row is not None and row.credentials_ref is None


async def test_export_before_authorization_waits_and_completes_once_authorized(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    invoice = submit_invoice(store, invoice_payload("inv_qb_wait"))
    handle = await start_export(client, invoice.id, worker.task_queue)
    waiting = await export_result(handle, invoice.id)
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "connections authorize quickbooks" in waiting.reason
    await wait_until_listed_as_waiting(client, invoice.id)

    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    assert "signalled" in done.stdout
    result = await export_result(handle, invoice.id, through_attention=True)
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert len(ours(qbo, invoice.id)) == 1


async def test_token_expiring_in_the_middle_of_a_batch(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    # From now on tokens live two seconds, refresh tokens rotate on every use (and the used one
    # dies at once), and halfway through the batch every access token is killed early.
    qbo.set_access_token_ttl(2.0)
    qbo.expire_access_tokens()
    ids = [f"inv_qb_batch_{n}" for n in range(12)]
    handles = []
    for invoice_id in ids:
        invoice = submit_invoice(store, invoice_payload(invoice_id))
        handles.append(await start_export(client, invoice.id, worker.task_queue))
        await asyncio.sleep(0.25)
        if invoice_id == ids[6]:
            qbo.expire_access_tokens()
    results = [await export_result(h, i) for h, i in zip(handles, ids, strict=True)]

    assert [r.status for r in results] == [ExportStatus.EXPORTED] * len(ids), [
        r.reason for r in results
    ]
    for invoice_id in ids:
        assert len(ours(qbo, invoice_id)) == 1
    assert qbo.refresh_count >= 2
    # Every rotated refresh token was stored: the store holds the one QuickBooks accepts now.
    assert stored_grant(store).refresh_token in qbo.valid_refresh_tokens()
    refused = [g for g in qbo.token_grants() if not g["ok"]]
    assert refused == [], refused  # no worker ever refreshed with a token rotated away
    for invoice_id in ids:
        assert not [a for a in store.list_attempts(invoice_id) if "Auth" in a.error]


async def test_revoked_refresh_token_needs_attention_until_reauthorized(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    qbo.revoke_refresh_tokens()  # the user disconnected the app in QuickBooks
    ids = [f"inv_qb_revoked_{n}" for n in range(3)]
    handles = []
    for invoice_id in ids:
        invoice = submit_invoice(store, invoice_payload(invoice_id))
        handles.append(await start_export(client, invoice.id, worker.task_queue))
    waiting = [await export_result(h, i) for h, i in zip(handles, ids, strict=True)]
    assert {w.status for w in waiting} == {ExportStatus.NEEDS_ATTENTION}
    assert all("re-authorize" in w.reason for w in waiting), waiting[0].reason
    for invoice_id in ids:
        await wait_until_listed_as_waiting(client, invoice_id)
    listed = json.loads(billbridge(worker, "attention", "list").stdout)
    assert set(ids) <= {w["invoice_id"] for w in listed}
    assert not qbo.invoices()  # nothing half-exported

    again = await asyncio.to_thread(authorize, worker)
    assert again.returncode == 0, again.stderr
    results = [
        await export_result(h, i, through_attention=True) for h, i in zip(handles, ids, strict=True)
    ]
    assert {r.status for r in results} == {ExportStatus.EXPORTED}
    for invoice_id in ids:
        assert len(ours(qbo, invoice_id)) == 1


async def test_dropped_response_does_not_duplicate_the_invoice(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    # QuickBooks creates the invoice, then the connection drops before the answer arrives.
    qbo.add_fault(Fault(kind="drop_after", path_prefix="/v3/", method="POST"))
    result = await export(client, store, worker, "inv_qb_drop")
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert len(ours(qbo, "inv_qb_drop")) == 1
    posts = [r for r in qbo.requests() if r.method == "POST" and r.path.endswith("/invoice")]
    assert len(posts) <= 2 and len({p.query.get("requestid") for p in posts}) == 1


async def test_deleted_quickbooks_customer_needs_attention(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    qbo.deactivate_customer(books.customer_id)
    result = await export(client, store, worker, "inv_qb_deleted_customer")
    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderCustomerMissing" in result.reason and "deleted" in result.reason
    assert not qbo.invoices()


async def test_missing_customer_is_found_by_email_or_created(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator, books: Books
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    changed = billbridge(worker, "connections", "set", CONNECTION, "create_missing_customers=true")
    assert changed.returncode == 0, changed.stderr
    customers = [
        build_customer("cust_qb_known", payment_provider="quickbooks", email="billing@acme.test"),
        build_customer("cust_qb_new", payment_provider="quickbooks", email="new@example.test"),
    ]
    upsert_customers(store, customers)
    results = {}
    for customer in ("cust_qb_known", "cust_qb_new"):
        payload = build_invoice(f"inv_{customer}", customer, "USD", LINES)
        invoice = submit_invoice(store, payload)
        handle = await start_export(client, invoice.id, worker.task_queue)
        results[customer] = await export_result(handle, invoice.id)
    assert {r.status for r in results.values()} == {ExportStatus.EXPORTED}
    assert store.get_customer_link(CONNECTION, "cust_qb_known") == books.customer_id
    created = store.get_customer_link(CONNECTION, "cust_qb_new")
    assert created and created != books.customer_id
    emails = {c["Id"]: c.get("PrimaryEmailAddr", {}).get("Address") for c in qbo.customers()}
    assert emails[created] == "new@example.test"


async def test_history_holds_no_token_and_no_email(
    client: Client,
    store: Store,
    worker: Settings,
    qbo: QuickBooksEmulator,
    books: Books,
    temporal_server: DevServer,
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    qbo.set_access_token_ttl(1.0)
    qbo.expire_access_tokens()  # so the export itself refreshes (and stores) a grant
    result = await export(client, store, worker, "inv_qb_history")
    assert result.status == ExportStatus.EXPORTED, result.reason
    grant = stored_grant(store)
    show = await workflow_show(temporal_server.address, "export-invoice/inv_qb_history")
    assert show.returncode == 0, show.stderr
    # The CLI prints event types as EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED (or, in other
    # versions, WorkflowExecutionCompleted): either way, the whole history was read.
    assert "EXECUTIONCOMPLETED" in show.stdout.upper().replace("_", "")
    for secret in (
        grant.access_token,
        grant.refresh_token,
        grant.client_secret,
        *qbo.valid_refresh_tokens(),
        "billing@acme.test",
        "acme.test",
        "Acme Corp",
    ):
        assert secret not in show.stdout


def test_dry_run_prints_the_quickbooks_request_and_sends_nothing(
    store: Store, settings: Settings, qbo: QuickBooksEmulator, books: Books, tmp_path: Any
) -> None:
    done = authorize(settings)
    assert done.returncode == 0, done.stderr
    qbo.clear_requests()
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(invoice_payload("inv_qb_dry")))
    shown = billbridge(settings, "export", str(path), "--dry-run")
    assert shown.returncode == 0, shown.stderr
    [request] = json.loads(shown.stdout)["requests"]
    assert request["path"] == f"/v3/company/{qbo.realm_id}/invoice"
    assert Decimal(str(sum(Decimal(str(x["Amount"])) for x in request["body"]["Line"]))) == Decimal(
        invoice_payload("inv_qb_dry")["total"]
    )
    assert not [r for r in qbo.requests() if r.method == "POST"]
    assert not qbo.invoices()


async def test_sigkill_while_creating_the_invoice_exports_exactly_once(
    client: Client,
    store: Store,
    settings: Settings,
    qbo: QuickBooksEmulator,
    books: Books,
    worker_process: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    done = await asyncio.to_thread(authorize, settings)
    assert done.returncode == 0, done.stderr
    # QuickBooks takes 8 s over the create (and still creates the invoice, as it would for a
    # client that vanished); the worker is killed while it waits.
    qbo.add_fault(Fault(kind="delay", seconds=8.0, method="POST", path_prefix="/v3/"))
    first = start_worker(settings, tmp_path / "worker-1.log")
    worker_process.append(first)
    invoice = submit_invoice(store, invoice_payload("inv_qb_crash"))
    handle = await start_export(client, invoice.id, settings.task_queue)

    # The push step makes the create its first write, within moments of starting; 2 s into
    # the step the worker is inside that 8 s request.
    for _ in range(600):
        progress = await handle.query(ExportInvoiceWorkflow.progress)
        if progress.step == ExportStatus.PUSHING:
            break
        await asyncio.sleep(0.1)
    assert progress.step == ExportStatus.PUSHING
    await asyncio.sleep(2.0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert not ours(qbo, invoice.id), "killed before QuickBooks answered the create"
    await wait_for(lambda: len(ours(qbo, invoice.id)) == 1, within=15)

    worker_process.append(start_worker(settings, tmp_path / "worker-2.log"))
    await retry_now(client, handle.id)
    result = await export_result(handle, invoice.id)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [created] = ours(qbo, invoice.id)
    assert result.external_id == created["Id"]
    assert Decimal(str(created["TotalAmt"])) == Decimal(invoice_payload("inv_qb_crash")["total"])
    # The retry found the invoice by its DocNumber and marker before writing anything.
    creates = [r for r in qbo.requests() if r.method == "POST" and r.path.endswith("/invoice")]
    assert len(creates) == 1
    record = store.get_export(invoice.id, CONNECTION)
    assert record is not None and record.status == "exported"


async def test_customers_on_different_providers_export_at_the_same_time(
    client: Client,
    store: Store,
    worker: Settings,
    qbo: QuickBooksEmulator,
    books: Books,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    done = await asyncio.to_thread(authorize, worker)
    assert done.returncode == 0, done.stderr
    map_invoice_items(stripe_account, store, build_invoice("x", "cust_1", "USD", LINES))
    payloads = [
        build_invoice(f"inv_mixed_{n}", customer, "USD", LINES)
        for n, customer in enumerate(["cust_1", "cust_qb"] * 3)
    ]
    handles = []
    for payload in payloads:
        invoice = submit_invoice(store, payload)
        handles.append((invoice.id, await start_export(client, invoice.id, worker.task_queue)))
    results = {i: await export_result(h, i) for i, h in handles}
    assert {r.status for r in results.values()} == {ExportStatus.EXPORTED}
    for payload in payloads:
        invoice_id = payload["id"]
        if payload["customer"]["id"] == "cust_qb":
            assert results[invoice_id].provider == CONNECTION
            assert len(ours(qbo, invoice_id)) == 1
        else:
            assert results[invoice_id].provider == "stripe_invoice"
            assert len(finalized_invoices(emulator, invoice_id)) == 1


def test_cli_refuses_what_quickbooks_does_not_have(settings: Settings) -> None:
    draft = billbridge(settings, "connections", "set", CONNECTION, "leave_as_draft=true")
    assert draft.returncode == 2
    assert "leave_as_draft: not a setting of quickbooks connections" in draft.stderr
    api_key = billbridge(settings, "connections", "add", CONNECTION, "--api-key", "x")
    assert api_key.returncode == 2
    assert "billbridge connections authorize quickbooks" in api_key.stderr
    stripe = billbridge(settings, "connections", "authorize", "stripe_invoice")
    assert stripe.returncode == 2 and "takes an API key" in stripe.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = billbridge(settings, "connections", "authorize", CONNECTION, "--port", port)
    assert busy.returncode == 1 and f"127.0.0.1:{port}" in busy.stderr


def test_grant_sealed_with_another_key_is_a_clear_error(
    store: Store, settings: Settings, qbo: QuickBooksEmulator
) -> None:
    done = authorize(settings)
    assert done.returncode == 0, done.stderr
    listed = billbridge(
        settings,
        "connections",
        "list",
        env={"BILLBRIDGE_CODEC_KEY": generate_key()},
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    report = {c["connection"]: c for c in json.loads(listed.stdout)}[CONNECTION]
    for field in ("credentials", "health"):
        assert "which this process does not have" in report[field]
        assert "BILLBRIDGE_CODEC_KEY" in report[field]
