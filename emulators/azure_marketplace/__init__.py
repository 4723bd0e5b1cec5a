"""Azure Marketplace metering emulator (usageEvent, batchUsageEvent, Entra ID tokens).

Usage (see ``emulator.AzureMarketplaceEmulator``; ``Fault`` is every emulator's, from
``billbridge.emulators.faults``):

from billbridge.emulators.azure_marketplace import AzureMarketplaceEmulator

with AzureMarketplaceEmulator() as azure:
    azure.add_subscription("<subscription guid>", "plan1", ["tokens"])
    credential = ClientSecretCredential(
        azure.tenant_id, azure.client_id, azure.client_secret,
        authority=azure.authority_url, disable_instance_discovery=True,
        connection_verify=azure.ca_file,
    )
    # metering API at azure.base_url (http) or azure.authority_url (https)
"""

from ..faults import Fault, FaultKind
from .emulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    AzureMarketplaceEmulator,
)
from .entra import MARKETPLACE_RESOURCE_ID
from .requestlog import LoggedRequest

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TENANT_ID",
    "MARKETPLACE_RESOURCE_ID",
    "AzureMarketplaceEmulator",
    "Fault",
    "FaultKind",
    "LoggedRequest",
]
