"""Pydantic v2 models of the Orb objects billbridge consumes.

The shapes follow Orb's API as published in the official SDK (``orb-billing``,
``orb/types/shared/invoice.py`` and ``orb/types/customer.py``); field names are Orb's.
Differences from the SDK models, all deliberate:

* money (Orb sends amounts as strings such as ``"12.30"``) is parsed into
  :class:`~decimal.Decimal` and serialized back as a fixed-point string in JSON mode;
* quantities and percentages (JSON numbers in Orb's payloads) are Decimals too, serialized
  back as JSON numbers;
* only the fields billbridge needs are required; everything else Orb sends is optional, and
  fields we do not model at all are kept verbatim (``extra="allow"``) so a stored invoice
  round-trips through ``model_dump(mode="json")`` without loss;
* :class:`Invoice` keeps its currency as the upper-case code (``" usd "`` becomes ``"USD"``),
  checks that it is a known ISO-4217 code and that every money amount is exactly
  representable in that currency's minor unit (``"10.50"`` is not a JPY amount), and that
  line item ids are unique. Errors carry the precise location, e.g. ``line_items.3.amount``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from billbridge.core.money import (
    ISO_4217_EXPONENTS,
    UnknownCurrencyError,
    is_representable,
    minor_unit_exponent,
)

__all__ = [
    "EXPORTABLE_PROVIDERS",
    "PAYMENT_PROVIDERS",
    "Address",
    "Customer",
    "CustomerBalanceTransaction",
    "CustomerRef",
    "Invoice",
    "InvoiceIssuedWebhook",
    "InvoiceLevelDiscount",
    "Item",
    "LineAdjustment",
    "LineItem",
    "Maximum",
    "Minimum",
    "Money",
    "OrbModel",
    "PaymentProvider",
    "Price",
    "Quantity",
    "TaxAmount",
    "format_validation_error",
    "invoice_json_schema",
    "parse_invoice_payload",
]


# --------------------------------------------------------------------------- scalar types


def _decimal_to_str(value: Decimal) -> str:
    return format(value, "f")


def _decimal_to_number(value: Decimal) -> int | float:
    if value == value.to_integral_value() and int(value.as_tuple().exponent) >= 0:
        return int(value)
    return float(value)


DECIMAL_TEXT_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
"""What a decimal sent as a string must look like: Orb's ``"12.30"``. Stricter than Python's
Decimal (no ``1_000``, exponents, spaces or non-ASCII digits), so that the published schema
(``billbridge schema invoice``) and the door refuse exactly the same strings."""


def _check_decimal_text(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(DECIMAL_TEXT_PATTERN, value):
        raise PydanticCustomError(
            "decimal_text",
            "'{value}' is not a decimal number written like 12.30",
            {"value": value[:40]},
        )
    return value


_DECIMAL_TEXT = {"type": "string", "pattern": DECIMAL_TEXT_PATTERN}

Money: TypeAlias = Annotated[
    Decimal,
    BeforeValidator(_check_decimal_text),
    PlainSerializer(_decimal_to_str, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "number"}, _DECIMAL_TEXT]}, mode="validation"),
    WithJsonSchema(_DECIMAL_TEXT, mode="serialization"),
]
"""An amount in major units; Orb sends it as a string, we serialize it back as one."""

Quantity: TypeAlias = Annotated[
    Decimal,
    BeforeValidator(_check_decimal_text),
    PlainSerializer(_decimal_to_number, return_type=float, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "number"}, _DECIMAL_TEXT]}, mode="validation"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""A quantity/percentage/rate; Orb sends a JSON number, we serialize it back as one."""

PaymentProvider: TypeAlias = Literal[
    "stripe_invoice", "quickbooks", "bill.com", "netsuite", "stripe_charge", "stripe", "adyen"
]
PAYMENT_PROVIDERS: frozenset[str] = frozenset(get_args(PaymentProvider))

EXPORTABLE_PROVIDERS: frozenset[str] = frozenset(
    {"stripe_invoice", "quickbooks", "bill.com", "netsuite"}
)
"""Orb's invoicing-provider integrations ("invoicing via external integration")."""


class OrbModel(BaseModel):
    """Base of every Orb object: unknown fields are kept (and dumped back), not rejected."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- nested objects


class CustomerRef(OrbModel):
    """Orb's ``CustomerMinified``, as embedded in an invoice."""

    id: str
    external_customer_id: str | None = None


