"""BILL (Bill.com) AR invoices over the v3 API (https://developer.bill.com/docs/ar-invoices).

One `POST /v3/invoices` per billing invoice: the linked customer, our invoice number, invoice and
due dates, one invoice line per billing line (the mapped item, quantity, price, a description
with the service period), adjustments, credits and tax as lines of their mapped items, and the
memo as a note line of amount zero. Sessions, limits and error decisions live in
billcom_client.py and billcom_errors.py.

Exactly once without an idempotency key (BILL documents none for invoice create): the invoice
number is the key. A push looks the number up (`GET /v3/invoices?filters=invoiceNumber:eq:<n>`)
before it creates, whenever an earlier attempt may have written, and takes an active invoice of
that number and customer as its own. The workflow lets one attempt write at a time (an attempt
gives up its request 25 s in, Temporal retries 45 s after the last heartbeat:
core/timeouts.py), so a create whose answer was lost -- a dropped connection, a timeout, a
SIGKILLed worker -- is found by the next attempt's lookup. A retry that creates also looks again
afterwards: should a create of an earlier attempt have landed late, the two are found, the older
is kept and the newer archived. Filter values are not escaped by BILL, so numbers holding `,` or
`:` are refused at plan time.

Money: BILL computes each line's amount from quantity x price and the invoice's `totalAmount`
from the lines; billbridge sends a quantity and price whose product is exactly the line amount
(else quantity 1 and the amount as price, the real quantity in the description), and compares
`totalAmount` with the billing total to the cent after the create. An invoice that differs is
archived again (`POST /v3/invoices/{id}/archive`) and the export needs attention.

Tax: BILL's only tax field on invoices is `salesTaxItemId`, a SALES_TAX item whose percentage BILL
applies to the lines marked taxable (https://developer.bill.com/reference/createinvoice). A rate
recomputed by BILL could differ from the billing tax by rounding, so billing tax is sent as lines
of the item mapped to `adjustment:tax`, like every other adjustment.

Currency: a BILL invoice has no currency of its own; it is in its customer's `invoiceCurrency`
("the currency with which an international customer pays invoices", required for international
customers; https://developer.bill.com/docs/ar-customers), USD otherwise. The organization must be
set up for international AR to invoice in another currency, which the API does not expose, so the
connection setting names the currencies beyond USD it may use (`billcom_invoice_currencies`). Before
anything is written, an invoice whose currency the organization cannot take, or whose customer is
in another currency, waits as needs attention (ProviderSetupNeeded).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from billbridge.activities.providers.base import (
    MAX_RECONCILED,
    ConnectionConfig,
    Plan,
    ProviderInvoice,
    PushContext,
)
from billbridge.activities.providers.billcom_client import (
    LOCAL_EMULATOR_PORT,
    PROCESS_LIMITS,
    BillcomClient,
    BillcomLimits,
    ProcessLimits,
    is_not_found,
)
from billbridge.activities.providers.billcom_errors import BillcomRejected
from billbridge.activities.providers.gate import gate_for
from billbridge.activities.providers.line_numbers import (
    json_number,
    quantity_and_price,
    service_period,
)
from billbridge.core.breakdown import ExportLine, InvoiceBreakdown
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ExportError,
    ProviderCustomerMissing,
    ProviderInvoiceMissing,
    ProviderItemMissing,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderTotalsDiffer,
)
from billbridge.core.messages import PushResult
from billbridge.core.models import Customer, Invoice
from billbridge.core.money import from_minor, minor_unit_exponent

HOME_CURRENCY = "USD"  # BILL organizations are US businesses; others need international AR
# `invoiceNumber`: "length <= 100" (https://developer.bill.com/reference/createinvoice).
MAX_INVOICE_NUMBER = 100
# Filter values are sent as they are (`field:op:value`, comma-separated filters:
# https://developer.bill.com/docs/search-op-with-lists), so these cannot appear in a value.
FILTER_UNSAFE = (",", ":")
# UNCONFIRMED: how many decimals BILL keeps of a line's quantity and price, and the longest line
# description (the reference gives no bounds). Within these, quantity x price is exact.
QUANTITY_PLACES = 5
PRICE_PLACES = 5
MAX_DESCRIPTION = 1000
# UNCONFIRMED: how a v3 invoice line names its item. v2 lines had `itemId`; v3 names items
# "classifications" (`/v3/classifications/items`) and tags bill lines with a line-level
# `classifications` object, so the line carries `classifications.itemId`.
ITEM_FIELD = "classifications"
ITEM_CACHE_SECONDS = 300.0


def _quantity_and_price(line: ExportLine, amount: Decimal) -> tuple[Decimal, Decimal]:
    """(quantity, price) whose product is exactly `amount`, within the places BILL keeps;
    else (1, amount): BILL multiplies them, and any rounding there would move the total."""
    return quantity_and_price(
        line,
        amount,
        quantity_step=Decimal(1).scaleb(-QUANTITY_PLACES),
        price_step=Decimal(1).scaleb(-PRICE_PLACES),
        amount_step=None,
    )


def _line(line: ExportLine, currency: str, item_id: str) -> dict[str, Any]:
    amount = from_minor(line.amount_minor, currency)
    quantity, price = _quantity_and_price(line, amount)
    description = f"{line.description}{service_period(line)}"
    if line.kind == "usage" and quantity != line.quantity:
        # The billing quantity BILL cannot multiply out exactly stays readable on the line.
        description += f" (quantity {format(line.quantity.normalize(), 'f')})"
    return {
        "quantity": json_number(quantity),
        "price": json_number(price),
        "description": description[:MAX_DESCRIPTION],
        ITEM_FIELD: {"itemId": item_id},
    }


def check_invoice_number(number: str, field_name: str) -> None:
    """BILL's lookup is the only key there is: refuse numbers it cannot filter by or keep."""
    if not number.strip():
        raise ProviderRejected(f"{field_name}: empty; BILL invoices are looked up by number")
    unsafe = [c for c in FILTER_UNSAFE if c in number]
    if unsafe:
        raise ProviderRejected(
            f"{field_name}: {number!r} contains {' and '.join(repr(c) for c in unsafe)}, which "
            "BILL's list filters cannot carry (filters are `field:op:value`, comma-separated, "
            "unescaped); billbridge finds BILL invoices by number, so it cannot export this "
            "invoice exactly once: renumber it in the billing system"
        )
    if len(number) > MAX_INVOICE_NUMBER:
        raise ProviderRejected(
            f"{field_name}: {len(number)} characters; BILL keeps at most {MAX_INVOICE_NUMBER}"
        )


