"""Routes of the Accounting API under ``/v3/company/{realmId}/``.

Each handler runs with the store lock held and returns the JSON object to send with 200, or
raises :class:`~.errors.QuickBooksError`. Authentication, throttling and ``requestid`` replay
happen before (see server.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import encoding, errors, query
from .entities import Store


@dataclass(frozen=True)
class Call:
    method: str
    resource: str  # lower-cased path segment after the realm: "customer", "query", ...
    entity_id: str | None
    params: Mapping[str, str]  # the query string
    body: bytes


Handler = Callable[[Store, Call], dict[str, Any]]


def _body(call: Call) -> Any:
    try:
        return encoding.loads(call.body)
    except encoding.BodyError as exc:
        raise errors.invalid_property(f"the request body is not valid JSON: {exc}") from exc


def _check_operation(call: Call, allowed: tuple[str, ...]) -> None:
    # QuickBooks selects delete/void/... with ?operation=; only plain writes are emulated.
    operation = call.params.get("operation")
    if operation is not None and operation.lower() not in allowed:
        raise errors.invalid_property(f"operation={operation} is not supported by the emulator")


def _with_time(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "time": errors.now_iso()}


def save_customer(store: Store, call: Call) -> dict[str, Any]:
    _check_operation(call, ("update",))
    return _with_time({"Customer": store.save_customer(_body(call))})


def save_item(store: Store, call: Call) -> dict[str, Any]:
    _check_operation(call, ("update",))
    return _with_time({"Item": store.save_item(_body(call))})


def save_invoice(store: Store, call: Call) -> dict[str, Any]:
    """Create an invoice; with ``?operation=delete`` delete the one the body names."""
    _check_operation(call, ("delete",))
    if (call.params.get("operation") or "").lower() == "delete":
        return _with_time({"Invoice": store.delete_invoice(_body(call))})
    return _with_time({"Invoice": store.create_invoice(_body(call))})


def _reader(entity: str) -> Handler:
    def read(store: Store, call: Call) -> dict[str, Any]:
        assert call.entity_id is not None
        return _with_time({entity: store.get(entity, call.entity_id)})

    return read


def company_info(store: Store, call: Call) -> dict[str, Any]:
    if call.entity_id != store.realm_id:
        raise errors.not_found("CompanyInfo", call.entity_id or "")
    return _with_time({"CompanyInfo": store.company_info()})


def preferences(store: Store, call: Call) -> dict[str, Any]:
    """``GET /preferences`` (developer.intuit.com, Accounting API, Preferences, "Read")."""
    return _with_time(
        {"Preferences": store.company.preferences(store.company_info()["MetaData"]["CreateTime"])}
    )


def run_query(store: Store, call: Call) -> dict[str, Any]:
    """GET ?query=... or POST with the statement as the body (Content-Type: application/text)."""
    text = call.params.get("query", "")
    if call.method == "POST" and call.body:
        try:
            text = call.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.query_parse("the query is not UTF-8 text") from exc
    parsed = query.parse(text)
    return _with_time({"QueryResponse": query.run(parsed, store.rows(parsed.entity))})


# (resource, has an id segment) -> method -> handler
ROUTES: dict[tuple[str, bool], dict[str, Handler]] = {
    ("companyinfo", True): {"GET": company_info},
    ("query", False): {"GET": run_query, "POST": run_query},
    ("customer", False): {"POST": save_customer},
    ("customer", True): {"GET": _reader("Customer")},
    ("item", False): {"POST": save_item},
    ("item", True): {"GET": _reader("Item")},
    ("invoice", False): {"POST": save_invoice},
    ("invoice", True): {"GET": _reader("Invoice")},
    ("preferences", False): {"GET": preferences},
    ("taxcode", True): {"GET": _reader("TaxCode")},
    ("taxrate", True): {"GET": _reader("TaxRate")},
}


def match(resource: str, has_id: bool) -> dict[str, Handler] | None:
    return ROUTES.get((resource.lower(), has_id))


def endpoints() -> list[str]:
    """``METHOD /v3/company/{realmId}/...`` for every route, for --list-endpoints."""
    lines: list[str] = []
    for (resource, has_id), methods in ROUTES.items():
        path = f"/v3/company/{{realmId}}/{resource}" + ("/{id}" if has_id else "")
        lines.extend(f"{method} {path}" for method in methods)
    return lines
