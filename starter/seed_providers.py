"""Set up an item-mapped provider connection (QuickBooks, BILL, NetSuite) for sample invoices:
the demo and the benchmarks.

What a user does by hand in the provider's app and with `billbridge mappings set`: one item per
billing item and adjustment kind, found or created through the provider module itself
(`ensure_item`) and mapped, and each billing customer linked to its provider customer
(`find_or_create_customer`), as Orb stores it (payment_provider_id). Against a local emulator
that needs a credential the demo would otherwise ask the user for (NetSuite's certificate), the
emulator issues one and it is sealed in the store like `connections add --api-key-file` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from billbridge.activities.export import ExportActivities
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.breakdown import adjustment_key
from billbridge.core.config import Settings
from billbridge.starter.door import parse_customers
from billbridge.starter.seed import ADJUSTMENT_KINDS


class SeedableProvider(Protocol):
    """What seeding and reading back need of a provider module beyond InvoiceProvider."""

    def ensure_item(self, name: str) -> str: ...

    def find_or_create_customer(self, customer: Any) -> str: ...

    def read_totals(self, external_id: str) -> tuple[Decimal, Decimal]:
        """(total, amount due) of a provider invoice, read from the provider."""
        ...


def provider_module(settings: Settings, store: Store, name: str) -> SeedableProvider:
    """The provider module of the connection `name` (its default connection), as a worker
    builds it: stored credential, settings and API base."""
    provider: Any = ExportActivities(store, settings).provider(name, name)
    return provider  # type: ignore[no-any-return]


def store_emulator_credential(
    settings: Settings,
    store: Store,
    name: str,
    credential: Mapping[str, str],
    connection_settings: Mapping[str, Any] | None = None,
) -> None:
    """Seal a credential an emulator issued for the connection `name` (unless one is stored),
    with `connection_settings` added to the connection's (`connections set`)."""
    row = store.get_connection(name)
    merged = {**(row.settings if row is not None else {}), **(connection_settings or {})}
    ref = row.credentials_ref if row is not None else None
    if ref is None:
        ref = SecretBox.from_settings(settings).seal(json.dumps(dict(credential)), name)
    store.upsert_connection(name, name, credentials_ref=ref, settings=merged)


def seed_items_and_customers(
    settings: Settings,
    store: Store,
    name: str,
    items: Mapping[str, str],
    customers: Iterable[dict[str, Any]],
    *,
    adjustments: Iterable[str] = ADJUSTMENT_KINDS,
) -> dict[str, str]:
    """Map an item per billing item (id -> name) and adjustment kind; link the customers.

    Returns billing customer id -> provider customer id.
    """
    provider = provider_module(settings, store, name)
    wanted = dict(items)
    wanted.update({adjustment_key(kind): kind.replace("_", " ").title() for kind in adjustments})
    store.set_mappings(name, {key: provider.ensure_item(title) for key, title in wanted.items()})
    linked = {}
    for customer in parse_customers(list(customers)):
        provider_id = provider.find_or_create_customer(customer)
        store.upsert_customers([customer.model_copy(update={"payment_provider_id": provider_id})])
        linked[customer.id] = provider_id
    return linked
