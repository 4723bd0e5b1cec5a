"""Builders of realistic Orb payloads (invoices, customers, ``invoice.issued`` events).

The dicts produced here are shaped exactly like Orb's API objects as the official SDK
(``orb-billing``) models them: every field of Orb's ``Invoice`` / ``LineItem`` / ``Price`` /
``Customer`` is present, amounts are strings carrying the currency's number of decimals
(``"12.30"`` USD, ``"1200"`` JPY, ``"15.185"`` KWD), quantities and percentages are JSON
numbers, datetimes are ISO-8601 strings with an explicit UTC offset. Ids are Orb-like and
deterministic (derived by hashing the inputs), so builders are pure functions: same
arguments, same payload. Tests check every payload against ``orb.types.Invoice``.

Consistency rules (billbridge's reading of Orb's amount fields)
----------------------------------------------------------------
All rounding is half-up to the currency's minor unit (:func:`round_to_minor`).

Per line item:

* ``subtotal = round(quantity * unit_price)``
* each entry of ``adjustments`` carries in ``amount`` its *signed effect* on the line:
  discounts are negative (percentage: ``-round(subtotal * pct)``; amount:
  ``-min(amount_discount, subtotal)``), a line minimum is positive
  (``max(0, minimum_amount - running amount)``); adjustments apply in Orb's order
  (discounts, then minimums);
* ``adjusted_subtotal = subtotal + sum(adjustment.amount)``
* ``credits_applied``: prepaid credits consumed by the line (``credits`` is allocated to the
  lines in order, each taking at most its ``adjusted_subtotal``);
  ``partially_invoiced_amount`` is always ``0`` here;
* ``amount = adjusted_subtotal - credits_applied - partially_invoiced_amount``
* ``tax_amounts``: empty unless ``tax_rate`` is given, then one entry with
  ``amount = round(line.amount * tax_rate / 100)``.

Per invoice:

* ``subtotal = sum(line.subtotal)``
* invoice-level discount (``discounts``: one Orb ``amount`` discount): effect
  ``-min(invoice_discount, sum(line.amount))``;
* invoice-level minimum (``minimum`` / ``minimum_amount``): true-up
  ``max(0, minimum - (sum(line.amount) + discount effect))``;
* ``total = sum(line.amount) + discount effect + minimum true-up + sum(line tax amounts)``
* customer balance: ``balance_applied <= 0`` is customer credit applied to the invoice,
  recorded as one ``customer_balance_transactions`` entry with ``action =
  "applied_to_invoice"``, ``type = "decrement"`` and ``amount = balance_applied`` (negative;
  ``ending_balance = starting_balance + amount``);
* ``amount_due = total + balance_applied`` (never negative).

:func:`consistency_problems` checks a payload: the rules the export applies (line amounts,
adjustments, the total) through :func:`billbridge.core.breakdown.break_down`, which is their
only implementation, plus the subtotal and amount-due rules above that the export does not
check.

Orb exports only invoices with a non-zero ``total`` to invoicing providers; a zero-total
invoice is expected to be skipped (``DemoSpec.expected == "skipped_zero_total"``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError

from billbridge.core.breakdown import InvoiceInconsistent, break_down
from billbridge.core.models import Invoice, format_validation_error
from billbridge.core.money import (
    InexactAmountError,
    format_amount,
    minor_unit_exponent,
    round_to_minor,
)

__all__ = [
    "DEFAULT_ISSUED_AT",
    "DemoSpec",
    "LineDiscount",
    "LineMinimum",
    "SampleLine",
    "build_customer",
    "build_invoice",
    "build_invoice_issued_event",
    "consistency_problems",
    "demo_catalog",
    "demo_customers",
    "large_invoice",
]

DEFAULT_ISSUED_AT = datetime(2025, 1, 1, tzinfo=UTC)
"""Default issue time (start of a month: the invoice bills the previous month)."""

ZERO = Decimal(0)

# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SampleLine:
    """One line: ``quantity`` units of an item at ``unit_price`` (a unit price in Orb)."""

    item_id: str
    item_name: str
    quantity: Decimal
    unit_price: Decimal
    price_type: Literal["usage_price", "fixed_price"] = "usage_price"
    grouping: str | None = None
    """Orb's (deprecated) grouping label for prices split by an invoice grouping key."""


