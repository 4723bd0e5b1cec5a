"""Provider registry: the customer's `payment_provider` value -> the module that exports to it.

Adding a provider means adding its module and one entry here; nothing else names providers.
"""

from __future__ import annotations

from collections.abc import Callable

from billbridge.activities.oauth import OAuthApp
from billbridge.activities.providers import quickbooks
from billbridge.activities.providers.base import ConnectionConfig, InvoiceProvider
from billbridge.activities.providers.quickbooks import QuickBooksInvoiceProvider
from billbridge.activities.providers.stripe_invoice import StripeInvoiceProvider
from billbridge.core.config import Settings

ProviderFactory = Callable[[Settings, ConnectionConfig], InvoiceProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    StripeInvoiceProvider.name: StripeInvoiceProvider.from_settings,
    QuickBooksInvoiceProvider.name: QuickBooksInvoiceProvider.from_settings,
}

# Providers authorized with OAuth 2.0 (`billbridge connections authorize NAME`); the others
# take an API key (`billbridge connections add NAME --api-key-env VAR`).
OAUTH_APPS: dict[str, Callable[[Settings], OAuthApp]] = {
    QuickBooksInvoiceProvider.name: quickbooks.oauth_app,
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)
