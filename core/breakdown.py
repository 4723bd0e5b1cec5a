"""Break a billing invoice into the lines every invoicing provider receives (pure, no I/O).

The reading of Orb's fields that billbridge relies on (also in starter/samples.py):
  line.subtotal           quantity x unit price, before adjustments
  line.adjusted_subtotal  subtotal + the signed effect of the line's adjustments
  line.amount             adjusted_subtotal - credits_applied - partially_invoiced_amount
  invoice.total           sum(line.amount) + invoice-level discount/minimum/maximum + tax
  invoice.amount_due      total + customer balance applied (a credit balance is negative)

Each billing line becomes its own provider line carrying the mapped item; each adjustment, the
credits applied, tax and invoice-level adjustments become their own lines with a mapped item of
their own (mapping keys `adjustment:<kind>`). The customer balance is not a line: providers that
know customer balances (Stripe) apply it themselves, which keeps the provider's total equal to
the billing total and its amount due equal to the billing amount due.

Every amount is checked here: if the parts do not add up to the billing totals to the minor
unit, InvoiceInconsistent names the fields, and nothing is exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from billbridge.core.models import Invoice, LineItem, TaxAmount
from billbridge.core.money import from_minor, to_minor

# Mapping keys of tax codes (providers with tax codes, QuickBooks): tax:<rate description>,
# tax:<rate percentage>, tax:none (lines without tax), tax:* (the default).
TAX_KEY_PREFIX = "tax:"


def adjustment_key(kind: str) -> str:
    """The item-mapping key of an adjustment kind (discount, minimum, credits, tax, ...)."""
    return f"adjustment:{kind}"


def adjustment_kind(adjustment_type: str) -> str:
    # usage_, amount_, percentage_ and tiered_percentage_discount
    if adjustment_type.endswith("discount"):
        return "discount"
    if adjustment_type in ("minimum", "maximum"):
        return adjustment_type
    return "other"


class InvoiceInconsistent(ValueError):
    """The invoice's amounts do not add up; names the fields. Never retried, never exported."""


@dataclass(frozen=True)
class ExportLine:
    """One line as every provider receives it, in the currency's minor units."""

    ref: str  # unique within the invoice: the billing line id, or "<line id>/<kind>[/n]"
    kind: str  # "usage" or an adjustment kind: discount, minimum, maximum, credits, tax, ...
    mapping_key: str  # billing item id, or adjustment:<kind>
    description: str
    amount_minor: int
    quantity: Decimal
    period_start: datetime | None = None
    period_end: datetime | None = None
    billing_line_id: str = ""
    # Tax lines: the billing tax rate they come from (providers with tax codes map these).
    tax_rate_description: str = ""
    tax_rate_percentage: str | None = None


@dataclass
class InvoiceBreakdown:
    invoice_id: str
    currency: str
    lines: list[ExportLine] = field(default_factory=list)
    total_minor: int = 0
    amount_due_minor: int = 0
    balance_applied_minor: int = 0  # amount_due - total; negative when a credit balance applies

    @property
    def lines_total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    def mapping_keys(self) -> set[str]:
        return {line.mapping_key for line in self.lines}


