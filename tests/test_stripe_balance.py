"""The Stripe customer's balance: Stripe applies all of it when it finalizes an invoice.

Driven end to end (workflow, worker, stripe SDK, Stripe emulator); the emulator applies the
customer's whole balance at finalization and carries amounts below the minimum charge to the
balance, as Stripe documents (https://docs.stripe.com/billing/customer/balance).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from temporalio.client import Client

from billbridge.activities.providers.stripe_balance import read_ledger
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.core.money import to_minor
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.door import export_invoice, export_result, start_export
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed import seed_customer
from conftest import StripeAccount, billbridge, finalized_invoices, wait_for

CONNECTION = "stripe_invoice"
# Stripe's minimum charge in minor units of the currencies used here (stripe_minimums).
MINIMUM = {"usd": 50, "gbp": 30, "jpy": 50}


def at_finalize(fault: Fault) -> Fault:
    """The fault on the finalize request: of a one-batch export's POST /v1/invoices/{id}/...
    requests (add_lines, then finalize), the second."""
    fault.method, fault.path_prefix, fault.skip = "POST", "/v1/invoices/", 1
    return fault


def seats(amount: str) -> list[SampleLine]:
    return [SampleLine("item_seats", "Seats", Decimal(1), Decimal(amount))]


def stripe_invoice(emulator: StripeEmulator, invoice_id: str) -> dict[str, Any]:
    (found,) = finalized_invoices(emulator, invoice_id)
    return found


def our_transactions(account: StripeAccount, customer: str, invoice_id: str) -> list[Any]:
    listed = account.client.v1.customers.balance_transactions.list(customer, params={"limit": 100})
    return [
        txn
        for txn in listed.data
        if txn.metadata.to_dict().get("billbridge_invoice_id") == invoice_id
    ]


def set_connection(store: Store, **settings: object) -> None:
    store.upsert_connection(CONNECTION, CONNECTION, settings=dict(settings))


async def test_below_minimum_invoices_followed_by_normal_ones_never_fail(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    """The measured failure: an earlier below-minimum invoice's carried debit raised a later
    invoice's amount due at Stripe, and the export failed (TotalMismatch) after Stripe had
    issued it. Now every export ends `exported`, and the note accounts for the carried debit."""
    # (currency, [(amount, balance applied), ...]) per customer, exported in order.
    sequences: dict[str, tuple[str, list[tuple[str, str]]]] = {
        "cust_a": ("USD", [("0.30", "0"), ("100.00", "0"), ("0.20", "0"), ("0.25", "0")]),
        "cust_b": ("USD", [("0.40", "0"), ("20.00", "-5.00"), ("12.00", "0")]),
        "cust_c": ("USD", [("0.49", "0"), ("0.01", "0"), ("3.00", "-2.60")]),
        "cust_d": ("GBP", [("0.29", "0"), ("5.00", "0")]),
        "cust_e": ("JPY", [("30", "0"), ("1000", "-100")]),
    }
    customers = {
        cid: seed_customer(stripe_account.client, store, build_customer(cid, currency=currency))
        for cid, (currency, _) in sequences.items()
    }

    async def export_in_order(cid: str) -> list[tuple[dict[str, Any], ExportResult]]:
        currency, amounts = sequences[cid]
        done = []
        for n, (amount, applied) in enumerate(amounts):
            invoice = build_invoice(
                f"inv_bal_{cid}_{n}",
                cid,
                currency,
                seats(amount),
                balance_applied=Decimal(applied),
            )
            done.append((invoice, await export_invoice(client, store, invoice, worker.task_queue)))
        return done

    results = await asyncio.gather(*(export_in_order(cid) for cid in sequences))

    for cid, exported in zip(sequences, results, strict=True):
        carried = 0  # what Stripe carries from one invoice of the customer to the next
        billed = 0
        for invoice, result in exported:
            assert result.status == ExportStatus.EXPORTED, (invoice["id"], result.reason)
            assert "DIFFERENCE" not in result.reason, result.reason
            currency = invoice["currency"].lower()
            due = to_minor(Decimal(invoice["amount_due"]), currency)
            billed += due
            found = stripe_invoice(emulator, invoice["id"])
            assert found["total"] == to_minor(Decimal(invoice["total"]), currency)
            owed = due + carried
            if carried:
                assert "billbridge's earlier invoice" in result.reason, result.reason
            if 0 < owed < MINIMUM[currency]:
                assert (found["amount_due"], found["ending_balance"]) == (0, owed)
                assert found["status"] == "paid"
                assert "carried" in result.reason and "next invoice" in result.reason
                carried = owed
            else:
                assert found["amount_due"] == owed
                carried = 0
        # Nothing is lost: what Stripe asks for, plus what it still carries, is what was billed.
        asked = sum(stripe_invoice(emulator, inv["id"])["amount_due"] for inv, _ in exported)
        balance = stripe_account.client.v1.customers.retrieve(customers[cid]).balance
        assert asked + balance == billed
        assert balance == carried


async def test_unexpected_balance_needs_attention_until_accepted(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    customer = stripe_account.customer_id
    stripe_account.client.v1.customers.balance_transactions.create(
        customer, params={"amount": 1000, "currency": "usd", "description": "manual debit"}
    )
    invoice = build_invoice(
        "inv_bal_manual", "cust_1", "USD", seats("100.00"), balance_applied=Decimal("-5.00")
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.NEEDS_ATTENTION
    assert "ProviderBalanceUnexpected" in result.reason and "10.00 USD" in result.reason
    assert "accept_stripe_balance" in result.reason
    # Nothing was issued, and billbridge left nothing on the customer's balance.
    assert stripe_invoice(emulator, "inv_bal_manual")["status"] == "draft"
    assert stripe_account.client.v1.customers.retrieve(customer).balance == 1000
    assert our_transactions(stripe_account, customer, "inv_bal_manual") == []

    # The fix through the CLI signals the waiting export, which goes on by itself.
    accepted = billbridge(worker, "connections", "set", CONNECTION, "accept_stripe_balance=true")
    assert accepted.returncode == 0, accepted.stderr
    handle = client.get_workflow_handle("export-invoice/inv_bal_manual", result_type=ExportResult)
    final = await export_result(handle, "inv_bal_manual", through_attention=True)

    assert final.status == ExportStatus.EXPORTED, final.reason
    assert "accept_stripe_balance" in final.reason and "DIFFERENCE" not in final.reason
    found = stripe_invoice(emulator, "inv_bal_manual")
    assert (found["total"], found["amount_due"]) == (10000, 10000 - 500 + 1000)
    assert [t.amount for t in our_transactions(stripe_account, customer, "inv_bal_manual")] == [
        -500
    ]


async def test_a_retry_reuses_the_balance_transaction(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # The first finalize never reaches Stripe: the balance transaction made just before it
    # stays, and the next attempt finds and reuses it instead of crediting twice.
    emulator.add_fault(at_finalize(Fault(kind="drop")))
    invoice = build_invoice(
        "inv_bal_retry", "cust_1", "USD", seats("40.00"), balance_applied=Decimal("-15.00")
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED, result.reason
    found = stripe_invoice(emulator, "inv_bal_retry")
    assert (found["amount_due"], found["starting_balance"]) == (2500, -1500)
    customer = stripe_account.customer_id
    assert [t.amount for t in our_transactions(stripe_account, customer, "inv_bal_retry")] == [
        -1500
    ]
    assert stripe_account.client.v1.customers.retrieve(customer).balance == 0


async def test_an_export_that_stops_before_finalizing_takes_its_balance_back(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # Stripe refuses the finalization for good: the export fails, nothing was issued, and the
    # credit billbridge put on the customer is withdrawn (Stripe would apply it to the next
    # invoice it finalizes, whoever made it).
    emulator.add_fault(at_finalize(Fault(kind="status", status=400)))
    invoice = build_invoice(
        "inv_bal_refused", "cust_1", "USD", seats("40.00"), balance_applied=Decimal("-15.00")
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.FAILED
    assert stripe_invoice(emulator, "inv_bal_refused")["status"] == "draft"
    customer = stripe_account.customer_id
    ours = our_transactions(stripe_account, customer, "inv_bal_refused")
    assert sorted(t.amount for t in ours) == [-1500, 1500]
    assert stripe_account.client.v1.customers.retrieve(customer).balance == 0


async def test_a_retry_that_finds_a_foreign_balance_takes_its_own_back(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # The first attempt put its credit on the customer, then lost its finalize; before the
    # retry (a second later, the retry policy's first interval) someone adds a debit. The next
    # attempt waits as needs attention and takes its credit back: a waiting export leaves
    # nothing on the customer's balance.
    emulator.add_fault(at_finalize(Fault(kind="drop")))
    customer = stripe_account.customer_id
    invoice = build_invoice(
        "inv_bal_foreign", "cust_1", "USD", seats("40.00"), balance_applied=Decimal("-15.00")
    )
    handle = await start_export(client, store_invoice_id(store, invoice), worker.task_queue)
    await wait_for(lambda: our_transactions(stripe_account, customer, "inv_bal_foreign"))
    stripe_account.client.v1.customers.balance_transactions.create(
        customer, params={"amount": 250, "currency": "usd", "description": "manual debit"}
    )
    result = await export_result(handle, "inv_bal_foreign")

    assert result.status == ExportStatus.NEEDS_ATTENTION, result.reason
    assert "ProviderBalanceUnexpected" in result.reason and "2.50 USD" in result.reason
    assert stripe_invoice(emulator, "inv_bal_foreign")["status"] == "draft"
    ours = our_transactions(stripe_account, customer, "inv_bal_foreign")
    assert sorted(t.amount for t in ours) == [-1500, 1500]
    assert stripe_account.client.v1.customers.retrieve(customer).balance == 250


async def test_leave_as_draft_puts_nothing_on_the_balance(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    set_connection(store, leave_as_draft=True)
    invoice = build_invoice(
        "inv_bal_left", "cust_1", "USD", seats("40.00"), balance_applied=Decimal("-15.00")
    )
    result = await export_invoice(client, store, invoice, worker.task_queue)

    assert result.status == ExportStatus.EXPORTED
    assert "left as a draft" in result.reason and "15.00" in result.reason
    assert stripe_invoice(emulator, "inv_bal_left")["status"] == "draft"
    customer = stripe_account.customer_id
    assert our_transactions(stripe_account, customer, "inv_bal_left") == []
    assert stripe_account.client.v1.customers.retrieve(customer).balance == 0


async def test_a_balance_changed_during_finalization_is_exported_and_shown(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # Someone adds a debit while Stripe is finalizing: the invoice is issued with it. The
    # export does not fail (Stripe owns the invoice now); it records the difference.
    emulator.add_fault(at_finalize(Fault(kind="delay", seconds=2.0)))
    customer = stripe_account.customer_id
    invoice = build_invoice(
        "inv_bal_raced", "cust_1", "USD", seats("40.00"), balance_applied=Decimal("-15.00")
    )
    handle = await start_export(client, store_invoice_id(store, invoice), worker.task_queue)
    await wait_for(lambda: our_transactions(stripe_account, customer, "inv_bal_raced"))
    stripe_account.client.v1.customers.balance_transactions.create(
        customer, params={"amount": 700, "currency": "usd", "description": "late debit"}
    )
    result = await export_result(handle, "inv_bal_raced")

    assert result.status == ExportStatus.EXPORTED, result.reason
    assert "DIFFERENCE" in result.reason and "7.00 USD" in result.reason
    assert result.provider_amount_due == "32.00"
    assert stripe_invoice(emulator, "inv_bal_raced")["amount_due"] == 2500 + 700


async def test_another_export_of_the_customer_mid_finalization_is_waited_for(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    # Another export's credit waits on the customer for its own finalization: finalizing now
    # would take it. This export waits (a retryable error) until it is gone.
    customer = stripe_account.customer_id
    other = stripe_account.client.v1.customers.balance_transactions.create(
        customer,
        params={
            "amount": -300,
            "currency": "usd",
            "metadata": {"billbridge_invoice_id": "inv_bal_elsewhere"},
        },
    )
    invoice = build_invoice("inv_bal_patient", "cust_1", "USD", seats("40.00"))
    handle = await start_export(client, store_invoice_id(store, invoice), worker.task_queue)
    await wait_for(
        lambda: any("inv_bal_elsewhere" in a.error for a in store.list_attempts("inv_bal_patient"))
    )
    assert stripe_invoice(emulator, "inv_bal_patient")["status"] == "draft"
    stripe_account.client.v1.customers.balance_transactions.create(
        customer,
        params={
            "amount": -other.amount,
            "currency": "usd",
            "metadata": {"billbridge_invoice_id": "inv_bal_elsewhere"},
        },
    )
    result = await export_result(handle, "inv_bal_patient")

    assert result.status == ExportStatus.EXPORTED, result.reason
    assert stripe_invoice(emulator, "inv_bal_patient")["amount_due"] == 4000


async def test_skip_below_minimum(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    done = billbridge(worker, "connections", "set", CONNECTION, "skip_below_minimum=true")
    assert done.returncode == 0, done.stderr
    before = len(emulator.requests())
    small = build_invoice("inv_bal_tiny", "cust_1", "USD", seats("0.30"))
    skipped = await export_invoice(client, store, small, worker.task_queue)

    assert skipped.status == ExportStatus.NOT_EXPORTED
    assert "below Stripe's minimum charge 0.50" in skipped.reason
    assert [r for r in emulator.requests()[before:] if r.method != "GET"] == []
    normal = build_invoice("inv_bal_normal", "cust_1", "USD", seats("0.50"))
    exported = await export_invoice(client, store, normal, worker.task_queue)
    assert exported.status == ExportStatus.EXPORTED
    assert stripe_invoice(emulator, "inv_bal_normal")["amount_due"] == 50


def test_ledger_reading_tells_expected_from_unexpected() -> None:
    """The pure split: own, carried by billbridge's earlier invoice, other exports, other."""

    def txn(tid: str, amount: int, kind: str, created: int, **extra: Any) -> SimpleNamespace:
        owner = extra.pop("owner", None)
        metadata = {"billbridge_invoice_id": owner} if owner else {}
        return SimpleNamespace(
            id=tid, amount=amount, type=kind, created=created, metadata=metadata, **extra
        )

    earlier = SimpleNamespace(
        id="in_small", amount_due=0, ending_balance=30, metadata={"billbridge_invoice_id": "x"}
    )
    now = 10_000
    ledger = [  # newest first
        txn("t6", -500, "adjustment", now - 5, owner="inv_bal_me"),
        txn("t5", -200, "adjustment", now - 10, owner="inv_bal_busy"),
        txn("t4", 100, "adjustment", now - 7200, owner="inv_bal_stale"),
        txn("t3", 40, "adjustment", now - 7300),
        txn("t2", 30, "invoice_too_small", now - 8000, invoice="in_small"),
        txn("t1", 5, "adjustment", now - 9000),
    ]
    balance = -500 - 200 + 100 + 40 + 30
    reading = read_ledger(
        balance,
        ledger,
        invoice_id="inv_bal_me",
        metadata_key="billbridge_invoice_id",
        not_before=0,
        now=now,
        finalized_invoice=lambda invoice_id: earlier,
    )
    assert (reading.own_total, reading.own_pending, reading.newest_own_id) == (-500, -500, "t6")
    assert (reading.carried, reading.carried_from) == (30, "in_small")
    assert reading.other_exports == {"inv_bal_busy": -200}
    assert reading.other_amount == 140  # the stale export's 100 and the manual 40
    assert any("inv_bal_stale" in what for what, _ in reading.other)


def store_invoice_id(store: Store, invoice: dict[str, Any]) -> str:
    from billbridge.starter.door import submit_invoice

    return submit_invoice(store, invoice).id
