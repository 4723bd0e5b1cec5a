"""Stripe Invoicing, through the official `stripe` SDK.

Push: find or create one draft invoice (`collection_method=send_invoice`, due date from the billing
invoice), add the lines in batches with `add_lines`, apply a customer balance if the billing
invoice used one, check Stripe's own total, finalize. Every write carries an Idempotency-Key
derived from the billing invoice id and the step; because Stripe prunes keys after 24 hours, each
write is preceded by a lookup (the draft by id or by metadata, lines by their metadata), so a retry
days later still finds what an earlier attempt wrote. One billing invoice never becomes two
Stripe invoices, and no line is added twice.

A stored draft that no longer exists at Stripe (someone deleted it: Stripe deletes drafts only)
was never issued, and is replaced by a new draft under keys of its own. An invoice an earlier
attempt finalized, or was finalizing, that is gone (another account, deleted test data) needs a
person: it may already be with the customer.

Every request heartbeats before and after, and has a total deadline (core/timeouts.py).
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import httpx
import stripe

from billbridge.activities.providers import deadline, stripe_currencies
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
from billbridge.activities.providers.stripe_balance import BalanceReading, read_ledger
from billbridge.core.breakdown import ExportLine, InvoiceBreakdown
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import (
    AmountNotChargeable,
    ExportError,
    ProviderAuthFailed,
    ProviderBalanceUnexpected,
    ProviderCustomerMissing,
    ProviderInvoiceMissing,
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
from billbridge.core.money import InexactAmountError, from_minor, to_minor

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
# On a draft that replaces a vanished one: the vanished draft's id (see _create_draft).
METADATA_REPLACES = "billbridge_replaces"
# Drafts created in one push when each one vanishes again right away: then something is wrong.
MAX_DRAFT_GENERATIONS = 3
# Keys one write may go through when Stripe replays a 500 under each (StripeFailedUnderKey)
# and a lookup proves nothing was written: beyond that, Stripe is failing, not one request.
MAX_KEY_GENERATIONS = 5
# Most objects a lookup reads (newest first, within its time window) before it gives up with a
# clear error rather than page on without end.
MAX_LISTED = 1000
# The lookup of earlier drafts reads invoices created since the push began, less this much
# (clock skew between Temporal and Stripe).
LOOKUP_SLACK_SECONDS = 3600
# Our balance transaction is created after the billing invoice was: it is looked for among those
# created since then, less a day of clock skew.
BALANCE_LOOKUP_SLACK = timedelta(days=1)
DEFAULT_RETRY_AFTER = timedelta(seconds=2)
ITEM_CACHE_SECONDS = 300.0
# Due dates closer than this to the start of the push are treated as already due.
DUE_DATE_MARGIN = 86400
DEFAULT_DAYS_UNTIL_DUE = 30
# Where the local Stripe emulator listens when STRIPE_API_BASE is unset (workers start it).
LOCAL_EMULATOR_PORT = 12111
# Stripe's basic rate limiter: "Live mode: 100 operations; Sandbox: 25 operations" per second
# (https://docs.stripe.com/rate-limits). Every request waits for its turn at the connection's gate
# (activities/providers/gate.py), shared by all workers, at the connection's
# `requests_per_second` or PACED_SHARE of that; the rest is left to the account's other users
# (the CLI's checks, the Dashboard, other integrations).
LIVE_REQUESTS_PER_SECOND = 100.0
TEST_REQUESTS_PER_SECOND = 25.0


def idempotency_key(invoice_id: str, step: str) -> str:
    """Deterministic per billing invoice and step; hashed so any invoice id fits in 255 chars."""
    digest = hashlib.sha256(invoice_id.encode()).hexdigest()[:32]
    return f"billbridge-{digest}-{step}"


@dataclass
class StripePlan(Plan):
    """Amounts (total_minor, amount_due_minor, line_amounts_minor) are in Stripe's minor units
    (stripe_currencies), which differ from ISO 4217's for ISK, UGX and MGA."""

    create_params: dict[str, Any] = field(default_factory=dict)
    lines: list[dict[str, Any]] = field(default_factory=list)
    balance_params: dict[str, Any] | None = None
    consolidated_from: int = 0  # billing-side line count when lines were consolidated
    # Unix time before which nothing of this export can exist at Stripe (0: unknown).
    not_before: int = 0
    # Stripe's total and amount due less the billing ones (major units): non-zero only with a
    # rounding line the connection allowed (stripe_rounding_line); `rounding_note` says so.
    total_rounding: Decimal = Decimal(0)
    amount_due_rounding: Decimal = Decimal(0)
    rounding_note: str = ""

    def billing_totals(self) -> tuple[int, int, int]:
        def billing(units: int, rounding: Decimal) -> int:
            amount = stripe_currencies.from_stripe_minor(units, self.currency) - rounding
            try:
                return to_minor(amount, self.currency)
            except InexactAmountError as err:
                raise TotalMismatch(f"invoice {self.invoice_id}: {err}") from err

        return (
            billing(sum(self.line_amounts_minor), self.total_rounding),
            billing(self.total_minor, self.total_rounding),
            billing(self.amount_due_minor, self.amount_due_rounding),
        )

    # Whether Stripe e-mails the finalized invoice (send_invoice, send_email, not a draft).
    deliver: bool = False

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
        for number, batch in self.batches():
            out.append(
                {
                    "method": "POST",
                    "path": f"/v1/invoices/{draft}/add_lines",
                    "idempotency_key": idempotency_key(self.invoice_id, f"lines-{number}"),
                    "params": {"lines": batch},
                }
            )
        if self.balance_params is not None:
            # Created just before finalizing (after the customer's balance was read), so an
            # export that stops earlier leaves nothing on the customer's balance.
            customer = self.create_params["customer"]
            out.append(
                {
                    "method": "POST",
                    "path": f"/v1/customers/{customer}/balance_transactions",
                    "idempotency_key": idempotency_key(self.invoice_id, "balance"),
                    "params": self.balance_params,
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
        if self.deliver:
            out.append(
                {
                    "method": "POST",
                    "path": f"/v1/invoices/{draft}/send",
                    "idempotency_key": idempotency_key(self.invoice_id, "send"),
                    "params": {},
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


def _stripe_line(
    line: ExportLine, amount: int, currency: str, product: str, invoice_id: str
) -> dict[str, Any]:
    """One add_lines line; `amount` is the line's amount in Stripe's minor units."""
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
    if amount < 0:
        # Stripe prices cannot be negative: credits and discounts are amount lines; the mapped
        # product is kept in metadata so accounting can still tell them apart.
        metadata["billbridge_product"] = product
        params["amount"] = amount
        params["discountable"] = False
        return params
    quantity, unit = _quantity_and_unit(
        line.quantity, amount, stripe_currencies.unit_amount_step(currency)
    )
    params["price_data"] = {
        "currency": currency,
        "product": product,
        "unit_amount_decimal": _decimal_text(unit),
    }
    params["quantity_decimal"] = _decimal_text(quantity)
    return params


def _quantity_and_unit(
    quantity: Decimal, amount_minor: int, unit_step: int = 1
) -> tuple[Decimal, Decimal]:
    """A (quantity, unit amount) whose product Stripe rounds to exactly `amount_minor`.

    The billing quantity is kept when a 12-decimal unit amount reproduces the line amount under
    any rounding rule (error below half a minor unit); otherwise the line is 1 x its amount and
    the real quantity stays in the description and metadata. Where Stripe wants unit amounts in
    multiples of `unit_step` (ISK, UGX: whole units), the unit must be one and reproduce the
    amount exactly. Either way the quantity must fit quantity_decimal's 12 decimals.
    """
    whole = Decimal(1), Decimal(amount_minor)
    try:
        # A quantity too large to carry 12 decimals in the default context (28 digits, e.g.
        # 10**16 bytes) raises InvalidOperation here: it is not split either.
        if quantity <= 0 or quantity != quantity.quantize(DECIMAL_PLACES):
            return whole
        if unit_step > 1:
            unit = Decimal(amount_minor) / quantity
            if (
                amount_minor % unit_step == 0
                and unit == unit.to_integral_value()
                and int(unit) % unit_step == 0
                and unit * quantity == amount_minor
            ):
                return quantity, unit
            return whole
        unit = (Decimal(amount_minor) / quantity).quantize(DECIMAL_PLACES, ROUND_HALF_UP)
    except InvalidOperation:  # a quantity or unit amount too large for 12 decimals: 1 x amount
        return whole
    if unit >= 0 and abs(unit * quantity - amount_minor) < Decimal("0.5"):
        return quantity, unit
    return whole


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


ROUNDING_LINE_REF = "billbridge-rounding"


@dataclass(frozen=True)
class _StripeAmounts:
    """A billing invoice's amounts in Stripe's minor units (stripe_currencies), checked
    against what Stripe can charge: exact, or rounded once by a line the connection allowed."""

    currency: str
    lines: tuple[int, ...]
    balance: int  # the customer balance applied (negative: a credit)
    rounding: int  # the rounding line (0: none)

    @property
    def total(self) -> int:
        return sum(self.lines) + self.rounding

    @classmethod
    def of(
        cls,
        lines: list[ExportLine],
        breakdown: InvoiceBreakdown,
        currency: str,
        *,
        allow_rounding: bool,
    ) -> _StripeAmounts:
        def units(iso_minor: int, what: str) -> int:
            amount = from_minor(iso_minor, currency)
            if allow_rounding:
                return stripe_currencies.round_to_stripe_minor(amount, currency)
            try:
                return stripe_currencies.to_stripe_minor(amount, currency)
            except stripe_currencies.StripeAmountError as err:
                raise _not_chargeable(breakdown.invoice_id, what, err) from err

        converted = tuple(units(line.amount_minor, f"line {line.ref}") for line in lines)
        balance = units(breakdown.balance_applied_minor, "the customer balance applied")
        due = sum(converted) + balance
        if not allow_rounding:
            try:
                stripe_currencies.check_chargeable(due, currency, "the amount due")
            except stripe_currencies.StripeAmountError as err:
                raise _not_chargeable(breakdown.invoice_id, "amount due", err) from err
            return cls(currency, converted, balance, 0)
        # The nearest chargeable amount due to the billing one (half away from zero).
        target = stripe_currencies.round_to_stripe_minor(
            from_minor(breakdown.amount_due_minor, currency),
            currency,
            stripe_currencies.charge_step(currency),
        )
        return cls(currency, converted, balance, target - due)

    def _major(self, units: int) -> Decimal:
        return stripe_currencies.from_stripe_minor(units, self.currency)

    def total_rounding(self, breakdown: InvoiceBreakdown) -> Decimal:
        return self._major(self.total) - from_minor(breakdown.total_minor, self.currency)

    def amount_due_rounding(self, breakdown: InvoiceBreakdown) -> Decimal:
        due = self.total + self.balance
        return self._major(due) - from_minor(breakdown.amount_due_minor, self.currency)

    def note(self, breakdown: InvoiceBreakdown) -> str:
        difference = self.total_rounding(breakdown)
        if not self.rounding and not difference and not self.amount_due_rounding(breakdown):
            return ""
        code = self.currency.upper()
        return (
            f"rounded for Stripe (stripe_rounding_line): a rounding line of "
            f"{self._major(self.rounding)} {code}; Stripe's total is "
            f"{self._major(self.total)} {code}, the billing total "
            f"{from_minor(breakdown.total_minor, self.currency)} {code} "
            f"({stripe_currencies.rule(self.currency)})"
        )


def _not_chargeable(
    invoice_id: str, what: str, err: stripe_currencies.StripeAmountError
) -> AmountNotChargeable:
    return AmountNotChargeable(
        f"invoice {invoice_id}: {what}: {err}. Nothing was sent to Stripe. Correct the invoice "
        "in the billing system, or let billbridge add a rounding line (recorded on the export): "
        "`billbridge connections set CONNECTION stripe_rounding_line=true`"
    )


def _rounding_line(amount: int, currency: str, invoice_id: str) -> dict[str, Any]:
    """An amount line (no product: nothing is sold) bringing the total to a chargeable one."""
    return {
        "amount": amount,
        "description": f"Rounding ({stripe_currencies.rule(currency)})"[:500],
        "discountable": False,
        "metadata": {
            METADATA_INVOICE: invoice_id,
            METADATA_LINE: ROUNDING_LINE_REF,
            "billbridge_kind": "rounding",
        },
    }


class StripeObjectMissing(ProviderRejected):
    """404 resource_missing: the object the URL names does not exist (or no longer does)."""

    @property
    def type_name(self) -> str:  # the retry decision of ProviderRejected: never retried
        return ProviderRejected.__name__


class StripeFailedUnderKey(ProviderUnavailable):
    """A 5xx Stripe answered with `Stripe-Should-Retry: false`: the failure is saved under the
    request's Idempotency-Key and replayed for it for about 24 hours ("including 500 errors",
    https://docs.stripe.com/idempotency), so retrying under that key is a no-op. The writes
    catch it, prove by a lookup that nothing was written, and retry under the next key
    (_key_generation). Anywhere else it is retried like any outage."""

    @property
    def type_name(self) -> str:  # the retry decision of ProviderUnavailable: retried
        return ProviderUnavailable.__name__


def _should_retry(err: stripe.StripeError) -> bool | None:
    """Stripe's own advice, `Stripe-Should-Retry: true|false`, or None without one.

    stripe-python obeys it before the status: "The API may ask us not to retry (eg; if doing so
    would be a no-op) or advise us to retry (eg; in cases of lock timeouts); we defer to that"
    (HTTPClient._should_retry, github.com/stripe/stripe-python/blob/master/stripe/
    _http_client.py). The SDK runs here with max_network_retries=0: Temporal retries, and
    translate_stripe_error carries the advice into the retry decision.
    """
    headers = err.headers or {}
    value = headers.get("Stripe-Should-Retry") or headers.get("stripe-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def translate_stripe_error(err: stripe.StripeError, doing: str) -> ExportError:
    """Decide, per Stripe error type and Stripe's Stripe-Should-Retry advice, whether a retry
    can help."""
    message = f"Stripe {doing}: {err.user_message or err}"
    if err.http_status == 404 and err.code == "resource_missing":
        # Stripe answers 404 only for the object in the URL (a missing id passed as a parameter
        # is a 400); callers that expect one to be gone catch this.
        return StripeObjectMissing(message)
    advice = _should_retry(err)
    status = err.http_status or 0
    if advice is False and status >= 500:
        return StripeFailedUnderKey(f"{message} (saved under its Idempotency-Key)")
    if advice is False and not isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderRejected(f"{message} (Stripe-Should-Retry: false)")
    if advice is True and not isinstance(err, stripe.RateLimitError):
        return ProviderUnavailable(f"{message} (Stripe-Should-Retry: true)")
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
    if status >= 500 or status in (0, 409):
        return ProviderUnavailable(message)
    return ProviderRejected(message)


def _money(currency: str) -> Any:
    """Stripe minor units -> "12.30 USD" (stripe_currencies: ISK 1805600 -> "18056 ISK")."""
    return lambda minor: (
        f"{stripe_currencies.billing_text(int(minor), currency)} {currency.upper()}"
    )


def _carried_to_balance(invoice: Any) -> int:
    """What Stripe moved to the customer's balance instead of charging it on this invoice.

    Below Stripe's minimum charge "the invoice is automatically marked paid, and we add the
    amount due to the customer's credit balance which is applied to the next invoice"
    (https://docs.stripe.com/api/invoices/object): amount_due 0, the amount in ending_balance
    (a debit, > 0). The money is still owed, on the next invoice.
    """
    ending = invoice.ending_balance or 0
    return int(ending) if invoice.amount_due == 0 and ending > 0 else 0


def _outcome_notes(invoice: Any, plan: StripePlan, balance: BalanceReading | None) -> list[str]:
    """What the finalized Stripe invoice holds that the billing invoice does not, in words.

    Stripe owes nothing to billbridge's plan once it finalized: the invoice is the outcome. Its
    amount owed is amount_due plus what it carried to the balance; the difference from the
    billing amount due is explained by what the balance held (read before finalizing, or, for
    an invoice an earlier attempt finalized, by its starting_balance).
    """
    money = _money(plan.currency)
    notes: list[str] = []
    if invoice.total != plan.total_minor:
        notes.append(
            f"DIFFERENCE: Stripe's total is {money(invoice.total)}, the billing total "
            f"{money(plan.total_minor)}"
        )
    carried_out = _carried_to_balance(invoice)
    owed = int(invoice.amount_due) + carried_out
    difference = owed - plan.amount_due_minor - (invoice.total - plan.total_minor)
    explained = 0
    if balance is not None and balance.carried:
        explained += balance.carried
        notes.append(
            f"includes {money(balance.carried)} that Stripe carried to the customer's balance "
            f"from billbridge's earlier invoice {balance.carried_from} (below Stripe's minimum "
            "charge)"
        )
    if balance is not None and balance.other:
        explained += balance.other_amount
        notes.append(
            f"includes other customer balance accepted by accept_stripe_balance "
            f"({balance.describe_other(money)})"
        )
    starting = money(int(invoice.starting_balance or 0))
    if balance is None and difference:
        # Finalized by an earlier attempt, whose reading of the balance is gone.
        notes.append(
            f"includes {money(difference)} of customer balance Stripe applied at finalization "
            f"(starting balance {starting}, finalized by an earlier attempt)"
        )
    elif difference != explained:
        notes.append(
            f"DIFFERENCE: Stripe's amount due differs by {money(difference - explained)} from "
            "what billbridge expected (the customer's balance changed while it finalized; "
            f"Stripe applied a starting balance of {starting})"
        )
    if carried_out:
        notes.append(
            f"Stripe carried {money(carried_out)} to the customer's balance (below its minimum "
            "charge); it is due on the next invoice"
        )
    if difference or invoice.total != plan.total_minor:
        notes.insert(
            0,
            f"Stripe amount due {money(owed)} vs billing {money(plan.amount_due_minor)}",
        )
    return notes


class DeadlineHTTPClient(stripe.HTTPClient):
    """The SDK's HTTP layer over httpx, every request within the deadline `_call` sets.

    The SDK's own RequestsClient takes timeouts per socket operation, which do not bound a
    request (activities/providers/deadline.py).
    """

    name = "billbridge-httpx"

    def __init__(self, api_base: str) -> None:
        super().__init__()
        # Stripe's own CA bundle, which the SDK's bundled clients verify with too.
        context = ssl.create_default_context(cafile=stripe.ca_bundle_path)
        self._http = deadline.client(api_base, verify=context)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        try:
            response = self._http.request(
                method,
                url,
                headers=dict(headers or {}),
                content=post_data,
                timeout=deadline.timeout(),
            )
        except httpx.HTTPError as err:  # timeouts, refused and dropped connections
            raise stripe.APIConnectionError(
                f"Network error talking to Stripe: {type(err).__name__}: {err}"
            ) from err
        return response.content, response.status_code, response.headers

    def close(self) -> None:
        self._http.close()


class StripeInvoiceProvider:
    name = "stripe_invoice"

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        options: ConnectionSettings | None = None,
        connection_id: str = name,
        gates: GateFactory | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.options = options or ConnectionSettings()
        self._test_mode = api_key.startswith(("sk_test_", "rk_test_"))
        # Retries belong to Temporal (visible, durable, honouring Retry-After), not to the SDK.
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            max_network_retries=0,
            http_client=DeadlineHTTPClient(self.api_base),
        )
        # One provider serves every activity thread of a worker; each push counts its own calls.
        self._calls = threading.local()
        # Test keys meet the sandbox limit, live keys the live one. Without the store's gates,
        # one pacer per account (its key, hashed: the registry outlives the provider).
        limit = TEST_REQUESTS_PER_SECOND if self._test_mode else LIVE_REQUESTS_PER_SECOND
        account = hashlib.sha256(f"{self.api_base} {api_key}".encode()).hexdigest()
        rate = connection_rate(self.options.requests_per_second, limit)
        self.gate: RequestGate = gate_for(gates, connection_id, "Stripe", rate, ("stripe", account))
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
        api_base = settings.api_base(cls.name) or f"http://127.0.0.1:{LOCAL_EMULATOR_PORT}"
        return cls(
            config.api_key or settings.stripe_api_key,
            api_base,
            options=config.settings,
            connection_id=config.connection_id,
            gates=config.gates,
        )

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

    # -- reconcile ---------------------------------------------------------------------------

    def export_ref(self, invoice: Invoice) -> str:
        """The billing invoice id, which every invoice of an export carries in its metadata."""
        return invoice.id

    def list_exported(self, since: datetime | None) -> Iterator[ProviderInvoice]:
        """Every invoice with billbridge's metadata created at or after `since`: `GET
        /v1/invoices` with `created[gte]`, newest first, paged with `starting_after`
        (https://docs.stripe.com/api/invoices/list). Strongly consistent, unlike search. A
        draft counts (leave_as_draft exports one); a void invoice does not."""
        params: dict[str, Any] = {"limit": 100}
        if since is not None:
            params["created"] = {"gte": _unix(since)}
        listed = self._list_all(
            "listing invoices", self.client.v1.invoices.list, params=params, at_most=MAX_RECONCILED
        )
        for invoice in listed:
            ref = _metadata(invoice, METADATA_INVOICE)
            if ref is None:
                continue
            yield ProviderInvoice(
                provider_invoice_id=str(invoice.id),
                ref=ref,
                # Stripe's minor units, not ISO 4217's (ISK: two decimals at Stripe).
                total=stripe_currencies.from_stripe_minor(invoice.total, invoice.currency),
                currency=str(invoice.currency).upper(),
                status=str(invoice.status),
                created_at=datetime.fromtimestamp(invoice.created, UTC),
                active=invoice.status != "void",
            )

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
        amounts = _StripeAmounts.of(
            lines, breakdown, currency, allow_rounding=self.options.stripe_rounding_line
        )
        balance = None
        if amounts.balance:
            balance = {
                "amount": amounts.balance,
                "currency": currency,
                "description": f"Balance applied to invoice {invoice.invoice_number or invoice.id}",
                "metadata": {METADATA_INVOICE: invoice.id},
            }
        stripe_lines = [
            _stripe_line(line, amount, currency, items[line.mapping_key], invoice.id)
            for line, amount in zip(lines, amounts.lines, strict=True)
        ]
        line_amounts = list(amounts.lines)
        if amounts.rounding:
            stripe_lines.append(_rounding_line(amounts.rounding, currency, invoice.id))
            line_amounts.append(amounts.rounding)
        return StripePlan(
            provider=self.name,
            invoice_id=invoice.id,
            currency=currency,
            total_minor=amounts.total,
            amount_due_minor=amounts.total + amounts.balance,
            line_amounts_minor=line_amounts,
            create_params=create,
            lines=stripe_lines,
            balance_params=balance,
            consolidated_from=consolidated_from,
            not_before=_not_before(invoice),
            total_rounding=amounts.total_rounding(breakdown),
            amount_due_rounding=amounts.amount_due_rounding(breakdown),
            rounding_note=amounts.note(breakdown),
            deliver=self.options.collection_method == "send_invoice"
            and self.options.send_email
            and not self.options.leave_as_draft,
        )

    # -- push (I/O, idempotent) ------------------------------------------------------------------

    def push(self, plan: Plan, context: PushContext) -> PushResult:
        assert isinstance(plan, StripePlan)
        self._calls.count = 0
        self._calls.heartbeat = context.heartbeat
        try:
            return self._push(plan, context)
        finally:
            self._calls.heartbeat = None

    def _push(self, plan: StripePlan, context: PushContext) -> PushResult:
        invoices = self.client.v1.invoices
        draft, fresh = self._draft(plan, context)
        balance: BalanceReading | None = None
        if draft.status == "draft":
            context.remember_external_id(draft.id)
            try:
                updated = self._add_missing_lines(plan, draft, fresh=fresh)
                draft = updated or self._call("reading the draft", invoices.retrieve, draft.id)
                if draft.total != plan.total_minor:
                    self._withdraw_balance(plan)
                    raise TotalMismatch(
                        f"Stripe draft {draft.id} totals {draft.total}, billing total is "
                        f"{plan.total_minor} minor units; the draft is left unfinalized"
                    )
                if self.options.leave_as_draft:
                    return self._result(draft, plan, note=self._left_as_draft(plan))
                balance = self._read_balance(plan)
                self._check_balance(plan, balance)
                self._apply_balance(plan, balance)
                # Stored before the request: should it execute and its answer be lost, a later
                # attempt must know this invoice may have been issued.
                context.remember_issued(draft.id, self._invoice_url(draft.id))
                draft = self._finalize(plan, draft)
            except StripeObjectMissing as err:
                # Deleted while we built it: nothing was issued (finalizing a missing draft
                # fails). The next attempt finds it gone and starts over; the balance
                # transaction, if one was made, is found and reused then.
                raise ProviderUnavailable(
                    f"Stripe draft {draft.id} of invoice {plan.invoice_id} disappeared while it "
                    f"was being built ({err}); the next attempt starts over"
                ) from err
        else:
            context.remember_issued(
                draft.id, draft.hosted_invoice_url or self._invoice_url(draft.id)
            )
        if draft.status in ("void", "uncollectible"):
            raise ProviderRejected(
                f"Stripe invoice {draft.id} for {plan.invoice_id} is {draft.status}"
            )
        # From here on the invoice is issued and Stripe owns it: whatever it holds is the
        # export's outcome, never a failure; differences are recorded in the note.
        notes = _outcome_notes(draft, plan, balance)
        notes.append(self._deliver(plan, draft))
        return self._result(draft, plan, note="; ".join(n for n in notes if n))

    def _finalize(self, plan: StripePlan, draft: Any) -> Any:
        """Finalize; an export that stops here for good takes its balance transaction back."""
        try:
            return self._write(
                "finalizing the invoice",
                self.client.v1.invoices.finalize_invoice,
                draft.id,
                key=_draft_key(plan, draft, "finalize"),
                # A 500 Stripe keeps under the key: the invoice's status says whether it was
                # finalized all the same.
                written=lambda: (
                    self._call(
                        "reading the invoice", self.client.v1.invoices.retrieve, draft.id
                    ).status
                    != "draft"
                ),
                # With charge_automatically, auto_advance lets Stripe collect the payment. With
                # send_invoice billbridge sends the e-mail itself (_deliver), exactly once:
                # auto_advance would also have Stripe e-mail it "depending on your settings"
                # (https://docs.stripe.com/invoicing/integration/automatic-advancement-
                # collection), a second e-mail or none.
                params={"auto_advance": self.options.collection_method == "charge_automatically"},
            )
        except ExportError as err:
            if not err.retryable and not isinstance(err, StripeObjectMissing):
                self._withdraw_balance(plan)
            raise

    def _deliver(self, plan: StripePlan, invoice: Any) -> str:
        """Have Stripe e-mail a finalized send_invoice invoice to the customer; what was done.

        POST /v1/invoices/{id}/send (https://docs.stripe.com/api/invoices/send). Not for a paid
        invoice (below the minimum charge, or paid by the balance): "Automatic advancement and
        collection never occur on invoices that are marked uncollectible, void, or paid"
        (https://docs.stripe.com/invoicing/integration/automatic-advancement-collection), and
        its e-mail would bear "no reference to the payment" (the send docs). The idempotency
        key makes a retry within Stripe's 24 hours send nothing twice.
        """
        if not plan.deliver:
            if self.options.collection_method == "send_invoice":
                return "not e-mailed (send_email is off)"
            return ""
        if invoice.status != "open":
            return f"not e-mailed: Stripe marked it {invoice.status}"
        self._call(
            "sending the invoice",
            self.client.v1.invoices.send_invoice,
            invoice.id,
            options={"idempotency_key": _draft_key(plan, invoice, "send")},
        )
        # The note crosses Temporal's history: no customer e-mail address in it.
        return "e-mailed to the customer by Stripe"

    def _left_as_draft(self, plan: StripePlan) -> str:
        """leave_as_draft: nothing of the balance is left on the customer (Stripe would apply
        it to whatever invoice it finalizes next); the note says what to add when finalizing."""
        self._withdraw_balance(plan)
        note = "left as a draft (leave_as_draft)"
        if plan.balance_params is not None:
            amount = stripe_currencies.billing_text(
                int(plan.balance_params["amount"]), plan.currency
            )
            note += (
                f"; the billing invoice applied a customer balance of {amount} "
                f"{plan.currency.upper()}: add it to the Stripe customer's balance before "
                "finalizing the draft"
            )
        return note

    def _result(self, invoice: Any, plan: StripePlan, *, note: str) -> PushResult:
        if plan.rounding_note:
            note = f"{note}; {plan.rounding_note}" if note else plan.rounding_note
        return PushResult(
            external_id=invoice.id,
            external_url=invoice.hosted_invoice_url or "",
            provider_total=stripe_currencies.billing_text(invoice.total, plan.currency),
            provider_amount_due=stripe_currencies.billing_text(invoice.amount_due, plan.currency),
            provider_line_count=len(plan.lines),
            request_count=self.request_count,
            consolidated=bool(plan.consolidated_from),
            note=note,
        )

    # -- the customer's balance ------------------------------------------------------------------

    def _read_balance(self, plan: StripePlan) -> BalanceReading:
        """The customer's balance, split into what billbridge expects and what it does not."""
        customer_id = plan.create_params["customer"]
        customer = self._call(
            "reading the customer's balance", self.client.v1.customers.retrieve, customer_id
        )
        if getattr(customer, "deleted", False):
            raise ProviderCustomerMissing(
                f"Stripe customer {customer_id!r} was deleted while invoice {plan.invoice_id} "
                "was being exported"
            )
        balance = int(customer.balance or 0)
        if not balance and plan.balance_params is None:
            # Nothing on the balance, and no transaction of this export to find or make: the
            # ledger need not be read.
            return BalanceReading(customer_balance=0)
        if customer.currency not in (None, plan.currency):
            # "The credit balance is in the customer's currency"
            # (https://docs.stripe.com/billing/customer/balance): one in another currency does
            # not apply to this invoice. UNCONFIRMED for multi-currency customers
            # (invoice_credit_balance per currency).
            balance = 0
        invoices = self.client.v1.invoices
        return read_ledger(
            balance,
            self._list_all(
                "reading balance transactions",
                self.client.v1.customers.balance_transactions.list,
                customer_id,
                params={"limit": 100},
                at_most=MAX_LISTED,
            ),
            invoice_id=plan.invoice_id,
            metadata_key=METADATA_INVOICE,
            not_before=plan.not_before,
            now=time.time(),
            finalized_invoice=lambda invoice_id: self._call(
                "reading an earlier invoice", invoices.retrieve, invoice_id
            ),
        )

    def _check_balance(self, plan: StripePlan, balance: BalanceReading) -> None:
        """Finalize only when Stripe's amount due will be the billing one, plus what billbridge
        expects (its own earlier invoices' carried debits) or what the connection accepts."""
        if balance.other_exports:
            waiting = ", ".join(sorted(balance.other_exports))
            raise ProviderUnavailable(
                f"another export for the same Stripe customer (invoice {waiting}) has put its "
                "balance on the customer and not finalized yet; Stripe applies the whole "
                "balance to whichever invoice it finalizes first, so this one waits"
            )
        if balance.other and not self.options.accept_stripe_balance:
            self._withdraw_balance(plan, balance)
            money = _money(plan.currency)
            raise ProviderBalanceUnexpected(
                f"Stripe customer {plan.create_params['customer']} has a balance of "
                f"{money(balance.customer_balance - balance.own_pending)} that billbridge did "
                f"not put there ({balance.describe_other(money)}); Stripe applies the whole "
                "balance at finalization, so the amount due would not be the billing "
                f"{money(plan.amount_due_minor)}. Settle the balance in Stripe, or accept it "
                "with `billbridge connections set <connection> accept_stripe_balance=true`, "
                "then `billbridge attention retry`"
            )

    def _apply_balance(self, plan: StripePlan, balance: BalanceReading) -> None:
        """Create this invoice's balance transaction, just before finalizing: unless an earlier
        attempt made it already (then it is reused)."""
        if plan.balance_params is None:
            return
        missing = int(plan.balance_params["amount"]) - balance.own_total
        if not missing:
            return
        # Under its first key unless an earlier one was withdrawn: a new key then, or Stripe
        # would answer from its cache with the withdrawn transaction (for 24 hours).
        step = f"balance-after-{balance.newest_own_id}" if balance.newest_own_id else "balance"
        wanted = balance.own_total + missing
        created = self._write(
            "applying the customer balance",
            self.client.v1.customers.balance_transactions.create,
            plan.create_params["customer"],
            key=idempotency_key(plan.invoice_id, step),
            # A 500 Stripe keeps under the key: the ledger says whether it was written.
            written=lambda: self._read_balance(plan).own_total >= wanted,
            params={**plan.balance_params, "amount": missing},
        )
        balance.own_total += missing
        balance.own_pending += missing
        balance.newest_own_id = str(created.id)

    def _withdraw_balance(self, plan: StripePlan, balance: BalanceReading | None = None) -> None:
        """Take back this invoice's balance transaction not yet applied: an export that ends
        without finalizing leaves nothing on the customer's balance (Stripe would apply it to
        the next invoice it finalizes). Transactions cannot be deleted, "only undo it by
        creating a corresponding, reversing transaction" (docs.stripe.com/billing/customer/
        balance)."""
        if plan.balance_params is None:
            return
        if balance is None:
            balance = self._read_balance(plan)
        if not balance.own_pending or balance.newest_own_id is None:
            return
        self._call(
            "withdrawing the customer balance",
            self.client.v1.customers.balance_transactions.create,
            plan.create_params["customer"],
            params={
                "amount": -balance.own_pending,
                "currency": plan.currency,
                "description": f"Withdrawn: not finalized ({plan.invoice_id})",
                "metadata": {METADATA_INVOICE: plan.invoice_id},
            },
            options={
                "idempotency_key": idempotency_key(
                    plan.invoice_id, f"balance-withdraw-{balance.newest_own_id}"
                )
            },
        )
        balance.own_total -= balance.own_pending
        balance.own_pending = 0

    def _invoice_url(self, invoice_id: str) -> str:
        """Where a person finds the invoice: the Dashboard, or the emulator's API."""
        if urlsplit(self.api_base).hostname == "api.stripe.com":
            mode = "test/" if self._test_mode else ""
            return f"https://dashboard.stripe.com/{mode}invoices/{invoice_id}"
        return f"{self.api_base}/v1/invoices/{invoice_id}"

    def _draft(self, plan: StripePlan, context: PushContext) -> tuple[Any, bool]:
        """This export's Stripe invoice, and whether this attempt just created it (no lines yet).

        Found by its stored id, else among the customer's recent invoices by metadata, else
        created. Stripe deletes drafts only (DELETE /v1/invoices/{id}, docs.stripe.com/api/
        invoices/delete) and answers 404 resource_missing for them afterwards: a stored draft
        that is gone was never issued and is replaced. One an earlier attempt issued (or was
        issuing) is gone for another reason, and a person must look.
        """
        invoices = self.client.v1.invoices
        vanished: str | None = None
        if context.known_external_id:
            try:
                found = self._call(
                    "reading the invoice", invoices.retrieve, context.known_external_id
                )
            except StripeObjectMissing:
                vanished = context.known_external_id
            else:
                if _metadata(found, METADATA_INVOICE) == plan.invoice_id:
                    return found, False
        if context.may_have_written or vanished is not None:
            found = self._look_up(plan, context)
            if found is not None:
                return found, False
        if vanished is not None and context.known_external_issued:
            raise ProviderInvoiceMissing(
                f"Stripe invoice {vanished} of invoice {plan.invoice_id} was finalized (or being "
                "finalized) by an earlier attempt and no longer exists at Stripe (another "
                "account or API key? test data deleted?); billbridge will not issue a second "
                "one: find it in Stripe, then `billbridge attention retry`"
            )
        for _ in range(MAX_DRAFT_GENERATIONS):
            created = self._create_draft(plan, context, replacing=vanished)
            if not _replayed(created):
                return created, True
            # Stripe answered from its idempotency cache: the draft as it was created, which
            # may have been deleted (or finalized) since.
            try:
                return self._call("reading the draft", invoices.retrieve, created.id), False
            except StripeObjectMissing:
                vanished = created.id
        raise ProviderUnavailable(
            f"Stripe drafts for invoice {plan.invoice_id} vanished {MAX_DRAFT_GENERATIONS} times "
            "in a row as they were created; trying again later"
        )

    def _create_draft(
        self, plan: StripePlan, context: PushContext, *, replacing: str | None
    ) -> Any:
        params, step = plan.create_params, "create"
        if replacing is not None:
            # A replacement needs keys of its own: under the first ones Stripe would answer
            # from its cache with the vanished draft (for 24 hours). The vanished draft's id
            # keeps the key derived from what we store, the same on every retry, and unique
            # per generation; the metadata gives the new draft's own steps the same suffix.
            metadata = {**params["metadata"], METADATA_REPLACES: replacing}
            params, step = {**params, "metadata": metadata}, f"create-replacing-{replacing}"
        return self._write(
            "creating the draft invoice",
            self.client.v1.invoices.create,
            key=idempotency_key(plan.invoice_id, step),
            # A draft of this export at Stripe: the next attempt finds it and continues.
            written=lambda: self._look_up(plan, context) is not None,
            params=params,
        )

    def _write(
        self,
        doing: str,
        method: Any,
        *args: Any,
        key: str,
        written: Callable[[], bool],
        **kwargs: Any,
    ) -> Any:
        """One write under `key`, or under the next keys after 500s Stripe keeps.

        A StripeFailedUnderKey is replayed for its key for about a day, so retrying under that
        key would stall the export. `written` is a lookup (a read, never a write) that proves
        whether the failed request wrote anything after all: if it did not, the write goes
        again under the next key (_key_generation); if it did, the attempt ends and the next
        one continues from what Stripe holds. Every attempt walks the keys from the first.
        """
        for generation in range(MAX_KEY_GENERATIONS):
            try:
                return self._call(
                    doing,
                    method,
                    *args,
                    options={"idempotency_key": _key_generation(key, generation)},
                    **kwargs,
                )
            except StripeFailedUnderKey as err:
                if written():
                    raise ProviderUnavailable(
                        f"{err}; it was written all the same: the next attempt continues from "
                        "what Stripe holds"
                    ) from err
        raise ProviderUnavailable(
            f"Stripe {doing}: {MAX_KEY_GENERATIONS} keys in a row answered with a 500 Stripe "
            "keeps for them; trying again later"
        )

    def _look_up(self, plan: StripePlan, context: PushContext) -> Any:
        """This export's invoice among the customer's invoices created since the push began
        (with slack for clock skew); an issued one before a draft. Strongly consistent, unlike
        search."""
        since = int(context.push_started_at) - LOOKUP_SLACK_SECONDS
        params = {
            "customer": plan.create_params["customer"],
            "created": {"gte": since},
            "limit": 100,
        }
        ours = [
            candidate
            for candidate in self._list_all(
                "looking up earlier drafts",
                self.client.v1.invoices.list,
                params=params,
                at_most=MAX_LISTED,
                since=since,
            )
            if _metadata(candidate, METADATA_INVOICE) == plan.invoice_id
        ]
        issued = [candidate for candidate in ours if candidate.status != "draft"]
        return (issued or ours or [None])[0]

    def _add_missing_lines(self, plan: StripePlan, draft: Any, *, fresh: bool) -> Any:
        """Add the lines the draft lacks; returns the invoice as the last add_lines left it."""
        present = set() if fresh else self._present_line_refs(draft.id)
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
            updated = self._add_lines(plan, draft, missing, _draft_key(plan, draft, step))
        # A replayed add_lines answers with the invoice as it was then, not now.
        return updated if updated is not None and not _replayed(updated) else None

    def _add_lines(
        self, plan: StripePlan, draft: Any, lines: list[dict[str, Any]], key: str
    ) -> Any:
        """One add_lines call; after a 500 Stripe keeps for the key, the next key once the
        draft's lines prove that none of these was added (the next attempt adds only the
        missing ones otherwise)."""
        refs = {line["metadata"][METADATA_LINE] for line in lines}
        return self._write(
            "adding lines",
            self.client.v1.invoices.add_lines,
            draft.id,
            key=key,
            written=lambda: bool(refs & self._present_line_refs(draft.id)),
            params={"lines": lines},
        )

    def _present_line_refs(self, draft_id: str) -> set[str]:
        lines = self._list_all(
            "reading draft lines",
            self.client.v1.invoices.line_items.list,
            draft_id,
            params={"limit": 100},
            # Stripe holds at most this many items on one invoice.
            at_most=MAX_INVOICE_ITEMS,
        )
        return {ref for line in lines if (ref := _metadata(line, METADATA_LINE))}

    def _list_all(
        self,
        doing: str,
        method: Any,
        *args: Any,
        params: dict[str, Any],
        at_most: int,
        since: int | None = None,
    ) -> Iterator[Any]:
        """The objects of a Stripe list, page by page, each page a counted, translated call.

        Stripe lists newest first: with `since` (unix time) the listing stops at the first
        object created before it. More than `at_most` objects is an error, not an endless read.
        """
        seen = 0
        page = self._call(doing, method, *args, params=params)
        while True:
            for obj in page.data:
                if since is not None and obj.created < since:
                    return
                seen += 1
                if seen > at_most:
                    raise ProviderLimitExceeded(
                        f"Stripe {doing}: more than {at_most} objects to read; billbridge reads "
                        f"at most {at_most} here"
                    )
                yield obj
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}
            page = self._call(doing, method, *args, params=params)

    def _call(self, doing: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One Stripe request: counted, heartbeating before and after, within its deadline."""
        self._calls.count = self.request_count + 1
        heartbeat = getattr(self._calls, "heartbeat", None) or heartbeat_running_activity
        heartbeat(doing)
        self.gate.before_request(doing)
        try:
            with deadline.within(provider_request_timeout()):
                result = method(*args, **kwargs)
        except stripe.StripeError as err:
            error = translate_stripe_error(err, doing)
            if isinstance(err, stripe.RateLimitError) and err.code != "lock_timeout":
                self.gate.refused_for_rate(error)  # an object lock is not the rate limit
            raise error from err
        heartbeat(f"{doing}: answered")
        return result


def _key_generation(key: str, generation: int) -> str:
    """The key of a write's `generation`-th try after Stripe kept a 500 under each earlier one
    (StripeFailedUnderKey). Every attempt walks them from the first: each replayed 500 is
    Stripe's own record that a generation failed, so the keys follow from what Stripe stores
    and are the same on every retry; the first is the step's plain key."""
    return key if generation == 0 else f"{key}-after-500-{generation}"


def _draft_key(plan: StripePlan, draft: Any, step: str) -> str:
    """The Idempotency-Key of a step on one draft; a replacement draft's keys are its own."""
    replacing = _metadata(draft, METADATA_REPLACES)
    return idempotency_key(plan.invoice_id, f"{step}-replacing-{replacing}" if replacing else step)


def _not_before(invoice: Invoice) -> int:
    """Unix time before which no Stripe object of this export can have been created: the
    billing invoice existed before any export of it began."""
    moments = [m for m in (invoice.created_at, invoice.issued_at, invoice.invoice_date) if m]
    return _unix(min(moments, key=_unix) - BALANCE_LOOKUP_SLACK)
