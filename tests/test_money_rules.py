"""The money rules, branch by branch: pure unit tests (no Temporal, no emulator, no network).

core/breakdown.py (every consistency rule and every kind of line it emits), check_plan in
activities/providers/base.py, and the pure `plan` halves of the Stripe and QuickBooks providers
(built from dummy settings; `plan` never calls out). Each test feeds one targeted invoice and
asserts the exact outcome: the lines and amounts, or the error type and its whole message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from billbridge.activities.oauth import OAuthGrant
from billbridge.activities.providers.base import ConnectionConfig, Plan, check_plan
from billbridge.activities.providers.quickbooks import QuickBooksInvoiceProvider, QuickBooksPlan
from billbridge.activities.providers.quickbooks_tax import Company
from billbridge.activities.providers.stripe_invoice import (
    DEFAULT_DAYS_UNTIL_DUE,
    DUE_DATE_MARGIN,
    MAX_INVOICE_ITEMS,
    StripeInvoiceProvider,
    StripePlan,
    _quantity_and_unit,
)
from billbridge.core.breakdown import (
    ExportLine,
    InvoiceBreakdown,
    InvoiceInconsistent,
    adjustment_kind,
    break_down,
)
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import ProviderLimitExceeded, ProviderRejected, TotalMismatch
from billbridge.core.models import Invoice
from billbridge.core.money import InexactAmountError, from_minor, to_minor
from billbridge.starter.samples import LineDiscount, SampleLine, build_invoice, large_invoice

D = Decimal
JAN = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)
NOW = datetime(2025, 2, 1, 12, tzinfo=UTC)  # when the push began (fixed: no wall clock)

# --------------------------------------------------------------------------- invoice builders


def adj(adjustment_type: str, amount: str) -> dict[str, Any]:
    """A line adjustment whose `amount` is its signed effect on the line."""
    return {
        "id": f"adj_{adjustment_type}_{amount}",
        "adjustment_type": adjustment_type,
        "amount": amount,
    }


def tax(amount: str, description: str = "Sales tax 8.25%") -> dict[str, Any]:
    return {"amount": amount, "tax_rate_description": description}


def line(
    subtotal: str,
    *,
    quantity: str = "1",
    adjusted: str | None = None,
    amount: str | None = None,
    credits: str = "0",
    partial: str = "0",
    adjustments: Sequence[dict[str, Any]] = (),
    taxes: Sequence[dict[str, Any]] = (),
    item: str = "item_api",
    name: str = "API calls",
    start: datetime = JAN,
    end: datetime = FEB,
) -> dict[str, Any]:
    """An Orb line item; `amount` defaults to the one the rules require."""
    if amount is None:
        amount = format(D(adjusted or subtotal) - D(credits) - D(partial), "f")
    return {
        "name": name,
        "quantity": quantity,
        "subtotal": subtotal,
        "adjusted_subtotal": adjusted,
        "amount": amount,
        "credits_applied": credits,
        "partially_invoiced_amount": partial,
        "adjustments": list(adjustments),
        "tax_amounts": list(taxes),
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "price": {"id": f"price_{item}", "item": {"id": item, "name": name}},
    }


def invoice(
    *lines: dict[str, Any],
    currency: str = "USD",
    total: str | None = None,
    amount_due: str | None = None,
    **fields: Any,
) -> Invoice:
    """An Orb invoice of `lines` (ids line_0, line_1, ...); `total` defaults to the line
    amounts plus their tax, `amount_due` to the total."""
    items = [{"id": f"line_{n}", **item} for n, item in enumerate(lines)]
    if total is None:
        taxed = (D(i["amount"]) + sum(D(t["amount"]) for t in i["tax_amounts"]) for i in items)
        total = format(sum(taxed, D(0)), "f")
    return Invoice.model_validate(
        {
            "id": "inv_1",
            "invoice_number": "INV-0001",
            "customer": {"id": "cus_1"},
            "currency": currency,
            "invoice_date": JAN.isoformat(),
            "status": "issued",
            "subtotal": format(sum((D(i["subtotal"]) for i in items), D(0)), "f"),
            "total": total,
            "amount_due": total if amount_due is None else amount_due,
            "line_items": items,
            **fields,
        }
    )


def parse(payload: dict[str, Any]) -> Invoice:
    return Invoice.model_validate(payload)


def money(minor: int, currency: str) -> str:
    """`minor` units written as Orb writes an amount of `currency`."""
    return format(from_minor(minor, currency), "f")


def shape(breakdown: InvoiceBreakdown) -> list[tuple[str, str, str, int]]:
    return [(x.ref, x.kind, x.mapping_key, x.amount_minor) for x in breakdown.lines]


def inconsistency(inv: Invoice) -> str:
    with pytest.raises(InvoiceInconsistent) as info:
        break_down(inv, inv.line_items)
    return str(info.value)


# --------------------------------------------------------------------------- breakdown: errors


@pytest.mark.parametrize(
    ("inv", "message"),
    [
        pytest.param(
            invoice(line("10.00"), line("10.00", amount="6.00", credits="3.50", partial="0.25")),
            "line_items.1.amount: 6.00 is not adjusted_subtotal (10.00) - credits_applied (3.50)"
            " - partially_invoiced_amount (0.25)",
            id="line-amount",
        ),
        pytest.param(
            invoice(line("5.00", quantity="-2")),
            "line_items.0.quantity: -2 is negative but line_items.0.subtotal (5.00) is positive",
            id="negative-quantity-positive-subtotal",
        ),
        pytest.param(
            invoice(line("10.00", adjusted="8.00")),
            "line_items.0.adjusted_subtotal: 8.00 differs from subtotal 10.00 but the line has "
            "no adjustments",
            id="adjusted-without-adjustments",
        ),
        pytest.param(
            invoice(
                line(
                    "10.00",
                    adjusted="8.00",
                    adjustments=[adj("amount_discount", "-1.00"), adj("minimum", "-0.50")],
                )
            ),
            "line_items.0.adjustments: amounts add up to -150 minor units, adjusted_subtotal - "
            "subtotal is -200",
            id="several-adjustments-not-adding-up",
        ),
    ],
)
def test_line_rules(inv: Invoice, message: str) -> None:
    assert inconsistency(inv) == message


def _unexplained(residual: str) -> str:
    return f"by {residual} USD, and no invoice-level discount, minimum or maximum explains it"


@pytest.mark.parametrize(
    ("total", "fields", "residual"),
    [
        pytest.param("12.00", {}, "2.00", id="positive-nothing"),
        pytest.param("8.00", {}, "-2.00", id="negative-nothing"),
        # each invoice-level adjustment explains one sign only
        pytest.param("12.00", {"discounts": [{"discount_type": "amount"}]}, "2.00", id="discount"),
        pytest.param("12.00", {"maximum": {"maximum_amount": "5.00"}}, "2.00", id="maximum"),
        pytest.param("8.00", {"minimum": {"minimum_amount": "20.00"}}, "-2.00", id="minimum"),
    ],
)
def test_unexplained_total_residual(total: str, fields: dict[str, Any], residual: str) -> None:
    message = inconsistency(invoice(line("10.00"), total=total, **fields))
    assert message.startswith(f"total: {total} differs from the sum of line_items[].amount")
    assert message.endswith(_unexplained(residual))


def test_residual_left_after_tax_is_still_unexplained() -> None:
    inv = invoice(line("10.00", taxes=[tax("0.80")]), total="11.00")
    assert inconsistency(inv).endswith(_unexplained("0.20"))


def test_several_adjustments_not_adding_up_to_a_zero_effect() -> None:
    adjustments = [adj("amount_discount", "-5.00"), adj("minimum", "3.00")]
    message = inconsistency(invoice(line("10.00", adjusted="10.00", adjustments=adjustments)))
    assert message == (
        "line_items.0.adjustments: amounts add up to -2.00, but adjusted_subtotal equals subtotal"
    )


@pytest.mark.parametrize(
    ("currency", "bad_total", "allowed"),
    [
        ("JPY", "1200.5", "no decimals (minor unit exponent 0)"),
        ("USD", "12.005", "at most 2 decimals (minor unit exponent 2)"),
        ("KWD", "1.2345", "at most 3 decimals (minor unit exponent 3)"),
    ],
)
def test_inexact_amount(currency: str, bad_total: str, allowed: str) -> None:
    """Only reachable past the model, which refuses the same amount (the door's first check)."""
    valid = invoice(line(money(1200, currency)), currency=currency)
    with pytest.raises(ValidationError, match=f"total\n.*not representable in {currency}"):
        Invoice.model_validate({**valid.model_dump(mode="json"), "total": bad_total})
    tampered = valid.model_copy(update={"total": D(bad_total)})
    with pytest.raises(InexactAmountError) as info:
        break_down(tampered, tampered.line_items)
    assert str(info.value) == (
        f"amount {bad_total} is not representable in {currency}: {currency} allows {allowed}"
    )


# --------------------------------------------------------------------------- breakdown: lines


def test_usage_line() -> None:
    inv = invoice(line("15.19", quantity="1234.567", item="item_storage", name="Storage"))
    breakdown = break_down(inv, inv.line_items)
    assert breakdown.lines == [
        ExportLine(
            ref="line_0",
            kind="usage",
            mapping_key="item_storage",
            description="Storage",
            amount_minor=1519,
            quantity=D("1234.567"),
            period_start=JAN,
            period_end=FEB,
            billing_line_id="line_0",
        )
    ]
    assert (breakdown.total_minor, breakdown.amount_due_minor) == (1519, 1519)
    assert breakdown.mapping_keys() == {"item_storage"}


@pytest.mark.parametrize(
    ("adjustment_type", "kind"),
    [
        ("usage_discount", "discount"),
        ("amount_discount", "discount"),
        ("percentage_discount", "discount"),
        ("tiered_percentage_discount", "discount"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("something_new", "other"),
    ],
)
def test_adjustment_kind(adjustment_type: str, kind: str) -> None:
    assert adjustment_kind(adjustment_type) == kind


@pytest.mark.parametrize("stated", ["-1.25", "1.25", "0"])
def test_single_adjustment_is_the_difference_of_the_subtotals(stated: str) -> None:
    """One adjustment's effect is adjusted_subtotal - subtotal, whatever its amount states."""
    inv = invoice(line("10.00", adjusted="8.75", adjustments=[adj("percentage_discount", stated)]))
    breakdown = break_down(inv, inv.line_items)
    assert shape(breakdown) == [
        ("line_0", "usage", "item_api", 1000),
        ("line_0/discount/0", "discount", "adjustment:discount", -125),
    ]
    assert breakdown.lines[1].description == "API calls: percentage discount"
    assert breakdown.lines[1].period_start == JAN and breakdown.lines[1].billing_line_id == "line_0"


def test_several_adjustments_each_become_a_line() -> None:
    adjustments = [adj("amount_discount", "-2.00"), adj("minimum", "0.50"), adj("maximum", "-1")]
    inv = invoice(line("10.00", adjusted="7.50", adjustments=adjustments))
    assert shape(break_down(inv, inv.line_items)) == [
        ("line_0", "usage", "item_api", 1000),
        ("line_0/discount/0", "discount", "adjustment:discount", -200),
        ("line_0/minimum/1", "minimum", "adjustment:minimum", 50),
        ("line_0/maximum/2", "maximum", "adjustment:maximum", -100),
    ]


def test_credits_and_partial_invoicing_lines() -> None:
    inv = invoice(line("10.00", credits="3.00", partial="2.00"), line("4.00"))
    breakdown = break_down(inv, inv.line_items)
    assert shape(breakdown) == [
        ("line_0", "usage", "item_api", 1000),
        ("line_0/credits", "credits", "adjustment:credits", -300),
        ("line_0/partial_invoicing", "partial_invoicing", "adjustment:partial_invoicing", -200),
        ("line_1", "usage", "item_api", 400),  # no credits: no zero lines
    ]
    assert [x.description for x in breakdown.lines[1:3]] == [
        "API calls: credits applied",
        "API calls: partial invoicing applied",
    ]
    assert breakdown.lines_total_minor == breakdown.total_minor == 900


def test_tax_lines_when_the_total_adds_the_tax() -> None:
    inv = invoice(
        line("10.00", taxes=[tax("0.83"), tax("0.00", "Exempt"), tax("0.10", "")]),
        line("5.00", taxes=[tax("0.41")]),
    )
    breakdown = break_down(inv, inv.line_items)
    assert shape(breakdown)[2:] == [  # after both lines, zero tax skipped
        ("line_0/tax/0", "tax", "adjustment:tax", 83),
        ("line_0/tax/2", "tax", "adjustment:tax", 10),
        ("line_1/tax/0", "tax", "adjustment:tax", 41),
    ]
    assert [x.description for x in breakdown.lines[2:4]] == [
        "API calls: Sales tax 8.25%",
        "API calls: tax",
    ]
    assert breakdown.lines_total_minor == breakdown.total_minor == 1634


def test_no_tax_lines_when_the_line_amounts_already_hold_the_tax() -> None:
    inv = invoice(line("10.83", taxes=[tax("0.83")]), total="10.83")
    assert shape(break_down(inv, inv.line_items)) == [("line_0", "usage", "item_api", 1083)]


def test_tax_and_invoice_discount_together() -> None:
    discounts = [{"discount_type": "amount", "amount_discount": "2.00"}]
    inv = invoice(line("10.00", taxes=[tax("0.66")]), total="8.66", discounts=discounts)
    assert shape(break_down(inv, inv.line_items))[1:] == [
        ("line_0/tax/0", "tax", "adjustment:tax", 66),
        ("invoice/discount", "discount", "adjustment:discount", -200),
    ]


@pytest.mark.parametrize(
    ("total", "fields", "kind", "description"),
    [
        pytest.param(
            "8.00",
            {"discounts": [{"discount_type": "percentage", "percentage_discount": 0.2}]},
            "discount",
            "Invoice discount",
            id="discount",
        ),
        pytest.param(
            "8.00", {"maximum": {"maximum_amount": "8.00"}}, "maximum", "Invoice maximum", id="max"
        ),
        pytest.param(
            "8.00",
            {"discounts": [{"discount_type": "trial"}], "maximum": {"maximum_amount": "8.00"}},
            "discount",
            "Invoice discount",
            id="discount-before-maximum",
        ),
        pytest.param(
            "12.00",
            {"minimum": {"minimum_amount": "12.00"}},
            "minimum",
            "Invoice minimum true-up",
            id="minimum",
        ),
    ],
)
def test_invoice_level_residual_line(
    total: str, fields: dict[str, Any], kind: str, description: str
) -> None:
    inv = invoice(line("10.00"), total=total, **fields)
    breakdown = break_down(inv, inv.line_items)
    residual = to_minor(D(total), "USD") - 1000
    assert breakdown.lines[1:] == [
        ExportLine(
            ref=f"invoice/{kind}",
            kind=kind,
            mapping_key=f"adjustment:{kind}",
            description=description,
            amount_minor=residual,
            quantity=D(1),
        )
    ]
    assert breakdown.lines_total_minor == breakdown.total_minor


@pytest.mark.parametrize(("amount_due", "applied"), [("7.50", -250), ("10.00", 0), ("12.00", 200)])
def test_balance_applied(amount_due: str, applied: int) -> None:
    inv = invoice(line("10.00"), amount_due=amount_due)
    breakdown = break_down(inv, inv.line_items)
    assert breakdown.balance_applied_minor == applied
    assert breakdown.amount_due_minor == 1000 + applied
    assert breakdown.lines_total_minor == 1000  # the balance is never a line


def test_negative_quantity_with_negative_subtotal_is_a_credit_line() -> None:
    inv = invoice(line("-5.00", quantity="-2"), line("10.00"))
    breakdown = break_down(inv, inv.line_items)
    assert [(x.amount_minor, x.quantity) for x in breakdown.lines] == [(-500, -2), (1000, 1)]


@pytest.mark.parametrize("currency", ["JPY", "USD", "KWD"])
def test_same_minor_amounts_in_every_exponent(currency: str) -> None:
    """One invoice written in 0-, 2- and 3-decimal currencies breaks down to the same units."""

    def m(minor: int) -> str:
        return money(minor, currency)

    inv = invoice(
        line(
            m(12345), adjusted=m(12000), credits=m(1000), adjustments=[adj("usage_discount", "0")]
        ),
        line(m(777), taxes=[tax(m(64))], partial=m(7)),
        currency=currency,
        total=m(11000 + 770 + 64 - 500),
        amount_due=m(11334 - 334),
        discounts=[{"discount_type": "amount", "amount_discount": m(500)}],
    )
    breakdown = break_down(inv, inv.line_items)
    assert [(x.kind, x.amount_minor) for x in breakdown.lines] == [
        ("usage", 12345),
        ("discount", -345),
        ("credits", -1000),
        ("usage", 777),
        ("partial_invoicing", -7),
        ("tax", 64),
        ("discount", -500),
    ]
    assert (breakdown.total_minor, breakdown.balance_applied_minor) == (11334, -334)
    assert breakdown.currency == currency


@pytest.mark.parametrize(
    ("currency", "unit"), [("JPY", "2.5"), ("USD", "0.0123"), ("KWD", "0.0123"), ("CLF", "0.0123")]
)
def test_sample_builder_invoices_add_up(currency: str, unit: str) -> None:
    payload = build_invoice(
        "inv_all",
        "cus_1",
        currency,
        [SampleLine("item_storage", "Storage", D("1234.567"), D(unit))] * 2,
        line_discount=LineDiscount(percentage=D("0.1")),
        credits=D(unit) * 1000,
        tax_rate=D("8.25"),
        invoice_discount=D(unit) * 10,
        balance_applied=-D(unit) * 100,
    )
    inv = parse(payload)
    breakdown = break_down(inv, inv.line_items)
    assert breakdown.lines_total_minor == breakdown.total_minor == to_minor(inv.total, currency)
    assert breakdown.amount_due_minor - breakdown.total_minor == breakdown.balance_applied_minor
    assert breakdown.balance_applied_minor == -to_minor(D(unit) * 100, currency)
    assert {x.kind for x in breakdown.lines} == {"usage", "discount", "credits", "tax"}


# --------------------------------------------------------------------------- check_plan

BILLING = InvoiceBreakdown("inv_1", "usd", total_minor=1000, amount_due_minor=900)
LINES_PROBLEM = "lines add up to 990, billing total is 1000"
TOTAL_PROBLEM = "plan total 999 != billing total 1000"
DUE_PROBLEM = "plan amount due 1000 != billing amount due 900"


@pytest.mark.parametrize(
    ("lines", "total", "due", "problems"),
    [
        pytest.param([600, 390], 1000, 900, [LINES_PROBLEM], id="lines"),
        pytest.param([600, 400], 999, 900, [TOTAL_PROBLEM], id="total"),
        pytest.param([600, 400], 1000, 1000, [DUE_PROBLEM], id="amount-due"),
        pytest.param([990], 999, 1000, [LINES_PROBLEM, TOTAL_PROBLEM, DUE_PROBLEM], id="all"),
    ],
)
def test_check_plan_mismatch(lines: list[int], total: int, due: int, problems: list[str]) -> None:
    plan = Plan("stripe_invoice", "inv_1", "usd", total, due, line_amounts_minor=lines)
    with pytest.raises(TotalMismatch) as info:
        check_plan(plan, BILLING)
    assert str(info.value) == "invoice inv_1 (usd, minor units): " + "; ".join(problems)
    assert info.value.to_application_error().non_retryable


def test_check_plan_passes_a_matching_plan() -> None:
    check_plan(Plan("stripe_invoice", "inv_1", "usd", 1000, 900, [1200, -200]), BILLING)


# --------------------------------------------------------------------------- Stripe plan


def stripe_plan(
    inv: Invoice, collection_method: str = "send_invoice", now: datetime = NOW
) -> StripePlan:
    """Stripe's plan of `inv` (products prod_<mapping key>), checked against its breakdown."""
    settings = ConnectionSettings.model_validate({"collection_method": collection_method})
    config = ConnectionConfig("stripe", api_key=None, settings=settings)
    provider = StripeInvoiceProvider.from_settings(Settings(), config)
    breakdown = break_down(inv, inv.line_items)
    items = {key: f"prod_{key}" for key in breakdown.mapping_keys()}
    plan = provider.plan(inv, breakdown, items, "cus_stripe", now.timestamp())
    check_plan(plan, breakdown)
    return plan


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def kinds_and_amounts(plan: StripePlan) -> list[tuple[str, int]]:
    return [
        (x["metadata"]["billbridge_kind"], x["amount"] if "amount" in x else _priced(x))
        for x in plan.lines
    ]


def _priced(stripe_line: dict[str, Any]) -> int:
    unit = D(stripe_line["price_data"]["unit_amount_decimal"])
    return int((unit * D(stripe_line["quantity_decimal"])).to_integral_value())


def test_stripe_consolidates_the_same_item_kind_and_period_with_exact_sums() -> None:
    payload = large_invoice("inv_big", "cus_1", 300)  # 5 items, one period
    inv = parse(payload)
    plan = stripe_plan(inv)
    assert plan.consolidated_from == 300 and len(plan.lines) == 5
    for stripe_line in plan.lines:
        item = stripe_line["price_data"]["product"].removeprefix("prod_")
        merged = [li for li in inv.line_items if li.price.item.id == item]
        assert _priced(stripe_line) == sum(to_minor(li.subtotal, "USD") for li in merged)
        quantity = sum((li.quantity for li in merged), D(0))
        assert D(stripe_line["metadata"]["billbridge_quantity"]) == quantity
        assert stripe_line["metadata"]["billbridge_line_ref"] == f"{merged[0].id}+{len(merged) - 1}"
        assert stripe_line["description"].endswith(f"(and {len(merged) - 1} more lines)")


def test_stripe_consolidation_keeps_kinds_and_periods_apart() -> None:
    march = datetime(2025, 3, 1, tzinfo=UTC)
    discounted = [adj("percentage_discount", "-0.10")]
    lines = [
        line(
            "1.00", adjusted="0.90", adjustments=discounted, start=FEB if n % 2 else JAN, end=march
        )
        for n in range(130)
    ]
    plan = stripe_plan(invoice(*lines))
    assert plan.consolidated_from == 260
    assert kinds_and_amounts(plan) == [
        ("usage", 6500),
        ("discount", -650),
        ("usage", 6500),
        ("discount", -650),
    ]
    assert [x["period"]["start"] for x in plan.lines] == [unix(JAN)] * 2 + [unix(FEB)] * 2


def test_stripe_keeps_the_limit_unconsolidated() -> None:
    plan = stripe_plan(invoice(*[line("1.00") for _ in range(MAX_INVOICE_ITEMS)]))
    assert plan.consolidated_from == 0 and len(plan.lines) == MAX_INVOICE_ITEMS


@pytest.mark.parametrize("distinct", ["item", "period"])
def test_stripe_limit_exceeded_when_consolidation_cannot_merge(distinct: str) -> None:
    def nth(n: int) -> dict[str, Any]:
        if distinct == "item":
            return line("1.00", item=f"item_{n}")
        return line("1.00", start=JAN + timedelta(hours=n))

    inv = invoice(*[nth(n) for n in range(MAX_INVOICE_ITEMS + 1)])
    with pytest.raises(ProviderLimitExceeded) as info:
        stripe_plan(inv)
    assert str(info.value) == (
        "invoice inv_1 needs 251 Stripe lines even after merging lines of the same item and "
        "period; Stripe allows 250"
    )


DUE_FIELDS = ("days_until_due", "due_date")


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        pytest.param(None, {"days_until_due": DEFAULT_DAYS_UNTIL_DUE}, id="no-due-date"),
        pytest.param(NOW - timedelta(days=3), {"days_until_due": 0}, id="past"),
        pytest.param(NOW + timedelta(hours=1), {"days_until_due": 0}, id="within-margin"),
        pytest.param(
            NOW + timedelta(seconds=DUE_DATE_MARGIN), {"days_until_due": 0}, id="at-margin"
        ),
        pytest.param(
            NOW + timedelta(seconds=DUE_DATE_MARGIN + 1),
            {"due_date": unix(NOW) + DUE_DATE_MARGIN + 1},
            id="just-past-margin",
        ),
        pytest.param(
            NOW + timedelta(days=30), {"due_date": unix(NOW + timedelta(days=30))}, id="future"
        ),
    ],
)
def test_stripe_due_date(due: datetime | None, expected: dict[str, int]) -> None:
    inv = invoice(line("10.00"), due_date=due.isoformat() if due else None)
    create = stripe_plan(inv).create_params
    assert create["collection_method"] == "send_invoice"
    assert {key: create[key] for key in DUE_FIELDS if key in create} == expected
    # The billing due date is kept in metadata whenever Stripe's differs from it.
    kept = due.isoformat() if due is not None and "due_date" not in expected else None
    assert create["metadata"].get("billbridge_due_date") == kept


