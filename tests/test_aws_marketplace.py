"""AWS Marketplace metering: billbridge's boto3 client against the local Metering emulator.

Every call goes through boto3 ``meteringmarketplace`` over HTTP (SigV4-signed, verified by the
emulator with botocore's signer). The last test checks every request the emulator received in
this file against botocore's own service model, so a misspelled member or an out-of-range
value fails even where the emulator would have let it through.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.loaders import Loader
from botocore.model import ServiceModel, Shape
from botocore.validate import ParamValidator

from billbridge.activities.marketplaces.aws import (
    AwsMarketplaceClient,
    endpoint_url,
    quantity_text,
)
from billbridge.activities.marketplaces.base import (
    MarketplaceAccount,
    MarketplaceConfig,
    Outcome,
    UsageRecord,
)
from billbridge.core.config import Settings
from billbridge.core.errors import (
    MarketplaceWindowClosed,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderItemMissing,
    ProviderRateLimited,
    ProviderUnavailable,
)
from billbridge.emulators.aws_marketplace import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET_ACCESS_KEY,
    AwsMarketplaceEmulator,
    Fault,
    LoggedRequest,
)

PRODUCT = "prod-billbridge1"
LEGACY_PRODUCT = "prod-legacy1"
ACCOUNT = "111122223333"
LICENSE = "arn:aws:license-manager::294406891311:license:l-0123456789abcdef"
OTHER_ACCOUNT = "444455556666"
OTHER_LICENSE = "arn:aws:license-manager::294406891311:license:l-fedcba9876543210"
LEGACY_CUSTOMER = "cust-Xk29fQ"
# The emulator's clock: usage of 19:00 on 31 March is 1.5 hours old.
NOW = datetime(2026, 3, 31, 20, 30, tzinfo=UTC)
HOUR = datetime(2026, 3, 31, 19, tzinfo=UTC)

# Every request any test sent, for the model check at the end of the file.
RECEIVED: list[LoggedRequest] = []


@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsMarketplaceEmulator]:
    with AwsMarketplaceEmulator(port=0) as aws:
        yield aws


@pytest.fixture
def aws(emulator: AwsMarketplaceEmulator) -> Iterator[AwsMarketplaceEmulator]:
    emulator.reset()
    emulator.add_product(PRODUCT, ["api_calls", "gb_stored"])
    emulator.add_product(LEGACY_PRODUCT, ["seats"])
    emulator.subscribe(PRODUCT, customer_aws_account_id=ACCOUNT, license_arn=LICENSE)
    emulator.subscribe(PRODUCT, customer_aws_account_id=OTHER_ACCOUNT, license_arn=OTHER_LICENSE)
    emulator.subscribe(LEGACY_PRODUCT, customer_identifier=LEGACY_CUSTOMER)
    emulator.set_now(NOW)
    yield emulator
    RECEIVED.extend(emulator.requests())


def make_client(
    aws: AwsMarketplaceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    *,
    access_key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_SECRET_ACCESS_KEY,
) -> AwsMarketplaceClient:
    del monkeypatch
    config = MarketplaceConfig(
        connection_id="aws",
        marketplace="aws",
        credentials={"access_key_id": access_key_id, "secret_access_key": secret},
        settings={"region": "us-east-1"},
    )
    settings = Settings(marketplace_endpoints={"aws": aws.base_url})
    return AwsMarketplaceClient.from_settings(settings, config)


@pytest.fixture
def client(aws: AwsMarketplaceEmulator, monkeypatch: pytest.MonkeyPatch) -> AwsMarketplaceClient:
    return make_client(aws, monkeypatch)


def raw_boto3(aws: AwsMarketplaceEmulator, secret: str = DEFAULT_SECRET_ACCESS_KEY) -> Any:
    """A plain boto3 client, for requests billbridge's client would never build."""
    return boto3.client(
        "meteringmarketplace",
        region_name="us-east-1",
        endpoint_url=aws.base_url,
        aws_access_key_id=DEFAULT_ACCESS_KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )


def record(
    quantity: str,
    *,
    hour: datetime = HOUR,
    dimension: str = "api_calls",
    account: str = ACCOUNT,
    license_arn: str = LICENSE,
) -> UsageRecord:
    return UsageRecord(
        record_id=f"cus_1/{dimension}/{hour.isoformat()}/{account}",
        customer_id="cus_1",
        account=MarketplaceAccount(
            "aws", {"customer_aws_account_id": account, "license_arn": license_arn}
        ),
        dimension=dimension,
        hour_start=hour,
        quantity=Decimal(quantity),
    )


