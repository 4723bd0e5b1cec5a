"""Amounts reach Stripe in Stripe's minor units, not ISO 4217's, and Stripe never gets an amount
it cannot charge (https://docs.stripe.com/currencies).

ISK has no decimals in ISO 4217 but two at Stripe (always 00); MGA has two in ISO 4217 but none
at Stripe; a three-decimal amount to charge must end in 0. The plan is pure (the first tests);
the rest export through the real worker against the emulator, which refuses at finalization
what Stripe refuses, and through the real CLI for the rounding setting.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from temporalio.client import Client

from billbridge.activities.providers import stripe_currencies
from billbridge.activities.providers.base import ConnectionConfig, check_plan
from billbridge.activities.providers.stripe_invoice import StripeInvoiceProvider, StripePlan
from billbridge.activities.store import Store
from billbridge.core.breakdown import break_down
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import NEEDS_ATTENTION, AmountNotChargeable
from billbridge.core.messages import ExportStatus
from billbridge.core.models import Invoice
from billbridge.core.money import minor_unit_exponent, to_minor
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.door import export_result, start_export, submit_invoice
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed import seed_customer
from conftest import StripeAccount, billbridge, finalized_invoices, map_invoice_items

D = Decimal
NOW = 1_735_689_600.0  # 2025-01-01: when the push began (fixed, no wall clock)


def sample(invoice_id: str, currency: str, lines: list[SampleLine]) -> dict[str, Any]:
    return build_invoice(invoice_id, f"cust_{currency.lower()}", currency, lines)


def plan_of(payload: dict[str, Any], **settings: Any) -> StripePlan:
    """Stripe's plan of an Orb payload (products prod_<key>), checked against its breakdown."""
    config = ConnectionConfig("stripe_invoice", None, ConnectionSettings.model_validate(settings))
    provider = StripeInvoiceProvider.from_settings(Settings(), config)
    invoice = Invoice.model_validate(payload)
    breakdown = break_down(invoice, invoice.line_items)
    items = {key: f"prod_{key}" for key in breakdown.mapping_keys()}
    plan = provider.plan(invoice, breakdown, items, "cus_stripe", NOW)
    check_plan(plan, breakdown)
    return plan


SEATS = SampleLine("item_seats", "Seats", D(3), D("4990"))
STORAGE = SampleLine("item_storage", "Storage", D("1234.567"), D("2.5"))


@pytest.mark.parametrize(
    ("currency", "iso", "stripe_decimals"),
    [("ISK", 0, 2), ("UGX", 0, 2), ("MGA", 2, 0), ("HUF", 2, 2), ("TWD", 2, 2), ("KWD", 3, 3)],
)
def test_stripe_decimals_differ_from_iso_4217_where_stripe_says(
    currency: str, iso: int, stripe_decimals: int
) -> None:
    assert minor_unit_exponent(currency) == iso
    assert stripe_currencies.exponent(currency) == stripe_decimals


def test_isk_reaches_stripe_in_two_decimals_ending_in_00() -> None:
    payload = sample("inv_isk", "ISK", [STORAGE, SEATS])
    plan = plan_of(payload)
    # 1234.567 x 2.5 = 3086.4175 -> 3,086 kr.; 3 x 4,990 kr.: sent x 100.
    assert plan.total_minor == to_minor(D(payload["total"]), "ISK") * 100 == 1_805_600
    storage, seats = plan.lines
    # ISK prices must be whole krónur too: 3,086 kr. does not divide by 1234.567.
    assert (storage["quantity_decimal"], storage["price_data"]["unit_amount_decimal"]) == (
        "1",
        "308600",
    )
    assert (seats["quantity_decimal"], seats["price_data"]["unit_amount_decimal"]) == (
        "3",
        "499000",
    )


def test_a_fraction_of_a_zero_decimal_stripe_currency_needs_attention() -> None:
    payload = sample("inv_mga", "MGA", [SampleLine("item_seats", "Seats", D(3), D("10.50"))])
    with pytest.raises(AmountNotChargeable) as info:
        plan_of(payload)
    message = str(info.value)
    assert "31.50 MGA cannot be sent" in message
    assert "docs.stripe.com/currencies#zero-decimal" in message
    assert "stripe_rounding_line=true" in message
    assert AmountNotChargeable.__name__ in NEEDS_ATTENTION


def test_a_three_decimal_amount_due_must_end_in_0() -> None:
    payload = sample("inv_kwd", "KWD", [SampleLine("item_seats", "Seats", D(1), D("5.124"))])
    with pytest.raises(AmountNotChargeable) as info:
        plan_of(payload)
    assert "the amount due 5.124 KWD (5124 in Stripe's minor units) cannot be charged" in str(
        info.value
    )
    assert "must end in 0" in str(info.value)


