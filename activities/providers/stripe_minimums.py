"""Stripe's minimum charge per currency, as the exporter reads it.

Stripe: "If the amount due for the invoice is less than Stripe's minimum allowed charge per
currency, the invoice is automatically marked paid, and we add the amount due to the customer's
credit balance which is applied to the next invoice" (Invoice object,
https://docs.stripe.com/api/invoices/object), and the customer balance page: "When the amount
due on an invoice is less than the minimum chargeable amount the invoice is marked as paid and
the amount owed moved to the invoice balance as a debit"
(https://docs.stripe.com/billing/customer/balance).

The amounts are Stripe's table at https://docs.stripe.com/currencies#minimum-and-maximum-charge-
amounts. UNCONFIRMED per currency: the table could not be read in full from a stored copy of the
page; the values below agree with the emulator's (emulators/stripe/money.py) and with the USD
0.50 / GBP 0.30 quoted on that page's excerpts. Stripe applies the minimum after converting to
the settlement currency ("Amount must convert to at least 50 cents"), so near these amounts a
foreign-currency charge can still be refused; the table is the presentment-currency floor only.
Currencies not listed have no minimum known to billbridge (nothing is skipped for them).
"""

from __future__ import annotations

from decimal import Decimal

from billbridge.activities.providers.stripe_currencies import from_stripe_minor

# Stripe's minor units of each currency (stripe_currencies; lower case, as Stripe spells them).
MINIMUM_CHARGE_MINOR: dict[str, int] = {
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


def minimum_charge_minor(currency: str) -> int:
    """Stripe's minimum charge in minor units; 0 when billbridge knows none."""
    return MINIMUM_CHARGE_MINOR.get(currency.lower(), 0)


def minimum_charge(currency: str) -> Decimal | None:
    """Stripe's minimum charge as a decimal amount of the currency; None when unknown."""
    minor = minimum_charge_minor(currency)
    return from_stripe_minor(minor, currency) if minor else None


def below_minimum_charge(amount_due: Decimal, currency: str) -> bool:
    """Whether Stripe would not charge this amount due: more than zero, below the minimum."""
    minimum = minimum_charge(currency)
    return minimum is not None and Decimal(0) < amount_due < minimum
