"""Delivery: Stripe issues the invoice to the end customer (POST /v1/invoices/{id}/send).

The emulator records the e-mails Stripe would send (`emails()`, `GET /_emulator/emails`): by
the send endpoint (https://docs.stripe.com/api/invoices/send) or by auto_advance at finalization
(https://docs.stripe.com/invoicing/integration/automatic-advancement-collection).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe
from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import export_invoice
from billbridge.starter.samples import SampleLine, build_invoice
from billbridge.starter.seed import stripe_client
from conftest import STRIPE_TEST_KEY, StripeAccount, billbridge, finalized_invoices

CONNECTION = "stripe_invoice"
LINES = [SampleLine("item_seats", "Seats", Decimal(3), Decimal("49.99"))]


def set_connection(store: Store, **settings: object) -> None:
    store.upsert_connection(CONNECTION, CONNECTION, settings=dict(settings))


def emails_for(emulator: StripeEmulator, invoice_id: str) -> list[dict[str, Any]]:
    (stripe_invoice,) = finalized_invoices(emulator, invoice_id)
    return [e for e in emulator.emails() if e["invoice"] == stripe_invoice["id"]]


# -- the emulator, through the SDK --------------------------------------------------------------


@pytest.fixture
def sdk() -> Iterator[tuple[StripeEmulator, stripe.StripeClient]]:
    with StripeEmulator(rate_limit_per_second=None) as emulator:
        yield emulator, stripe_client(emulator.base_url, STRIPE_TEST_KEY)


def open_invoice(client: stripe.StripeClient, method: str = "send_invoice") -> Any:
    customer = client.v1.customers.create(params={"email": "ap@buyer.test"})
    params: dict[str, Any] = {"customer": customer.id, "collection_method": method}
    if method == "send_invoice":
        params["days_until_due"] = 30
    draft = client.v1.invoices.create(params=params)
    client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 5000}]})
    return draft


def test_send_endpoint_e_mails_a_finalized_invoice(
    sdk: tuple[StripeEmulator, stripe.StripeClient],
) -> None:
    emulator, client = sdk
    draft = open_invoice(client)
    finalized = client.v1.invoices.finalize_invoice(draft.id, params={"auto_advance": False})
    assert finalized.status == "open" and emulator.emails() == []

    sent = client.v1.invoices.send_invoice(draft.id)
    assert sent.id == draft.id and sent.status == "open"
    (email,) = emulator.emails()
    assert (email["invoice"], email["to"], email["via"]) == (draft.id, "ap@buyer.test", "send")
    over_http = httpx.get(f"{emulator.base_url}/_emulator/emails").json()
    assert over_http == emulator.emails()


def test_send_refuses_what_stripe_does_not_e_mail(
    sdk: tuple[StripeEmulator, stripe.StripeClient],
) -> None:
    emulator, client = sdk
    charged = open_invoice(client, "charge_automatically")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.send_invoice(charged.id)
    voided = open_invoice(client)
    client.v1.invoices.finalize_invoice(voided.id)
    client.v1.invoices.void_invoice(voided.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.send_invoice(voided.id)
    assert emulator.emails() == []


def test_auto_advance_e_mails_and_send_finalizes_a_draft(
    sdk: tuple[StripeEmulator, stripe.StripeClient],
) -> None:
    emulator, client = sdk
    advancing = open_invoice(client)
    client.v1.invoices.finalize_invoice(advancing.id, params={"auto_advance": True})
    assert [e["via"] for e in emulator.emails()] == ["auto_advance"]

    draft = open_invoice(client)
    sent = client.v1.invoices.send_invoice(draft.id)
    assert sent.status == "open" and sent.status_transitions.finalized_at is not None
    assert [e["via"] for e in emulator.emails()] == ["auto_advance", "send"]


# -- the export ---------------------------------------------------------------------------------


async def test_an_exported_send_invoice_is_e_mailed_once(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # The send executes but its answer is lost: the retry replays it under its idempotency key
    # and the customer still gets one e-mail. (POSTs under /v1/invoices/{id}/: add_lines,
    # finalize, send.)
    emulator.add_fault(Fault(kind="drop_after", method="POST", path_prefix="/v1/invoices/", skip=2))
    invoice = build_invoice("inv_dlv_mail", "cust_1", "USD", LINES)
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED, result.reason
    assert "e-mailed to the customer" in result.reason
    (email,) = emails_for(emulator, "inv_dlv_mail")
    assert (email["via"], email["to"], email["amount_due"]) == ("send", "billing@acme.test", 14997)
    (stripe_invoice,) = finalized_invoices(emulator, "inv_dlv_mail")
    assert stripe_invoice["auto_advance"] is False  # Stripe sends nothing a second time


async def test_send_email_off_leaves_delivery_to_the_user(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    done = billbridge(worker, "connections", "set", CONNECTION, "send_email=false")
    assert done.returncode == 0, done.stderr
    invoice = build_invoice("inv_dlv_quiet", "cust_1", "USD", LINES)
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED, result.reason
    assert "not e-mailed (send_email is off)" in result.reason
    assert emails_for(emulator, "inv_dlv_quiet") == []
    assert not [r for r in emulator.requests() if r.path.endswith("/send")]


@pytest.mark.parametrize(
    "connection_settings",
    [{"leave_as_draft": True}, {"collection_method": "charge_automatically"}],
    ids=["leave_as_draft", "charge_automatically"],
)
async def test_drafts_and_charged_invoices_are_not_sent(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    connection_settings: dict[str, object],
) -> None:
    set_connection(store, **connection_settings)
    # Workflow ids outlive a test (one Temporal server per session): an id per case.
    invoice_id = f"inv_dlv_unsent_{next(iter(connection_settings))}"
    invoice = build_invoice(invoice_id, "cust_1", "USD", LINES)
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED, result.reason
    assert emails_for(emulator, invoice_id) == []
    assert not [r for r in emulator.requests() if r.path.endswith("/send")]


async def test_a_paid_invoice_is_not_e_mailed(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # Below Stripe's minimum charge Stripe marks the invoice paid and carries the amount; as
    # with auto_advance, which never advances a paid invoice, nothing is e-mailed.
    small = [SampleLine("item_seats", "Seats", Decimal(1), Decimal("0.30"))]
    invoice = build_invoice("inv_dlv_small_paid", "cust_1", "USD", small)
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED, result.reason
    assert "not e-mailed: Stripe marked it paid" in result.reason
    assert emails_for(emulator, "inv_dlv_small_paid") == []
