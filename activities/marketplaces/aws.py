"""AWS Marketplace Metering Service client: BatchMeterUsage through boto3 ``meteringmarketplace``.

One call carries at most 25 UsageRecords of ONE product (botocore model
``meteringmarketplace/2016-01-14``: UsageRecordList max 25; "Each BatchMeterUsage request is for
only one product",
https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html).
The caller groups records by product before `prepare`; `prepare` refuses a mixed batch rather
than guess. Concurrent Agreements records (``customer_aws_account_id`` + ``license_arn``) carry
no request-level ProductCode ("do NOT include ProductCode at the request level" for LicenseArn
integrations: "Sending metering records with both ProductCode and LicenseArn for the same
customer within the same hour will result in duplicate billing"); legacy records
(``customer_identifier`` + ``product_code``) carry it, so the two kinds never share a call.

Quantities go as ``QuantityAsDecimal`` ("Use QuantityAsDecimal instead"; ``Quantity`` is
deprecated since 2026-10-20), exact decimal text matching the model's pattern
``^(0|[1-9][0-9]{0,9})(\\.[0-9]{1,6})?$``: at most 6 decimal places and 10 integer digits. A
quantity finer than a millionth cannot be sent: `prepare` raises, and the workflow must carry
such remainders (``DECIMAL_PLACES``). Zero is reported (``reports_zero``): AWS's seller guidance
is an hourly record per customer even when nothing was used.

Retries belong to Temporal: botocore makes exactly one attempt (``total_max_attempts=1``; note
botocore's ``max_attempts`` counts retries, so ``{"max_attempts": 1}`` would be two attempts,
botocore/args.py ``_compute_retry_max_attempts``).

How each whole-request error is decided (exception names from the model's BatchMeterUsage
errors; common auth errors as AWS JSON services send them):

==================================  ========================  ==========================
AWS error                           billbridge error          why
==================================  ========================  ==========================
ThrottlingException                 ProviderRateLimited       retried after Retry-After
                                                              (AWS sends none: 2 s default)
InternalServiceErrorException,      ProviderUnavailable       retried with back-off
any 5xx, connection / timeout
TimestampOutOfBoundsException       MarketplaceWindowClosed   no retry makes an hour younger
UnrecognizedClientException,        ProviderAuthFailed        a person fixes the key / IAM
InvalidSignatureException,
MissingAuthenticationToken...,
IncompleteSignature..., Access
Denied..., ExpiredToken..., no
credentials
InvalidUsageDimensionException,     ProviderItemMissing       the product or dimension is
InvalidProductCodeException                                   not (yet) in the listing
InvalidCustomerIdentifierException, ProviderCustomerMissing   the customer's link is wrong
InvalidLicenseException                                       (or the license lapsed)
DisabledApiException                ProviderSetupNeeded       the API is off in the region
ValidationException, Serialization  ProviderRejected          a bug in the request: never
Exception, InvalidTag...,                                     retried
InvalidUsageAllocations..., other
4xx
==================================  ========================  ==========================

Per record (UsageRecordResult.Status): Success -> ACCEPTED (MeteringRecordId);
DuplicateRecord -> NEEDS_ATTENTION: AWS answers it only for "the same customer, dimension, and
time, but a different quantity" (identical records succeed again, idempotently; BatchMeterUsage
API reference), so AWS holds another quantity for the hour and a person must look;
CustomerNotSubscribed -> NEEDS_ATTENTION; in UnprocessedRecords (or missing) -> RETRY.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from billbridge.activities.marketplaces.base import (
    MarketplaceConfig,
    Outcome,
    PreparedReport,
    RecordResult,
    UsageRecord,
)
from billbridge.core.errors import (
    ExportError,
    MarketplaceWindowClosed,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderItemMissing,
    ProviderRateLimited,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderUnavailable,
    retry_after,
)
from billbridge.core.marketplaces import marketplace_entry
from billbridge.core.metering import HOLDS_ANOTHER_QUANTITY
from billbridge.core.timeouts import request_timeout

if TYPE_CHECKING:
    from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient

    from billbridge.core.config import Settings

__all__ = ["AwsMarketplaceClient", "endpoint_url", "quantity_text"]

DEFAULT_REGION = "us-east-1"
DECIMAL_PLACES = 6
MAX_QUANTITY = Decimal("9999999999.999999")
THROTTLE_BACKOFF = timedelta(seconds=2)
# The token ResolveCustomer is asked to resolve by check_credentials: no buyer ever has it.
CREDENTIAL_CHECK_TOKEN = "billbridge-credential-check"

AUTH_ERRORS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
        "AccessDenied",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
ITEM_ERRORS = frozenset({"InvalidUsageDimensionException", "InvalidProductCodeException"})
CUSTOMER_ERRORS = frozenset({"InvalidCustomerIdentifierException", "InvalidLicenseException"})
UNAVAILABLE_ERRORS = frozenset(
    {"InternalServiceErrorException", "InternalFailure", "ServiceUnavailable"}
)


def endpoint_url(settings: Settings, region: str) -> str:
    """Where the Metering Service is: the configured endpoint (core/config.py decides: the local
    emulator on the embedded defaults, else AWS_MARKETPLACE_ENDPOINT or AWS's regional endpoint,
    https://docs.aws.amazon.com/general/latest/gr/aws-marketplace.html)."""
    entry = marketplace_entry("aws")
    configured = settings.marketplace_endpoint("aws") or entry.emulator_url
    return configured.format(region=region)


def quantity_text(quantity: Decimal) -> str:
    """``QuantityAsDecimal``: plain decimal text matching the model's pattern (no exponent, no
    sign, no leading zeros, 1-6 decimals when any). Raises ValueError for what AWS cannot take
    (negative, finer than 1e-6, more than 10 integer digits): the caller carries it instead."""
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"AWS takes non-negative quantities only, not {quantity}")
    if quantity > MAX_QUANTITY:
        raise ValueError(f"{quantity} exceeds QuantityAsDecimal's maximum {MAX_QUANTITY}")
    exponent = quantity.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -DECIMAL_PLACES:
        raise ValueError(
            f"{quantity} has more than {DECIMAL_PLACES} decimal places (QuantityAsDecimal)"
        )
    text = format(quantity.normalize(), "f")
    return "0" if Decimal(text) == 0 else text


