"""ISO-4217 minor units and exact Decimal <-> integer minor-unit conversion.

Every amount billbridge handles is a :class:`~decimal.Decimal` in *major* units (Orb's
strings such as ``"12.30"``). Invoicing providers (Stripe first) take integers in the
currency's *minor* unit (cents for USD, yen for JPY, fils for KWD). The conversion must be
exact: an amount that cannot be expressed in minor units (``"10.50"`` JPY, ``"1.2345"`` KWD)
is an error, never silently rounded. Rounding is only ever done explicitly, with
:func:`round_to_minor`, by code that computes amounts (e.g. sample builders).

The exponent table is ISO 4217's "minor unit" column (list one, active codes, plus a few
recently withdrawn codes that still appear on historical invoices). Codes without a minor
unit in ISO 4217 (precious metals, SDR, test codes such as ``XAU``, ``XDR``, ``XTS``,
``XXX``) are deliberately unknown: they are not invoiceable currencies.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

__all__ = [
    "ISO_4217_EXPONENTS",
    "InexactAmountError",
    "UnknownCurrencyError",
    "format_amount",
    "from_minor",
    "is_representable",
    "minor_unit_exponent",
    "round_to_minor",
    "to_minor",
]


class UnknownCurrencyError(ValueError):
    """The currency code is not an ISO-4217 code with a defined minor unit."""

    def __init__(self, currency: object) -> None:
        self.currency = currency
        super().__init__(f"unknown currency {currency!r}: not an ISO-4217 code with a minor unit")


class InexactAmountError(ValueError):
    """The amount has more decimals than the currency's minor unit allows."""

    def __init__(self, amount: Decimal, currency: str, exponent: int) -> None:
        self.amount = amount
        self.currency = currency
        self.exponent = exponent
        allowed = (
            "no decimals"
            if exponent == 0
            else f"at most {exponent} decimal" + ("s" if exponent > 1 else "")
        )
        super().__init__(
            f"amount {amount} is not representable in {currency}: "
            f"{currency} allows {allowed} (minor unit exponent {exponent})"
        )


_ZERO_DECIMAL = ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF").split()
_THREE_DECIMAL = "BHD IQD JOD KWD LYD OMR TND".split()
_FOUR_DECIMAL = "CLF UYW".split()
_TWO_DECIMAL = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN "
    "ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES "
    "KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK "
    "MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR "
    "SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD "
    "TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG "
    # withdrawn codes still found on historical invoices
    "HRK SLL ZWL"
).split()

ISO_4217_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMAL, 2),
    **dict.fromkeys(_ZERO_DECIMAL, 0),
    **dict.fromkeys(_THREE_DECIMAL, 3),
    **dict.fromkeys(_FOUR_DECIMAL, 4),
}
"""Upper-case ISO-4217 code -> number of decimals of its minor unit."""


def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit (case-insensitive).

    Raises :class:`UnknownCurrencyError` for anything that is not a known ISO-4217 code.
    """
    if not isinstance(currency, str):
        raise UnknownCurrencyError(currency)
    try:
        return ISO_4217_EXPONENTS[currency.strip().upper()]
    except KeyError:
        raise UnknownCurrencyError(currency) from None


def _check_finite(amount: Decimal) -> None:
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, got {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"amount {amount} is not a finite number")


def _scaled(amount: Decimal, exponent: int) -> Decimal:
    """``amount * 10**exponent`` computed exactly (no context rounding)."""
    digits = len(amount.as_tuple().digits)
    with localcontext() as ctx:
        ctx.prec = max(28, digits + exponent + 2)
        return amount.scaleb(exponent)


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact conversion of a major-unit amount to integer minor units.

    ``to_minor(Decimal("12.30"), "USD") == 1230``; ``to_minor(Decimal("10.00"), "JPY") == 10``
    (trailing zeros are fine); ``Decimal("10.50")`` in JPY raises :class:`InexactAmountError`.
    """
    _check_finite(amount)
    exponent = minor_unit_exponent(currency)
    scaled = _scaled(amount, exponent)
    if scaled != scaled.to_integral_value():
        raise InexactAmountError(amount, currency.strip().upper(), exponent)
    return int(scaled)


def from_minor(units: int, currency: str) -> Decimal:
    """Integer minor units -> Decimal major units quantized to the currency's exponent.

    ``from_minor(1230, "USD") == Decimal("12.30")`` (and ``str()`` gives ``"12.30"``).
    """
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"units must be an int, got {type(units).__name__}")
    exponent = minor_unit_exponent(currency)
    with localcontext() as ctx:
        ctx.prec = max(28, len(str(abs(units))) + exponent + 2)
        return Decimal(units).scaleb(-exponent)


def is_representable(amount: Decimal, currency: str) -> bool:
    """True if ``amount`` converts exactly to ``currency``'s minor units.

    Non-finite amounts are not representable; an unknown currency still raises
    :class:`UnknownCurrencyError` (that is a different problem than a bad amount).
    """
    if not isinstance(amount, Decimal) or not amount.is_finite():
        return False
    exponent = minor_unit_exponent(currency)
    scaled = _scaled(amount, exponent)
    return scaled == scaled.to_integral_value()


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` half-up (away from zero on ties) to the currency's minor unit.

    The result carries exactly the currency's number of decimals.
    """
    _check_finite(amount)
    exponent = minor_unit_exponent(currency)
    digits = len(amount.as_tuple().digits)
    with localcontext() as ctx:
        ctx.prec = max(28, digits + exponent + 2)
        return amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal, currency: str) -> str:
    """Orb's string form of an exact amount: fixed-point with the currency's decimals.

    ``format_amount(Decimal("12.3"), "USD") == "12.30"``; ``JPY`` amounts have no decimal
    point. Raises :class:`InexactAmountError` if the amount needs more decimals.
    """
    return format(from_minor(to_minor(amount, currency), currency), "f")
