"""Azure Marketplace metering: hourly usage as batchUsageEvent requests, over httpx with a
Microsoft Entra ID token from azure-identity.

Microsoft publishes no Python SDK for the metering API, so this speaks the documented JSON
protocol (https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis,
"the page"; its OpenAPI model: github.com/microsoft/commercial-marketplace-openapi,
Microsoft.Marketplace.Metering/2018-08-31/meteringapi.v1.json, "the model"):

- `POST {api}/api/batchUsageEvent?api-version=2018-08-31`, body `{"request": [...]}` with at
  most 25 events (the page; the model's maxItems), each `resourceId` (the SaaS subscription
  id), `quantity` (> 0, a double), `dimension`, `effectiveStartTime` (UTC, within 24 h),
  `planId`; headers `authorization: Bearer`, `x-ms-requestid`, `x-ms-correlationid`.
- One event per resource + dimension + calendar hour; a second one is answered `Duplicate`
  with the accepted event (its usageEventId and quantity) under `error.additionalInfo.
  acceptedMessage`.
- Token: client credentials for the resource 20e940b3-4c77-4b0b-9a53-9e16a1b010a7
  (https://learn.microsoft.com/partner-center/marketplace/partner-center-portal/pc-saas-registration),
  through azure-identity's ClientSecretCredential, which caches it until shortly before it
  expires.

What `send` makes of each answer (the page's status table; `Outcome` in base.py):

- item Accepted -> ACCEPTED, marketplace_ref = usageEventId.
- item Duplicate -> DUPLICATE, accepted_quantity = error.additionalInfo.acceptedMessage.quantity
  (the hour is already held; the workflow compares it with ours), marketplace_ref = its id.
- item Expired -> NEEDS_ATTENTION, detail "window closed: ...": no retry makes the hour
  younger. Per record rather than raising MarketplaceWindowClosed, so the batch's other
  records still count as delivered.
- item ResourceNotFound / ResourceNotActive / ResourceNotAuthorized / InvalidDimension /
  InvalidQuantity / BadArgument -> NEEDS_ATTENTION: a person fixes the link, the plan or the
  subscription; the hour is kept and sent again after the fix.
- item Error -> RETRY (Azure's own failure). No item for a record -> RETRY (unprocessed); an
  unknown status -> NEEDS_ATTENTION (never retried blindly).
- HTTP 429 -> ProviderRateLimited with Retry-After, else 60 s (UNCONFIRMED: the page documents
  no 429 or Retry-After).
- HTTP 5xx, timeouts, dropped connections -> ProviderUnavailable (passing).
- HTTP 401/403 -> a new token and one more try, then ProviderAuthFailed (the page: 403 = token
  missing, invalid or expired, or an offer published with another Entra app).
- HTTP 400 for the whole batch (more than 25 events, a malformed body) -> ProviderRejected.
- Entra refusing the client (invalid_client, ...) -> ProviderAuthFailed; Entra 429 / 5xx ->
  ProviderRateLimited / ProviderUnavailable.

Quantities are Decimals end to end: the body is written as text, every quantity as its exact
decimal digits (a JSON number, never through float). Azure holds a double (the model:
`number`/`double`), so `prepare` refuses a quantity a double cannot carry exactly (more than
~15-17 significant digits): sending it would bill a different number than billbridge counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.identity import ClientSecretCredential

from billbridge.activities.marketplaces.base import (
    MarketplaceConfig,
    Outcome,
    PreparedReport,
    RecordResult,
    UsageRecord,
)
from billbridge.activities.providers import deadline
from billbridge.activities.providers.base import (
    heartbeat_running_activity,
    provider_request_timeout,
)
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ProviderAuthFailed,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    retry_after,
)
from billbridge.core.marketplaces import marketplace_entry
from billbridge.core.timeouts import PROVIDER_REQUEST_TIMEOUT

API_VERSION = "2018-08-31"  # the page: "Use 2018-08-31."
BATCH_PATH = "/api/batchUsageEvent"
USAGE_EVENTS_PATH = "/api/usageEvents"
MARKETPLACE_RESOURCE_ID = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"
SCOPE = f"{MARKETPLACE_RESOURCE_ID}/.default"
MAX_BATCH = 25
REAL_API = "https://marketplaceapi.microsoft.com"
# Entra's public cloud (azure.identity.AzureAuthorityHosts.AZURE_PUBLIC_CLOUD).
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
# Authorities MSAL knows (instance discovery works there); any other (the emulator, a
# sovereign proxy) is used as given, with instance discovery off.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"}
)
ENDPOINT_ENV = "AZURE_MARKETPLACE_ENDPOINT"
AUTHORITY_ENV = "AZURE_AUTHORITY_HOST"  # azure-identity's own variable, same meaning
CA_BUNDLE_ENV = "AZURE_MARKETPLACE_CA_BUNDLE"
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
# Statuses a person must act on (the page's status table).
ATTENTION_STATUSES = frozenset(
    {
        "ResourceNotFound",
        "ResourceNotActive",
        "ResourceNotAuthorized",
        "InvalidDimension",
        "InvalidQuantity",
        "BadArgument",
    }
)
_REQUEST_ID_NAMESPACE = uuid.UUID("6d3f1a52-2b7e-4a43-9a55-0c0b8f6e7a21")


@dataclass(frozen=True)
class AzureEndpoints:
    api_base: str
    """The metering API (no trailing slash)."""
    authority: str
    """Entra ID's authority host, https (azure-identity adds the tenant)."""
    ca_file: str | None = None
    """A PEM file trusted instead of the system CAs, for both (the local emulator's CA)."""


