"""QuickBooks Online: the company's tax and currency settings, and where an invoice's tax goes.

QuickBooks has three tax models, told apart by CompanyInfo.Country and Preferences.TaxPrefs:

- US with automated sales tax (``PartnerTaxEnabled``): the AST engine picks the tax code and
  computes the tax on the lines marked ``TAX``, but "whenever an explicit tax amount is sent in
  the transaction request the AST engine honors the amount"
  (https://developer.intuit.com/hub/blog/2017/12/11/using-quickbooks-online-api-automated-sales-tax).
  billbridge marks lines TAX/NON and sends ``TxnTaxDetail.TotalTax`` = the billing tax.
- US without it (``UsingSalesTax``): lines are TAX/NON and one tax code applies to the whole
  transaction (``TxnTaxDetail.TxnTaxCodeRef``)
  (https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-sales-tax-for-us-locales).
  billbridge sends the mapped code and, for a code with one rate, that rate's ``TaxLine`` with
  the billing tax as its amount.
- Every other country (VAT/GST): each line names a TaxCode, ``GlobalTaxCalculation`` says the
  amounts exclude tax, and ``TxnTaxDetail.TaxLine`` holds the tax per rate
  (https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-sales-tax-for-non-us-locales);
  a line without a code is fault 6000 (github.com/ruckus/quickbooks-ruby/issues/351). billbridge
  sends the mapped code on every line and, per rate of a one-rate code, the billing tax.
  UNCONFIRMED: that QuickBooks keeps an overridden ``TaxLine`` amount whatever it differs by
  from its own computation (clients send them so: github.com/ruckus/quickbooks-ruby/issues/547).

A code with several rates (a Canadian GST + QST code) gets one amount per rate when each billing
tax amount names the percentage of exactly one of its rates; otherwise QuickBooks computes it.
The push compares QuickBooks' ``TotalTax`` and ``TotalAmt`` with the billing invoice and removes
an invoice that differs.

Tax codes come from the connection's mappings: ``tax:<tax_rate_description>``, then
``tax:<tax_rate_percentage>``, then ``tax:*``; a line without billing tax uses ``tax:none``, then
``tax:*``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from billbridge.core.breakdown import TAX_KEY_PREFIX, ExportLine, InvoiceBreakdown
from billbridge.core.errors import ProviderSetupNeeded, UnmappedItems
from billbridge.core.money import from_minor

DEFAULT_TAX_KEY = "tax:*"
NO_TAX_KEY = "tax:none"
# Where a person turns multicurrency and sales tax on (QuickBooks Online's settings).
MULTICURRENCY_SETTING = "Settings > Account and settings > Advanced > Currency > Multicurrency"
SALES_TAX_SETTING = "Taxes > Sales tax > Set up sales tax"


class TaxModel(Enum):
    AUTOMATED = "US automated sales tax"
    US_CODES = "US sales tax codes"
    GLOBAL = "VAT/GST tax codes"
    NO_SALES_TAX = "no sales tax"


@dataclass(frozen=True)
class Company:
    """What billbridge reads once per connection: CompanyInfo.Country and Preferences."""

    country: str
    home_currency: str
    multicurrency: bool
    automated_sales_tax: bool
    using_sales_tax: bool

    @classmethod
    def from_api(cls, info: dict[str, Any], preferences: dict[str, Any]) -> Company:
        """From ``CompanyInfo`` and ``Preferences`` (developer.intuit.com, Accounting API,
        Preferences: CurrencyPrefs.MultiCurrencyEnabled / HomeCurrency, TaxPrefs.UsingSalesTax
        / PartnerTaxEnabled)."""
        currency = preferences.get("CurrencyPrefs") or {}
        tax = preferences.get("TaxPrefs") or {}
        country = str(info.get("Country") or "US").upper()
        return cls(
            country=country,
            # UNCONFIRMED: a company without HomeCurrency is taken to be in US dollars.
            home_currency=str((currency.get("HomeCurrency") or {}).get("value") or "USD").upper(),
            multicurrency=bool(currency.get("MultiCurrencyEnabled", False)),
            automated_sales_tax=bool(tax.get("PartnerTaxEnabled", False)),
            using_sales_tax=bool(tax.get("UsingSalesTax", False)),
        )

    @property
    def tax_model(self) -> TaxModel:
        if self.country != "US":
            return TaxModel.GLOBAL
        if not self.using_sales_tax:
            return TaxModel.NO_SALES_TAX
        return TaxModel.AUTOMATED if self.automated_sales_tax else TaxModel.US_CODES

    def check_currency(self, invoice_id: str, currency: str) -> None:
        """Needs attention before any write: another currency with multicurrency off."""
        if currency.upper() != self.home_currency and not self.multicurrency:
            raise ProviderSetupNeeded(
                f"invoice {invoice_id} is in {currency.upper()}, but the QuickBooks company's "
                f"home currency is {self.home_currency} and multicurrency is off "
                "(Preferences.CurrencyPrefs.MultiCurrencyEnabled); turn it on in QuickBooks "
                f"({MULTICURRENCY_SETTING}), then `billbridge attention retry`"
            )


@dataclass(frozen=True)
class TaxRate:
    id: str
    name: str
    percent: Decimal


@dataclass(frozen=True)
class TaxCode:
    id: str
    name: str
    rates: tuple[TaxRate, ...]


def _percent_key(percentage: str | None) -> str:
    if not percentage:
        return ""
    try:
        return TAX_KEY_PREFIX + format(Decimal(percentage).normalize(), "f")
    except ArithmeticError:
        return TAX_KEY_PREFIX + percentage


def candidate_keys(tax_line: ExportLine | None) -> list[str]:
    """The mapping keys a line's tax code is looked up by, most specific first."""
    if tax_line is None:
        return [NO_TAX_KEY, DEFAULT_TAX_KEY]
    keys = [
        TAX_KEY_PREFIX + tax_line.tax_rate_description if tax_line.tax_rate_description else "",
        _percent_key(tax_line.tax_rate_percentage),
        DEFAULT_TAX_KEY,
    ]
    return list(dict.fromkeys(key for key in keys if key))


