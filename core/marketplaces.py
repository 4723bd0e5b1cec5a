"""The marketplace registry: one entry per cloud marketplace billbridge meters usage to.

Like core/providers.py for invoicing providers: the endpoint variable, the real endpoint, the
local emulator and its fixed port, and the module whose client reports usage. Adding a
marketplace is its client module under activities/marketplaces/, one entry below, and its
emulator package under emulators/.

Pure: no I/O and no imports of activities or emulators; modules are named by import path
("module:attribute") and imported only when used, so a production process never imports
emulator code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from billbridge.core.providers import load

__all__ = ["MARKETPLACE_ENTRIES", "MarketplaceEntry", "load_client", "marketplace_entry"]


@dataclass(frozen=True)
class MarketplaceEntry:
    name: str
    """The link's `marketplace` value ("aws", "azure", "gcp"), and its default connection id."""
    label: str
    """How messages name it: "AWS Marketplace"."""
    endpoint_env: str
    """The variable that points its API elsewhere (unset: the emulator, or `real_url`)."""
    real_url: str
    """The real API ("{region}" is filled from the connection's region where it has one)."""
    emulator: str
    """"module:Class" of its local emulator, built as Class(port=PORT) (an EmulatorService)."""
    emulator_port: int
    client: str
    """"module:attribute" of the callable (Settings, MarketplaceConfig) -> MarketplaceClient."""
    window: timedelta
    """How late an hour may still be reported (the marketplace refuses older usage)."""
    max_batch: int
    """Records per report request, the marketplace's maximum."""

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"


MARKETPLACE_ENTRIES: tuple[MarketplaceEntry, ...] = (
    MarketplaceEntry(
        name="aws",
        label="AWS Marketplace",
        endpoint_env="AWS_MARKETPLACE_ENDPOINT",
        # https://docs.aws.amazon.com/general/latest/gr/aws-marketplace.html
        real_url="https://metering.marketplace.{region}.amazonaws.com",
        emulator="billbridge.emulators.aws_marketplace:AwsMarketplaceEmulator",
        emulator_port=12121,
        client="billbridge.activities.marketplaces.aws:AwsMarketplaceClient.from_settings",
        # BatchMeterUsage: usage up to 24 h old (and a billing month closes at 06:00 UTC on
        # the 1st); at most 25 UsageRecords per call (../shared/contracts/aws-marketplace.md).
        window=timedelta(hours=24),
        max_batch=25,
    ),
    MarketplaceEntry(
        name="azure",
        label="Azure Marketplace",
        endpoint_env="AZURE_MARKETPLACE_ENDPOINT",
        # https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis
        real_url="https://marketplaceapi.microsoft.com",
        emulator="billbridge.emulators.azure_marketplace:AzureMarketplaceEmulator",
        emulator_port=12122,
        client="billbridge.activities.marketplaces.azure:AzureMarketplaceClient.from_settings",
        window=timedelta(hours=24),
        max_batch=25,
    ),
    MarketplaceEntry(
        name="gcp",
        label="Google Cloud Marketplace",
        endpoint_env="GCP_MARKETPLACE_ENDPOINT",
        # Service Control (reports); Partner Procurement (entitlements) is at
        # cloudcommerceprocurement.googleapis.com. The emulator serves both.
        real_url="https://servicecontrol.googleapis.com",
        emulator="billbridge.emulators.gcp_marketplace:GcpMarketplaceEmulator",
        emulator_port=12123,
        client="billbridge.activities.marketplaces.gcp:GcpMarketplaceClient.from_settings",
        # UNCONFIRMED: Google documents no hard window; reports are expected hourly.
        window=timedelta(hours=24),
        max_batch=100,
    ),
)


def marketplace_entry(name: str) -> MarketplaceEntry:
    for entry in MARKETPLACE_ENTRIES:
        if entry.name == name:
            return entry
    raise KeyError(name)


def load_client(name: str) -> Any:
    """The marketplace's client factory, (Settings, MarketplaceConfig) -> MarketplaceClient
    (imported now)."""
    return load(marketplace_entry(name).client)