def legacy_record(quantity: str, hour: datetime = HOUR) -> UsageRecord:
    return UsageRecord(
        record_id=f"cus_2/seats/{hour.isoformat()}",
        customer_id="cus_2",
        account=MarketplaceAccount(
            "aws", {"customer_identifier": LEGACY_CUSTOMER, "product_code": LEGACY_PRODUCT}
        ),
        dimension="seats",
        hour_start=hour,
        quantity=Decimal(quantity),
    )


def raw_record(**fields: Any) -> dict[str, Any]:
    return {
        "Timestamp": HOUR,
        "Dimension": "api_calls",
        "CustomerAWSAccountId": ACCOUNT,
        "LicenseArn": LICENSE,
        **fields,
    }


# --- reporting ----------------------------------------------------------------------------------


def test_records_are_accepted_and_kept(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    report = client.prepare([record("12.5"), record("0", dimension="gb_stored")])
    # The saved payload is JSON as it is, Timestamp the hour start in epoch seconds.
    assert json.loads(json.dumps(report.payload)) == report.payload
    assert report.payload == {
        "UsageRecords": [
            {
                "Timestamp": int(HOUR.timestamp()),
                "Dimension": "api_calls",
                "QuantityAsDecimal": "12.5",
                "CustomerAWSAccountId": ACCOUNT,
                "LicenseArn": LICENSE,
            },
            {
                "Timestamp": int(HOUR.timestamp()),
                "Dimension": "gb_stored",
                "QuantityAsDecimal": "0",
                "CustomerAWSAccountId": ACCOUNT,
                "LicenseArn": LICENSE,
            },
        ]
    }
    results = client.send(report)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert [r.record_id for r in results] == list(report.record_ids)
    held = aws.accepted()
    assert [(a.dimension, a.quantity, a.hour) for a in held] == [
        ("api_calls", Decimal("12.5"), HOUR),
        ("gb_stored", Decimal("0"), HOUR),
    ]
    assert [r.marketplace_ref for r in results] == [a.metering_record_id for a in held]
    # What the wire carried: one signed awsJson 1.1 POST, exactly the saved payload.
    (request,) = aws.requests()
    assert request.target == "AWSMPMeteringService.BatchMeterUsage"
    assert request.body == report.payload
    assert request.authorization is not None
    assert re.match(
        rf"AWS4-HMAC-SHA256 Credential={DEFAULT_ACCESS_KEY_ID}/\d{{8}}/us-east-1/"
        r"aws-marketplace/aws4_request, SignedHeaders=\S+, Signature=[0-9a-f]{6}…$",
        request.authorization,
    )
    with urllib.request.urlopen(f"{aws.base_url}/_emulator/accepted") as reply:
        listed = json.load(reply)
    assert [(a["Dimension"], a["Quantity"]) for a in listed] == [
        ("api_calls", "12.5"),
        ("gb_stored", "0"),
    ]


def test_a_repeated_report_is_idempotent(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    report = client.prepare([record("17")])
    first = client.send(report)
    again = client.send(report)
    assert again == first
    assert first[0].outcome is Outcome.ACCEPTED
    # Quantities are compared by value: 17 == 17.00 == Quantity 17.
    boto = raw_boto3(aws)
    for fields in ({"QuantityAsDecimal": "17.00"}, {"Quantity": 17}):
        (result,) = boto.batch_meter_usage(UsageRecords=[raw_record(**fields)])["Results"]
        assert result["Status"] == "Success"
        assert result["MeteringRecordId"] == first[0].marketplace_ref
    assert len(aws.accepted()) == 1


def test_another_quantity_for_the_same_hour_needs_attention(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    client.send(client.prepare([record("5")]))
    (result,) = client.send(client.prepare([record("6")]))
    # AWS holds another quantity for that hour (it does not say which): a person must look.
    assert result.outcome is Outcome.NEEDS_ATTENTION
    assert "DuplicateRecord" in result.detail
    assert [a.quantity for a in aws.accepted()] == [Decimal("5")]
    # The next hour is another record.
    (later,) = client.send(client.prepare([record("6", hour=HOUR + timedelta(hours=1))]))
    assert later.outcome is Outcome.ACCEPTED


def test_an_unsubscribed_customer_needs_attention(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    aws.unsubscribe(license_arn=OTHER_LICENSE)
    results = client.send(
        client.prepare([record("1"), record("2", account=OTHER_ACCOUNT, license_arn=OTHER_LICENSE)])
    )
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.NEEDS_ATTENTION]
    assert "CustomerNotSubscribed" in results[1].detail
    assert [a.customer_aws_account_id for a in aws.accepted()] == [ACCOUNT]


def test_legacy_customer_identifier_with_product_code(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    report = client.prepare([legacy_record("3")])
    assert report.payload["ProductCode"] == LEGACY_PRODUCT
    assert report.payload["UsageRecords"][0]["CustomerIdentifier"] == LEGACY_CUSTOMER
    (result,) = client.send(report)
    assert result.outcome is Outcome.ACCEPTED
    # One product and one integration kind per call: the caller groups.
    with pytest.raises(ValueError, match="one product"):
        client.prepare([legacy_record("3"), record("1")])


def test_resolve_customer(aws: AwsMarketplaceEmulator) -> None:
    sub = aws.subscribe(PRODUCT, customer_aws_account_id=ACCOUNT, license_arn=LICENSE)
    resolved = raw_boto3(aws).resolve_customer(RegistrationToken=sub.registration_token)
    assert (resolved["CustomerAWSAccountId"], resolved["LicenseArn"]) == (ACCOUNT, LICENSE)
    assert resolved["ProductCode"] == PRODUCT


# --- limits -------------------------------------------------------------------------------------


def test_more_than_25_records_are_refused(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    hours = [HOUR - timedelta(hours=n) for n in range(26)]
    with pytest.raises(ValueError, match="25"):
        client.prepare([record("1", hour=h) for h in hours])
    with pytest.raises(ClientError) as refused:
        raw_boto3(aws).batch_meter_usage(
            UsageRecords=[raw_record(Timestamp=h, QuantityAsDecimal="1") for h in hours[:26]]
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "less than or equal to 25" in refused.value.response["Error"]["Message"]
    assert aws.accepted() == []


def test_quantity_xor_quantity_as_decimal(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    boto = raw_boto3(aws)
    with pytest.raises(ClientError) as both:
        boto.batch_meter_usage(
            UsageRecords=[
                raw_record(Dimension="gb_stored", QuantityAsDecimal="1"),
                raw_record(Quantity=2, QuantityAsDecimal="2"),
            ]
        )
    assert both.value.response["Error"]["Code"] == "ValidationException"
    assert aws.accepted() == []  # one bad record fails the whole request
    # Seven decimals break the model's pattern (botocore does not check patterns; AWS does).
    with pytest.raises(ClientError) as fine:
        boto.batch_meter_usage(UsageRecords=[raw_record(QuantityAsDecimal="1.1234567")])
    assert "regular expression" in fine.value.response["Error"]["Message"]
    # Neither: "Defaults to 0".
    (result,) = boto.batch_meter_usage(UsageRecords=[raw_record()])["Results"]
    assert result["Status"] == "Success"
    assert [a.quantity for a in aws.accepted()] == [Decimal(0)]
    # billbridge never builds what AWS refuses.
    for bad in ("1.1234567", "-1", "10000000000"):
        with pytest.raises(ValueError):
            quantity_text(Decimal(bad))
    assert quantity_text(Decimal("17.000")) == "17"
    assert quantity_text(Decimal("1E+2")) == "100"
    assert quantity_text(Decimal("0.000001")) == "0.000001"


def test_fractional_quantities_are_conserved_exactly(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    quantities = ["0.000001", "1234567890.123456", "0.1", "0.2", "3.300000", "7"]
    dims = ["api_calls", "gb_stored"]
    records = [
        record(q, hour=HOUR - timedelta(hours=i // 2), dimension=dims[i % 2])
        for i, q in enumerate(quantities)
    ]
    results = client.send(client.prepare(records))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    held = [a.quantity for a in aws.accepted()]
    assert held == [Decimal(q) for q in quantities]
    assert sum(held) == sum(Decimal(q) for q in quantities) == Decimal("1234567900.723457")


# --- the window ---------------------------------------------------------------------------------


def test_usage_older_than_24_hours_or_in_the_future_closes_the_window(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    ok_hour = NOW - timedelta(hours=23, minutes=30)  # 21:00 the day before: 23.5 h old
    (ok,) = client.send(client.prepare([record("1", hour=ok_hour)]))
    assert ok.outcome is Outcome.ACCEPTED
    for late in (ok_hour - timedelta(hours=1), HOUR + timedelta(hours=2)):
        report = client.prepare([record("1", hour=HOUR), record("2", hour=late)])
        with pytest.raises(MarketplaceWindowClosed):
            client.send(report)
    assert len(aws.accepted()) == 1  # the whole batch was refused, the good record too


def test_a_billing_month_closes_at_0600_utc_on_the_first(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    last_march_hour = datetime(2026, 3, 31, 23, tzinfo=UTC)
    aws.set_now(datetime(2026, 4, 1, 5, 59, 59, tzinfo=UTC))
    (grace,) = client.send(client.prepare([record("1", hour=last_march_hour)]))
    assert grace.outcome is Outcome.ACCEPTED
    aws.set_now(datetime(2026, 4, 1, 6, tzinfo=UTC))
    # 7 hours old, well inside 24 h, but March is closed.
    with pytest.raises(MarketplaceWindowClosed):
        client.send(client.prepare([record("2", hour=last_march_hour, dimension="gb_stored")]))
    (april,) = client.send(client.prepare([record("3", hour=datetime(2026, 4, 1, 5, tzinfo=UTC))]))
    assert april.outcome is Outcome.ACCEPTED
    assert [a.quantity for a in aws.accepted()] == [Decimal(1), Decimal(3)]


# --- whole-request errors -----------------------------------------------------------------------


def test_bad_signature_and_unknown_key_are_auth_failures(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.check_credentials()  # good keys: InvalidTokenException means "signed and allowed"
    report = client.prepare([record("1")])
    wrong_secret = make_client(aws, monkeypatch, secret="not-the-secret")
    with pytest.raises(ProviderAuthFailed, match="InvalidSignatureException"):
        wrong_secret.send(report)
    with pytest.raises(ProviderAuthFailed, match="InvalidSignatureException"):
        wrong_secret.check_credentials()
    unknown = make_client(aws, monkeypatch, access_key_id="BBUNKNOWNKEY00000000")
    with pytest.raises(ProviderAuthFailed, match="UnrecognizedClientException"):
        unknown.send(report)
    # The signature covers the body: a record changed after signing is refused.
    boto = raw_boto3(aws)

    def tamper(request: AWSPreparedRequest, **_: Any) -> None:
        assert isinstance(request.body, bytes)
        request.body = request.body.replace(b'"1"', b'"9"')

    boto.meta.events.register("before-send.marketplace-metering.BatchMeterUsage", tamper)
    with pytest.raises(ClientError) as tampered:
        boto.batch_meter_usage(UsageRecords=[raw_record(QuantityAsDecimal="1")])
    assert tampered.value.response["Error"]["Code"] == "InvalidSignatureException"
    # No Authorization header at all.
    unsigned = urllib.request.Request(
        aws.base_url + "/",
        data=json.dumps({"RegistrationToken": "x"}).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSMPMeteringService.ResolveCustomer",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(unsigned)
    assert missing.value.code == 400
    assert json.load(missing.value)["__type"] == "MissingAuthenticationTokenException"
    assert aws.accepted() == []


def test_throttling_is_rate_limited_with_retry_info(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    report = client.prepare([record("4")])
    aws.set_requests_per_second(1, window_seconds=3600)
    (first,) = client.send(report)
    assert first.outcome is Outcome.ACCEPTED
    with pytest.raises(ProviderRateLimited) as throttled:
        client.send(report)
    assert throttled.value.retry_after == timedelta(seconds=2)  # AWS sends no Retry-After
    assert throttled.value.to_application_error().next_retry_delay == timedelta(seconds=2)
    aws.set_requests_per_second(None)
    aws.add_fault(Fault("status", status=429, retry_after=7))
    with pytest.raises(ProviderRateLimited) as hinted:
        client.send(report)
    assert hinted.value.retry_after == timedelta(seconds=7)
    assert [r.error for r in aws.requests()] == [None, "ThrottlingException", "ThrottlingException"]


def test_outages_are_unavailable_and_a_resend_is_exactly_once(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    report = client.prepare([record("8")])
    aws.add_fault(Fault("status", status=500))
    with pytest.raises(ProviderUnavailable, match="InternalServiceErrorException"):
        client.send(report)
    aws.add_fault(Fault("drop"))
    with pytest.raises(ProviderUnavailable):
        client.send(report)
    # Metered, but the answer is lost: the same saved request again is the same record.
    aws.add_fault(Fault("drop_after"))
    with pytest.raises(ProviderUnavailable):
        client.send(report)
    (result,) = client.send(report)
    assert result.outcome is Outcome.ACCEPTED
    (held,) = aws.accepted()
    assert (held.metering_record_id, held.quantity) == (result.marketplace_ref, Decimal(8))


def test_unprocessed_records_are_retried(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    report = client.prepare([record("1"), record("2", dimension="gb_stored")])
    aws.leave_unprocessed(1)
    first = client.send(report)
    assert [r.outcome for r in first] == [Outcome.RETRY, Outcome.ACCEPTED]
    again = client.send(report)
    assert [r.outcome for r in again] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert again[1].marketplace_ref == first[1].marketplace_ref
    assert [a.quantity for a in aws.accepted()] == [Decimal(2), Decimal(1)]


def test_unknown_dimension_and_license_need_attention(
    aws: AwsMarketplaceEmulator, client: AwsMarketplaceClient
) -> None:
    with pytest.raises(ProviderItemMissing, match="InvalidUsageDimensionException"):
        client.send(client.prepare([record("1"), record("1", dimension="not_listed")]))
    with pytest.raises(ProviderCustomerMissing, match="InvalidLicenseException"):
        client.send(client.prepare([record("1", license_arn=OTHER_LICENSE)]))
    RECEIVED.extend(aws.requests())  # kept for the model check: reset clears the log
    aws.reset()  # the legacy customer is no longer registered
    aws.add_product(LEGACY_PRODUCT, ["seats"])
    aws.set_now(NOW)
    with pytest.raises(ProviderCustomerMissing, match="InvalidCustomerIdentifierException"):
        client.send(client.prepare([legacy_record("1")]))
    assert aws.accepted() == []


def test_usage_allocations_must_add_up(aws: AwsMarketplaceEmulator) -> None:
    boto = raw_boto3(aws)
    tags = [{"Key": "team", "Value": "a"}]
    split = [
        {"AllocatedUsageQuantityAsDecimal": "1.25", "Tags": tags},
        {"AllocatedUsageQuantityAsDecimal": "0.5"},
    ]
    with pytest.raises(ClientError) as unequal:
        boto.batch_meter_usage(
            UsageRecords=[raw_record(QuantityAsDecimal="2", UsageAllocations=split)]
        )
    assert unequal.value.response["Error"]["Code"] == "InvalidUsageAllocationsException"
    mixed = [{"AllocatedUsageQuantity": 1}, {"AllocatedUsageQuantityAsDecimal": "0.75"}]
    with pytest.raises(ClientError) as kinds:
        boto.batch_meter_usage(
            UsageRecords=[raw_record(QuantityAsDecimal="1.75", UsageAllocations=mixed)]
        )
    assert kinds.value.response["Error"]["Code"] == "InvalidUsageAllocationsException"
    (result,) = boto.batch_meter_usage(
        UsageRecords=[raw_record(QuantityAsDecimal="1.75", UsageAllocations=split)]
    )["Results"]
    assert result["Status"] == "Success"


def test_endpoint_is_the_emulator_only_on_the_embedded_defaults() -> None:
    cluster = Settings.from_env({"TEMPORAL_ADDRESS": "temporal:7233"})
    assert endpoint_url(cluster, "eu-west-1") == (
        "https://metering.marketplace.eu-west-1.amazonaws.com"
    )
    assert endpoint_url(Settings.from_env({}), "us-east-1") == "http://127.0.0.1:12121"
    pointed = Settings.from_env(
        {"TEMPORAL_ADDRESS": "temporal:7233", "AWS_MARKETPLACE_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert endpoint_url(pointed, "us-east-1") == "http://127.0.0.1:9"


# --- every request against botocore's model (keep last) ----------------------------------------


def _strict(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    """What ParamValidator leaves out: maximums, patterns and enums."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    kind = shape.type_name
    size = len(value) if kind in ("string", "list") else value if kind == "integer" else None
    if size is not None and high is not None and size > high:
        problems.append(f"{path}: {size} above max {high}")
    if size is not None and low is not None and size < low:
        problems.append(f"{path}: {size} below min {low}")
    if kind == "string":
        pattern = shape.metadata.get("pattern")
        if pattern and not re.search(pattern, value):
            problems.append(f"{path}: {value!r} does not match {pattern}")
        if shape.metadata.get("enum") and value not in shape.metadata["enum"]:
            problems.append(f"{path}: {value!r} not in enum")
    elif kind == "structure":
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            if name in value:
                _strict(member, value[name], f"{path}.{name}", problems)
    elif kind == "list":
        for i, item in enumerate(value):
            _strict(shape.member, item, f"{path}[{i}]", problems)  # type: ignore[attr-defined]


def _as_params(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON body as Python parameters: epoch-second Timestamps back to datetimes."""
    if operation != "BatchMeterUsage":
        return body
    return {
        **body,
        "UsageRecords": [
            {**r, "Timestamp": datetime.fromtimestamp(r["Timestamp"], UTC)}
            if isinstance(r.get("Timestamp"), int | float)
            else r
            for r in body.get("UsageRecords", [])
        ],
    }


MODEL = ServiceModel(
    Loader().load_service_model("meteringmarketplace", "service-2"), "meteringmarketplace"
)


def model_problems(target: str, body: Any) -> list[str]:
    """What breaks botocore's model in one request: unknown members, types, required members
    and minimums (ParamValidator), maximums, patterns and enums (_strict)."""
    prefix, _, operation = target.partition(".")
    if prefix != MODEL.metadata["targetPrefix"] or operation not in MODEL.operation_names:
        return [f"unknown target {target}"]
    input_shape = MODEL.operation_model(operation).input_shape
    assert input_shape is not None
    params = _as_params(operation, body)
    report = ParamValidator().validate(params, input_shape)
    problems = [report.generate_report()] if report.has_errors() else []
    _strict(input_shape, params, operation, problems)
    return problems


def test_the_model_check_catches_what_the_emulator_lets_through(
    aws: AwsMarketplaceEmulator,
) -> None:
    target = "AWSMPMeteringService.BatchMeterUsage"
    stamp = int(HOUR.timestamp())
    good = {"UsageRecords": [{"Timestamp": stamp, "Dimension": "d", "QuantityAsDecimal": "1"}]}
    assert model_problems(target, good) == []
    misspelled = {"UsageRecords": [{"Timestamp": stamp, "Dimension": "d", "Quantities": "1"}]}
    assert "Unknown parameter" in " ".join(model_problems(target, misspelled))
    too_many = {"UsageRecords": good["UsageRecords"] * 26}
    assert model_problems(target, too_many) == ["BatchMeterUsage.UsageRecords: 26 above max 25"]
    # The emulator ignores an unknown member, as AWS does: only the model check fails it.
    # (boto3 cannot send one: the member is renamed in the body before it is signed.)
    boto = raw_boto3(aws)

    def misspell(request: AWSRequest, **_: Any) -> None:
        assert isinstance(request.data, bytes)
        request.data = request.data.replace(b'"QuantityAsDecimal"', b'"QuantityAsDecimals"')

    boto.meta.events.register("before-sign.marketplace-metering.BatchMeterUsage", misspell)
    (result,) = boto.batch_meter_usage(UsageRecords=[raw_record(QuantityAsDecimal="5")])["Results"]
    assert result["Status"] == "Success"  # metered as 0: the quantity was lost
    (sent,) = aws.requests()
    assert sent.target is not None
    assert "Unknown parameter" in " ".join(model_problems(sent.target, sent.body))
    aws.clear_requests()  # not for the whole-file check below


def test_emulator_admin_endpoints_and_command_line(aws: AwsMarketplaceEmulator) -> None:
    def post(path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            aws.base_url + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request) as reply:
            return json.load(reply)

    assert post("/_emulator/now", {"now": "2026-05-01T03:00:00+00:00"}) == {
        "now": "2026-05-01T03:00:00+00:00"
    }
    assert aws.now() == datetime(2026, 5, 1, 3, tzinfo=UTC)
    post("/_emulator/products", {"product_code": "prod-http", "dimensions": ["x"]})
    assert "prod-http" in aws.metering.products
    post("/_emulator/reset", {})
    assert aws.metering.products == {} and aws.now() != datetime(2026, 5, 1, 3, tzinfo=UTC)
    process = subprocess.Popen(
        [sys.executable, "-m", "billbridge.emulators.aws_marketplace", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        with urllib.request.urlopen(url + "/_emulator/accepted") as reply:
            assert json.load(reply) == []
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_every_request_matches_botocores_model(aws: AwsMarketplaceEmulator) -> None:
    raw_boto3(aws).batch_meter_usage(UsageRecords=[raw_record(QuantityAsDecimal="1")])
    checked = 0
    for request in [*RECEIVED, *aws.requests()]:
        if request.error in ("ValidationException", "SerializationException"):
            continue  # sent invalid on purpose (the tests above), and refused
        assert (request.method, request.path) == ("POST", "/")
        assert request.target is not None
        assert model_problems(request.target, request.body) == [], request.raw_body
        checked += 1
    assert checked >= 10
