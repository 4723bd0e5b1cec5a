"""QuickBooks Online invoices, over its REST API (v3) with OAuth 2.0 (authlib, activities/oauth.py).

Intuit publishes no official Python SDK for the Accounting API, so this module speaks the
documented JSON protocol with httpx: one `POST /v3/company/{realmId}/invoice` per billing invoice,
every line a SalesItemLineDetail carrying the mapped Item, tax on QuickBooks' own tax fields as the
company's tax settings need (quickbooks_tax.py). The write carries a `requestid` derived from the
billing invoice id and a digest of the request body (QuickBooks answers a repeat with the original
response, a fault too, so a corrected request must get a new one), and is preceded by a lookup
by DocNumber (or by the customer's invoices) for the billbridge marker in PrivateNote, so a retry
after the request id is forgotten still finds what an earlier attempt wrote. One billing invoice
never becomes two QuickBooks invoices.

QuickBooks has no drafts: an invoice is issued when it is created. One an earlier attempt created
that is gone (a person deleted it in QuickBooks) is looked for again by number and marker, and if
it is not there a person must decide; it is never silently created a second time.

Every request heartbeats before and after, and has a total deadline (core/timeouts.py).

Money: QuickBooks takes decimal amounts with two places; every amount is sent as a JSON number
whose text is the exact Decimal (no binary-float rounding), and QuickBooks' TotalAmt and
TxnTaxDetail.TotalTax are compared with the billing total and tax to the cent before the export
counts as done; an invoice that differs is deleted again and the export needs attention.

The company's country, currencies and tax settings are read once per connection and worker
(CompanyInfo and Preferences), and read again after QuickBooks refuses an invoice or a setting
needs attention.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from billbridge.activities.oauth import OAuthApp, OAuthEndpoints, TokenKeeper
from billbridge.activities.providers import deadline
from billbridge.activities.providers.base import (
    MAX_RECONCILED,
    ConnectionConfig,
    Plan,
    ProviderInvoice,
    PushContext,
    heartbeat_running_activity,
    provider_request_timeout,
)
from billbridge.activities.providers.gate import (
    GateFactory,
    RequestGate,
    connection_rate,
    gate_for,
)
from billbridge.activities.providers.line_numbers import json_number, quantity_and_price
from billbridge.activities.providers.quickbooks_tax import (
    Company,
    TaxCode,
    TaxRate,
    check_mapped,
    plan_tax,
    wanted_keys,
)
from billbridge.core.breakdown import ExportLine, InvoiceBreakdown
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderInvoiceMissing,
    ProviderItemMissing,
    ProviderLimitExceeded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderTotalsDiffer,
    ProviderUnavailable,
    retry_after,
)
from billbridge.core.messages import PushResult
from billbridge.core.models import Customer, Invoice
from billbridge.core.money import from_minor, minor_unit_exponent

# Where the local QuickBooks emulator listens when QUICKBOOKS_API_BASE is unset.
LOCAL_EMULATOR_PORT = 12112
MINOR_VERSION = "75"
SCOPE = "com.intuit.quickbooks.accounting"
# Intuit's OAuth endpoints (developer.intuit.com, OAuth 2.0 discovery document).
INTUIT_AUTHORIZE_URL = "https://appcenter.intuit.com/connect/oauth2"
INTUIT_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
INTUIT_REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
SANDBOX, PRODUCTION = "sandbox", "production"
SANDBOX_API_BASE = "https://sandbox-quickbooks.api.intuit.com"
PRODUCTION_API_BASE = "https://quickbooks.api.intuit.com"
# Where a person opens an invoice in QuickBooks Online, per environment. UNCONFIRMED: Intuit
# documents no deep-link format; this is the address of QuickBooks Online's own invoice page
# (app.qbo.intuit.com for real companies, app.sandbox.qbo.intuit.com for sandbox companies).
INVOICE_PAGE = {
    SANDBOX: "https://app.sandbox.qbo.intuit.com/app/invoice?txnId=",
    PRODUCTION: "https://app.qbo.intuit.com/app/invoice?txnId=",
}
# The local emulator's well-known OAuth client (emulators/quickbooks), used when
# QUICKBOOKS_API_BASE is unset; a real Intuit app's come from QUICKBOOKS_CLIENT_ID/_SECRET.
EMULATOR_CLIENT_ID = "billbridge-emulator-client"
EMULATOR_CLIENT_SECRET = "billbridge-emulator-secret"
REAUTHORIZE = "re-authorize with `billbridge connections authorize quickbooks`"
# QuickBooks documents no Retry-After; its throttling guide says to wait 60 s after a 429.
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
# "500 requests per minute per realm ID" and "10 requests per second, per realm ID and app"
# (https://developer.intuit.com/app/developer/qbo/docs/learn/limits-and-throttles). Every
# request waits for its turn at the connection's gate, shared by all workers
# (activities/providers/gate.py), at the connection's `requests_per_second` or 95% of the
# per-minute limit, one at a time (at most 1 + 7.9 in any second, 476 in any minute), leaving
# the rest to the realm's other callers (the CLI's checks, other apps). A 429 costs a minute, so
# the pace stays under the limit rather than at it.
REQUESTS_PER_MINUTE = 500
MAX_DOC_NUMBER = 21  # DocNumber's documented maximum length
MARKER = "billbridge invoice "  # PrivateNote prefix that identifies our invoices
# QuickBooks keeps Qty and UnitPrice to 7 decimal places. UNCONFIRMED at Intuit's reference (the
# Invoice entity only says "Decimal"); the issue's reading. A quantity with more is rounded to 7
# before the unit price is derived, so QuickBooks' Qty x UnitPrice still gives the line amount.
UNIT_PRICE_PLACES = Decimal("1e-7")
QTY_PLACES = Decimal("1e-7")
QUERY_PAGE = 1000  # QuickBooks' maximum maxresults
# Most rows a query reads (page by page) before it gives up with a clear error; every query here
# is narrowed to a handful of rows, so more means something is wrong.
MAX_QUERY_ROWS = 5000
ITEM_CACHE_SECONDS = 300.0
# A company's settings change rarely (multicurrency, once on, stays on); they are read again
# after this long, or at once after QuickBooks refuses an invoice.
COMPANY_CACHE_SECONDS = 3600.0
# Creates answered in a row with an invoice an earlier attempt deleted (see _push) before the
# attempt gives up and is retried later.
MAX_REPLAYED_DELETIONS = 3


def request_id(invoice_id: str, step: str, body: Mapping[str, Any] | None = None) -> str:
    """Deterministic per billing object, step and request body, within QuickBooks' 50 characters.

    QuickBooks answers a repeated requestid with the original response, a fault too
    (https://blogs.intuit.com/2015/04/06/15346/): a request corrected after a fault (another tax
    code, a new customer) must carry a new id, or the old fault would come back forever. The
    lookup before every write still keeps a retry from creating a second invoice.
    """
    content = json.dumps(body, sort_keys=True, default=str) if body is not None else ""
    digest = hashlib.sha256(f"{invoice_id}\0{step}\0{content}".encode()).hexdigest()[:40]
    return f"bb-{digest}"


def request_id_after(requestid: str, deleted_invoice_id: str) -> str:
    """The requestid that follows `requestid` once the invoice it created was deleted."""
    digest = hashlib.sha256(f"{requestid}\0{deleted_invoice_id}".encode()).hexdigest()[:40]
    return f"bb-{digest}"


def oauth_endpoints(settings: Settings) -> OAuthEndpoints:
    """Intuit's endpoints for the real API; the emulator serves all three itself.

    Sandbox and production share Intuit's OAuth endpoints: the discovery documents
    (https://developer.intuit.com/.well-known/openid_sandbox_configuration/ and
    .../openid_configuration/, the URLs intuitlib/config.py of github.com/intuit/
    oauth-pythonclient reads) name the same authorize, token and revoke URLs. What tells the
    two apart is the app's keys (Development vs Production "Keys & OAuth").
    """
    base = configured_api_base(settings)
    # Opt in to the refresh token's five-year hard expiry in every token response
    # (https://blogs.a.intuit.com/2025/11/12/important-changes-to-refresh-token-policy; header
    # name from Intuit's own OAuth client: https://github.com/intuit/oauth-jsclient,
    # src/OAuthClient.js, CHANGELOG 4.2.4).
    headers = ((HARD_EXPIRY_HEADER, "true"),)
    if _is_intuit(base):
        return OAuthEndpoints(
            INTUIT_AUTHORIZE_URL, INTUIT_TOKEN_URL, INTUIT_REVOKE_URL, SCOPE, headers
        )
    return OAuthEndpoints(
        f"{base}/connect/oauth2",
        f"{base}/oauth2/v1/tokens/bearer",
        f"{base}/oauth2/v1/tokens/revoke",
        SCOPE,
        headers,
    )


def oauth_app(settings: Settings) -> OAuthApp:
    """The Intuit app from QUICKBOOKS_CLIENT_ID/_SECRET; the emulator's own client by default
    (its development keys: a sandbox company, http://localhost redirects allowed)."""
    client_id, secret = settings.quickbooks_client_id, settings.quickbooks_client_secret
    if not _is_intuit(configured_api_base(settings)):
        client_id, secret = client_id or EMULATOR_CLIENT_ID, secret or EMULATOR_CLIENT_SECRET
    return OAuthApp(
        oauth_endpoints(settings),
        client_id,
        secret,
        company_parameter="realmId",
        environments=(SANDBOX, PRODUCTION),
        default_environment=default_environment(settings),
        # "You can add localhost (no HTTPS) as a URI for sandbox environments"; production
        # redirect URIs must begin with https:
        # https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/set-redirect-uri
        local_redirect_environments=(SANDBOX,),
    )


def _is_intuit(url: str) -> bool:
    return (urlsplit(url).hostname or "").endswith("intuit.com")


def default_environment(settings: Settings) -> str:
    """The environment of a grant that does not name one: sandbox for the sandbox host and the
    emulator (whose default keys are development keys), production for Intuit's production."""
    base = configured_api_base(settings)
    if _is_intuit(base) and urlsplit(base).hostname != urlsplit(SANDBOX_API_BASE).hostname:
        return PRODUCTION
    return SANDBOX


def configured_api_base(settings: Settings) -> str:
    """QUICKBOOKS_API_BASE as core/config.py resolved it (unset: the local emulator)."""
    base = settings.api_base(QuickBooksInvoiceProvider.name)
    return (base or f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}").rstrip("/")


def api_base(settings: Settings, environment: str = "") -> str:
    """Where a connection's Accounting API calls go.

    With an Intuit base the company's environment picks the host: sandbox companies have their
    own base URL, sandbox-quickbooks.api.intuit.com, live ones quickbooks.api.intuit.com
    (https://developer.intuit.com/app/developer/qbo/docs/get-started/create-a-request, "Get
    baseURLs for API calls").
    Any other base (the emulator, a proxy) is used as configured for both.
    """
    base = configured_api_base(settings)
    if not _is_intuit(base) or not environment:
        return base
    return SANDBOX_API_BASE if environment == SANDBOX else PRODUCTION_API_BASE


def _number(value: Decimal) -> float:
    """A Decimal as a JSON number with the same value (QuickBooks' numbers are doubles)."""
    return float(json_number(value))


def _totals(invoice: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """(TotalAmt, Balance) of an invoice as QuickBooks holds them (two-decimal amounts, whose
    JSON number text is exact)."""
    return Decimal(str(invoice["TotalAmt"])), Decimal(str(invoice["Balance"]))


def _quote(value: str) -> str:
    """A string literal of QuickBooks' query language (backslash escapes quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fault(body: Any) -> tuple[str, str, str]:
    """(type, code, message) of a QuickBooks Fault body; ("", "", "") if it is none."""
    if not isinstance(body, dict) or "Fault" not in body:
        return "", "", ""
    fault = body["Fault"] or {}
    errors = fault.get("Error") or [{}]
    first = errors[0]
    detail = first.get("Detail") or ""
    message = first.get("Message") or ""
    return (
        str(fault.get("type") or ""),
        str(first.get("code") or ""),
        f"{message}: {detail}" if detail else message,
    )


# Words of the faults (6000, 2500) that a company's tax or currency settings cause, e.g.
# "Make sure all your transactions have a GST/HST rate before you save"
# (github.com/ruckus/quickbooks-ruby/issues/351). UNCONFIRMED: Intuit lists no codes for these;
# matching the message is the only way to tell them from other 6000 faults.
SETTINGS_FAULT_WORDS = re.compile(r"\b(tax|vat|gst|currency|multicurrency)", re.IGNORECASE)


def _about_settings(err: QuickBooksFault) -> bool:
    # 6000: business rule; 2500: invalid reference (a tax code the company does not have).
    return err.code in ("6000", "2500") and SETTINGS_FAULT_WORDS.search(str(err)) is not None


class QuickBooksFault(ProviderRejected):
    """A ValidationFault, with its code (610 object not found, 6140 duplicate DocNumber, ...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def type_name(self) -> str:  # the retry decision of ProviderRejected: never retried
        return ProviderRejected.__name__


@dataclass
class QuickBooksPlan(Plan):
    realm_id: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    # The billing tax QuickBooks' TxnTaxDetail.TotalTax must show.
    tax_minor: int = 0

    def requests(self) -> list[dict[str, Any]]:
        return [
            {
                "method": "POST",
                "path": f"/v3/company/{self.realm_id}/invoice",
                "params": {"requestid": self.request_id, "minorversion": MINOR_VERSION},
                "body": self.body,
            }
        ]


def _quantity_and_unit(line: ExportLine, amount: Decimal) -> tuple[Decimal, Decimal]:
    """(Qty, UnitPrice) as QuickBooks keeps them (7 decimals) whose product QuickBooks rounds to
    exactly `amount`, else (1, amount). A quantity with more decimals than QuickBooks keeps is
    rounded as QuickBooks would, and the unit price derived from the rounded one."""
    return quantity_and_price(
        line,
        amount,
        quantity_step=QTY_PLACES,
        price_step=UNIT_PRICE_PLACES,
        amount_step=Decimal("0.01"),
        round_quantity=True,
    )


def _line(line: ExportLine, currency: str, item_id: str, tax_code: str | None) -> dict[str, Any]:
    amount = from_minor(line.amount_minor, currency)
    quantity, unit = _quantity_and_unit(line, amount)
    detail: dict[str, Any] = {
        "ItemRef": {"value": item_id},
        "Qty": _number(quantity),
        "UnitPrice": _number(unit),
    }
    if tax_code is not None:
        detail["TaxCodeRef"] = {"value": tax_code}
    if line.period_start is not None:
        detail["ServiceDate"] = line.period_start.date().isoformat()
    description = line.description
    if line.kind == "usage" and quantity != line.quantity:
        # The billing quantity QuickBooks cannot keep stays readable on the line.
        description = f"{description} (quantity {line.quantity})"
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": _number(amount),
        "Description": description[:4000],
        "SalesItemLineDetail": detail,
    }


def _tax_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """TxnTaxDetail with its Decimals as exact JSON numbers."""
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if key == "TotalTax":
            out[key] = _number(value)
        elif key == "TaxLine":
            out[key] = [
                {
                    **line,
                    "Amount": _number(line["Amount"]),
                    "TaxLineDetail": {
                        **line["TaxLineDetail"],
                        "TaxPercent": _number(line["TaxLineDetail"]["TaxPercent"]),
                        "NetAmountTaxable": _number(line["TaxLineDetail"]["NetAmountTaxable"]),
                    },
                }
                for line in value
            ]
        else:
            out[key] = value
    return out


class QuickBooksInvoiceProvider:
    name = "quickbooks"
    # Tax goes on QuickBooks' tax fields (TxnTaxDetail, TaxCodeRef), so it needs no mapped item.
    unmapped_kinds = frozenset({"tax"})

    def __init__(
        self,
        base_url: str,
        tokens: TokenKeeper,
        *,
        connection_id: str = name,
        gates: GateFactory | None = None,
        requests_per_second: float | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.connection_id = connection_id
        self._gates = gates
        self._rate = connection_rate(requests_per_second, REQUESTS_PER_MINUTE / 60)
        # Retries belong to Temporal; the client only keeps connections alive. Each request
        # ends by its total deadline (see _call).
        self.http = deadline.client(self.base_url)
        self._calls = threading.local()
        self._gate: RequestGate | None = None  # built on the first call
        self._items: dict[str, float] = {}  # item id -> when its existence check expires
        self._items_lock = threading.Lock()
        # Tax codes checked by resolve_more_mappings, for plan: id -> (expiry, code).
        self._tax_codes: dict[str, tuple[float, TaxCode]] = {}
        # The company's settings, read once per connection (a worker builds one provider per
        # connection and version) and read again after a refusal: (expiry, settings).
        self._company: tuple[float, Company] | None = None
        self._company_lock = threading.Lock()
        # The currency of each QuickBooks customer read or created, for plan's check.
        self._customer_currencies: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, config: ConnectionConfig
    ) -> QuickBooksInvoiceProvider:
        if config.credentials is None:
            raise ProviderAuthFailed(f"QuickBooks needs the store's OAuth grant; {REAUTHORIZE}")
        endpoints = oauth_endpoints(settings)
        tokens = TokenKeeper(
            endpoints,
            config.credentials,
            lock_key=f"{endpoints.token_url} {config.connection_id}",
            reauthorize_hint=REAUTHORIZE,
        )
        environment = ""
        if _is_intuit(configured_api_base(settings)):
            # The company's environment is the grant's (a row changed through the CLI, a rotated
            # token included, builds a new provider: activities/export.py).
            try:
                environment = tokens.grant.environment or default_environment(settings)
            except ProviderAuthFailed:
                environment = ""  # not authorized: the first call says so
        return cls(
            api_base(settings, environment),
            tokens,
            connection_id=config.connection_id,
            gates=config.gates,
            requests_per_second=config.settings.requests_per_second,
        )

    @property
    def request_count(self) -> int:
        return int(getattr(self._calls, "count", 0))

    @property
    def realm_id(self) -> str:
        realm = self.tokens.grant.company_id
        if not realm:
            raise ProviderAuthFailed(f"the stored grant names no QuickBooks company; {REAUTHORIZE}")
        return realm

    # -- HTTP ---------------------------------------------------------------------------------

    @property
    def gate(self) -> RequestGate:
        """The connection's gate; without the store's, this process's pacer for the company (the
        realm is the grant's, known once it is read)."""
        if self._gate is None:
            account = ("quickbooks", self.base_url, self.realm_id if self._gates is None else "")
            self._gate = gate_for(
                self._gates, self.connection_id, "QuickBooks", self._rate, account
            )
        return self._gate

    def _call(
        self,
        doing: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call; a refused access token is refreshed and the call made once more.

        Every request (and the token step, which may refresh over the network) heartbeats
        before and after, and has a total deadline.
        """
        heartbeat = getattr(self._calls, "heartbeat", None) or heartbeat_running_activity
        url = f"{self.base_url}/v3/company/{self.realm_id}/{path}"
        query = {"minorversion": MINOR_VERSION, **(params or {})}
        for attempt in (1, 2):
            self._calls.count = self.request_count + 1
            heartbeat(doing)
            self.gate.before_request(doing)
            # The token is taken once the request may go: one taken before the wait could
            # expire during it. After a refusal (attempt 2) it is the token refreshed below.
            heartbeat(f"{doing}: access token")
            token = self.tokens.access_token()
            heartbeat(doing)
            try:
                with deadline.within(provider_request_timeout()):
                    response = self.http.request(
                        method,
                        url,
                        params=query,
                        json=json_body,
                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                        timeout=deadline.timeout(),
                    )
            except httpx.HTTPError as err:  # timeouts, refused and dropped connections
                raise ProviderUnavailable(
                    f"QuickBooks {doing}: {type(err).__name__}: {err}"
                ) from err
            heartbeat(f"{doing}: answered")
            if response.status_code == 401 and attempt == 1:
                self.tokens.after_rejection(token)
                continue
            try:
                return self._body(doing, response)
            except ProviderRateLimited as err:
                self.gate.refused_for_rate(err)
                raise
        raise AssertionError("unreachable")

    def _body(self, doing: str, response: httpx.Response) -> dict[str, Any]:
        """The JSON body, or the error it stands for (decided per status and fault type)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        kind, code, message = _fault(body)
        status = response.status_code
        text = f"QuickBooks {doing}: {message or status}"
        if status == 429:
            wait = retry_after(response.headers.get("Retry-After"), DEFAULT_RETRY_AFTER)
            raise ProviderRateLimited(text, wait)
        if status in (401, 403) or kind in ("AuthenticationFault", "AuthorizationFault"):
            raise ProviderAuthFailed(f"{text}; {REAUTHORIZE}")
        if status >= 500 or kind == "SystemFault" or (status == 200 and body is None):
            raise ProviderUnavailable(text)
        if kind or status >= 400:  # ValidationFault, possibly with HTTP 200
            raise QuickBooksFault(text, code)
        assert isinstance(body, dict)
        return body

    def _query(
        self, doing: str, entity: str, where: str, *, at_most: int = MAX_QUERY_ROWS
    ) -> list[dict[str, Any]]:
        """Every row of `select * from entity where ...` (see _query_rows)."""
        return list(self._query_rows(doing, entity, where, at_most=at_most))

    def _query_rows(
        self,
        doing: str,
        entity: str,
        where: str | None,
        *,
        order_by: str | None = None,
        at_most: int = MAX_QUERY_ROWS,
    ) -> Iterator[dict[str, Any]]:
        """The rows of `select * from entity [where ...] [orderby ...]`, page by page
        (STARTPOSITION is 1-based, MAXRESULTS at most 1000: developer.intuit.com, Accounting
        API, "Query operations and syntax").

        More than `at_most` rows is an error, not an endless read.
        """
        read = 0
        clauses = (f" where {where}" if where else "") + (
            f" orderby {order_by}" if order_by else ""
        )
        while True:
            sql = (
                f"select * from {entity}{clauses} startposition {read + 1} maxresults {QUERY_PAGE}"
            )
            body = self._call(doing, "GET", "query", params={"query": sql})
            page = body.get("QueryResponse", {}).get(entity, [])
            read += len(page)
            if read > at_most:
                raise ProviderLimitExceeded(
                    f"QuickBooks {doing}: more than {at_most} {entity} rows match; billbridge "
                    f"reads at most {at_most} here"
                )
            yield from page
            if len(page) < QUERY_PAGE:
                return

    # -- company settings -------------------------------------------------------------------------

    def company(self) -> Company:
        """Country, currencies and tax settings, read once per connection and worker."""
        now = time.monotonic()
        with self._company_lock:
            cached = self._company
        if cached is not None and cached[0] > now:
            return cached[1]
        info = self._call("reading the company", "GET", f"companyinfo/{self.realm_id}")
        # developer.intuit.com, Accounting API, Preferences: "Read preferences".
        preferences = self._call("reading the company's preferences", "GET", "preferences")
        company = Company.from_api(info.get("CompanyInfo", {}), preferences.get("Preferences", {}))
        with self._company_lock:
            self._company = (now + COMPANY_CACHE_SECONDS, company)
        return company

    def forget_company(self) -> None:
        """Read the company's settings again on next use (after QuickBooks refused a write)."""
        with self._company_lock:
            self._company = None

    def resolve_more_mappings(
        self,
        breakdown: InvoiceBreakdown,
        read_mappings: Callable[[set[str]], dict[str, str]],
    ) -> dict[str, str]:
        """Before anything is written: the invoice's currency fits the company, and every line
        that needs a tax code has a mapped, active one (`tax:<rate>`, `tax:none`, `tax:*`).
        Returns the tax mappings found (mapping key -> TaxCode Id), for plan."""
        company = self.company()
        with self._reading_again_when_refused():
            company.check_currency(breakdown.invoice_id, breakdown.currency)
        wanted = wanted_keys(company.tax_model, breakdown)
        if not wanted:
            return {}
        mapped = read_mappings({key for keys in wanted for key in keys})
        check_mapped(breakdown.invoice_id, wanted, mapped)
        self.resolve_tax_codes(set(mapped.values()))
        return mapped

    @contextmanager
    def _reading_again_when_refused(self) -> Iterator[None]:
        """A setting the invoice needs changed in QuickBooks: read the company again next time."""
        try:
            yield
        except ProviderSetupNeeded:
            self.forget_company()
            raise

    def resolve_tax_codes(self, code_ids: Collection[str]) -> None:
        """Read the mapped tax codes and their sales rates; ProviderItemMissing names unknown or
        inactive ones (TaxCode, TaxRate entities: developer.intuit.com, Accounting API)."""
        now = time.monotonic()
        unknown = sorted(i for i in code_ids if self._tax_codes.get(i, (0.0,))[0] <= now)
        if not unknown:
            return
        quoted = ", ".join(_quote(i) for i in unknown)
        rows = self._query("looking up mapped tax codes", "TaxCode", f"Id in ({quoted})")
        found = {str(row["Id"]): row for row in rows if row.get("Active", True)}
        missing = [i for i in unknown if i not in found]
        if missing:
            raise ProviderItemMissing(
                "mapped QuickBooks tax codes do not exist or are inactive: " + ", ".join(missing)
            )
        rate_ids = {
            str(detail["TaxRateRef"]["value"])
            for row in found.values()
            for detail in (row.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
        }
        rates: dict[str, TaxRate] = {}
        if rate_ids:
            quoted = ", ".join(_quote(i) for i in sorted(rate_ids))
            for row in self._query("looking up tax rates", "TaxRate", f"Id in ({quoted})"):
                rate = TaxRate(
                    str(row["Id"]), str(row.get("Name", "")), Decimal(str(row["RateValue"]))
                )
                rates[rate.id] = rate
        for code_id, row in found.items():
            details = (row.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []
            code_rates = tuple(
                rates[str(d["TaxRateRef"]["value"])]
                for d in details
                if str(d["TaxRateRef"]["value"]) in rates
            )
            self._tax_codes[code_id] = (
                now + ITEM_CACHE_SECONDS,
                TaxCode(code_id, str(row.get("Name", "")), code_rates),
            )

    # -- checks -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        self._call("checking the connection", "GET", f"companyinfo/{self.realm_id}")

    def check_customer(self, provider_customer_id: str) -> None:
        try:
            body = self._call("reading the customer", "GET", f"customer/{provider_customer_id}")
        except QuickBooksFault as err:
            if err.code != "610":
                raise
            raise ProviderCustomerMissing(
                f"QuickBooks customer {provider_customer_id!r} (the customer's "
                f"payment_provider_id) does not exist: {err}"
            ) from err
        self._remember_currency(provider_customer_id, body.get("Customer", {}))
        if not body.get("Customer", {}).get("Active", True):
            # QuickBooks "deletes" a customer by making it inactive.
            raise ProviderCustomerMissing(
                f"QuickBooks customer {provider_customer_id!r} (the customer's "
                "payment_provider_id) was deleted (made inactive)"
            )

    def find_or_create_customer(self, customer: Customer) -> str:
        if customer.email:
            found = self._query(
                "looking up the customer by e-mail",
                "Customer",
                f"PrimaryEmailAddr = {_quote(customer.email)}",
            )
            if len(found) == 1:
                self._remember_currency(str(found[0]["Id"]), found[0])
                return str(found[0]["Id"])
            if len(found) > 1:
                raise ProviderCustomerMissing(
                    f"{len(found)} QuickBooks customers share the e-mail of customer "
                    f"{customer.id}; set its payment_provider_id to the right one"
                )
        name = (customer.name or customer.id)[:500]
        body: dict[str, Any] = {"DisplayName": name, "Notes": f"billbridge customer {customer.id}"}
        if customer.email:
            body["PrimaryEmailAddr"] = {"Address": customer.email}
        company = self.company()
        if customer.currency and company.multicurrency:
            # A QuickBooks customer has one currency, set when it is created (blogs.intuit.com/
            # 2015/06/18/multicurrency-for-us-companies-coming-in-quickbooks-online-v87): the
            # export passes the invoice's.
            body["CurrencyRef"] = {"value": customer.currency.upper()}
        try:
            created = self._call(
                "creating the customer",
                "POST",
                "customer",
                params={"requestid": request_id(customer.id, "customer", body)},
                json_body=body,
            )
        except QuickBooksFault as err:
            if err.code != "6240":  # duplicate DisplayName
                raise
            raise ProviderCustomerMissing(
                f"a QuickBooks customer named {name!r} exists with another e-mail; set the "
                f"payment_provider_id of customer {customer.id} to the right one"
            ) from err
        self._remember_currency(str(created["Customer"]["Id"]), created["Customer"])
        return str(created["Customer"]["Id"])

    def _remember_currency(self, customer_id: str, customer: Mapping[str, Any]) -> None:
        currency = (customer.get("CurrencyRef") or {}).get("value")
        if currency:
            self._customer_currencies[customer_id] = str(currency).upper()

    def resolve_items(self, provider_item_ids: Collection[str]) -> dict[str, str]:
        """Mappings name QuickBooks Item ids; each must exist and be active."""
        wanted = sorted(set(provider_item_ids))
        now = time.monotonic()
        with self._items_lock:
            unknown = [i for i in wanted if self._items.get(i, 0.0) <= now]
        if unknown:
            quoted = ", ".join(_quote(i) for i in unknown)
            rows = self._query("looking up mapped items", "Item", f"Id in ({quoted})")
            found = {str(row["Id"]) for row in rows if row.get("Active", True)}
            missing = [i for i in unknown if i not in found]
            if missing:
                raise ProviderItemMissing(
                    "mapped QuickBooks items do not exist or are inactive: " + ", ".join(missing)
                )
            with self._items_lock:
                for item_id in unknown:
                    self._items[item_id] = now + ITEM_CACHE_SECONDS
        return {item_id: item_id for item_id in wanted}

    # -- for seeding demos and reading results back (not part of the export interface) ----------

    def ensure_item(self, name: str) -> str:
        """The Id of the active Service item named `name`, created if there is none."""
        found = self._query("looking up an item", "Item", f"Name = {_quote(name)}")
        if found:
            return str(found[0]["Id"])
        created = self._call(
            "creating an item",
            "POST",
            "item",
            params={"requestid": request_id(name, "item")},
            json_body={"Name": name[:100], "Type": "Service"},
        )
        return str(created["Item"]["Id"])

    def read_invoice(self, invoice_id: str) -> dict[str, Any]:
        return dict(self._call("reading the invoice", "GET", f"invoice/{invoice_id}")["Invoice"])

    def read_totals(self, invoice_id: str) -> tuple[Decimal, Decimal]:
        """(TotalAmt, Balance) of an invoice, as QuickBooks holds them."""
        return _totals(self.read_invoice(invoice_id))

    # -- reconcile ---------------------------------------------------------------------------

    def export_ref(self, invoice: Invoice) -> str:
        """The billing invoice id, which the invoice's PrivateNote carries after MARKER."""
        return invoice.id

    def list_exported(self, since: datetime | None) -> Iterator[ProviderInvoice]:
        """Every invoice whose PrivateNote carries billbridge's marker, created at or after
        `since`: `select * from Invoice where MetaData.CreateTime >= '...' orderby
        MetaData.CreateTime` page by page (developer.intuit.com, Accounting API, "Query
        operations and syntax": MetaData.CreateTime takes the comparison operators).
        PrivateNote is not a queryable field, so the marker is checked here. A voided invoice
        stays with zero amounts (UNCONFIRMED whether QuickBooks keeps its PrivateNote): if it
        does, it shows as a total mismatch, for a person to look at."""
        where = None
        if since is not None:
            moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
            where = f"MetaData.CreateTime >= {_quote(moment.isoformat(timespec='seconds'))}"
        rows = self._query_rows(
            "listing invoices",
            "Invoice",
            where,
            # Oldest first: an invoice created while the list is read lands on a later page.
            order_by="MetaData.CreateTime",
            at_most=MAX_RECONCILED,
        )
        for row in rows:
            note = str(row.get("PrivateNote") or "")
            if not note.startswith(MARKER):
                continue
            # "billbridge invoice <id>", or "... (number <n>)" when DocNumber could not hold it.
            ref = note[len(MARKER) :].partition(" (number ")[0]
            total, balance = _totals(row)
            created = (row.get("MetaData") or {}).get("CreateTime")
            yield ProviderInvoice(
                provider_invoice_id=str(row["Id"]),
                ref=ref,
                total=total,
                currency=(row.get("CurrencyRef") or {}).get("value"),
                status="paid" if balance == 0 else "open",
                created_at=datetime.fromisoformat(created) if created else None,
            )

    # -- plan (pure) ---------------------------------------------------------------------------

    def plan(
        self,
        invoice: Invoice,
        breakdown: InvoiceBreakdown,
        items: Mapping[str, str],
        provider_customer_id: str,
        now: float,
    ) -> QuickBooksPlan:
        currency = invoice.currency.upper()
        if minor_unit_exponent(currency) > 2:
            raise ProviderRejected(
                f"QuickBooks amounts have two decimals; {currency} has "
                f"{minor_unit_exponent(currency)}"
            )
        company = self.company()  # read by resolve_more_mappings, which runs first
        with self._reading_again_when_refused():
            company.check_currency(invoice.id, currency)
        customer_currency = self._customer_currencies.get(provider_customer_id)
        if customer_currency is not None and customer_currency != currency:
            # A QuickBooks customer has one currency (blogs.intuit.com/2015/06/18/
            # multicurrency-for-us-companies-coming-in-quickbooks-online-v87).
            raise ProviderSetupNeeded(
                f"QuickBooks customer {provider_customer_id} is in {customer_currency}, invoice "
                f"{invoice.id} in {currency}; a QuickBooks customer has one currency: set the "
                f"customer's payment_provider_id to a QuickBooks customer in {currency}"
            )
        with self._reading_again_when_refused():
            tax = plan_tax(company, breakdown, dict(items), self._checked_tax_codes())
        body: dict[str, Any] = {
            "CustomerRef": {"value": provider_customer_id},
            "CurrencyRef": {"value": currency},
            "TxnDate": invoice.invoice_date.date().isoformat(),
            "PrivateNote": f"{MARKER}{invoice.id}",
            "Line": [
                _line(line, currency, items[line.mapping_key], tax.line_codes.get(line.ref))
                for line in breakdown.lines
                # Tax goes on QuickBooks' tax fields (quickbooks_tax.py), not on item lines.
                if line.kind != "tax"
            ],
        }
        if tax.global_calculation is not None:
            body["GlobalTaxCalculation"] = tax.global_calculation
        if tax.detail is not None:
            body["TxnTaxDetail"] = _tax_detail(tax.detail)
        number = invoice.invoice_number or ""
        if number and len(number) <= MAX_DOC_NUMBER:
            body["DocNumber"] = number
        elif number:
            body["PrivateNote"] += f" (number {number})"
        if invoice.due_date is not None:
            body["DueDate"] = invoice.due_date.date().isoformat()
        if invoice.memo:
            body["CustomerMemo"] = {"value": invoice.memo[:1000]}
        return QuickBooksPlan(
            provider=self.name,
            invoice_id=invoice.id,
            currency=currency,
            total_minor=breakdown.total_minor,
            # QuickBooks keeps customer credits apart from the invoice (applied as payments);
            # the invoice's own amount due is its total, checked in push.
            amount_due_minor=breakdown.amount_due_minor,
            line_amounts_minor=[line.amount_minor for line in breakdown.lines],
            realm_id=self.tokens.grant.company_id,
            body=body,
            request_id=request_id(invoice.id, "invoice", body),
            tax_minor=tax.tax_minor,
        )

    def _checked_tax_codes(self) -> dict[str, TaxCode]:
        return {code_id: code for code_id, (_, code) in self._tax_codes.items()}

    # -- push (I/O, idempotent) ------------------------------------------------------------------

    def push(self, plan: Plan, context: PushContext) -> PushResult:
        assert isinstance(plan, QuickBooksPlan)
        self._calls.count = 0
        self._calls.heartbeat = context.heartbeat
        try:
            return self._push(plan, context)
        finally:
            self._calls.heartbeat = None

    def _push(self, plan: QuickBooksPlan, context: PushContext) -> PushResult:
        invoice = self._find_invoice(plan, context)
        requestid = plan.request_id
        for _ in range(MAX_REPLAYED_DELETIONS):
            if invoice is not None:
                break
            invoice = self._create_invoice(plan, context, requestid)
            total = Decimal(str(invoice.get("TotalAmt", "0")))
            problems = self._totals_problems(plan, invoice, total)
            if not problems or self._delete_invoice(invoice):
                break
            # Already deleted: QuickBooks answered from its requestid cache with the invoice an
            # earlier attempt created and deleted because its totals differed. The body is the
            # same, so the fix was made in QuickBooks (a tax rate, a setting): the request goes
            # again under a requestid of its own, derived from the deleted invoice's Id, so
            # every attempt walks the same ids.
            requestid, invoice = request_id_after(requestid, str(invoice["Id"])), None
        else:
            raise ProviderUnavailable(
                f"QuickBooks answered {MAX_REPLAYED_DELETIONS} creates of invoice "
                f"{plan.invoice_id} in a row with an invoice deleted since; trying again later"
            )
        assert invoice is not None
        total = Decimal(str(invoice.get("TotalAmt", "0")))
        self._check_totals(plan, invoice, total)
        # Created is issued: QuickBooks has no drafts.
        context.remember_issued(str(invoice["Id"]), self._invoice_url(str(invoice["Id"])))
        note = ""
        if plan.amount_due_minor != plan.total_minor:
            applied = from_minor(plan.amount_due_minor - plan.total_minor, plan.currency)
            note = (
                f"the billing invoice applied a customer balance of {applied} {plan.currency}; "
                "QuickBooks applies customer credits as payments, not on the invoice"
            )
        return PushResult(
            external_id=str(invoice["Id"]),
            external_url=self._invoice_url(str(invoice["Id"])),
            provider_total=str(total),
            provider_amount_due=str(Decimal(str(invoice.get("Balance", total)))),
            provider_line_count=len(plan.body["Line"]),
            request_count=self.request_count,
            note=note,
        )

    def _create_invoice(
        self, plan: QuickBooksPlan, context: PushContext, requestid: str
    ) -> dict[str, Any]:
        """POST the invoice under `requestid`; a duplicate DocNumber that is ours is found."""
        try:
            invoice: dict[str, Any] = self._call(
                "creating the invoice",
                "POST",
                "invoice",
                params={"requestid": requestid},
                json_body=plan.body,
            )["Invoice"]
            return invoice
        except QuickBooksFault as err:
            if err.code != "6140":  # duplicate DocNumber: ours, if an earlier attempt's
                # A refused invoice may come from settings changed in QuickBooks (tax,
                # multicurrency): the next attempt reads them again.
                self.forget_company()
                if _about_settings(err):
                    raise ProviderSetupNeeded(
                        f"{err} (code {err.code}); check the QuickBooks company's tax and "
                        "currency settings and the `tax:` mappings, then `billbridge "
                        "attention retry` (the settings are read again)"
                    ) from err
                raise
            found = self._find_invoice(plan, context, by_number_only=True)
            if found is None:
                raise ProviderRejected(
                    f"QuickBooks already has another invoice numbered "
                    f"{plan.body.get('DocNumber')!r}: {err}"
                ) from err
            return found

    def _check_totals(self, plan: QuickBooksPlan, invoice: dict[str, Any], total: Decimal) -> None:
        """QuickBooks' TotalAmt and TotalTax equal the billing total and tax, or the invoice is
        deleted again and the export needs attention, naming the difference."""
        problems = self._totals_problems(plan, invoice, total)
        if not problems:
            return
        self.forget_company()
        self._delete_invoice(invoice)
        raise ProviderTotalsDiffer(
            f"QuickBooks computed invoice {plan.invoice_id} differently: {'; '.join(problems)}. "
            f"The invoice was removed from QuickBooks again. Check the company's tax settings "
            "and the `tax:` mappings (a tax code with several rates is computed by QuickBooks), "
            "then `billbridge attention retry`"
        )

    def _totals_problems(
        self, plan: QuickBooksPlan, invoice: dict[str, Any], total: Decimal
    ) -> list[str]:
        """How QuickBooks' TotalAmt and TxnTaxDetail.TotalTax differ from the billing ones."""
        expected_total = from_minor(plan.total_minor, plan.currency)
        expected_tax = from_minor(plan.tax_minor, plan.currency)
        tax = Decimal(str((invoice.get("TxnTaxDetail") or {}).get("TotalTax", "0")))
        problems = []
        if total != expected_total:
            problems.append(
                f"TotalAmt {total} differs from the billing total {expected_total} by "
                f"{total - expected_total} {plan.currency}"
            )
        if tax != expected_tax:
            problems.append(
                f"TxnTaxDetail.TotalTax {tax} differs from the billing tax {expected_tax} by "
                f"{tax - expected_tax} {plan.currency}"
            )
        return problems

    def _delete_invoice(self, invoice: dict[str, Any]) -> bool:
        """`POST /invoice?operation=delete` with Id and SyncToken (developer.intuit.com,
        Accounting API, Invoice, "Delete an invoice"); False if it was gone already (610 Object
        Not Found; UNCONFIRMED that QuickBooks answers a deleted invoice's delete so)."""
        try:
            self._call(
                "deleting the invoice QuickBooks computed differently",
                "POST",
                "invoice",
                params={"operation": "delete"},
                json_body={
                    "Id": str(invoice["Id"]),
                    "SyncToken": str(invoice.get("SyncToken", "0")),
                },
            )
        except QuickBooksFault as err:
            if err.code != "610":
                raise
            return False
        return True

    def _invoice_url(self, invoice_id: str) -> str:
        """The invoice's page in QuickBooks Online, in the company's environment (the API host
        from_settings chose says which); on the emulator, the invoice's API address."""
        if _is_intuit(self.base_url):
            sandbox = urlsplit(self.base_url).hostname == urlsplit(SANDBOX_API_BASE).hostname
            return INVOICE_PAGE[SANDBOX if sandbox else PRODUCTION] + invoice_id
        return f"{self.base_url}/v3/company/{self.realm_id}/invoice/{invoice_id}"

    def _find_invoice(
        self, plan: QuickBooksPlan, context: PushContext, *, by_number_only: bool = False
    ) -> dict[str, Any] | None:
        """The QuickBooks invoice an earlier attempt made: by stored id, number or customer.

        A stored id QuickBooks no longer knows (610 Object Not Found, as it answers for a
        deleted invoice) was an issued invoice: looked for again by number and marker (someone
        may have recreated it), and if it is not there a person must decide.
        """
        marker = plan.body["PrivateNote"]
        vanished: str | None = None
        if context.known_external_id and not by_number_only:
            try:
                found = self._call(
                    "reading the invoice", "GET", f"invoice/{context.known_external_id}"
                )
            except QuickBooksFault as err:
                if err.code != "610":
                    raise
                vanished = context.known_external_id
            else:
                if found["Invoice"].get("PrivateNote") == marker:
                    return dict(found["Invoice"])
        if not (context.may_have_written or by_number_only or vanished):
            return None
        number = plan.body.get("DocNumber")
        # Narrowed to a few rows: by number, else the customer's invoices of the invoice's date.
        where = (
            f"DocNumber = {_quote(number)}"
            if number
            else f"CustomerRef = {_quote(plan.body['CustomerRef']['value'])} "
            f"and TxnDate = {_quote(plan.body['TxnDate'])}"
        )
        for candidate in self._query("looking up earlier invoices", "Invoice", where):
            if candidate.get("PrivateNote") == marker:
                return candidate
        if vanished is not None:
            raise ProviderInvoiceMissing(
                f"QuickBooks invoice {vanished} of invoice {plan.invoice_id}, created by an "
                "earlier attempt, no longer exists in QuickBooks (deleted there?) and none with "
                f"its number and note {marker!r} does; billbridge will not create it again on "
                "its own: restore or recreate it in QuickBooks, then `billbridge attention retry`"
            )
        return None
