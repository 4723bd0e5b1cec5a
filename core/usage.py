"""Usage events as the billing system sends them, and what marketplace metering is built from.

- UsageEvent: one event in Orb's ingestion shape (`POST /v1/ingest`,
  https://docs.withorb.com/api-reference/event/ingest-events; the Orb Python SDK's
  `orb/types/event_ingest_params.py`): `idempotency_key`, exactly one of `customer_id` /
  `external_customer_id`, `event_name`, `timestamp`, `properties`.
- DimensionMapping: an event name (and a numeric property to sum, or none to count) -> a
  marketplace dimension, times a unit conversion factor.
- MarketplaceLink: where one customer's usage goes in one marketplace, and how it is metered.
- LedgerRecord: what the ledger holds of one customer + dimension + hour.

Quantities are Decimal end to end: a property is numeric when it is a JSON number (read as
Decimal by the door, never through float) or a decimal string written like "12.30".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from billbridge.core.models import DECIMAL_TEXT_PATTERN

__all__ = [
    "BILLING_AMOUNT_EVENT",
    "BILLING_AMOUNT_PROPERTY",
    "MARKETPLACES",
    "MODES",
    "REQUIRED_ACCOUNT_FIELDS",
    "DimensionMapping",
    "IngestResult",
    "LedgerRecord",
    "MarketplaceLink",
    "PropertyValue",
    "UsageEvent",
    "canonical_number",
    "numeric_property",
    "record_id",
]

MARKETPLACES: tuple[str, ...] = ("aws", "azure", "gcp")
"""The names of core/marketplaces.py's entries (kept literal here: core/usage is pure)."""

MODES: tuple[str, ...] = ("dimensions", "billing_amount")

BILLING_AMOUNT_EVENT = "charges_to_date"
BILLING_AMOUNT_PROPERTY = "amount"
"""Billing-amount mode reads the customer's charges to date (cumulative, in the currency's
major unit, e.g. dollars) from usage events of this name and property, as the billing system
sends them (e.g. `{"event_name": "charges_to_date", "properties": {"amount": "12.34"}}`)."""

PropertyValue: TypeAlias = str | bool | int | Decimal | None
"""Orb: "Values in this dictionary must be numeric, boolean, or strings. Nested dictionaries
are disallowed." (event_ingest_params.py). null is kept as well (UNCONFIRMED whether Orb takes
it; it is neither summed nor counted as a number)."""


def _aware_utc(value: datetime) -> datetime:
    # Orb: "An ISO 8601 format date with no timezone offset (i.e. UTC)", e.g.
    # 2020-12-09T16:09:53Z. A timestamp without any zone is ambiguous (local time of the
    # sender?), so it is refused; an explicit offset is converted to UTC.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no timezone: send UTC with a Z (e.g. 2020-12-09T16:09:53Z)")
    return value.astimezone(UTC)


def numeric_property(value: object) -> Decimal | None:
    """The Decimal a property value stands for, or None when it is not a number.

    JSON numbers arrive as int or Decimal (the door parses floats as Decimal); a decimal string
    ("12.30") counts too, as in Orb's money fields. A Python float (only from a caller of the
    Python API) is read through its shortest repr, which is what its JSON text was.
    Booleans are not numbers.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str) and re.fullmatch(DECIMAL_TEXT_PATTERN, value):
        return Decimal(value)
    return None


def canonical_number(value: Decimal) -> str:
    """17, 17.0 and 17.00 are one number: the same text for comparisons and hashes."""
    normalized = value.normalize()
    return format(normalized, "f") if normalized != 0 else "0"


def _check_properties(value: dict[str, Any]) -> dict[str, PropertyValue]:
    checked: dict[str, PropertyValue] = {}
    for key, item in value.items():
        if isinstance(item, dict | list | tuple):
            raise ValueError(f"{key}: nested values are not allowed (numbers, booleans, strings)")
        if isinstance(item, float):
            item = Decimal(repr(item))
        if isinstance(item, Decimal) and not item.is_finite():
            raise ValueError(f"{key}: {item} is not a finite number")
        if not isinstance(item, str | bool | int | Decimal) and item is not None:
            raise ValueError(f"{key}: {type(item).__name__} is not a JSON value")
        checked[key] = item
    return checked


class UsageEvent(BaseModel):
    """One usage event in Orb's ingestion shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idempotency_key: str = Field(min_length=1)
    """Orb: "Exactly one event with a given idempotency key will be ingested"."""
    customer_id: str | None = None
    external_customer_id: str | None = None
    event_name: str = Field(min_length=1)
    timestamp: Annotated[datetime, AfterValidator(_aware_utc)]
    properties: Annotated[dict[str, Any], AfterValidator(_check_properties)] = Field(
        default_factory=dict
    )
    """Orb's guide calls properties optional ("Optional custom metadata"); its SDK marks the
    key required. Missing is taken as {}."""

    @field_validator("timestamp", mode="before")
    @classmethod
    def _no_numbers(cls, value: object) -> object:
        # pydantic would read 1700000000 as epoch seconds; Orb wants ISO 8601 text.
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            raise ValueError("expected an ISO 8601 date-time such as 2020-12-09T16:09:53Z")
        return value

    @model_validator(mode="after")
    def _one_customer(self) -> UsageEvent:
        # Orb: "Exactly one of these should be specified in a given ingestion event."
        if (self.customer_id is None) == (self.external_customer_id is None):
            raise ValueError(
                "customer_id, external_customer_id: give exactly one of customer_id and "
                "external_customer_id"
            )
        if self.customer_id is not None and not self.customer_id:
            raise ValueError("customer_id: empty")
        if self.external_customer_id is not None and not self.external_customer_id:
            raise ValueError("external_customer_id: empty")
        return self

    def number(self, name: str) -> Decimal | None:
        return numeric_property(self.properties.get(name))

    def content_key(self) -> dict[str, object]:
        """What makes two events with one idempotency key the same event: numbers compared by
        value (17 == 17.0), the timestamp as an instant."""
        props: dict[str, object] = {}
        for key, value in sorted(self.properties.items()):
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                props[key] = {"n": canonical_number(Decimal(value))}
            else:
                props[key] = value
        return {
            "customer_id": self.customer_id,
            "external_customer_id": self.external_customer_id,
            "event_name": self.event_name,
            "timestamp": self.timestamp.isoformat(),
            "properties": props,
        }


