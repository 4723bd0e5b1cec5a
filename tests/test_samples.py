"""Sample Orb payloads: totals consistency, determinism, catalog coverage."""

from __future__ import annotations

import copy
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from billbridge.core.models import Customer, Invoice
from billbridge.core.money import (
    UnknownCurrencyError,
    minor_unit_exponent,
    round_to_minor,
    to_minor,
)
from billbridge.starter.samples import (
    DemoSpec,
    LineDiscount,
    LineMinimum,
    SampleLine,
    build_customer,
    build_invoice,
    consistency_problems,
    demo_catalog,
    demo_customers,
    large_invoice,
)

D = Decimal
CATALOG = demo_catalog()


def _independent_check(payload: dict[str, Any]) -> Invoice:
    """Re-derive the module's consistency rules from the parsed (Decimal) model."""
    invoice = Invoice.model_validate(payload)  # also checks minor-unit exactness
    currency = invoice.currency
    lines_amount = D(0)
    taxes = D(0)
    for line in invoice.line_items:
        adjusted = line.effective_adjusted_subtotal
        assert line.subtotal + sum((a.amount for a in line.adjustments), D(0)) == adjusted
        assert line.amount == adjusted - line.credits_applied - line.partially_invoiced_amount
        assert line.credits_applied >= 0
        for adjustment in line.adjustments:
            if adjustment.adjustment_type.endswith("discount"):
                assert adjustment.amount <= 0
            if adjustment.adjustment_type == "minimum":
                assert adjustment.amount >= 0
        unit = D(line.price.model_extra["unit_config"]["unit_amount"])  # type: ignore[index]
        assert line.subtotal == round_to_minor(line.quantity * unit, currency)
        lines_amount += line.amount
        taxes += line.tax_total
    assert invoice.subtotal == sum((li.subtotal for li in invoice.line_items), D(0))
    discount = D(0)
    for d in invoice.discounts:
        assert d.discount_type == "amount" and d.amount_discount is not None
        discount -= min(d.amount_discount, lines_amount)
    true_up = D(0)
    if invoice.minimum_amount is not None:
        assert invoice.minimum is not None
        assert invoice.minimum.minimum_amount == invoice.minimum_amount
        true_up = max(D(0), invoice.minimum_amount - (lines_amount + discount))
    assert invoice.total == lines_amount + discount + true_up + taxes
    assert invoice.balance_applied <= 0
    assert invoice.amount_due == invoice.total + invoice.balance_applied
    assert invoice.amount_due >= 0
    for txn in invoice.customer_balance_transactions:
        assert txn.action == "applied_to_invoice" and txn.type == "decrement"
        assert txn.starting_balance is not None and txn.ending_balance is not None
        assert txn.ending_balance == txn.starting_balance + txn.amount
    # amounts are written with exactly the currency's decimals
    exponent = minor_unit_exponent(currency)
    for text in [payload["total"], payload["amount_due"], payload["subtotal"]] + [
        li["amount"] for li in payload["line_items"]
    ]:
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert decimals == exponent, (text, currency)
    return invoice


# --------------------------------------------------------------------------- catalog


def test_catalog_coverage() -> None:
    assert len(CATALOG) >= 20
    assert len({s.key for s in CATALOG}) == len(CATALOG)
    assert len({s.invoice_id for s in CATALOG}) == len(CATALOG)
    currencies = {s.currency for s in CATALOG}
    assert {"USD", "EUR", "JPY", "KWD", "GBP"} <= currencies
    outcomes = Counter(s.expected for s in CATALOG)
    assert outcomes["skipped_zero_total"] >= 1 and outcomes["exported"] >= 15
    assert any(
        any(line.quantity != line.quantity.to_integral_value() for line in s.lines)
        and len(s.lines) > 1
        for s in CATALOG
    )
    assert any(s.line_discount is not None and s.credits > 0 for s in CATALOG)
    assert any(s.balance_applied < 0 for s in CATALOG)
    assert any(s.invoice_discount is not None for s in CATALOG)
    assert any(s.minimum is not None for s in CATALOG)
    assert any(s.line_minimum is not None for s in CATALOG)
    assert any(s.tax_rate is not None for s in CATALOG)
    assert any(len(s.lines) >= 50 for s in CATALOG)


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.key)
def test_catalog_invoice_is_consistent(spec: DemoSpec) -> None:
    payload = spec.build()
    assert consistency_problems(payload) == []
    invoice = _independent_check(payload)
    assert invoice.id == spec.invoice_id and invoice.customer.id == spec.customer_id
    assert invoice.currency == spec.currency and invoice.status == "issued"
    assert len(invoice.line_items) == len(spec.lines)
    assert len({li.id for li in invoice.line_items}) == len(spec.lines)
    zero = invoice.total == 0
    assert spec.expected == ("skipped_zero_total" if zero else "exported")
    assert spec.build() == payload  # deterministic