@dataclass(frozen=True)
class LineDiscount:
    """A plan-phase discount on lines: ``percentage`` (fraction, ``0.10`` = 10 %) or a fixed
    ``amount`` per line. ``lines`` are indexes into the line list; ``None`` = every line."""

    percentage: Decimal | None = None
    amount: Decimal | None = None
    lines: tuple[int, ...] | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.percentage is None) == (self.amount is None):
            raise ValueError("LineDiscount needs exactly one of percentage or amount")
        if self.percentage is not None and not ZERO <= self.percentage <= 1:
            raise ValueError("LineDiscount.percentage is a fraction between 0 and 1")
        if self.amount is not None and self.amount < 0:
            raise ValueError("LineDiscount.amount must be >= 0")


@dataclass(frozen=True)
class LineMinimum:
    """A minimum charge per line (``minimum`` adjustment): lines whose discounted amount is
    below ``amount`` are topped up to it."""

    amount: Decimal
    lines: tuple[int, ...] | None = None
    reason: str | None = None


# --------------------------------------------------------------------------- helpers

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _orb_id(*parts: object, length: int = 16) -> str:
    """A deterministic Orb-looking id (Orb ids are ~16-22 base62 characters)."""
    digest = int.from_bytes(
        hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest(), "big"
    )
    out = []
    for _ in range(length):
        digest, rem = divmod(digest, 62)
        out.append(_B62[rem])
    return "".join(out)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _previous_month(moment: datetime) -> datetime:
    year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
    day = min(moment.day, 28)
    return moment.replace(year=year, month=month, day=day)


def _number(value: Decimal) -> float:
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise ValueError(f"quantity {value} does not round-trip through a JSON number")
    return as_float


def _money(amount: Decimal, currency: str) -> str:
    return format_amount(amount, currency)


def _selected(index: int, lines: tuple[int, ...] | None) -> bool:
    return lines is None or index in lines


def _price(line: SampleLine, price_id: str, currency: str, created_at: datetime) -> dict[str, Any]:
    """An Orb unit ``Price`` object (``model_type: "unit"``)."""
    return {
        "id": price_id,
        "billable_metric": (
            {"id": _orb_id("metric", line.item_id)} if line.price_type == "usage_price" else None
        ),
        "billing_cycle_configuration": {"duration": 1, "duration_unit": "month"},
        "billing_mode": "in_arrear" if line.price_type == "usage_price" else "in_advance",
        "cadence": "monthly",
        "composite_price_filters": None,
        "conversion_rate": None,
        "conversion_rate_config": None,
        "created_at": _iso(created_at),
        "credit_allocation": None,
        "currency": currency,
        "discount": None,
        "external_price_id": f"{line.item_id}-{currency.lower()}",
        "fixed_price_quantity": (
            _number(line.quantity) if line.price_type == "fixed_price" else None
        ),
        "invoice_grouping_key": "project" if line.grouping is not None else None,
        "invoicing_cycle_configuration": None,
        "item": {"id": line.item_id, "name": line.item_name},
        "maximum": None,
        "maximum_amount": None,
        "metadata": {},
        "minimum": None,
        "minimum_amount": None,
        "model_type": "unit",
        "name": line.item_name,
        "plan_phase_order": None,
        "price_type": line.price_type,
        "replaces_price_id": None,
        "unit_config": {"unit_amount": format(line.unit_price, "f"), "prorated": False},
        "dimensional_price_configuration": None,
        "license_type": None,
    }


def _adjustment(
    adjustment_id: str,
    adjustment_type: str,
    amount: Decimal,
    price_id: str,
    currency: str,
    reason: str | None,
    **specific: object,
) -> dict[str, Any]:
    return {
        "id": adjustment_id,
        "adjustment_type": adjustment_type,
        "amount": _money(amount, currency),
        "applies_to_price_ids": [price_id],
        "filters": [],
        "is_invoice_level": False,
        "reason": reason,
        "replaces_adjustment_id": None,
        **specific,
    }


# --------------------------------------------------------------------------- builders


