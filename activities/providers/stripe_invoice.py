"""Stripe Invoicing, through the official `stripe` SDK.

Push: find or create one draft invoice (`collection_method=send_invoice`, due date from the billing
invoice), add the lines in batches with `add_lines`, apply a customer balance if the billing
invoice used one, check Stripe's own total, finalize. Every write carries an Idempotency-Key
derived from the billing invoice id and the step; because Stripe prunes keys after 24 hours, each
write is preceded by a lookup (the draft by id or by metadata, lines by their metadata), so a retry
days later still finds what an earlier attempt wrote. One billing invoice never becomes two
Stripe invoices, and no line is added twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import stripe

from billbridge.activities.providers.base import ConnectionConfig, Plan, PushContext
from billbridge.core.breakdown import ExportLine, InvoiceBreakdown
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import (
    ExportError,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderItemMissing,
    ProviderLimitExceeded,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    TotalMismatch,
    retry_after,
)
from billbridge.core.messages import PushResult
from billbridge.core.models import Customer, Invoice
from billbridge.core.money import from_minor

# Stripe refuses more than 250 invoice items on one invoice (API changelog 2016-02-22). Larger
# billing invoices are consolidated: lines with the same item, kind and period become one line.
MAX_INVOICE_ITEMS = 250
# Lines per add_lines call. Stripe documents no per-call maximum (unconfirmed); 50 keeps each
# request small and a 250-line invoice at five calls.
ADD_LINES_BATCH = 50
# unit_amount_decimal and quantity_decimal take at most 12 decimal places.
DECIMAL_PLACES = Decimal("1e-12")
METADATA_INVOICE = "billbridge_invoice_id"
METADATA_LINE = "billbridge_line_ref"
DEFAULT_RETRY_AFTER = timedelta(seconds=2)
ITEM_CACHE_SECONDS = 300.0
# Due dates closer than this to the start of the push are treated as already due.
DUE_DATE_MARGIN = 86400
DEFAULT_DAYS_UNTIL_DUE = 30
# Where the local Stripe emulator listens when STRIPE_API_BASE is unset (workers start it).
LOCAL_EMULATOR_PORT = 12111


def idempotency_key(invoice_id: str, step: str) -> str:
    """Deterministic per billing invoice and step; hashed so any invoice id fits in 255 chars."""
    digest = hashlib.sha256(invoice_id.encode()).hexdigest()[:32]
    return f"billbridge-{digest}-{step}"


@dataclass
class StripePlan(Plan):
    create_params: dict[str, Any] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    balance_params: dict[str, Any] | None = None
    consolidated_from: int = 0  # billing-side line count when lines were consolidated

    def batches(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        for start in range(0, len(self.lines), ADD_LINES_BATCH):
            yield start // ADD_LINES_BATCH, self.lines[start : start + ADD_LINES_BATCH]

    def requests(self) -> list[dict[str, Any]]:
        draft = "{draft_invoice_id}"
        out: list[dict[str, Any]] = [
            {
                "method": "POST",
                "path": "/v1/invoices",
                "idempotency_key": idempotency_key(self.invoice_id, "create"),
                "params": self.create_params,
            }
        ]
        if self.balance_params is not None:
            customer = self.create_params["customer"]
            out.append(
                {
                    "method": "POST",
                    "path": f"/v1/customers/{customer}/balance_transactions",
                    "idempotency_key": idempotency_key(self.invoice_id, "balance"),
                    "params": self.balance_params,
                }
            )
        for number, batch in self.batches():
            out.append(
                {
                    "method": "POST",
                    "path": f"/v1/invoices/{draft}/add_lines",
                    "idempotency_key": idempotency_key(self.invoice_id, f"lines-{number}"),
                    "params": {"lines": batch},
                }
            )
        out.append(
            {
                "method": "POST",
                "path": f"/v1/invoices/{draft}/finalize",
                "idempotency_key": idempotency_key(self.invoice_id, "finalize"),
                "params": {"auto_advance": False},
            }
        )
        return out


def _replayed(obj: Any) -> bool:
    """Whether Stripe answered from its idempotency cache (the object as it was back then)."""
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return str(headers.get("Idempotent-Replayed", "")).lower() == "true"


def _metadata(obj: Any, key: str) -> str | None:
    """A metadata value of a Stripe object (StripeObject is not a dict: no .get)."""
    metadata = getattr(obj, "metadata", None)
    return metadata[key] if metadata is not None and key in metadata else None


def _unix(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text not in ("-0", "") else "0"


def _stripe_line(line: ExportLine, currency: str, product: str, invoice_id: str) -> dict[str, Any]:
    metadata = {
        METADATA_INVOICE: invoice_id,
        METADATA_LINE: line.ref,
        "billbridge_kind": line.kind,
        "billbridge_quantity": _decimal_text(line.quantity),
    }
    params: dict[str, Any] = {"description": line.description[:500], "metadata": metadata}
    if line.period_start is not None and line.period_end is not None:
        start, end = _unix(line.period_start), _unix(line.period_end)
        # Orb's end date is exclusive, Stripe's period end inclusive.
        params["period"] = {"start": start, "end": max(start, end - 1)}
    if line.amount_minor < 0:
        # Stripe prices cannot be negative: credits and discounts are amount lines; the mapped
        # product is kept in metadata so accounting can still tell them apart.
        metadata["billbridge_product"] = product
        params["amount"] = line.amount_minor
        params["discountable"] = False
        return params
    quantity, unit = _quantity_and_unit(line.quantity, line.amount_minor)
    params["price_data"] = {
        "currency": currency,
        "product": product,
        "unit_amount_decimal": _decimal_text(unit),
    }
    params["quantity_decimal"] = _decimal_text(quantity)
    return params


def _quantity_and_unit(quantity: Decimal, amount_minor: int) -> tuple[Decimal, Decimal]:
    """A (quantity, unit amount) whose product Stripe rounds to exactly `amount_minor`.

    The billing quantity is kept when a 12-decimal unit amount reproduces the line amount under
    any rounding rule (error below half a minor unit); otherwise the line is 1 x its amount and
    the real quantity stays in the description and metadata.
    """
    if quantity > 0 and quantity == quantity.quantize(DECIMAL_PLACES):
        try:
            unit = (Decimal(amount_minor) / quantity).quantize(DECIMAL_PLACES, ROUND_HALF_UP)
        except InvalidOperation:  # a unit amount too large for 12 decimals: 1 x the amount
            return Decimal(1), Decimal(amount_minor)
        if unit >= 0 and abs(unit * quantity - amount_minor) < Decimal("0.5"):
            return quantity, unit
    return Decimal(1), Decimal(amount_minor)


def _consolidate(lines: list[ExportLine]) -> list[ExportLine]:
    """Merge lines with the same item, kind and period (exact sums) to fit Stripe's limit."""
    groups: dict[tuple[object, ...], list[ExportLine]] = {}
    for line in lines:
        key = (line.mapping_key, line.kind, line.period_start, line.period_end)
        groups.setdefault(key, []).append(line)
    merged = []
    for members in groups.values():
        first = members[0]
        if len(members) == 1:
            merged.append(first)
            continue
        merged.append(
            ExportLine(
                ref=f"{first.ref}+{len(members) - 1}",
                kind=first.kind,
                mapping_key=first.mapping_key,
                description=f"{first.description} (and {len(members) - 1} more lines)",
                amount_minor=sum(m.amount_minor for m in members),
                quantity=sum((m.quantity for m in members), Decimal(0)),
                period_start=first.period_start,
                period_end=first.period_end,
                billing_line_id=first.billing_line_id,
            )
        )
    return merged


