"""The /v1 endpoints: accepted parameters (schemas) and the Store operation each one runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .schema import (
    LIST_PARAMS,
    PERIOD,
    AnyValue,
    Bool,
    Dec,
    Enum,
    Int,
    ListOf,
    Metadata,
    Obj,
    Spec,
    Str,
    endpoint,
)
from .state import Store

JSON = dict[str, Any]


@dataclass(frozen=True)
class Call:
    ids: dict[str, str]
    params: dict[str, Any]
    max_lines_per_add_lines: int


Handler = Callable[[Store, Call], JSON]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    schema: Obj
    handler: Handler


# ------------------------------------------------------------------------------ schemas

TAX_BEHAVIOR = Enum("exclusive", "inclusive", "unspecified")

CUSTOMER_FIELDS: dict[str, Spec] = {
    "address": AnyValue(),
    "balance": Int(),
    "business_name": Str(150),
    "cash_balance": AnyValue(),
    "description": Str(350),
    "email": Str(512),
    "individual_name": Str(150),
    "invoice_prefix": Str(12),
    "invoice_settings": AnyValue(),
    "metadata": Metadata(),
    "name": Str(256),
    "next_invoice_sequence": Int(1),
    "phone": Str(20),
    "preferred_locales": ListOf(Str()),
    "shipping": AnyValue(),
    "tax": AnyValue(),
    "tax_exempt": Enum("none", "exempt", "reverse"),
    "validate": Bool(),
}
CUSTOMER_CREATE = endpoint(
    {
        **CUSTOMER_FIELDS,
        "payment_method": Str(),
        "source": Str(),
        "tax_id_data": AnyValue(),
        "test_clock": Str(),
    }
)
CUSTOMER_UPDATE = endpoint({**CUSTOMER_FIELDS, "default_source": Str(), "source": Str()})
CUSTOMER_LIST = endpoint({**LIST_PARAMS, "email": Str(512), "test_clock": Str()})

BALANCE_TXN_CREATE = endpoint(
    {
        "amount": Int(),
        "currency": Str(3),
        "description": Str(350),
        "metadata": Metadata(),
    },
    required=("amount", "currency"),
)

PRODUCT_DATA = Obj(
    {
        "active": Bool(),
        "description": Str(),
        "id": Str(),
        "images": ListOf(Str()),
        "metadata": Metadata(),
        "name": Str(250, nullable=False),
        "statement_descriptor": Str(22),
        "tax_code": Str(),
        "tax_details": AnyValue(),
        "unit_label": Str(12),
    },
    required=("name",),
)
RECURRING = Obj(
    {
        "interval": Enum("day", "week", "month", "year"),
        "interval_count": Int(1),
        "meter": Str(),
        "trial_period_days": Int(0),
        "usage_type": Enum("licensed", "metered"),
    },
    required=("interval",),
)
DEFAULT_PRICE_DATA = Obj(
    {
        "currency": Str(3),
        "currency_options": AnyValue(),
        "custom_unit_amount": AnyValue(),
        "metadata": Metadata(),
        "recurring": RECURRING,
        "tax_behavior": TAX_BEHAVIOR,
        "unit_amount": Int(0),
        "unit_amount_decimal": Dec(),
    },
    required=("currency",),
)
PRODUCT_FIELDS: dict[str, Spec] = {
    "active": Bool(),
    "description": Str(40000),
    "images": ListOf(Str()),
    "marketing_features": AnyValue(),
    "metadata": Metadata(),
    "name": Str(250, nullable=False),
    "package_dimensions": AnyValue(),
    "shippable": Bool(),
    "statement_descriptor": Str(22),
    "tax_code": Str(),
    "tax_details": AnyValue(),
    "unit_label": Str(12),
    "url": Str(),
}
PRODUCT_CREATE = endpoint(
    {
        **PRODUCT_FIELDS,
        "id": Str(),
        "default_price_data": DEFAULT_PRICE_DATA,
        "type": Enum("good", "service"),
    },
    required=("name",),
)
PRODUCT_UPDATE = endpoint({**PRODUCT_FIELDS, "default_price": Str()})
PRODUCT_LIST = endpoint(
    {**LIST_PARAMS, "active": Bool(), "ids": ListOf(Str()), "shippable": Bool(), "url": Str()}
)

PRICE_CREATE = endpoint(
    {
        "active": Bool(),
        "billing_scheme": Enum("per_unit", "tiered"),
        "currency": Str(3),
        "currency_options": AnyValue(),
        "custom_unit_amount": AnyValue(),
        "lookup_key": Str(200),
        "metadata": Metadata(),
        "nickname": Str(),
        "product": Str(),
        "product_data": PRODUCT_DATA,
        "recurring": RECURRING,
        "tax_behavior": TAX_BEHAVIOR,
        "tiers": AnyValue(),
        "tiers_mode": Enum("graduated", "volume"),
        "transfer_lookup_key": Bool(),
        "transform_quantity": AnyValue(),
        "unit_amount": Int(0),
        "unit_amount_decimal": Dec(),
    },
    required=("currency",),
)
PRICE_UPDATE = endpoint(
    {
        "active": Bool(),
        "currency_options": AnyValue(),
        "lookup_key": Str(200),
        "metadata": Metadata(),
        "nickname": Str(),
        "tax_behavior": TAX_BEHAVIOR,
        "transfer_lookup_key": Bool(),
    }
)
PRICE_LIST = endpoint(
    {
        **LIST_PARAMS,
        "active": Bool(),
        "currency": Str(3),
        "lookup_keys": ListOf(Str(200), max_items=10),
        "product": Str(),
        "recurring": AnyValue(),
        "type": Enum("one_time", "recurring"),
    }
)

ITEM_PRICE_DATA = Obj(
    {
        "currency": Str(3, nullable=False),
        "product": Str(),
        "tax_behavior": TAX_BEHAVIOR,
        "unit_amount": Int(0),
        "unit_amount_decimal": Dec(),
    },
    required=("currency",),
)
PRICING = Obj({"price": Str()})
ITEM_CREATE = endpoint(
    {
        "amount": Int(),
        "currency": Str(3),
        "customer": Str(nullable=False),
        "customer_account": Str(),
        "description": Str(),
        "discountable": Bool(),
        "discounts": AnyValue(),
        "invoice": Str(),
        "metadata": Metadata(),
        "period": PERIOD,
        "price_data": ITEM_PRICE_DATA,
        "pricing": PRICING,
        "quantity": Int(0),
        "quantity_decimal": Dec(),
        "subscription": Str(),
        "tax_behavior": TAX_BEHAVIOR,
        "tax_code": Str(),
        "tax_rates": AnyValue(),
        "unit_amount_decimal": Dec(),
    },
    required=("customer",),
)
ITEM_LIST = endpoint(
    {
        **LIST_PARAMS,
        "customer": Str(),
        "customer_account": Str(),
        "invoice": Str(),
        "pending": Bool(),
    }
)

LINE_PRICE_DATA = Obj(
    {
        "currency": Str(3, nullable=False),
        "product": Str(),
        "product_data": PRODUCT_DATA,
        "tax_behavior": TAX_BEHAVIOR,
        "unit_amount": Int(0),
        "unit_amount_decimal": Dec(),
    },
    required=("currency",),
)
ADD_LINE = Obj(
    {
        "amount": Int(),
        "description": Str(),
        "discountable": Bool(),
        "discounts": AnyValue(),
        "invoice_item": Str(),
        "metadata": Metadata(),
        "period": PERIOD,
        "price_data": LINE_PRICE_DATA,
        "pricing": PRICING,
        "quantity": Int(0),
        "quantity_decimal": Dec(),
        "tax_amounts": AnyValue(),
        "tax_rates": AnyValue(),
    }
)
ADD_LINES = endpoint(
    {"lines": ListOf(ADD_LINE), "invoice_metadata": Metadata()}, required=("lines",)
)

CUSTOM_FIELDS = ListOf(
    Obj({"name": Str(40), "value": Str(140)}, required=("name", "value")), max_items=4
)
INVOICE_COMMON: dict[str, Spec] = {
    "account_tax_ids": AnyValue(),
    "application_fee_amount": Int(0),
    "auto_advance": Bool(),
    "automatic_tax": AnyValue(),
    "automatically_finalizes_at": Int(0),
    "collection_method": Enum("charge_automatically", "send_invoice"),
    "custom_fields": CUSTOM_FIELDS,
    "days_until_due": Int(0),
    "default_payment_method": Str(),
    "default_source": Str(),
    "default_tax_rates": AnyValue(),
    "description": Str(1500),
    "discounts": AnyValue(),
    "due_date": Int(0),
    "effective_at": Int(0),
    "footer": Str(5000),
    "issuer": AnyValue(),
    "metadata": Metadata(),
    "number": Str(26),
    "on_behalf_of": Str(),
    "payment_settings": AnyValue(),
    "rendering": AnyValue(),
    "shipping_cost": AnyValue(),
    "shipping_details": AnyValue(),
    "statement_descriptor": Str(22),
    "transfer_data": AnyValue(),
}
INVOICE_CREATE = endpoint(
    {
        **INVOICE_COMMON,
        "currency": Str(3),
        "customer": Str(nullable=False),
        "customer_account": Str(),
        "from_invoice": AnyValue(),
        "pending_invoice_items_behavior": Enum("exclude", "include"),
        "subscription": Str(),
    },
    required=("customer",),
)
INVOICE_UPDATE = endpoint(INVOICE_COMMON)
INVOICE_LIST = endpoint(
    {
        **LIST_PARAMS,
        "collection_method": Enum("charge_automatically", "send_invoice"),
        "customer": Str(),
        "customer_account": Str(),
        "due_date": AnyValue(),
        "status": Enum("draft", "open", "paid", "uncollectible", "void"),
        "subscription": Str(),
    }
)
SEARCH = endpoint(
    {"query": Str(10000, nullable=False), "limit": Int(1, 100), "page": Str()},
    required=("query",),
)
LIST_ONLY = endpoint(dict(LIST_PARAMS))
FINALIZE = endpoint({"auto_advance": Bool()})
NO_PARAMS = endpoint({})


# ----------------------------------------------------------------------------- handlers


def _search(resource: str) -> Handler:
    def run(store: Store, call: Call) -> JSON:
        expand = call.params.get("expand") or []
        return store.search(resource, call.params, expand_total="total_count" in expand)

    return run


def _invoice(fn: Callable[[Store, Call], Any]) -> Handler:
    def run(store: Store, call: Call) -> JSON:
        return store.render_invoice(fn(store, call))

    return run


def _id(call: Call) -> str:
    return call.ids["id"]


ROUTE_TABLE: list[tuple[str, str, Obj, Handler]] = [
    # customers
    ("POST", r"/v1/customers", CUSTOMER_CREATE, lambda s, c: s.create_customer(c.params)),
    ("GET", r"/v1/customers", CUSTOMER_LIST, lambda s, c: s.list_customers(c.params)),
    ("GET", r"/v1/customers/search", SEARCH, _search("customers")),
    ("GET", r"/v1/customers/{id}", NO_PARAMS, lambda s, c: s.get_customer(_id(c))),
    (
        "POST",
        r"/v1/customers/{id}",
        CUSTOMER_UPDATE,
        lambda s, c: s.update_customer(_id(c), c.params),
    ),
    ("DELETE", r"/v1/customers/{id}", NO_PARAMS, lambda s, c: s.delete_customer(_id(c))),
    (
        "POST",
        r"/v1/customers/{id}/balance_transactions",
        BALANCE_TXN_CREATE,
        lambda s, c: s.create_balance_txn(_id(c), c.params),
    ),
    (
        "GET",
        r"/v1/customers/{id}/balance_transactions",
        LIST_ONLY,
        lambda s, c: s.list_balance_txns(_id(c), c.params),
    ),
    (
        "GET",
        r"/v1/customers/{id}/balance_transactions/{txn}",
        NO_PARAMS,
        lambda s, c: s.get_balance_txn(_id(c), c.ids["txn"]),
    ),
    # products
    ("POST", r"/v1/products", PRODUCT_CREATE, lambda s, c: s.create_product(c.params)),
    ("GET", r"/v1/products", PRODUCT_LIST, lambda s, c: s.list_products(c.params)),
    ("GET", r"/v1/products/search", SEARCH, _search("products")),
    ("GET", r"/v1/products/{id}", NO_PARAMS, lambda s, c: s.get_product(_id(c))),
    (
        "POST",
        r"/v1/products/{id}",
        PRODUCT_UPDATE,
        lambda s, c: s.update_product(_id(c), c.params),
    ),
    # prices
    ("POST", r"/v1/prices", PRICE_CREATE, lambda s, c: s.create_price(c.params)),
    ("GET", r"/v1/prices", PRICE_LIST, lambda s, c: s.list_prices(c.params)),
    ("GET", r"/v1/prices/search", SEARCH, _search("prices")),
    ("GET", r"/v1/prices/{id}", NO_PARAMS, lambda s, c: s.get_price(_id(c))),
    ("POST", r"/v1/prices/{id}", PRICE_UPDATE, lambda s, c: s.update_price(_id(c), c.params)),
    # invoice items
    ("POST", r"/v1/invoiceitems", ITEM_CREATE, lambda s, c: s.create_item(c.params)),
    ("GET", r"/v1/invoiceitems", ITEM_LIST, lambda s, c: s.list_items(c.params)),
    ("GET", r"/v1/invoiceitems/{id}", NO_PARAMS, lambda s, c: s.get_item(_id(c))),
    ("DELETE", r"/v1/invoiceitems/{id}", NO_PARAMS, lambda s, c: s.delete_item(_id(c))),
    # invoices
    (
        "POST",
        r"/v1/invoices",
        INVOICE_CREATE,
        _invoice(lambda s, c: s.create_invoice(c.params)),
    ),
    ("GET", r"/v1/invoices", INVOICE_LIST, lambda s, c: s.list_invoices(c.params)),
    ("GET", r"/v1/invoices/search", SEARCH, _search("invoices")),
    ("GET", r"/v1/invoices/{id}", NO_PARAMS, _invoice(lambda s, c: s.get_invoice(_id(c)))),
    (
        "POST",
        r"/v1/invoices/{id}",
        INVOICE_UPDATE,
        _invoice(lambda s, c: s.update_invoice(_id(c), c.params)),
    ),
    ("DELETE", r"/v1/invoices/{id}", NO_PARAMS, lambda s, c: s.delete_invoice(_id(c))),
    (
        "POST",
        r"/v1/invoices/{id}/add_lines",
        ADD_LINES,
        _invoice(lambda s, c: s.add_lines(_id(c), c.params, c.max_lines_per_add_lines)),
    ),
    ("GET", r"/v1/invoices/{id}/lines", LIST_ONLY, lambda s, c: s.list_lines(_id(c), c.params)),
    (
        "POST",
        r"/v1/invoices/{id}/finalize",
        FINALIZE,
        _invoice(lambda s, c: s.finalize(_id(c), c.params)),
    ),
    ("POST", r"/v1/invoices/{id}/void", NO_PARAMS, _invoice(lambda s, c: s.void(_id(c)))),
    # https://docs.stripe.com/api/invoices/send: no parameters, returns the invoice.
    (
        "POST",
        r"/v1/invoices/{id}/send",
        NO_PARAMS,
        _invoice(lambda s, c: s.send_invoice(_id(c))),
    ),
]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$")


ROUTES: list[Route] = [
    Route(method, _compile(template), schema, handler)
    for method, template, schema, handler in ROUTE_TABLE
]


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None


def endpoints() -> list[str]:
    """``METHOD /path`` for every supported endpoint (for docs and the admin surface)."""
    return [f"{method} {template}" for method, template, _, _ in ROUTE_TABLE]
