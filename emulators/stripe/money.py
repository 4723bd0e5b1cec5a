"""Money math: integers in the currency's minor unit, Decimal (never float) for fractions."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from . import errors

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


# -- what Stripe can charge (written from the docs, independently of the exporter's table) ----

# https://docs.stripe.com/currencies#three-decimal (wording of the archived page,
# web.archive.org/web/20221231002856/https://stripe.com/docs/currencies): "these API calls
# require the least-significant (last) digit to be 0 [...] 5.124 KWD must be rounded to 5120 or
# 5130." UNCONFIRMED: the live page dropped the section; the error Stripe answers with, and
# whether an invoice fails at finalization (when its PaymentIntent is made) or only when paid.
# Modelled: finalizing an invoice whose amount due breaks the rule is refused.
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# https://docs.stripe.com/currencies#special-cases: ISK "two-decimal value, where the decimal
# amount is always 00"; refused since 2023-04-14 with "400
# invalid_charge_amount_no_decimal_compatible: Invalid amount. Currency ISK has become
# effectively zero-decimal and charged amounts must be evenly divisible by 100."
# (https://support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds).
# UGX has the same rule, but for invoices Stripe rounds a fractional amount itself and books
# the difference to the customer balance: not emulated (billbridge never sends one).
WHOLE_UNIT_CURRENCIES = frozenset({"isk"})


def check_chargeable(amount: int, currency: str) -> None:
    """Refuse (400) an amount to charge that Stripe's currency rules forbid."""
    code = currency.lower()
    if code in THREE_DECIMAL_CURRENCIES and amount % 10:
        raise errors.invalid(
            # UNCONFIRMED wording and code.
            f"Invalid amount: {code.upper()} is a three-decimal currency and the last digit of "
            f"an amount to charge must be 0 (got {amount}). See "
            "https://stripe.com/docs/currencies#three-decimal for more information.",
            "amount",
            "invalid_charge_amount",
        )
    if code in WHOLE_UNIT_CURRENCIES and amount % 100:
        raise errors.invalid(
            f"Invalid amount. Currency {code.upper()} has become effectively zero-decimal and "
            "charged amounts must be evenly divisible by 100. See "
            "https://stripe.com/docs/currencies#special-cases for more information.",
            "amount",
            "invalid_charge_amount_no_decimal_compatible",
        )
