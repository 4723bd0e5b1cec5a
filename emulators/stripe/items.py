"""Invoice items: validation of item/line specs, amounts, the per-invoice item limit."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..decimals import decimal_text
from . import errors, money
from .base import (
    DEFAULT_CURRENCY,
    InvoiceRec,
    Obj,
    PreparedItem,
    apply_metadata,
    new_id,
    now,
    paginate,
)
from .catalog import CatalogMixin
from .customers import CustomersMixin
from .schema import join


class ItemsMixin(CatalogMixin, CustomersMixin):
    def _prepare_item(
        self,
        p: Mapping[str, Any],
        path: str,
        customer_id: str,
        currency: str | None,
        invoice_id: str | None,
    ) -> PreparedItem:
        """Validate one invoice-item spec (invoiceitems create, or one add_lines line)."""
        sources = [
            k
            for k in ("amount", "price_data", "pricing", "unit_amount_decimal")
            if p.get(k) is not None
        ]
        if len(sources) > 1:
            raise errors.exclusive(*(join(path, s) for s in sources))
        if p.get("quantity") is not None and p.get("quantity_decimal") is not None:
            raise errors.exclusive(join(path, "quantity"), join(path, "quantity_decimal"))
        quantity = Decimal(1)
        if p.get("quantity") is not None:
            quantity = Decimal(p["quantity"])
        elif p.get("quantity_decimal") is not None:
            quantity = p["quantity_decimal"]
        new_objects: list[tuple[str, Obj]] = []
        price_id: str | None = None
        product_id: str | None = None
        description = p.get("description")

        def check_currency(got: str, param: str) -> str:
            got = got.lower()
            if currency is not None and got != currency:
                # UNCONFIRMED wording; Stripe rejects mixed-currency items on one invoice.
                raise errors.invalid(
                    f"The currency of this line item ({got}) must match the invoice currency "
                    f"({currency}).",
                    param,
                )
            return got

        if p.get("price_data") is not None:
            pd = p["price_data"]
            item_currency = check_currency(
                pd["currency"], join(join(path, "price_data"), "currency")
            )
            price, new_product = self._new_price(pd, join(path, "price_data"))
            price["active"] = False  # inline prices are not reusable
            if new_product is not None:
                new_objects.append(("product", new_product))
            new_objects.append(("price", price))
            price_id, product_id = price["id"], price["product"]
            unit = Decimal(price["unit_amount_decimal"])
            amount = money.line_amount(unit, quantity)
        elif p.get("pricing") is not None:
            ref = p["pricing"].get("price")
            if ref is None:
                raise errors.missing(join(join(path, "pricing"), "price"))
            price = self._price(ref, join(join(path, "pricing"), "price"))
            if price["type"] != "one_time":
                raise errors.invalid(
                    "The price specified is set to `type=recurring` but this field only accepts "
                    "prices with `type=one_time`.",
                    join(join(path, "pricing"), "price"),
                )
            if price["unit_amount_decimal"] is None:
                raise errors.invalid(
                    f"The price `{ref}` has no unit amount and cannot be used on invoice items.",
                    join(join(path, "pricing"), "price"),
                )
            item_currency = check_currency(price["currency"], join(join(path, "pricing"), "price"))
            price_id, product_id = price["id"], price["product"]
            unit = Decimal(price["unit_amount_decimal"])
            amount = money.line_amount(unit, quantity)
        elif p.get("amount") is not None or p.get("unit_amount_decimal") is not None:
            raw_currency = p.get("currency") or currency or self._default_currency(customer_id)
            item_currency = check_currency(raw_currency, join(path, "currency"))
            if p.get("amount") is not None:
                if p.get("quantity") is not None or p.get("quantity_decimal") is not None:
                    # UNCONFIRMED: an amount is the line total; a quantity makes it ambiguous.
                    raise errors.exclusive(join(path, "amount"), join(path, "quantity"))
                unit = Decimal(p["amount"])
                amount = p["amount"]
            else:
                unit = p["unit_amount_decimal"]
                amount = money.line_amount(unit, quantity)
        else:
            # UNCONFIRMED wording.
            raise errors.invalid(
                "You must specify one of `amount`, `price_data`, `pricing` or `invoice_item`.",
                path or None,
            )
        if product_id is not None and description is None:
            product = self.products.get(product_id) or next(
                (o for k, o in new_objects if k == "product"), None
            )
            description = product["name"] if product else None
        ts = now()
        period = p.get("period") or {"start": ts, "end": ts}
        if period["end"] < period["start"]:
            raise errors.invalid(
                "The period end must be greater than or equal to the period start.",
                join(join(path, "period"), "end"),
            )
        discountable = p.get("discountable")
        if discountable is None:
            discountable = amount >= 0
        item: Obj = {
            "id": new_id("ii"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": item_currency,
            "customer": customer_id,
            "customer_account": None,
            "date": ts,
            "description": description,
            "discountable": discountable,
            "discounts": [],
            "invoice": invoice_id,
            "livemode": False,
            "metadata": apply_metadata({}, p.get("metadata") or {}),
            "net_amount": amount,
            "parent": None,
            "period": {"end": period["end"], "start": period["start"]},
            "pricing": {
                "price_details": (
                    {"price": price_id, "product": product_id} if price_id is not None else None
                ),
                "type": "price_details",
                "unit_amount_decimal": decimal_text(unit),
            },
            "proration": False,
            "proration_details": {"discount_amounts": []},
            "quantity": money.truncate_quantity(quantity),
            "quantity_decimal": decimal_text(quantity),
            "tax_rates": [],
            "test_clock": None,
        }
        return PreparedItem(item, new_objects)

    def _commit_item(self, prepared: PreparedItem) -> Obj:
        for kind, obj in prepared.new_objects:
            self._store(kind, obj)
        item = prepared.item
        self.items[item["id"]] = item
        self._remember(item["id"])
        return item

    def _default_currency(self, customer_id: str) -> str:
        cus = self.customers.get(customer_id)
        return (cus or {}).get("currency") or DEFAULT_CURRENCY

    def _check_item_capacity(self, rec: InvoiceRec, adding: int, param: str) -> None:
        have = len(rec.item_ids)
        if have + adding > self.max_invoice_items:
            # UNCONFIRMED wording/code; the 250-item limit itself is documented
            # (https://docs.stripe.com/changelog/2016-02-22/no-more-than-250-invoice-items).
            raise errors.invalid(
                f"An invoice can contain at most {self.max_invoice_items} invoice items. "
                f"Invoice {rec.obj['id']} already has {have}, so {adding} more cannot be added.",
                param,
            )

    @staticmethod
    def _require_draft(rec: InvoiceRec, action: str) -> None:
        if rec.obj["status"] != "draft":
            # UNCONFIRMED wording; `invoice_not_editable` is a documented Stripe error code.
            raise errors.invalid(
                f"You can only {action} draft invoices. Invoice {rec.obj['id']} has status "
                f"`{rec.obj['status']}`.",
                None,
                "invoice_not_editable",
            )

    def _attach(self, rec: InvoiceRec, item: Obj) -> None:
        item["invoice"] = rec.obj["id"]
        rec.item_ids.append(item["id"])
        self.line_ids.setdefault(item["id"], new_id("il"))

    def create_item(self, p: Mapping[str, Any]) -> Obj:
        customer_id = self._customer(p["customer"], "customer")["id"]
        rec: InvoiceRec | None = None
        currency: str | None = p["currency"].lower() if p.get("currency") else None
        if p.get("invoice"):
            rec = self._invoice(p["invoice"], "invoice")
            if rec.obj["customer"] != customer_id:
                raise errors.invalid(
                    f"The invoice `{rec.obj['id']}` belongs to a different customer.", "invoice"
                )
            self._require_draft(rec, "add invoice items to")
            if currency is not None and currency != rec.obj["currency"]:
                raise errors.invalid(
                    f"The currency of this invoice item ({currency}) must match the invoice "
                    f"currency ({rec.obj['currency']}).",
                    "currency",
                )
            currency = rec.obj["currency"]
            self._check_item_capacity(rec, 1, "invoice")
        prepared = self._prepare_item(p, "", customer_id, currency, rec.obj["id"] if rec else None)
        item = self._commit_item(prepared)
        if rec is not None:
            self._attach(rec, item)
        return item

    def get_item(self, item_id: str) -> Obj:
        return self._item(item_id)

    def delete_item(self, item_id: str) -> Obj:
        item = self._item(item_id)
        if item["invoice"] is not None:
            rec = self.invoices.get(item["invoice"])
            if rec is not None:
                self._require_draft(rec, "delete invoice items on")
                rec.item_ids.remove(item_id)
        del self.items[item_id]
        self.line_ids.pop(item_id, None)
        return {"id": item_id, "object": "invoiceitem", "deleted": True}

    def list_items(self, p: Mapping[str, Any]) -> Obj:
        rows = [
            x
            for x in reversed(self.items.values())
            if (p.get("invoice") is None or x["invoice"] == p["invoice"])
            and (p.get("customer") is None or x["customer"] == p["customer"])
            and (p.get("pending") is None or (x["invoice"] is None) == p["pending"])
        ]
        return paginate(rows, p, "/v1/invoiceitems", "invoiceitem")
