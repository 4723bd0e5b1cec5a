"""Provider registry: the customer's `payment_provider` value -> the module that exports to it.

Built from the entries in core/providers.py (one per provider: its module, its OAuth app, its
API-base variable, its emulator); nothing here names a provider.
"""

from __future__ import annotations

from collections.abc import Callable

from billbridge.activities.oauth import OAuthApp
from billbridge.activities.providers.base import ConnectionConfig, InvoiceProvider
from billbridge.core.config import Settings
from billbridge.core.providers import PROVIDER_ENTRIES, load

ProviderFactory = Callable[[Settings, ConnectionConfig], InvoiceProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    entry.name: load(entry.factory) for entry in PROVIDER_ENTRIES
}

# Providers authorized with OAuth 2.0 (`billbridge connections authorize NAME`); the others
# take an API key (`billbridge connections add NAME --api-key-env VAR`).
OAUTH_APPS: dict[str, Callable[[Settings], OAuthApp]] = {
    entry.name: load(entry.oauth_app) for entry in PROVIDER_ENTRIES if entry.oauth_app
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)
