"""Decimal text both emulated APIs write the same way.

Stripe's ``*_decimal`` strings and QuickBooks' JSON numbers are both plain notation with no
exponent and no trailing zeros; one function keeps the two from drifting apart.
"""

from __future__ import annotations

from decimal import Decimal


def decimal_text(value: Decimal) -> str:
    """Plain notation, no trailing zeros: 12.50 -> "12.5", 100.00 -> "100", -0 -> "0"."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text
