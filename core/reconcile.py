"""Reconcile: the invoices billbridge exported to a provider against the ones the provider holds.

Pure: given the expected invoices (the store's export records, see `starter/commands/
reconcile.py`) and the provider invoices a provider module listed (`list_exported`), say which
billing invoices the provider holds exactly once, which it holds more than once, which it lacks,
whose total differs, and which provider invoices are tied to no expected invoice. The chaos suite
can run it on emulator state.

A provider invoice is tied to its billing invoice by `ref`, what the export wrote on it: the
billing invoice id (Stripe metadata, QuickBooks PrivateNote), the external id made from it
(NetSuite), or the invoice number (BILL, which has no field of billbridge's own). Providers whose
tie any other integration could also write (`marked=False`) have their untied invoices reported
only when the ref is one of billbridge's (`known_refs`): the others are the account's own.

Totals are compared exactly, as Decimals the provider module made from the provider's own units
(Stripe's minor units per its currency table, the others' decimal amounts): 1000 JPY equals
1000.00 JPY, 1.234 KWD does not equal 1.230 KWD.

`since` (an export-time window): the expected invoices whose export began on or after it, plus
any earlier export whose provider invoice was created on or after it; untied provider invoices
created before it are left out. Provider modules list from a little before `since` (clock skew),
and this filter decides exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field, computed_field

from billbridge.core.money import InexactAmountError, UnknownCurrencyError, format_amount

__all__ = [
    "ExpectedInvoice",
    "Finding",
    "ProviderInvoice",
    "Reconciliation",
    "reconcile",
]


@dataclass(frozen=True)
class ProviderInvoice:
    """One invoice as a provider's list API returns it."""

    provider_invoice_id: str
    ref: str
    """What ties it to a billing invoice (see the module notes)."""
    total: Decimal
    """In major units, exact by the provider's own minor-unit rules."""
    currency: str | None
    """ISO code; None where the list does not say (a BILL invoice is in its customer's)."""
    status: str = ""
    created_at: datetime | None = None
    """None: unknown; the provider's own date filter stands (NetSuite)."""
    marked: bool = True
    """Carries a marker only billbridge writes (Stripe, QuickBooks)."""
    active: bool = True
    """False: voided or archived at the provider; it does not count as an exported invoice."""


@dataclass(frozen=True)
class ExpectedInvoice:
    """A billing invoice billbridge exported to the provider, as its store records it."""

    invoice_id: str
    ref: str
    """What the provider invoice carries (the provider module's `export_ref`)."""
    total: Decimal
    currency: str
    exported_at: datetime
    """When billbridge began the export (the export record's creation)."""
    external_id: str | None = None
    """The provider invoice the export recorded."""
    recorded_total: Decimal | None = None
    """The provider total the export recorded. It differs from `total` only where the export
    itself rounded for the provider and recorded it (Stripe's rounding line); that total is
    no mismatch."""


class Finding(BaseModel):
    """One problem: a billing invoice and the provider invoices tied to it."""

    invoice_id: str | None
    """None: a provider invoice tied to no billing invoice billbridge exported there."""
    ref: str
    provider_invoice_ids: list[str]
    currency: str | None
    billing_total: str | None
    provider_totals: list[str]
    note: str = ""


class Reconciliation(BaseModel):
    provider: str
    connection_id: str
    since: datetime | None
    expected: int = 0
    exported_once: int = 0
    duplicated: list[Finding] = Field(default_factory=list)
    missing: list[Finding] = Field(default_factory=list)
    mismatched: list[Finding] = Field(default_factory=list)
    extra: list[Finding] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def clean(self) -> bool:
        """Nothing duplicated, missing or mismatched (extra invoices are reported, not failed:
        an export in progress or waiting for attention has one)."""
        return not (self.duplicated or self.missing or self.mismatched)


def _amount(amount: Decimal, currency: str | None) -> str:
    """An amount as the billing system writes it in `currency` (ISO decimals); finer amounts
    (a provider total the currency cannot hold) as they are."""
    if currency is None:
        return format(amount, "f")
    try:
        return format_amount(amount, currency)
    except (InexactAmountError, UnknownCurrencyError):
        return format(amount, "f")


def _finding(
    expected: ExpectedInvoice | None, ref: str, found: list[ProviderInvoice], note: str = ""
) -> Finding:
    currency = expected.currency if expected is not None else None
    if currency is None and found:
        currency = found[0].currency
    return Finding(
        invoice_id=expected.invoice_id if expected is not None else None,
        ref=ref,
        provider_invoice_ids=[f.provider_invoice_id for f in found],
        currency=currency,
        billing_total=_amount(expected.total, currency) if expected is not None else None,
        provider_totals=[_amount(f.total, f.currency or currency) for f in found],
        note=note,
    )


def _created_since(invoice: ProviderInvoice, since: datetime | None) -> bool:
    return since is None or invoice.created_at is None or invoice.created_at >= since


def _mismatch(expected: ExpectedInvoice, found: ProviderInvoice) -> str:
    """Why the provider invoice's total or currency differs from the billing one ("" if not)."""
    if found.currency is not None and found.currency.upper() != expected.currency.upper():
        return f"currency {found.currency.upper()} at the provider, {expected.currency} billed"
    if found.total == expected.total:
        return ""
    if expected.recorded_total is not None and found.total == expected.recorded_total:
        return ""  # the export's own recorded rounding
    difference = found.total - expected.total
    return f"provider total differs by {_amount(difference, expected.currency)}"


def reconcile(
    provider: str,
    connection_id: str,
    expected: Iterable[ExpectedInvoice],
    found: Iterable[ProviderInvoice],
    *,
    since: datetime | None = None,
    known_refs: Collection[str] = (),
) -> Reconciliation:
    """Compare what billbridge exported with what the provider holds (see the module notes)."""
    by_ref = {invoice.ref: invoice for invoice in expected}
    tied: dict[str, list[ProviderInvoice]] = defaultdict(list)
    inactive: dict[str, list[ProviderInvoice]] = defaultdict(list)
    report = Reconciliation(provider=provider, connection_id=connection_id, since=since)
    for invoice in found:
        if not invoice.active:
            inactive[invoice.ref].append(invoice)
        elif invoice.ref in by_ref:
            tied[invoice.ref].append(invoice)
        elif (invoice.marked or invoice.ref in known_refs) and _created_since(invoice, since):
            report.extra.append(_finding(None, invoice.ref, [invoice]))
    for ref, wanted in sorted(by_ref.items(), key=lambda item: item[1].invoice_id):
        held = sorted(tied.get(ref, []), key=lambda f: f.provider_invoice_id)
        in_window = since is None or wanted.exported_at >= since
        if not in_window and not any(_created_since(f, since) for f in held):
            continue
        report.expected += 1
        if not held:
            gone = inactive.get(ref, [])
            note = (
                "voided or archived at the provider: "
                + ", ".join(f"{f.provider_invoice_id} ({f.status})" for f in gone)
                if gone
                else (f"the export recorded {wanted.external_id}" if wanted.external_id else "")
            )
            report.missing.append(_finding(wanted, ref, [], note))
            continue
        if len(held) > 1:
            report.duplicated.append(_finding(wanted, ref, held))
            continue
        report.exported_once += 1
        problem = _mismatch(wanted, held[0])
        if problem:
            report.mismatched.append(_finding(wanted, ref, held, problem))
    return report