@dataclass
class BillcomPlan(Plan):
    body: dict[str, Any] = field(default_factory=dict)
    customer_id: str = ""
    invoice_number: str = ""

    def requests(self) -> list[dict[str, Any]]:
        return [
            {
                "method": "GET",
                "path": "/v3/invoices",
                "params": {"filters": f"invoiceNumber:eq:{self.invoice_number}", "max": "100"},
                "when": "an earlier attempt may have written",
            },
            {"method": "POST", "path": "/v3/invoices", "body": self.body},
        ]


def configured_api_base(settings: Settings) -> str:
    """BILLCOM_API_BASE as core/config.py resolved it (unset: the local emulator)."""
    base = settings.api_base(BillcomInvoiceProvider.name)
    return (base or f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}").rstrip("/")


def _totals(invoice: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """(totalAmount, dueAmount) as BILL holds them (two-decimal amounts)."""
    total = Decimal(str(invoice["totalAmount"]))
    return total, Decimal(str(invoice.get("dueAmount", total)))


def _bill_time(text: Any) -> datetime | None:
    """`createdTime` as BILL writes it (2025-09-01T12:00:00.000+0000); None if unreadable."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _active(row: Mapping[str, Any]) -> bool:
    """Not archived. Since 2026-03 BILL also says `recordStatus` (ACTIVE, INACTIVE, DRAFT) and sets
    `archived` for anything not ACTIVE (https://developer.bill.com/changelog, 2026-03-20)."""
    return not row.get("archived") and row.get("recordStatus", "ACTIVE") == "ACTIVE"


class BillcomInvoiceProvider:
    name = "bill.com"

    def __init__(
        self,
        client: BillcomClient,
        invoice_currencies: frozenset[str] = frozenset(),
        connection_id: str = "bill.com",
    ) -> None:
        # Currencies beyond USD the organization invoices in (a connection setting).
        self.invoice_currencies = invoice_currencies
        self.connection_id = connection_id
        self.client = client
        self._items: dict[str, float] = {}  # item id -> when its existence check expires
        self._lock = threading.Lock()
        self._customer_currencies: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        config: ConnectionConfig,
        limits: BillcomLimits | None = None,
        shared: ProcessLimits | None = None,
    ) -> BillcomInvoiceProvider:
        """The provider of one connection; `limits` and `shared` (the process's sessions and
        counters) are for tests."""
        client = BillcomClient(
            configured_api_base(settings),
            config.api_key,
            limits=limits,
            shared=shared or PROCESS_LIMITS,
            # BILL limits concurrent requests and an hourly budget, not a rate: the gate paces
            # only when the connection sets `requests_per_second`.
            gate=gate_for(
                config.gates,
                config.connection_id,
                "BILL",
                config.settings.requests_per_second,
                ("bill.com", config.connection_id),
            ),
        )
        listed = config.settings.billcom_invoice_currencies or ""
        currencies = frozenset(c for c in listed.split(",") if c)
        return cls(client, currencies, config.connection_id)

    @property
    def request_count(self) -> int:
        return self.client.request_count

    # -- checks -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Log in (or reuse the session) and read it back (`GET /v3/login/session`)."""
        self.client.call("checking the connection", "GET", "/v3/login/session")

    def check_customer(self, provider_customer_id: str) -> None:
        customer = self._read_customer(provider_customer_id)
        if not _active(customer):
            raise ProviderCustomerMissing(
                f"BILL customer {provider_customer_id!r} (the customer's payment_provider_id) "
                "is archived; restore it in BILL or link another one"
            )

    def _read_customer(self, customer_id: str) -> dict[str, Any]:
        try:
            customer: dict[str, Any] = self.client.call(
                "reading the customer", "GET", f"/v3/customers/{customer_id}"
            )
        except BillcomRejected as err:
            if not is_not_found(err):
                raise
            raise ProviderCustomerMissing(
                f"BILL customer {customer_id!r} (the customer's payment_provider_id) does not "
                f"exist: {err}"
            ) from err
        self._remember_currency(customer_id, customer)
        return customer

    def _remember_currency(self, customer_id: str, customer: Mapping[str, Any]) -> None:
        currency = str(customer.get("invoiceCurrency") or HOME_CURRENCY).upper()
        with self._lock:
            self._customer_currencies[customer_id] = currency

    def _customer_currency(self, customer_id: str) -> str:
        with self._lock:
            known = self._customer_currencies.get(customer_id)
        if known is None:
            self._read_customer(customer_id)
            with self._lock:
                known = self._customer_currencies[customer_id]
        return known

    def check_currency(self, invoice_id: str, currency: str) -> None:
        """The organization can invoice in `currency`, or ProviderSetupNeeded says what to set."""
        allowed = {HOME_CURRENCY} | self.invoice_currencies
        if currency not in allowed:
            listed = ",".join(sorted(allowed - {HOME_CURRENCY} | {currency}))
            raise ProviderSetupNeeded(
                f"invoice {invoice_id} is in {currency}; the BILL organization invoices in "
                f"{', '.join(sorted(allowed))}. Set up international invoicing for {currency} in "
                f"BILL, then `billbridge connections set {self.connection_id} "
                f"billcom_invoice_currencies={listed}`"
            )

    def find_or_create_customer(self, customer: Customer) -> str:
        """By e-mail (`GET /v3/customers?filters=email:eq:...`), else created with name, e-mail
        and, outside USD, its invoiceCurrency. A crash between the create and the stored link is
        found by the next attempt's lookup."""
        currency = (customer.currency or HOME_CURRENCY).upper()
        email = customer.email.strip()
        if not email or any(c in email for c in FILTER_UNSAFE):
            raise ProviderCustomerMissing(
                f"customer {customer.id}: BILL customers are found by e-mail, and {email!r} "
                "cannot be looked up; set the customer's payment_provider_id"
            )
        found = [
            c
            for c in self.client.list_all(
                "looking up the customer by e-mail", "/v3/customers", f"email:eq:{email}"
            )
            if _active(c)
        ]
        if len(found) > 1:
            raise ProviderCustomerMissing(
                f"{len(found)} BILL customers share the e-mail of customer {customer.id}; set "
                "its payment_provider_id to the right one"
            )
        if found:
            self._remember_currency(str(found[0]["id"]), found[0])
            return str(found[0]["id"])
        self.check_currency(f"of customer {customer.id}", currency)  # before the write
        body: dict[str, Any] = {"name": (customer.name or customer.id)[:100], "email": email}
        if currency != HOME_CURRENCY:
            body["invoiceCurrency"] = currency
        created = self.client.call("creating the customer", "POST", "/v3/customers", json_body=body)
        self._remember_currency(str(created["id"]), created)
        return str(created["id"])

    def resolve_items(self, provider_item_ids: Collection[str]) -> dict[str, str]:
        """Mappings name BILL item ids (`0ii...`); each must exist and not be archived."""
        wanted = sorted(set(provider_item_ids))
        now = time.monotonic()
        with self._lock:
            unknown = [i for i in wanted if self._items.get(i, 0.0) <= now]
        missing = []
        for item_id in unknown:
            try:
                item = self.client.call(
                    "looking up a mapped item", "GET", f"/v3/classifications/items/{item_id}"
                )
            except BillcomRejected as err:
                if not is_not_found(err):
                    raise
                missing.append(item_id)
                continue
            if not _active(item):
                missing.append(item_id)
        if missing:
            raise ProviderItemMissing(
                "mapped BILL items do not exist or are archived: " + ", ".join(missing)
            )
        with self._lock:
            for item_id in unknown:
                self._items[item_id] = now + ITEM_CACHE_SECONDS
        return {item_id: item_id for item_id in wanted}

    def forget_items(self) -> None:
        with self._lock:
            self._items.clear()

    # -- for seeding demos and reading results back (not part of the export interface) ----------

    def ensure_item(self, name: str) -> str:
        """The id of the active item named `name`, created (a SERVICE item) if there is none."""
        if any(c in name for c in FILTER_UNSAFE):
            raise ProviderRejected(f"item name {name!r}: BILL's filters cannot carry ',' or ':'")
        found = [
            item
            for item in self.client.list_all(
                "looking up an item", "/v3/classifications/items", f"name:eq:{name}"
            )
            if _active(item)
        ]
        if found:
            return str(found[0]["id"])
        created = self.client.call(
            "creating an item",
            "POST",
            "/v3/classifications/items",
            json_body={"name": name, "type": "SERVICE"},
        )
        return str(created["id"])

    def read_invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice: dict[str, Any] = self.client.call(
            "reading the invoice", "GET", f"/v3/invoices/{invoice_id}"
        )
        return invoice

    def read_totals(self, invoice_id: str) -> tuple[Decimal, Decimal]:
        """(totalAmount, dueAmount) of an invoice, as BILL holds them."""
        return _totals(self.read_invoice(invoice_id))

    # -- reconcile ---------------------------------------------------------------------------

    def export_ref(self, invoice: Invoice) -> str:
        """The invoice number the export sends (the billing number, else the invoice id): BILL
        invoices have no field of billbridge's own, so the number is the tie (see plan)."""
        return invoice.invoice_number or invoice.id

    def list_exported(self, since: datetime | None) -> Iterator[ProviderInvoice]:
        """Every invoice created at or after `since`: `GET /v3/invoices` with
        `filters=createdTime:gte:"<ISO 8601>"`, page by page (`max`, `page` = `nextPage`;
        https://developer.bill.com/docs/search-op-with-lists). Tied by number, so unmarked:
        core/reconcile.py reports only those whose number is one of billbridge's. Archived
        invoices (a duplicate _keep_oldest archived, one whose total differed) do not count.
        The list does not say the currency (an invoice is in its customer's)."""
        filters = ""
        if since is not None:
            moment = since.astimezone(UTC) if since.tzinfo is not None else since
            # Quoted as BILL's own examples quote date-time values.
            filters = f'createdTime:gte:"{moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")}"'
        rows = self.client.each_row(
            "listing invoices", "/v3/invoices", filters, at_most=MAX_RECONCILED
        )
        for row in rows:
            number = row.get("invoiceNumber")
            if not number:
                continue
            total, _ = _totals(row)
            yield ProviderInvoice(
                provider_invoice_id=str(row["id"]),
                ref=str(number),
                total=total,
                currency=None,
                status=str(row.get("status") or row.get("recordStatus") or ""),
                created_at=_bill_time(row.get("createdTime")),
                marked=False,
                active=_active(row),
            )

    # -- plan (no writes; reads a customer's currency once) --------------------------------------

    def plan(
        self,
        invoice: Invoice,
        breakdown: InvoiceBreakdown,
        items: Mapping[str, str],
        provider_customer_id: str,
        now: float,
    ) -> BillcomPlan:
        currency = invoice.currency.upper()
        if minor_unit_exponent(currency) > 2:
            raise ProviderRejected(
                f"BILL amounts have two decimals; {currency} has {minor_unit_exponent(currency)}"
            )
        self.check_currency(invoice.id, currency)
        # A placeholder (a dry run's customer to be found or created) is no BILL id.
        if not provider_customer_id.startswith("{"):
            customer_currency = self._customer_currency(provider_customer_id)
            if customer_currency != currency:
                raise ProviderSetupNeeded(
                    f"BILL customer {provider_customer_id} invoices in {customer_currency} "
                    f"(its invoiceCurrency), invoice {invoice.id} is in {currency}; a BILL "
                    f"invoice is in its customer's currency: link a BILL customer in {currency}"
                )
        number = invoice.invoice_number or invoice.id
        check_invoice_number(number, "invoice_number" if invoice.invoice_number else "id")
        lines = [_line(line, currency, items[line.mapping_key]) for line in breakdown.lines]
        if invoice.memo and invoice.memo.strip():
            # UNCONFIRMED: v3's create documents no memo field; a note line of amount zero
            # carries it on the invoice without touching the total.
            lines.append(
                {"quantity": 1, "price": 0, "description": invoice.memo.strip()[:MAX_DESCRIPTION]}
            )
        invoice_date = invoice.invoice_date.date().isoformat()
        body: dict[str, Any] = {
            "customer": {"id": provider_customer_id},
            "invoiceNumber": number,
            "invoiceDate": invoice_date,
            # Unset, BILL would use the day of the export: an invoice without a due date is due
            # on its own date, whenever it is exported.
            "dueDate": invoice.due_date.date().isoformat() if invoice.due_date else invoice_date,
            "invoiceLineItems": lines,
            # billbridge exports; whether BILL e-mails the customer is BILL's setting to use.
            "processingOptions": {"sendEmail": False},
        }
        return BillcomPlan(
            provider=self.name,
            invoice_id=invoice.id,
            currency=currency,
            total_minor=breakdown.total_minor,
            # BILL applies customer credits apart from the invoice (credit memos), like
            # QuickBooks: the invoice's own amount due is its total, reported in push.
            amount_due_minor=breakdown.amount_due_minor,
            line_amounts_minor=[line.amount_minor for line in breakdown.lines],
            body=body,
            customer_id=provider_customer_id,
            invoice_number=number,
        )

    # -- push (I/O, exactly once) ----------------------------------------------------------------

    def push(self, plan: Plan, context: PushContext) -> PushResult:
        assert isinstance(plan, BillcomPlan)
        with self.client.pushing(context.heartbeat):
            invoice = self._find_ours(plan, context)
            if invoice is None:
                invoice = self._create(plan)
                if context.may_have_written:
                    invoice = self._keep_oldest(plan, invoice)
            total = self._check_totals(plan, invoice)
            invoice_id = str(invoice["id"])
            url = self._invoice_url(invoice_id)
            # Created is issued: the invoice is open at BILL (billbridge never sends drafts).
            context.remember_issued(invoice_id, url)
            note = ""
            if plan.amount_due_minor != plan.total_minor:
                applied = from_minor(plan.amount_due_minor - plan.total_minor, plan.currency)
                note = (
                    f"the billing invoice applied a customer balance of {applied} "
                    f"{plan.currency}; BILL applies customer credits as credit memos, not on "
                    "the invoice"
                )
            due = invoice.get("dueAmount", invoice.get("totalAmount"))
            return PushResult(
                external_id=invoice_id,
                external_url=url,
                provider_total=str(total),
                provider_amount_due=str(Decimal(str(due))),
                provider_line_count=len(plan.body["invoiceLineItems"]),
                request_count=self.client.request_count,
                note=note,
            )

    def _invoice_url(self, invoice_id: str) -> str:
        # UNCONFIRMED: BILL documents no web-app link to an invoice; the API address names it.
        return f"{self.client.base_url}/v3/invoices/{invoice_id}"

    def _ours(self, plan: BillcomPlan, row: Mapping[str, Any]) -> bool:
        customer = row.get("customerId") or (row.get("customer") or {}).get("id")
        return (
            _active(row)
            and row.get("invoiceNumber") == plan.invoice_number
            and customer == plan.customer_id
        )

    def _by_number(self, plan: BillcomPlan) -> list[dict[str, Any]]:
        """Active invoices of this number and customer, oldest first."""
        rows = self.client.list_all(
            "looking up the invoice by number",
            "/v3/invoices",
            f"invoiceNumber:eq:{plan.invoice_number}",
        )
        ours = [row for row in rows if self._ours(plan, row)]
        return sorted(ours, key=lambda r: (str(r.get("createdTime") or ""), str(r["id"])))

    def _find_ours(self, plan: BillcomPlan, context: PushContext) -> dict[str, Any] | None:
        """The invoice an earlier attempt created: by its recorded id, else by number.

        A recorded invoice that is gone or archived was issued: it is looked for again by
        number (someone may have recreated it), and if it is not there a person decides."""
        vanished: str | None = None
        if context.known_external_id:
            try:
                found = self.client.call(
                    "reading the invoice", "GET", f"/v3/invoices/{context.known_external_id}"
                )
            except BillcomRejected as err:
                if not is_not_found(err):
                    raise
                vanished = context.known_external_id
            else:
                if self._ours(plan, found):
                    return dict(found)
                vanished = context.known_external_id
        if not (context.may_have_written or vanished):
            return None
        ours = self._by_number(plan)
        if ours:
            return self._keep_oldest(plan, ours[0], ours)
        if vanished is not None:
            raise ProviderInvoiceMissing(
                f"BILL invoice {vanished} of invoice {plan.invoice_id}, created by an earlier "
                "attempt, is gone or archived in BILL and no active invoice numbered "
                f"{plan.invoice_number!r} for customer {plan.customer_id} exists; billbridge "
                "will not create it again on its own: restore or recreate it in BILL, then "
                "`billbridge attention retry`"
            )
        return None

    def _keep_oldest(
        self,
        plan: BillcomPlan,
        candidate: dict[str, Any],
        ours: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One invoice of this number and customer stays; a duplicate a late create of an
        earlier attempt left (same number, customer and total) is archived."""
        if ours is None:
            ours = self._by_number(plan)
        if not ours:
            return candidate
        kept = ours[0]
        for duplicate in ours[1:]:
            if str(duplicate.get("totalAmount")) == str(kept.get("totalAmount")):
                self._archive(duplicate, "archiving a duplicate of the invoice")
        return kept

    def _create(self, plan: BillcomPlan) -> dict[str, Any]:
        """POST the invoice; a refusal that concerns the customer or an item says which."""
        try:
            created: dict[str, Any] = self.client.call(
                "creating the invoice", "POST", "/v3/invoices", json_body=plan.body
            )
            return created
        except BillcomRejected as err:
            raise self._explained(plan, err) from err

    def _explained(self, plan: BillcomPlan, err: BillcomRejected) -> ExportError:
        """BILL's codes for a missing customer or item are not documented: read both again and
        name what a person must fix, else it is the data (not retried)."""
        self.check_customer(plan.customer_id)  # raises ProviderCustomerMissing
        self.forget_items()
        items = {
            line[ITEM_FIELD]["itemId"]
            for line in plan.body["invoiceLineItems"]
            if ITEM_FIELD in line
        }
        self.resolve_items(items)  # raises ProviderItemMissing
        return err

    def _archive(self, invoice: Mapping[str, Any], doing: str) -> None:
        """`POST /v3/invoices/{id}/archive`; an invoice already gone counts as archived."""
        try:
            self.client.call(doing, "POST", f"/v3/invoices/{invoice['id']}/archive")
        except BillcomRejected as err:
            if not is_not_found(err):
                raise

    def _check_totals(self, plan: BillcomPlan, invoice: dict[str, Any]) -> Decimal:
        """BILL's totalAmount equals the billing total, or the invoice is archived again and the
        export needs attention, naming the difference."""
        total = Decimal(str(invoice.get("totalAmount", "0")))
        expected = from_minor(plan.total_minor, plan.currency)
        if total == expected:
            return total
        self._archive(invoice, "archiving the invoice BILL computed differently")
        raise ProviderTotalsDiffer(
            f"BILL computed invoice {plan.invoice_id} differently: totalAmount {total} differs "
            f"from the billing total {expected} by {total - expected} {plan.currency}. The "
            f"invoice ({invoice['id']}) was archived in BILL again. Check the mapped items' "
            "settings in BILL (a price or tax BILL adds), then `billbridge attention retry`"
        )