def test_specific_amounts() -> None:
    by_key = {s.key: s.build() for s in CATALOG}
    usage = by_key["usd-usage"]["line_items"]
    assert usage[0]["quantity"] == 1234.567 and usage[0]["subtotal"] == "15.19"
    assert usage[1]["subtotal"] == "25.00"  # 1,250,000 * 0.00002
    assert by_key["kwd-usage"]["line_items"][0]["subtotal"] == "15.185"
    assert by_key["jpy-usage"]["line_items"][0]["subtotal"] == "3086"  # 3086.4175
    balance = by_key["usd-balance"]
    assert balance["customer_balance_transactions"][0]["amount"] == "-25.00"
    assert D(balance["amount_due"]) == D(balance["total"]) - 25
    covered = by_key["usd-balance-covers-all"]
    assert covered["amount_due"] == "0.00" and covered["total"] == "49.00"
    credits = by_key["usd-zero-credits"]
    assert credits["subtotal"] == "70.00" and credits["total"] == "0.00"
    minimum = by_key["usd-minimum-true-up"]
    assert minimum["minimum_amount"] == "500.00" and minimum["total"] == "500.00"


def test_demo_customers() -> None:
    customers = demo_customers()
    assert len({c["id"] for c in customers}) == len(customers)
    assert {s.customer_id for s in CATALOG} == {c["id"] for c in customers}
    for raw in customers:
        customer = Customer.model_validate(raw)
        assert customer.payment_provider in ("stripe_invoice", "quickbooks", "bill.com", "netsuite")
        assert customer.exports_invoices
    spec = CATALOG[0]
    linked = spec.build_customer(payment_provider_id="cus_Stripe123")
    assert linked["payment_provider_id"] == "cus_Stripe123" and linked["currency"] == spec.currency


# --------------------------------------------------------------------------- large invoices


def test_large_invoice_ten_thousand_lines() -> None:
    payload = large_invoice("inv_large", "cus_large", 10_000)
    assert len(payload["line_items"]) == 10_000
    assert len({li["id"] for li in payload["line_items"]}) == 10_000
    assert len({li["price"]["item"]["id"] for li in payload["line_items"]}) == 5
    assert consistency_problems(payload) == []
    invoice = _independent_check(payload)
    assert invoice.total > 0
    assert any(li.quantity != li.quantity.to_integral_value() for li in invoice.line_items)
    assert large_invoice("inv_large", "cus_large", 10_000) == payload


@pytest.mark.parametrize("currency", ["USD", "EUR", "JPY", "KWD", "CLF"])
def test_large_invoice_currencies(currency: str) -> None:
    payload = large_invoice(f"inv_large_{currency}", "cus", 500, currency)
    assert consistency_problems(payload) == []
    invoice = _independent_check(payload)
    to_minor(invoice.total, currency)
    with pytest.raises(ValueError):
        large_invoice("x", "y", 0)


# --------------------------------------------------------------------------- builder rules