class Item(OrbModel):
    """Orb's ``ItemSlim``: the sellable item a price bills for (what providers map)."""

    id: str
    name: str


class Price(OrbModel):
    """The price a line was billed with. Orb's Price is a union of ~30 pricing models
    (``model_type``); billbridge only needs the id and the item, the rest is kept raw."""

    id: str
    item: Item
    name: str | None = None
    currency: str | None = None
    external_price_id: str | None = None
    price_type: str | None = None


class LineAdjustment(OrbModel):
    """One adjustment applied to a line (``usage_discount``, ``amount_discount``,
    ``percentage_discount``, ``tiered_percentage_discount``, ``minimum``, ``maximum``).

    ``amount`` is the value the adjustment applied to the line; billbridge reads it as the
    signed effect on the line (discounts/maximums negative, minimums positive), so
    ``adjusted_subtotal == subtotal + sum(adjustment.amount)``.
    """

    id: str
    adjustment_type: str
    amount: Money
    applies_to_price_ids: list[str] = Field(default_factory=list)
    is_invoice_level: bool = False
    reason: str | None = None


class TaxAmount(OrbModel):
    amount: Money
    tax_rate_description: str
    tax_rate_percentage: str | None = None
    tax_reason: str | None = None


class LineItem(OrbModel):
    """Orb's invoice ``LineItem``."""

    id: str
    name: str
    quantity: Quantity
    amount: Money
    """Final amount after adjustments, prepaid credits and partial invoicing."""
    subtotal: Money
    """Line amount before any adjustments."""
    adjusted_subtotal: Money | None = None
    """After adjustments, before credits and partial invoicing. Missing -> ``subtotal``
    (filled in at validation, so it is never ``None`` on a validated line)."""
    credits_applied: Money = Decimal(0)
    partially_invoiced_amount: Money = Decimal(0)
    start_date: datetime
    end_date: datetime
    price: Price
    adjustments: list[LineAdjustment] = Field(default_factory=list)
    tax_amounts: list[TaxAmount] = Field(default_factory=list)
    sub_line_items: list[dict[str, Any]] = Field(default_factory=list)
    filter: str | None = None
    grouping: str | None = None
    usage_customer_ids: list[str] | None = None

    @model_validator(mode="after")
    def _default_adjusted_subtotal(self) -> LineItem:
        if self.adjusted_subtotal is None:
            self.adjusted_subtotal = self.subtotal
        return self

    @property
    def effective_adjusted_subtotal(self) -> Decimal:
        """``adjusted_subtotal``, or ``subtotal`` when Orb did not send one."""
        return self.subtotal if self.adjusted_subtotal is None else self.adjusted_subtotal

    @property
    def tax_total(self) -> Decimal:
        return sum((t.amount for t in self.tax_amounts), Decimal(0))


class CustomerBalanceTransaction(OrbModel):
    """An entry of the customer's balance ledger attached to the invoice.

    For ``action == "applied_to_invoice"`` billbridge reads ``amount`` as the (negative)
    amount of customer credit applied, so ``amount_due == total + sum(amount)``.
    """

    id: str
    action: str
    amount: Money
    created_at: datetime | None = None
    description: str | None = None
    starting_balance: Money | None = None
    ending_balance: Money | None = None
    type: str | None = None
    invoice: dict[str, Any] | None = None
    credit_note: dict[str, Any] | None = None


class Minimum(OrbModel):
    minimum_amount: Money
    applies_to_price_ids: list[str] = Field(default_factory=list)
    filters: list[dict[str, Any]] = Field(default_factory=list)


class Maximum(OrbModel):
    maximum_amount: Money
    applies_to_price_ids: list[str] = Field(default_factory=list)
    filters: list[dict[str, Any]] = Field(default_factory=list)


class InvoiceLevelDiscount(OrbModel):
    """Orb's ``InvoiceLevelDiscount`` union (``percentage``, ``amount``, ``trial``,
    ``tiered_percentage``), flattened: the fields of the other variants are kept raw."""

    discount_type: str
    amount_discount: Money | None = None
    percentage_discount: Quantity | None = None
    applies_to_price_ids: list[str] | None = None
    reason: str | None = None


class Address(OrbModel):
    city: str | None = None
    country: str | None = None
    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    state: str | None = None


# --------------------------------------------------------------------------- invoice


InvoiceStatus: TypeAlias = Literal["issued", "paid", "synced", "void", "draft"]


