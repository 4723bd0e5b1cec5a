"""The one small interface every marketplace client implements.

MarketplaceMeteringWorkflow's report activity builds UsageRecords from the store, asks the
client to `prepare` the exact request (pure: saved in the ledger before anything is sent), then
`send`s exactly that saved request, on every retry the same bytes, never a recomputed "now". The
client answers per record; whole-request failures are raised as core/errors.py types
(ProviderRateLimited with Retry-After, ProviderUnavailable, ProviderAuthFailed,
MarketplaceWindowClosed, ProviderRejected), each with its retry decision written down there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Protocol


class Outcome(StrEnum):
    """What the marketplace said of one record."""

    ACCEPTED = "accepted"
    """Taken now."""
    DUPLICATE = "duplicate"
    """The marketplace already holds this customer + dimension + hour. Delivered when the
    quantity it holds equals ours (`accepted_quantity`, where it tells); otherwise the hour
    needs attention, and a different quantity is never sent for it."""
    NEEDS_ATTENTION = "needs_attention"
    """Customer not subscribed, resource not active, unknown dimension, ...: a person must act;
    the hour is kept and sent again after the fix."""
    RETRY = "retry"
    """Throttled or unprocessed: send again later (the same saved request)."""


@dataclass(frozen=True)
class MarketplaceAccount:
    """Where a customer's usage goes in its marketplace (the link), by marketplace:

    - aws: `customer_aws_account_id` + `license_arn`, or legacy `customer_identifier` +
      `product_code`;
    - azure: `resource_id` + `plan_id`;
    - gcp: `usage_reporting_id` + `service_name` (and the `entitlement` it came from).
    """

    marketplace: str
    fields: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


@dataclass(frozen=True)
class UsageRecord:
    """One customer's quantity of one dimension in one hour, after unit conversion."""

    record_id: str
    """billbridge's key of the hour: "<customer id>/<dimension>/<hour start ISO>"; the
    marketplace dedup key (GCP operationId, Azure x-ms-requestid) is derived from it."""
    customer_id: str
    account: MarketplaceAccount
    dimension: str
    hour_start: datetime
    """UTC, on the hour; the hour is [hour_start, hour_start + 1 h)."""
    quantity: Decimal


@dataclass(frozen=True)
class RecordResult:
    record_id: str
    outcome: Outcome
    marketplace_ref: str = ""
    """MeteringRecordId (AWS), usageEventId (Azure), operationId (GCP)."""
    detail: str = ""
    """The marketplace's status and message, for the ledger and a person."""
    accepted_quantity: Decimal | None = None
    """For DUPLICATE: the quantity the marketplace holds, when it says."""


@dataclass(frozen=True)
class PreparedReport:
    """The exact request, JSON-able, saved in the ledger before it is sent."""

    marketplace: str
    record_ids: tuple[str, ...]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MarketplaceConfig:
    """One marketplace connection, loaded in an activity (secrets opened there, never in
    workflow history)."""

    connection_id: str
    marketplace: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    """aws: `access_key_id`, `secret_access_key` (absent: boto3's default chain);
    azure: `tenant_id`, `client_id`, `client_secret`;
    gcp: `service_account_json` (absent: application default credentials)."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """aws: `region`; gcp: `provider_id` (Partner Procurement `providers/{id}`)."""


class MarketplaceClient(Protocol):
    name: ClassVar[str]
    max_batch: ClassVar[int]
    integer_quantities: ClassVar[bool]
    """Only whole quantities (GCP int64, AWS legacy `Quantity`): the workflow carries the
    fractional remainder into the next hour."""
    reports_zero: ClassVar[bool]
    """Whether an hour with no usage is reported as 0 (AWS asks for it; Azure refuses 0)."""

    def check_credentials(self) -> None:
        """One cheap authenticated call; raises ProviderAuthFailed when refused."""

    def batch_key(self, record: UsageRecord) -> str:
        """Records with the same key may go in one request (any customers)."""

    def prepare(self, records: Sequence[UsageRecord]) -> PreparedReport:
        """The exact request for at most `max_batch` records of one batch key. Pure."""

    def send(self, report: PreparedReport) -> list[RecordResult]:
        """Send the saved request as it is; one result per record id, in order."""