def test_stripe_due_date_without_offset_is_utc() -> None:
    inv = invoice(line("10.00"), due_date="2025-03-01T00:00:00")
    assert stripe_plan(inv).create_params["due_date"] == unix(datetime(2025, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize("due", [None, NOW - timedelta(days=3), NOW + timedelta(days=30)])
def test_stripe_charge_automatically_has_no_due_date(due: datetime | None) -> None:
    inv = invoice(line("10.00"), due_date=due.isoformat() if due else None)
    create = stripe_plan(inv, collection_method="charge_automatically").create_params
    assert create["collection_method"] == "charge_automatically"
    assert not set(DUE_FIELDS) & set(create)
    assert create["metadata"].get("billbridge_due_date") == (due.isoformat() if due else None)


def test_stripe_lines() -> None:
    inv = invoice(
        line(
            "10.00",
            quantity="3",
            adjusted="9.00",
            credits="2.00",
            adjustments=[adj("usage_discount", "-1")],
        ),
        line("0.00", quantity="0", start=FEB, end=FEB),
        total="5.00",
        discounts=[{"discount_type": "amount", "amount_discount": "2.00"}],
        memo="x" * 6000,
    )
    plan = stripe_plan(inv)
    usage, discount, credits, free, invoice_discount = plan.lines
    assert usage["price_data"] == {
        "currency": "usd",
        "product": "prod_item_api",
        "unit_amount_decimal": "333.333333333333",
    }
    assert usage["quantity_decimal"] == "3"
    assert usage["period"] == {"start": unix(JAN), "end": unix(FEB) - 1}  # Stripe's end inclusive
    for negative, amount, product in [
        (discount, -100, "prod_adjustment:discount"),
        (credits, -200, "prod_adjustment:credits"),
        (invoice_discount, -200, "prod_adjustment:discount"),
    ]:
        assert (negative["amount"], negative["discountable"]) == (amount, False)
        assert negative["metadata"]["billbridge_product"] == product
        assert "price_data" not in negative and "quantity_decimal" not in negative
    assert free["price_data"]["unit_amount_decimal"] == "0" and free["quantity_decimal"] == "1"
    assert free["period"] == {"start": unix(FEB), "end": unix(FEB)}  # empty period: no end - 1
    assert "period" not in invoice_discount
    assert len(plan.create_params["description"]) == 5000
    assert plan.balance_params is None


def test_stripe_balance_applied() -> None:
    plan = stripe_plan(invoice(line("10.00"), amount_due="7.50"))
    assert plan.balance_params == {
        "amount": -250,
        "currency": "usd",
        "description": "Balance applied to invoice INV-0001",
        "metadata": {"billbridge_invoice_id": "inv_1"},
    }
    assert (plan.total_minor, plan.amount_due_minor) == (1000, 750)
    paths = [request["path"] for request in plan.requests()]
    # Created just before finalizing (after the customer's balance is read), not before the
    # lines: an export that stops earlier leaves nothing on the customer's balance.
    finalize = paths.index("/v1/invoices/{draft_invoice_id}/finalize")
    assert paths[finalize - 1] == "/v1/customers/cus_stripe/balance_transactions"


@pytest.mark.parametrize(
    ("quantity", "amount", "expected"),
    [
        pytest.param("3", 1000, ("3", "333.333333333333"), id="repeating-unit"),
        pytest.param("1234.567", 1519, ("1234.567", "1.230390898185"), id="fractional"),
        pytest.param("0.000000000001", 1, ("0.000000000001", "1000000000000"), id="12-decimals"),
        pytest.param("0.0000000000001", 1, ("1", "1"), id="13-decimals"),
        pytest.param("2000000000000", 1, ("1", "1"), id="unit-rounds-away"),
        pytest.param("0", 0, ("1", "0"), id="zero"),
        pytest.param("-2", 500, ("1", "500"), id="negative-quantity"),
    ],
)
def test_stripe_quantity_and_unit(quantity: str, amount: int, expected: tuple[str, str]) -> None:
    result = _quantity_and_unit(D(quantity), amount)
    assert result == (D(expected[0]), D(expected[1]))
    assert abs(result[0] * result[1] - amount) < D("0.5")


def test_stripe_quantity_and_unit_huge_ratio_falls_back() -> None:
    assert _quantity_and_unit(D("0.000000001"), 10_000_000) == (D(1), D(10_000_000))


# --------------------------------------------------------------------------- QuickBooks plan


@dataclass
class StoredGrant:
    """A GrantStore holding one grant; plan reads it (the realm) and never refreshes it."""

    grant: OAuthGrant

    def read(self) -> tuple[str | None, str | None]:
        return "v1", self.grant.to_json()

    def replace(self, expected_version: str | None, credential: str) -> str | None:
        raise AssertionError("plan must not refresh the grant")


US_COMPANY = Company(
    country="US",
    home_currency="USD",
    multicurrency=True,
    automated_sales_tax=True,
    using_sales_tax=True,
)
GRANT = OAuthGrant("client", "secret", "access", "refresh", 0.0, 3600.0, company_id="realm_1")


def quickbooks_plan(inv: Invoice) -> QuickBooksPlan:
    config = ConnectionConfig(
        "quickbooks", api_key=None, settings=ConnectionSettings(), credentials=StoredGrant(GRANT)
    )
    provider = QuickBooksInvoiceProvider.from_settings(Settings(), config)
    # What resolve_more_mappings reads before planning: a US company with automated sales tax and
    # multicurrency on (the cases below are in several currencies).
    provider._company = (math.inf, US_COMPANY)
    breakdown = break_down(inv, inv.line_items)
    items = {key: f"qb_{key}" for key in breakdown.mapping_keys()}
    plan = provider.plan(inv, breakdown, items, "qb_customer", NOW.timestamp())
    check_plan(plan, breakdown)
    sent = sum((D(repr(x["Amount"])) for x in plan.body["Line"]), D(0))
    # Every Amount is sent as the exact Decimal; tax goes on QuickBooks' tax fields.
    tax = D(repr(plan.body.get("TxnTaxDetail", {}).get("TotalTax", 0)))
    assert sent + tax == inv.total
    return plan


def qty_and_price(qb_line: dict[str, Any]) -> tuple[float, float]:
    detail = qb_line["SalesItemLineDetail"]
    return detail["Qty"], detail["UnitPrice"]


@pytest.mark.parametrize(
    ("quantity", "subtotal", "expected"),
    [
        pytest.param("3", "10.00", (3, 3.3333333), id="repeating-unit"),
        pytest.param("1234567", "185.19", (1234567, 0.00015), id="tiny-unit"),
        pytest.param("7777777", "1.00", (1, 1.0), id="unit-misses-the-cent"),
        pytest.param("0", "0.00", (1, 0), id="zero-quantity"),
        pytest.param("-2", "-5.00", (1, -5.0), id="negative"),
    ],
)
def test_quickbooks_qty_times_unit_price_only_when_exact(
    quantity: str, subtotal: str, expected: tuple[float, float]
) -> None:
    plan = quickbooks_plan(invoice(line(subtotal, quantity=quantity)))
    (only,) = plan.body["Line"]
    assert only["Amount"] == float(subtotal)
    assert qty_and_price(only) == expected


def test_quickbooks_adjustment_lines_are_amounts() -> None:
    inv = invoice(
        line("10.00", quantity="4", adjusted="9.00", adjustments=[adj("usage_discount", "-1")]),
        line("5.00", quantity="2", credits="5.00", taxes=[tax("0.41")]),
        total="9.41",
    )
    body = quickbooks_plan(inv).body
    assert [(x["Amount"], *qty_and_price(x)) for x in body["Line"]] == [
        (10.0, 4, 2.5),
        (-1.0, 1, -1.0),
        (5.0, 2, 2.5),
        (-5.0, 1, -5.0),
    ]
    assert [x["SalesItemLineDetail"]["ItemRef"]["value"] for x in body["Line"]][1:] == [
        "qb_adjustment:discount",
        "qb_item_api",
        "qb_adjustment:credits",
    ]
    # The tax is the automated-sales-tax override, not an item line.
    assert body["TxnTaxDetail"]["TotalTax"] == 0.41


def test_quickbooks_zero_decimal_currency() -> None:
    plan = quickbooks_plan(invoice(line("1200", quantity="3"), currency="JPY"))
    (only,) = plan.body["Line"]
    assert (only["Amount"], *qty_and_price(only)) == (1200, 3, 400)
    assert plan.body["CurrencyRef"] == {"value": "JPY"} and plan.total_minor == 1200


@pytest.mark.parametrize("currency", ["KWD", "BHD"])
def test_quickbooks_refuses_three_decimal_currencies(currency: str) -> None:
    with pytest.raises(ProviderRejected) as info:
        quickbooks_plan(invoice(line("1.200"), currency=currency))
    assert str(info.value) == f"QuickBooks amounts have two decimals; {currency} has 3"


def test_quickbooks_refusal_names_a_four_decimal_currency_s_decimals() -> None:
    with pytest.raises(ProviderRejected) as info:
        quickbooks_plan(invoice(line("1.2000"), currency="CLF"))
    assert str(info.value) == "QuickBooks amounts have two decimals; CLF has 4"


def test_quickbooks_quantity_json_cannot_carry_falls_back_to_amount() -> None:
    plan = quickbooks_plan(invoice(line("1.00", quantity="1.00000000000000000001")))
    assert qty_and_price(plan.body["Line"][0]) == (1, 1.0)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        pytest.param("INV-0001", {"DocNumber": "INV-0001"}, id="fits"),
        pytest.param(
            "N" * 22, {"PrivateNote": f"billbridge invoice inv_1 (number {'N' * 22})"}, id="long"
        ),
        pytest.param("", {}, id="none"),
    ],
)
def test_quickbooks_doc_number(number: str, expected: dict[str, str]) -> None:
    body = quickbooks_plan(invoice(line("10.00"), invoice_number=number)).body
    found = {key: body[key] for key in ("DocNumber", "PrivateNote") if key in body}
    assert found == {"PrivateNote": "billbridge invoice inv_1", **expected}


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        pytest.param(None, None, id="no-due-date"),
        pytest.param("2024-12-01T00:00:00+00:00", "2024-12-01", id="past"),  # no margin rule
        pytest.param("2025-03-03T23:30:00+00:00", "2025-03-03", id="future"),
    ],
)
def test_quickbooks_due_date(due: str | None, expected: str | None) -> None:
    body = quickbooks_plan(invoice(line("10.00"), due_date=due)).body
    assert body.get("DueDate") == expected
    assert body["TxnDate"] == "2025-01-01"


def test_quickbooks_plan_fields() -> None:
    inv = invoice(
        line("10.00"),
        total="12.00",
        amount_due="9.00",
        minimum={"minimum_amount": "12.00"},
        memo="m" * 1200,
    )
    plan = quickbooks_plan(inv)
    assert plan.realm_id == "realm_1" and plan.body["CustomerRef"] == {"value": "qb_customer"}
    assert (plan.total_minor, plan.amount_due_minor, plan.line_amounts_minor) == (
        1200,
        900,
        [1000, 200],
    )
    usage, minimum = plan.body["Line"]
    assert usage["SalesItemLineDetail"]["ServiceDate"] == "2025-01-01"
    assert "ServiceDate" not in minimum["SalesItemLineDetail"]  # invoice-level: no period
    assert minimum["Description"] == "Invoice minimum true-up"
    assert plan.body["CustomerMemo"] == {"value": "m" * 1000}
