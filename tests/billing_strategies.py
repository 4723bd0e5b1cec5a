"""Hypothesis strategies for the property tests (tests/test_properties_*.py): billing invoices in
the shape the door accepts, built by the reading of Orb's fields that core/breakdown.py documents,
and usage events in Orb's ingestion shape; and the settings profiles the properties run under.

Amounts are drawn as integers of the currency's ISO minor unit and written as Orb writes them
(fixed-point text, sometimes with trailing zeros: "100.00" is a JPY amount), so every invoice
drawn here adds up to the minor unit by construction; the properties then check that the door
accepts it and that what each provider would receive adds up to exactly the same totals.

Profiles: `ci` (the default) is small and derandomized, so CI runs the same examples every time;
HYPOTHESIS_PROFILE=thorough runs ten times as many, randomly.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from billbridge.core.money import from_minor, minor_unit_exponent

settings.register_profile("ci", deadline=None, derandomize=True, database=None)
settings.register_profile("thorough", deadline=None, database=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """A property's number of examples under the active profile (thorough: ten times)."""
    return count * 10 if PROFILE == "thorough" else count


# ISO 4217 exponents 2, 0, 3 and 4, chosen for the providers' own rules about them: MGA is
# zero-decimal at Stripe, ISK and UGX whole units in two-decimal form, HUF and TWD plain
# two-decimal for invoices, BHD JOD KWD OMR TND three-decimal with a trailing 0 to charge, IQD
# and LYD three-decimal in ISO but two-decimal at Stripe (activities/providers/
# stripe_currencies.py); CLF and UYW have four decimals.
TWO_DECIMAL = ("USD", "EUR", "GBP", "CHF", "INR", "MXN", "HUF", "TWD", "MGA")
ZERO_DECIMAL = ("JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XOF")
THREE_DECIMAL = ("KWD", "BHD", "JOD", "OMR", "TND", "IQD", "LYD")
FOUR_DECIMAL = ("CLF", "UYW")
CURRENCIES = TWO_DECIMAL + ZERO_DECIMAL + THREE_DECIMAL + FOUR_DECIMAL

ISSUED_AT = datetime(2026, 3, 1, tzinfo=UTC)

# Text as a billing system may send it: any Unicode character (control characters included)
# but NUL, which no store keeps, and lone surrogates, which are no characters at all (the door
# refuses both: see test_properties_door.py).
CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")
texts = st.text(CHARACTERS, max_size=30)
ids = st.text(CHARACTERS, min_size=1, max_size=24)
currencies = st.sampled_from(CURRENCIES)
# Orb writes codes in upper case; the door takes any case and spaces around (core/money.py).
any_case_currencies = st.one_of(
    currencies, currencies.map(str.lower), currencies.map(lambda code: f" {code}\n")
)


@st.composite
def quantities(draw: st.DrawFn) -> Decimal:
    """Whole or fractional (up to 15 decimals), from 0 to a billion, and now and then as large
    as bytes counted over a month (10**24)."""
    places = draw(st.integers(0, 15))
    whole = draw(st.integers(0, 10**9) | st.integers(0, 24).map(lambda n: 10**n))
    if places == 0:
        return Decimal(whole)
    fraction = draw(st.integers(0, 10**places - 1))
    return Decimal(whole) + Decimal(fraction).scaleb(-places)


def money_text(draw: st.DrawFn, minor: int, currency: str) -> str:
    """Orb's fixed-point text of an amount, sometimes with trailing zeros (still exact)."""
    text = format(from_minor(minor, currency), "f")
    zeros = draw(st.sampled_from((0, 0, 0, 1, 2)))
    if zeros and "." not in text:
        text += "."
    return text + "0" * zeros


def quantity_json(draw: st.DrawFn, quantity: Decimal) -> Any:
    """A quantity as Orb's JSON number (an int when whole) or as decimal text."""
    if quantity == quantity.to_integral_value() and draw(st.booleans()):
        return int(quantity)
    return format(quantity, "f")


