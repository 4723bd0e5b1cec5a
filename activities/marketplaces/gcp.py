"""Google Cloud Marketplace (SaaS): hourly usage through Service Control, entitlements through
Partner Procurement.

The flow (https://cloud.google.com/marketplace/docs/partners/integrated-saas/configure-usage-reports):
the entitlement's `usageReportingId` (Partner Procurement `providers.entitlements.get`) is the
operation's `consumerId`; `services.check` first, and `services.report` only for operations whose
check has no `checkErrors`, with the same `operationId` for both. One operation per record:
one metric, one hour.

Clients: google-cloud-service-control's `ServiceControllerClient` over its REST transport (an
`http://` api_endpoint stays http: the transport keeps a scheme it is given,
servicecontrol_v1/services/service_controller/transports/rest_base.py), and Partner
Procurement through google-api-python-client's bundled discovery document
(`build("cloudcommerceprocurement", "v1", static_discovery=True)`).

Decisions, each with its source:

- operationId: UUIDv5 of the record id, so the saved request, every resend and the check all
  carry the same id. The Marketplace page asks only for "a unique string"; whether Service
  Control deduplicates a repeated operationId is UNCONFIRMED, so the ledger (send the saved
  request, never a new one) is what keeps an hour from being billed twice.
- startTime/endTime: the record's hour [h, h+1h), so each hour's startTime is the previous
  hour's endTime ("In most cases, the startTime of a report Operation should have the same
  value as the endTime of the previous report Operation", Marketplace page).
- metricName: "<serviceName>/<metric>", as Google's codelab writes it
  (https://github.com/googlecodelabs/gcp-marketplace-integrated-saas,
  python3/impl/step_6_usage_reporting/report.py; the Marketplace page's example shortens the
  prefix to the product name: UNCONFIRMED which prefix a given listing's metrics carry — it is
  what Producer Portal's "Technical integration" section shows).
- int64Value: a decimal string (proto3 JSON for int64, https://protobuf.dev/programming-guides/json/).
  A fractional quantity is refused (ValueError): the workflow carries remainders.
- userLabels: none. They are optional cost-attribution labels, and allowed in report only, not
  in check (codelab above), while check and report send one operation.
- max_batch 100: Service Control sets no count limit ("There is no limit on the number of
  operations in the same ReportRequest, however the ReportRequest size should be no larger than
  1MB", https://cloud.google.com/service-infrastructure/docs/service-control/reference/rest/v1/services/report);
  100 one-metric operations are about 40 KB. The registry (core/marketplaces.py) keeps the number.
- reports_zero True: hours with no usage are reported as "0" so the reported intervals stay
  contiguous (the startTime = previous endTime guidance above). UNCONFIRMED that Google needs
  them; a zero operation bills nothing.

Outcome per code (whole-request failures raise core/errors.py types, as the protocol says):

=================================================  =====================  ====================
what Google answered                               outcome / raised       why
=================================================  =====================  ====================
check: no checkErrors, report: no reportError      ACCEPTED (ref =        reportErrors lists
                                                   operationId)           every failed op
check: RESOURCE_EXHAUSTED, *_UNAVAILABLE           RETRY                  quota / a backend of
  (NAMESPACE_LOOKUP, SERVICE_STATUS,                                      Service Control
  BILLING_STATUS, CLOUD_RESOURCE_MANAGER_BACKEND)                         (check_error.proto)
check: any other code (NOT_FOUND,                  NEEDS_ATTENTION,       the customer's state:
  PERMISSION_DENIED, SERVICE_NOT_ACTIVATED,        not reported           "stop providing your
  BILLING_DISABLED, PROJECT_DELETED,                                      service ... until the
  PROJECT_INVALID, CONSUMER_INVALID, ...)                                 error is resolved"
reportError RESOURCE_EXHAUSTED(8),                 RETRY                  google.rpc.Code: the
  UNAVAILABLE(14), DEADLINE_EXCEEDED(4),                                  caller may retry
  ABORTED(10)
reportError, any other code                        NEEDS_ATTENTION        invalid metric,
                                                                          consumer, ...
HTTP 429                                           ProviderRateLimited    RetryInfo/Retry-After
HTTP 5xx, connection/timeout errors                ProviderUnavailable    "A failed RPC status
                                                                          ... impossible to know
                                                                          which succeeded":
                                                                          resend the same ids
HTTP 401, 403, credential refresh refused          ProviderAuthFailed
HTTP 400, 404, other 4xx                           ProviderRejected
entitlement 404 (Partner Procurement)              ProviderCustomerMissing
=================================================  =====================  ====================
(the google.rpc.Code meanings: https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto;
the reportErrors semantics: the services.report page above.)
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import google.auth
import google.auth.exceptions
import httplib2
import requests
from google.api_core import exceptions as core_exceptions
from google.auth.credentials import Credentials
from google.cloud import servicecontrol_v1
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery
from googleapiclient import errors as discovery_errors

from billbridge.activities.marketplaces.base import (
    MarketplaceConfig,
    Outcome,
    PreparedReport,
    RecordResult,
    UsageRecord,
)
from billbridge.activities.providers.base import (
    heartbeat_running_activity,
    provider_request_timeout,
)
from billbridge.core.errors import (
    ExportError,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    retry_after,
)
from billbridge.core.marketplaces import marketplace_entry

if TYPE_CHECKING:
    from billbridge.core.config import Settings

__all__ = [
    "ENDPOINT_ENV",
    "PROCUREMENT_URL",
    "SERVICE_CONTROL_URL",
    "GcpEndpoints",
    "GcpMarketplaceClient",
    "endpoints",
    "operation_id",
]

ENDPOINT_ENV = "GCP_MARKETPLACE_ENDPOINT"
SERVICE_CONTROL_URL = "https://servicecontrol.googleapis.com"
PROCUREMENT_URL = "https://cloudcommerceprocurement.googleapis.com"
# Both APIs accept the cloud-platform scope (servicecontrol.v1 and cloudcommerceprocurement.v1
# discovery documents, methods' "scopes").
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# The namespace of operationIds: a fixed UUID, so an id depends on the record id alone.
OPERATION_NAMESPACE = uuid.UUID("6f0c1c43-5b0e-5d39-9a57-2b6c1f6ad0e1")
OPERATION_NAME = "billbridge hourly usage"
INT64_MAX = 2**63 - 1
DEFAULT_RETRY_AFTER = timedelta(seconds=30)
# check_error.proto: quota, or a Service Control backend "is unavailable".
TRANSIENT_CHECK_ERRORS = frozenset(
    {
        "RESOURCE_EXHAUSTED",
        "NAMESPACE_LOOKUP_UNAVAILABLE",
        "SERVICE_STATUS_UNAVAILABLE",
        "BILLING_STATUS_UNAVAILABLE",
        "CLOUD_RESOURCE_MANAGER_BACKEND_UNAVAILABLE",
    }
)
# google.rpc.Code numbers a caller may retry: RESOURCE_EXHAUSTED, UNAVAILABLE,
# DEADLINE_EXCEEDED, ABORTED (code.proto).
TRANSIENT_RPC_CODES = frozenset({8, 14, 4, 10})
RPC_CODE_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


@dataclass(frozen=True)
class GcpEndpoints:
    service_control: str
    procurement: str


def endpoints(settings: Settings) -> GcpEndpoints:
    """Where both APIs are. core/config.py decides the endpoint (the local emulator on the
    embedded defaults, else GCP_MARKETPLACE_ENDPOINT or Google's Service Control); Google's own
    Service Control goes with Google's Partner Procurement, anything else (the emulator serves
    both on one port) serves both."""
    configured = (
        settings.marketplace_endpoint("gcp") or marketplace_entry("gcp").emulator_url
    ).rstrip("/")
    if configured == SERVICE_CONTROL_URL:
        return GcpEndpoints(SERVICE_CONTROL_URL, PROCUREMENT_URL)
    return GcpEndpoints(configured, configured)


def operation_id(record_id: str) -> str:
    """The operationId of a record: the same for the check, the report and every resend."""
    return str(uuid.uuid5(OPERATION_NAMESPACE, record_id))


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int64_text(record: UsageRecord) -> str:
    quantity = record.quantity
    if not isinstance(quantity, Decimal) or not quantity.is_finite():
        raise ValueError(f"{record.record_id}: quantity {quantity!r} is not a finite Decimal")
    if quantity != quantity.to_integral_value():
        raise ValueError(
            f"{record.record_id}: GCP takes whole quantities (int64); {quantity} has a fraction"
        )
    if quantity < 0 or quantity > INT64_MAX:
        raise ValueError(f"{record.record_id}: quantity {quantity} is out of range")
    return str(int(quantity))


def _hour(record: UsageRecord) -> tuple[str, str]:
    start = record.hour_start
    if start.tzinfo is None or start.utcoffset() != timedelta(0):
        raise ValueError(f"{record.record_id}: hour_start must be UTC")
    if (start.minute, start.second, start.microsecond) != (0, 0, 0):
        raise ValueError(f"{record.record_id}: hour_start must be on the hour")
    return _rfc3339(start), _rfc3339(start + timedelta(hours=1))


class GcpMarketplaceClient:
    """MarketplaceClient for Google Cloud Marketplace (activities/marketplaces/base.py).

    A record's account carries `usage_reporting_id` (the operation's consumerId) and
    `service_name` (the Service Control service of the listing); see MarketplaceAccount.
    """

    name: ClassVar[str] = "gcp"
    max_batch: ClassVar[int] = 100
    integer_quantities: ClassVar[bool] = True
    reports_zero: ClassVar[bool] = True

    def __init__(
        self,
        *,
        credentials: Credentials,
        service_control_endpoint: str = SERVICE_CONTROL_URL,
        procurement_endpoint: str = PROCUREMENT_URL,
        provider_id: str = "",
        timeout: timedelta | None = None,
    ) -> None:
        self.provider_id = provider_id
        self._credentials = credentials
        self._procurement_endpoint = procurement_endpoint.rstrip("/") + "/"
        self._fixed_timeout = timeout.total_seconds() if timeout is not None else None
        self._service_control = servicecontrol_v1.ServiceControllerClient(
            credentials=credentials,
            transport="rest",
            client_options={"api_endpoint": service_control_endpoint.rstrip("/")},
        )

    @classmethod
    def from_settings(cls, settings: Settings, config: MarketplaceConfig) -> GcpMarketplaceClient:
        """A client for one connection: its service-account key when it has one (Producer
        Portal creates the account, https://cloud.google.com/marketplace/docs/partners/
        integrated-saas/backend-integration), else application default credentials."""
        where = endpoints(settings)
        key = config.credentials.get("service_account_json")
        credentials: Credentials
        try:
            if key:
                credentials = service_account.Credentials.from_service_account_info(
                    json.loads(key), scopes=SCOPES
                )
            else:
                credentials, _ = google.auth.default(scopes=SCOPES)
        except (ValueError, google.auth.exceptions.DefaultCredentialsError) as err:
            # A malformed key, or no credentials on this machine: a person must set them.
            # Only the error's type goes into the message: its text could quote the key.
            error = ProviderAuthFailed(f"GCP credentials unusable: {type(err).__name__}")
            error.provider = "gcp"
            raise error from None
        return cls(
            credentials=credentials,
            service_control_endpoint=where.service_control,
            procurement_endpoint=where.procurement,
            provider_id=config.settings.get("provider_id", ""),
        )

    def _timeout(self) -> float:
        """Seconds one request may take: PROVIDER_REQUEST_TIMEOUT, less under a short
        heartbeat timeout (core/timeouts.py), unless the client was given its own. requests and
        httplib2 apply it per socket operation, not to the whole request (a limit of both
        libraries: a server trickling its answer could stretch one request)."""
        return (
            self._fixed_timeout if self._fixed_timeout is not None else provider_request_timeout()
        )

    # -- Partner Procurement ----------------------------------------------------------------------

    def _procurement(self) -> Any:
        """A Partner Procurement client from the bundled discovery document. Built per call:
        httplib2.Http is not thread-safe and one client serves many activity threads
        (https://googleapis.github.io/google-api-python-client/docs/thread_safety.html)."""
        http = AuthorizedHttp(self._credentials, http=httplib2.Http(timeout=self._timeout()))
        return discovery.build(
            "cloudcommerceprocurement",
            "v1",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": self._procurement_endpoint},
        )

    def resolve_usage_reporting_id(self, provider_id: str, entitlement_id: str) -> tuple[str, str]:
        """(usageReportingId, state) of an entitlement (`providers.entitlements.get`)."""
        name = f"providers/{provider_id}/entitlements/{entitlement_id}"
        heartbeat_running_activity(f"gcp: get {name}")
        try:
            entitlement = self._procurement().providers().entitlements().get(name=name).execute()
        except discovery_errors.HttpError as err:
            if err.status_code == 404:
                raise ProviderCustomerMissing(f"GCP entitlement {name} not found") from err
            _raise_http(err.status_code, str(err), err.resp.get("retry-after"))
        except Exception as err:
            _raise_transport(err)
        heartbeat_running_activity(f"gcp: get {name}: answered")
        return str(entitlement.get("usageReportingId", "")), str(entitlement.get("state", ""))

    def check_credentials(self) -> None:
        """One entitlement listed (`providers.entitlements.list`, pageSize 1): proves the
        credentials reach the provider's Partner Procurement account."""
        if not self.provider_id:
            raise ValueError("the GCP connection has no provider_id setting")
        parent = f"providers/{self.provider_id}"
        heartbeat_running_activity(f"gcp: list {parent}/entitlements")
        try:
            entitlements = self._procurement().providers().entitlements()
            entitlements.list(parent=parent, pageSize=1).execute()
        except discovery_errors.HttpError as err:
            _raise_http(err.status_code, str(err), err.resp.get("retry-after"))
        except Exception as err:
            _raise_transport(err)
        heartbeat_running_activity(f"gcp: list {parent}/entitlements: answered")

    # -- reports ----------------------------------------------------------------------------------

    def batch_key(self, record: UsageRecord) -> str:
        """One report goes to one Service Control service (`services/{serviceName}:report`)."""
        return record.account.get("service_name")

    def prepare(self, records: Sequence[UsageRecord]) -> PreparedReport:
        """The ReportRequest (proto3 JSON, plus its `serviceName` path parameter) for the
        records, one operation each, in order. Pure."""
        if not records:
            raise ValueError("nothing to report")
        if len(records) > self.max_batch:
            raise ValueError(f"{len(records)} records; GCP reports take at most {self.max_batch}")
        services = {r.account.get("service_name") for r in records}
        if len(services) != 1 or not next(iter(services)):
            raise ValueError(f"one report goes to one Service Control service, got {services}")
        if len({r.record_id for r in records}) != len(records):
            raise ValueError("a record id appears twice in one report")
        service_name = next(iter(services))
        operations = []
        for record in records:
            if record.account.marketplace != self.name:
                raise ValueError(f"{record.record_id}: not a GCP account")
            consumer = record.account.get("usage_reporting_id")
            if not consumer:
                raise ValueError(f"{record.record_id}: the account has no usage_reporting_id")
            start, end = _hour(record)
            operations.append(
                {
                    "operationId": operation_id(record.record_id),
                    "operationName": OPERATION_NAME,
                    "consumerId": consumer,
                    "startTime": start,
                    "endTime": end,
                    "metricValueSets": [
                        {
                            "metricName": f"{service_name}/{record.dimension}",
                            "metricValues": [{"int64Value": _int64_text(record)}],
                        }
                    ],
                }
            )
        return PreparedReport(
            marketplace=self.name,
            record_ids=tuple(r.record_id for r in records),
            payload={"serviceName": service_name, "operations": operations},
        )

    def send(self, report: PreparedReport) -> list[RecordResult]:
        """Check every operation, then report those whose check passed, as saved."""
        service_name = str(report.payload["serviceName"])
        operations: list[dict[str, Any]] = list(report.payload["operations"])
        if len(operations) != len(report.record_ids):
            raise ValueError("the saved report's operations do not match its record ids")
        results: dict[str, RecordResult] = {}
        passed: list[dict[str, Any]] = []
        for record_id, op in zip(report.record_ids, operations, strict=True):
            refused = self._check(service_name, op, record_id)
            if refused is None:
                passed.append(op)
            else:
                results[record_id] = refused
        if passed:
            errors = self._report(service_name, passed)
            record_of = {
                op["operationId"]: rid
                for rid, op in zip(report.record_ids, operations, strict=True)
            }
            for op in passed:
                record_id = record_of[op["operationId"]]
                error = errors.get(op["operationId"])
                if error is None:
                    results[record_id] = RecordResult(
                        record_id, Outcome.ACCEPTED, marketplace_ref=op["operationId"]
                    )
                else:
                    code, message = error
                    outcome = (
                        Outcome.RETRY if code in TRANSIENT_RPC_CODES else Outcome.NEEDS_ATTENTION
                    )
                    name = RPC_CODE_NAMES.get(code, str(code))
                    results[record_id] = RecordResult(
                        record_id,
                        outcome,
                        marketplace_ref=op["operationId"],
                        detail=f"report {name}: {message}",
                    )
        return [results[record_id] for record_id in report.record_ids]

    def _check(self, service_name: str, op: dict[str, Any], record_id: str) -> RecordResult | None:
        """None when the check passed; else the record's result."""
        request = servicecontrol_v1.CheckRequest.from_json(
            json.dumps({"serviceName": service_name, "operation": op})
        )
        heartbeat_running_activity(f"gcp: check {op['operationId']}")
        try:
            response = self._service_control.check(
                request=request, retry=None, timeout=self._timeout()
            )
        except Exception as err:
            _raise_call(err)
        heartbeat_running_activity(f"gcp: check {op['operationId']}: answered")
        if not response.check_errors:
            return None
        codes = [_check_code(e.code) for e in response.check_errors]
        detail = "; ".join(
            f"check {code}: {e.detail}"
            for code, e in zip(codes, response.check_errors, strict=True)
        )
        transient = all(code in TRANSIENT_CHECK_ERRORS for code in codes)
        return RecordResult(
            record_id,
            Outcome.RETRY if transient else Outcome.NEEDS_ATTENTION,
            marketplace_ref=op["operationId"],
            detail=detail,
        )

    def _report(
        self, service_name: str, operations: list[dict[str, Any]]
    ) -> dict[str, tuple[int, str]]:
        """operationId -> (google.rpc.Code, message) of each operation Google did not take."""
        request = servicecontrol_v1.ReportRequest.from_json(
            json.dumps({"serviceName": service_name, "operations": operations})
        )
        heartbeat_running_activity(f"gcp: report {len(operations)} operations")
        try:
            response = self._service_control.report(
                request=request, retry=None, timeout=self._timeout()
            )
        except Exception as err:
            _raise_call(err)
        heartbeat_running_activity(f"gcp: report {len(operations)} operations: answered")
        return {
            e.operation_id: (int(e.status.code), str(e.status.message))
            for e in response.report_errors
        }


def _check_code(code: Any) -> str:
    """A CheckError code's name (the client parses numeric and named enums alike)."""
    name = getattr(code, "name", None)
    return str(name) if name else str(code)


def _retry_info_delay(details: Sequence[Any]) -> str | None:
    """Seconds from a google.rpc.RetryInfo detail ({"retryDelay": "2.5s"}), as text."""
    for detail in details or ():
        if isinstance(detail, dict) and detail.get("@type", "").endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay", "")))
            if match:
                return match.group(1)
    return None


def _raise_http(status: int, message: str, retry_after_header: str | None) -> NoReturn:
    error: ExportError
    if status == 429:
        error = ProviderRateLimited(
            f"GCP Marketplace rate limit: {message}",
            retry_after(retry_after_header, DEFAULT_RETRY_AFTER),
        )
    elif status >= 500:
        error = ProviderUnavailable(f"GCP Marketplace unavailable ({status}): {message}")
    elif status in (401, 403):
        error = ProviderAuthFailed(f"GCP Marketplace refused the credentials ({status}): {message}")
    else:
        error = ProviderRejected(f"GCP Marketplace rejected the request ({status}): {message}")
    error.provider = "gcp"
    raise error


def _raise_transport(err: Exception) -> NoReturn:
    """A failure with no HTTP answer: network (retried) or credentials (a person)."""
    if isinstance(err, google.auth.exceptions.GoogleAuthError) and not isinstance(
        err, google.auth.exceptions.TransportError
    ):
        # RefreshError (a refused key), or credentials that cannot refresh at all after a 401
        # (google.auth.transport.requests.AuthorizedSession refreshes once on 401).
        raise ProviderAuthFailed(f"GCP credentials could not be refreshed: {err}") from err
    if isinstance(
        err,
        (
            requests.exceptions.RequestException,
            google.auth.exceptions.TransportError,
            httplib2.HttpLib2Error,
            socket.timeout,
            ConnectionError,
            OSError,
        ),
    ):
        raise ProviderUnavailable(f"GCP Marketplace unreachable: {err}") from err
    raise err


def _raise_call(err: Exception) -> NoReturn:
    """Map a Service Control call's exception (google-api-core's GoogleAPICallError carries the
    HTTP status as `code` and the requests response)."""
    if isinstance(err, core_exceptions.GoogleAPICallError) and isinstance(err.code, int):
        response = getattr(err, "response", None)
        header = response.headers.get("Retry-After") if response is not None else None
        _raise_http(err.code, err.message, header or _retry_info_delay(err.details))
    _raise_transport(err)
