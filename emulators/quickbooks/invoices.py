"""Invoice validation and rendering, with exact Decimal money.

QuickBooks keeps the lines it was sent (adding ``Id`` and ``LineNum``), drops any subtotal line
the client sent and appends its own ``SubTotalLineDetail`` line carrying the total. No tax is
computed: ``TotalAmt`` is the sum of the sales lines and ``Balance`` equals it (nothing is paid).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..decimals import decimal_text
from . import errors, values

FIRST_DOC_NUMBER = 1001  # UNCONFIRMED: where QuickBooks' automatic invoice numbering starts
MAX_DOC_NUMBER = 21
MAX_DESCRIPTION = 4000
MAX_PRIVATE_NOTE = 4000
MAX_CUSTOMER_MEMO = 1000  # UNCONFIRMED: the documented limit as remembered
HOME_CURRENCY = "USD"
CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "CAD": "Canadian Dollar",
    "EUR": "Euro",
    "GBP": "British Pound Sterling",
    "AUD": "Australian Dollar",
    "JPY": "Japanese Yen",
}
# Optional invoice fields kept verbatim (not validated).
PASSTHROUGH = (
    "BillEmail",
    "BillAddr",
    "ShipAddr",
    "SalesTermRef",
    "CustomField",
    "ClassRef",
    "DepartmentRef",
    "EmailStatus",
    "PrintStatus",
    "AllowOnlineCreditCardPayment",
    "AllowOnlineACHPayment",
)


def _line_amount(qty: Decimal, unit_price: Decimal) -> Decimal:
    return (qty * unit_price).quantize(values.CENTS, rounding=ROUND_HALF_UP)


def _sales_line(line: dict[str, Any], items: dict[str, dict[str, Any]]) -> tuple[Any, Decimal]:
    """(the line as stored, its amount) for one SalesItemLineDetail line."""
    if line.get("Amount") is None:
        raise errors.required("Amount")
    # UNCONFIRMED: negative line amounts (credits on the invoice) are accepted as long as the
    # invoice total is not negative; QuickBooks' UI allows them, the API docs are silent.
    amount = values.money(line["Amount"], "Amount")
    detail = line.get("SalesItemLineDetail")
    if detail is None:
        raise errors.required("SalesItemLineDetail")
    if not isinstance(detail, dict):
        raise errors.invalid_property("SalesItemLineDetail must be an object")
    stored = copy.deepcopy(line)
    stored["Amount"] = amount
    stored_detail = stored["SalesItemLineDetail"]
    # UNCONFIRMED: a line without ItemRef is accepted (QuickBooks may fall back to a default
    # item); the emulator stores it without one.
    item_id = values.ref_value(detail, "ItemRef")
    if item_id is not None:
        item = items.get(item_id)
        if item is None or not item["Active"]:
            why = "does not exist" if item is None else "is inactive"
            raise errors.invalid_reference("ItemRef", "Item", item_id, why)
        stored_detail["ItemRef"] = {"value": item_id, "name": item["Name"]}
    qty = values.decimal(detail["Qty"], "Qty") if detail.get("Qty") is not None else None
    unit = (
        values.decimal(detail["UnitPrice"], "UnitPrice")
        if detail.get("UnitPrice") is not None
        else None
    )
    if qty is not None and unit is not None and _line_amount(qty, unit) != amount:
        raise errors.amount_mismatch(decimal_text(amount))
    values.iso_date(detail, "ServiceDate")
    return stored, amount


def _lines(sent: Any, items: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], Decimal]:
    if not isinstance(sent, list) or not sent:
        raise errors.required("Line")
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    for line in sent:
        if not isinstance(line, dict):
            raise errors.invalid_property("each Line must be an object", "Line")
        values.string(line, "Description", max_length=MAX_DESCRIPTION)
        kind = line.get("DetailType")
        if kind is None:
            raise errors.required("DetailType")
        if kind == "SubTotalLineDetail":
            continue  # QuickBooks computes its own subtotal line
        if kind == "SalesItemLineDetail":
            stored, amount = _sales_line(line, items)
            total += amount
        elif kind == "DescriptionOnly":
            stored = copy.deepcopy(line)  # text only; its Amount (if any) is not counted
        else:
            # UNCONFIRMED: discount, group and tax lines are real QuickBooks line types that
            # the emulator does not model.
            raise errors.invalid_property(
                f"Line DetailType {kind!r} is not supported", "DetailType"
            )
        number = len(lines) + 1
        rendered = {"Id": str(number), "LineNum": number}
        rendered.update((k, v) for k, v in stored.items() if k not in ("Id", "LineNum"))
        lines.append(rendered)
    if not lines:
        raise errors.required("Line")
    return lines, total


def build(
    body: Any,
    *,
    customers: dict[str, dict[str, Any]],
    items: dict[str, dict[str, Any]],
    invoices: dict[str, dict[str, Any]],
    unique_doc_numbers: bool,
    doc_number: Callable[[], str] | None,
    today: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """The validated invoice fields (everything but Id, SyncToken and MetaData)."""
    if not isinstance(body, dict):
        raise errors.invalid_property("the request body must be a JSON Invoice object")
    if body.get("Id") is not None:
        # Not emulated: the exporter only creates invoices.
        raise errors.invalid_property("updating an invoice is not supported by the emulator", "Id")
    customer_id = values.ref_value(body, "CustomerRef")
    if customer_id is None:
        raise errors.required("CustomerRef")
    customer = customers.get(customer_id)
    if customer is None or not customer["Active"]:
        why = "does not exist" if customer is None else "is inactive"
        raise errors.invalid_reference("CustomerRef", "Customer", customer_id, why)
    lines, total = _lines(body.get("Line"), items)

    number = body.get("DocNumber")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
        body = {**body, "DocNumber": number}
    number = values.string(body, "DocNumber", max_length=MAX_DOC_NUMBER)
    if number is not None and unique_doc_numbers:
        for other in invoices.values():
            if other.get("DocNumber") == number:
                raise errors.duplicate_doc_number(number, other["Id"])
    txn_date = values.iso_date(body, "TxnDate") or (today() if today else date.today().isoformat())
    # UNCONFIRMED: without DueDate (and without sales terms) the invoice is due on its date.
    due_date = values.iso_date(body, "DueDate") or txn_date
    currency = values.ref_value(body, "CurrencyRef") or HOME_CURRENCY
    if len(currency) != 3 or not currency.isalpha():
        raise errors.business(f"CurrencyRef {currency!r} is not a currency code", "CurrencyRef")
    currency = currency.upper()
    # UNCONFIRMED: a currency other than the home currency needs multicurrency switched on
    # in the company; the emulated company behaves as if it were.
    private_note = values.string(body, "PrivateNote", max_length=MAX_PRIVATE_NOTE)
    memo = body.get("CustomerMemo")
    if memo is not None:
        if not isinstance(memo, dict):
            raise errors.invalid_property("CustomerMemo must be an object", "CustomerMemo")
        text = values.string(memo, "value", max_length=MAX_CUSTOMER_MEMO)
        memo = {"value": text or ""}
    if total < 0:
        # UNCONFIRMED: the exact code and element for a negative invoice total.
        raise errors.business("Transaction total cannot be negative")

    if number is None and doc_number is not None:
        number = doc_number()
    invoice: dict[str, Any] = {}
    if number is not None:
        invoice["DocNumber"] = number
    invoice["TxnDate"] = txn_date
    invoice["DueDate"] = due_date
    invoice["CurrencyRef"] = {"value": currency, "name": CURRENCY_NAMES.get(currency, currency)}
    if private_note is not None:
        invoice["PrivateNote"] = private_note
    if memo is not None:
        invoice["CustomerMemo"] = memo
    invoice["Line"] = [
        *lines,
        {"Amount": total, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
    ]
    invoice["TxnTaxDetail"] = {"TotalTax": Decimal(0)}
    invoice["CustomerRef"] = {"value": customer_id, "name": customer["DisplayName"]}
    invoice["LinkedTxn"] = []
    for key in PASSTHROUGH:
        if key in body:
            invoice[key] = copy.deepcopy(body[key])
    invoice["TotalAmt"] = total
    invoice["Balance"] = total
    return invoice
