"""A local Google Cloud Marketplace (SaaS) emulator: Service Control v1 `services.check` and
`services.report`, and Partner Procurement v1 entitlements, on one port, stateful, so the
official clients (google-cloud-service-control's REST transport, google-api-python-client's
discovery client) talk to it unchanged.

from billbridge.emulators.gcp_marketplace import GcpMarketplaceEmulator

with GcpMarketplaceEmulator() as gcp:
    gcp.add_entitlement("acme", "ent-1", "project_number:123", "svc.gcpmarketplace.acme.com",
                        ["requests"])
    ...  # client_options={"api_endpoint": gcp.base_url}
    gcp.accepted()
"""

from ..faults import Fault, FaultKind
from .emulator import GcpMarketplaceEmulator
from .errors import GoogleError
from .requestlog import LoggedRequest

__all__ = ["Fault", "FaultKind", "GcpMarketplaceEmulator", "GoogleError", "LoggedRequest"]
