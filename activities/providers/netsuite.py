"""NetSuite invoices over SuiteTalk REST web services (httpx; auth in netsuite_auth.py, the HTTP
client with the concurrency cap and retries in netsuite_http.py, errors in netsuite_errors.py).

One billing invoice is one NetSuite invoice, written exactly once as an upsert by external id:
``PUT record/v1/invoice/eid:<invoice id>?replace=item`` ("Using the Upsert Operation",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_156335203191.html). Our id
is normalised to the characters external ids allow (letters, digits, ``_``, ``-``: "Using
External IDs", section_156334828635.html; see `external_id`). The upsert creates the invoice or
updates the one an earlier attempt created, and ``replace=item`` makes a repeat replace the lines
instead of appending them ("Updating a Sublist", section_1545295601.html: lines sent on an
update are added; "Replacing a Sublist", section_1545297048.html). So a crash at any point -
before the PUT, during it, after it - leaves one invoice: a retry first reads the invoice by
external id, and writes only when it is not there.

The invoice is then read back (``GET record/v1/invoice/eid:<id>``) and its ``total`` compared with
the billing total to the cent. One that differs (a SuiteTax engine adding tax, NetSuite rounding
an amount) is deleted again (``DELETE record/v1/invoice/<internal id>``, "delete",
article_0624125335.html) and the export needs attention (ProviderTotalsDiffer): a NetSuite invoice
posts to the general ledger as soon as it exists (there is no draft to leave it in), so marking it
would leave wrong amounts in the books until a person acts; deleting leaves none, and the fixed
export upserts it again under the same external id.

Lines: each billing line is one ``item.items[]`` line with the mapped item's internal id,
quantity, rate and amount (the amount as billed; quantity x rate only when it reproduces the
amount exactly, else quantity 1 with the real quantity in the description) and the description
with the service period. Adjustments, credits and tax are lines of their own, mapped through
``adjustment:<kind>`` like the other providers'. Tax is a mapped line, not NetSuite's tax fields:
REST web services support no legacy tax, only SuiteTax ("Tax Type", article_0814115234.html),
whose engine computes its own tax from nexuses and tax codes; the billing system's tax is what the
customer was billed, and a mapped line carries it exactly on every account. (On a SuiteTax account
whose engine taxes the lines anyway, the read-back total differs and the export needs attention.)

tranDate, dueDate, currency and memo carry over; the invoice number becomes ``tranId`` when the
connection says the account allows setting it (`netsuite_set_tran_id`), else it goes into the
memo. The subsidiary is the connection's `netsuite_subsidiary`. The currency is looked up by ISO
code (SuiteQL, ``currency.symbol``) before anything is written: a currency the account does not
have, or has inactive, needs attention (ProviderSetupNeeded); amounts the currency's precision
(0 or 2 decimals in NetSuite) cannot hold are refused.

Customers are linked by the customer's payment_provider_id (NetSuite's internal id), or found and
created by external id (``PUT record/v1/customer/eid:<customer id>``) with
create_missing_customers.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from billbridge.activities.providers import deadline
from billbridge.activities.providers.base import (
    MAX_RECONCILED,
    ConnectionConfig,
    Plan,
    ProviderInvoice,
    PushContext,
)
from billbridge.activities.providers.gate import gate_for
from billbridge.activities.providers.line_numbers import (
    json_number,
    quantity_and_price,
    service_period,
)
from billbridge.activities.providers.netsuite_auth import (
    HOW_TO_ADD,
    NetSuiteCredentials,
    account_host,
    build_auth,
)
from billbridge.activities.providers.netsuite_errors import NotFound
from billbridge.activities.providers.netsuite_http import NetSuiteClient
from billbridge.core.breakdown import ExportLine, InvoiceBreakdown
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderInvoiceMissing,
    ProviderItemMissing,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderTotalsDiffer,
    ProviderUnavailable,
)
from billbridge.core.messages import PushResult
from billbridge.core.models import Customer, Invoice
from billbridge.core.money import from_minor

NAME = "netsuite"
# Where the local NetSuite emulator listens when NETSUITE_API_BASE is unset (core/providers.py).
LOCAL_EMULATOR_PORT = 12114
ACCOUNT_PLACEHOLDER = "{account}"
# Mapping keys resolve_more_mappings fills in for plan: the currency's internal id and precision.
CURRENCY_KEY = "netsuite:currency"
PRECISION_KEY = "netsuite:currency_precision"
MAX_EXTERNAL_ID = 100  # UNCONFIRMED: NetSuite's limit; ours stay well within any
DIGEST_LENGTH = 16  # hex digits appended to a normalised id: 64 bits
# UNCONFIRMED at Oracle's docs (the Records Browser gives no lengths for these REST fields):
# conservative caps; the billing text that does not fit is cut.
MAX_DESCRIPTION = 4000
MAX_MEMO = 999
MAX_COMPANY_NAME = 83
RATE_PLACES = Decimal("1e-8")  # UNCONFIRMED: the decimals NetSuite keeps on rate and quantity
QTY_PLACES = Decimal("1e-8")
ITEM_CACHE_SECONDS = 300.0
CURRENCY_CACHE_SECONDS = 3600.0
DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def external_id(our_id: str) -> str:
    """Our id as a NetSuite external id: letters, digits, ``_`` and ``-`` only.

    An id that already is one (and fits) is kept as it is; any other has its disallowed
    characters replaced by ``_`` and a digest of the original appended (``inv.1`` ->
    ``inv_1-<16 hex>``), so two ids that normalise alike stay apart and no normalised id equals
    an unchanged one short of a 64-bit digest coincidence.
    """
    if not DISALLOWED.search(our_id) and 0 < len(our_id) <= MAX_EXTERNAL_ID:
        return our_id
    digest = hashlib.sha256(our_id.encode()).hexdigest()[:DIGEST_LENGTH]
    cleaned = DISALLOWED.sub("_", our_id)[: MAX_EXTERNAL_ID - DIGEST_LENGTH - 1]
    return f"{cleaned}-{digest}"


def configured_api_base(settings: Settings, account_id: str) -> str:
    """NETSUITE_API_BASE as core/config.py resolved it: unset, the local emulator; the real
    default ``https://{account}.suitetalk.api.netsuite.com`` gets the account's host."""
    base = settings.api_base(NAME) or f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}"
    return base.replace(ACCOUNT_PLACEHOLDER, account_host(account_id)).rstrip("/")