def azure_endpoints(settings: Settings, environ: Mapping[str, str] = os.environ) -> AzureEndpoints:
    """Where the API and Entra ID are. The API endpoint is core/config.py's decision (the local
    emulator on the embedded defaults, else AZURE_MARKETPLACE_ENDPOINT or Microsoft's API);
    AZURE_AUTHORITY_HOST names Entra's host (else its public cloud) and
    AZURE_MARKETPLACE_CA_BUNDLE a CA to trust (the emulator's, which serves Entra over TLS on
    its own port: azure-identity refuses an http authority)."""
    api = (
        settings.marketplace_endpoint("azure") or marketplace_entry("azure").emulator_url
    ).rstrip("/")
    authority = (environ.get(AUTHORITY_ENV) or ENTRA_AUTHORITY).rstrip("/")
    if "://" not in authority:
        authority = f"https://{authority}"
    return AzureEndpoints(api, authority, environ.get(CA_BUNDLE_ENV) or None)


def quantity_text(quantity: Decimal) -> str:
    """The exact decimal as a JSON number: plain digits, no exponent, no trailing zeros."""
    text = format(quantity, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fits_double(quantity: Decimal) -> bool:
    """Whether a binary64 carries `quantity` exactly as its shortest decimal form (what Azure
    reads back is then the same number)."""
    return Decimal(repr(float(quantity))) == quantity


def hour_text(moment: datetime) -> str:
    """effectiveStartTime: the hour's start, ISO 8601 UTC ("2026-12-03T08:00:00Z")."""
    if moment.tzinfo is None:
        raise ValueError("hour_start must be timezone-aware (UTC)")
    moment = moment.astimezone(UTC)
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise ValueError(f"hour_start {moment.isoformat()} is not on the hour")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(resource_id: str, dimension: str, start: str) -> tuple[str, str, str]:
    """How a result item finds its record: resource, dimension and hour (as UTC text)."""
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return (resource_id.lower(), dimension, start)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return (resource_id.lower(), dimension, hour.strftime("%Y-%m-%dT%H:%M:%SZ"))


class AzureMarketplaceClient:
    """MarketplaceClient for Azure (see base.py); one per connection and worker."""

    name: ClassVar[str] = "azure"
    max_batch: ClassVar[int] = MAX_BATCH
    integer_quantities: ClassVar[bool] = False  # the model: quantity is a double
    reports_zero: ClassVar[bool] = False  # the page: quantity "must be greater than 0"

    def __init__(
        self,
        *,
        endpoints: AzureEndpoints,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        heartbeat: Callable[[str], None] = heartbeat_running_activity,
    ) -> None:
        if not (tenant_id and client_id and client_secret):
            raise ProviderAuthFailed(
                "Azure Marketplace: the connection needs tenant_id, client_id and client_secret"
            )
        self.endpoints = endpoints
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        # The last Entra response this thread saw (status, Retry-After): azure-identity's
        # ClientAuthenticationError often carries no response (MSAL raises on 5xx itself), so
        # the credential's pipeline reports each response through azure-core's
        # `raw_response_hook` (CustomHookPolicy) and a failure is classified by it.
        self._entra = threading.local()
        self._credential: TokenCredential = self._new_credential()
        verify: ssl.SSLContext | bool = True
        if endpoints.ca_file:
            verify = ssl.create_default_context(cafile=endpoints.ca_file)
        self.http = deadline.client(endpoints.api_base, verify=verify)

    @classmethod
    def from_settings(cls, settings: Settings, config: MarketplaceConfig) -> AzureMarketplaceClient:
        """The client of one connection (endpoints: azure_endpoints)."""
        credentials = config.credentials
        return cls(
            endpoints=azure_endpoints(settings),
            tenant_id=credentials.get("tenant_id", ""),
            client_id=credentials.get("client_id", ""),
            client_secret=credentials.get("client_secret", ""),
        )

    def _new_credential(self) -> TokenCredential:
        authority = self.endpoints.authority
        host = (urlsplit(authority).hostname or "").lower()
        kwargs: dict[str, Any] = {
            "authority": authority,
            "disable_instance_discovery": host not in MICROSOFT_AUTHORITY_HOSTS,
            # Temporal retries the activity; azure-core's own retries (with sleeps) would
            # only stretch one attempt past its deadline.
            "retry_total": 0,
            "connection_timeout": PROVIDER_REQUEST_TIMEOUT.total_seconds(),
            "read_timeout": PROVIDER_REQUEST_TIMEOUT.total_seconds(),
            "raw_response_hook": self._saw_entra_response,
        }
        if self.endpoints.ca_file:
            kwargs["connection_verify"] = self.endpoints.ca_file
        return ClientSecretCredential(
            self._tenant_id, self._client_id, self._client_secret, **kwargs
        )

    def close(self) -> None:
        self.http.close()

    def _saw_entra_response(self, response: PipelineResponse[Any, Any]) -> None:
        answer = response.http_response
        self._entra.last = (answer.status_code, answer.headers.get("Retry-After"))

    # -- tokens ------------------------------------------------------------------------------

    def _token(self, fresh: bool = False) -> str:
        """A bearer token for the marketplace API (azure-identity's cached one unless
        `fresh`: then a new credential, so a token the API refused is never reused)."""
        with self._lock:
            if fresh:
                self._credential = self._new_credential()
            credential = self._credential
        self._heartbeat("Azure Marketplace: access token")
        self._entra.last = None
        try:
            return credential.get_token(SCOPE).token
        except AzureError as err:
            raise _token_error(err, getattr(self._entra, "last", None)) from None

    # -- prepare and send --------------------------------------------------------------------

    def batch_key(self, record: UsageRecord) -> str:
        """The batch usage event API takes events of any resources of the publisher in one
        request ("emit usage events for more than one purchased resource at once")."""
        return ""

    def prepare(self, records: Sequence[UsageRecord]) -> PreparedReport:
        """The exact batchUsageEvent request: its body as text (quantities exact), the
        request id derived from it (the same on every retry of this saved request)."""
        if not records:
            raise ValueError("prepare needs at least one record (the model: minItems 1)")
        if len(records) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} records per batch, got {len(records)}")
        items: list[str] = []
        for record in records:
            resource_id = record.account.get("resource_id")
            plan_id = record.account.get("plan_id")
            if not resource_id or not plan_id:
                raise ProviderRejected(
                    f"Azure Marketplace: {record.record_id}: the link needs resource_id and "
                    "plan_id (the SaaS subscription id and its plan)"
                )
            quantity = record.quantity
            if not quantity.is_finite() or quantity <= 0:
                raise ValueError(
                    f"{record.record_id}: Azure takes quantities > 0 only, got {quantity}"
                )
            if not fits_double(quantity):
                raise ProviderRejected(
                    f"Azure Marketplace: {record.record_id}: quantity {quantity} has more "
                    "digits than Azure's double quantity holds exactly"
                )
            fields = [
                f'"resourceId":{json.dumps(resource_id)}',
                f'"quantity":{quantity_text(quantity)}',
                f'"dimension":{json.dumps(record.dimension)}',
                f'"effectiveStartTime":{json.dumps(hour_text(record.hour_start))}',
                f'"planId":{json.dumps(plan_id)}',
            ]
            items.append("{" + ",".join(fields) + "}")
        body = '{"request":[' + ",".join(items) + "]}"
        digest = hashlib.sha256(body.encode()).hexdigest()
        return PreparedReport(
            marketplace=self.name,
            record_ids=tuple(record.record_id for record in records),
            payload={
                "method": "POST",
                "path": BATCH_PATH,
                "api_version": API_VERSION,
                "request_id": str(uuid.uuid5(_REQUEST_ID_NAMESPACE, digest)),
                "body": body,
            },
        )

    def send(self, report: PreparedReport) -> list[RecordResult]:
        """POST the saved body as it is; one result per record id, in order."""
        payload = report.payload
        body = str(payload["body"])
        request_id = str(payload["request_id"])
        response = self._request(
            "report usage",
            "POST",
            str(payload.get("path", BATCH_PATH)),
            {"api-version": str(payload.get("api_version", API_VERSION))},
            body.encode(),
            request_id,
        )
        answer = _json(response)
        results = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise ProviderUnavailable(
                f"Azure Marketplace: report usage: HTTP 200 without a result list: "
                f"{response.text[:300]}"
            )
        sent = json.loads(body, parse_float=Decimal)["request"]
        return _match(report.record_ids, sent, results)

    def check_credentials(self) -> None:
        """A token, then the cheapest authenticated read: the usage events of the last hour."""
        since = datetime.now(UTC) - timedelta(hours=1)
        self._request(
            "check credentials",
            "GET",
            USAGE_EVENTS_PATH,
            {"api-version": API_VERSION, "usageStartDate": since.strftime("%Y-%m-%dT%H:%M:%SZ")},
            None,
            str(uuid.uuid4()),
        )

    def _request(
        self,
        doing: str,
        method: str,
        path: str,
        params: dict[str, str],
        content: bytes | None,
        request_id: str,
    ) -> httpx.Response:
        """One API call; a refused token is replaced once and the call made again."""
        token = self._token()
        for attempt in (1, 2):
            self._heartbeat(f"Azure Marketplace: {doing}")
            try:
                with deadline.within(provider_request_timeout()):
                    response = self.http.request(
                        method,
                        f"{self.endpoints.api_base}{path}",
                        params=params,
                        content=content,
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                            "Accept": "application/json",
                            "x-ms-requestid": request_id,
                            "x-ms-correlationid": request_id,
                        },
                        timeout=deadline.timeout(),
                    )
            except httpx.HTTPError as err:  # timeouts, refused and dropped connections
                raise ProviderUnavailable(
                    f"Azure Marketplace: {doing}: {type(err).__name__}: {err}"
                ) from err
            self._heartbeat(f"Azure Marketplace: {doing}: answered")
            status = response.status_code
            if status in (401, 403) and attempt == 1:
                token = self._token(fresh=True)
                continue
            if status < 300:
                return response
            text = f"Azure Marketplace: {doing}: HTTP {status}: {_message(response)}"
            if status == 429:
                wait = retry_after(response.headers.get("Retry-After"), DEFAULT_RETRY_AFTER)
                raise ProviderRateLimited(text, wait)
            if status in (401, 403):
                raise ProviderAuthFailed(
                    f"{text} (check the connection's tenant_id, client_id, client_secret and "
                    "that the offer's technical configuration names this Entra app)"
                )
            if status >= 500:
                raise ProviderUnavailable(text)
            raise ProviderRejected(text)
        raise AssertionError("unreachable")


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """The error's text: {message, details[].message} (the page's 400), else the body."""
    body = _json(response)
    if isinstance(body, dict):
        parts = [str(body.get("message") or body.get("code") or "")]
        for detail in body.get("details") or []:
            if isinstance(detail, dict) and detail.get("message"):
                parts.append(f"{detail.get('target', '')}: {detail['message']}")
        text = "; ".join(p for p in parts if p)
        if text:
            return text
    return response.text[:300]


