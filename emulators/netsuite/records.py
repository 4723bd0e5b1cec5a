"""The account's records: customers, items, currencies, subsidiaries and invoices.

Paths and shapes ("Creating a Record Instance",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_1545141395.html, and the
pages it links): ``record/v1/<type>`` takes POST (204, no body, ``Location:
.../record/v1/<type>/<internal id>``), ``record/v1/<type>/<id>`` GET (the record), PATCH (204)
and DELETE (204, "delete",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/article_0624125335.html). An id
may be ``eid:<external id>`` anywhere an internal id may ("Using External IDs",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_156334828635.html:
letters, numbers, underscore and hyphen), and ``PUT record/v1/<type>/eid:<id>`` upserts ("Using
the Upsert Operation",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_156335203191.html): it
adds the record, or updates the one with that external id. UNCONFIRMED: the upsert's answer
(the emulator answers as a create does: 204 with Location).

Sublists: on an update without ``replace``, lines of a non-keyed sublist (and lines without
their key on a keyed one) are appended to the existing ones ("Updating a Sublist",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_1545295601.html); with
``?replace=item`` they replace them ("Replacing a Sublist", section_1545297048.html). The invoice
``item`` sublist is modelled as keyed by ``line``, which the server assigns, so an upsert that
repeats the same lines without ``replace=item`` doubles them: clients must send it.

A GET returns sublists as links unless ``expandSubResources=true``.

Amounts: a line's ``amount`` is taken as sent, else ``quantity x rate``; both are rounded to the
currency's precision, which is 0 or 2 (Records Browser, currency, currencyPrecision: "Precision
can be zero or two"); UNCONFIRMED that NetSuite rounds half up rather than refusing.
``subtotal`` is the sum of the lines, ``total`` the subtotal plus ``taxTotal``. REST web
services support no legacy tax, only SuiteTax ("Tax Type",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/article_0814115234.html); an
account whose SuiteTax engine taxes the lines is modelled by ``tax_rate`` (a percentage of the
subtotal, UNCONFIRMED as a model of the engine), None: no tax computed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from . import errors

ITEM_TYPES = {
    # REST record type -> SuiteQL item.itemtype (UNCONFIRMED values of itemtype)
    "serviceSaleItem": "Service",
    "nonInventorySaleItem": "NonInvtPart",
    "otherChargeSaleItem": "OthCharge",
    "discountItem": "Discount",
    "inventoryItem": "InvtPart",
}
RECORD_TYPES = ("customer", "invoice", "currency", "subsidiary", *ITEM_TYPES)
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]+")
CUSTOMER_FIELDS = frozenset(
    {
        "companyName",
        "firstName",
        "lastName",
        "isPerson",
        "email",
        "subsidiary",
        "currency",
        "externalId",
        "entityId",
        "isInactive",
        "comments",
        "phone",
    }
)
INVOICE_FIELDS = frozenset(
    {
        "entity",
        "subsidiary",
        "currency",
        "tranDate",
        "dueDate",
        "tranId",
        "memo",
        "externalId",
        "item",
        "otherRefNum",
        "terms",
        "department",
        "location",
        "class",
        "approvalStatus",
    }
)
ITEM_FIELDS = frozenset(
    {
        "itemId",
        "displayName",
        "isInactive",
        "subsidiary",
        "includeChildren",
        "externalId",
        "description",
        "salesDescription",
    }
)
LINE_FIELDS = frozenset({"item", "quantity", "rate", "amount", "description", "line"})


@dataclass
class AccountSettings:
    """What differs between accounts, each configurable (see the module notes)."""

    one_world: bool = True  # customers need a subsidiary
    auto_numbering: bool = True  # invoices get tranIds from the account's numbering
    allow_tran_id_override: bool = False  # with auto numbering: a sent tranId is kept
    tax_rate: Decimal | None = None  # SuiteTax engine: % of the subtotal added as taxTotal
    max_external_id: int = 255  # UNCONFIRMED: NetSuite's external id length limit
    # UNCONFIRMED: whether NetSuite rounds an amount with more decimals than the currency keeps
    # (True) or refuses it with INVALID_CONTENT (False).
    round_amounts: bool = True


def _suiteql_time(value: Any) -> str | None:
    """An ISO 8601 time as SuiteQL rows carry it here: ``YYYY-MM-DD HH:MM:SS``."""
    if not value:
        return None
    return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("id") is not None:
        return str(value["id"])
    return None


def _decimal(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise errors.invalid_value(value, path.rsplit(".", 1)[-1], path)
    try:
        return Decimal(str(value))
    except InvalidOperation as err:
        raise errors.invalid_value(value, path.rsplit(".", 1)[-1], path) from err


@dataclass
class Store:
    account_id: str
    settings: AccountSettings = field(default_factory=AccountSettings)
    lock: threading.RLock = field(default_factory=threading.RLock)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    external: dict[str, dict[str, str]] = field(default_factory=dict)
    _next: dict[str, int] = field(default_factory=dict)
    _numbers: int = 1000

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records = {
            kind: {} for kind in ("customer", "invoice", "currency", "subsidiary", "item")
        }
        self.external = {kind: {} for kind in self.records}
        self._next = {kind: 1 for kind in self.records}
        self._numbers = 1000
        self.add_subsidiary("Parent Company", "1")
        for symbol, name, precision in (
            ("USD", "US Dollar", 2),
            ("GBP", "British Pound", 2),
            ("CAD", "Canadian Dollar", 2),
            ("EUR", "Euro", 2),
            ("JPY", "Japanese Yen", 0),
        ):
            self.add_currency(symbol, name, precision)

    # -- ids -----------------------------------------------------------------------------------

    @staticmethod
    def table(rtype: str) -> str:
        return "item" if rtype in ITEM_TYPES else rtype

    def _new_id(self, rtype: str) -> str:
        table = self.table(rtype)
        self._next[table] += 1
        return str(self._next[table] + (100 if table != "currency" else 0))

    def resolve(self, rtype: str, key: str) -> str | None:
        """The internal id `key` names (an id or ``eid:<external id>``), or None."""
        table = self.table(rtype)
        if key.startswith("eid:"):
            return self.external[table].get(key[4:])
        record = self.records[table].get(key)
        if record is None or (rtype in ITEM_TYPES and record["_type"] != rtype):
            return None
        return key

    def check_external_id(self, external_id: str, path: str = "id") -> None:
        if not EXTERNAL_ID.fullmatch(external_id) or len(external_id) > (
            self.settings.max_external_id
        ):
            # "An external ID can be any string containing letters, numbers, underscore (_),
            # and hyphen (-)." UNCONFIRMED: the error NetSuite answers for other characters.
            raise errors.invalid_parameter(
                f"Invalid external ID {external_id!r}: use letters, numbers, _ and -", path
            )

    # -- set-up (the emulator's helpers) ---------------------------------------------------------

    def add_subsidiary(self, name: str, subsidiary_id: str | None = None) -> str:
        new_id = subsidiary_id or self._new_id("subsidiary")
        self.records["subsidiary"][new_id] = {"id": new_id, "name": name, "isInactive": False}
        return new_id

    def add_currency(self, symbol: str, name: str, precision: int, inactive: bool = False) -> str:
        for record in self.records["currency"].values():
            if record["symbol"] == symbol:
                record.update(currencyPrecision=precision, isInactive=inactive, name=name)
                return str(record["id"])
        new_id = str(len(self.records["currency"]) + 1)
        self.records["currency"][new_id] = {
            "id": new_id,
            "name": name,
            "symbol": symbol,  # the ISO code ("ISO Code" on the currency form)
            "currencyPrecision": precision,
            "isBaseCurrency": new_id == "1",
            "isInactive": inactive,
        }
        return new_id

    # -- reads -----------------------------------------------------------------------------------

    def get(self, rtype: str, key: str, base: str, expand: bool = False) -> dict[str, Any]:
        found = self.resolve(rtype, key)
        if found is None:
            raise errors.not_found()
        return self.render(rtype, found, base, expand)

    def render(self, rtype: str, record_id: str, base: str, expand: bool) -> dict[str, Any]:
        record = self.records[self.table(rtype)][record_id]
        href = f"{base}/services/rest/record/v1/{rtype}/{record_id}"
        out: dict[str, Any] = {"links": [{"rel": "self", "href": href}]}
        for key, value in record.items():
            if key.startswith("_"):
                continue
            if key == "item" and rtype == "invoice":
                items = [dict(line) for line in value]
                link = {"links": [{"rel": "self", "href": f"{href}/item"}]}
                out[key] = (
                    {
                        **link,
                        "items": items,
                        "count": len(items),
                        "hasMore": False,
                        "offset": 0,
                        "totalResults": len(items),
                    }
                    if expand
                    else link
                )
            else:
                out[key] = value
        return out

    def rows(self, table: str) -> list[dict[str, Any]] | None:
        """SuiteQL rows of a table (lower-case columns, string values, T/F booleans)."""

        def flag(value: Any) -> str:
            return "T" if value else "F"

        if table == "item":
            return [
                {
                    "id": r["id"],
                    "itemid": r.get("itemId", ""),
                    "displayname": r.get("displayName", ""),
                    "itemtype": ITEM_TYPES[r["_type"]],
                    "isinactive": flag(r.get("isInactive")),
                    "externalid": r.get("externalId"),
                }
                for r in self.records["item"].values()
            ]
        if table == "currency":
            return [
                {
                    "id": r["id"],
                    "name": r["name"],
                    "symbol": r["symbol"],
                    "currencyprecision": str(r["currencyPrecision"]),
                    "isbasecurrency": flag(r["isBaseCurrency"]),
                    "isinactive": flag(r["isInactive"]),
                }
                for r in self.records["currency"].values()
            ]
        if table == "subsidiary":
            return [
                {"id": r["id"], "name": r["name"], "isinactive": flag(r["isInactive"])}
                for r in self.records["subsidiary"].values()
            ]
        if table == "customer":
            return [
                {
                    "id": r["id"],
                    "entityid": r.get("entityId", ""),
                    "companyname": r.get("companyName"),
                    "email": r.get("email"),
                    "externalid": r.get("externalId"),
                    "isinactive": flag(r.get("isInactive")),
                    "subsidiary": _ref(r.get("subsidiary")),
                    "currency": _ref(r.get("currency")),
                }
                for r in self.records["customer"].values()
            ]
        if table == "transaction":
            return [
                {
                    "id": r["id"],
                    "tranid": r.get("tranId"),
                    "type": "CustInvc",
                    "externalid": r.get("externalId"),
                    "entity": _ref(r.get("entity")),
                    "foreigntotal": str(r.get("total")),
                    "currency": _ref(r.get("currency")),
                    # The account's time zone is UTC here (see suiteql.py for the format).
                    "createddate": _suiteql_time(r.get("createdDate")),
                }
                for r in self.records["invoice"].values()
            ]
        return None

    # -- writes ----------------------------------------------------------------------------------

    def create(self, rtype: str, body: dict[str, Any]) -> str:
        return self._write(rtype, None, None, body, replace=frozenset())

    def upsert(
        self, rtype: str, external_id: str, body: dict[str, Any], replace: frozenset[str]
    ) -> str:
        self.check_external_id(external_id)
        existing = self.external[self.table(rtype)].get(external_id)
        return self._write(rtype, existing, external_id, body, replace)

    def update(self, rtype: str, key: str, body: dict[str, Any], replace: frozenset[str]) -> str:
        found = self.resolve(rtype, key)
        if found is None:
            raise errors.not_found()
        return self._write(rtype, found, None, body, replace)

    def delete(self, rtype: str, key: str) -> None:
        found = self.resolve(rtype, key)
        if found is None:
            raise errors.not_found()
        table = self.table(rtype)
        record = self.records[table].pop(found)
        if record.get("externalId"):
            self.external[table].pop(str(record["externalId"]), None)

    def _write(
        self,
        rtype: str,
        existing: str | None,
        external_id: str | None,
        body: dict[str, Any],
        replace: frozenset[str],
    ) -> str:
        if rtype in ("currency", "subsidiary"):
            raise errors.insufficient_permission(
                f"The emulator keeps {rtype} records read-only; set them up with its helpers."
            )
        table = self.table(rtype)
        current = dict(self.records[table][existing]) if existing else {}
        allowed = {"customer": CUSTOMER_FIELDS, "invoice": INVOICE_FIELDS}.get(rtype, ITEM_FIELDS)
        for key in body:
            if key not in allowed:
                raise errors.nonexistent_field(key)
        if body.get("externalId") is not None:
            self.check_external_id(str(body["externalId"]), "externalId")
        merged = {**current, **{k: v for k, v in body.items() if k != "item"}}
        if external_id is not None:
            merged["externalId"] = external_id
        if rtype == "customer":
            self._check_customer(merged, creating=existing is None)
        elif rtype == "invoice":
            self._check_invoice(merged, body, current, replace, creating=existing is None)
        else:
            if not merged.get("itemId"):
                raise errors.user_error("Please enter value(s) for: Item Name/Number", "itemId")
            merged["_type"] = rtype
        new_external = merged.get("externalId")
        other = self.external[table].get(str(new_external)) if new_external else None
        if other is not None and other != existing:
            # UNCONFIRMED wording; external ids are unique per record type.
            raise errors.user_error(
                f"A record with external ID {new_external} already exists.", "externalId"
            )
        record_id = existing or self._new_id(rtype)
        merged["id"] = record_id
        if existing is None and rtype == "invoice":
            # Read-only on the record (REST's invoice `createdDate`, ISO 8601 with offset).
            merged["createdDate"] = datetime.now(UTC).isoformat(timespec="seconds")
        if existing and current.get("externalId") and current["externalId"] != new_external:
            self.external[table].pop(str(current["externalId"]), None)
        self.records[table][record_id] = merged
        if new_external:
            self.external[table][str(new_external)] = record_id
        return record_id

    def _reference(self, table: str, value: Any, field: str, path: str) -> str:
        ref = _ref(value)
        record = self.records[table].get(ref) if ref is not None else None
        if record is None or record.get("isInactive"):
            raise errors.invalid_value(ref if ref is not None else value, field, path)
        return str(ref)

    def _check_customer(self, record: dict[str, Any], *, creating: bool) -> None:
        if record.get("subsidiary") is not None:
            self._reference("subsidiary", record["subsidiary"], "subsidiary", "subsidiary")
        elif self.settings.one_world:
            # OneWorld: a customer needs its primary subsidiary (the documented create example
            # sends one). UNCONFIRMED: the wording.
            raise errors.user_error("Please enter value(s) for: Primary Subsidiary", "subsidiary")
        if record.get("currency") is not None:
            self._reference("currency", record["currency"], "currency", "currency")
        if not (record.get("companyName") or record.get("lastName")):
            raise errors.user_error("Please enter value(s) for: Company Name", "companyName")
        record.setdefault("isInactive", False)
        record.setdefault("entityId", record.get("companyName") or record.get("lastName"))

    def _check_invoice(
        self,
        record: dict[str, Any],
        body: dict[str, Any],
        current: dict[str, Any],
        replace: frozenset[str],
        *,
        creating: bool,
    ) -> None:
        customer_id = self._reference("customer", record.get("entity"), "entity", "entity")
        customer = self.records["customer"][customer_id]
        if record.get("subsidiary") is not None:
            self._reference("subsidiary", record["subsidiary"], "subsidiary", "subsidiary")
        elif customer.get("subsidiary") is not None:
            record["subsidiary"] = {"id": _ref(customer["subsidiary"])}
        if record.get("currency") is None:
            record["currency"] = customer.get("currency") or {"id": "1"}
        currency_id = self._reference("currency", record["currency"], "currency", "currency")
        precision = int(self.records["currency"][currency_id]["currencyPrecision"])
        step = Decimal(1).scaleb(-precision)
        sent = body.get("item")
        lines: list[dict[str, Any]] = []
        if sent is not None:
            items = sent.get("items") if isinstance(sent, dict) else None
            if not isinstance(items, list):
                raise errors.invalid_value(sent, "item", "item")
            lines = [self._line(n, line, step) for n, line in enumerate(items)]
        if "item" in replace or creating:
            all_lines = lines
        else:
            all_lines = [dict(line) for line in current.get("item", [])] + lines
        for number, line in enumerate(all_lines, start=1):
            line["line"] = number
        if not all_lines:
            raise errors.user_error(
                "You must enter at least one line item for this transaction.", "item"
            )
        record["item"] = all_lines
        subtotal = sum((Decimal(str(line["amount"])) for line in all_lines), Decimal(0))
        tax = Decimal(0)
        if self.settings.tax_rate is not None:
            tax = (subtotal * self.settings.tax_rate / 100).quantize(step, ROUND_HALF_UP)
        record["subtotal"] = subtotal
        record["taxTotal"] = tax
        record["total"] = subtotal + tax
        record["entity"] = {"id": customer_id, "refName": customer.get("entityId", "")}
        numbered = self.settings.auto_numbering
        if (
            creating
            and numbered
            and not (self.settings.allow_tran_id_override and body.get("tranId"))
        ):
            # With auto-numbering and no override a sent tranId is ignored (UNCONFIRMED: ignored
            # rather than refused).
            self._numbers += 1
            record["tranId"] = str(self._numbers)
        elif not creating and numbered and not self.settings.allow_tran_id_override:
            record["tranId"] = current.get("tranId")
        record.setdefault("tranId", "")
        for key in ("tranDate", "dueDate"):
            value = record.get(key)
            if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)):
                raise errors.invalid_value(value, key, key)

    def _line(self, n: int, line: Any, step: Decimal) -> dict[str, Any]:
        path = f"item.items[{n}]"
        if not isinstance(line, dict):
            raise errors.invalid_value(line, "item", path)
        for key in line:
            if key not in LINE_FIELDS:
                raise errors.nonexistent_field(f"{path}.{key}")
        item_ref = _ref(line.get("item"))
        item = self.records["item"].get(item_ref) if item_ref is not None else None
        if item is None or item.get("isInactive"):
            # The documented example: INVALID_CONTENT at item.items[0].item.
            raise errors.invalid_value(item_ref or line.get("item"), "item", f"{path}.item")
        quantity = _decimal(line.get("quantity", 1), f"{path}.quantity")
        rate = _decimal(line["rate"], f"{path}.rate") if line.get("rate") is not None else None
        if line.get("amount") is not None:
            amount = _decimal(line["amount"], f"{path}.amount")
        elif rate is not None:
            amount = quantity * rate
        else:
            raise errors.user_error("Please enter value(s) for: Amount", f"{path}.amount")
        if amount != amount.quantize(step) and not self.settings.round_amounts:
            raise errors.invalid_value(amount, "amount", f"{path}.amount")
        out: dict[str, Any] = {
            "item": {"id": item_ref, "refName": item.get("itemId", "")},
            "quantity": quantity,
            "amount": amount.quantize(step, ROUND_HALF_UP),
        }
        if rate is not None:
            out["rate"] = rate
        if line.get("description") is not None:
            out["description"] = str(line["description"])
        return out