def translate_stripe_error(err: stripe.StripeError, doing: str) -> ExportError:
    """Decide, per Stripe error type, whether a retry can help."""
    message = f"Stripe {doing}: {err.user_message or err}"
    if isinstance(err, stripe.RateLimitError):
        # A 429 with code lock_timeout is an object lock, not a rate limit; both pass with time.
        headers = err.headers or {}
        value = headers.get("Retry-After") or headers.get("retry-after")
        return ProviderRateLimited(message, retry_after(value, DEFAULT_RETRY_AFTER))
    if isinstance(err, stripe.APIConnectionError):
        return ProviderUnavailable(message)
    if isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderAuthFailed(message)
    if isinstance(err, stripe.IdempotencyError):
        if err.http_status == 409:  # the same key still in flight from a dead attempt
            return ProviderUnavailable(message)
        return ProviderRejected(message)
    status = err.http_status or 0
    if status >= 500 or status in (0, 409):
        return ProviderUnavailable(message)
    return ProviderRejected(message)


def _carried_to_balance(invoice: Any, plan: StripePlan) -> int:
    """What Stripe moved to the customer's balance instead of charging it on this invoice.

    Stripe's amount due is total + starting_balance - ending_balance. When the amount due is
    below Stripe's minimum charge, Stripe marks the invoice paid and carries the amount to the
    customer's balance (ending_balance > 0); the money is still owed, on the next invoice. Only
    that case counts, and only when the starting balance is exactly the one billbridge applied.
    """
    starting = invoice.starting_balance or 0
    ending = invoice.ending_balance or 0
    applied = plan.amount_due_minor - plan.total_minor
    if invoice.amount_due == 0 and ending > 0 and starting == applied:
        return int(ending)
    return 0


