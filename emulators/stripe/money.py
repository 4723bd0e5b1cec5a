"""Money math: integers in the currency's minor unit, Decimal (never float) for fractions."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# UNCONFIRMED: Stripe does not document how it rounds a line amount computed from
# unit_amount_decimal x quantity(_decimal) to an integer of minor units. Half-up (away from zero
# on .5) is assumed here; change this one constant if Stripe turns out to use banker's rounding.
LINE_AMOUNT_ROUNDING = ROUND_HALF_UP

# Minimum chargeable amounts, in minor units (https://docs.stripe.com/currencies#minimum-and-
# maximum-charge-amounts, transcribed from memory: UNCONFIRMED per currency). Per the Invoice
# object docs, a finalized invoice whose amount_due is below the minimum is marked paid and the
# amount is carried to the customer's balance. Currencies not listed have no minimum here.
MINIMUM_CHARGE_AMOUNTS: dict[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}


def line_amount(unit_amount_decimal: Decimal, quantity: Decimal) -> int:
    """quantity x unit amount, rounded to whole minor units with LINE_AMOUNT_ROUNDING."""
    return int((unit_amount_decimal * quantity).quantize(Decimal(1), rounding=LINE_AMOUNT_ROUNDING))


def truncate_quantity(quantity: Decimal) -> int:
    """The integer ``quantity`` field: "with any decimal precision truncated"."""
    return int(quantity)


def minimum_charge(currency: str) -> int:
    return MINIMUM_CHARGE_AMOUNTS.get(currency.lower(), 0)
