"""Invoices: create/update, add_lines, finalize (customer balance), void, delete, list."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from . import errors, money
from .base import (
    ACCOUNT_COUNTRY,
    ACCOUNT_ID,
    ACCOUNT_NAME,
    ALNUM,
    DEFAULT_CURRENCY,
    InvoiceRec,
    Obj,
    PreparedItem,
    apply_metadata,
    new_id,
    now,
    paginate,
)
from .items import ItemsMixin
from .schema import Int, join
from .views import ViewsMixin


class InvoicingMixin(ItemsMixin, ViewsMixin):
    def _due_date_rules(self, p: Mapping[str, Any], collection_method: str, creating: bool) -> None:
        if p.get("days_until_due") is not None and p.get("due_date") is not None:
            raise errors.exclusive("days_until_due", "due_date")
        if collection_method == "charge_automatically":
            for key in ("days_until_due", "due_date"):
                if p.get(key) is not None:
                    raise errors.invalid(
                        f"You can only set `{key}` on invoices with `collection_method` set to "
                        "`send_invoice`.",
                        key,
                    )
        elif creating and p.get("days_until_due") is None and p.get("due_date") is None:
            # UNCONFIRMED: Stripe may fall back to the account's default payment terms instead.
            raise errors.invalid(
                "Invoices with `collection_method=send_invoice` require either `days_until_due` "
                "or `due_date`.",
                "days_until_due",
                "parameter_missing",
            )
        if p.get("due_date") is not None and p["due_date"] < now() - 60:
            # UNCONFIRMED: Stripe is understood to reject due dates in the past.
            raise errors.invalid("The `due_date` must be in the future.", "due_date")

    def create_invoice(self, p: Mapping[str, Any]) -> InvoiceRec:
        cus = self._customer(p["customer"], "customer")
        method = p.get("collection_method") or "charge_automatically"
        self._due_date_rules(p, method, creating=True)
        currency = (p.get("currency") or cus["currency"] or DEFAULT_CURRENCY).lower()
        ts = now()
        days = p.get("days_until_due")
        due_date = p.get("due_date")
        if days is not None:
            due_date = ts + days * 86400
        inv_id = new_id("in")
        obj: Obj = {
            "id": inv_id,
            "object": "invoice",
            "account_country": ACCOUNT_COUNTRY,
            "account_name": ACCOUNT_NAME,
            "account_tax_ids": None,
            "amount_due": 0,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_paid_off_stripe": 0,
            "amount_remaining": 0,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": bool(p.get("auto_advance")),
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": "manual",
            "collection_method": method,
            "confirmation_secret": None,
            "created": ts,
            "currency": currency,
            "custom_fields": p.get("custom_fields"),
            "customer": cus["id"],
            "customer_account": None,
            "customer_address": cus["address"],
            "customer_email": cus["email"],
            "customer_name": cus["name"],
            "customer_phone": cus["phone"],
            "customer_shipping": cus["shipping"],
            "customer_tax_exempt": cus["tax_exempt"],
            "customer_tax_ids": [],
            "default_payment_method": p.get("default_payment_method"),
            "default_source": p.get("default_source"),
            "default_tax_rates": [],
            "description": p.get("description"),
            "discounts": [],
            "due_date": due_date,
            "effective_at": None,
            "ending_balance": None,
            "footer": p.get("footer"),
            "from_invoice": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "livemode": False,
            "metadata": apply_metadata({}, p.get("metadata") or {}),
            "next_payment_attempt": None,
            "number": p.get("number"),
            "on_behalf_of": p.get("on_behalf_of"),
            "parent": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": ts,
            "period_start": ts,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": p.get("statement_descriptor"),
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "test_clock": None,
            "total": 0,
            "total_discount_amounts": [],
            "total_excluding_tax": 0,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": ts,
        }
        rec = InvoiceRec(obj=obj, days_until_due=days)
        if p.get("pending_invoice_items_behavior") == "include":
            pending = [
                i
                for i in self.items.values()
                if i["customer"] == cus["id"] and i["invoice"] is None and i["currency"] == currency
            ]
            self._check_item_capacity(rec, len(pending), "pending_invoice_items_behavior")
            for item in pending:
                self._attach(rec, item)
        self.invoices[inv_id] = rec
        self._remember(inv_id)
        return rec

    def get_invoice(self, invoice_id: str) -> InvoiceRec:
        return self._invoice(invoice_id)

    def update_invoice(self, invoice_id: str, p: Mapping[str, Any]) -> InvoiceRec:
        rec = self._invoice(invoice_id)
        inv = rec.obj
        # Fields Stripe lets you change after finalization (UNCONFIRMED beyond metadata).
        always = {"metadata", "description", "footer", "custom_fields", "auto_advance", "expand"}
        if inv["status"] != "draft":
            blocked = sorted(k for k in p if k not in always)
            if blocked:
                raise errors.invalid(
                    f"Finalized invoices can't be updated in this way: `{blocked[0]}` can only be "
                    "changed on draft invoices.",
                    blocked[0],
                    "invoice_not_editable",
                )
        method = p.get("collection_method") or inv["collection_method"]
        merged = {
            "days_until_due": p.get("days_until_due"),
            "due_date": p.get("due_date"),
        }
        self._due_date_rules(merged, method, creating=False)
        if "collection_method" in p and p["collection_method"] is not None:
            inv["collection_method"] = p["collection_method"]
            if p["collection_method"] == "charge_automatically":
                inv["due_date"] = None
                rec.days_until_due = None
        if p.get("days_until_due") is not None:
            rec.days_until_due = p["days_until_due"]
            inv["due_date"] = inv["created"] + p["days_until_due"] * 86400
        if p.get("due_date") is not None:
            rec.days_until_due = None
            inv["due_date"] = p["due_date"]
        for key in (
            "auto_advance",
            "custom_fields",
            "default_payment_method",
            "default_source",
            "description",
            "footer",
            "number",
            "on_behalf_of",
            "statement_descriptor",
        ):
            if key in p:
                inv[key] = p[key] if key != "auto_advance" else bool(p[key])
        if "metadata" in p:
            inv["metadata"] = apply_metadata(inv["metadata"], p["metadata"])
        return rec

    def add_lines(
        self, invoice_id: str, p: Mapping[str, Any], max_lines_per_call: int
    ) -> InvoiceRec:
        rec = self._invoice(invoice_id)
        lines: list[Mapping[str, Any]] = p["lines"]
        if len(lines) > max_lines_per_call:
            # UNCONFIRMED: Stripe's per-call maximum for add_lines and its wording.
            raise errors.invalid(
                f"Invalid array: `lines` can contain at most {max_lines_per_call} items per "
                f"request, but {len(lines)} were given.",
                "lines",
            )
        self._require_draft(rec, "add lines to")
        self._check_item_capacity(rec, len(lines), "lines")
        inv = rec.obj
        prepared: list[PreparedItem] = []
        for i, line in enumerate(lines):
            path = f"lines[{i}]"
            if line.get("invoice_item") is not None:
                item = self._item(line["invoice_item"], join(path, "invoice_item"))
                if item["invoice"] is not None:
                    raise errors.invalid(
                        f"The invoice item `{item['id']}` is already attached to an invoice.",
                        join(path, "invoice_item"),
                    )
                if item["customer"] != inv["customer"] or item["currency"] != inv["currency"]:
                    raise errors.invalid(
                        f"The invoice item `{item['id']}` belongs to a different customer or "
                        "currency than this invoice.",
                        join(path, "invoice_item"),
                    )
                prepared.append(PreparedItem(item, [], existing_item_id=item["id"]))
                continue
            prepared.append(
                self._prepare_item(line, path, inv["customer"], inv["currency"], inv["id"])
            )
        for prep, line in zip(prepared, lines, strict=True):
            if prep.existing_item_id is not None:
                item = prep.item
                for key in ("description", "discountable", "period"):
                    if line.get(key) is not None:
                        item[key] = line[key]
                if "metadata" in line:
                    item["metadata"] = apply_metadata(item["metadata"], line["metadata"])
            else:
                item = self._commit_item(prep)
            self._attach(rec, item)
        if "invoice_metadata" in p:
            inv["metadata"] = apply_metadata(inv["metadata"], p["invoice_metadata"])
        return rec

    def list_lines(self, invoice_id: str, p: Mapping[str, Any]) -> Obj:
        rec = self._invoice(invoice_id)
        return paginate(
            self._lines(rec), p, f"/v1/invoices/{invoice_id}/lines", "invoice line item"
        )

    def finalize(self, invoice_id: str, p: Mapping[str, Any]) -> InvoiceRec:
        rec = self._invoice(invoice_id)
        inv = rec.obj
        if inv["status"] != "draft":
            # UNCONFIRMED wording.
            raise errors.invalid(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                None,
                "invoice_not_editable",
            )
        cus = self.customers[inv["customer"]]
        ts = now()
        total = sum(self.items[i]["amount"] for i in rec.item_ids)
        starting = self._balance_for(rec)
        combined = total + starting
        amount_due = max(combined, 0)
        ending = min(combined, 0)
        txn_type = "applied_to_invoice"
        minimum = money.minimum_charge(inv["currency"])
        if 0 < amount_due < minimum:
            # Documented on the Invoice object: below the minimum charge the invoice is marked
            # paid and the amount is carried to the customer's balance (exact fields UNCONFIRMED).
            ending = amount_due
            amount_due = 0
            txn_type = "invoice_too_small"
        money.check_chargeable(amount_due, inv["currency"])  # before anything changes
        if ending != starting:
            self._balance_txn(
                cus, ending - starting, inv["currency"], txn_type, inv["id"], None, {}
            )
        elif cus["currency"] is None:
            cus["currency"] = inv["currency"]
        rec.balance_applied = ending - starting
        if inv["number"] is None:
            seq = cus["next_invoice_sequence"]
            cus["next_invoice_sequence"] = seq + 1
            inv["number"] = f"{cus['invoice_prefix']}-{seq:04d}"
        token = "".join(secrets.choice(ALNUM) for _ in range(40))
        inv["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{ACCOUNT_ID}/test_{token}?s=ap"
        inv["invoice_pdf"] = f"https://pay.stripe.com/invoice/{ACCOUNT_ID}/test_{token}/pdf?s=ap"
        if p.get("auto_advance") is not None:
            inv["auto_advance"] = p["auto_advance"]
        if rec.days_until_due is not None:
            inv["due_date"] = ts + rec.days_until_due * 86400
        inv.update(
            {
                "subtotal": total,
                "subtotal_excluding_tax": total,
                "total": total,
                "total_excluding_tax": total,
                "starting_balance": starting,
                "ending_balance": ending,
                "amount_due": amount_due,
                "amount_paid": 0,
                "amount_remaining": amount_due,
                "effective_at": ts,
                "customer_address": cus["address"],
                "customer_email": cus["email"],
                "customer_name": cus["name"],
                "customer_phone": cus["phone"],
            }
        )
        inv["status_transitions"]["finalized_at"] = ts
        if amount_due == 0:
            # Invoices with nothing left to collect are marked paid on finalization.
            inv["status"] = "paid"
            inv["status_transitions"]["paid_at"] = ts
            inv["auto_advance"] = False
        else:
            inv["status"] = "open"
        if inv["auto_advance"] and inv["collection_method"] == "send_invoice":
            # "Emailing invoices" is one of the things auto_advance=true does, "depending on
            # your settings" (https://docs.stripe.com/invoicing/integration/automatic-
            # advancement-collection); "Automatic advancement and collection never occur on
            # invoices that are marked [...] paid" (same page), so only an open invoice.
            # UNCONFIRMED: when Stripe sends it (recorded here at finalization) and that the
            # account's e-mail setting is on (assumed).
            self._record_email(rec, "auto_advance", ts)
        return rec

    def send_invoice(self, invoice_id: str) -> InvoiceRec:
        """POST /v1/invoices/{id}/send (https://docs.stripe.com/api/invoices/send): "if you'd
        like to manually send an invoice to your customer out of the normal schedule, you can
        do so. When sending invoices that have already been paid, there will be no reference to
        the payment in the email." In test mode Stripe sends no e-mail but an `invoice.sent`
        event; the emulator records the e-mail live mode would send (/_emulator/emails)."""
        rec = self._invoice(invoice_id)
        inv = rec.obj
        if inv["collection_method"] != "send_invoice":
            # UNCONFIRMED wording; the send endpoint is "Send an invoice for manual payment".
            raise errors.invalid(
                "You can only manually send an invoice if its collection method is 'send_invoice'.",
                None,
            )
        if inv["status"] == "draft":
            # "Stripe automatically finalizes drafts before sending and attempting payment on
            # invoices" (https://docs.stripe.com/api/invoices/finalize). UNCONFIRMED that the
            # send endpoint itself finalizes a draft.
            self.finalize(invoice_id, {})
        elif inv["status"] in ("void", "uncollectible"):
            # UNCONFIRMED wording and rule.
            raise errors.invalid(
                f"You can't send an invoice that is `{inv['status']}`.",
                None,
                "invoice_not_editable",
            )
        self._record_email(rec, "send", now())
        return rec

    def _record_email(self, rec: InvoiceRec, via: str, ts: int) -> None:
        inv = rec.obj
        rec.emails.append(
            {
                "invoice": inv["id"],
                "customer": inv["customer"],
                "to": inv["customer_email"],
                "status": inv["status"],
                "amount_due": inv["amount_due"],
                "via": via,
                "at": ts,
            }
        )

    def void(self, invoice_id: str) -> InvoiceRec:
        rec = self._invoice(invoice_id)
        inv = rec.obj
        if inv["status"] not in ("open", "uncollectible"):
            # UNCONFIRMED wording.
            raise errors.invalid(
                f"You can only void open or uncollectible invoices; this invoice is "
                f"`{inv['status']}`.",
                None,
                "invoice_not_editable" if inv["status"] == "draft" else None,
            )
        if rec.balance_applied:
            cus = self.customers[inv["customer"]]
            self._balance_txn(
                cus,
                -rec.balance_applied,
                inv["currency"],
                "unapplied_from_invoice",
                inv["id"],
                None,
                {},
            )
            rec.balance_applied = 0
        ts = now()
        inv["status"] = "void"
        inv["status_transitions"]["voided_at"] = ts
        inv["amount_remaining"] = 0
        inv["auto_advance"] = False
        return rec

    def delete_invoice(self, invoice_id: str) -> Obj:
        # "Permanently deletes a one-off invoice draft. [...] Attempts to delete invoices that
        # are no longer in a draft state will fail" (https://docs.stripe.com/api/invoices/delete);
        # afterwards the id answers 404 resource_missing "No such invoice: '<id>'" like any
        # unknown id (errors.no_such).
        rec = self._invoice(invoice_id)
        if rec.obj["status"] != "draft":
            # UNCONFIRMED wording.
            raise errors.invalid(
                "You can only delete draft invoices. Use void for finalized invoices.",
                None,
                "invoice_not_editable",
            )
        self._drop_invoice(rec)
        return {"id": invoice_id, "object": "invoice", "deleted": True}

    def forget_invoice(self, invoice_id: str) -> None:
        """Lose an invoice in any state, as only something outside the API can (a test-mode
        data deletion in the Dashboard, another account behind the same key name): Stripe's
        API deletes drafts only, and voids finalized invoices, which stay readable."""
        self._drop_invoice(self._invoice(invoice_id))

    def _drop_invoice(self, rec: InvoiceRec) -> None:
        for item_id in rec.item_ids:
            self.items.pop(item_id, None)
            self.line_ids.pop(item_id, None)
        del self.invoices[rec.obj["id"]]

    def list_invoices(self, p: Mapping[str, Any]) -> Obj:
        rows = [
            self.render_invoice(r)
            for r in reversed(self.invoices.values())
            if _created_in(r.obj["created"], p.get("created"))
            and (p.get("customer") is None or r.obj["customer"] == p["customer"])
            and (p.get("status") is None or r.obj["status"] == p["status"])
            and (
                p.get("collection_method") is None
                or r.obj["collection_method"] == p["collection_method"]
            )
        ]
        return paginate(rows, p, "/v1/invoices", "invoice")


def _created_in(created: int, wanted: Any) -> bool:
    """The `created` filter of list endpoints: a unix time, or a range of gt/gte/lt/lte
    (https://docs.stripe.com/api/invoices/list#list_invoices-created)."""
    if wanted is None:
        return True
    if not isinstance(wanted, Mapping):
        return created == _timestamp(wanted, "created")
    checks = {
        "gt": lambda bound: created > bound,
        "gte": lambda bound: created >= bound,
        "lt": lambda bound: created < bound,
        "lte": lambda bound: created <= bound,
    }
    for key, value in wanted.items():
        if key not in checks:
            raise errors.unknown(f"created[{key}]")
        if not checks[key](_timestamp(value, f"created[{key}]")):
            return False
    return True


def _timestamp(value: Any, param: str) -> int:
    return Int().coerce(value, param)