class StripeInvoiceProvider:
    name = "stripe_invoice"

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        timeout: float = 30.0,
        options: ConnectionSettings | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.options = options or ConnectionSettings()
        # Retries belong to Temporal (visible, durable, honouring Retry-After), not to the SDK.
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        # One provider serves every activity thread of a worker; each push counts its own calls.
        self._calls = threading.local()
        # Mapped products rarely change: resolved ones are remembered for a few minutes, which
        # spares every export a read per item (a product deleted meanwhile fails add_lines).
        self._items: dict[str, tuple[str, float]] = {}
        self._items_lock = threading.Lock()

    @property
    def request_count(self) -> int:
        return int(getattr(self._calls, "count", 0))

    @classmethod
    def from_settings(cls, settings: Settings, config: ConnectionConfig) -> StripeInvoiceProvider:
        """The connection's own API key when it has one, else STRIPE_API_KEY."""
        api_base = settings.stripe_api_base or f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}"
        return cls(config.api_key or settings.stripe_api_key, api_base, options=config.settings)

    # -- checks -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        self._call("checking the API key", self.client.v1.customers.list, params={"limit": 1})

    def check_customer(self, provider_customer_id: str) -> None:
        try:
            customer = self._call(
                "retrieving the customer", self.client.v1.customers.retrieve, provider_customer_id
            )
        except ProviderRejected as err:
            raise ProviderCustomerMissing(
                f"Stripe customer {provider_customer_id!r} (the customer's payment_provider_id) "
                f"does not exist: {err}"
            ) from err
        if getattr(customer, "deleted", False):
            raise ProviderCustomerMissing(
                f"Stripe customer {provider_customer_id!r} (the customer's payment_provider_id) "
                "was deleted"
            )

    def find_or_create_customer(self, customer: Customer) -> str:
        customers = self.client.v1.customers
        if customer.email:
            page = self._call(
                "looking up the customer by e-mail",
                customers.list,
                params={"email": customer.email, "limit": 100},
            )
            live = [c for c in page.data if not getattr(c, "deleted", False)]
            ours = [c for c in live if _metadata(c, "billbridge_customer_id") == customer.id]
            if ours or len(live) == 1:
                return str((ours or live)[0].id)
            if len(live) > 1:
                raise ProviderCustomerMissing(
                    f"{len(live)} Stripe customers share the e-mail of customer {customer.id}; "
                    "set its payment_provider_id to the right one"
                )
        created = self._call(
            "creating the customer",
            customers.create,
            params={
                "name": customer.name or customer.id,
                "email": customer.email or "",
                "metadata": {"billbridge_customer_id": customer.id},
            },
            options={"idempotency_key": idempotency_key(customer.id, "customer")},
        )
        return str(created.id)

    def resolve_items(self, provider_item_ids: Collection[str]) -> dict[str, str]:
        """Mappings name a Stripe product (prod_...) or price (price_...): the product of each."""
        products: dict[str, str] = {}
        missing = []
        now = time.monotonic()
        with self._items_lock:
            cached = {k: v for k, (v, expires) in self._items.items() if expires > now}
        for item_id in sorted(set(provider_item_ids)):
            if item_id in cached:
                products[item_id] = cached[item_id]
                continue
            try:
                if item_id.startswith("price_"):
                    price = self._call(
                        "retrieving a price", self.client.v1.prices.retrieve, item_id
                    )
                    product = price.product
                    products[item_id] = product if isinstance(product, str) else product.id
                else:
                    found = self._call(
                        "retrieving a product", self.client.v1.products.retrieve, item_id
                    )
                    products[item_id] = str(found.id)
            except ProviderRejected:
                missing.append(item_id)
        if missing:
            raise ProviderItemMissing(
                "mapped Stripe products/prices do not exist: " + ", ".join(missing)
            )
        with self._items_lock:
            for item_id, product in products.items():
                self._items[item_id] = (product, now + ITEM_CACHE_SECONDS)
        return products

    # -- plan (pure) ---------------------------------------------------------------------------

    def plan(
        self,
        invoice: Invoice,
        breakdown: InvoiceBreakdown,
        items: Mapping[str, str],
        provider_customer_id: str,
        now: float,
    ) -> StripePlan:
        currency = invoice.currency.lower()
        lines = breakdown.lines
        consolidated_from = 0
        if len(lines) > MAX_INVOICE_ITEMS:
            consolidated_from = len(lines)
            lines = _consolidate(lines)
            if len(lines) > MAX_INVOICE_ITEMS:
                raise ProviderLimitExceeded(
                    f"invoice {invoice.id} needs {len(lines)} Stripe lines even after merging "
                    f"lines of the same item and period; Stripe allows {MAX_INVOICE_ITEMS}"
                )
        create: dict[str, Any] = {
            "customer": provider_customer_id,
            "currency": currency,
            "collection_method": self.options.collection_method,
            # Never let Stripe finalize a half-built draft on its own (it would after an hour).
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "metadata": {
                METADATA_INVOICE: invoice.id,
                "billbridge_invoice_number": invoice.invoice_number or "",
                "billbridge_customer_id": invoice.customer.id,
            },
        }
        if self.options.collection_method == "charge_automatically":
            # Stripe charges the customer's default payment method; due dates do not apply.
            if invoice.due_date is not None:
                create["metadata"]["billbridge_due_date"] = invoice.due_date.isoformat()
        elif invoice.due_date is None:
            create["days_until_due"] = DEFAULT_DAYS_UNTIL_DUE
        elif _unix(invoice.due_date) > now + DUE_DATE_MARGIN:
            create["due_date"] = _unix(invoice.due_date)
        else:
            # Stripe refuses a due date in the past; an invoice exported late (or one due within
            # the margin, which a retry could push into the past) is due on finalization.
            # `now` is when the push began, fixed across retries, so the request stays the same
            # under its idempotency key.
            create["days_until_due"] = 0
            create["metadata"]["billbridge_due_date"] = invoice.due_date.isoformat()
        if invoice.memo:
            create["description"] = invoice.memo[:5000]
        balance = None
        if breakdown.balance_applied_minor:
            balance = {
                "amount": breakdown.balance_applied_minor,
                "currency": currency,
                "description": f"Balance applied to invoice {invoice.invoice_number or invoice.id}",
                "metadata": {METADATA_INVOICE: invoice.id},
            }
        return StripePlan(
            provider=self.name,
            invoice_id=invoice.id,
            currency=currency,
            total_minor=breakdown.total_minor,
            amount_due_minor=breakdown.total_minor + breakdown.balance_applied_minor,
            line_amounts_minor=[line.amount_minor for line in lines],
            create_params=create,
            lines=[
                _stripe_line(line, currency, items[line.mapping_key], invoice.id) for line in lines
            ],
            balance_params=balance,
            consolidated_from=consolidated_from,
        )

    # -- push (I/O, idempotent) ------------------------------------------------------------------

    def push(self, plan: Plan, context: PushContext) -> PushResult:
        assert isinstance(plan, StripePlan)
        self._calls.count = 0
        invoices = self.client.v1.invoices
        draft = self._find_invoice(plan, context)
        fresh = False  # a draft this attempt created: it has no lines yet
        if draft is None:
            draft = self._call(
                "creating the draft invoice",
                invoices.create,
                params=plan.create_params,
                options={"idempotency_key": idempotency_key(plan.invoice_id, "create")},
            )
            fresh = not _replayed(draft)
        context.remember_external_id(draft.id)
        if draft.status == "draft":
            if plan.balance_params is not None:
                self._apply_balance(plan)
            updated = self._add_missing_lines(plan, draft.id, context, fresh=fresh)
            draft = updated or self._call("reading the draft", invoices.retrieve, draft.id)
            if draft.total != plan.total_minor:
                raise TotalMismatch(
                    f"Stripe draft {draft.id} totals {draft.total}, billing total is "
                    f"{plan.total_minor} minor units; the draft is left unfinalized"
                )
            if self.options.leave_as_draft:
                # The customer balance, if any, applies when someone finalizes it in Stripe.
                return self._result(draft, plan, note="left as a draft (leave_as_draft)")
            draft = self._call(
                "finalizing the invoice",
                invoices.finalize_invoice,
                draft.id,
                # With charge_automatically, auto_advance lets Stripe collect the payment.
                params={"auto_advance": self.options.collection_method == "charge_automatically"},
                options={"idempotency_key": idempotency_key(plan.invoice_id, "finalize")},
            )
        if draft.status in ("void", "uncollectible"):
            raise ProviderRejected(
                f"Stripe invoice {draft.id} for {plan.invoice_id} is {draft.status}"
            )
        note = ""
        carried = _carried_to_balance(draft, plan)
        if carried:
            note = (
                f"Stripe carried {from_minor(carried, plan.currency)} {plan.currency.upper()} to "
                "the customer's balance (below its minimum charge); it is due on the next invoice"
            )
        if draft.total != plan.total_minor or draft.amount_due + carried != plan.amount_due_minor:
            raise TotalMismatch(
                f"Stripe invoice {draft.id} has total {draft.total} and amount due "
                f"{draft.amount_due}; billing has {plan.total_minor} and {plan.amount_due_minor}"
            )
        return self._result(draft, plan, note=note)

    def _result(self, invoice: Any, plan: StripePlan, *, note: str) -> PushResult:
        return PushResult(
            external_id=invoice.id,
            external_url=invoice.hosted_invoice_url or "",
            provider_total=str(from_minor(invoice.total, plan.currency)),
            provider_amount_due=str(from_minor(invoice.amount_due, plan.currency)),
            provider_line_count=len(plan.lines),
            request_count=self.request_count,
            consolidated=bool(plan.consolidated_from),
            note=note,
        )

    def _find_invoice(self, plan: StripePlan, context: PushContext) -> Any:
        """The Stripe invoice an earlier attempt made, if any: by stored id, else by metadata."""
        invoices = self.client.v1.invoices
        if context.known_external_id:
            found = self._call("reading the invoice", invoices.retrieve, context.known_external_id)
            if _metadata(found, METADATA_INVOICE) == plan.invoice_id:
                return found
        if not context.may_have_written:
            return None
        # Strongly consistent listing (unlike search) of the customer's invoices created since
        # this export began pushing, with an hour of slack for clock skew.
        params = {
            "customer": plan.create_params["customer"],
            "created": {"gte": int(context.push_started_at) - 3600},
            "limit": 100,
        }
        for candidate in self._list_all("looking up earlier drafts", invoices.list, params=params):
            if _metadata(candidate, METADATA_INVOICE) == plan.invoice_id:
                return candidate
        return None

    def _apply_balance(self, plan: StripePlan) -> None:
        assert plan.balance_params is not None
        customer = plan.create_params["customer"]
        transactions = self.client.v1.customers.balance_transactions
        for txn in self._list_all(
            "reading balance transactions", transactions.list, customer, params={"limit": 100}
        ):
            if _metadata(txn, METADATA_INVOICE) == plan.invoice_id:
                return
        self._call(
            "applying the customer balance",
            transactions.create,
            customer,
            params=plan.balance_params,
            options={"idempotency_key": idempotency_key(plan.invoice_id, "balance")},
        )

    def _add_missing_lines(
        self, plan: StripePlan, draft_id: str, context: PushContext, *, fresh: bool
    ) -> Any:
        """Add the lines the draft lacks; returns the invoice as the last add_lines left it."""
        present = set() if fresh else self._present_line_refs(draft_id)
        updated = None
        for number, batch in plan.batches():
            missing = [line for line in batch if line["metadata"][METADATA_LINE] not in present]
            if not missing:
                continue
            step = (
                f"lines-{number}"
                if len(missing) == len(batch)
                else (f"lines-{number}-rest-{len(missing)}")
            )
            updated = self._call(
                "adding lines",
                self.client.v1.invoices.add_lines,
                draft_id,
                params={"lines": missing},
                options={"idempotency_key": idempotency_key(plan.invoice_id, step)},
            )
            context.heartbeat(f"added line batch {number + 1}")
        # A replayed add_lines answers with the invoice as it was then, not now.
        return updated if updated is not None and not _replayed(updated) else None

    def _present_line_refs(self, draft_id: str) -> set[str]:
        lines = self._list_all(
            "reading draft lines",
            self.client.v1.invoices.line_items.list,
            draft_id,
            params={"limit": 100},
        )
        return {ref for line in lines if (ref := _metadata(line, METADATA_LINE))}

    def _list_all(
        self, doing: str, method: Any, *args: Any, params: dict[str, Any]
    ) -> Iterator[Any]:
        """Every object of a Stripe list, page by page, each page a counted, translated call."""
        page = self._call(doing, method, *args, params=params)
        while True:
            yield from page.data
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}
            page = self._call(doing, method, *args, params=params)

    def _call(self, doing: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        self._calls.count = self.request_count + 1
        try:
            return method(*args, **kwargs)
        except stripe.StripeError as err:
            raise translate_stripe_error(err, doing) from err
