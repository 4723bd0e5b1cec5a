"""A local NetSuite emulator: one account's SuiteTalk REST web services (records, SuiteQL, the
OAuth 2.0 client-credentials token endpoint and token-based authentication), stateful, with the
account's concurrency limit, fault injection and a request log.

Usage (see ``emulator.NetSuiteEmulator``):

with NetSuiteEmulator(concurrency_limit=5) as ns:
    credentials = ns.m2m_credentials()  # a key pair whose public key the account knows
    item = ns.create_item("API calls")
    ...
"""

from ..faults import Fault, FaultKind
from .emulator import NetSuiteEmulator
from .errors import NetSuiteError
from .records import AccountSettings
from .requestlog import LoggedRequest

__all__ = [
    "AccountSettings",
    "Fault",
    "FaultKind",
    "LoggedRequest",
    "NetSuiteEmulator",
    "NetSuiteError",
]
