"""A local QuickBooks Online emulator: Intuit OAuth 2.0 and the Accounting API slice an invoice
exporter uses, stateful and close enough to the wire protocol that an httpx + authlib client
written against Intuit's docs cannot tell.

Usage (see ``emulator.QuickBooksEmulator``; ``Fault`` is both emulators', from
``billbridge.emulators.faults``):

from billbridge.emulators.quickbooks import QuickBooksEmulator, Fault

with QuickBooksEmulator(requests_per_minute=None) as qbo:
    authorize_url = f"{qbo.base_url}/connect/oauth2"
    token_url = f"{qbo.base_url}/oauth2/v1/tokens/bearer"
    api = f"{qbo.base_url}/v3/company/{qbo.realm_id}"
    ...
"""

from ..faults import Fault, FaultKind
from .emulator import QuickBooksEmulator
from .errors import QuickBooksError
from .requestlog import LoggedRequest

__all__ = ["Fault", "FaultKind", "LoggedRequest", "QuickBooksEmulator", "QuickBooksError"]
