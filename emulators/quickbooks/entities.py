"""The in-memory company: customers, items, invoices, tax codes and rates, with QuickBooks'
create/update rules, and the company's settings (company.py).

Every entity type has its own Id sequence ("1", "2", ...), as in QuickBooks, so a customer and an
item may share an Id and a client that mixes up references fails. ``SyncToken`` starts at "0" and
grows with every update; an update naming an older one is a Stale Object Error (5010).
Call every method with ``lock`` held.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import errors, invoices, values
from .company import CompanySettings

MAX_DISPLAY_NAME = 500
ITEM_TYPES = ("Service", "NonInventory", "Inventory")

# Writable fields beyond the name and Active: (key, kind) with kind "str" or "object".
_CUSTOMER_FIELDS = (
    ("CompanyName", "str"),
    ("GivenName", "str"),
    ("FamilyName", "str"),
    ("Notes", "str"),
    ("BillAddr", "object"),
)
_ITEM_FIELDS = (
    ("Description", "str"),
    ("IncomeAccountRef", "object"),
    ("Sku", "str"),
)


def _fold(name: str) -> str:
    # UNCONFIRMED: QuickBooks treats names that differ only in case or surrounding blanks as
    # the same name.
    return name.strip().casefold()


class Store:
    """All objects of one company (realm)."""

    def __init__(
        self,
        *,
        realm_id: str,
        company_name: str,
        unique_doc_numbers: bool = True,
        auto_doc_numbers: bool = True,
        today: Callable[[], str] | None = None,
        company: CompanySettings | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.realm_id = realm_id
        self.company_name = company_name
        self._initial_company = company or CompanySettings()
        self.company = self._initial_company
        self.unique_doc_numbers = unique_doc_numbers
        self.auto_doc_numbers = auto_doc_numbers
        self._today = today
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._next_id: dict[str, int] = {}
        self._next_doc_number = invoices.FIRST_DOC_NUMBER
        self._created = values.timestamp()
        self.reset()

    def reset(self) -> None:
        self.tables = {"Customer": {}, "Item": {}, "Invoice": {}, "TaxCode": {}, "TaxRate": {}}
        self._next_id = {name: 1 for name in self.tables}
        self._next_doc_number = invoices.FIRST_DOC_NUMBER
        self.company = self._initial_company

    # -- reads -----------------------------------------------------------------------------------

    def company_info(self) -> dict[str, Any]:
        return {
            "CompanyName": self.company_name,
            "LegalName": self.company_name,
            "Country": self.company.country,
            "SupportedLanguages": "en",
            "domain": "QBO",
            "sparse": False,
            "Id": self.realm_id,
            "SyncToken": "0",
            "MetaData": {"CreateTime": self._created, "LastUpdatedTime": self._created},
        }

    def rows(self, entity: str) -> list[dict[str, Any]]:
        """Every object of ``entity`` as the API renders it, oldest first."""
        if entity == "CompanyInfo":
            return [self.company_info()]
        if entity == "Preferences":
            return [self.company.preferences(self._created)]
        return [copy.deepcopy(row) for row in self.tables[entity].values()]

    def get(self, entity: str, entity_id: str) -> dict[str, Any]:
        found = self.tables[entity].get(entity_id)
        if found is None:
            raise errors.not_found(entity, entity_id)
        return copy.deepcopy(found)

    # -- shared write rules --------------------------------------------------------------------

    def _new_id(self, entity: str) -> str:
        number = self._next_id[entity]
        self._next_id[entity] = number + 1
        return str(number)

    def _check_unique(self, entity: str, key: str, name: str, exclude: str | None) -> None:
        # Only active objects hold a name: a deactivated customer's name can be used again.
        for row in self.tables[entity].values():
            if row["Id"] != exclude and row["Active"] and _fold(row[key]) == _fold(name):
                raise errors.duplicate_name(key, name)

    def _save(
        self,
        entity: str,
        name_key: str,
        body: Any,
        build: Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]],
    ) -> dict[str, Any]:
        """Create (no ``Id``) or update (``Id`` + ``SyncToken``; ``sparse`` keeps other fields)."""
        if not isinstance(body, dict):
            raise errors.invalid_property(f"the request body must be a JSON {entity} object")
        now = values.timestamp()
        if body.get("Id") is None:
            row = build(body, None)
            self._check_unique(entity, name_key, row[name_key], None)
            row = {
                "Id": self._new_id(entity),
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                **row,
                "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
            }
            self.tables[entity][row["Id"]] = row
            return copy.deepcopy(row)
        entity_id = str(body["Id"])
        current = self.tables[entity].get(entity_id)
        if current is None:
            raise errors.not_found(entity, entity_id)
        if body.get("SyncToken") is None:
            raise errors.required("SyncToken")
        if str(body["SyncToken"]) != current["SyncToken"]:
            raise errors.stale_object(entity, entity_id, str(body["SyncToken"]))
        changed = build(body, current if body.get("sparse") is True else None)
        if changed["Active"] and (
            not current["Active"] or _fold(changed[name_key]) != _fold(current[name_key])
        ):
            self._check_unique(entity, name_key, changed[name_key], entity_id)
        updated: dict[str, Any] = {
            "Id": current["Id"],
            "SyncToken": str(int(current["SyncToken"]) + 1),
            "domain": current["domain"],
            "sparse": current["sparse"],
            **changed,
            "MetaData": {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": now},
        }
        for key in ("Balance",):  # derived fields survive full updates
            if key in current:
                updated[key] = current[key]
        self.tables[entity][entity_id] = updated
        return copy.deepcopy(updated)

    @staticmethod
    def _fields(
        body: dict[str, Any],
        base: dict[str, Any] | None,
        name_key: str,
        name_limit: int | None,
        extra: tuple[tuple[str, str], ...],
    ) -> dict[str, Any]:
        """The writable fields: from ``body``, falling back to ``base`` (a sparse update)."""
        row: dict[str, Any] = {}
        if base is None or name_key in body:
            name = values.string(body, name_key, max_length=name_limit, required=True)
            assert name is not None
            row[name_key] = name.strip()
            row["FullyQualifiedName"] = name.strip()
        else:
            row[name_key] = base[name_key]
            row["FullyQualifiedName"] = base.get("FullyQualifiedName", base[name_key])
        for key, kind in extra:
            if key in body and body[key] is not None:
                if kind == "str":
                    row[key] = values.string(body, key)
                elif isinstance(body[key], dict):
                    row[key] = copy.deepcopy(body[key])
                else:
                    raise errors.invalid_property(f"{key} must be an object", key)
            elif base is not None and key in base:
                row[key] = copy.deepcopy(base[key])
        active = body.get("Active", base["Active"] if base is not None else True)
        if not isinstance(active, bool):
            raise errors.invalid_property("Active must be true or false", "Active")
        row["Active"] = active
        return row

    # -- customers -------------------------------------------------------------------------------

    def save_customer(self, body: Any) -> dict[str, Any]:
        def build(data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
            row = self._fields(data, base, "DisplayName", MAX_DISPLAY_NAME, _CUSTOMER_FIELDS)
            if "PrimaryEmailAddr" in data and data["PrimaryEmailAddr"] is not None:
                addr = data["PrimaryEmailAddr"]
                if not isinstance(addr, dict):
                    raise errors.invalid_property(
                        "PrimaryEmailAddr must be an object", "PrimaryEmailAddr"
                    )
                address = values.string(addr, "Address", max_length=100)
                if address is not None:
                    row["PrimaryEmailAddr"] = {"Address": address}
            elif base is not None and "PrimaryEmailAddr" in base:
                row["PrimaryEmailAddr"] = dict(base["PrimaryEmailAddr"])
            row["Balance"] = base["Balance"] if base is not None else Decimal(0)
            row["CurrencyRef"] = self._customer_currency(data, base)
            return row

        return self._save("Customer", "DisplayName", body, build)

    def _customer_currency(
        self, data: dict[str, Any], base: dict[str, Any] | None
    ) -> dict[str, str]:
        """A customer's one currency, set when it is created (home currency by default).

        A currency other than the home one needs multicurrency on (developer.intuit.com,
        "Manage multiple currencies"). UNCONFIRMED: the fault's code and wording, and that an
        update may not change it (the emulator keeps the first one).
        """
        if base is not None:
            return dict(base["CurrencyRef"])
        currency = (values.ref_value(data, "CurrencyRef") or self.company.home).upper()
        if currency != self.company.home and not self.company.multicurrency:
            raise errors.business(
                f"Multicurrency is not enabled for this company: CurrencyRef {currency} must "
                f"be the home currency {self.company.home}",
                "CurrencyRef",
            )
        return {"value": currency, "name": invoices.CURRENCY_NAMES.get(currency, currency)}

    # -- tax codes and rates (set up by the emulator's helpers; the API only reads them) ---------

    def add_tax_code(self, name: str, rates: list[tuple[str, Decimal]]) -> str:
        """A TaxCode with one sales TaxRate per (name, percent), as the TaxService creates them
        (developer.intuit.com, Accounting API, TaxService; TaxCode; TaxRate)."""
        now = values.timestamp()
        details = []
        for order, (rate_name, percent) in enumerate(rates):
            rate_id = self._new_id("TaxRate")
            self.tables["TaxRate"][rate_id] = {
                "Id": rate_id,
                "SyncToken": "0",
                "Name": rate_name,
                "Active": True,
                "RateValue": Decimal(percent),
                "SpecialTaxType": "NONE",
                "DisplayType": "ReadOnly",
                "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
            }
            details.append(
                {
                    "TaxRateRef": {"value": rate_id, "name": rate_name},
                    "TaxTypeApplicable": "TaxOnAmount",
                    "TaxOrder": order,
                }
            )
        code_id = self._new_id("TaxCode")
        self.tables["TaxCode"][code_id] = {
            "Id": code_id,
            "SyncToken": "0",
            "Name": name,
            "Description": name,
            "Active": True,
            "Taxable": any(percent for _, percent in rates),
            "TaxGroup": len(rates) > 1,
            "SalesTaxRateList": {"TaxRateDetail": details},
            "PurchaseTaxRateList": {"TaxRateDetail": []},
            "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
        }
        return code_id

    def set_tax_rate_value(self, rate_name: str, percent: Decimal) -> None:
        """Change a TaxRate's RateValue, as a person editing the rate in QuickBooks does (a
        government changes a rate; a rate set up wrong is corrected)."""
        (rate,) = [r for r in self.tables["TaxRate"].values() if r["Name"] == rate_name]
        rate["RateValue"] = Decimal(percent)
        rate["SyncToken"] = str(int(rate["SyncToken"]) + 1)

    def set_tax_code_active(self, code_id: str, active: bool) -> None:
        self.get("TaxCode", code_id)  # 610 if unknown
        self.tables["TaxCode"][code_id]["Active"] = active

    # -- items -------------------------------------------------------------------------------------

    def save_item(self, body: Any) -> dict[str, Any]:
        def build(data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
            # UNCONFIRMED: QuickBooks also wants an IncomeAccountRef for sales items; the
            # emulator has no chart of accounts and does not require one.
            row = self._fields(data, base, "Name", 100, _ITEM_FIELDS)
            item_type = data.get("Type", base["Type"] if base is not None else "Service")
            if item_type not in ITEM_TYPES:
                raise errors.business(f"Item Type {item_type!r} is not supported", "Type")
            row["Type"] = item_type
            if data.get("UnitPrice") is not None:
                row["UnitPrice"] = values.decimal(data["UnitPrice"], "UnitPrice")
            elif base is not None and "UnitPrice" in base:
                row["UnitPrice"] = base["UnitPrice"]
            return row

        return self._save("Item", "Name", body, build)

    # -- invoices ----------------------------------------------------------------------------------

    def _doc_number(self) -> str:
        used = {row.get("DocNumber") for row in self.tables["Invoice"].values()}
        while str(self._next_doc_number) in used:
            self._next_doc_number += 1
        number = str(self._next_doc_number)
        self._next_doc_number += 1
        return number

    def create_invoice(self, body: Any) -> dict[str, Any]:
        built = invoices.build(
            body,
            customers=self.tables["Customer"],
            items=self.tables["Item"],
            invoices=self.tables["Invoice"],
            company=self.company,
            tax_codes=self.tables["TaxCode"],
            tax_rates=self.tables["TaxRate"],
            unique_doc_numbers=self.unique_doc_numbers,
            doc_number=self._doc_number if self.auto_doc_numbers else None,
            today=self._today,
        )
        now = values.timestamp()
        row = {
            "Id": self._new_id("Invoice"),
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
            **built,
        }
        self.tables["Invoice"][row["Id"]] = row
        customer = self.tables["Customer"][row["CustomerRef"]["value"]]
        customer["Balance"] = customer["Balance"] + row["Balance"]
        return copy.deepcopy(row)

    def delete_invoice(self, body: Any) -> dict[str, Any]:
        """``POST /invoice?operation=delete`` with the invoice's ``Id`` and ``SyncToken``: the
        invoice is gone, and reading it is 610 Object Not Found like any unknown id
        (developer.intuit.com, Accounting API, Invoice, "Delete an invoice"; the response is
        ``{"Invoice": {"status": "Deleted", "domain": "QBO", "Id": ...}}``).
        UNCONFIRMED: that a deleted invoice reads as 610 rather than with another code."""
        if not isinstance(body, dict):
            raise errors.invalid_property("the request body must be a JSON Invoice object")
        invoice_id = values.string(body, "Id", required=True)
        sync_token = values.string(body, "SyncToken", required=True)
        assert invoice_id is not None and sync_token is not None
        row = self.tables["Invoice"].get(invoice_id)
        if row is None:
            raise errors.not_found("Invoice", invoice_id)
        if row["SyncToken"] != sync_token:
            raise errors.stale_object("Invoice", invoice_id, sync_token)
        del self.tables["Invoice"][invoice_id]
        customer = self.tables["Customer"][row["CustomerRef"]["value"]]
        customer["Balance"] = customer["Balance"] - row["Balance"]
        return {"status": "Deleted", "domain": "QBO", "Id": invoice_id}