def has_tax(breakdown: InvoiceBreakdown) -> bool:
    return any(line.kind == "tax" for line in breakdown.lines)


def tax_minor(breakdown: InvoiceBreakdown) -> int:
    return sum(line.amount_minor for line in breakdown.lines if line.kind == "tax")


def wanted_keys(model: TaxModel, breakdown: InvoiceBreakdown) -> list[list[str]]:
    """Per line that needs a tax code, its candidate keys."""
    taxes = [line for line in breakdown.lines if line.kind == "tax"]
    if model is TaxModel.US_CODES:
        return [candidate_keys(line) for line in taxes]
    if model is not TaxModel.GLOBAL:
        return []
    taxed = {line.billing_line_id for line in taxes}
    wanted = [candidate_keys(line) for line in taxes]
    if any(line.kind != "tax" and line.billing_line_id not in taxed for line in breakdown.lines):
        wanted.append(candidate_keys(None))
    return wanted


def chosen(keys: list[str], mapped: dict[str, str]) -> str | None:
    return next((mapped[key] for key in keys if key in mapped), None)


def check_mapped(invoice_id: str, wanted: list[list[str]], mapped: dict[str, str]) -> None:
    """UnmappedItems (needs attention) naming every tax key left without a code."""
    missing = [keys for keys in wanted if chosen(keys, mapped) is None]
    if missing:
        described = sorted({" or ".join(keys) for keys in missing})
        raise UnmappedItems(
            f"invoice {invoice_id} needs QuickBooks tax codes for: {'; '.join(described)}; map "
            "each to a TaxCode Id with `billbridge mappings set`"
        )


@dataclass
class TaxPlan:
    """What the tax settings put on the invoice: line codes and TxnTaxDetail."""

    line_codes: dict[str, str]  # export line ref -> TaxCodeRef value
    detail: dict[str, Any] | None
    global_calculation: str | None
    tax_minor: int


@dataclass(frozen=True)
class TaxEntry:
    """One billing tax amount under a tax code, with the percentage billing named."""

    percent: Decimal | None
    amount_minor: int


def _percent(percentage: str | None) -> Decimal | None:
    try:
        return Decimal(percentage).normalize() if percentage else None
    except ArithmeticError:
        return None


def _rate_amounts(code: TaxCode, entries: list[TaxEntry]) -> dict[str, int] | None:
    """The billing tax per rate of a code: all of it for a one-rate code; for a code with
    several rates (GST + QST), each amount goes to the one rate of its percentage, and every
    rate must get one. None: billing does not say, QuickBooks computes the code itself."""
    if len(code.rates) == 1:
        return {code.rates[0].id: sum(entry.amount_minor for entry in entries)}
    by_percent: dict[Decimal, list[TaxRate]] = defaultdict(list)
    for rate in code.rates:
        by_percent[rate.percent.normalize()].append(rate)
    amounts: dict[str, int] = {}
    for entry in entries:
        matches = by_percent.get(entry.percent) if entry.percent is not None else None
        if not matches or len(matches) != 1:
            return None
        amounts[matches[0].id] = amounts.get(matches[0].id, 0) + entry.amount_minor
    return amounts if len(amounts) == len(code.rates) else None


def _codes_per_line(
    breakdown: InvoiceBreakdown, mapped: dict[str, str]
) -> tuple[dict[str, str], dict[str, list[TaxEntry]]]:
    """(line ref -> tax code, tax code -> billing tax) for the non-tax lines."""
    tax_codes: dict[str, set[str]] = defaultdict(set)
    tax_per_code: dict[str, list[TaxEntry]] = defaultdict(list)
    for line in breakdown.lines:
        if line.kind == "tax":
            code = chosen(candidate_keys(line), mapped)
            if code is None:
                check_mapped(breakdown.invoice_id, [candidate_keys(line)], mapped)
            assert code is not None
            tax_codes[line.billing_line_id].add(code)
            tax_per_code[code].append(
                TaxEntry(_percent(line.tax_rate_percentage), line.amount_minor)
            )
    per_line: dict[str, str] = {}
    for line in breakdown.lines:
        if line.kind == "tax":
            continue
        codes = tax_codes.get(line.billing_line_id) if line.billing_line_id else None
        if codes and len(codes) > 1:
            raise ProviderSetupNeeded(
                f"invoice {breakdown.invoice_id}: line {line.billing_line_id} carries taxes "
                f"mapped to different QuickBooks tax codes ({', '.join(sorted(codes))}); a "
                "QuickBooks line has one tax code: map them to one code that holds every rate"
            )
        if codes:
            per_line[line.ref] = next(iter(codes))
        else:
            code = chosen(candidate_keys(None), mapped)
            if code is None:
                check_mapped(breakdown.invoice_id, [candidate_keys(None)], mapped)
            assert code is not None
            per_line[line.ref] = code
    return per_line, tax_per_code


