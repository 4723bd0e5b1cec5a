"""The store's tables (one sqlmodel registry of their own) and the row views it returns.

JSON is stored in text columns (portable across both databases); amounts are stored as their
decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, Index, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from billbridge.activities.store.helpers import _utcnow

# --------------------------------------------------------------------------- tables


class _StoreModel(SQLModel, registry=registry()):
    """Own registry/metadata: billbridge's tables never collide with other SQLModel users."""


def _ts() -> Any:
    return Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


class InvoiceTable(_StoreModel, table=True):
    __tablename__ = "invoices"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    currency: str
    total: str
    amount_due: str
    line_count: int
    header_json: str = Field(sa_type=Text)
    content_sha256: str
    received_at: datetime = _ts()


class InvoiceLineTable(_StoreModel, table=True):
    __tablename__ = "invoice_lines"

    invoice_id: str = Field(primary_key=True, foreign_key="invoices.id")
    position: int = Field(primary_key=True)
    line_id: str
    payload_json: str = Field(sa_type=Text)


class CustomerTable(_StoreModel, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    external_customer_id: str | None = Field(default=None, index=True)
    payment_provider: str | None = None
    payment_provider_id: str | None = None
    payload_json: str = Field(sa_type=Text)
    updated_at: datetime = _ts()


class ConnectionTable(_StoreModel, table=True):
    __tablename__ = "connections"

    id: str = Field(primary_key=True)
    provider: str
    enabled: bool = Field(default=True, sa_type=Boolean)
    credentials_ref: str | None = None
    settings_json: str = Field(default="{}", sa_type=Text)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ItemMappingTable(_StoreModel, table=True):
    __tablename__ = "item_mappings"

    connection_id: str = Field(primary_key=True)
    billing_item_id: str = Field(primary_key=True)
    """An Orb item id, or an adjustment key such as ``adjustment:discount``."""
    provider_item_id: str
    updated_at: datetime = _ts()


class CustomerLinkTable(_StoreModel, table=True):
    __tablename__ = "customer_links"

    connection_id: str = Field(primary_key=True)
    customer_id: str = Field(primary_key=True)
    provider_customer_id: str
    verified_at: datetime = _ts()


class ExportRecordTable(_StoreModel, table=True):
    __tablename__ = "export_records"

    invoice_id: str = Field(primary_key=True)
    provider: str = Field(primary_key=True)
    status: str = "pending"
    external_id: str | None = None
    external_url: str | None = None
    billing_total: str | None = None
    provider_total: str | None = None
    provider_amount_due: str | None = None
    line_count: int | None = None
    request_count: int = 0
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ExportAttemptTable(_StoreModel, table=True):
    __tablename__ = "export_attempts"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(index=True)
    provider: str
    step: str
    error: str = Field(sa_type=Text)
    at: datetime = _ts()


class AccountSettingTable(_StoreModel, table=True):
    """Account-wide export settings (default provider, which customers export), as JSON."""

    __tablename__ = "account_settings"

    key: str = Field(primary_key=True)
    value_json: str = Field(sa_type=Text)
    updated_at: datetime = _ts()


class UsageEventTable(_StoreModel, table=True):
    """Usage events as ingested (Orb's shape), one row per idempotency key: the first wins."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_customer_time", "customer_id", "timestamp"),
        Index("ix_usage_events_external_time", "external_customer_id", "timestamp"),
        Index("ix_usage_events_received", "received_at"),
    )

    idempotency_key: str = Field(primary_key=True)
    customer_id: str | None = None
    """As sent, or resolved from external_customer_id when the customer was known."""
    external_customer_id: str | None = None
    event_name: str
    timestamp: datetime = Field(sa_type=DateTime(timezone=True))
    properties_json: str = Field(sa_type=Text)
    """Numbers as their exact decimal text."""
    content_sha256: str
    received_at: datetime = _ts()


class MarketplaceLinkTable(_StoreModel, table=True):
    __tablename__ = "marketplace_links"

    customer_id: str = Field(primary_key=True)
    marketplace: str = Field(primary_key=True)
    connection_id: str = Field(index=True)
    account_json: str = Field(sa_type=Text)
    mode: str = "dimensions"
    billing_amount_dimension: str | None = None
    updated_at: datetime = _ts()


class DimensionMappingTable(_StoreModel, table=True):
    __tablename__ = "marketplace_dimensions"

    connection_id: str = Field(primary_key=True)
    event_name: str = Field(primary_key=True)
    dimension: str = Field(primary_key=True)
    property: str | None = None
    """None: count the events."""
    factor: str = "1"
    updated_at: datetime = _ts()


class MarketplaceRequestTable(_StoreModel, table=True):
    """The exact requests sent (or about to be) to a marketplace, saved before the call."""

    __tablename__ = "marketplace_requests"

    id: int | None = Field(default=None, primary_key=True)
    connection_id: str = Field(index=True)
    marketplace: str
    record_ids_json: str = Field(sa_type=Text)
    payload_json: str = Field(sa_type=Text)
    saved_at: datetime = _ts()
    answered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    answer_json: str | None = Field(default=None, sa_type=Text)


class LedgerTable(_StoreModel, table=True):
    """One row per customer + dimension + hour: the quantity, its request, the answer."""

    __tablename__ = "marketplace_ledger"
    __table_args__ = (Index("ix_marketplace_ledger_customer_hour", "customer_id", "hour_start"),)

    record_id: str = Field(primary_key=True)
    customer_id: str
    marketplace: str
    connection_id: str
    dimension: str
    hour_start: datetime = Field(sa_type=DateTime(timezone=True))
    quantity: str
    quantity_key: str
    """The quantity by value (17 == 17.00), what "the same quantity" compares."""
    request_id: int = Field(index=True)
    outcome: str = "pending"
    marketplace_ref: str = ""
    detail: str = Field(default="", sa_type=Text)
    accepted_quantity: str | None = None
    attempts: int = 1
    saved_at: datetime = _ts()
    answered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ConnectionGateTable(_StoreModel, table=True):
    """One connection's pause switch and its request rate, shared by every worker process.

    `next_start` is the GCRA's theoretical arrival time (Unix seconds) of the connection's next
    request; `factor` (0 < factor <= 1) is the share of the configured rate used since the
    provider last refused a request for its rate (it recovers with time, from `factor_at`).
    """

    __tablename__ = "connection_gates"

    connection_id: str = Field(primary_key=True)
    paused: bool = Field(default=False, sa_type=Boolean)
    pause_reason: str = Field(default="", sa_type=Text)
    paused_since: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    resumed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    next_start: float = Field(default=0.0, sa_type=Float)
    factor: float = Field(default=1.0, sa_type=Float)
    factor_at: float = Field(default=0.0, sa_type=Float)
    throttled_count: int = 0
    updated_at: datetime = _ts()


_TABLES = [
    AccountSettingTable,
    InvoiceTable,
    InvoiceLineTable,
    CustomerTable,
    ConnectionTable,
    ItemMappingTable,
    CustomerLinkTable,
    ExportRecordTable,
    ExportAttemptTable,
    UsageEventTable,
    MarketplaceLinkTable,
    DimensionMappingTable,
    MarketplaceRequestTable,
    LedgerTable,
    ConnectionGateTable,
]


# --------------------------------------------------------------------------- row views


@dataclass(frozen=True)
class ConnectionRow:
    id: str
    provider: str
    enabled: bool
    credentials_ref: str | None
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ExportRow:
    invoice_id: str
    provider: str
    status: str
    external_id: str | None
    external_url: str | None
    billing_total: str | None
    provider_total: str | None
    provider_amount_due: str | None
    line_count: int | None
    request_count: int
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttemptRow:
    id: int
    invoice_id: str
    provider: str
    step: str
    error: str
    at: datetime
