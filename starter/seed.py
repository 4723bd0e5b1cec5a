"""Set up a Stripe account (the emulator or Stripe test mode) and the store for sample invoices.

Used by the demo, the tests and the benchmarks: creates one Stripe product per billing item and per
adjustment kind, maps them, and creates Stripe customers for billing customers, storing the links
as Orb does (payment_provider=stripe_invoice, payment_provider_id=cus_...).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import stripe

from billbridge.activities.store import Store
from billbridge.core.breakdown import adjustment_key
from billbridge.starter.door import parse_customers

STRIPE_CONNECTION = "stripe_invoice"
ADJUSTMENT_KINDS = ("discount", "minimum", "maximum", "credits", "partial_invoicing", "tax")


def stripe_client(api_base: str, api_key: str) -> stripe.StripeClient:
    # Seeding is a one-off script, so the SDK's own retries (on 409/5xx) are welcome here.
    return stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=5)


T = TypeVar("T")


def call_patiently(call: Callable[[], T], attempts: int = 30) -> T:
    """Run a seeding call, waiting out rate limits (the SDK does not retry a bare 429)."""
    for attempt in range(attempts):
        try:
            return call()
        except stripe.RateLimitError:
            if attempt == attempts - 1:
                raise
            time.sleep(min(0.2 * (attempt + 1), 2.0))
    raise AssertionError("unreachable")


def seed_catalog(
    client: stripe.StripeClient,
    store: Store,
    items: Mapping[str, str],
    *,
    connection_id: str = STRIPE_CONNECTION,
    adjustments: Iterable[str] = ADJUSTMENT_KINDS,
) -> dict[str, str]:
    """Create a product per billing item (id -> name) and adjustment kind; map them."""
    wanted = dict(items)
    wanted.update({adjustment_key(kind): kind.replace("_", " ").title() for kind in adjustments})
    mapped = {}
    for billing_key, name in wanted.items():
        product = call_patiently(
            functools.partial(
                client.v1.products.create,
                params={"name": name, "metadata": {"billbridge_item": billing_key}},
                options={"idempotency_key": f"seed-product-{billing_key}"},
            )
        )
        store.set_mapping(connection_id, billing_key, product.id)
        mapped[billing_key] = product.id
    return mapped


def seed_customer(client: stripe.StripeClient, store: Store, customer: dict[str, Any]) -> str:
    """Create the Stripe customer for an Orb customer dict and store the linked customer."""
    created = call_patiently(
        lambda: client.v1.customers.create(
            params={
                "name": customer.get("name") or customer["id"],
                "email": customer.get("email") or "",
                "metadata": {"billbridge_customer_id": customer["id"]},
            },
            options={"idempotency_key": f"seed-customer-{customer['id']}"},
        )
    )
    linked = {**customer, "payment_provider": "stripe_invoice", "payment_provider_id": created.id}
    store.upsert_customers(parse_customers([linked]))
    return str(created.id)