class Invoice(OrbModel):
    """Orb's ``Invoice`` (the ``invoice`` of an ``invoice.issued`` webhook)."""

    id: str
    invoice_number: str
    customer: CustomerRef
    currency: str
    invoice_date: datetime
    due_date: datetime | None = None
    status: InvoiceStatus
    subtotal: Money
    """Total before any (invoice-level) discounts and minimums."""
    total: Money
    """Total after minimums and discounts (and tax)."""
    amount_due: Money
    """``total`` after applying the customer balance: what the customer is asked to pay."""
    memo: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    line_items: list[LineItem]
    discounts: list[InvoiceLevelDiscount] = Field(default_factory=list)
    discount: Any = None
    """Deprecated by Orb in favour of ``discounts`` (first discount or null)."""
    minimum: Minimum | None = None
    maximum: Maximum | None = None
    minimum_amount: Money | None = None
    maximum_amount: Money | None = None
    customer_balance_transactions: list[CustomerBalanceTransaction] = Field(default_factory=list)
    # ---- the rest of Orb's Invoice, optional for billbridge
    created_at: datetime | None = None
    issued_at: datetime | None = None
    invoice_source: str | None = None
    hidden_line_item_count: int | None = None
    will_auto_issue: bool | None = None
    auto_collection: dict[str, Any] | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    customer_tax_id: dict[str, Any] | None = None
    credit_notes: list[dict[str, Any]] = Field(default_factory=list)
    payment_attempts: list[dict[str, Any]] = Field(default_factory=list)
    subscription: dict[str, Any] | None = None
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None
    eligible_to_issue_at: datetime | None = None
    scheduled_issue_at: datetime | None = None
    issue_failed_at: datetime | None = None
    paid_at: datetime | None = None
    payment_failed_at: datetime | None = None
    payment_received_at: datetime | None = None
    payment_started_at: datetime | None = None
    sync_failed_at: datetime | None = None
    voided_at: datetime | None = None

    @field_validator("currency", mode="before")
    @classmethod
    def _currency_code(cls, value: Any) -> Any:
        # The code as providers must receive it: money rules read codes in any case and
        # spacing (core/money.py), but Stripe was sent " usd " as it came. An unknown code
        # is left as sent, for its refusal to show.
        if isinstance(value, str) and value.strip().upper() in ISO_4217_EXPONENTS:
            return value.strip().upper()
        return value

    @model_validator(mode="after")
    def _check_amounts_and_lines(self) -> Invoice:
        errors = list(self._validation_problems())
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _validation_problems(self) -> Iterator[InitErrorDetails]:
        try:
            minor_unit_exponent(self.currency)
        except UnknownCurrencyError:
            yield InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_currency",
                    "unknown currency '{currency}': not an ISO-4217 code with a minor unit",
                    {"currency": self.currency},
                ),
                loc=("currency",),
                input=self.currency,
            )
        else:
            yield from self._money_problems()
        yield from self._duplicate_line_ids()

    def _money_fields(self) -> Iterator[tuple[tuple[str | int, ...], Decimal]]:
        yield ("subtotal",), self.subtotal
        yield ("total",), self.total
        yield ("amount_due",), self.amount_due
        for i, line in enumerate(self.line_items):
            base: tuple[str | int, ...] = ("line_items", i)
            yield (*base, "amount"), line.amount
            yield (*base, "subtotal"), line.subtotal
            if line.adjusted_subtotal is not None:
                yield (*base, "adjusted_subtotal"), line.adjusted_subtotal
            yield (*base, "credits_applied"), line.credits_applied
            yield (*base, "partially_invoiced_amount"), line.partially_invoiced_amount
            for j, adjustment in enumerate(line.adjustments):
                yield (*base, "adjustments", j, "amount"), adjustment.amount
            for k, tax in enumerate(line.tax_amounts):
                yield (*base, "tax_amounts", k, "amount"), tax.amount
        for n, txn in enumerate(self.customer_balance_transactions):
            yield ("customer_balance_transactions", n, "amount"), txn.amount

    def _money_problems(self) -> Iterator[InitErrorDetails]:
        currency = self.currency.strip().upper()
        exponent = minor_unit_exponent(currency)
        allowed = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        for loc, amount in self._money_fields():
            if not is_representable(amount, currency):
                yield InitErrorDetails(
                    type=PydanticCustomError(
                        "inexact_amount",
                        "amount {amount} is not representable in {currency}: "
                        "{currency} allows {allowed}",
                        {
                            "amount": _decimal_to_str(amount),
                            "currency": currency,
                            "allowed": allowed,
                        },
                    ),
                    loc=loc,
                    input=_decimal_to_str(amount),
                )

    def _duplicate_line_ids(self) -> Iterator[InitErrorDetails]:
        first_seen: dict[str, int] = {}
        for i, line in enumerate(self.line_items):
            previous = first_seen.setdefault(line.id, i)
            if previous != i:
                yield InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_line_id",
                        "duplicate line item id '{line_id}' (already used by line_items.{first})",
                        {"line_id": line.id, "first": previous},
                    ),
                    loc=("line_items", i, "id"),
                    input=line.id,
                )

    # ---- conveniences
    @property
    def exponent(self) -> int:
        """Minor-unit exponent of the invoice currency."""
        return minor_unit_exponent(self.currency)

    @property
    def balance_applied(self) -> Decimal:
        """Sum of ``applied_to_invoice`` customer balance transactions (<= 0 normally)."""
        return sum(
            (
                t.amount
                for t in self.customer_balance_transactions
                if t.action == "applied_to_invoice"
            ),
            Decimal(0),
        )