def _positive(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError("factor must be a number greater than 0")
    return value


def _decimal_input(value: object) -> object:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation as err:
            raise ValueError(f"{value!r} is not a decimal number") from err
    return value


class DimensionMapping(BaseModel):
    """Events named `event_name` become `dimension`: the sum of `property` (or, without a
    property, the number of events), times `factor` (a unit conversion: bytes -> GB is
    0.000000001, dollars -> cents is 100)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_name: str = Field(min_length=1)
    property: str | None = None
    dimension: str = Field(min_length=1, max_length=255)
    """AWS: Dimension is 1-255 characters (botocore meteringmarketplace UsageRecord)."""
    factor: Decimal = Decimal(1)

    @field_validator("factor", mode="before")
    @classmethod
    def _factor_text(cls, value: object) -> object:
        return _decimal_input(value)

    @field_validator("factor")
    @classmethod
    def _factor_positive(cls, value: Decimal) -> Decimal:
        return _positive(value)

    @field_validator("property")
    @classmethod
    def _property_named(cls, value: str | None) -> str | None:
        return value or None


REQUIRED_ACCOUNT_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    # One tuple per accepted way of naming the account (any one of them, complete).
    # AWS BatchMeterUsage UsageRecord: CustomerAWSAccountId + LicenseArn (concurrent
    # agreements), or the legacy CustomerIdentifier with the request's ProductCode
    # (https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html).
    "aws": (("customer_aws_account_id", "license_arn"), ("customer_identifier", "product_code")),
    # Azure usage event: resourceId (the SaaS subscription id) + planId
    # (https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis).
    "azure": (("resource_id", "plan_id"),),
    # Google: the entitlement's usageReportingId is the report's consumerId, and the service
    # name is where reports go (services/{serviceName}:report)
    # (https://cloud.google.com/marketplace/docs/partners/integrated-saas/configure-usage-reports).
    "gcp": (("usage_reporting_id", "service_name"),),
}

AWS_FIELD_PATTERNS: dict[str, str] = {
    # The shapes of botocore's meteringmarketplace 2016-01-14 service model (UsageRecord's
    # CustomerAWSAccountId, LicenseArn, CustomerIdentifier; BatchMeterUsage's ProductCode),
    # https://github.com/boto/botocore/blob/develop/botocore/data/meteringmarketplace/2016-01-14/service-2.json
    # (tests/test_marketplace_store.py compares these with the installed model).
    "customer_aws_account_id": r"^[0-9]+$",
    "license_arn": (
        r"^arn:aws[a-zA-Z-]*:[A-Za-z0-9][A-Za-z0-9_/.-]{0,62}:[A-Za-z0-9_/.-]{0,63}:"
        r"[A-Za-z0-9_/.-]{0,63}:[A-Za-z0-9][A-Za-z0-9:_/+=,@.-]{0,1023}$"
    ),
    "customer_identifier": r"[\s\S]*",
    "product_code": r"^[-a-zA-Z0-9/=:_.@]*$",
}
AWS_FIELD_MAX = 255
"""CustomerAWSAccountId, CustomerIdentifier and ProductCode: at most 255 characters."""

OPTIONAL_ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "aws": (),
    "azure": (),
    "gcp": ("entitlement",),
}

ACCOUNT_FIELD_ALIASES: dict[str, str] = {
    # The marketplaces' own spellings, accepted on input.
    "CustomerAWSAccountId": "customer_aws_account_id",
    "LicenseArn": "license_arn",
    "CustomerIdentifier": "customer_identifier",
    "ProductCode": "product_code",
    "resourceId": "resource_id",
    "planId": "plan_id",
    "usageReportingId": "usage_reporting_id",
    "serviceName": "service_name",
}


class MarketplaceLink(BaseModel):
    """A customer's account in one marketplace, the connection that reports to it, and how.

    mode "dimensions": the connection's dimension mappings turn events into quantities.
    mode "billing_amount": one dimension (`billing_amount_dimension`, e.g. `usage_fee` priced
    at $0.01) whose hourly quantity is the increase of the customer's charges to date, in cents.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(min_length=1)
    marketplace: Literal["aws", "azure", "gcp"]
    connection_id: str = Field(min_length=1)
    account: dict[str, str]
    mode: Literal["dimensions", "billing_amount"] = "dimensions"
    billing_amount_dimension: str | None = Field(default=None, max_length=255)

    @field_validator("account", mode="before")
    @classmethod
    def _aliases(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        return {ACCOUNT_FIELD_ALIASES.get(k, k): v for k, v in value.items()}

    @model_validator(mode="after")
    def _account_complete(self) -> MarketplaceLink:
        ways = REQUIRED_ACCOUNT_FIELDS[self.marketplace]
        allowed = {name for way in ways for name in way} | set(
            OPTIONAL_ACCOUNT_FIELDS[self.marketplace]
        )
        unknown = sorted(set(self.account) - allowed)
        if unknown:
            raise ValueError(
                f"account: {', '.join(unknown)}: not a field of a link to {self.marketplace} "
                f"(fields: {', '.join(sorted(allowed))})"
            )
        empty = sorted(k for k, v in self.account.items() if not v.strip())
        if empty:
            raise ValueError(f"account: {', '.join(empty)} is empty")
        complete = [way for way in ways if all(self.account.get(name) for name in way)]
        if not complete:
            wanted = " or ".join(" + ".join(way) for way in ways)
            raise ValueError(f"account: a link to {self.marketplace} needs {wanted}")
        if len(complete) > 1:
            raise ValueError(
                "account: give one of "
                + " or ".join(" + ".join(way) for way in ways)
                + ", not both"
            )
        if self.marketplace == "aws":
            for name, value in self.account.items():
                pattern = AWS_FIELD_PATTERNS[name]
                too_long = name != "license_arn" and len(value) > AWS_FIELD_MAX
                if too_long or not re.search(pattern, value):
                    raise ValueError(f"account: {name}: {value!r} does not match {pattern}")
        if self.mode == "billing_amount" and not self.billing_amount_dimension:
            raise ValueError(
                "billing_amount_dimension: billing_amount mode needs the dimension it reports "
                "(e.g. usage_fee)"
            )
        if self.mode == "dimensions" and self.billing_amount_dimension:
            raise ValueError("billing_amount_dimension: only for mode billing_amount")
        return self


def record_id(customer_id: str, dimension: str, hour_start: datetime) -> str:
    """billbridge's key of one hour: "<customer id>/<dimension>/<hour start ISO>"
    (activities/marketplaces/base.py UsageRecord.record_id)."""
    hour = hour_start.astimezone(UTC)
    if hour != hour.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"hour_start {hour_start.isoformat()} is not on the hour")
    return f"{customer_id}/{dimension}/{hour.isoformat()}"


LedgerOutcome: TypeAlias = Literal[
    "queued", "pending", "accepted", "duplicate", "needs_attention", "retry"
]


class LedgerRecord(BaseModel):
    """The ledger's row for one customer + dimension + hour: what was (or is about to be)
    sent, in which request, and what the marketplace answered."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    customer_id: str
    marketplace: str
    connection_id: str
    dimension: str
    hour_start: datetime
    quantity: Decimal
    request_id: int
    """The saved request (marketplace_requests) that carries this record now."""
    outcome: LedgerOutcome = "pending"
    """queued: saved, in no request yet (not sent); pending: saved in a request, no answer yet
    (it may be at the marketplace: resend the saved request)."""
    marketplace_ref: str = ""
    detail: str = ""
    accepted_quantity: Decimal | None = None
    attempts: int = 1
    """How many saved requests carried this record (a needs-attention hour can go again)."""
    saved_at: datetime
    answered_at: datetime | None = None

    @property
    def delivered(self) -> bool:
        """Accepted, or a duplicate holding the same quantity (compared by value)."""
        if self.outcome == "accepted":
            return True
        return self.outcome == "duplicate" and (
            self.accepted_quantity is None or self.accepted_quantity == self.quantity
        )


class IngestResult(BaseModel):
    """What one ingest call did. Every event of the call is either accepted (stored now) or
    a duplicate of an event stored before (its idempotency key, or earlier in the same call)."""

    model_config = ConfigDict(frozen=True)

    accepted: int = 0
    duplicates: int = 0
    conflicts: tuple[str, ...] = ()
    """Idempotency keys sent again with other content. Like Orb ("exactly one event with a
    given idempotency key will be ingested"), the first event stays and the later one is not
    stored, but it is reported here instead of being dropped silently (also counted in
    `duplicates`)."""
    unknown_customers: tuple[str, ...] = ()
    """customer_id / external_customer_id values no stored customer has (yet). Their events
    are kept; they count for the customer once it is upserted with that id."""
