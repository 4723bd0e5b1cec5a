"""Heartbeats that match the I/O: an attempt gives a slow request up before Temporal would start
its retry, so an attempt and its own retry never write at the same time.

The push runs here with a short heartbeat timeout (PUSH_HEARTBEAT), set by a worker interceptor
that only these tests install: production has no knob a deployment could turn by accident. The
activity derives its request deadline from the heartbeat timeout it was scheduled with
(core/timeouts.request_timeout: 6 s -> 3.3 s), so the rule "a request ends before the heartbeat
timeout" holds in the test as in production; a provider call slower than the heartbeat timeout
(the emulators' `delay` fault) then shows what happens.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

import httpx
import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from billbridge.activities.export import ExportActivities
from billbridge.activities.providers import deadline
from billbridge.activities.store import Store
from billbridge.core import activity_names as names
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.core.money import to_minor
from billbridge.emulators.quickbooks import Fault as QuickBooksFault
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import export_result, start_export, submit_invoice
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed_quickbooks import authorize_with_emulator, seed_quickbooks
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from conftest import (
    CODEC_TEST_KEY,
    StripeAccount,
    finalized_invoices,
    map_invoice_items,
    wait_for,
)

PUSH_HEARTBEAT = timedelta(seconds=6)
# The push of the two-step pass, and that of workflows started before it.
PUSH_ACTIVITIES = (names.PUSH_PLANNED_INVOICE, names.PUSH_INVOICE)
# Longer than the heartbeat timeout: without a request deadline the attempt would still be
# waiting when Temporal started its retry.
SLOW = 8.0
LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


class _ShortPushHeartbeat(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity in PUSH_ACTIVITIES:
            input = dataclasses.replace(input, heartbeat_timeout=PUSH_HEARTBEAT)
        return super().start_activity(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_ShortPushHeartbeat(outbound))


class ShortPushHeartbeat(Interceptor):
    """Schedules the push with PUSH_HEARTBEAT instead of the workflow's own heartbeat timeout."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


@pytest_asyncio.fixture
async def worker(client: Client, store: Store, settings: Settings) -> AsyncIterator[Settings]:
    """The export worker (workers/export_worker.build_worker) plus the interceptor."""
    with ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as executor:
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[ExportInvoiceWorkflow],
            activities=ExportActivities(store, settings).activities(),
            activity_executor=executor,
            max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
            interceptors=[ShortPushHeartbeat()],
        ):
            yield settings


class Logged(Protocol):
    method: str
    arrived: int
    completed: int


def overlapping_writes(requests: Sequence[Logged]) -> list[tuple[Logged, Logged]]:
    """Pairs of writes (POSTs) the emulator was executing at the same time: each arrived
    before the other completed (places in the emulator's one sequence, no clocks)."""
    posts = [r for r in requests if r.method == "POST"]
    return [
        (a, b)
        for i, a in enumerate(posts)
        for b in posts[i + 1 :]
        if a.arrived < b.completed and b.arrived < a.completed
    ]