def build_invoice(
    invoice_id: str,
    customer_id: str,
    currency: str,
    lines: Sequence[SampleLine],
    *,
    line_discount: LineDiscount | None = None,
    line_minimum: LineMinimum | None = None,
    credits: Decimal = ZERO,
    invoice_discount: Decimal | None = None,
    minimum: Decimal | None = None,
    tax_rate: Decimal | None = None,
    balance_applied: Decimal = ZERO,
    issued_at: datetime = DEFAULT_ISSUED_AT,
    due_in_days: int = 30,
    external_customer_id: str | None = None,
    invoice_number: str | None = None,
    memo: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An issued Orb invoice following the module's consistency rules.

    ``credits`` (>= 0) are prepaid credits spread over the lines; ``invoice_discount`` (>= 0)
    an invoice-level amount discount; ``minimum`` an invoice-level minimum commitment;
    ``tax_rate`` a percentage out of 100 (``Decimal("8.25")``); ``balance_applied`` (<= 0)
    customer credit balance applied, at most the total.
    """
    minor_unit_exponent(currency)  # unknown currency -> UnknownCurrencyError
    if credits < 0:
        raise ValueError("credits must be >= 0")
    if invoice_discount is not None and invoice_discount < 0:
        raise ValueError("invoice_discount must be >= 0")
    if balance_applied > 0:
        raise ValueError("balance_applied must be <= 0 (customer credit applied)")
    period_end = issued_at
    period_start = _previous_month(issued_at)
    price_created_at = period_start - timedelta(days=90)
    remaining_credits = round_to_minor(credits, currency)

    line_items: list[dict[str, Any]] = []
    price_ids: list[str] = []
    lines_amount = ZERO
    tax_total = ZERO
    subtotal_sum = ZERO
    for index, line in enumerate(lines):
        if line.quantity < 0 or line.unit_price < 0:
            raise ValueError("quantities and unit prices must be >= 0")
        price_id = _orb_id("price", line.item_id, currency, line.unit_price)
        price_ids.append(price_id)
        line_id = _orb_id("line", invoice_id, index)
        subtotal = round_to_minor(line.quantity * line.unit_price, currency)
        running = subtotal
        adjustments: list[dict[str, Any]] = []
        if line_discount is not None and _selected(index, line_discount.lines):
            if line_discount.percentage is not None:
                effect = -round_to_minor(subtotal * line_discount.percentage, currency)
                adjustments.append(
                    _adjustment(
                        _orb_id("adj", line_id, "pct"),
                        "percentage_discount",
                        effect,
                        price_id,
                        currency,
                        line_discount.reason,
                        percentage_discount=_number(line_discount.percentage),
                    )
                )
            else:
                assert line_discount.amount is not None
                discount = round_to_minor(line_discount.amount, currency)
                effect = -min(discount, max(running, ZERO))
                adjustments.append(
                    _adjustment(
                        _orb_id("adj", line_id, "amt"),
                        "amount_discount",
                        effect,
                        price_id,
                        currency,
                        line_discount.reason,
                        amount_discount=_money(discount, currency),
                    )
                )
            running += effect
        if line_minimum is not None and _selected(index, line_minimum.lines):
            floor = round_to_minor(line_minimum.amount, currency)
            effect = max(ZERO, floor - running)
            adjustments.append(
                _adjustment(
                    _orb_id("adj", line_id, "min"),
                    "minimum",
                    effect,
                    price_id,
                    currency,
                    line_minimum.reason,
                    item_id=line.item_id,
                    minimum_amount=_money(floor, currency),
                )
            )
            running += effect
        adjusted_subtotal = running
        credits_applied = min(remaining_credits, max(adjusted_subtotal, ZERO))
        remaining_credits -= credits_applied
        partially_invoiced = ZERO
        amount = adjusted_subtotal - credits_applied - partially_invoiced
        tax_amounts: list[dict[str, Any]] = []
        if tax_rate is not None:
            tax = round_to_minor(amount * tax_rate / 100, currency)
            tax_total += tax
            tax_amounts.append(
                {
                    "amount": _money(tax, currency),
                    "tax_rate_description": f"Tax {format(tax_rate, 'f')}%",
                    "tax_rate_percentage": format(tax_rate, "f"),
                    "tax_reason": "taxed",
                }
            )
        lines_amount += amount
        subtotal_sum += subtotal
        line_items.append(
            {
                "id": line_id,
                "adjusted_subtotal": _money(adjusted_subtotal, currency),
                "adjustments": adjustments,
                "amount": _money(amount, currency),
                "credits_applied": _money(credits_applied, currency),
                "end_date": _iso(period_end),
                "filter": None,
                "grouping": line.grouping,
                "name": line.item_name,
                "partially_invoiced_amount": _money(partially_invoiced, currency),
                "price": _price(line, price_id, currency, price_created_at),
                "quantity": _number(line.quantity),
                "start_date": _iso(period_start),
                "sub_line_items": [],
                "subtotal": _money(subtotal, currency),
                "tax_amounts": tax_amounts,
                "usage_customer_ids": None,
            }
        )

    discounts: list[dict[str, Any]] = []
    discount_effect = ZERO
    if invoice_discount is not None:
        discount_amount = round_to_minor(invoice_discount, currency)
        discount_effect = -min(discount_amount, max(lines_amount, ZERO))
        discounts.append(
            {
                "discount_type": "amount",
                "amount_discount": _money(discount_amount, currency),
                "applies_to_price_ids": list(dict.fromkeys(price_ids)),
                "filters": None,
                "reason": "Invoice discount",
            }
        )
    minimum_obj: dict[str, Any] | None = None
    true_up = ZERO
    if minimum is not None:
        minimum_amount = round_to_minor(minimum, currency)
        true_up = max(ZERO, minimum_amount - (lines_amount + discount_effect))
        minimum_obj = {
            "applies_to_price_ids": list(dict.fromkeys(price_ids)),
            "filters": [],
            "minimum_amount": _money(minimum_amount, currency),
        }
    total = lines_amount + discount_effect + true_up + tax_total
    balance = round_to_minor(balance_applied, currency)
    if -balance > max(total, ZERO):
        raise ValueError(f"balance_applied {balance_applied} exceeds the invoice total {total}")
    amount_due = total + balance
    balance_transactions: list[dict[str, Any]] = []
    if balance != 0:
        starting = -balance
        balance_transactions.append(
            {
                "id": _orb_id("cbt", invoice_id),
                "action": "applied_to_invoice",
                "amount": _money(balance, currency),
                "created_at": _iso(issued_at),
                "credit_note": None,
                "description": None,
                "ending_balance": _money(starting + balance, currency),
                "invoice": {"id": invoice_id},
                "starting_balance": _money(starting, currency),
                "type": "decrement",
            }
        )

    return {
        "id": invoice_id,
        "amount_due": _money(amount_due, currency),
        "auto_collection": {
            "enabled": False,
            "next_attempt_at": None,
            "num_attempts": None,
            "previously_attempted_at": None,
        },
        "billing_address": None,
        "created_at": _iso(issued_at - timedelta(hours=1)),
        "credit_notes": [],
        "currency": currency,
        "customer": {"id": customer_id, "external_customer_id": external_customer_id},
        "customer_balance_transactions": balance_transactions,
        "customer_tax_id": None,
        "discount": discounts[0] if discounts else None,
        "discounts": discounts,
        "due_date": _iso(issued_at + timedelta(days=due_in_days)),
        "eligible_to_issue_at": None,
        "hidden_line_item_count": 0,
        "hosted_invoice_url": None,
        "invoice_date": _iso(issued_at),
        "invoice_number": invoice_number or f"INV-{_orb_id('num', invoice_id, length=6)}",
        "invoice_pdf": None,
        "invoice_source": "subscription",
        "issue_failed_at": None,
        "issued_at": _iso(issued_at),
        "line_items": line_items,
        "maximum": None,
        "maximum_amount": None,
        "memo": memo,
        "metadata": dict(metadata or {}),
        "minimum": minimum_obj,
        "minimum_amount": minimum_obj["minimum_amount"] if minimum_obj else None,
        "paid_at": None,
        "payment_attempts": [],
        "payment_failed_at": None,
        "payment_received_at": None,
        "payment_started_at": None,
        "scheduled_issue_at": None,
        "shipping_address": None,
        "status": "issued",
        "subscription": {"id": _orb_id("sub", customer_id, currency)},
        "subtotal": _money(subtotal_sum, currency),
        "sync_failed_at": None,
        "total": _money(total, currency),
        "voided_at": None,
        "will_auto_issue": False,
    }


def build_customer(
    customer_id: str,
    *,
    payment_provider: str | None = "stripe_invoice",
    payment_provider_id: str | None = None,
    currency: str | None = "USD",
    name: str | None = None,
    email: str | None = None,
    external_customer_id: str | None = None,
    created_at: datetime = datetime(2024, 6, 1, tzinfo=UTC),
) -> dict[str, Any]:
    """An Orb ``Customer`` object (the shape of ``GET /customers/{id}``)."""
    display = name or customer_id.replace("_", " ").title()
    slug = "".join(ch for ch in display.lower() if ch.isalnum()) or "customer"
    return {
        "id": customer_id,
        "additional_emails": [],
        "auto_collection": False,
        "auto_issuance": None,
        "balance": "0.00",
        "billing_address": {
            "city": "San Francisco",
            "country": "US",
            "line1": "1 Market St",
            "line2": None,
            "postal_code": "94105",
            "state": "CA",
        },
        "created_at": _iso(created_at),
        "currency": currency,
        "email": email or f"billing@{slug}.example.com",
        "email_delivery": False,
        "exempt_from_automated_tax": None,
        "external_customer_id": external_customer_id,
        "hierarchy": {"children": [], "parent": None},
        "metadata": {},
        "name": display,
        "payment_provider": payment_provider,
        "payment_provider_id": payment_provider_id,
        "portal_url": None,
        "shipping_address": None,
        "tax_id": None,
        "timezone": "Etc/UTC",
        "accounting_sync_configuration": None,
        "automatic_tax_enabled": False,
        "default_payment_method": None,
        "payment_configuration": None,
        "reporting_configuration": None,
    }


def build_invoice_issued_event(
    invoice: dict[str, Any], *, event_id: str | None = None, created_at: datetime | None = None
) -> dict[str, Any]:
    """Wrap an invoice in Orb's ``invoice.issued`` webhook envelope."""
    moment = created_at or datetime.fromisoformat(invoice["issued_at"] or invoice["invoice_date"])
    return {
        "id": event_id or _orb_id("evt", invoice["id"]),
        "created_at": _iso(moment),
        "type": "invoice.issued",
        "invoice": invoice,
        "payload_style": "expanded",
        "properties": {"automatically_marked_as_paid": False},
    }


# --------------------------------------------------------------------------- consistency


def consistency_problems(invoice: dict[str, Any]) -> list[str]:
    """Check a payload against the module's rules; returns human-readable problems.

    Works on any Orb invoice dict (no rounding is re-done: only the sums are checked). The
    rules the export itself applies (line amounts, adjustments, the total) are checked by
    :func:`billbridge.core.breakdown.break_down`, their one implementation; this function only
    adds the builder's own rules that the export does not check (subtotals, amount due).
    """
    try:
        parsed = Invoice.model_validate(invoice)
    except ValidationError as err:
        return format_validation_error(err).splitlines()
    problems: list[str] = []
    try:
        break_down(parsed, parsed.line_items)
    except (InvoiceInconsistent, InexactAmountError) as err:
        problems.append(str(err))
    currency = parsed.currency
    for i, line in enumerate(parsed.line_items):
        price = line.price.model_extra or {}
        if price.get("model_type") == "unit" and not line.adjustments:
            unit = Decimal(str(price["unit_config"]["unit_amount"]))
            computed = round_to_minor(line.quantity * unit, currency)
            if computed != line.subtotal:
                problems.append(
                    f"line {i}: subtotal {line.subtotal} != round(quantity * unit price) = "
                    f"{computed}"
                )
    subtotal_sum = sum((line.subtotal for line in parsed.line_items), ZERO)
    if subtotal_sum != parsed.subtotal:
        problems.append(
            f"invoice subtotal {parsed.subtotal} != sum of line subtotals {subtotal_sum}"
        )
    applied = parsed.balance_applied
    if parsed.total + applied != parsed.amount_due:
        problems.append(
            f"amount_due {parsed.amount_due} != total {parsed.total} + balance applied {applied}"
        )
    if applied > 0:
        problems.append(f"balance applied {applied} is positive")
    if parsed.amount_due < 0:
        problems.append("amount_due is negative")
    return problems


# --------------------------------------------------------------------------- demo catalog

Outcome = Literal["exported", "skipped_zero_total"]


@dataclass(frozen=True)
class DemoSpec:
    """Arguments of one :func:`build_invoice` call plus the export outcome billbridge must
    reach for it (``exported`` for a non-zero total, ``skipped_zero_total`` otherwise)."""

    key: str
    description: str
    invoice_id: str
    customer_id: str
    currency: str
    lines: tuple[SampleLine, ...]
    expected: Outcome
    line_discount: LineDiscount | None = None
    line_minimum: LineMinimum | None = None
    credits: Decimal = ZERO
    invoice_discount: Decimal | None = None
    minimum: Decimal | None = None
    tax_rate: Decimal | None = None
    balance_applied: Decimal = ZERO
    issued_at: datetime = DEFAULT_ISSUED_AT
    due_in_days: int = 30
    memo: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    customer_name: str | None = None
    provider: str = "stripe_invoice"  # the customer's payment_provider

    def build(self) -> dict[str, Any]:
        """The Orb invoice payload of this spec."""
        return build_invoice(
            self.invoice_id,
            self.customer_id,
            self.currency,
            self.lines,
            line_discount=self.line_discount,
            line_minimum=self.line_minimum,
            credits=self.credits,
            invoice_discount=self.invoice_discount,
            minimum=self.minimum,
            tax_rate=self.tax_rate,
            balance_applied=self.balance_applied,
            issued_at=self.issued_at,
            due_in_days=self.due_in_days,
            external_customer_id=f"ext-{self.customer_id}",
            memo=self.memo,
            metadata=self.metadata,
        )

    def build_customer(self, payment_provider_id: str | None = None) -> dict[str, Any]:
        """The Orb customer this invoice belongs to (exported via ``self.provider``)."""
        return build_customer(
            self.customer_id,
            payment_provider=self.provider,
            payment_provider_id=payment_provider_id,
            currency=self.currency,
            name=self.customer_name,
            external_customer_id=f"ext-{self.customer_id}",
        )


def _d(value: str) -> Decimal:
    return Decimal(value)


_API = ("item_api_calls", "API calls")
_STORAGE = ("item_storage_gb", "Storage (GB-month)")
_EGRESS = ("item_egress_gb", "Data egress (GB)")
_COMPUTE = ("item_compute_hours", "Compute (vCPU-hours)")
_SEATS = ("item_seats", "Platform seats")
_PLATFORM = ("item_platform_fee", "Platform fee")
_SUPPORT = ("item_support", "Premium support")


def _line(item: tuple[str, str], quantity: str, unit_price: str, **kw: Any) -> SampleLine:
    return SampleLine(item[0], item[1], _d(quantity), _d(unit_price), **kw)


def _fixed(item: tuple[str, str], quantity: str, unit_price: str) -> SampleLine:
    return _line(item, quantity, unit_price, price_type="fixed_price")


def demo_catalog() -> list[DemoSpec]:
    """Deterministic demo/test invoices covering currencies, adjustments and edge cases."""
    specs: list[DemoSpec] = []

    def add(
        key: str,
        description: str,
        currency: str,
        customer: str,
        lines: Sequence[SampleLine],
        expected: Outcome = "exported",
        **kw: Any,
    ) -> None:
        specs.append(
            DemoSpec(
                key=key,
                description=description,
                invoice_id=f"inv_demo_{key.replace('-', '_')}",
                customer_id=f"cust_{customer}_{currency.lower()}",
                currency=currency,
                lines=tuple(lines),
                expected=expected,
                customer_name=f"{customer.title()} Inc.",
                **kw,
            )
        )

    add(
        "usd-usage",
        "multi-line usage with fractional quantities",
        "USD",
        "acme",
        [
            _line(_STORAGE, "1234.567", "0.0123"),
            _line(_API, "1250000", "0.00002"),
            _line(_COMPUTE, "731.25", "0.0416"),
            _fixed(_PLATFORM, "1", "99.00"),
        ],
    )
    add(
        "usd-seats",
        "seat-based subscription",
        "USD",
        "globex",
        [
            _fixed(_SEATS, "12", "25.00"),
            _fixed(_SUPPORT, "1", "500.00"),
        ],
    )
    add(
        "usd-discount-credits",
        "10% line discount and prepaid credits applied",
        "USD",
        "initech",
        [
            _line(_STORAGE, "5000.5", "0.021"),
            _line(_EGRESS, "812.333", "0.09"),
            _fixed(_PLATFORM, "1", "250.00"),
        ],
        line_discount=LineDiscount(percentage=_d("0.10"), reason="Annual commitment"),
        credits=_d("75.00"),
    )
    add(
        "usd-amount-discount",
        "fixed amount discount on one line",
        "USD",
        "umbrella",
        [
            _line(_API, "4200000", "0.00001"),
            _fixed(_PLATFORM, "1", "199.00"),
        ],
        line_discount=LineDiscount(amount=_d("50.00"), lines=(1,), reason="Launch promo"),
    )
    add(
        "usd-balance",
        "customer credit balance applied",
        "USD",
        "hooli",
        [
            _line(_COMPUTE, "1520.75", "0.0832"),
            _fixed(_SEATS, "3", "40.00"),
        ],
        balance_applied=_d("-25.00"),
    )
    add(
        "usd-balance-covers-all",
        "credit balance covers the full total (amount_due 0)",
        "USD",
        "piedpiper",
        [_fixed(_PLATFORM, "1", "49.00")],
        balance_applied=_d("-49.00"),
    )
    add(
        "usd-tax",
        "US sales tax on every line",
        "USD",
        "soylent",
        [
            _line(_STORAGE, "321.123", "0.023"),
            _fixed(_SEATS, "7", "30.00"),
        ],
        tax_rate=_d("8.25"),
    )
    add(
        "usd-invoice-discount",
        "invoice-level amount discount",
        "USD",
        "vandelay",
        [
            _line(_EGRESS, "10240", "0.05"),
            _fixed(_PLATFORM, "1", "100.00"),
        ],
        invoice_discount=_d("60.00"),
    )
    add(
        "usd-minimum-true-up",
        "invoice-level minimum commitment trued up",
        "USD",
        "wonka",
        [
            _line(_API, "310000", "0.0001"),
        ],
        minimum=_d("500.00"),
    )
    add(
        "usd-line-minimum",
        "per-line minimum charge",
        "USD",
        "stark",
        [
            _line(_STORAGE, "12.5", "0.02"),
            _line(_COMPUTE, "1000", "0.05"),
        ],
        line_minimum=LineMinimum(amount=_d("10.00"), reason="Minimum monthly charge"),
    )
    add("usd-tiny", "one cent invoice", "USD", "tiny", [_line(_API, "1", "0.01")])
    add(
        "usd-large-amount",
        "seven-figure enterprise invoice",
        "USD",
        "megacorp",
        [
            _fixed(_PLATFORM, "1", "1250000.00"),
            _line(_COMPUTE, "2500000.5", "0.0416"),
        ],
    )
    add(
        "usd-many-lines",
        "50 grouped usage lines",
        "USD",
        "cyberdyne",
        [
            _line(
                _COMPUTE, f"{(i * 37) % 500}.{(i * 7) % 10}", "0.0416", grouping=f"project:{i:02d}"
            )
            for i in range(50)
        ],
    )
    add(
        "usd-zero-free-tier",
        "free tier: every line zero",
        "USD",
        "freetier",
        [
            _line(_API, "9500", "0"),
            _line(_STORAGE, "0", "0.023"),
        ],
        expected="skipped_zero_total",
    )
    add(
        "usd-zero-credits",
        "prepaid credits cover everything",
        "USD",
        "prepaid",
        [
            _line(_COMPUTE, "100", "0.50"),
            _fixed(_SEATS, "2", "10.00"),
        ],
        credits=_d("1000.00"),
        expected="skipped_zero_total",
    )
    add(
        "eur-vat",
        "EUR with 19% VAT",
        "EUR",
        "bergmann",
        [
            _line(_STORAGE, "2048.256", "0.0195"),
            _fixed(_SEATS, "15", "19.00"),
        ],
        tax_rate=_d("19"),
    )
    add(
        "eur-discount-balance",
        "EUR percentage discount and balance applied",
        "EUR",
        "dupont",
        [
            _line(_API, "987654", "0.00005"),
            _fixed(_PLATFORM, "1", "149.00"),
        ],
        line_discount=LineDiscount(percentage=_d("0.15")),
        balance_applied=_d("-12.34"),
    )
    add(
        "gbp-vat",
        "GBP with 20% VAT",
        "GBP",
        "whitfield",
        [
            _line(_EGRESS, "543.21", "0.07"),
            _fixed(_SUPPORT, "1", "300.00"),
        ],
        tax_rate=_d("20"),
    )
    add(
        "jpy-usage",
        "JPY (no decimals) fractional usage",
        "JPY",
        "tanaka",
        [
            _line(_STORAGE, "1234.567", "2.5"),
            _line(_API, "333333", "0.003"),
            _fixed(_SEATS, "4", "3000"),
        ],
    )
    add(
        "jpy-discount-credits",
        "JPY discount and credits",
        "JPY",
        "sato",
        [
            _line(_COMPUTE, "812.4", "6"),
            _fixed(_PLATFORM, "1", "15000"),
        ],
        line_discount=LineDiscount(percentage=_d("0.05")),
        credits=_d("2000"),
    )
    add("krw-seats", "KRW (no decimals) seats", "KRW", "kimlee", [_fixed(_SEATS, "9", "33000")])
    # Stripe charges three-decimal currencies only in amounts whose last digit is 0
    # (docs.stripe.com/currencies#three-decimal): the KWD and BHD amounts due end in 0.
    add(
        "kwd-usage",
        "KWD (3 decimals) usage",
        "KWD",
        "alsabah",
        [
            _line(_STORAGE, "1234.567", "0.0123"),
            _line(_EGRESS, "99.999", "0.0275"),
            _fixed(_PLATFORM, "1", "45.505"),
        ],
    )
    add(
        "kwd-discount-balance",
        "KWD discount and balance applied",
        "KWD",
        "alghanim",
        [
            _line(_COMPUTE, "640.5", "0.0129"),
            _fixed(_SEATS, "5", "9.250"),
        ],
        line_discount=LineDiscount(percentage=_d("0.125")),
        balance_applied=_d("-1.108"),
    )
    add(
        "bhd-usage",
        "BHD (3 decimals) usage",
        "BHD",
        "almoayyed",
        [
            _line(_API, "77770", "0.00013"),
        ],
    )
    # ISK has no decimals in ISO 4217 but two at Stripe, always 00
    # (docs.stripe.com/currencies#special-cases): 3,086 kr. is sent as 308600.
    add(
        "isk-usage",
        "ISK (0 decimals, 2 at Stripe) usage and seats",
        "ISK",
        "jonsdottir",
        [
            _line(_STORAGE, "1234.567", "2.5"),
            _fixed(_SEATS, "3", "4990"),
        ],
    )
    add(
        "cad-usage",
        "CAD usage with GST",
        "CAD",
        "maple",
        [
            _line(_COMPUTE, "240.25", "0.055"),
        ],
        tax_rate=_d("5"),
    )
    add("chf-seats", "CHF seats", "CHF", "helvetia", [_fixed(_SEATS, "20", "18.50")])
    # Customers on QuickBooks Online: the same invoice shapes, exported there.
    add(
        "qbo-usage",
        "QuickBooks: usage with fractional quantities",
        "USD",
        "maple",
        [
            _line(_API, "1234567", "0.00015"),
            _line(_STORAGE, "512.5", "0.023"),
            _fixed(_SEATS, "4", "25"),
        ],
        provider="quickbooks",
    )
    add(
        "qbo-discount-credits-tax",
        "QuickBooks: discount, credits and tax as their own mapped lines",
        "USD",
        "maple",
        [_line(_COMPUTE, "730.25", "0.0416"), _fixed(_PLATFORM, "1", "499")],
        line_discount=LineDiscount(percentage=_d("0.10")),
        credits=_d("50.00"),
        tax_rate=_d("8.25"),
        provider="quickbooks",
    )
    add(
        "qbo-zero",
        "QuickBooks: zero total is not exported",
        "USD",
        "maple",
        [_line(_API, "0", "0.00015")],
        expected="skipped_zero_total",
        provider="quickbooks",
    )
    # Customers on BILL (Bill.com) and on NetSuite: the same shapes, exported there.
    for provider, label, customer, prefix in (
        ("bill.com", "BILL", "harbor", "bill"),
        ("netsuite", "NetSuite", "summit", "ns"),
    ):
        add(
            f"{prefix}-usage",
            f"{label}: usage with fractional quantities",
            "USD",
            customer,
            [
                _line(_API, "1234567", "0.00015"),
                _line(_STORAGE, "512.5", "0.023"),
                _fixed(_SEATS, "4", "25"),
            ],
            provider=provider,
        )
        add(
            f"{prefix}-discount-credits-tax",
            f"{label}: discount, credits and tax as their own mapped lines",
            "USD",
            customer,
            [_line(_COMPUTE, "730.25", "0.0416"), _fixed(_PLATFORM, "1", "499")],
            line_discount=LineDiscount(percentage=_d("0.10")),
            credits=_d("50.00"),
            tax_rate=_d("8.25"),
            provider=provider,
            memo="Thank you for your business",
        )
        add(
            f"{prefix}-zero",
            f"{label}: zero total is not exported",
            "USD",
            customer,
            [_line(_API, "0", "0.00015")],
            expected="skipped_zero_total",
            provider=provider,
        )
    return specs


def demo_customers() -> list[dict[str, Any]]:
    """One Orb customer per distinct customer of :func:`demo_catalog` (first spec wins)."""
    seen: dict[str, dict[str, Any]] = {}
    for spec in demo_catalog():
        seen.setdefault(spec.customer_id, spec.build_customer())
    return list(seen.values())


# --------------------------------------------------------------------------- large invoices

_LARGE_ITEMS: tuple[tuple[str, str, Decimal], ...] = (
    ("item_api_calls", "API calls", Decimal("0.00002")),
    ("item_storage_gb", "Storage (GB-month)", Decimal("0.0123")),
    ("item_egress_gb", "Data egress (GB)", Decimal("0.09")),
    ("item_compute_hours", "Compute (vCPU-hours)", Decimal("0.0416")),
    ("item_gpu_hours", "GPU hours", Decimal("2.48")),
)


def large_invoice(
    invoice_id: str, customer_id: str, n_lines: int, currency: str = "USD"
) -> dict[str, Any]:
    """An invoice with ``n_lines`` grouped usage lines over 5 items (deterministic).

    Quantities have up to 3 decimals; lines are grouped per project as Orb does for a price
    with an invoice grouping key. Unit prices are in major units of ``currency``.
    """
    if n_lines < 1:
        raise ValueError("n_lines must be >= 1")
    lines = []
    for i in range(n_lines):
        item_id, item_name, unit_price = _LARGE_ITEMS[i % len(_LARGE_ITEMS)]
        if minor_unit_exponent(currency) == 0:
            unit_price = unit_price * 100
        quantity = Decimal((i * 7919) % 250_000 + 1) / 1000
        lines.append(
            SampleLine(
                item_id,
                item_name,
                quantity,
                unit_price,
                grouping=f"project:{i // len(_LARGE_ITEMS):05d}",
            )
        )
    return build_invoice(invoice_id, customer_id, currency, lines)
