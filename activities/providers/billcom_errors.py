"""BILL (Bill.com) v3 error bodies and the retry decision of every BDC_* code billbridge meets.

BILL answers a failed v3 call with HTTP 4xx/5xx and a list body
(https://developer.bill.com/docs/common-api-error-codes):

    [{"timestamp": "...", "code": "BDC_1109", "severity": "ERROR",
      "category": "REQUEST|APPLICATION|SERVER|DOWNSTREAM", "message": "Session is invalid..."}]

The HTTP status of the rate-limit codes (BDC_1144, BDC_1322) is not documented (one client
reports a 4xx, not 429), so every decision below branches on `code` first and on the status only
for bodies without a known code. The table is the written-down decision:

    retryable        BDC_1001 (system error), BDC_1002 with a 5xx, BDC_1322 (concurrency),
                     BDC_1144 (hourly limit: wait for the next hour), 429, 5xx, unreadable bodies
    needs attention  BDC_1101, BDC_1102 (credentials; also keys of the other environment),
                     a missing or archived customer or item (decided by the caller, which knows
                     what it asked for: BILL's codes for those are not documented)
    not retryable    everything else BILL refuses as a bad request (invalid data, BDC_1121
                     unsupported path, BDC_1122 JSON parse error, BDC_1002 with a 4xx: BILL's
                     directions for it are "confirm whether a parameter is unknown or misspelt",
                     which no retry fixes)

BDC_1109 (session invalid) is not an outcome: the client logs in again and sends the request once
more (billcom_client.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from billbridge.core.errors import (
    ExportError,
    ProviderAuthFailed,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    retry_after,
)

SESSION_INVALID = "BDC_1109"
# "User name and/or password do not match our records." / "Developer key is invalid." (also the
# keys of the other environment): https://developer.bill.com/docs/faq
BAD_CREDENTIALS = "BDC_1101"
BAD_DEV_KEY = "BDC_1102"
# "System error occurred." / "Unknown error occurred." -- for both: "Confirm whether a parameter
# is unknown or misspelt parameter in the API request" (https://developer.bill.com/docs/
# common-api-error-codes). A system error is retried; an unknown one only when BILL's status says
# the server failed (5xx), since with a 4xx it points at the request itself.
SYSTEM_ERROR = "BDC_1001"
UNKNOWN_ERROR = "BDC_1002"
# "Max number of allowed requests per hour reached: 20000." -- "All subsequent API requests must
# wait until the beginning of the next hour"; also the login cap (200/hour):
# https://developer.bill.com/docs/api-rate-limits
HOURLY_LIMIT = "BDC_1144"
# "Max number of concurrent requests per organization reached." -- "All subsequent API requests
# fail until one concurrent request is completed": https://developer.bill.com/docs/api-rate-limits
CONCURRENCY_LIMIT = "BDC_1322"
UNSUPPORTED_PATH = "BDC_1121"
JSON_PARSE_ERROR = "BDC_1122"

# A request refused for concurrency is tried again this much later: one of the three requests in
# flight will have completed (BILL answers in well under a second when healthy).
CONCURRENCY_RETRY_AFTER = timedelta(seconds=2)
# BILL documents no Retry-After; a 429 without one waits this long.
DEFAULT_RETRY_AFTER = timedelta(seconds=30)
# After the hour turns, a little more, so that a retry never lands in the closing second.
NEXT_HOUR_MARGIN = timedelta(seconds=5)

NEEDS_ATTENTION_CODES = frozenset({BAD_CREDENTIALS, BAD_DEV_KEY})


@dataclass(frozen=True)
class BdcError:
    """One entry of a BILL error body."""

    code: str
    message: str
    category: str = ""
    severity: str = ""

    def __str__(self) -> str:
        return f"{self.code} {self.message}".strip()


def parse_errors(body: Any) -> list[BdcError]:
    """The entries of a v3 error body; [] for anything else (a success, a proxy's HTML page).

    A single object with a `code` is read too: a gateway in front of BILL may not wrap it.
    """
    entries = [body] if isinstance(body, Mapping) else body
    if not isinstance(entries, list):
        return []
    found = []
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("code"), str):
            found.append(
                BdcError(
                    code=str(entry["code"]),
                    message=str(entry.get("message") or ""),
                    category=str(entry.get("category") or ""),
                    severity=str(entry.get("severity") or ""),
                )
            )
    return found


class BillcomRejected(ProviderRejected):
    """BILL refused the request as invalid (a 4xx with a code the table does not retry).

    Carries the HTTP status and BDC code so a caller that knows what it asked for can tell a
    missing object (404) from bad data. Never retried (the decision of ProviderRejected)."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def type_name(self) -> str:
        return ProviderRejected.__name__


def until_next_hour(now: datetime) -> timedelta:
    """From `now` to the beginning of the next clock hour (UTC), plus a margin.

    UNCONFIRMED: that BILL's hour is the clock hour ("wait until the beginning of the next hour")
    rather than a rolling one; waiting for the clock hour is right for both readings only if the
    rolling hour started at most an hour ago, which the client's own budget keeps true.
    """
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start + timedelta(hours=1) - now.astimezone(UTC) + NEXT_HOUR_MARGIN


def error_for(
    doing: str,
    status: int,
    errors: list[BdcError],
    headers: Mapping[str, str],
    now: datetime,
) -> ExportError:
    """The export error a failed BILL answer stands for (see the table at the top)."""
    first = errors[0] if errors else None
    code = first.code if first else ""
    text = f"BILL {doing}: " + ("; ".join(str(e) for e in errors) or f"HTTP {status}")
    if code == HOURLY_LIMIT:
        wait = until_next_hour(now)
        return ProviderRateLimited(f"{text} (waiting for the next hour: {wait})", wait)
    if code == CONCURRENCY_LIMIT:
        return ProviderRateLimited(
            text, retry_after(headers.get("retry-after"), CONCURRENCY_RETRY_AFTER)
        )
    if code in NEEDS_ATTENTION_CODES:
        hint = (
            "check the devKey (each BILL environment has its own keys)"
            if code == BAD_DEV_KEY
            else "check the username, password and organizationId"
        )
        return ProviderAuthFailed(
            f"{text}; {hint}, then `billbridge connections add bill.com --api-key-file FILE`"
        )
    if code == SYSTEM_ERROR or (code == UNKNOWN_ERROR and status >= 500):
        return ProviderUnavailable(text)
    if code == UNKNOWN_ERROR:
        return BillcomRejected(
            f"{text} (BILL: confirm whether a parameter is unknown or misspelt)", status, code
        )
    if status == 429:
        return ProviderRateLimited(
            text, retry_after(headers.get("retry-after"), DEFAULT_RETRY_AFTER)
        )
    if status >= 500:
        return ProviderUnavailable(text)
    if status in (401, 403):
        return ProviderAuthFailed(f"{text}; check the connection's BILL credentials")
    return BillcomRejected(text, status, code)