async def push_started_events(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """ActivityTaskStarted of every push in the history: the attempt that finally ran, and the
    failure of the one before it (attempts in between are not events of their own)."""
    push_scheduled: set[int] = set()
    started = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name in PUSH_ACTIVITIES:
                push_scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            if attributes.scheduled_event_id in push_scheduled:
                started.append(attributes)
    return started


def assert_gave_up_by_itself(started: Any) -> None:
    """The attempt before this one failed with its own request timeout, not a heartbeat
    timeout of the server's: it had stopped before its retry began."""
    chain = []
    failure = started.last_failure
    while failure is not None:  # the server may wrap a large failure ("exceeds size limit")
        chain.append(failure)
        failure = failure.cause if failure.HasField("cause") else None
    types = [
        f.application_failure_info.type for f in chain if f.HasField("application_failure_info")
    ]
    # Our error first, then its Python causes down to the socket's.
    assert types[0] == "ProviderUnavailable" and "ReadTimeout" in types, types
    assert not [f for f in chain if f.HasField("timeout_failure_info")], chain


async def test_slow_stripe_request_gives_up_before_the_retry_and_nothing_overlaps(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # A customer balance makes the push read the customer's balance transactions between its
    # first write (the draft) and the next ones: that read is held longer than the heartbeat
    # timeout.
    invoice = build_invoice("inv_slow_read", "cust_1", "USD", LINES, balance_applied=Decimal("-5"))
    map_invoice_items(stripe_account, store, invoice)
    balance_path = f"/v1/customers/{stripe_account.customer_id}/balance_transactions"
    emulator.add_fault(Fault(kind="delay", seconds=SLOW, method="GET", path_prefix=balance_path))
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_slow_read", worker.task_queue)
    result = await export_result(handle, "inv_slow_read")

    assert result.status == ExportStatus.EXPORTED, result.reason
    # The first attempt's read timed out in the worker, which recorded the failure; Temporal
    # then started attempt 2 because attempt 1 failed, not because its heartbeats stopped.
    [failure] = [a for a in store.list_attempts("inv_slow_read") if a.step == "push"]
    assert failure.error.startswith("ProviderUnavailable: Stripe reading balance transactions")
    assert "ReadTimeout" in failure.error
    [started] = await push_started_events(handle)
    assert started.attempt == 2
    assert_gave_up_by_itself(started)

    # The emulator logs a request when it answers: the abandoned read shows up when its delay
    # is over, after the export finished.
    await wait_for(lambda: any(r.fault == "delay" for r in emulator.requests()), within=15)
    requests = emulator.requests()
    [slow] = [r for r in requests if r.fault == "delay"]
    assert slow.path == balance_path
    # The retry was already at work while the emulator still held the abandoned read ...
    retry = [r for r in requests if slow.arrived < r.arrived < slow.completed]
    assert retry and retry[0].method == "GET" and retry[0].path.startswith("/v1/invoices/")
    # ... and no write of either attempt overlapped another; none was sent twice.
    assert overlapping_writes(requests) == []
    writes = [r for r in requests if r.method == "POST"]
    assert not [r for r in writes if r.replayed]
    keys = [r.idempotency_key for r in writes]
    assert len(keys) == len(set(keys))
    assert [r.path for r in writes].count("/v1/invoices") == 1  # the retry resumed the draft

    [stripe_invoice] = finalized_invoices(emulator, "inv_slow_read")
    assert stripe_invoice["status"] == "open"
    assert stripe_invoice["total"] == to_minor(Decimal(invoice["total"]), "USD")
    refs = [line["metadata"]["billbridge_line_ref"] for line in stripe_invoice["lines"]["data"]]
    assert sorted(refs) == sorted(line["id"] for line in invoice["line_items"])


# -- QuickBooks ------------------------------------------------------------------------------


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator(requests_per_minute=None) as emulator:
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, qbo: QuickBooksEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens the grant
    return replace(settings, quickbooks_api_base=qbo.base_url)


async def test_slow_quickbooks_lookup_gives_up_before_the_retry_and_creates_once(
    client: Client, store: Store, worker: Settings, qbo: QuickBooksEmulator
) -> None:
    authorize_with_emulator(worker, store)
    customer = build_customer("cust_qb", payment_provider="quickbooks", email="ap@acme.test")
    seed_quickbooks(worker, store, {line.item_id: line.item_name for line in LINES}, [customer])
    realm = f"/v3/company/{qbo.realm_id}"
    # Attempt 1's create fails without being executed; attempt 2 looks for what attempt 1 may
    # have written, and that query is held longer than the heartbeat timeout. (The one query
    # before it, skipped, is the mapping step's item lookup; asserted below.)
    create = f"{realm}/invoice"
    qbo.add_fault(QuickBooksFault(kind="status", status=503, method="POST", path_prefix=create))
    query = f"{realm}/query"
    qbo.add_fault(QuickBooksFault(kind="delay", seconds=SLOW, path_prefix=query, skip=1))
    qbo.clear_requests()
    invoice = build_invoice("inv_qb_slow_lookup", "cust_qb", "USD", LINES)
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_qb_slow_lookup", worker.task_queue)
    result = await export_result(handle, "inv_qb_slow_lookup")

    assert result.status == ExportStatus.EXPORTED, result.reason
    failures = [a.error for a in store.list_attempts("inv_qb_slow_lookup") if a.step == "push"]
    assert len(failures) == 2 and "ReadTimeout" in failures[1], failures
    assert failures[1].startswith("ProviderUnavailable: QuickBooks looking up earlier invoices")
    [started] = await push_started_events(handle)
    assert started.attempt == 3
    assert_gave_up_by_itself(started)

    await wait_for(lambda: any(r.fault == "delay" for r in qbo.requests()), within=15)
    requests = qbo.requests()
    [slow] = [r for r in requests if r.fault == "delay"]
    assert "from Invoice" in slow.query["query"]
    assert overlapping_writes(requests) == []
    creates = [r for r in requests if r.method == "POST" and r.path == create]
    assert [r.status for r in creates] == [503, 200]  # one refused, one executed
    [created] = [
        i for i in qbo.invoices() if i["PrivateNote"] == "billbridge invoice inv_qb_slow_lookup"
    ]
    assert Decimal(str(created["TotalAmt"])) == Decimal(invoice["total"])
    assert result.external_id == created["Id"]


# -- the deadline itself -----------------------------------------------------------------------


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """An HTTP server that answers one byte at a time, each well within a read timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
            for _ in range(200):
                if stop.wait(0.05):
                    return
                try:
                    connection.sendall(b"x")
                except OSError:  # the client gave up
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_trickling_response_cannot_outlast_the_request_deadline(trickling_server: str) -> None:
    # Every byte arrives 0.05 s after the last, so no single read ever waits 1 s: a per-socket-
    # operation timeout of 1 s would let the answer take 10 s. The total deadline ends it.
    with deadline.client(trickling_server) as http, deadline.within(1.0):
        with pytest.raises(httpx.ReadTimeout):
            http.get(trickling_server, timeout=deadline.timeout())
