"""The Metering Service's state and rules: products, subscriptions, held records, the window.

Sources (botocore/data/meteringmarketplace/2016-01-14/service-2.json, the model's documentation,
= https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html
and API_marketplace-metering_UsageRecord.html):

- one product per call; up to 25 UsageRecords (the model's UsageRecordList max, checked in
  shapes.py); a legacy record names ``CustomerIdentifier`` with the request's ``ProductCode``, a
  Concurrent Agreements record ``CustomerAWSAccountId`` + ``LicenseArn`` (mutually exclusive:
  "You can't specify both CustomerIdentifier and CustomerAWSAccountID");
- ``Quantity`` (whole) or ``QuantityAsDecimal`` (decimal string, pattern
  ``^(0|[1-9][0-9]{0,9})(\\.[0-9]{1,6})?$``), not both; neither means 0 ("Defaults to 0 if
  neither Quantity nor QuantityAsDecimal is specified"); a record failing these checks fails the
  whole request;
- "Identical requests are idempotent"; ``DuplicateRecord``: "A previously metered UsageRecord had
  the same customer, dimension, and time, but a different quantity"; "Quantities are compared by
  value ... 17, 17.0, and 17.00 are the same quantity". The time is taken to the hour, as
  MeterUsage documents ("The Timestamp request parameter is rounded down to the hour");
  UNCONFIRMED for BatchMeterUsage, whose docs say "time";
- window: "Usage records aren't accepted 24 hours or more after an event"; "We accept usage
  records for the previous billing month until 06:00 UTC on the first day of the next month";
  otherwise TimestampOutOfBoundsException, and "if any of the records are outside of the allowed
  range, the entire batch is not processed". A timestamp in the future is refused the same way
  (UNCONFIRMED: AWS documents no tolerance);
- ``CustomerNotSubscribed``: "does not have an active agreement or subscription with this
  product"; InvalidCustomerIdentifierException: "metered usage for a CustomerIdentifier that does
  not exist" (the emulator answers it for an identifier it never registered; UNCONFIRMED which
  of the two AWS returns for an unknown one); InvalidLicenseException: "Ensure the LicenseArn is
  valid, matches the customer"; InvalidUsageDimensionException, InvalidProductCodeException;
- UsageAllocations: "The sum of all UsageAllocation quantities must equal the quantity of the
  UsageRecord ... Allocations must use the same type of quantity" else
  InvalidUsageAllocationsException.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from . import errors

WINDOW = timedelta(hours=24)
MONTH_GRACE = timedelta(hours=6)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def month_closes(moment: datetime) -> datetime:
    """When usage of ``moment``'s billing month stops being accepted: 06:00 UTC on the 1st of
    the next month."""
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return nxt + MONTH_GRACE


@dataclass
class Subscription:
    product_code: str
    customer_identifier: str | None = None
    customer_aws_account_id: str | None = None
    license_arn: str | None = None
    active: bool = True
    registration_token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class AcceptedRecord:
    """One record the marketplace holds (the first one accepted for its key)."""

    metering_record_id: str
    product_code: str
    customer_identifier: str | None
    customer_aws_account_id: str | None
    license_arn: str | None
    dimension: str
    hour: datetime
    timestamp: datetime
    quantity: Decimal
    accepted_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "MeteringRecordId": self.metering_record_id,
            "ProductCode": self.product_code,
            "CustomerIdentifier": self.customer_identifier,
            "CustomerAWSAccountId": self.customer_aws_account_id,
            "LicenseArn": self.license_arn,
            "Dimension": self.dimension,
            "Hour": self.hour.isoformat(),
            "Timestamp": self.timestamp.isoformat(),
            "Quantity": str(self.quantity),
            "AcceptedAt": self.accepted_at.isoformat(),
        }


@dataclass
class _Resolved:
    record: dict[str, Any]
    subscription: Subscription
    key: tuple[str, ...]
    timestamp: datetime
    quantity: Decimal


class Metering:
    """State of one seller account. Thread-safe: every operation holds ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.products: dict[str, set[str]] = {}
        self.subscriptions: list[Subscription] = []
        self.held: dict[tuple[str, ...], AcceptedRecord] = {}
        self.accepted: list[AcceptedRecord] = []
        self.unprocessed_budget = 0
        self._now: datetime | None = None

    # -- clock -------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._now if self._now is not None else datetime.now(UTC)

    def set_now(self, moment: datetime | None) -> None:
        if moment is not None and moment.tzinfo is None:
            raise ValueError("set_now needs an aware datetime (UTC)")
        self._now = moment.astimezone(UTC) if moment is not None else None

    def reset(self) -> None:
        self.products.clear()
        self.subscriptions.clear()
        self.held.clear()
        self.accepted.clear()
        self.unprocessed_budget = 0
        self._now = None

    # -- lookups -----------------------------------------------------------------------------

    def _by_identifier(self, product: str, identifier: str) -> Subscription | None:
        return next(
            (
                s
                for s in self.subscriptions
                if s.product_code == product and s.customer_identifier == identifier
            ),
            None,
        )

    def _by_account(self, product: str, account: str) -> Subscription | None:
        return next(
            (
                s
                for s in self.subscriptions
                if s.product_code == product
                and s.customer_aws_account_id == account
                and s.license_arn is None
            ),
            None,
        )

    def _by_license(self, license_arn: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.license_arn == license_arn), None)

    # -- ResolveCustomer ---------------------------------------------------------------------

    def resolve_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body["RegistrationToken"]
        sub = next((s for s in self.subscriptions if s.registration_token == token), None)
        if sub is None:
            raise errors.AwsError("InvalidTokenException", "Registration token is invalid.")
        result: dict[str, Any] = {
            "ProductCode": sub.product_code,
            "CustomerAWSAccountId": sub.customer_aws_account_id,
            "CustomerIdentifier": sub.customer_identifier,
            "LicenseArn": sub.license_arn,
        }
        return {k: v for k, v in result.items() if v is not None}

    # -- BatchMeterUsage ---------------------------------------------------------------------

    def batch_meter_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        product = body.get("ProductCode") or None
        resolved = [self._resolve(record, product) for record in body["UsageRecords"]]
        now = self.now()
        for item in resolved:
            if item.timestamp > now or now - item.timestamp >= WINDOW:
                raise errors.AwsError(
                    "TimestampOutOfBoundsException",
                    f"Timestamp {item.timestamp.isoformat()} is outside the 24 hours before now.",
                )
            if now >= month_closes(item.timestamp):
                raise errors.AwsError(
                    "TimestampOutOfBoundsException",
                    f"Usage of {item.timestamp:%B %Y} is no longer accepted after "
                    f"{month_closes(item.timestamp).isoformat()}.",
                )
        results: list[dict[str, Any]] = []
        unprocessed: list[dict[str, Any]] = []
        for item in resolved:
            if self.unprocessed_budget > 0:
                self.unprocessed_budget -= 1
                unprocessed.append(item.record)
                continue
            results.append(self._meter(item, now))
        return {"Results": results, "UnprocessedRecords": unprocessed}

    def _meter(self, item: _Resolved, now: datetime) -> dict[str, Any]:
        if not item.subscription.active:
            return {"UsageRecord": item.record, "Status": "CustomerNotSubscribed"}
        held = self.held.get(item.key)
        if held is not None:
            if held.quantity == item.quantity:  # by value: 17 == 17.0 == "17.00"
                return {
                    "UsageRecord": item.record,
                    "MeteringRecordId": held.metering_record_id,
                    "Status": "Success",
                }
            # UNCONFIRMED: whether AWS returns a MeteringRecordId with DuplicateRecord.
            return {"UsageRecord": item.record, "Status": "DuplicateRecord"}
        sub = item.subscription
        accepted = AcceptedRecord(
            metering_record_id=str(uuid.uuid4()),
            product_code=sub.product_code,
            customer_identifier=item.record.get("CustomerIdentifier"),
            customer_aws_account_id=item.record.get("CustomerAWSAccountId"),
            license_arn=item.record.get("LicenseArn"),
            dimension=item.record["Dimension"],
            hour=hour_of(item.timestamp),
            timestamp=item.timestamp,
            quantity=item.quantity,
            accepted_at=now,
        )
        self.held[item.key] = accepted
        self.accepted.append(accepted)
        return {
            "UsageRecord": item.record,
            "MeteringRecordId": accepted.metering_record_id,
            "Status": "Success",
        }

    def _resolve(self, record: dict[str, Any], product: str | None) -> _Resolved:
        identifier = record.get("CustomerIdentifier")
        account = record.get("CustomerAWSAccountId")
        license_arn = record.get("LicenseArn")
        if identifier is not None and account is not None:
            raise errors.validation(
                ["CustomerIdentifier and CustomerAWSAccountId are mutually exclusive"]
            )
        if identifier is None and account is None:
            # UNCONFIRMED error type: a record must name its customer one way or the other.
            raise errors.validation(
                ["A UsageRecord needs CustomerIdentifier or CustomerAWSAccountId"]
            )
        if license_arn is not None:
            if account is None:
                raise errors.validation(["LicenseArn needs CustomerAWSAccountId"])
            sub = self._by_license(license_arn)
            if sub is None or sub.customer_aws_account_id != account:
                raise errors.AwsError(
                    "InvalidLicenseException",
                    "Ensure the LicenseArn is valid, matches the customer, and usage is within "
                    "the license activation period.",
                )
            if product is not None and product != sub.product_code:
                raise errors.AwsError(
                    "InvalidProductCodeException",
                    "The product code passed does not match the license's product.",
                )
            key: tuple[str, ...] = ("license", license_arn, account)
        else:
            if product is None:
                raise errors.validation(["ProductCode is required for records without LicenseArn"])
            if product not in self.products:
                raise errors.AwsError(
                    "InvalidProductCodeException",
                    "The product code passed does not match the product code used for "
                    "publishing the product.",
                )
            if identifier is not None:
                found = self._by_identifier(product, identifier)
                key = ("product", product, "customer", identifier)
            else:
                assert account is not None
                found = self._by_account(product, account)
                key = ("product", product, "account", account)
            if found is None:
                raise errors.AwsError(
                    "InvalidCustomerIdentifierException",
                    "You have metered usage for a CustomerIdentifier that does not exist.",
                )
            sub = found
        dimension = record["Dimension"]
        if dimension not in self.products.get(sub.product_code, set()):
            raise errors.AwsError(
                "InvalidUsageDimensionException",
                f"The usage dimension {dimension!r} does not match one of the UsageDimensions "
                "associated with products.",
            )
        quantity = _quantity(record)
        _check_allocations(record, quantity)
        timestamp = datetime.fromtimestamp(record["Timestamp"], UTC)
        return _Resolved(
            record, sub, (*key, dimension, hour_of(timestamp).isoformat()), timestamp, quantity
        )


