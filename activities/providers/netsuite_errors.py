"""NetSuite's REST error bodies, and what billbridge does about each.

Every error is ``{"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode",
"o:errorPath"}]}`` ("Error Handling in REST Web Services",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_156570709583.html). The
decision, per status and code (and for invalid references, per ``o:errorPath``):

=========================================  ====================================================
what NetSuite answers                      billbridge's error (core/errors.py), decision
=========================================  ====================================================
429, or 400 SSS_REQUEST_LIMIT_EXCEEDED     ProviderRateLimited: retried (the client first waits
(the account's concurrency limit)          and retries itself, netsuite_http.py)
401 INVALID_LOGIN right after successes    retried once after a pause (NetSuite has been seen
                                           answering overload so); a bearer token is renewed once
401 INVALID_LOGIN that persists            ProviderAuthFailed: needs attention (credentials)
403 INSUFFICIENT_PERMISSION (any 403)      ProviderAuthFailed: needs attention (the role lacks a
                                           permission)
400 INVALID_CONTENT / USER_ERROR at        ProviderItemMissing: needs attention (the mapping
``item.items[n].item``                     names an item NetSuite does not have)
... at ``entity``                          ProviderCustomerMissing: needs attention
... at ``currency`` or ``subsidiary``      ProviderSetupNeeded: needs attention (the account's
                                           currencies or the connection's subsidiary)
any other 400 (INVALID_CONTENT, USER_ERROR ProviderRejected (NetSuiteRejected): not retried:
on our data, NONEXISTENT_FIELD,            our data is invalid
INVALID_PARAMETER, IDEMPOTENCY_ERROR),
404 on a write
404 on a read                              NotFound: the caller decides (a missing customer,
                                           an invoice not yet written)
5xx, timeouts, dropped connections         ProviderUnavailable: retried
=========================================  ====================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from billbridge.core.errors import (
    ExportError,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderItemMissing,
    ProviderRateLimited,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderUnavailable,
    retry_after,
)

# NetSuite documents no Retry-After for REST; a concurrency refusal passes within seconds.
DEFAULT_RETRY_AFTER = timedelta(seconds=5)
ITEM_PATH = re.compile(r"item\.items\[(\d+)\]\.item$")
REFERENCE_CODES = frozenset(
    {"INVALID_CONTENT", "USER_ERROR", "INVALID_FIELD_VALUE", "INVALID_KEY_OR_REF"}
)
CONCURRENCY_CODES = frozenset({"SSS_REQUEST_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED"})
CHECK_CREDENTIALS = (
    "check the connection's NetSuite credential (account id, integration, certificate or "
    "token, and the role's REST web services permission), then `billbridge connections add "
    "netsuite ...` again"
)


@dataclass(frozen=True)
class ErrorDetail:
    code: str
    detail: str
    path: str

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.code}{where}: {self.detail}" if self.code else self.detail


def details(body: Any) -> list[ErrorDetail]:
    """The ``o:errorDetails`` of an error body (empty when the body is not one)."""
    if not isinstance(body, dict):
        return []
    found = body.get("o:errorDetails")
    if not isinstance(found, list):
        return []
    return [
        ErrorDetail(
            str(d.get("o:errorCode") or ""),
            str(d.get("detail") or ""),
            str(d.get("o:errorPath") or ""),
        )
        for d in found
        if isinstance(d, dict)
    ]


class NotFound(Exception):
    """404 on a read: the record does not exist (the caller knows what that means)."""


class NetSuiteRejected(ProviderRejected):
    """NetSuite refused our data (400): never retried. Carries the first error's code and path."""

    def __init__(self, message: str, code: str = "", path: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.path = path

    @property
    def type_name(self) -> str:  # the retry decision of ProviderRejected
        return ProviderRejected.__name__


def is_concurrency_refusal(status: int, found: list[ErrorDetail]) -> bool:
    return status == 429 or any(d.code in CONCURRENCY_CODES for d in found)


def classify(
    status: int, body: Any, headers: Any, doing: str, *, reading: bool = False
) -> ExportError | NotFound:
    """The error for a non-2xx answer (see the table above). 401s reach here only once the
    client's own retries are spent."""
    found = details(body)
    text = "; ".join(str(d) for d in found) or f"HTTP {status}"
    message = f"NetSuite {doing}: {text}"
    if is_concurrency_refusal(status, found):
        return ProviderRateLimited(
            f"{message} (over the account's concurrency limit)",
            retry_after(headers.get("Retry-After"), DEFAULT_RETRY_AFTER),
        )
    if status >= 500:
        return ProviderUnavailable(message)
    if status in (401, 403) or any(
        d.code in ("INVALID_LOGIN", "INSUFFICIENT_PERMISSION") for d in found
    ):
        return ProviderAuthFailed(f"{message}; {CHECK_CREDENTIALS}")
    if status == 404 and reading:
        return NotFound(message)
    first = found[0] if found else ErrorDetail("", "", "")
    if status == 400 and first.code in REFERENCE_CODES:
        if ITEM_PATH.fullmatch(first.path):
            return ProviderItemMissing(
                f"{message}; the item mapped for that line is not an active NetSuite item: fix the "
                "mapping (`billbridge mappings set netsuite ...`)"
            )
        if first.path == "entity":
            return ProviderCustomerMissing(
                f"{message}; the NetSuite customer does not exist or is inactive: set the "
                "customer's payment_provider_id to its internal id"
            )
        if first.path in ("currency", "subsidiary"):
            return ProviderSetupNeeded(
                f"{message}; set up the currency in NetSuite (Lists > Accounting > Currencies) "
                "and the connection's subsidiary (`billbridge connections set netsuite "
                "netsuite_subsidiary=<internal id>`)"
            )
    return NetSuiteRejected(message, first.code, first.path)