def _is_netsuite(url: str) -> bool:
    return (urlsplit(url).hostname or "").endswith("netsuite.com")


@dataclass
class NetSuitePlan(Plan):
    external_id: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"record/v1/invoice/eid:{self.external_id}"

    def requests(self) -> list[dict[str, Any]]:
        return [
            {
                "method": "PUT",
                "path": f"/services/rest/{self.path}",
                "params": {"replace": "item"},
                "body": self.body,
            }
        ]


@dataclass(frozen=True)
class Currency:
    id: str
    symbol: str
    precision: int


class NetSuiteInvoiceProvider:
    name = NAME

    def __init__(
        self,
        client: NetSuiteClient,
        credentials: NetSuiteCredentials,
        config: ConnectionConfig,
    ) -> None:
        self.client = client
        self.credentials = credentials
        self.settings = config.settings
        self._lock = threading.Lock()
        self._items: dict[str, float] = {}  # item id -> when its existence check expires
        self._currencies: dict[str, tuple[float, Currency]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, config: ConnectionConfig) -> NetSuiteInvoiceProvider:
        if not config.api_key:
            raise ProviderAuthFailed(
                f"connection {config.connection_id} has no NetSuite credential; add it with "
                f"{HOW_TO_ADD}"
            )
        credentials = NetSuiteCredentials.from_json(config.api_key)
        base = configured_api_base(settings, credentials.account_id)
        http = deadline.client(base)
        client = NetSuiteClient(
            base,
            build_auth(credentials, base, http, config.connection_id),
            account=f"{base} {credentials.account_id}",
            concurrency_limit=config.settings.netsuite_concurrency_limit,
            http=http,
            # NetSuite limits concurrent requests, not a rate: the gate paces only when the
            # connection sets `requests_per_second`.
            request_gate=gate_for(
                config.gates,
                config.connection_id,
                "NetSuite",
                config.settings.requests_per_second,
                ("netsuite", base, credentials.account_id),
            ),
        )
        return cls(client, credentials, config)

    @property
    def request_count(self) -> int:
        return self.client.request_count

    # -- checks -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        self.client.suiteql("checking the connection", "SELECT id, symbol FROM currency")

    def check_customer(self, provider_customer_id: str) -> None:
        if not provider_customer_id.isdigit():
            raise ProviderCustomerMissing(
                f"{provider_customer_id!r} (the customer's payment_provider_id) is not a NetSuite "
                "internal id (digits)"
            )
        found = self.client.get(
            "reading the customer", f"record/v1/customer/{provider_customer_id}"
        )
        if found is None:
            raise ProviderCustomerMissing(
                f"NetSuite customer {provider_customer_id} (the customer's payment_provider_id) "
                "does not exist"
            )
        if found.get("isInactive"):
            raise ProviderCustomerMissing(
                f"NetSuite customer {provider_customer_id} (the customer's payment_provider_id) "
                "is inactive"
            )

    def find_or_create_customer(self, customer: Customer) -> str:
        """The NetSuite customer whose external id is the billing customer's id; created (an
        upsert by that external id, so a retry never makes a second one) when there is none."""
        path = f"record/v1/customer/eid:{external_id(customer.id)}"
        found = self.client.get("looking up the customer by external id", path)
        if found is None:
            body: dict[str, Any] = {
                "companyName": (customer.name or customer.id)[:MAX_COMPANY_NAME],
                "comments": f"billbridge customer {customer.id}",
            }
            if customer.email:
                body["email"] = customer.email
            if self.settings.netsuite_subsidiary:
                body["subsidiary"] = {"id": self.settings.netsuite_subsidiary}
            if customer.currency:
                body["currency"] = {"id": self.currency(customer.currency.upper()).id}
            self.client.call("creating the customer", "PUT", path, json_body=body)
            found = self.client.get("reading the created customer", path)
            if found is None:
                raise ProviderUnavailable(
                    f"NetSuite accepted customer {external_id(customer.id)} but does not show it"
                )
        if found.get("isInactive"):
            raise ProviderCustomerMissing(
                f"NetSuite customer {found.get('id')} (external id {external_id(customer.id)}) is "
                "inactive: reactivate it, or set the customer's payment_provider_id"
            )
        return str(found["id"])

    def resolve_items(self, provider_item_ids: Collection[str]) -> dict[str, str]:
        """Mappings name NetSuite item internal ids; each must exist and be active."""
        wanted = sorted(set(provider_item_ids))
        malformed = [i for i in wanted if not i.isdigit()]
        if malformed:
            raise ProviderItemMissing(
                "mapped NetSuite items must be internal ids (digits): " + ", ".join(malformed)
            )
        now = time.monotonic()
        with self._lock:
            unknown = [i for i in wanted if self._items.get(i, 0.0) <= now]
        if unknown:
            rows = self.client.suiteql(
                "looking up mapped items",
                f"SELECT id, itemid, isinactive FROM item WHERE id IN ({', '.join(unknown)})",
            )
            active = {str(r.get("id")) for r in rows if str(r.get("isinactive", "F")) != "T"}
            missing = [i for i in unknown if i not in active]
            if missing:
                raise ProviderItemMissing(
                    "mapped NetSuite items do not exist or are inactive: " + ", ".join(missing)
                )
            with self._lock:
                for item_id in unknown:
                    self._items[item_id] = now + ITEM_CACHE_SECONDS
        return {item_id: item_id for item_id in wanted}

    def resolve_more_mappings(
        self, breakdown: InvoiceBreakdown, read_mappings: Callable[[set[str]], dict[str, str]]
    ) -> dict[str, str]:
        """Before anything is written: the invoice's currency is set up in the account."""
        currency = self.currency(breakdown.currency.upper())
        return {CURRENCY_KEY: currency.id, PRECISION_KEY: str(currency.precision)}

    def currency(self, symbol: str) -> Currency:
        """The account's active currency with this ISO code, else ProviderSetupNeeded."""
        now = time.monotonic()
        with self._lock:
            cached = self._currencies.get(symbol)
        if cached is not None and cached[0] > now:
            return cached[1]
        if not re.fullmatch(r"[A-Z]{3}", symbol):
            raise ProviderSetupNeeded(f"{symbol!r} is not an ISO currency code")
        rows = self.client.suiteql(
            "looking up the currency",
            "SELECT id, symbol, currencyprecision, isinactive FROM currency "
            f"WHERE symbol = '{symbol}'",
        )
        active = [r for r in rows if str(r.get("isinactive", "F")) != "T"]
        if not active:
            state = "is inactive" if rows else "is not set up"
            raise ProviderSetupNeeded(
                f"currency {symbol} {state} in NetSuite account {self.credentials.account_id}: "
                "add or reactivate it (Lists > Accounting > Currencies, with Multiple "
                "Currencies enabled), then `billbridge attention retry`"
            )
        found = Currency(
            str(active[0]["id"]), symbol, int(str(active[0].get("currencyprecision") or 2))
        )
        with self._lock:
            self._currencies[symbol] = (now + CURRENCY_CACHE_SECONDS, found)
        return found

    def forget_currencies(self) -> None:
        with self._lock:
            self._currencies.clear()

    # -- plan (pure) ---------------------------------------------------------------------------

    def plan(
        self,
        invoice: Invoice,
        breakdown: InvoiceBreakdown,
        items: Mapping[str, str],
        provider_customer_id: str,
        now: float,
    ) -> NetSuitePlan:
        currency = invoice.currency.upper()
        precision = int(items[PRECISION_KEY])
        step = Decimal(1).scaleb(-precision)
        lines = []
        for line in breakdown.lines:
            amount = from_minor(line.amount_minor, currency)
            if amount != amount.quantize(step):
                raise ProviderRejected(
                    f"NetSuite keeps {currency} with {precision} decimals; line {line.ref} of "
                    f"invoice {invoice.id} bills {amount} {currency}, which it cannot hold exactly"
                )
            lines.append(_line(line, amount, step, items[line.mapping_key]))
        body: dict[str, Any] = {
            "entity": {"id": provider_customer_id},
            "currency": {"id": items[CURRENCY_KEY]},
            "tranDate": invoice.invoice_date.date().isoformat(),
            "item": {"items": lines},
        }
        if self.settings.netsuite_subsidiary:
            body["subsidiary"] = {"id": self.settings.netsuite_subsidiary}
        if invoice.due_date is not None:
            body["dueDate"] = invoice.due_date.date().isoformat()
        number = invoice.invoice_number or ""
        memo = invoice.memo or ""
        if number and self.settings.netsuite_set_tran_id:
            body["tranId"] = number
        elif number:
            memo = f"Invoice {number}" + (f": {memo}" if memo else "")
        if memo:
            body["memo"] = memo[:MAX_MEMO]
        return NetSuitePlan(
            provider=self.name,
            invoice_id=invoice.id,
            currency=currency,
            total_minor=breakdown.total_minor,
            # NetSuite keeps customer credits apart from the invoice (applied as payments or
            # credit memos): the invoice's own amount due is its total.
            amount_due_minor=breakdown.amount_due_minor,
            line_amounts_minor=[line.amount_minor for line in breakdown.lines],
            external_id=external_id(invoice.id),
            body=body,
        )

    # -- push (I/O, idempotent) ------------------------------------------------------------------

    def push(self, plan: Plan, context: PushContext) -> PushResult:
        assert isinstance(plan, NetSuitePlan)
        self.client.reset_count()
        with self.client.heartbeat_with(context.heartbeat):
            return self._push(plan, context)

    def _push(self, plan: NetSuitePlan, context: PushContext) -> PushResult:
        invoice = None
        if context.may_have_written or context.known_external_id:
            invoice = self.client.get("looking for the invoice of an earlier attempt", plan.path)
            if invoice is None and context.known_external_issued:
                raise ProviderInvoiceMissing(
                    f"NetSuite invoice {context.known_external_id} of invoice {plan.invoice_id} "
                    f"(external id {plan.external_id}), written by an earlier attempt, no longer "
                    "exists in NetSuite (deleted there?); billbridge will not write it again on "
                    "its own: restore it in NetSuite, or delete the export record, then "
                    "`billbridge attention retry`"
                )
        if invoice is None:
            self.client.call(
                "writing the invoice",
                "PUT",
                plan.path,
                params={"replace": "item"},
                json_body=plan.body,
            )
            invoice = self.client.get("reading the invoice back", plan.path)
            if invoice is None:
                raise ProviderUnavailable(
                    f"NetSuite accepted invoice {plan.external_id} but does not show it yet"
                )
        internal_id = str(invoice["id"])
        total = Decimal(str(invoice.get("total", "0")))
        self._check_total(plan, invoice, total)
        url = self._invoice_url(internal_id)
        context.remember_issued(internal_id, url)
        notes = []
        if plan.amount_due_minor != plan.total_minor:
            applied = from_minor(plan.amount_due_minor - plan.total_minor, plan.currency)
            notes.append(
                f"the billing invoice applied a customer balance of {applied} {plan.currency}; "
                "NetSuite applies customer credits as payments or credit memos, not on the invoice"
            )
        sent_number = plan.body.get("tranId")
        if sent_number and invoice.get("tranId") != sent_number:
            notes.append(
                f"NetSuite numbered the invoice {invoice.get('tranId')!r}, not {sent_number!r} "
                "(its numbering does not allow an override)"
            )
        return PushResult(
            external_id=internal_id,
            external_url=url,
            provider_total=str(total),
            provider_amount_due=str(Decimal(str(invoice.get("amountRemaining", total)))),
            provider_line_count=len(plan.body["item"]["items"]),
            request_count=self.request_count,
            note="; ".join(notes),
        )

    def _check_total(self, plan: NetSuitePlan, invoice: dict[str, Any], total: Decimal) -> None:
        expected = from_minor(plan.total_minor, plan.currency)
        if total == expected:
            return
        tax = Decimal(str(invoice.get("taxTotal") or "0"))
        why = (
            f" (NetSuite added tax of {tax}: its SuiteTax engine taxes the lines; billbridge "
            "sends tax as a mapped line, so give the mapped items a non-taxable tax code)"
            if tax
            else ""
        )
        self._delete(str(invoice["id"]))
        self.forget_currencies()
        raise ProviderTotalsDiffer(
            f"NetSuite computed invoice {plan.invoice_id} (external id {plan.external_id}) to "
            f"{total} {plan.currency}, the billing total is {expected}{why}. The invoice was "
            "deleted from NetSuite again; fix the account or the mappings, then `billbridge "
            "attention retry`"
        )

    def _delete(self, internal_id: str) -> None:
        try:
            self.client.call(
                "deleting the invoice NetSuite computed differently",
                "DELETE",
                f"record/v1/invoice/{internal_id}",
                reading=True,
            )
        except NotFound:
            pass  # gone already (an earlier attempt deleted it)

    def _invoice_url(self, internal_id: str) -> str:
        """The invoice's page in NetSuite (UNCONFIRMED: Oracle documents no deep-link format;
        this is the UI's own invoice address); on the emulator, its REST address."""
        if _is_netsuite(self.client.api_base):
            host = f"https://{account_host(self.credentials.account_id)}.app.netsuite.com"
            return f"{host}/app/accounting/transactions/custinvc.nl?id={internal_id}"
        return f"{self.client.rest}/record/v1/invoice/{internal_id}"

    # -- for seeding demos and reading results back (not part of the export interface) ----------

    def ensure_item(self, name: str, item_type: str = "serviceSaleItem") -> str:
        """The internal id of the active item named `name`, created if there is none."""
        quoted = name.replace("'", "''")
        rows = self.client.suiteql(
            "looking up an item", f"SELECT id, isinactive FROM item WHERE itemid = '{quoted}'"
        )
        if rows:
            return str(rows[0]["id"])
        response = self.client.call(
            "creating an item", "POST", f"record/v1/{item_type}", json_body={"itemId": name}
        )
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    def read_totals(self, internal_id: str) -> tuple[Decimal, Decimal]:
        """(total, amountRemaining) of an invoice by its internal id, as NetSuite holds them."""
        invoice = self.client.get("reading the invoice", f"record/v1/invoice/{internal_id}")
        if invoice is None:
            raise ProviderInvoiceMissing(f"NetSuite invoice {internal_id} does not exist")
        total = Decimal(str(invoice.get("total", "0")))
        return total, Decimal(str(invoice.get("amountRemaining", total)))

    # -- reconcile ---------------------------------------------------------------------------

    def export_ref(self, invoice: Invoice) -> str:
        """The external id the export upserts the invoice by (`external_id`)."""
        return external_id(invoice.id)

    def list_exported(self, since: datetime | None) -> Iterator[ProviderInvoice]:
        """Every invoice with an external id created on or after `since`'s day, by SuiteQL
        (``POST query/v1/suiteql``, paged with limit and offset: "Executing SuiteQL Queries
        Through REST Web Services", section_157909186990.html): one query for the invoices of
        the ``transaction`` table (type ``CustInvc``; ``foreigntotal``: the total in the
        invoice's currency), one for the currencies' ISO codes. ``createddate`` is compared
        with ``TO_DATE`` at day precision in the account's time zone, and SuiteQL formats it
        after the user's preferences, so the time of creation is not read back (None): the
        date filter stands. External ids may come from other integrations too (unmarked)."""
        symbols = {
            str(row.get("id")): str(row.get("symbol"))
            for row in self.client.suiteql(
                "reading the currencies", "SELECT id, symbol FROM currency"
            )
        }
        where = "type = 'CustInvc' AND externalid IS NOT NULL"
        if since is not None:
            where += f" AND createddate >= TO_DATE('{since.date().isoformat()}', 'YYYY-MM-DD')"
        rows = self.client.suiteql_rows(
            "listing invoices",
            "SELECT id, externalid, foreigntotal, currency FROM transaction "
            f"WHERE {where} ORDER BY id",
            at_most=MAX_RECONCILED,
        )
        for row in rows:
            if not row.get("externalid"):
                continue
            yield ProviderInvoice(
                provider_invoice_id=str(row["id"]),
                ref=str(row["externalid"]),
                total=Decimal(str(row.get("foreigntotal") or "0")),
                currency=symbols.get(str(row.get("currency"))),
                marked=False,
            )

    def read_invoice(self, billing_invoice_id: str) -> dict[str, Any] | None:
        return self.client.get(
            "reading the invoice",
            f"record/v1/invoice/eid:{external_id(billing_invoice_id)}",
            expandSubResources="true",
        )


def _line(line: ExportLine, amount: Decimal, step: Decimal, item_id: str) -> dict[str, Any]:
    quantity, rate = _quantity_and_rate(line, amount, step)
    description = f"{line.description}{service_period(line)}"
    if line.kind == "usage" and quantity != line.quantity:
        description += f" (quantity {line.quantity})"
    return {
        "item": {"id": item_id},
        "quantity": json_number(quantity),
        "rate": json_number(rate),
        "amount": json_number(amount),
        "description": description[:MAX_DESCRIPTION],
    }


def _quantity_and_rate(line: ExportLine, amount: Decimal, step: Decimal) -> tuple[Decimal, Decimal]:
    """(quantity, rate) whose product NetSuite rounds to exactly `amount`, else (1, amount)."""
    return quantity_and_price(
        line, amount, quantity_step=QTY_PLACES, price_step=RATE_PLACES, amount_step=step
    )
