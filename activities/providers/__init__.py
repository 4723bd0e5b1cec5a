"""Provider registry: the customer's `payment_provider` value -> the module that exports to it.

Adding a provider means adding its module and one entry here; nothing else names providers.
"""

from __future__ import annotations

from collections.abc import Callable

from billbridge.activities.providers.base import ConnectionConfig, InvoiceProvider
from billbridge.activities.providers.stripe_invoice import StripeInvoiceProvider
from billbridge.core.config import Settings

ProviderFactory = Callable[[Settings, ConnectionConfig], InvoiceProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    StripeInvoiceProvider.name: StripeInvoiceProvider.from_settings,
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)
