"""billbridge's persistent store (sqlmodel; SQLite file or PostgreSQL via psycopg 3).

Synchronous API, safe to share between threads (one short transaction per call). The
same SQLite file can be used by a worker and a CLI at the same time (see
:mod:`~billbridge.activities.store.base`).

:class:`Store` is composed of one mixin per concern, all built on
:class:`~billbridge.activities.store.base.StoreBase` (engine, sessions, upserts):

- ``tables``: the nine tables and the row views the store returns;
- ``invoices``: issued invoices, stored as a header row plus one row per line;
- ``customers``: Orb customers and their links to each connection's provider customer;
- ``connections``: connections, their sealed credentials, account-wide settings;
- ``mappings``: item mappings per connection;
- ``exports``: export records, invoices waiting for a fix, failed attempts;
- ``usage``: usage events (Orb's ingestion shape), totals per dimension and hour;
- ``marketplace``: marketplace links, dimension mappings, the metering ledger;
- ``metering_queue``: records queued for sending, batched across customers;
- ``gates``: each connection's pause switch and request rate, shared by every worker.
"""

from __future__ import annotations

from billbridge.activities.store.base import StoreBase, normalize_database_url
from billbridge.activities.store.connections import ConnectionMixin
from billbridge.activities.store.customers import CustomerMixin
from billbridge.activities.store.errors import InvoiceConflictError, StoreError
from billbridge.activities.store.exports import ExportMixin
from billbridge.activities.store.gates import GateMixin, GateRow, GateTurn
from billbridge.activities.store.invoices import VOLATILE_INVOICE_FIELDS, InvoiceMixin
from billbridge.activities.store.mappings import MappingMixin
from billbridge.activities.store.marketplace import (
    LedgerConflict,
    MarketplaceMixin,
    MarketplaceSetupError,
    SavedRequest,
)
from billbridge.activities.store.metering_queue import MeteringQueueMixin
from billbridge.activities.store.tables import AccountSettingTable as AccountSettingTable
from billbridge.activities.store.tables import (
    AttemptRow,
    ConnectionRow,
    ConnectionTable,
    CustomerLinkTable,
    CustomerTable,
    ExportAttemptTable,
    ExportRecordTable,
    ExportRow,
    InvoiceLineTable,
    InvoiceTable,
    ItemMappingTable,
)
from billbridge.activities.store.tables import _StoreModel as _StoreModel
from billbridge.activities.store.usage import (
    SkippedEvent,
    StoredUsageEvent,
    UsageAggregate,
    UsageMixin,
)

__all__ = [
    "VOLATILE_INVOICE_FIELDS",
    "AttemptRow",
    "ConnectionRow",
    "ConnectionTable",
    "CustomerLinkTable",
    "CustomerTable",
    "ExportAttemptTable",
    "ExportRecordTable",
    "ExportRow",
    "GateRow",
    "GateTurn",
    "InvoiceConflictError",
    "InvoiceLineTable",
    "InvoiceTable",
    "ItemMappingTable",
    "LedgerConflict",
    "MarketplaceSetupError",
    "SavedRequest",
    "SkippedEvent",
    "Store",
    "StoreError",
    "StoredUsageEvent",
    "UsageAggregate",
    "normalize_database_url",
]


class Store(
    InvoiceMixin,
    CustomerMixin,
    ConnectionMixin,
    MappingMixin,
    ExportMixin,
    UsageMixin,
    MarketplaceMixin,
    MeteringQueueMixin,
    GateMixin,
    StoreBase,
):
    """All of billbridge's persistent state. One instance per process is enough."""