def _record_key(usage: Mapping[str, Any]) -> tuple[str, str, str, str, int]:
    """Matches a result's echoed UsageRecord to the record sent (customer, dimension, time)."""
    stamp = usage.get("Timestamp")
    seconds = int(stamp.timestamp()) if isinstance(stamp, datetime) else int(stamp or 0)
    return (
        str(usage.get("CustomerIdentifier") or ""),
        str(usage.get("CustomerAWSAccountId") or ""),
        str(usage.get("LicenseArn") or ""),
        str(usage.get("Dimension") or ""),
        seconds,
    )


class AwsMarketplaceClient:
    name: ClassVar[str] = "aws"
    max_batch: ClassVar[int] = 25
    integer_quantities: ClassVar[bool] = False
    reports_zero: ClassVar[bool] = True
    decimal_places: ClassVar[int] = DECIMAL_PLACES
    """Finest quantity QuantityAsDecimal carries; finer remainders stay with the caller."""

    def __init__(self, client: MarketplaceMeteringClient, connection_id: str = "aws") -> None:
        self._client = client
        self.connection_id = connection_id

    @classmethod
    def from_settings(cls, settings: Settings, config: MarketplaceConfig) -> AwsMarketplaceClient:
        """A client for one connection: its region (default us-east-1), its key pair (absent:
        boto3's default credential chain), one attempt per call within the provider request
        timeout (core/timeouts.py)."""
        region = config.settings.get("region") or DEFAULT_REGION
        creds = config.credentials
        session = boto3.session.Session(
            aws_access_key_id=creds.get("access_key_id") or None,
            aws_secret_access_key=creds.get("secret_access_key") or None,
            aws_session_token=creds.get("session_token") or None,
            region_name=region,
        )
        timeout = request_timeout(None).total_seconds()
        client = session.client(
            "meteringmarketplace",
            region_name=region,
            endpoint_url=endpoint_url(settings, region),
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )
        return cls(client, config.connection_id)

    # -- the protocol ------------------------------------------------------------------------

    def batch_key(self, record: UsageRecord) -> str:
        """One call is for one product and one integration kind (the BatchMeterUsage API
        reference: ProductCode is the call's, and LicenseArn records carry their own)."""
        account = record.account
        if account.get("license_arn"):
            return "license"
        return f"product:{account.get('product_code')}"

    def prepare(self, records: Sequence[UsageRecord]) -> PreparedReport:
        """The exact BatchMeterUsage parameters, JSON-able (Timestamp as epoch seconds of the
        hour start: what boto3 sends on the wire). Raises ValueError for a batch AWS would
        refuse or that mixes products / integration kinds."""
        if not records:
            raise ValueError("no records to prepare")
        if len(records) > self.max_batch:
            raise ValueError(f"{len(records)} records; BatchMeterUsage takes {self.max_batch}")
        usage: list[dict[str, Any]] = []
        product_codes: set[str] = set()
        kinds: set[str] = set()
        seen: set[tuple[str, str, str, str, int]] = set()
        for record in records:
            if record.account.marketplace != self.name:
                raise ValueError(f"{record.record_id}: not an AWS Marketplace account")
            hour = record.hour_start
            if hour.tzinfo is None or hour.utcoffset() != timedelta(0):
                raise ValueError(f"{record.record_id}: hour_start must be UTC")
            if hour != hour.replace(minute=0, second=0, microsecond=0):
                raise ValueError(f"{record.record_id}: hour_start must be on the hour")
            item: dict[str, Any] = {
                "Timestamp": int(hour.timestamp()),
                "Dimension": record.dimension,
                "QuantityAsDecimal": quantity_text(record.quantity),
            }
            account = record.account
            if account.get("license_arn"):
                if not account.get("customer_aws_account_id"):
                    raise ValueError(f"{record.record_id}: license_arn needs the account id")
                item["CustomerAWSAccountId"] = account.get("customer_aws_account_id")
                item["LicenseArn"] = account.get("license_arn")
                kinds.add("license")
            elif account.get("customer_identifier") and account.get("product_code"):
                item["CustomerIdentifier"] = account.get("customer_identifier")
                product_codes.add(account.get("product_code"))
                kinds.add("product")
            else:
                raise ValueError(
                    f"{record.record_id}: the AWS link needs customer_aws_account_id + "
                    "license_arn, or customer_identifier + product_code"
                )
            key = _record_key(item)
            if key in seen:
                raise ValueError(f"{record.record_id}: the same customer, dimension and hour twice")
            seen.add(key)
            usage.append(item)
        if len(kinds) > 1 or len(product_codes) > 1:
            raise ValueError(
                "one BatchMeterUsage call is for one product and one integration kind; "
                "group the records first"
            )
        payload: dict[str, Any] = {"UsageRecords": usage}
        if product_codes:
            payload = {"ProductCode": product_codes.pop(), **payload}
        return PreparedReport(
            marketplace=self.name,
            record_ids=tuple(r.record_id for r in records),
            payload=payload,
        )

    def send(self, report: PreparedReport) -> list[RecordResult]:
        """BatchMeterUsage with exactly the saved parameters; one result per record id."""
        sent = report.payload["UsageRecords"]
        if len(sent) != len(report.record_ids):
            raise ValueError("the report's records and record ids differ in number")
        try:
            response = self._client.batch_meter_usage(**self.call_params(report.payload))
        except (ClientError, BotoCoreError) as err:
            raise self._error(err) from err
        ids = {_record_key(item): rid for item, rid in zip(sent, report.record_ids, strict=True)}
        outcomes: dict[str, RecordResult] = {}
        for result in response.get("Results", []):
            rid = ids.get(_record_key(result.get("UsageRecord", {})))
            if rid is not None:
                outcomes[rid] = self._result(rid, result)
        for usage in response.get("UnprocessedRecords", []):
            rid = ids.get(_record_key(usage))
            if rid is not None:
                outcomes[rid] = RecordResult(rid, Outcome.RETRY, detail="UnprocessedRecords")
        return [
            outcomes.get(rid) or RecordResult(rid, Outcome.RETRY, detail="no result returned")
            for rid in report.record_ids
        ]

    def check_credentials(self) -> None:
        """ResolveCustomer with a token no buyer has: InvalidTokenException (or
        ExpiredTokenException) means AWS verified the signature and the key may call the
        service, so the credentials are good; an auth error raises ProviderAuthFailed. It
        needs the ``aws-marketplace:ResolveCustomer`` permission, which a SaaS seller's role has
        for registrations anyway; it meters nothing (BatchMeterUsage has no dry run)."""
        try:
            self._client.resolve_customer(RegistrationToken=CREDENTIAL_CHECK_TOKEN)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("InvalidTokenException", "ExpiredTokenException"):
                return
            raise self._error(err) from err
        except BotoCoreError as err:
            raise self._error(err) from err

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def call_params(payload: Mapping[str, Any]) -> dict[str, Any]:
        """The boto3 keyword arguments of a saved payload (epoch seconds back to datetimes,
        which boto3 serializes to the same epoch seconds)."""
        params: dict[str, Any] = {k: v for k, v in payload.items() if k != "UsageRecords"}
        params["UsageRecords"] = [
            {**item, "Timestamp": datetime.fromtimestamp(item["Timestamp"], UTC)}
            for item in payload["UsageRecords"]
        ]
        return params

    @staticmethod
    def _result(rid: str, result: Mapping[str, Any]) -> RecordResult:
        status = str(result.get("Status", ""))
        ref = str(result.get("MeteringRecordId") or "")
        if status == "Success":
            return RecordResult(rid, Outcome.ACCEPTED, ref, detail=status)
        if status == "DuplicateRecord":
            return RecordResult(
                rid,
                Outcome.NEEDS_ATTENTION,
                ref,
                detail=f"DuplicateRecord: AWS {HOLDS_ANOTHER_QUANTITY} for this customer, "
                "dimension and hour",
            )
        if status == "CustomerNotSubscribed":
            return RecordResult(
                rid,
                Outcome.NEEDS_ATTENTION,
                ref,
                detail="CustomerNotSubscribed: no active agreement (or the account is suspended)",
            )
        return RecordResult(rid, Outcome.NEEDS_ATTENTION, ref, detail=f"unknown status {status!r}")

    def _error(self, err: Exception) -> ExportError:
        """The billbridge error of a failed call (see the table at the top)."""
        mapped = self._map(err)
        mapped.provider = self.connection_id
        return mapped

    @staticmethod
    def _map(err: Exception) -> ExportError:
        if isinstance(err, NoCredentialsError | PartialCredentialsError):
            return ProviderAuthFailed(f"AWS Marketplace: no usable AWS credentials ({err})")
        if isinstance(err, BotoConnectionError | HTTPClientError):
            return ProviderUnavailable(f"AWS Marketplace unreachable: {err}")
        if not isinstance(err, ClientError):
            return ProviderUnavailable(f"AWS Marketplace call failed: {err}")
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"AWS Marketplace {code}: {error.get('Message', '')}"
        meta = err.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        if code == "ThrottlingException":
            headers = meta.get("HTTPHeaders", {})
            return ProviderRateLimited(
                message, retry_after(headers.get("retry-after"), THROTTLE_BACKOFF)
            )
        if code in UNAVAILABLE_ERRORS or status >= 500:
            return ProviderUnavailable(message)
        if code == "TimestampOutOfBoundsException":
            return MarketplaceWindowClosed(message)
        if code in AUTH_ERRORS:
            return ProviderAuthFailed(message)
        if code in ITEM_ERRORS:
            return ProviderItemMissing(message)
        if code in CUSTOMER_ERRORS:
            return ProviderCustomerMissing(message)
        if code == "DisabledApiException":
            return ProviderSetupNeeded(message)
        return ProviderRejected(message)
