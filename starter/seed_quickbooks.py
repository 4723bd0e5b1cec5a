"""Set up the QuickBooks connection for sample invoices (the demo and benchmarks).

Against the local emulator the OAuth flow runs for real (`connections authorize`'s own code),
with this module in the browser's place: it follows the authorize URL, the emulator consents,
and the redirect reaches the flow's local callback. Then one Service item per billing item and
adjustment kind is found or created and mapped, and each billing customer is linked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from billbridge.activities.export import ExportActivities
from billbridge.activities.providers.quickbooks import QuickBooksInvoiceProvider
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import ExportError
from billbridge.starter.authorize import authorize, store_grant
from billbridge.starter.seed import ADJUSTMENT_KINDS
from billbridge.starter.seed_providers import seed_items_and_customers

QUICKBOOKS_CONNECTION = QuickBooksInvoiceProvider.name


def authorize_with_emulator(settings: Settings, store: Store) -> None:
    """Authorize the connection unless its stored grant already works."""
    try:
        quickbooks(settings, store).check_credentials()
        return
    except ExportError:
        pass
    consents: list[threading.Thread] = []

    def play_browser(line: str) -> None:
        if line.startswith("http"):
            consent = threading.Thread(
                target=httpx.get, args=(line,), kwargs={"follow_redirects": True}, daemon=True
            )
            consent.start()
            consents.append(consent)

    grant = authorize(settings, QUICKBOOKS_CONNECTION, port=0, timeout=60, say=play_browser)
    for consent in consents:
        consent.join(timeout=10)
    store_grant(store, settings, QUICKBOOKS_CONNECTION, grant)


def quickbooks(settings: Settings, store: Store) -> QuickBooksInvoiceProvider:
    provider = ExportActivities(store, settings).provider(
        QUICKBOOKS_CONNECTION, QUICKBOOKS_CONNECTION
    )
    assert isinstance(provider, QuickBooksInvoiceProvider)
    return provider


def seed_quickbooks(
    settings: Settings,
    store: Store,
    items: Mapping[str, str],
    customers: Iterable[dict[str, Any]],
    *,
    adjustments: Iterable[str] = ADJUSTMENT_KINDS,
) -> dict[str, str]:
    """Map an item per billing item (id -> name) and adjustment kind; link the customers.

    Returns billing customer id -> QuickBooks customer id.
    """
    return seed_items_and_customers(
        settings, store, QUICKBOOKS_CONNECTION, items, customers, adjustments=adjustments
    )
