"""Routes of the v3 API slice an invoice exporter uses.

Each handler runs with the store lock held and returns ``(status, JSON value)`` or raises
:class:`~.errors.BillError`; login, sessions and limits are checked before (server.py).

    POST /v3/login                                     (server.py: no session needed)
    GET  /v3/login/session       POST /v3/logout
    GET  /v3/customers           POST /v3/customers          GET /v3/customers/{id}
    POST /v3/customers/{id}/archive|restore
    GET  /v3/classifications/items    POST /v3/classifications/items
    GET  /v3/classifications/items/{id}    POST /v3/classifications/items/{id}/archive|restore
    GET  /v3/invoices            POST /v3/invoices           GET /v3/invoices/{id}
    POST /v3/invoices/{id}/archive|restore

(https://developer.bill.com/docs/ar-customers, /docs/ar-invoices, /reference/createinvoice;
archive and restore: the v3 reference's "Archive an invoice" / "Restore an archived invoice";
items are general ledger classifications, /v3/classifications/items, as the changelog's
classification endpoints name them -- its 2024 entries said /v3/categories/....)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .access import Session
from .state import Store


@dataclass(frozen=True)
class Call:
    method: str
    parts: tuple[str, ...]  # the path after /v3/, split: ("invoices", "00e...", "archive")
    params: Mapping[str, str]
    body: Any
    session: Session


Handler = Callable[[Store, Call], tuple[int, Any]]

COLLECTIONS = {
    ("customers",): "customer",
    ("classifications", "items"): "item",
    ("invoices",): "invoice",
}


def _session_info(store: Store, call: Call) -> tuple[int, Any]:
    return 200, {
        "organizationId": call.session.organization_id,
        "userId": call.session.user_id,
    }


def _logout(store: Store, call: Call) -> tuple[int, Any]:
    return 200, {}


def route(method: str, parts: tuple[str, ...], create_status: int) -> Handler | None:
    """The handler for ``method`` on ``/v3/<parts>``; None for an unknown path or method."""
    if parts == ("login", "session") and method == "GET":
        return _session_info
    if parts == ("logout",) and method == "POST":
        return _logout
    for prefix, kind in COLLECTIONS.items():
        if parts[: len(prefix)] != prefix:
            continue
        rest = parts[len(prefix) :]
        if not rest:
            if method == "GET":
                return lambda store, call: (200, store.search(kind, dict(call.params)))
            if method == "POST":
                create = {
                    "customer": Store.create_customer,
                    "item": Store.create_item,
                    "invoice": Store.create_invoice,
                }[kind]
                return lambda store, call: (create_status, create(store, call.body))
            return None
        if len(rest) == 1 and method == "GET":
            return lambda store, call: (200, store.get(kind, rest[0]))
        if len(rest) == 2 and rest[1] in ("archive", "restore") and method == "POST":
            archived = rest[1] == "archive"
            return lambda store, call: (200, store.set_archived(kind, rest[0], archived))
        return None
    return None


def endpoints() -> list[str]:
    """For ``--list-endpoints``."""
    return [
        line.strip()
        for line in (__doc__ or "").splitlines()
        if line.strip().startswith(("GET", "POST"))
    ]


def not_routed(path: str) -> errors.BillError:
    return errors.unsupported_path(path)
