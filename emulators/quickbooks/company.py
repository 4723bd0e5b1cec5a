"""The emulated company's country, currency and tax settings, as CompanyInfo and Preferences.

Sources:
- Preferences entity (``GET /v3/company/{realmId}/preferences``), its ``CurrencyPrefs``
  (``MultiCurrencyEnabled``, ``HomeCurrency``) and ``TaxPrefs`` (``UsingSalesTax``,
  ``PartnerTaxEnabled``):
  https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/preferences
- ``PartnerTaxEnabled`` true means automated sales tax (AST), US companies only:
  https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-sales-tax-for-us-locales
- Multicurrency is off in a new company, and once on it cannot be turned off:
  https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-multiple-currencies
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

COUNTRY_CURRENCY = {"US": "USD", "GB": "GBP", "CA": "CAD", "AU": "AUD"}
# What a line without a tax rate is called in each country's fault 6000 ("Make sure all your
# transactions have a GST/HST rate before you save": github.com/ruckus/quickbooks-ruby/issues/351).
# UNCONFIRMED: the GB and AU wordings (by analogy with Canada's).
TAX_NAME = {"GB": "VAT", "CA": "GST/HST", "AU": "GST"}


@dataclass(frozen=True)
class CompanySettings:
    """``country`` US, GB, CA or AU. ``automated_sales_tax`` (US only): the AST engine taxes the
    lines marked TAX at ``automated_tax_rate`` percent unless the request sends ``TotalTax``.
    ``multicurrency`` off (QuickBooks' default) refuses currencies other than the home one."""

    country: str = "US"
    home_currency: str | None = None  # None: the country's currency
    multicurrency: bool = False
    automated_sales_tax: bool = True
    using_sales_tax: bool = True
    # UNCONFIRMED: AST's rate depends on addresses; the emulator uses one rate for every line.
    automated_tax_rate: Decimal = Decimal("8.25")

    def __post_init__(self) -> None:
        if self.country not in COUNTRY_CURRENCY:
            raise ValueError(f"country must be one of {sorted(COUNTRY_CURRENCY)}")

    @property
    def home(self) -> str:
        return (self.home_currency or COUNTRY_CURRENCY[self.country]).upper()

    @property
    def is_us(self) -> bool:
        return self.country == "US"

    @property
    def ast(self) -> bool:
        return self.is_us and self.automated_sales_tax

    def preferences(self, created: str) -> dict[str, Any]:
        tax: dict[str, Any] = {"UsingSalesTax": self.using_sales_tax}
        if self.is_us:
            # Available from minor version 3, US companies.
            tax["PartnerTaxEnabled"] = self.automated_sales_tax
        return {
            "CurrencyPrefs": {
                "MultiCurrencyEnabled": self.multicurrency,
                "HomeCurrency": {"value": self.home},
            },
            "TaxPrefs": tax,
            "Id": "1",
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": {"CreateTime": created, "LastUpdatedTime": created},
        }
