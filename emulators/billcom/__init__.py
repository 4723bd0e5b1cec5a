"""A local BILL (Bill.com) v3 emulator: login and sessions, the AR slice an invoice exporter uses
(customers, items, invoices), BILL's limits and error bodies, stateful and close enough to the
wire protocol that a client written against developer.bill.com cannot tell.

Usage (see ``emulator.BillcomEmulator``; ``Fault`` is every emulator's, from
``billbridge.emulators.faults``):

from billbridge.emulators.billcom import BillcomEmulator, Fault

with BillcomEmulator() as bill:
    base = bill.gateway_url              # like https://gateway.prod.bill.com/connect
    login = {**bill.credentials()}       # POST {base}/v3/login
    ...
"""

from ..faults import Fault, FaultKind
from .emulator import BillcomEmulator
from .errors import BillError
from .requestlog import LoggedRequest

__all__ = ["BillError", "BillcomEmulator", "Fault", "FaultKind", "LoggedRequest"]
