"""The numbers of one provider line that carries a quantity and a unit price (QuickBooks, BILL,
NetSuite): JSON numbers that carry a Decimal exactly, and a quantity x price that the provider
multiplies back to exactly the billed amount.

Each provider keeps a number of decimals on quantity and price and rounds (or not) their product
to its amount's step; those are its module's constants. Where no quantity x price gives back the
amount exactly, the line goes as 1 x amount and the provider module keeps the real quantity
readable in the description: the total is what must be right.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billbridge.core.breakdown import ExportLine
from billbridge.core.errors import ProviderRejected


def exact_json_number(value: Decimal) -> bool:
    """Whether a JSON number (a double whose repr round-trips) carries `value` exactly."""
    return Decimal(repr(float(value))) == value


def json_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number with the same value: an int when whole, else a double whose
    repr round-trips; ProviderRejected when no double carries it exactly."""
    if not exact_json_number(value):
        raise ProviderRejected(f"amount {value} cannot be sent exactly as a JSON number")
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def quantity_and_price(
    line: ExportLine,
    amount: Decimal,
    *,
    quantity_step: Decimal,
    price_step: Decimal,
    amount_step: Decimal | None,
    round_quantity: bool = False,
) -> tuple[Decimal, Decimal]:
    """(quantity, unit price), normalized, whose product the provider takes as exactly `amount`:
    equal to it, or rounded half up to `amount_step` (None: the product must equal the amount
    exactly); else (1, amount). A quantity with more decimals than `quantity_step` is rounded
    as the provider would (`round_quantity`) or not split at all."""
    one = (Decimal(1), amount)
    if line.kind != "usage" or line.quantity <= 0 or amount < 0:
        return one
    try:
        # A quantity or price too large to carry the provider's decimals in the default context
        # (28 digits, e.g. 10**21 bytes) raises InvalidOperation: such a line is not split.
        quantity = line.quantity
        if round_quantity:
            quantity = quantity.quantize(quantity_step, ROUND_HALF_UP)
        if quantity <= 0 or quantity != quantity.quantize(quantity_step):
            return one
        price = (amount / quantity).quantize(price_step, ROUND_HALF_UP)
    except InvalidOperation:
        return one
    quantity, price = quantity.normalize(), price.normalize()
    if not (exact_json_number(quantity) and exact_json_number(price)):
        return one
    product = quantity * price
    if amount_step is not None:
        product = product.quantize(amount_step, ROUND_HALF_UP)
    return (quantity, price) if product == amount else one


def service_period(line: ExportLine) -> str:
    """ " (service period 2026-03-01 to 2026-03-31)" for a description; "" without a period."""
    if line.period_start is None:
        return ""
    start = line.period_start.date().isoformat()
    end = line.period_end.date().isoformat() if line.period_end is not None else start
    if end == start:
        return f" (service period {start})"
    return f" (service period {start} to {end})"