ADJUSTMENT_SIGNS = {
    "usage_discount": -1,
    "amount_discount": -1,
    "percentage_discount": -1,
    "tiered_percentage_discount": -1,
    "maximum": -1,
    "minimum": 1,
}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@st.composite
def line_items(
    draw: st.DrawFn, currency: str, index: int, line_id: str, item: tuple[str, str]
) -> tuple[dict[str, Any], int, int]:
    """One line that follows Orb's rules; (line, amount, tax) in minor units."""
    quantity = draw(quantities())
    subtotal = draw(st.integers(0, 10**9))
    if draw(st.integers(0, 9)) == 0:  # a credit line: negative quantity, non-positive amount
        quantity, subtotal = -quantity, -subtotal
    effects = [
        (kind, ADJUSTMENT_SIGNS[kind] * draw(st.integers(0, 10**7)))
        for kind in draw(st.lists(st.sampled_from(sorted(ADJUSTMENT_SIGNS)), max_size=3))
    ]
    adjusted = subtotal + sum(effect for _, effect in effects)
    credits = draw(st.integers(0, max(adjusted, 0)))
    partial = draw(st.sampled_from((0, 0, 0, max(adjusted - credits, 0) // 2)))
    amount = adjusted - credits - partial
    taxes = draw(st.lists(st.integers(0, 10**7), max_size=2))
    start = ISSUED_AT - timedelta(days=draw(st.integers(1, 62)))
    line = {
        "id": line_id,
        "name": draw(texts),
        "quantity": quantity_json(draw, quantity),
        "amount": money_text(draw, amount, currency),
        "subtotal": money_text(draw, subtotal, currency),
        "adjusted_subtotal": money_text(draw, adjusted, currency),
        "credits_applied": money_text(draw, credits, currency),
        "partially_invoiced_amount": money_text(draw, partial, currency),
        "start_date": _iso(start),
        "end_date": _iso(ISSUED_AT),
        "price": {"id": f"price_{index}", "item": {"id": item[0], "name": item[1]}},
        "adjustments": [
            {
                "id": f"adj_{index}_{n}",
                "adjustment_type": kind,
                "amount": money_text(draw, effect, currency),
                "applies_to_price_ids": [f"price_{index}"],
                "reason": draw(st.none() | texts),
            }
            for n, (kind, effect) in enumerate(effects)
        ],
        "tax_amounts": [
            {
                "amount": money_text(draw, tax, currency),
                "tax_rate_description": draw(texts),
                "tax_rate_percentage": draw(st.none() | st.sampled_from(("8.25", "20", "0"))),
            }
            for tax in taxes
        ],
    }
    return line, amount, sum(taxes)


ONE_COPY = st.just(1)


@st.composite
def invoices(
    draw: st.DrawFn,
    currency: st.SearchStrategy[str] = any_case_currencies,
    max_lines: int = 12,
    customer_id: st.SearchStrategy[str] = ids,
    copies_per_line: st.SearchStrategy[int] = ONE_COPY,
) -> dict[str, Any]:
    """An issued Orb invoice that adds up: lines with adjustments, credits, partial invoicing
    and tax; an invoice-level discount, maximum or minimum; a customer balance applied."""
    code = draw(currency)
    minor_unit_exponent(code)  # a currency of the table above
    count = draw(st.integers(0, max_lines))
    line_ids = draw(st.lists(ids, min_size=count, max_size=count, unique=True))
    catalog = draw(st.lists(st.tuples(ids, texts), min_size=1, max_size=6))
    lines, amounts, taxes = [], 0, 0
    for index, line_id in enumerate(line_ids):
        line, amount, tax = draw(line_items(code, index, line_id, draw(st.sampled_from(catalog))))
        # Hundreds of lines cost hundreds of draws each: a drawn line stands for `copies`
        # lines of one item (each its own id; over days of their own, or one period).
        copies, spread = draw(copies_per_line), draw(st.booleans())
        for copy in range(copies):
            lines.append(_copy(line, index, copy, spread) if copy else line)
        amounts += amount * copies
        taxes += tax * copies
    # Tax is either added to the total (its own lines at the provider) or already inside the
    # line amounts; with an invoice-level residual as well, only the first reading is
    # unambiguous (core/breakdown.py).
    tax_added = bool(taxes) and draw(st.booleans())
    level = draw(st.sampled_from(("none", "none", "discount", "maximum", "minimum")))
    if taxes and not tax_added:
        level = "none"
    residual = 0 if level == "none" else draw(st.integers(1, 10**8))
    residual = -residual if level in ("discount", "maximum") else residual
    total = amounts + (taxes if tax_added else 0) + residual
    balance = -draw(st.integers(0, max(total, 0))) if draw(st.booleans()) else 0
    invoice: dict[str, Any] = {
        "id": draw(ids),
        "invoice_number": draw(texts),
        "customer": {"id": draw(customer_id), "external_customer_id": draw(st.none() | ids)},
        "currency": code,
        "invoice_date": _iso(ISSUED_AT),
        "due_date": draw(st.none() | st.just(_iso(ISSUED_AT + timedelta(days=30)))),
        "status": "issued",
        "subtotal": money_text(draw, sum(_minor(line["subtotal"], code) for line in lines), code),
        "total": money_text(draw, total, code),
        "amount_due": money_text(draw, total + balance, code),
        "memo": draw(st.none() | texts),
        "metadata": draw(st.dictionaries(ids, texts, max_size=2)),
        "line_items": lines,
    }
    if level == "discount":
        invoice["discounts"] = [
            {"discount_type": "amount", "amount_discount": money_text(draw, -residual, code)}
        ]
    elif level == "maximum":
        invoice["maximum"] = {"maximum_amount": money_text(draw, amounts + residual, code)}
    elif level == "minimum":
        invoice["minimum"] = {"minimum_amount": money_text(draw, amounts + residual, code)}
    if balance:
        invoice["customer_balance_transactions"] = [
            {
                "id": "cbt_1",
                "action": "applied_to_invoice",
                "amount": money_text(draw, balance, code),
            }
        ]
    return invoice


def one_line_invoice(invoice_id: str, currency: str, quantity: str, amount: str) -> dict[str, Any]:
    """The smallest invoice the door accepts: one line of `quantity` billing `amount` (for
    regression examples found by the properties)."""
    line = {
        "id": f"{invoice_id}_line",
        "name": "Usage",
        "quantity": quantity,
        "amount": amount,
        "subtotal": amount,
        "start_date": _iso(ISSUED_AT - timedelta(days=28)),
        "end_date": _iso(ISSUED_AT),
        "price": {"id": "price_usage", "item": {"id": "item_usage", "name": "Usage"}},
    }
    return {
        "id": invoice_id,
        "invoice_number": invoice_id.upper(),
        "customer": {"id": "cust_regression"},
        "currency": currency,
        "invoice_date": _iso(ISSUED_AT),
        "status": "issued",
        "subtotal": amount,
        "total": amount,
        "amount_due": amount,
        "line_items": [line],
    }


def _copy(line: dict[str, Any], index: int, copy: int, spread: bool) -> dict[str, Any]:
    start = datetime.fromisoformat(line["start_date"]) - timedelta(days=copy if spread else 0)
    return {**line, "id": f"{index}.{copy}:{line['id']}", "start_date": _iso(start)}


def _minor(text: str, currency: str) -> int:
    return int(Decimal(text).scaleb(minor_unit_exponent(currency)))


# --------------------------------------------------------------------------- usage

USAGE_START = datetime(2026, 3, 1, 10, tzinfo=UTC)
USAGE_HOURS = 6
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)))