def _token_error(err: AzureError, last: tuple[int, str | None] | None) -> Exception:
    """What a failed token request means: a network failure or a throttled / failing Entra
    is passing; Entra refusing the client (invalid_client, unauthorized_client, ...: HTTP 400
    or 401) needs a person. `last`: the status and Retry-After of Entra's last response."""
    text = f"Azure Marketplace: Entra ID token: {err.message}"
    cause: BaseException | None = err
    while cause is not None:  # azure-identity wraps network errors in its own
        if isinstance(cause, ServiceRequestError | ServiceResponseError):
            return ProviderUnavailable(text)
        cause = cause.__cause__ or cause.__context__
    status, wait = last if last is not None else (None, None)
    if status == 429:
        return ProviderRateLimited(text, retry_after(wait, DEFAULT_RETRY_AFTER))
    if status is not None and status >= 500:
        return ProviderUnavailable(text)
    if isinstance(err, ClientAuthenticationError):
        return ProviderAuthFailed(text)
    return ProviderUnavailable(text)


def _match(
    record_ids: Sequence[str], sent: list[dict[str, Any]], results: list[Any]
) -> list[RecordResult]:
    """One RecordResult per record: result items found by resource + dimension + hour (the
    page does not promise the order); a record without an item is unprocessed (RETRY)."""
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in results:
        if isinstance(item, dict):
            key = _key(
                str(item.get("resourceId") or item.get("resourceUri") or ""),
                str(item.get("dimension", "")),
                str(item.get("effectiveStartTime", "")),
            )
            by_key.setdefault(key, item)
    out = []
    for record_id, event in zip(record_ids, sent, strict=True):
        item = by_key.get(
            _key(event["resourceId"], event["dimension"], event["effectiveStartTime"])
        )
        out.append(_result(record_id, item))
    return out


