"""Rendering (invoice + embedded lines) and search over stored objects."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import errors, search
from .base import (
    EMBEDDED_LINES,
    InvoiceRec,
    Obj,
    StoreBase,
)


class ViewsMixin(StoreBase):
    def search(
        self,
        resource: str,
        p: Mapping[str, Any],
        *,
        expand_total: bool,
    ) -> Obj:
        table: list[Obj]
        fields: Mapping[str, search.Getter]
        if resource == "invoices":
            table = [self.render_invoice(r) for r in reversed(self.invoices.values())]
            fields = search.INVOICE_FIELDS
        elif resource == "customers":
            table = [
                c
                for c in reversed(self.customers.values())
                if c["id"] not in self.deleted_customers
            ]
            fields = search.CUSTOMER_FIELDS
        elif resource == "prices":
            table = list(reversed(self.prices.values()))
            fields = search.PRICE_FIELDS
        else:
            table = list(reversed(self.products.values()))
            fields = search.PRODUCT_FIELDS
        predicate: Callable[[Mapping[str, Any]], bool] = search.compile_query(
            p["query"], fields, resource
        )
        clock = time.monotonic()
        hits = [o for o in table if self.visible_at.get(o["id"], 0.0) <= clock and predicate(o)]
        offset = 0
        if p.get("page"):
            offset = _decode_page(p["page"])
        limit: int = p.get("limit") or 10
        window = hits[offset : offset + limit]
        has_more = offset + limit < len(hits)
        result: Obj = {
            "object": "search_result",
            "data": window,
            "has_more": has_more,
            "next_page": _encode_page(offset + limit) if has_more else None,
            "url": f"/v1/{resource}/search",
        }
        if expand_total:
            result["total_count"] = len(hits)
        return result

    def _line(self, rec: InvoiceRec, item: Obj) -> Obj:
        return {
            "id": self.line_ids[item["id"]],
            "object": "line_item",
            "amount": item["amount"],
            "currency": item["currency"],
            "description": item["description"],
            "discount_amounts": [],
            "discountable": item["discountable"],
            "discounts": [],
            "invoice": rec.obj["id"],
            "livemode": False,
            "metadata": dict(item["metadata"]),
            "parent": {
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            },
            "period": dict(item["period"]),
            "pretax_credit_amounts": [],
            "pricing": copy.deepcopy(item["pricing"]),
            "quantity": item["quantity"],
            "quantity_decimal": item["quantity_decimal"],
            "subscription": None,
            "subtotal": item["amount"],
            "taxes": [],
        }

    def _lines(self, rec: InvoiceRec) -> list[Obj]:
        return [self._line(rec, self.items[i]) for i in rec.item_ids]

    def render_invoice(self, rec: InvoiceRec, *, all_lines: bool = False) -> Obj:
        inv = copy.deepcopy(rec.obj)
        lines = self._lines(rec)
        if inv["status"] == "draft":
            total = sum(line["amount"] for line in lines)
            starting = self._balance_for(rec)
            amount_due = max(total + starting, 0)
            inv.update(
                {
                    "subtotal": total,
                    "subtotal_excluding_tax": total,
                    "total": total,
                    "total_excluding_tax": total,
                    "starting_balance": starting,
                    "amount_due": amount_due,
                    "amount_remaining": amount_due,
                }
            )
        shown = lines if all_lines else lines[:EMBEDDED_LINES]
        inv["lines"] = {
            "object": "list",
            "data": shown,
            "has_more": len(shown) < len(lines),
            "total_count": len(lines),
            "url": f"/v1/invoices/{inv['id']}/lines",
        }
        return inv

    def all_invoices(self) -> list[Obj]:
        with self.lock:
            return [self.render_invoice(r, all_lines=True) for r in self.invoices.values()]


def _encode_page(offset: int) -> str:
    import base64

    return base64.urlsafe_b64encode(f"emu-search:{offset}".encode()).decode().rstrip("=")


def _decode_page(token: str) -> int:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, offset = raw.partition(":")
        if prefix != "emu-search" or not offset.isdigit():
            raise ValueError(token)
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise errors.invalid(f"Invalid page token: {token}", "page") from exc