class InvoiceIssuedWebhook(OrbModel):
    """The ``invoice.issued`` webhook envelope (``InvoiceIssuedWebhookEvent`` in the SDK)."""

    id: str
    created_at: datetime
    type: Literal["invoice.issued"]
    invoice: Invoice
    payload_style: str | None = None
    properties: dict[str, Any] | None = None


def parse_invoice_payload(data: Mapping[str, Any] | str | bytes) -> Invoice:
    """Parse either a bare Orb invoice or an ``invoice.issued`` webhook envelope.

    Raises :class:`pydantic.ValidationError` (locations relative to the payload given).
    """
    if isinstance(data, str | bytes):
        return _parse_any_json(data)
    if data.get("type") == "invoice.issued" and "invoice" in data:
        return InvoiceIssuedWebhook.model_validate(data).invoice
    return Invoice.model_validate(data)


def _parse_any_json(data: str | bytes) -> Invoice:
    import json

    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        return Invoice.model_validate(parsed)  # raises a ValidationError naming the problem
    return parse_invoice_payload(parsed)


# --------------------------------------------------------------------------- customer


class Customer(OrbModel):
    """Orb's ``Customer`` (``payment_provider`` decides where its invoices are exported)."""

    id: str
    external_customer_id: str | None = None
    name: str
    email: str
    currency: str | None = None
    payment_provider: PaymentProvider | None = None
    payment_provider_id: str | None = None
    additional_emails: list[str] = Field(default_factory=list)
    auto_collection: bool | None = None
    balance: Money | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    created_at: datetime | None = None
    email_delivery: bool | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    timezone: str | None = None
    tax_id: dict[str, Any] | None = None
    portal_url: str | None = None

    @property
    def exports_invoices(self) -> bool:
        """True if Orb would sync this customer's invoices to an invoicing provider."""
        return self.payment_provider in EXPORTABLE_PROVIDERS


# --------------------------------------------------------------------------- helpers


def _format_loc(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc) if loc else "<root>"


def format_validation_error(exc: ValidationError) -> str:
    """One human line per error: ``field.path: message``.

    e.g. ``line_items.0.amount: amount 10.50 is not representable in JPY: JPY allows no
    decimals``. For pydantic's own errors on scalar input the offending value is appended.
    """
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        message = err["msg"]
        value = err.get("input")
        custom = err["type"] in {
            "inexact_amount",
            "unknown_currency",
            "duplicate_line_id",
            "decimal_text",
        }
        if (
            not custom
            and err["type"] != "missing"
            and isinstance(value, str | int | float | Decimal)
            and not isinstance(value, bool)
        ):
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            message = f"{message} (got {shown})"
        lines.append(f"{_format_loc(tuple(err['loc']))}: {message}")
    return "\n".join(lines)


def invoice_json_schema() -> dict[str, Any]:
    """JSON schema of the invoice payload billbridge accepts (``billbridge schema invoice``)."""
    schema = Invoice.model_json_schema(mode="validation")
    schema.setdefault(
        "description",
        "An Orb invoice as sent in the invoice.issued webhook (unknown fields allowed).",
    )
    return schema
