"""The provider registry: one entry per invoicing provider billbridge exports to.

Everything that used to be written out per provider in the configuration, the CLI and the local
services comes from here: the API-base variable and the real endpoint (core/config.py), the
emulator and its fixed local port (starter/local_services.py, `billbridge server`), the module
that exports (activities/providers/__init__.py) and its OAuth app. Adding a provider is its
module under activities/providers/, one entry below, and its emulator package under emulators/.

Pure: no I/O and no imports of activities or emulators, so core/config.py (and anything that
imports it) can read the registry. The provider module, its OAuth app and its emulator are named
by import path ("module:attribute") and imported only when used, so a production process never
imports emulator code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from billbridge.core.config import Settings

__all__ = [
    "DEFAULT_STRIPE_API_KEY",
    "PROVIDER_ENTRIES",
    "ProviderEntry",
    "load",
    "provider_entry",
]

# The key the Stripe emulator accepts: the default when STRIPE_API_KEY is unset.
DEFAULT_STRIPE_API_KEY = "sk_test_billbridge_emulator"


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    """The customer's `payment_provider` value, and the id of its default connection."""
    label: str
    """How messages name it: "Stripe"."""
    slug: str
    """Short name for options: `billbridge server --<slug>-port`."""
    api_base_env: str
    """The variable that points it elsewhere (unset: the emulator, or `real_url`)."""
    real_url: str
    """The real provider, used when the API base is unset and emulators are not allowed."""
    emulator: str
    """"module:Class" of its local emulator, built as Class(port=PORT) (an EmulatorService)."""
    emulator_port: int
    """Where the emulator listens by default; the provider module assumes the same port."""
    factory: str
    """"module:attribute" of the callable (Settings, ConnectionConfig) -> InvoiceProvider."""
    oauth_app: str | None = None
    """"module:attribute" of (Settings) -> OAuthApp when it authorizes with OAuth 2.0
    (`connections authorize`); None: it takes an API key (`connections add`)."""
    real_credentials: Callable[[Settings], str | None] | None = None
    """The variable (if any) whose value says the operator means the real provider: set while
    the API base is not, the local services warn that the emulator gets the exports."""

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"


def load(path: str) -> Any:
    """The object a "module:attribute.attribute" path names (imported now)."""
    module_name, _, attributes = path.partition(":")
    value: Any = importlib.import_module(module_name)
    for attribute in attributes.split("."):
        value = getattr(value, attribute)
    return value


def _stripe_key_set(settings: Settings) -> str | None:
    return "STRIPE_API_KEY" if settings.stripe_api_key != DEFAULT_STRIPE_API_KEY else None


def _quickbooks_client_set(settings: Settings) -> str | None:
    return "QUICKBOOKS_CLIENT_ID" if settings.quickbooks_client_id else None


PROVIDER_ENTRIES: tuple[ProviderEntry, ...] = (
    ProviderEntry(
        name="stripe_invoice",
        label="Stripe",
        slug="stripe",
        api_base_env="STRIPE_API_BASE",
        real_url="https://api.stripe.com",
        emulator="billbridge.emulators.stripe:StripeEmulator",
        emulator_port=12111,
        factory="billbridge.activities.providers.stripe_invoice:"
        "StripeInvoiceProvider.from_settings",
        real_credentials=_stripe_key_set,
    ),
    ProviderEntry(
        name="quickbooks",
        label="QuickBooks",
        slug="quickbooks",
        api_base_env="QUICKBOOKS_API_BASE",
        # Intuit's production Accounting API; activities/providers/quickbooks.py switches to
        # Intuit's OAuth endpoints for any *.intuit.com base, so API and OAuth stay consistent.
        real_url="https://quickbooks.api.intuit.com",
        # It also serves the OAuth endpoints, so `connections authorize` works against it.
        emulator="billbridge.emulators.quickbooks:QuickBooksEmulator",
        emulator_port=12112,
        factory="billbridge.activities.providers.quickbooks:"
        "QuickBooksInvoiceProvider.from_settings",
        oauth_app="billbridge.activities.providers.quickbooks:oauth_app",
        real_credentials=_quickbooks_client_set,
    ),
    ProviderEntry(
        name="bill.com",
        label="BILL",
        slug="billcom",
        api_base_env="BILLCOM_API_BASE",
        # BILL's production gateway; a credential with "environment": "sandbox" goes to
        # https://gateway.stage.bill.com/connect (activities/providers/billcom_client.py).
        real_url="https://gateway.prod.bill.com/connect",
        emulator="billbridge.emulators.billcom:BillcomEmulator",
        emulator_port=12113,
        factory="billbridge.activities.providers.billcom:BillcomInvoiceProvider.from_settings",
    ),
    ProviderEntry(
        name="netsuite",
        label="NetSuite",
        slug="netsuite",
        api_base_env="NETSUITE_API_BASE",
        # SuiteTalk REST's host is the account's own: "{account}" becomes the account id of the
        # connection's credential as hosts spell it (1234567_SB1 -> 1234567-sb1).
        real_url="https://{account}.suitetalk.api.netsuite.com",
        emulator="billbridge.emulators.netsuite:NetSuiteEmulator",
        emulator_port=12114,
        factory="billbridge.activities.providers.netsuite:NetSuiteInvoiceProvider.from_settings",
    ),
)


def provider_entry(name: str) -> ProviderEntry:
    for entry in PROVIDER_ENTRIES:
        if entry.name == name:
            return entry
    raise KeyError(name)