def test_builder_all_adjustments_together() -> None:
    lines = [
        SampleLine("item_a", "A", D("3"), D("9.99")),
        SampleLine("item_b", "B", D("0.5"), D("2")),
        SampleLine("item_c", "C", D("1234.567"), D("0.0123")),
    ]
    payload = build_invoice(
        "inv_all",
        "cus_all",
        "EUR",
        lines,
        line_discount=LineDiscount(percentage=D("0.2"), lines=(0, 2)),
        line_minimum=LineMinimum(amount=D("5"), lines=(1,)),
        credits=D("3.33"),
        invoice_discount=D("2.5"),
        minimum=D("10"),
        tax_rate=D("7.7"),
        balance_applied=D("-4.44"),
    )
    assert consistency_problems(payload) == []
    invoice = _independent_check(payload)
    b = invoice.line_items[1]
    assert [a.adjustment_type for a in b.adjustments] == ["minimum"]
    assert b.adjustments[0].amount == D("4.00")  # 1.00 topped up to 5.00
    assert invoice.line_items[0].adjustments[0].amount == D("-5.99")  # 20% of 29.97
    assert sum(li.credits_applied for li in invoice.line_items) == D("3.33")
    assert invoice.line_items[0].credits_applied == D("3.33")  # allocated in line order
    assert invoice.discounts[0].amount_discount == D("2.50")
    assert invoice.amount_due == invoice.total - D("4.44")


def test_builder_rejects_inconsistent_arguments() -> None:
    line = [SampleLine("item_a", "A", D("1"), D("10"))]
    with pytest.raises(ValueError, match="balance_applied"):
        build_invoice("i", "c", "USD", line, balance_applied=D("1"))
    with pytest.raises(ValueError, match="exceeds"):
        build_invoice("i", "c", "USD", line, balance_applied=D("-10.01"))
    with pytest.raises(ValueError):
        build_invoice("i", "c", "USD", line, credits=D("-1"))
    with pytest.raises(UnknownCurrencyError):
        build_invoice("i", "c", "XYZ", line)
    with pytest.raises(ValueError):
        LineDiscount(percentage=D("0.1"), amount=D("1"))
    with pytest.raises(ValueError):
        LineDiscount(percentage=D("10"))
    with pytest.raises(ValueError, match="round-trip"):
        build_invoice("i", "c", "USD", [SampleLine("a", "A", D("0.12345678901234567890"), D("1"))])


def test_consistency_checker_catches_tampering() -> None:
    payload = next(s for s in CATALOG if s.key == "usd-discount-credits").build()
    bad = copy.deepcopy(payload)
    bad["total"] = "1.00"
    assert any(p.startswith("total: 1.00 differs") for p in consistency_problems(bad))
    bad = copy.deepcopy(payload)
    bad["line_items"][0]["amount"] = "0.00"
    assert any(p.startswith("line_items.0.amount: 0.00") for p in consistency_problems(bad))
    # The export reads a line's only adjustment as adjusted_subtotal - subtotal, so the
    # adjustments are tampered with where that reading cannot hide it: removed, or split.
    bad = copy.deepcopy(payload)
    bad["line_items"][1]["adjustments"] = []
    assert any(
        p.startswith("line_items.1.adjusted_subtotal") and "no adjustments" in p
        for p in consistency_problems(bad)
    )
    bad = copy.deepcopy(payload)
    adjustment = bad["line_items"][1]["adjustments"][0]
    bad["line_items"][1]["adjustments"] = [adjustment, {**adjustment, "id": "adj_2"}]
    assert any(p.startswith("line_items.1.adjustments") for p in consistency_problems(bad))
    bad = copy.deepcopy(payload)
    bad["line_items"][0]["amount"] = "0.001"  # refused by the model before any sum
    assert consistency_problems(bad) == [
        "line_items.0.amount: amount 0.001 is not representable in USD: USD allows at most "
        "2 decimals"
    ]
    bad = copy.deepcopy(payload)
    bad["amount_due"] = "0.00"
    assert any("amount_due" in p for p in consistency_problems(bad))


def test_build_customer_shape() -> None:
    raw = build_customer(
        "cus_x",
        payment_provider="bill.com",
        payment_provider_id="B-1",
        currency="EUR",
        name="Example GmbH",
        email="ap@example.de",
    )
    customer = Customer.model_validate(raw)
    assert (customer.name, customer.email, customer.currency) == (
        "Example GmbH",
        "ap@example.de",
        "EUR",
    )
    assert customer.payment_provider == "bill.com" and customer.payment_provider_id == "B-1"
    assert raw["balance"] == "0.00" and raw["hierarchy"] == {"children": [], "parent": None}
