"""Shared tables and lookups for the in-memory Stripe store (see ``state.Store``).

Every public store method expects already-coerced parameters (see ``api.py``) and must be called
with ``lock`` held (the HTTP layer does this). Objects are kept in their API shape so rendering is
a copy; amounts are integers in minor units and decimals are stored as strings.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors

ACCOUNT_ID = "acct_1EmulatorBillbridge"
ACCOUNT_NAME = "billbridge Stripe emulator"
ACCOUNT_COUNTRY = "US"
DEFAULT_CURRENCY = "usd"
EMBEDDED_LINES = 10  # an invoice's `lines` list embeds the first 10 lines

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits

Obj = dict[str, Any]


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "_" + "".join(secrets.choice(ALNUM) for _ in range(length))


def now() -> int:
    return int(time.time())


def apply_metadata(current: Mapping[str, str] | None, update: Any) -> dict[str, str]:
    """Stripe metadata semantics: ``""`` clears everything, a key set to ``""`` is removed."""
    result = dict(current or {})
    if update is None:
        return {}
    for key, value in update.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    if len(result) > 50:
        raise errors.invalid(
            f"You can have up to 50 metadata keys, but this request would set {len(result)}.",
            "metadata",
        )
    return result


def paginate(items: list[Obj], params: Mapping[str, Any], url: str, kind: str) -> Obj:
    limit: int = params.get("limit") or 10
    after = params.get("starting_after")
    before = params.get("ending_before")
    if after and before:
        raise errors.exclusive("starting_after", "ending_before")
    ids = [o["id"] for o in items]
    if after:
        if after not in ids:
            raise errors.no_such(kind, after, "starting_after")
        start = ids.index(after) + 1
        window = items[start : start + limit]
        has_more = start + limit < len(items)
    elif before:
        if before not in ids:
            raise errors.no_such(kind, before, "ending_before")
        end = ids.index(before)
        start = max(0, end - limit)
        window = items[start:end]
        has_more = start > 0
    else:
        window = items[:limit]
        has_more = limit < len(items)
    return {"object": "list", "data": window, "has_more": has_more, "url": url}


@dataclass
class InvoiceRec:
    obj: Obj  # API fields except `lines` (and, for drafts, the live amounts)
    item_ids: list[str] = field(default_factory=list)
    days_until_due: int | None = None
    balance_applied: int = 0  # change to the customer's balance made at finalization
    # The invoice e-mails Stripe would have sent the customer (the /_emulator/emails view).
    emails: list[Obj] = field(default_factory=list)


@dataclass
class PreparedItem:
    """An invoice item validated but not yet stored, plus inline objects it needs."""

    item: Obj
    new_objects: list[tuple[str, Obj]] = field(default_factory=list)
    existing_item_id: str | None = None


class StoreBase:
    def __init__(self, max_invoice_items: int = 250, search_visibility_delay: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.max_invoice_items = max_invoice_items
        self.search_visibility_delay = search_visibility_delay
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.customers: dict[str, Obj] = {}
            self.deleted_customers: set[str] = set()
            self.balance_txns: dict[str, list[Obj]] = {}
            self.products: dict[str, Obj] = {}
            self.prices: dict[str, Obj] = {}
            self.items: dict[str, Obj] = {}
            self.line_ids: dict[str, str] = {}  # invoice item id -> line item id
            self.invoices: dict[str, InvoiceRec] = {}
            self.visible_at: dict[str, float] = {}  # id -> monotonic time searchable from

    def _remember(self, obj_id: str) -> None:
        self.visible_at[obj_id] = time.monotonic() + self.search_visibility_delay

    def _store(self, kind: str, obj: Obj) -> None:
        table: dict[str, Obj] = {"product": self.products, "price": self.prices}[kind]
        table[obj["id"]] = obj
        self._remember(obj["id"])

    def _customer(self, customer_id: str, param: str | None = None) -> Obj:
        cus = self.customers.get(customer_id)
        if cus is None or customer_id in self.deleted_customers:
            raise errors.no_such("customer", customer_id, param)
        return cus

    def _product(self, product_id: str, param: str | None = None) -> Obj:
        prod = self.products.get(product_id)
        if prod is None:
            raise errors.no_such("product", product_id, param)
        return prod

    def _price(self, price_id: str, param: str | None = None) -> Obj:
        price = self.prices.get(price_id)
        if price is None:
            raise errors.no_such("price", price_id, param)
        return price

    def _item(self, item_id: str, param: str | None = None) -> Obj:
        item = self.items.get(item_id)
        if item is None:
            raise errors.no_such("invoiceitem", item_id, param)
        return item

    def _invoice(self, invoice_id: str, param: str | None = None) -> InvoiceRec:
        rec = self.invoices.get(invoice_id)
        if rec is None:
            raise errors.no_such("invoice", invoice_id, param)
        return rec

    def _balance_for(self, rec: InvoiceRec) -> int:
        cus = self.customers.get(rec.obj["customer"])
        if cus is None or cus["currency"] not in (None, rec.obj["currency"]):
            return 0
        balance: int = cus["balance"]
        return balance

    def _balance_txn(
        self,
        cus: Obj,
        amount: int,
        currency: str,
        kind: str,
        invoice: str | None,
        description: str | None,
        metadata: Mapping[str, Any],
    ) -> Obj:
        currency = currency.lower()
        if cus["currency"] is None:
            cus["currency"] = currency
        elif cus["currency"] != currency:
            raise errors.invalid(
                f"The currency of this balance transaction ({currency}) must match the "
                f"customer's currency ({cus['currency']}).",
                "currency",
            )
        cus["balance"] += amount
        txn: Obj = {
            "id": new_id("cbtxn"),
            "object": "customer_balance_transaction",
            "amount": amount,
            "checkout_session": None,
            "created": now(),
            "credit_note": None,
            "currency": currency,
            "customer": cus["id"],
            "customer_account": None,
            "description": description,
            "ending_balance": cus["balance"],
            "invoice": invoice,
            "livemode": False,
            "metadata": apply_metadata({}, metadata),
            "type": kind,
        }
        self.balance_txns[cus["id"]].append(txn)
        return txn
