"""What MarketplaceMeteringWorkflow and its activities exchange: ids, hours and small totals.

A customer's usage never travels through history in bulk: the report activity reads the events
from the store and writes the ledger; the workflow carries the next hour to report, the last
report's summary and its own state (paused, needs attention, stopping).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

DEFAULT_GRACE_SECONDS = 600


class MeteringStatus(StrEnum):
    METERING = "metering"
    PAUSED = "paused"
    NEEDS_ATTENTION = "needs_attention"
    STOPPED = "stopped"


class MeteringInput(BaseModel):
    """Start (or continue-as-new) of one customer's metering to one marketplace."""

    customer_id: str
    marketplace: str
    grace_seconds: int = Field(default=DEFAULT_GRACE_SECONDS, ge=0)
    """How long after an hour closes late events are still waited for before it is reported."""
    next_hour: datetime | None = None
    """The first hour not reported yet (None: the hour the workflow starts in)."""
    paused: bool = False
    pause_reason: str = ""
    last_report: LastReport | None = None
    open_hours: dict[datetime, dict[str, str]] = Field(default_factory=dict)


class ReportHoursInput(BaseModel):
    customer_id: str
    marketplace: str
    hours: list[datetime]
    """Closed hours, oldest first, contiguous; the activity reports them in this order."""


class LastReport(BaseModel):
    hour: datetime
    quantities: dict[str, str] = Field(default_factory=dict)
    """Dimension -> the quantity reported, as a decimal string."""
    outcome: str = ""


class ReportHoursResult(BaseModel):
    next_hour: datetime
    """The first hour not reported yet after this activity."""
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    last_report: LastReport | None = None


class UsageTotals(BaseModel):
    """The `usage_ingested` signal: a customer's usage of some hours, per dimension, after unit
    conversion, as the store holds it after an ingest (absolute totals, not increments, so a
    duplicate event or a repeated signal changes nothing). Small: hours x dimensions."""

    hours: dict[datetime, dict[str, str]] = Field(default_factory=dict)


class MeteringState(BaseModel):
    """Answer of the workflow's `state` query."""

    customer_id: str
    marketplace: str
    status: MeteringStatus
    next_hour: datetime | None = None
    reason: str = ""
    last_report: LastReport | None = None
    hours_reported: int = 0
    open_hours: dict[datetime, dict[str, str]] = Field(default_factory=dict)
    """Running totals of the hours not reported yet (the open hour and any held ones), per
    dimension, as last told by ingestion (`usage_ingested`)."""


MeteringInput.model_rebuild()
