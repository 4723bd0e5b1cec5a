"""Products and prices (including ``lookup_key`` handling)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..decimals import decimal_text
from . import errors
from .base import (
    Obj,
    StoreBase,
    apply_metadata,
    new_id,
    now,
    paginate,
)
from .schema import join


class CatalogMixin(StoreBase):
    def _new_product(self, p: Mapping[str, Any]) -> Obj:
        prod_id = p.get("id") or new_id("prod", 14)
        if prod_id in self.products:
            raise errors.invalid("Product already exists.", "id", "resource_already_exists")
        ts = now()
        return {
            "id": prod_id,
            "object": "product",
            "active": True if p.get("active") is None else p["active"],
            "created": ts,
            "default_price": None,
            "description": p.get("description"),
            "images": p.get("images") or [],
            "livemode": False,
            "marketing_features": [],
            "metadata": apply_metadata({}, p.get("metadata") or {}),
            "name": p["name"],
            "package_dimensions": None,
            "shippable": p.get("shippable"),
            "statement_descriptor": p.get("statement_descriptor"),
            "tax_code": p.get("tax_code"),
            "type": "service",
            "unit_label": p.get("unit_label"),
            "updated": ts,
            "url": p.get("url"),
        }

    def create_product(self, p: Mapping[str, Any]) -> Obj:
        prod = self._new_product(p)
        self._store("product", prod)
        if p.get("default_price_data"):
            dpd = dict(p["default_price_data"])
            price, _ = self._new_price({**dpd, "product": prod["id"]}, "default_price_data")
            self._store("price", price)
            prod["default_price"] = price["id"]
        return prod

    def get_product(self, product_id: str) -> Obj:
        return self._product(product_id)

    def update_product(self, product_id: str, p: Mapping[str, Any]) -> Obj:
        prod = self._product(product_id)
        for key in ("active", "description", "name", "shippable", "unit_label", "url"):
            if key in p:
                prod[key] = p[key]
        if "metadata" in p:
            prod["metadata"] = apply_metadata(prod["metadata"], p["metadata"])
        if p.get("default_price"):
            self._price(p["default_price"], "default_price")
            prod["default_price"] = p["default_price"]
        prod["updated"] = now()
        return prod

    def list_products(self, p: Mapping[str, Any]) -> Obj:
        ids = p.get("ids")
        rows = [
            x
            for x in reversed(self.products.values())
            if (p.get("active") is None or x["active"] == p["active"])
            and (not ids or x["id"] in ids)
            and (p.get("url") is None or x["url"] == p["url"])
        ]
        return paginate(rows, p, "/v1/products", "product")

    def _new_price(self, p: Mapping[str, Any], path: str = "") -> tuple[Obj, Obj | None]:
        """A validated, unstored price and (for ``product_data``) its unstored new product."""
        if p.get("unit_amount") is not None and p.get("unit_amount_decimal") is not None:
            raise errors.exclusive(join(path, "unit_amount"), join(path, "unit_amount_decimal"))
        if p.get("product") is not None and p.get("product_data") is not None:
            raise errors.exclusive(join(path, "product"), join(path, "product_data"))
        new_product: Obj | None = None
        if p.get("product") is not None:
            product_id: str = self._product(p["product"], join(path, "product"))["id"]
        elif p.get("product_data") is not None:
            new_product = self._new_product(p["product_data"])
            product_id = new_product["id"]
        else:
            raise errors.missing(join(path, "product"))
        if p.get("unit_amount") is not None:
            unit_dec: Decimal | None = Decimal(p["unit_amount"])
        elif p.get("unit_amount_decimal") is not None:
            unit_dec = p["unit_amount_decimal"]
        elif p.get("custom_unit_amount") or p.get("tiers"):
            unit_dec = None
        else:
            raise errors.missing(join(path, "unit_amount"))
        recurring = p.get("recurring")
        if recurring is not None:
            recurring = {
                "interval": recurring.get("interval"),
                "interval_count": int(recurring.get("interval_count") or 1),
                "meter": recurring.get("meter"),
                "trial_period_days": recurring.get("trial_period_days"),
                "usage_type": recurring.get("usage_type") or "licensed",
            }
        price: Obj = {
            "id": new_id("price"),
            "object": "price",
            "active": True if p.get("active") is None else p["active"],
            "billing_scheme": p.get("billing_scheme") or "per_unit",
            "created": now(),
            "currency": p["currency"].lower(),
            "custom_unit_amount": p.get("custom_unit_amount"),
            "livemode": False,
            "lookup_key": None,
            "metadata": apply_metadata({}, p.get("metadata") or {}),
            "nickname": p.get("nickname"),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": p.get("tax_behavior") or "unspecified",
            "tiers_mode": p.get("tiers_mode"),
            "transform_quantity": p.get("transform_quantity"),
            "type": "recurring" if recurring is not None else "one_time",
            "unit_amount": (
                int(unit_dec)
                if unit_dec is not None and unit_dec == unit_dec.to_integral()
                else None
            ),
            "unit_amount_decimal": decimal_text(unit_dec) if unit_dec is not None else None,
        }
        return price, new_product

    def _claim_lookup_key(self, price: Obj, key: str | None, transfer: bool) -> None:
        if key is None:
            price["lookup_key"] = None
            return
        for other in self.prices.values():
            if other["lookup_key"] == key and other["id"] != price["id"]:
                if not transfer:
                    raise errors.invalid(
                        f"A price (`{other['id']}`) already uses that lookup key.", "lookup_key"
                    )
                other["lookup_key"] = None
        price["lookup_key"] = key

    def create_price(self, p: Mapping[str, Any]) -> Obj:
        price, new_product = self._new_price(p)
        if p.get("lookup_key") is not None:
            self._claim_lookup_key(price, p["lookup_key"], bool(p.get("transfer_lookup_key")))
        if new_product is not None:
            self._store("product", new_product)
        self._store("price", price)
        return price

    def get_price(self, price_id: str) -> Obj:
        return self._price(price_id)

    def update_price(self, price_id: str, p: Mapping[str, Any]) -> Obj:
        price = self._price(price_id)
        for key in ("active", "nickname", "tax_behavior"):
            if key in p:
                price[key] = p[key]
        if "metadata" in p:
            price["metadata"] = apply_metadata(price["metadata"], p["metadata"])
        if "lookup_key" in p:
            self._claim_lookup_key(price, p["lookup_key"], bool(p.get("transfer_lookup_key")))
        return price

    def list_prices(self, p: Mapping[str, Any]) -> Obj:
        keys = p.get("lookup_keys")
        rows = [
            x
            for x in reversed(self.prices.values())
            if (p.get("active") is None or x["active"] == p["active"])
            and (p.get("currency") is None or x["currency"] == p["currency"].lower())
            and (p.get("product") is None or x["product"] == p["product"])
            and (p.get("type") is None or x["type"] == p["type"])
            and (not keys or x["lookup_key"] in keys)
        ]
        return paginate(rows, p, "/v1/prices", "price")