def test_a_rounding_line_when_the_connection_allows_it() -> None:
    kwd = plan_of(
        sample("inv_kwd", "KWD", [SampleLine("item_seats", "Seats", D(1), D("5.124"))]),
        stripe_rounding_line=True,
    )
    assert kwd.line_amounts_minor == [5124, -4] and kwd.total_minor == 5120
    assert kwd.lines[-1]["metadata"]["billbridge_kind"] == "rounding"
    assert "rounding line of -0.004 KWD" in kwd.rounding_note
    assert "Stripe's total is 5.120 KWD, the billing total 5.124 KWD" in kwd.rounding_note
    # Each MGA line rounds to whole ariary, the rounding line brings the total to 21.
    mga = plan_of(
        sample("inv_mga", "MGA", [SampleLine("item_seats", "Seats", D(1), D("10.50"))] * 2),
        stripe_rounding_line=True,
    )
    assert mga.line_amounts_minor == [11, 11, -1] and mga.total_minor == 21


# -- through the worker, against the emulator -----------------------------------------------


def customer_in(account: StripeAccount, store: Store, currency: str) -> None:
    customer = build_customer(f"cust_{currency.lower()}", currency=currency)
    seed_customer(account.client, store, customer)


async def test_isk_invoice_is_exported_at_100x_its_iso_units(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    customer_in(stripe_account, store, "ISK")
    payload = sample("inv_isk_export", "ISK", [STORAGE, SEATS])
    map_invoice_items(stripe_account, store, payload)
    submit_invoice(store, payload)
    handle = await start_export(client, "inv_isk_export", worker.task_queue)
    result = await export_result(handle, "inv_isk_export")
    assert result.status == ExportStatus.EXPORTED, result.reason
    [found] = finalized_invoices(emulator, "inv_isk_export")
    assert found["total"] == found["amount_due"] == 1_805_600  # 18,056 kr.
    record = store.get_export("inv_isk_export", "stripe_invoice")
    assert record is not None and D(record.provider_total or "") == D(payload["total"])


async def test_unchargeable_amount_waits_until_a_rounding_line_is_allowed(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
) -> None:
    customer_in(stripe_account, store, "KWD")
    payload = sample("inv_kwd_round", "KWD", [SampleLine("item_seats", "Seats", D(3), D("1.995"))])
    map_invoice_items(stripe_account, store, payload)
    submit_invoice(store, payload)
    handle = await start_export(client, "inv_kwd_round", worker.task_queue)
    waiting = await export_result(handle, "inv_kwd_round")
    assert waiting.status == ExportStatus.NEEDS_ATTENTION
    assert "AmountNotChargeable" in waiting.reason and "must end in 0" in waiting.reason
    assert finalized_invoices(emulator, "inv_kwd_round") == []  # nothing was sent

    # The operator allows a rounding line; the CLI signals the waiting export.
    done = billbridge(worker, "connections", "set", "stripe_invoice", "stripe_rounding_line=true")
    assert done.returncode == 0, done.stderr
    result = await export_result(handle, "inv_kwd_round", through_attention=True)
    assert result.status == ExportStatus.EXPORTED, result.reason
    [found] = finalized_invoices(emulator, "inv_kwd_round")
    assert found["total"] == found["amount_due"] == 5990  # 5.985 rounded half-up to 5.990
    rounding = [x for x in found["lines"]["data"] if x["metadata"]["billbridge_kind"] == "rounding"]
    assert [x["amount"] for x in rounding] == [5]
    assert "rounding line of 0.005 KWD" in result.reason  # the export's result says so
    record = store.get_export("inv_kwd_round", "stripe_invoice")
    assert record is not None
    assert (record.billing_total, record.provider_total) == ("5.985", "5.990")


@pytest.mark.parametrize(
    ("currency", "amount", "code", "to_chargeable"),
    [
        ("kwd", 5124, "invalid_charge_amount", 6),
        ("isk", 50050, "invalid_charge_amount_no_decimal_compatible", 50),
    ],
)
def test_emulator_refuses_to_finalize_what_stripe_cannot_charge(
    stripe_account: StripeAccount, currency: str, amount: int, code: str, to_chargeable: int
) -> None:
    api = stripe_account.client.v1
    customer = api.customers.create(params={"email": f"{currency}@example.test"})
    draft = api.invoices.create(
        params={
            "customer": customer.id,
            "currency": currency,
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    api.invoices.add_lines(
        draft.id, params={"lines": [{"amount": amount, "description": "Services"}]}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        api.invoices.finalize_invoice(draft.id)
    assert info.value.code == code
    assert api.invoices.retrieve(draft.id).status == "draft"
    api.invoices.add_lines(draft.id, params={"lines": [{"amount": to_chargeable}]})
    assert api.invoices.finalize_invoice(draft.id).status == "open"
