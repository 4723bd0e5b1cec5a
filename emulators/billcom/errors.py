"""BILL v3 error bodies.

Every failure is an HTTP 4xx/5xx whose body is a list of
``{"timestamp", "code": "BDC_...", "severity", "category", "message"}``
(https://developer.bill.com/docs/common-api-error-codes). Codes and messages quoted there, in
https://developer.bill.com/docs/faq and in https://developer.bill.com/docs/api-rate-limits are
used as given. BILL has over 525 codes (``/v2/Errors.json`` in the sandbox) and documents neither
the codes of its validation and not-found refusals nor the HTTP status of most codes: those are
marked UNCONFIRMED where they are defined, and clients should not branch on them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

CATEGORIES = ("REQUEST", "APPLICATION", "SERVER", "DOWNSTREAM")

# Documented codes with their documented messages.
SYSTEM = ("BDC_1001", "System error occurred.")
UNKNOWN = ("BDC_1002", "Unknown error occurred.")
BAD_CREDENTIALS = ("BDC_1101", "User name and/or password do not match our records.")
BAD_DEV_KEY = ("BDC_1102", "Developer key is invalid.")
SESSION_INVALID = ("BDC_1109", "Session is invalid.  Please log in.")
UNSUPPORTED_PATH = ("BDC_1121", "API not supported.")
HOURLY_LIMIT = ("BDC_1144", "Max number of allowed requests per hour reached: {limit}.")
CONCURRENCY_LIMIT = ("BDC_1322", "Max number of concurrent requests per organization reached.")
# UNCONFIRMED: the contract names BDC_1122 a JSON parse error; its message is the emulator's.
JSON_PARSE = ("BDC_1122", "Unable to parse the request body as JSON.")
# UNCONFIRMED codes: the emulator's own, for refusals BILL documents no code for.
INVALID_VALUE = "BDC_1000"
NOT_FOUND = "BDC_1125"
DUPLICATE_NUMBER = "BDC_1310"
CURRENCY_NOT_ENABLED = "BDC_1311"


def timestamp(now: datetime | None = None) -> str:
    """``2024-12-25T00:00:00.000+00:00``, the form of the documented examples."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")


class BillError(Exception):
    """A refusal rendered as BILL's error list."""

    def __init__(self, status: int, code: str, message: str, category: str = "REQUEST") -> None:
        super().__init__(f"{code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.category = category

    def body(self, now: datetime | None = None) -> bytes:
        entry: dict[str, Any] = {
            "timestamp": timestamp(now),
            "code": self.code,
            "severity": "ERROR",
            "category": self.category,
            "message": self.message,
        }
        return json.dumps([entry]).encode()


def documented(status: int, pair: tuple[str, str], category: str = "REQUEST") -> BillError:
    return BillError(status, pair[0], pair[1], category)


def session_invalid() -> BillError:
    # The documented example answers BDC_1109 with category DOWNSTREAM. UNCONFIRMED: HTTP 401.
    return documented(401, SESSION_INVALID, "DOWNSTREAM")


def hourly_limit(status: int, limit: int) -> BillError:
    code, message = HOURLY_LIMIT
    return BillError(status, code, message.format(limit=limit), "DOWNSTREAM")


def concurrency_limit(status: int) -> BillError:
    return documented(status, CONCURRENCY_LIMIT, "DOWNSTREAM")


def invalid(message: str) -> BillError:
    """Bad data in a request (UNCONFIRMED: code and HTTP 400)."""
    return BillError(400, INVALID_VALUE, message)


def unknown_field(where: str, name: str) -> BillError:
    # "Confirm whether a parameter is unknown or misspelt parameter in the API request"
    # (https://developer.bill.com/docs/common-api-error-codes, BDC_1002). UNCONFIRMED: HTTP 400.
    return BillError(400, UNKNOWN[0], f"{UNKNOWN[1]} Unknown parameter {name!r} in {where}.")


def not_found(kind: str, object_id: str) -> BillError:
    """UNCONFIRMED: code and message; HTTP 404 for an object that does not exist."""
    return BillError(404, NOT_FOUND, f"{kind} {object_id} not found.")


def unsupported_path(path: str) -> BillError:
    # "If the HTTP status code of the response is 404, confirm that you have the correct
    # endpoint path" (https://developer.bill.com/docs/faq, BDC_1121).
    code, message = UNSUPPORTED_PATH
    return BillError(404, code, f"{message} ({path})")


def for_injected_status(status: int, message: str | None) -> BillError:
    """The body of an injected ``status`` fault: a message starting with a code ("BDC_1144",
    "BDC_1101 custom text") picks that code; otherwise the code follows the status (5xx: system
    error, 401: session invalid, 404: unsupported path, 429: concurrency limit -- BILL documents
    no 429, UNCONFIRMED -- anything else: unknown error)."""
    text = (message or "").strip()
    if text.startswith("BDC_"):
        code, _, rest = text.partition(" ")
        documented_codes = (SYSTEM, UNKNOWN, BAD_CREDENTIALS, BAD_DEV_KEY, SESSION_INVALID)
        known = dict((*documented_codes, UNSUPPORTED_PATH, CONCURRENCY_LIMIT, JSON_PARSE))
        default = HOURLY_LIMIT[1].format(limit=20000) if code == HOURLY_LIMIT[0] else ""
        return BillError(status, code, rest or known.get(code, default) or "Injected error.")
    if status >= 500:
        return BillError(status, SYSTEM[0], text or SYSTEM[1], "SERVER")
    if status == 401:
        return BillError(status, SESSION_INVALID[0], text or SESSION_INVALID[1], "DOWNSTREAM")
    if status == 404:
        return BillError(status, UNSUPPORTED_PATH[0], text or UNSUPPORTED_PATH[1])
    if status == 429:
        return BillError(status, CONCURRENCY_LIMIT[0], text or CONCURRENCY_LIMIT[1], "DOWNSTREAM")
    return BillError(status, UNKNOWN[0], text or UNKNOWN[1])
