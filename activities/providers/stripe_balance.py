"""What a Stripe customer's balance is made of, read from its balance transaction ledger.

Stripe applies the customer's whole balance to the next invoice it finalizes: "The invoice
balance automatically applies toward the next invoice finalized to a customer. You can't choose
a specific invoice to apply the credit balance to. You can't choose to not apply the credit
balance to an invoice." (https://docs.stripe.com/billing/customer/balance). So before billbridge
finalizes, it reads what the balance holds:

- its own transaction for this invoice (the billing invoice's applied balance), if an earlier
  attempt created it;
- a debit that billbridge's own earlier invoice carried: "When the amount due on an invoice is
  less than the minimum chargeable amount the invoice is marked as paid and the amount owed
  moved to the invoice balance as a debit" (same page; the Invoice object says the same:
  https://docs.stripe.com/api/invoices/object). Such an invoice shows amount_due 0 and the
  carried amount as its ending_balance (corroborated by
  https://github.com/mozilla/fxa/issues/11789: "the invoice amount due will be $0.00, and the
  subscription cost will be added ... to the customers record"; exact fields UNCONFIRMED in
  Stripe's own docs). Expected: billbridge accounts for it and reports it;
- another billbridge export's transaction for another invoice of the customer, waiting for its
  own finalization (exports of one customer running at once);
- anything else (manual adjustments, credit notes, a voided invoice's returned balance, a
  balance another invoice left): a person must look, unless the connection accepts it.

The ledger is read newest first (Stripe lists newest first,
https://docs.stripe.com/api/customer_balance_transactions/list) back to the newest
transaction a finalization wrote (types applied_to_invoice, invoice_too_small,
invoice_too_large: https://docs.stripe.com/api/customer_balance_transactions/object): what the
balance held before those later transactions is what that finalization left, that invoice's
ending balance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# Transaction types a finalization writes (customer balance transaction object, `type`).
FINALIZATION_TYPES = frozenset({"applied_to_invoice", "invoice_too_small", "invoice_too_large"})
# Another export's transaction older than this, still not applied, was left by an export that
# stopped (an older billbridge created it before adding lines): a person must look.
ABANDONED_AFTER_SECONDS = 3600


def metadata_value(obj: Any, key: str) -> str | None:
    """A metadata value of a Stripe object (StripeObject is not a dict: no .get)."""
    metadata = getattr(obj, "metadata", None)
    return metadata[key] if metadata is not None and key in metadata else None


@dataclass
class BalanceReading:
    """The customer's balance (minor units; positive is a debit the customer owes), split."""

    customer_balance: int
    # This invoice's own transactions: all of them (since the billing invoice existed), and
    # those not yet applied by any finalization.
    own_total: int = 0
    own_pending: int = 0
    newest_own_id: str | None = None
    # A debit billbridge's own earlier invoice carried (below Stripe's minimum charge).
    carried: int = 0
    carried_from: str = ""
    # Other billbridge invoices' transactions waiting for their finalization: invoice -> amount.
    other_exports: dict[str, int] = field(default_factory=dict)
    # Everything else: (what it is, amount).
    other: list[tuple[str, int]] = field(default_factory=list)

    @property
    def other_amount(self) -> int:
        return sum(amount for _, amount in self.other)

    def describe_other(self, currency_amount: Callable[[int], str]) -> str:
        return ", ".join(f"{what}: {currency_amount(amount)}" for what, amount in self.other)


def read_ledger(
    customer_balance: int,
    transactions: Iterable[Any],
    *,
    invoice_id: str,
    metadata_key: str,
    not_before: int,
    now: float,
    finalized_invoice: Callable[[str], Any],
) -> BalanceReading:
    """Split `customer_balance` by the ledger `transactions` (newest first).

    `finalized_invoice(id)` reads the Stripe invoice a finalization transaction names (its
    ending balance tells whether it was billbridge's invoice carried below the minimum).
    Reading stops at the newest finalization once it is older than `not_before` (before which
    no transaction of this export exists).
    """
    reading = BalanceReading(customer_balance=customer_balance)
    finalization: Any = None
    since_finalization: list[Any] = []
    for txn in transactions:
        owner = metadata_value(txn, metadata_key)
        if owner == invoice_id:
            reading.own_total += int(txn.amount)
            reading.newest_own_id = reading.newest_own_id or str(txn.id)
            if finalization is None:
                reading.own_pending += int(txn.amount)
        elif finalization is None:
            if txn.type in FINALIZATION_TYPES:
                finalization = txn
            else:
                since_finalization.append(txn)
        if finalization is not None and int(txn.created) < not_before:
            break
    _classify_recent(reading, since_finalization, metadata_key, now)
    left = customer_balance - reading.own_pending - sum(int(t.amount) for t in since_finalization)
    if left and finalization is not None:
        _classify_left(reading, left, finalization, metadata_key, finalized_invoice)
    elif left:
        # The ledger sums to the balance: with every transaction read nothing is left over.
        reading.other.append(("customer balance not explained by its transactions", left))
    return reading


def _classify_recent(reading: BalanceReading, txns: list[Any], key: str, now: float) -> None:
    """Transactions since the newest finalization, other than this invoice's own."""
    exports: dict[str, list[Any]] = {}
    for txn in txns:
        owner = metadata_value(txn, key)
        if owner is not None:
            exports.setdefault(owner, []).append(txn)
        else:
            reading.other.append((f"{txn.type} {txn.id}", int(txn.amount)))
    for owner, owned in exports.items():
        net = sum(int(t.amount) for t in owned)
        if not net:
            continue  # created and withdrawn again
        if max(int(t.created) for t in owned) >= now - ABANDONED_AFTER_SECONDS:
            reading.other_exports[owner] = net
        else:
            reading.other.append((f"billbridge's unapplied transaction for invoice {owner}", net))


def _classify_left(
    reading: BalanceReading,
    left: int,
    finalization: Any,
    key: str,
    finalized_invoice: Callable[[str], Any],
) -> None:
    """What the newest finalization left on the balance: that invoice's ending balance."""
    invoice_ref = finalization.invoice
    invoice_id = invoice_ref if isinstance(invoice_ref, str) else getattr(invoice_ref, "id", "")
    invoice = finalized_invoice(invoice_id) if invoice_id else None
    carried_by_ours = (
        invoice is not None
        and metadata_value(invoice, key) is not None
        and invoice.amount_due == 0
        and (invoice.ending_balance or 0) == left
    )
    if carried_by_ours and left > 0:
        reading.carried, reading.carried_from = left, invoice_id
    else:
        reading.other.append((f"balance left by Stripe invoice {invoice_id or '?'}", left))