def _quantity(record: dict[str, Any]) -> Decimal:
    whole, text = record.get("Quantity"), record.get("QuantityAsDecimal")
    if whole is not None and text is not None:
        # "You can't specify both Quantity and QuantityAsDecimal in a usage record ... the
        # entire BatchMeterUsage request fails". UNCONFIRMED: the error type.
        raise errors.validation(["Quantity and QuantityAsDecimal are mutually exclusive"])
    if text is not None:
        try:
            return Decimal(text)
        except InvalidOperation:  # the pattern check in shapes.py already refused it
            raise errors.validation([f"QuantityAsDecimal {text!r} is not a number"]) from None
    return Decimal(whole or 0)


def _check_allocations(record: dict[str, Any], quantity: Decimal) -> None:
    allocations = record.get("UsageAllocations")
    if not allocations:
        return
    decimal_record = record.get("QuantityAsDecimal") is not None
    total = Decimal(0)
    for allocation in allocations:
        whole = allocation.get("AllocatedUsageQuantity")
        text = allocation.get("AllocatedUsageQuantityAsDecimal")
        if (whole is None) == (text is None) or (text is not None) != decimal_record:
            raise errors.AwsError(
                "InvalidUsageAllocationsException",
                "Allocations must use the same type of quantity as the usage record.",
            )
        total += Decimal(text) if text is not None else Decimal(whole)
    if total != quantity:
        raise errors.AwsError(
            "InvalidUsageAllocationsException",
            "Sum of allocated usage quantities is not equal to the usage quantity.",
        )
