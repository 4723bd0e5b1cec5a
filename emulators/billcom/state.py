"""The organization's customers, items and invoices, with BILL's create rules and list searches.

Object shapes follow https://developer.bill.com/docs/ar-customers, /docs/ar-invoices and
/reference/createinvoice; ids begin with BILL's prefixes (customer ``0cu``, invoice ``00e``,
invoice line ``00f``, item ``0ii``: https://developer.bill.com/docs/bill-generated-ids). Ids here
grow with every object, so sorting them sorts by creation. Call every method with ``lock`` held.
"""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import errors

ID_LENGTH = 20  # e.g. 00e02DTFJUMHHRGKh6zx
MAX_INVOICE_NUMBER = 100  # invoiceNumber "length <= 100" (reference: createinvoice)
DEFAULT_PAGE_SIZE = 20  # UNCONFIRMED: the default of `max`
FILTER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "sw")  # of eq ne gt gte lt lte in nin sw
CENT = Decimal("0.01")
TIME_FIELDS = frozenset({"createdTime", "updatedTime"})

# Fields a create accepts (reference pages createcustomer, createinvoice, createitem); any other
# is refused as an unknown parameter (BDC_1002).
CUSTOMER_FIELDS = frozenset(
    {
        "name", "email", "companyName", "contact", "phone", "fax", "description",
        "invoiceCurrency", "accountType", "paymentTermId", "accountNumber", "billingAddress",
        "shippingAddress",
    }
)  # fmt: skip
INVOICE_FIELDS = frozenset(
    {
        "invoiceNumber", "invoiceDate", "dueDate", "customer", "invoiceLineItems",
        "processingOptions", "payToChartOfAccountId", "classifications", "creditAmount",
        "salesTaxItemId", "enableCardPayment", "convenienceFee",
    }
)  # fmt: skip
# UNCONFIRMED: the v3 line fields besides quantity, description and price (the documented
# sample); the item reference is `classifications.itemId` or `itemId` (see Organization).
LINE_FIELDS = frozenset({"quantity", "description", "price", "classifications", "itemId"})
ITEM_FIELDS = frozenset({"name", "type", "description", "price", "percentage"})
ITEM_TYPES = ("SERVICE", "PRODUCT", "DISCOUNT", "SALES_TAX")  # UNCONFIRMED list


@dataclass
class Organization:
    """What the emulated organization allows. Every switch is a point BILL's docs leave open."""

    organization_id: str
    name: str = "billbridge BILL emulator"
    # Currencies its customers may invoice in (USD: domestic). UNCONFIRMED: which currencies an
    # organization with international AR may use; the customer's invoiceCurrency sets the
    # invoice's (https://developer.bill.com/docs/ar-customers).
    invoice_currencies: frozenset[str] = frozenset({"USD"})
    # UNCONFIRMED: whether BILL refuses a second invoice with the same number.
    unique_invoice_numbers: bool = False
    # UNCONFIRMED: where a v3 line names its item: "classifications" (`classifications.itemId`),
    # "itemId", or "either".
    item_field: str = "either"
    # UNCONFIRMED: whether a line's price may be negative (v2 took negative ratePercent lines).
    allow_negative_prices: bool = True
    # UNCONFIRMED: decimals kept of quantity and price (beyond them, values are rounded half up).
    quantity_places: int = 5
    price_places: int = 5


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise errors.invalid(f"{where} must be a number")
    return Decimal(str(value))