@st.composite
def usage_timestamps(draw: st.DrawFn) -> str:
    """ISO 8601 with a zone, in USAGE_HOURS hours from USAGE_START, often right at an hour's
    edge (the last microsecond of one hour, the first of the next)."""
    edge = USAGE_START + timedelta(hours=draw(st.integers(1, USAGE_HOURS - 1)))
    moment = draw(
        st.one_of(
            st.sampled_from((edge, edge - timedelta(microseconds=1))),
            st.integers(0, USAGE_HOURS * 3600 * 10**6 - 1).map(
                lambda us: USAGE_START + timedelta(microseconds=us)
            ),
        )
    )
    return moment.astimezone(draw(st.sampled_from(ZONES))).isoformat()


@st.composite
def usage_numbers(draw: st.DrawFn, *, negative: bool) -> Any:
    """A numeric property as Orb's JSON carries it: an int, a Decimal (a JSON number read
    exactly) or decimal text, with up to 12 decimals."""
    places = draw(st.integers(0, 12))
    value = Decimal(draw(st.integers(-(10**12) if negative else 0, 10**12))).scaleb(-places)
    form = draw(st.sampled_from(("decimal", "text", "int")))
    if form == "int" and places == 0:
        return int(value)
    return format(value, "f") if form == "text" else value
