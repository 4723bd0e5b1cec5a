"""Customers and customer balance transactions."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from . import errors
from .base import (
    DEFAULT_CURRENCY,
    UPPER,
    Obj,
    StoreBase,
    apply_metadata,
    new_id,
    now,
    paginate,
)


class CustomersMixin(StoreBase):
    def create_customer(self, p: Mapping[str, Any]) -> Obj:
        cus_id = new_id("cus", 14)
        prefix = p.get("invoice_prefix") or "".join(secrets.choice(UPPER) for _ in range(8))
        cus: Obj = {
            "id": cus_id,
            "object": "customer",
            "address": p.get("address"),
            "balance": 0,
            "business_name": p.get("business_name"),
            "created": now(),
            "currency": None,
            "customer_account": None,
            "default_source": None,
            "delinquent": False,
            "description": p.get("description"),
            "discount": None,
            "email": p.get("email"),
            "individual_name": p.get("individual_name"),
            "invoice_prefix": prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": apply_metadata({}, p.get("metadata") or {}),
            "name": p.get("name"),
            "next_invoice_sequence": p.get("next_invoice_sequence") or 1,
            "phone": p.get("phone"),
            "preferred_locales": p.get("preferred_locales") or [],
            "shipping": p.get("shipping"),
            "tax_exempt": p.get("tax_exempt") or "none",
            "test_clock": None,
        }
        settings = p.get("invoice_settings")
        if isinstance(settings, dict):
            for key in ("custom_fields", "default_payment_method", "footer", "rendering_options"):
                if key in settings:
                    cus["invoice_settings"][key] = settings[key] or None
        self.customers[cus_id] = cus
        self.balance_txns[cus_id] = []
        self._remember(cus_id)
        if p.get("balance"):
            self._balance_txn(cus, p["balance"], DEFAULT_CURRENCY, "initial", None, None, {})
        return cus

    def get_customer(self, customer_id: str) -> Obj:
        if customer_id in self.deleted_customers:
            return {"id": customer_id, "object": "customer", "deleted": True}
        return self._customer(customer_id)

    def update_customer(self, customer_id: str, p: Mapping[str, Any]) -> Obj:
        cus = self._customer(customer_id)
        for key in (
            "address",
            "business_name",
            "description",
            "email",
            "individual_name",
            "name",
            "phone",
            "shipping",
            "tax_exempt",
            "invoice_prefix",
            "next_invoice_sequence",
            "preferred_locales",
        ):
            if key in p:
                cus[key] = p[key]
        if "metadata" in p:
            cus["metadata"] = apply_metadata(cus["metadata"], p["metadata"])
        if p.get("balance") is not None and p["balance"] != cus["balance"]:
            delta = p["balance"] - cus["balance"]
            currency = cus["currency"] or DEFAULT_CURRENCY
            self._balance_txn(cus, delta, currency, "adjustment", None, None, {})
        return cus

    def delete_customer(self, customer_id: str) -> Obj:
        self._customer(customer_id)
        self.deleted_customers.add(customer_id)
        return {"id": customer_id, "object": "customer", "deleted": True}

    def list_customers(self, p: Mapping[str, Any]) -> Obj:
        rows = [
            c
            for c in reversed(self.customers.values())
            if c["id"] not in self.deleted_customers
            and (p.get("email") is None or c["email"] == p["email"])
        ]
        return paginate(rows, p, "/v1/customers", "customer")

    def create_balance_txn(self, customer_id: str, p: Mapping[str, Any]) -> Obj:
        cus = self._customer(customer_id)
        return self._balance_txn(
            cus,
            p["amount"],
            p["currency"],
            "adjustment",
            None,
            p.get("description"),
            p.get("metadata") or {},
        )

    def list_balance_txns(self, customer_id: str, p: Mapping[str, Any]) -> Obj:
        self._customer(customer_id)
        rows = list(reversed(self.balance_txns[customer_id]))
        return paginate(
            rows,
            p,
            f"/v1/customers/{customer_id}/balance_transactions",
            "customer balance transaction",
        )

    def get_balance_txn(self, customer_id: str, txn_id: str) -> Obj:
        self._customer(customer_id)
        for txn in self.balance_txns[customer_id]:
            if txn["id"] == txn_id:
                return txn
        raise errors.no_such("customer balance transaction", txn_id)
