"""Sales tax on an invoice: line tax codes, QuickBooks' computation and the client's overrides.

Sources:
- US: lines are taxable (``TaxCodeRef`` "TAX") or not ("NON"); one tax code for the whole
  transaction (``TxnTaxDetail.TxnTaxCodeRef``); with automated sales tax (AST) the engine picks
  the code and computes the tax, and "whenever an explicit tax amount is sent in the transaction
  request the AST engine honors the amount":
  https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-sales-tax-for-us-locales
  https://developer.intuit.com/hub/blog/2017/12/11/using-quickbooks-online-api-automated-sales-tax
- Non-US (VAT/GST): every line names a ``TaxCode``; its ``SalesTaxRateList`` gives the rates;
  ``GlobalTaxCalculation`` says whether amounts exclude tax; ``TxnTaxDetail.TaxLine`` holds the
  tax per rate (``TaxRateRef``, ``NetAmountTaxable``, ``TaxPercent``):
  https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-sales-tax-for-non-us-locales
- A line without a tax code in a non-US company is fault 6000 "Make sure all your transactions
  have a GST/HST rate before you save" (github.com/ruckus/quickbooks-ruby/issues/351).
- A ``TaxLine`` sent with an ``Amount`` for a rate keeps that amount (client libraries send
  them so: github.com/ruckus/quickbooks-ruby/issues/547, /pull/510). UNCONFIRMED: Intuit does
  not document how far an overridden amount may differ from its own computation; the emulator
  honours any amount for a rate the invoice's tax codes use, and ignores the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import errors, values
from .company import TAX_NAME, CompanySettings

US_PSEUDO_CODES = ("TAX", "NON")


@dataclass(frozen=True)
class TaxableLine:
    amount: Decimal
    tax_code: str | None  # the line's TaxCodeRef value


def _round(amount: Decimal) -> Decimal:
    return amount.quantize(values.CENTS, rounding=ROUND_HALF_UP)


def check_line_code(
    company: CompanySettings, code: str | None, tax_codes: dict[str, dict[str, Any]]
) -> None:
    """The line's TaxCodeRef fits the company's tax model."""
    if company.is_us:
        # UNCONFIRMED: a line without TaxCodeRef follows its item's Taxable flag in QuickBooks;
        # the emulator's items have none, so such a line is not taxable.
        if code is not None and code not in US_PSEUDO_CODES:
            raise errors.invalid_reference("TaxCodeRef", "TaxCode", code, "is not TAX or NON")
        return
    if code is None:
        raise errors.business(
            f"Make sure all your transactions have a {TAX_NAME[company.country]} rate before "
            "you save.",
            "TaxCodeRef",
        )
    found = tax_codes.get(code)
    if found is None or not found["Active"]:
        why = "does not exist" if found is None else "is inactive"
        raise errors.invalid_reference("TaxCodeRef", "TaxCode", code, why)


def _overrides(detail: Any) -> tuple[Decimal | None, dict[str, Decimal]]:
    """(TotalTax, TaxRateRef -> Amount) the request sent in TxnTaxDetail."""
    if detail is None:
        return None, {}
    if not isinstance(detail, dict):
        raise errors.invalid_property("TxnTaxDetail must be an object", "TxnTaxDetail")
    total = (
        values.money(detail["TotalTax"], "TotalTax") if detail.get("TotalTax") is not None else None
    )
    amounts: dict[str, Decimal] = {}
    for line in detail.get("TaxLine") or []:
        if not isinstance(line, dict) or line.get("Amount") is None:
            continue
        rate = values.ref_value(line.get("TaxLineDetail") or {}, "TaxRateRef")
        if rate is not None:
            amounts[rate] = values.money(line["Amount"], "Amount")
    return total, amounts


def _tax_line(rate: dict[str, Any], net: Decimal, amount: Decimal) -> dict[str, Any]:
    return {
        "Amount": amount,
        "DetailType": "TaxLineDetail",
        "TaxLineDetail": {
            "TaxRateRef": {"value": rate["Id"], "name": rate["Name"]},
            "PercentBased": True,
            "TaxPercent": rate["RateValue"],
            "NetAmountTaxable": net,
        },
    }


def _by_rates(
    nets: dict[str, Decimal],
    tax_codes: dict[str, dict[str, Any]],
    tax_rates: dict[str, dict[str, Any]],
    sent: dict[str, Decimal],
) -> list[dict[str, Any]]:
    """One TaxLine per sales rate of the codes used: computed, or the amount sent for it."""
    per_rate: dict[str, Decimal] = {}
    for code_id, net in nets.items():
        details = tax_codes[code_id]["SalesTaxRateList"]["TaxRateDetail"]
        for detail in details:
            rate_id = detail["TaxRateRef"]["value"]
            per_rate[rate_id] = per_rate.get(rate_id, Decimal(0)) + net
    lines = []
    for rate_id, net in per_rate.items():
        rate = tax_rates[rate_id]
        computed = _round(net * rate["RateValue"] / 100)
        lines.append(_tax_line(rate, net, sent.get(rate_id, computed)))
    return lines


def txn_tax_detail(
    company: CompanySettings,
    body: dict[str, Any],
    lines: Iterable[TaxableLine],
    tax_codes: dict[str, dict[str, Any]],
    tax_rates: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The invoice's TxnTaxDetail as QuickBooks computes it (with the request's overrides)."""
    detail = body.get("TxnTaxDetail")
    total_sent, sent = _overrides(detail)
    lines = list(lines)
    if company.is_us:
        taxable = sum((line.amount for line in lines if line.tax_code == "TAX"), Decimal(0))
        if not company.using_sales_tax or not taxable:
            return {"TotalTax": Decimal(0)}
        if company.ast:
            # The AST engine's own rate unless the request states the amount.
            rate = {
                "Id": "AST",
                "Name": "Automated sales tax",
                "RateValue": company.automated_tax_rate,
            }
            amount = (
                total_sent
                if total_sent is not None
                else _round(taxable * company.automated_tax_rate / 100)
            )
            return {"TotalTax": amount, "TaxLine": [_tax_line(rate, taxable, amount)]}
        code = values.ref_value(detail or {}, "TxnTaxCodeRef")
        if code is None:
            # UNCONFIRMED: without a transaction tax code nothing is taxed.
            return {"TotalTax": Decimal(0)}
        found = tax_codes.get(code)
        if found is None or not found["Active"]:
            why = "does not exist" if found is None else "is inactive"
            raise errors.invalid_reference("TxnTaxCodeRef", "TaxCode", code, why)
        tax_lines = _by_rates({code: taxable}, tax_codes, tax_rates, sent)
        return {
            "TxnTaxCodeRef": {"value": code, "name": found["Name"]},
            "TotalTax": sum((line["Amount"] for line in tax_lines), Decimal(0)),
            "TaxLine": tax_lines,
        }
    calculation = body.get("GlobalTaxCalculation") or "TaxExcluded"
    if calculation == "NotApplicable":
        return {"TotalTax": Decimal(0)}
    if calculation != "TaxExcluded":
        # UNCONFIRMED: TaxInclusive (amounts include tax) is real but not emulated.
        raise errors.invalid_property(
            f"GlobalTaxCalculation {calculation!r} is not supported by the emulator",
            "GlobalTaxCalculation",
        )
    nets: dict[str, Decimal] = {}
    for line in lines:
        assert line.tax_code is not None  # check_line_code refused lines without one
        nets[line.tax_code] = nets.get(line.tax_code, Decimal(0)) + line.amount
    tax_lines = _by_rates(nets, tax_codes, tax_rates, sent)
    return {
        "TotalTax": sum((line["Amount"] for line in tax_lines), Decimal(0)),
        "TaxLine": tax_lines,
    }
