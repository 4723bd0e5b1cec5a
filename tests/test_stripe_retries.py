"""Retries as Stripe directs them: its `Stripe-Should-Retry` header, and 500s it keeps.

Stripe replays the first result of a request under its Idempotency-Key, "including 500 errors"
(https://docs.stripe.com/idempotency), and says so with `Stripe-Should-Retry: false` (as
stripe-python reads it, stripe/_http_client.py `_should_retry`). Retrying such a write under
the same key would stall for the key's lifetime (about a day): once a lookup proves nothing
was written, the export retries under the next key. Real SDK, real worker, real emulator.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe
from temporalio.client import Client

from billbridge.activities.providers.stripe_invoice import (
    StripeFailedUnderKey,
    StripeInvoiceProvider,
    idempotency_key,
)
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import ExportError, ProviderRejected, ProviderUnavailable
from billbridge.core.messages import ExportStatus
from billbridge.emulators.stripe import StripeEmulator, StripeFault
from billbridge.starter.door import export_result, start_export, submit_invoice
from billbridge.starter.samples import SampleLine, build_invoice
from conftest import STRIPE_TEST_KEY, StripeAccount, finalized_invoices, map_invoice_items

LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]


def translated(emulator: StripeEmulator, fault: StripeFault) -> ExportError:
    """The error billbridge makes of one Stripe answer carrying `fault`."""
    emulator.add_fault(fault)
    provider = StripeInvoiceProvider(STRIPE_TEST_KEY, emulator.base_url)
    with pytest.raises(ExportError) as info:
        provider.check_credentials()
    return info.value


@pytest.mark.parametrize(
    ("status", "should_retry", "expected", "retryable"),
    [
        # Stripe's advice wins over the status, as in stripe-python.
        (400, True, ProviderUnavailable, True),
        (409, False, ProviderRejected, False),
        # A 5xx Stripe keeps under the key: retried, but not under that key (see below).
        (500, False, StripeFailedUnderKey, True),
        (503, None, ProviderUnavailable, True),
        (400, None, ProviderRejected, False),
    ],
)
def test_stripe_should_retry_decides_before_the_status(
    emulator: StripeEmulator,
    status: int,
    should_retry: bool | None,
    expected: type[ExportError],
    retryable: bool,
) -> None:
    err = translated(emulator, StripeFault(kind="status", status=status, should_retry=should_retry))
    assert type(err) is expected
    assert err.retryable is retryable
    assert err.to_application_error().non_retryable is not retryable
    [logged] = emulator.requests()
    assert logged.status == status


def test_emulator_replays_a_saved_500_under_its_key_only(emulator: StripeEmulator) -> None:
    emulator.add_fault(StripeFault(kind="status", status=500, saved=True, path_prefix="/v1/"))
    client = stripe.StripeClient(
        STRIPE_TEST_KEY, base_addresses={"api": emulator.base_url}, max_network_retries=0
    )
    answers = []
    for key in ("key-a", "key-a", "key-b"):
        try:
            created = client.v1.customers.create(
                params={"email": "a@b.test"}, options={"idempotency_key": key}
            )
            answers.append((200, created.last_response.headers.get("Idempotent-Replayed")))
        except stripe.APIError as err:
            headers = err.headers or {}
            answers.append((err.http_status, headers.get("Stripe-Should-Retry")))
    assert answers == [(500, "false"), (500, "false"), (200, None)]
    assert [r.replayed for r in emulator.requests()] == [False, True, False]
    assert len(client.v1.customers.list().data) == 1  # the 500 wrote nothing


def test_admin_endpoint_arms_stripe_faults(emulator: StripeEmulator) -> None:
    body = {"kind": "status", "status": 500, "saved": True, "path_prefix": "/v1/invoices"}
    answer = httpx.post(f"{emulator.base_url}/_emulator/faults", json=body)
    assert answer.status_code == 200 and answer.json()["saved"] is True
    refused = httpx.post(f"{emulator.base_url}/_emulator/faults", json={**body, "status": 429})
    assert refused.status_code == 400 and "5xx" in refused.json()["error"]


def creates(emulator: StripeEmulator) -> list[Any]:
    return [r for r in emulator.requests() if r.method == "POST" and r.path == "/v1/invoices"]


async def test_a_500_stripe_replays_on_create_does_not_stall_the_export(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_create_500", "cust_1", "USD", LINES)
    map_invoice_items(stripe_account, store, invoice)
    # The create fails once execution began (saved under its key, nothing written); the
    # create under the next key is lost on the way (not executed), so the next attempt starts
    # over and meets the saved 500 again, replayed.
    emulator.add_fault(
        StripeFault(
            kind="status", status=500, saved=True, method="POST", path_prefix="/v1/invoices"
        )
    )
    emulator.add_fault(StripeFault(kind="drop", method="POST", path_prefix="/v1/invoices"))
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_create_500", worker.task_queue)
    result = await export_result(handle, "inv_create_500")

    assert result.status == ExportStatus.EXPORTED, result.reason
    [stripe_invoice] = finalized_invoices(emulator, "inv_create_500")  # exactly one
    assert stripe_invoice["status"] == "open" and result.external_id == stripe_invoice["id"]
    first = idempotency_key("inv_create_500", "create")
    next_key = f"{first}-after-500-1"
    assert [(r.idempotency_key, r.status, r.replayed) for r in creates(emulator)] == [
        (first, 500, False),
        (next_key, 0, False),  # dropped before execution
        (first, 500, True),  # Stripe's replay: retrying this key alone would stall for a day
        (next_key, 200, False),
    ]
    # Before each new key, a lookup proved that no draft existed.
    listed = [r for r in emulator.requests() if r.method == "GET" and r.path == "/v1/invoices"]
    assert len(listed) >= 2


async def test_a_500_stripe_replays_on_add_lines_adds_each_line_once(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_lines_500", "cust_1", "USD", LINES)
    map_invoice_items(stripe_account, store, invoice)
    emulator.add_fault(
        StripeFault(
            kind="status", status=500, saved=True, method="POST", path_prefix="/v1/invoices/"
        )
    )
    result = await export_result(
        await start_export(client, submit_invoice(store, invoice).id, worker.task_queue),
        "inv_lines_500",
    )
    assert result.status == ExportStatus.EXPORTED, result.reason
    [stripe_invoice] = finalized_invoices(emulator, "inv_lines_500")
    refs = [line["metadata"]["billbridge_line_ref"] for line in stripe_invoice["lines"]["data"]]
    assert len(refs) == len(LINES) == len(set(refs))
    adds = [r for r in emulator.requests() if r.path.endswith("/add_lines")]
    assert [(r.status, r.idempotency_key.endswith("-after-500-1")) for r in adds] == [
        (500, False),
        (200, True),
    ]


async def test_a_refusal_stripe_says_to_retry_is_retried(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    invoice = build_invoice("inv_should_retry", "cust_1", "USD", LINES)
    map_invoice_items(stripe_account, store, invoice)
    # A 400 is never retried, unless Stripe advises it (a lock timeout, say).
    emulator.add_fault(
        StripeFault(kind="status", status=400, should_retry=True, method="POST", path_prefix="/v1/")
    )
    submit_invoice(store, invoice)
    handle = await start_export(client, "inv_should_retry", worker.task_queue)
    result = await export_result(handle, "inv_should_retry")
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert len(finalized_invoices(emulator, "inv_should_retry")) == 1
    assert [r.status for r in creates(emulator)] == [400, 200]