def break_down(invoice: Invoice, line_items: Iterable[LineItem]) -> InvoiceBreakdown:
    currency = invoice.currency
    out = InvoiceBreakdown(
        invoice_id=invoice.id,
        currency=currency,
        total_minor=to_minor(invoice.total, currency),
        amount_due_minor=to_minor(invoice.amount_due, currency),
    )
    out.balance_applied_minor = out.amount_due_minor - out.total_minor
    lines_amount = 0
    tax_lines: list[ExportLine] = []

    for position, item in enumerate(line_items):
        where = f"line_items.{position}"
        subtotal = to_minor(item.subtotal, currency)
        adjusted = (
            to_minor(item.adjusted_subtotal, currency)
            if item.adjusted_subtotal is not None
            else subtotal
        )
        amount = to_minor(item.amount, currency)
        if item.quantity < 0 and subtotal > 0:
            # A negative quantity can only bill a negative (or zero) amount at a non-negative
            # unit price; providers would otherwise receive 1 x the amount, hiding the sign.
            raise InvoiceInconsistent(
                f"{where}.quantity: {item.quantity} is negative but {where}.subtotal "
                f"({item.subtotal}) is positive"
            )
        credits = to_minor(item.credits_applied, currency)
        partial = to_minor(item.partially_invoiced_amount, currency)
        if adjusted - credits - partial != amount:
            raise InvoiceInconsistent(
                f"{where}.amount: {item.amount} is not adjusted_subtotal "
                f"({item.adjusted_subtotal}) - credits_applied ({item.credits_applied}) "
                f"- partially_invoiced_amount ({item.partially_invoiced_amount})"
            )
        lines_amount += amount

        def line(
            ref: str,
            kind: str,
            description: str,
            amount_minor: int,
            quantity: Decimal = Decimal(1),
            item: LineItem = item,
            tax: TaxAmount | None = None,
        ) -> ExportLine:
            return ExportLine(
                ref=ref,
                kind=kind,
                mapping_key=item.price.item.id if kind == "usage" else adjustment_key(kind),
                description=description,
                amount_minor=amount_minor,
                quantity=quantity,
                period_start=item.start_date,
                period_end=item.end_date,
                billing_line_id=item.id,
                tax_rate_description=tax.tax_rate_description if tax is not None else "",
                tax_rate_percentage=tax.tax_rate_percentage if tax is not None else None,
            )

        out.lines.append(line(item.id, "usage", item.name, subtotal, item.quantity))
        for n, (adjustment_type, effect) in enumerate(
            _adjustment_effects(item, adjusted - subtotal, currency, where)
        ):
            kind = adjustment_kind(adjustment_type)
            label = adjustment_type.replace("_", " ")
            out.lines.append(line(f"{item.id}/{kind}/{n}", kind, f"{item.name}: {label}", effect))
        for kind, value in (("credits", credits), ("partial_invoicing", partial)):
            if value:
                label = kind.replace("_", " ")
                out.lines.append(
                    line(f"{item.id}/{kind}", kind, f"{item.name}: {label} applied", -value)
                )
        for n, tax in enumerate(item.tax_amounts):
            tax_minor = to_minor(tax.amount, currency)
            if tax_minor:
                label = tax.tax_rate_description or "tax"
                tax_lines.append(
                    line(f"{item.id}/tax/{n}", "tax", f"{item.name}: {label}", tax_minor, tax=tax)
                )

    residual = out.total_minor - lines_amount
    tax_total = sum(tax.amount_minor for tax in tax_lines)
    if tax_total and residual:
        # The line amounts exclude tax and the total includes it: tax goes out as its own lines.
        out.lines.extend(tax_lines)
        residual -= tax_total
    if residual:
        out.lines.append(_invoice_level_line(invoice, residual))
    return out


def _adjustment_effects(
    item: LineItem, effect: int, currency: str, where: str
) -> Sequence[tuple[str, int]]:
    """(adjustment_type, signed minor amount) per adjustment; they add up to `effect`."""
    adjustments = list(item.adjustments)
    if not effect:
        # Adjustments that cancel out export nothing, but they must cancel out.
        total = sum(to_minor(adj.amount, currency) for adj in adjustments)
        if len(adjustments) > 1 and total:
            raise InvoiceInconsistent(
                f"{where}.adjustments: amounts add up to {from_minor(total, currency)}, "
                "but adjusted_subtotal equals subtotal"
            )
        return []
    if not adjustments:
        raise InvoiceInconsistent(
            f"{where}.adjusted_subtotal: {item.adjusted_subtotal} differs from subtotal "
            f"{item.subtotal} but the line has no adjustments"
        )
    if len(adjustments) == 1:
        return [(adjustments[0].adjustment_type, effect)]
    amounts = [to_minor(adj.amount, currency) for adj in adjustments]
    if sum(amounts) != effect:
        raise InvoiceInconsistent(
            f"{where}.adjustments: amounts add up to {sum(amounts)} minor units, "
            f"adjusted_subtotal - subtotal is {effect}"
        )
    return [(adj.adjustment_type, value) for adj, value in zip(adjustments, amounts, strict=True)]


def _invoice_level_line(invoice: Invoice, residual: int) -> ExportLine:
    """The part of the total not in any line: an invoice-level discount, maximum or minimum."""
    if residual < 0 and invoice.discounts:
        kind, description = "discount", "Invoice discount"
    elif residual < 0 and invoice.maximum is not None:
        kind, description = "maximum", "Invoice maximum"
    elif residual > 0 and invoice.minimum is not None:
        kind, description = "minimum", "Invoice minimum true-up"
    else:
        raise InvoiceInconsistent(
            f"total: {invoice.total} differs from the sum of line_items[].amount (and tax) by "
            f"{from_minor(residual, invoice.currency)} {invoice.currency}, and no invoice-level "
            "discount, minimum or maximum explains it"
        )
    return ExportLine(
        ref=f"invoice/{kind}",
        kind=kind,
        mapping_key=adjustment_key(kind),
        description=description,
        amount_minor=residual,
        quantity=Decimal(1),
    )