def _tax_lines(
    currency: str,
    net_per_code: dict[str, int],
    tax_per_code: dict[str, list[TaxEntry]],
    codes: dict[str, TaxCode],
) -> list[dict[str, Any]]:
    """One TaxLine per rate whose billing amount is known: the billing tax, stated."""
    per_rate: dict[str, tuple[TaxRate, int, int]] = {}
    computed: set[str] = set()
    for code_id, net in net_per_code.items():
        code = codes[code_id]
        amounts = _rate_amounts(code, tax_per_code.get(code_id, []))
        for rate in code.rates:
            if amounts is None:
                computed.add(rate.id)  # QuickBooks computes this code's rates itself
                continue
            _, seen_net, seen_tax = per_rate.get(rate.id, (rate, 0, 0))
            per_rate[rate.id] = (rate, seen_net + net, seen_tax + amounts.get(rate.id, 0))
    lines = []
    for rate_id, (rate, net, amount) in sorted(per_rate.items()):
        if rate_id in computed:
            continue
        lines.append(
            {
                "Amount": from_minor(amount, currency),
                "DetailType": "TaxLineDetail",
                "TaxLineDetail": {
                    "TaxRateRef": {"value": rate.id},
                    "PercentBased": True,
                    "TaxPercent": rate.percent,
                    "NetAmountTaxable": from_minor(net, currency),
                },
            }
        )
    return lines


def plan_tax(
    company: Company,
    breakdown: InvoiceBreakdown,
    mapped: dict[str, str],
    codes: dict[str, TaxCode],
) -> TaxPlan:
    """Pure: the tax fields of the invoice for the company's tax model (see the module doc).
    Amounts in TxnTaxDetail are Decimals; the caller turns them into JSON numbers."""
    currency = breakdown.currency
    total_tax = tax_minor(breakdown)
    model = company.tax_model
    if model is TaxModel.NO_SALES_TAX:
        if total_tax:
            raise ProviderSetupNeeded(
                f"invoice {breakdown.invoice_id} carries {from_minor(total_tax, currency)} "
                f"{currency} of tax, but the QuickBooks company does not use sales tax "
                f"(Preferences.TaxPrefs.UsingSalesTax is false); set it up in QuickBooks "
                f"({SALES_TAX_SETTING}), then `billbridge attention retry`"
            )
        return TaxPlan({}, None, None, 0)
    taxed = {line.billing_line_id for line in breakdown.lines if line.kind == "tax"}
    if model is not TaxModel.GLOBAL:
        line_codes = {
            line.ref: "TAX" if line.billing_line_id and line.billing_line_id in taxed else "NON"
            for line in breakdown.lines
            if line.kind != "tax"
        }
        if model is TaxModel.AUTOMATED:
            detail: dict[str, Any] = {"TotalTax": from_minor(total_tax, currency)}
            return TaxPlan(line_codes, detail, None, total_tax)
        if not total_tax:
            return TaxPlan(line_codes, None, None, 0)
        per_line, tax_per_code = _codes_per_line(breakdown, mapped)
        if len(tax_per_code) > 1:
            raise ProviderSetupNeeded(
                f"invoice {breakdown.invoice_id}: its taxes map to several QuickBooks tax codes "
                f"({', '.join(sorted(tax_per_code))}), but a US company has one tax code per "
                "invoice: map them to one code (a combined rate)"
            )
        code = next(iter(tax_per_code))
        taxable = sum(
            line.amount_minor for line in breakdown.lines if line_codes.get(line.ref) == "TAX"
        )
        detail = {
            "TxnTaxCodeRef": {"value": code},
            "TotalTax": from_minor(total_tax, currency),
            "TaxLine": _tax_lines(currency, {code: taxable}, tax_per_code, codes),
        }
        return TaxPlan(line_codes, detail, None, total_tax)
    per_line, tax_per_code = _codes_per_line(breakdown, mapped)
    net_per_code: dict[str, int] = defaultdict(int)
    for line in breakdown.lines:
        if line.ref in per_line:
            net_per_code[per_line[line.ref]] += line.amount_minor
    detail = {
        "TotalTax": from_minor(total_tax, currency),
        "TaxLine": _tax_lines(currency, dict(net_per_code), tax_per_code, codes),
    }
    return TaxPlan(per_line, detail, "TaxExcluded", total_tax)
