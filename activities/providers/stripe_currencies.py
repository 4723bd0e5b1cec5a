"""Stripe's own currency rules: the one table every amount sent to Stripe goes through.

Stripe's minor units are not ISO 4217's (https://docs.stripe.com/currencies):

- "Currencies are two-decimal currencies unless otherwise specified."
- Zero-decimal (#zero-decimal): BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF.
  MGA is among them although ISO 4217 gives it 2 decimals: 10.50 MGA cannot be sent at all.
- Three-decimal (#three-decimal): BHD JOD KWD OMR TND. "these API calls require the
  least-significant (last) digit to be 0 [...] 5.124 KWD must be rounded to 5120 or 5130."
  The live page no longer shows this section (the currencies stay in its presentment list);
  the wording is the archived one (web.archive.org/web/20221231002856/https://stripe.com/docs/
  currencies). UNCONFIRMED that Stripe still enforces it: billbridge keeps to it.
- Special cases (#special-cases):
  ISK: "backward compatibility requires you to represent it as a two-decimal value, where the
  decimal amount is always 00 [...] You can't charge fractions of ISK." Enforced since
  2023-04-14 with `400 invalid_charge_amount_no_decimal_compatible`, for Products and Prices too
  (https://support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds).
  UGX: the same two-decimal-with-00 rule. The page also lists UGX as zero-decimal; the special
  case is the operative one (an amount of 100 UGX reaches Stripe as 1.00 USh, as odoo/odoo#227688
  reports). For invoices Stripe rounds a fractional UGX amount itself and moves the difference
  to the customer balance; billbridge never lets it (a whole-unit rule is checked here).
  HUF and TWD: "zero-decimal currency for payouts, even though you can charge two-decimal
  amounts": the divisible-by-100 rule applies to manual payouts only, which billbridge never
  creates, so for invoices they are plain two-decimal currencies (the issue text listed them
  with ISK/UGX; the page limits them to payouts).

Billing amounts are exact Decimals (ISO 4217 minor units, core/money.py). Converting one to
Stripe's units is exact or an error naming the rule; rounding happens only where a connection
allows a rounding line (ConnectionSettings.stripe_rounding_line), and is then recorded.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from billbridge.core.money import InexactAmountError, format_amount

CURRENCIES_DOC = "https://docs.stripe.com/currencies"

ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split()
)  # docs.stripe.com/currencies#zero-decimal, less UGX (see WHOLE_UNITS_IN_CENTS)
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())  # #three-decimal
# Two-decimal at the API, but only whole units are chargeable (#special-cases).
WHOLE_UNITS_IN_CENTS = frozenset(("isk", "ugx"))


class StripeAmountError(ValueError):
    """An amount Stripe cannot take or charge as billed; the message names the rule."""


def _code(currency: str) -> str:
    return currency.strip().lower()


def exponent(currency: str) -> int:
    """Decimals of an amount in `currency` as Stripe's API counts them."""
    code = _code(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def charge_step(currency: str) -> int:
    """The multiple of Stripe minor units a charged amount must be (1: any integer)."""
    code = _code(currency)
    if code in THREE_DECIMAL:
        return 10
    if code in WHOLE_UNITS_IN_CENTS:
        return 100
    return 1


def unit_amount_step(currency: str) -> int:
    """The multiple a price's unit amount must be: ISK's rule covers Products and Prices too
    (support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds); UGX has
    the same wording on docs.stripe.com/currencies#special-cases. Three-decimal rules name
    charges (Payment Intents, Refunds, Disputes) only."""
    return 100 if _code(currency) in WHOLE_UNITS_IN_CENTS else 1


def rule(currency: str) -> str:
    """The Stripe rule an amount in `currency` must follow, in words, with its source."""
    code = _code(currency)
    upper = code.upper()
    if code in ZERO_DECIMAL:
        return f"{upper} is a zero-decimal currency at Stripe ({CURRENCIES_DOC}#zero-decimal)"
    if code in THREE_DECIMAL:
        return (
            f"{upper} is a three-decimal currency at Stripe and a charged amount must end in 0 "
            f"(whole hundredths; {CURRENCIES_DOC}#three-decimal)"
        )
    if code in WHOLE_UNITS_IN_CENTS:
        return (
            f"Stripe charges {upper} in whole units only, sent as a two-decimal amount ending "
            f"in 00 ({CURRENCIES_DOC}#special-cases)"
        )
    return f"{upper} is a two-decimal currency at Stripe ({CURRENCIES_DOC})"


def _scaled(amount: Decimal, currency: str) -> Decimal:
    return amount.scaleb(exponent(currency))


def is_representable(amount: Decimal, currency: str) -> bool:
    scaled = _scaled(amount, currency)
    return scaled == scaled.to_integral_value()


def to_stripe_minor(amount: Decimal, currency: str) -> int:
    """An exact major-unit amount in Stripe's minor units; StripeAmountError if it has a
    fraction Stripe cannot express (10.50 MGA)."""
    scaled = _scaled(amount, currency)
    if scaled != scaled.to_integral_value():
        raise StripeAmountError(f"{amount} {currency.upper()} cannot be sent: {rule(currency)}")
    return int(scaled)


def round_to_stripe_minor(amount: Decimal, currency: str, step: int = 1) -> int:
    """`amount` in Stripe minor units, rounded half-up (away from zero) to a multiple of
    `step`; only for a rounding line a connection allowed."""
    units = _scaled(amount, currency) / step
    return int(units.quantize(Decimal(1), rounding=ROUND_HALF_UP)) * step


def from_stripe_minor(units: int, currency: str) -> Decimal:
    """Stripe minor units back to a major-unit Decimal (what Stripe's total means)."""
    return Decimal(units).scaleb(-exponent(currency))


def is_chargeable(units: int, currency: str) -> bool:
    return units % charge_step(currency) == 0


def check_chargeable(units: int, currency: str, what: str) -> None:
    if not is_chargeable(units, currency):
        amount = from_stripe_minor(units, currency)
        raise StripeAmountError(
            f"{what} {amount} {currency.upper()} ({units} in Stripe's minor units) cannot be "
            f"charged: {rule(currency)}"
        )


def billing_text(units: int, currency: str) -> str:
    """An amount Stripe reports (its minor units) as the billing system writes it (ISO 4217
    decimals: ISK 1805600 -> "18056"); an amount finer than that is shown as it is."""
    amount = from_stripe_minor(units, currency)
    try:
        return format_amount(amount, currency)
    except InexactAmountError:
        return str(amount)
