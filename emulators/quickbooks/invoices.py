"""Invoice validation and rendering, with exact Decimal money.

QuickBooks keeps the lines it was sent (adding ``Id`` and ``LineNum``), drops any subtotal line
the client sent and appends its own ``SubTotalLineDetail`` line carrying the subtotal. Tax is
computed by the company's tax model (tax.py) into ``TxnTaxDetail``; ``TotalAmt`` is the subtotal
plus ``TotalTax`` and ``Balance`` equals it (nothing is paid).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..decimals import decimal_text
from . import errors, tax, values
from .company import CompanySettings

FIRST_DOC_NUMBER = 1001  # UNCONFIRMED: where QuickBooks' automatic invoice numbering starts
MAX_DOC_NUMBER = 21
MAX_DESCRIPTION = 4000
MAX_PRIVATE_NOTE = 4000
MAX_CUSTOMER_MEMO = 1000  # UNCONFIRMED: the documented limit as remembered
# UNCONFIRMED: QuickBooks keeps Qty and UnitPrice to 7 decimal places (the issue's reading; the
# Invoice reference only says "Decimal"), rounding half up what is sent with more.
QTY_PLACES = Decimal("1e-7")
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


def _kept(value: Any, element: str) -> Decimal:
    """A Qty or UnitPrice as QuickBooks keeps it (7 decimal places)."""
    return values.decimal(value, element).quantize(QTY_PLACES, rounding=ROUND_HALF_UP).normalize()


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
    qty = _kept(detail["Qty"], "Qty") if detail.get("Qty") is not None else None
    unit = _kept(detail["UnitPrice"], "UnitPrice") if detail.get("UnitPrice") is not None else None
    if qty is not None:
        stored_detail["Qty"] = qty
    if unit is not None:
        stored_detail["UnitPrice"] = unit
    # The check runs on the kept (rounded) values: a Qty with 8 decimals may no longer give the
    # Amount that was sent.
    if qty is not None and unit is not None and _line_amount(qty, unit) != amount:
        raise errors.amount_mismatch(decimal_text(amount))
    values.iso_date(detail, "ServiceDate")
    return stored, amount


def _lines(
    sent: Any,
    items: dict[str, dict[str, Any]],
    company: CompanySettings,
    tax_codes: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], Decimal, list[tax.TaxableLine]]:
    if not isinstance(sent, list) or not sent:
        raise errors.required("Line")
    lines: list[dict[str, Any]] = []
    taxable: list[tax.TaxableLine] = []
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
            code = values.ref_value(stored["SalesItemLineDetail"], "TaxCodeRef")
            tax.check_line_code(company, code, tax_codes)
            taxable.append(tax.TaxableLine(amount, code))
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
    return lines, total, taxable


def _currency(body: dict[str, Any], company: CompanySettings, customer: dict[str, Any]) -> str:
    """The invoice's currency: the home one unless multicurrency is on, and the customer's.

    Multicurrency off: only the home currency (developer.intuit.com, "Manage multiple
    currencies"). On: a customer has one currency and its transactions use it
    (blogs.intuit.com/2015/06/18/multicurrency-for-us-companies-coming-in-quickbooks-online-v87).
    UNCONFIRMED: the codes and wording of both faults.
    """
    currency = values.ref_value(body, "CurrencyRef") or company.home
    if len(currency) != 3 or not currency.isalpha():
        raise errors.business(f"CurrencyRef {currency!r} is not a currency code", "CurrencyRef")
    currency = currency.upper()
    if currency != company.home and not company.multicurrency:
        raise errors.business(
            f"Multicurrency is not enabled for this company: CurrencyRef {currency} must be the "
            f"home currency {company.home}",
            "CurrencyRef",
        )
    customer_currency = (customer.get("CurrencyRef") or {}).get("value", company.home)
    if currency != customer_currency:
        raise errors.business(
            f"The transaction currency {currency} must be the customer's currency "
            f"{customer_currency}",
            "CurrencyRef",
        )
    return currency


def build(
    body: Any,
    *,
    customers: dict[str, dict[str, Any]],
    items: dict[str, dict[str, Any]],
    invoices: dict[str, dict[str, Any]],
    company: CompanySettings,
    tax_codes: dict[str, dict[str, Any]],
    tax_rates: dict[str, dict[str, Any]],
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
    lines, subtotal, taxable = _lines(body.get("Line"), items, company, tax_codes)

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
    currency = _currency(body, company, customer)
    tax_detail = tax.txn_tax_detail(company, body, taxable, tax_codes, tax_rates)
    total = subtotal + tax_detail["TotalTax"]
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
        {"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
    ]
    if not company.is_us:
        invoice["GlobalTaxCalculation"] = body.get("GlobalTaxCalculation") or "TaxExcluded"
    invoice["TxnTaxDetail"] = tax_detail
    invoice["CustomerRef"] = {"value": customer_id, "name": customer["DisplayName"]}
    invoice["LinkedTxn"] = []
    for key in PASSTHROUGH:
        if key in body:
            invoice[key] = copy.deepcopy(body[key])
    invoice["TotalAmt"] = total
    invoice["Balance"] = total
    return invoice