def _json_number(value: Decimal) -> float | int:
    """Amounts go out as JSON numbers with their decimal text (repr of a double round-trips)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _date(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise errors.invalid(f"{where} must be a yyyy-MM-dd date")
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError as exc:
        raise errors.invalid(f"{where} must be a yyyy-MM-dd date") from exc
    return value


class Store:
    def __init__(self, organization: Organization, now: Callable[[], float]) -> None:
        self.lock = threading.RLock()
        self.organization = organization
        self._now = now
        self.reset()

    def reset(self) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self._sequence = 0
        self._auto_number = 1000

    # -- helpers ----------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self._sequence += 1
        return f"{prefix}01{self._sequence:0{ID_LENGTH - len(prefix) - 2}d}"

    def _stamp(self) -> str:
        """``createdTime`` / ``updatedTime`` in the form BILL writes them."""
        return (
            datetime.fromtimestamp(self._now(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        )

    def today(self) -> str:
        return datetime.fromtimestamp(self._now(), UTC).date().isoformat()

    @staticmethod
    def _unknown_fields(body: dict[str, Any], known: frozenset[str], where: str) -> None:
        for name in body:
            if name not in known:
                raise errors.unknown_field(where, name)

    @staticmethod
    def _object(body: Any, where: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.invalid(f"{where} must be a JSON object")
        return body

    # -- customers -------------------------------------------------------------------------------

    def create_customer(self, body: Any) -> dict[str, Any]:
        body = self._object(body, "the customer")
        self._unknown_fields(body, CUSTOMER_FIELDS, "the customer")
        for name in ("name", "email"):  # required (https://developer.bill.com/docs/ar-customers)
            if not isinstance(body.get(name), str) or not body[name].strip():
                raise errors.invalid(f"customer {name} is required")
        currency = body.get("invoiceCurrency")
        if currency is not None:
            if not isinstance(currency, str) or len(currency) != 3:
                raise errors.invalid("invoiceCurrency must be a three-letter currency code")
            if currency.upper() not in self.organization.invoice_currencies:
                raise errors.BillError(
                    400,
                    errors.CURRENCY_NOT_ENABLED,
                    f"The organization does not invoice in {currency.upper()}.",
                )
        stamp = self._stamp()
        customer = {
            **copy.deepcopy(body),
            "id": self._id("0cu"),
            "archived": False,
            "createdTime": stamp,
            "updatedTime": stamp,
        }
        if currency is not None:
            customer["invoiceCurrency"] = currency.upper()
        self.customers[customer["id"]] = customer
        return copy.deepcopy(customer)

    def get(self, kind: str, object_id: str) -> dict[str, Any]:
        table = {"customer": self.customers, "item": self.items, "invoice": self.invoices}[kind]
        found = table.get(object_id)
        if found is None:
            raise errors.not_found(kind, object_id)
        return copy.deepcopy(found)

    def set_archived(self, kind: str, object_id: str, archived: bool) -> dict[str, Any]:
        """``POST /v3/{objects}/{id}/archive`` and ``/restore`` (each v3 object has both)."""
        table = {"customer": self.customers, "item": self.items, "invoice": self.invoices}[kind]
        found = table.get(object_id)
        if found is None:
            raise errors.not_found(kind, object_id)
        found["archived"] = archived
        if kind == "invoice":
            # recordStatus ACTIVE <=> archived false (https://developer.bill.com/changelog,
            # 2026-03-20 "Bills and Invoices API improvements").
            found["recordStatus"] = "INACTIVE" if archived else "ACTIVE"
        found["updatedTime"] = self._stamp()
        return copy.deepcopy(found)

    # -- items -------------------------------------------------------------------------------------

    def create_item(self, body: Any) -> dict[str, Any]:
        body = self._object(body, "the item")
        self._unknown_fields(body, ITEM_FIELDS, "the item")
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise errors.invalid("item name is required")
        kind = body.get("type", "SERVICE")
        if kind not in ITEM_TYPES:
            raise errors.invalid(f"item type must be one of {', '.join(ITEM_TYPES)}")
        stamp = self._stamp()
        item = {
            **copy.deepcopy(body),
            "id": self._id("0ii"),
            "type": kind,
            "archived": False,
            "createdTime": stamp,
            "updatedTime": stamp,
        }
        self.items[item["id"]] = item
        return copy.deepcopy(item)

    # -- invoices ----------------------------------------------------------------------------------

    def _invoice_customer(self, given: Any) -> dict[str, Any]:
        """`customer`: an existing `{id}`, or `{name, email}` to create one inline."""
        given = self._object(given, "customer")
        if "id" in given:
            customer = self.customers.get(str(given["id"]))
            if customer is None:
                raise errors.invalid(f"customer {given['id']} does not exist")
            if customer["archived"]:
                raise errors.invalid(f"customer {given['id']} is archived")
            return customer
        created = self.create_customer({k: v for k, v in given.items() if k in ("name", "email")})
        return self.customers[created["id"]]

    def _line(self, given: Any, position: int) -> dict[str, Any]:
        where = f"invoiceLineItems[{position}]"
        line = self._object(given, where)
        self._unknown_fields(line, LINE_FIELDS, where)
        org = self.organization
        if "quantity" not in line:  # "set quantity as the invoice line item quantity"
            raise errors.invalid(f"{where}.quantity is required")
        quantity = _decimal(line["quantity"], f"{where}.quantity").quantize(
            Decimal(1).scaleb(-org.quantity_places), ROUND_HALF_UP
        )
        price = _decimal(line.get("price", 0), f"{where}.price").quantize(
            Decimal(1).scaleb(-org.price_places), ROUND_HALF_UP
        )
        if price < 0 and not org.allow_negative_prices:
            raise errors.invalid(f"{where}.price must not be negative")
        out: dict[str, Any] = {
            "id": self._id("00f"),
            "quantity": _json_number(quantity),
            "price": _json_number(price),
            # UNCONFIRMED: BILL rounds quantity x price half up to cents.
            "amount": _json_number((quantity * price).quantize(CENT, ROUND_HALF_UP)),
        }
        if "description" in line:
            if not isinstance(line["description"], str):
                raise errors.invalid(f"{where}.description must be text")
            out["description"] = line["description"]
        item_id = self._item_reference(line, where)
        if item_id is not None:
            item = self.items.get(item_id)
            if item is None or item["archived"]:
                raise errors.invalid(f"{where}: item {item_id} does not exist or is archived")
            out["classifications"] = {"itemId": item_id}
        return out

    def _item_reference(self, line: dict[str, Any], where: str) -> str | None:
        allowed = self.organization.item_field
        by_classification = (line.get("classifications") or {}).get("itemId")
        by_field = line.get("itemId")
        if by_field is not None and allowed == "classifications":
            raise errors.unknown_field(where, "itemId")
        if by_classification is not None and allowed == "itemId":
            raise errors.unknown_field(where, "classifications")
        value = by_classification if by_classification is not None else by_field
        return None if value is None else str(value)

    def create_invoice(self, body: Any) -> dict[str, Any]:
        body = self._object(body, "the invoice")
        self._unknown_fields(body, INVOICE_FIELDS, "the invoice")
        if body.get("salesTaxItemId") is not None:
            raise errors.invalid("salesTaxItemId is not emulated")
        customer = self._invoice_customer(body.get("customer"))
        given_lines = body.get("invoiceLineItems")
        if not isinstance(given_lines, list) or not given_lines:
            raise errors.invalid("invoiceLineItems is required")
        currency = str(customer.get("invoiceCurrency") or "USD")
        if currency not in self.organization.invoice_currencies:
            raise errors.BillError(
                400,
                errors.CURRENCY_NOT_ENABLED,
                f"The organization does not invoice in {currency}.",
            )
        number = body.get("invoiceNumber")
        if number is None:  # "If you do not set this field, invoiceNumber is auto-generated."
            self._auto_number += 1
            number = str(self._auto_number)
        if not isinstance(number, str) or not number or len(number) > MAX_INVOICE_NUMBER:
            raise errors.invalid(f"invoiceNumber must be 1 to {MAX_INVOICE_NUMBER} characters")
        if self.organization.unique_invoice_numbers and any(
            i["invoiceNumber"] == number and not i["archived"] for i in self.invoices.values()
        ):
            raise errors.BillError(
                400, errors.DUPLICATE_NUMBER, f"Invoice number {number} already exists."
            )
        # Unset dates are the day of the create (reference: createinvoice).
        invoice_date = _date(body.get("invoiceDate", self.today()), "invoiceDate")
        due_date = _date(body.get("dueDate", self.today()), "dueDate")
        options = body.get("processingOptions") or {}
        if not isinstance(options, dict) or not isinstance(options.get("sendEmail", False), bool):
            raise errors.invalid("processingOptions.sendEmail must be true or false")
        lines = [self._line(line, n) for n, line in enumerate(given_lines)]
        total = sum((Decimal(str(line["amount"])) for line in lines), Decimal(0))
        stamp = self._stamp()
        invoice = {
            "id": self._id("00e"),
            "invoiceNumber": number,
            "invoiceDate": invoice_date,
            "dueDate": due_date,
            "customerId": customer["id"],
            "customer": {
                "id": customer["id"],
                "name": customer["name"],
                "email": customer["email"],
            },
            "invoiceLineItems": lines,
            "totalAmount": _json_number(total),
            "dueAmount": _json_number(total),  # UNCONFIRMED field name
            "archived": False,
            "recordStatus": "ACTIVE",
            "createdTime": stamp,
            "updatedTime": stamp,
            "emailed": bool(options.get("sendEmail", False)),  # UNCONFIRMED field
        }
        self.invoices[invoice["id"]] = invoice
        return copy.deepcopy(invoice)

    # -- lists ----------------------------------------------------------------------------------

    def search(self, kind: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET /v3/{objects}?filters=field:op:value,...&max=&page=``
        (https://developer.bill.com/docs/search-op-with-lists): ``{"results", "nextPage"}``,
        oldest first (UNCONFIRMED: the default order)."""
        table = {"customer": self.customers, "item": self.items, "invoice": self.invoices}[kind]
        rows = sorted(table.values(), key=lambda row: row["id"])
        for field, op, value in _filters(params.get("filters", "")):
            rows = [row for row in rows if _matches(row.get(field), op, value, field)]
        size = _page_size(params.get("max"))
        start = _page_start(params.get("page"))
        page = rows[start : start + size]
        out: dict[str, Any] = {"results": copy.deepcopy(page)}
        if start + size < len(rows):
            out["nextPage"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return out


def _split_filters(text: str) -> list[str]:
    """The comma-separated filters; a comma inside a double-quoted value is the value's
    (`invoiceCurrency:in:"USD,CAD"` is one filter in BILL's own examples)."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part]


def _filters(text: str) -> list[tuple[str, str, str]]:
    """Comma-separated ``field:op:value``; values are not escaped, so a value keeps whatever
    follows the second colon. A double-quoted value is taken without its quotes, as BILL's
    examples write date-times and text (``createdTime:gte:"2025-09-01T00:00:00.000Z"``)."""
    found = []
    for part in _split_filters(text):
        field, _, rest = part.partition(":")
        op, _, value = rest.partition(":")
        if not field or op not in FILTER_OPS:
            if op in ("in", "nin"):
                raise errors.invalid(f"filter operator {op} is not emulated")
            raise errors.invalid(f"invalid filter {part!r}: expected field:op:value")
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        if field in TIME_FIELDS and _instant(value) is None:
            raise errors.invalid(f"{field}: {value!r} is not an ISO 8601 date-time")
        found.append((field, op, value))
    return found


def _instant(text: str) -> datetime | None:
    """A createdTime/updatedTime value: an ISO 8601 date-time in one of the forms BILL lists
    (https://developer.bill.com/docs/search-op-with-lists: yyyy-MM-dd'T'HH:mm:ss.SSSX down to
    yyyy-MM-dd); without an offset, UTC (UNCONFIRMED)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _matches(actual: Any, op: str, value: str, field: str = "") -> bool:
    """Text comparison of the field's JSON value (true/false for booleans); createdTime and
    updatedTime compare as instants.

    UNCONFIRMED: whether eq on text is case-sensitive (compared case-folded here, so e-mail
    addresses match whatever their case) and how numbers compare (as text here)."""
    if actual is None:
        text = ""
    elif isinstance(actual, bool):
        text = "true" if actual else "false"
    else:
        text = str(actual)
    if field in TIME_FIELDS and op != "sw":
        moment, bound = _instant(text), _instant(value)
        if moment is None or bound is None:
            return False
        return _compared(op, (moment > bound) - (moment < bound))
    text, value = text.casefold(), value.casefold()
    if op == "sw":
        return text.startswith(value)
    return _compared(op, (text > value) - (text < value))


def _compared(op: str, comparison: int) -> bool:
    return {
        "eq": comparison == 0,
        "ne": comparison != 0,
        "gt": comparison > 0,
        "gte": comparison >= 0,
        "lt": comparison < 0,
        "lte": comparison <= 0,
    }[op]


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError as exc:
        raise errors.invalid("max must be a number from 1 to 100") from exc
    if not 1 <= size <= 100:  # "max" is 1-100
        raise errors.invalid("max must be a number from 1 to 100")
    return size


def _page_start(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError as exc:
        raise errors.invalid("page is not a page this list returned") from exc