def _result(record_id: str, item: dict[str, Any] | None) -> RecordResult:
    if item is None:
        return RecordResult(record_id, Outcome.RETRY, detail="no result for this event")
    status = str(item.get("status", ""))
    raw_error = item.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    message = str(error.get("message", ""))
    detail = f"{status}: {message}" if message else status
    if status == "Accepted":
        return RecordResult(record_id, Outcome.ACCEPTED, str(item.get("usageEventId", "")), detail)
    if status == "Duplicate":
        held = (error.get("additionalInfo") or {}).get("acceptedMessage") or {}
        quantity = held.get("quantity")
        try:
            accepted = Decimal(str(quantity)) if quantity is not None else None
        except InvalidOperation:
            accepted = None
        return RecordResult(
            record_id,
            Outcome.DUPLICATE,
            str(held.get("usageEventId", "")),
            detail,
            accepted_quantity=accepted,
        )
    if status == "Expired":
        return RecordResult(
            record_id,
            Outcome.NEEDS_ATTENTION,
            detail=f"window closed: Azure takes usage up to 24 h old ({detail})",
        )
    if status in ATTENTION_STATUSES:
        return RecordResult(record_id, Outcome.NEEDS_ATTENTION, detail=detail)
    if status == "Error":
        return RecordResult(record_id, Outcome.RETRY, detail=detail)
    return RecordResult(
        record_id, Outcome.NEEDS_ATTENTION, detail=f"unknown status {detail or '(none)'}"
    )
