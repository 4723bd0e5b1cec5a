"""NetSuite-shaped REST errors.

Every failure of SuiteTalk REST web services is rendered as
``{"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode", "o:errorPath"}]}``
("Error Handling in REST Web Services",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_156570709583.html: the
INVALID_LOGIN body for a refused login and the INVALID_CONTENT body with
``"o:errorPath": "item.items[0].item"`` for an invalid item reference are quoted from there).
``o:errorPath`` appears only when the error concerns one field. Codes and wordings the page does
not show are marked UNCONFIRMED where they are made.
"""

from __future__ import annotations

from typing import Any

RFC2616 = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html"
# The `type` of each status: the 401 and 400 values are the documented ones; the others follow
# the same pattern (UNCONFIRMED), 429 pointing at RFC 6585, where the status is defined.
TYPES = {
    400: f"{RFC2616}#sec10.4.1",
    401: RFC2616,
    403: f"{RFC2616}#sec10.4.4",
    404: f"{RFC2616}#sec10.4.5",
    405: f"{RFC2616}#sec10.4.6",
    415: f"{RFC2616}#sec10.4.16",
    429: "https://www.rfc-editor.org/rfc/rfc6585#section-4",
    500: f"{RFC2616}#sec10.5.1",
    502: f"{RFC2616}#sec10.5.3",
    503: f"{RFC2616}#sec10.5.4",
    504: f"{RFC2616}#sec10.5.5",
}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
INVALID_LOGIN_DETAIL = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)


class NetSuiteError(Exception):
    """An error that renders as a NetSuite REST error response."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.path = path
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"detail": self.detail, "o:errorCode": self.code}
        if self.path is not None:
            detail["o:errorPath"] = self.path
        return {
            "type": TYPES.get(self.status, RFC2616),
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "o:errorDetails": [detail],
        }


def invalid_login() -> NetSuiteError:
    """401 INVALID_LOGIN, as documented (every refused token, signature or nonce)."""
    return NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN_DETAIL)


def invalid_value(value: object, field: str, path: str) -> NetSuiteError:
    """400 INVALID_CONTENT for a reference to a record that does not exist or is inactive, in
    the documented wording ("You have entered an Invalid Field Value 9999 for the following
    field: item")."""
    return NetSuiteError(
        400,
        "INVALID_CONTENT",
        "Error while accessing resource: You have entered an Invalid Field Value "
        f"{value} for the following field: {field}",
        path,
    )


def user_error(detail: str, path: str | None = None) -> NetSuiteError:
    # UNCONFIRMED: the code USER_ERROR for a business rule (a missing mandatory field); it is
    # among the codes the contract notes list for 400s.
    return NetSuiteError(400, "USER_ERROR", f"Error while accessing resource: {detail}", path)


def invalid_parameter(detail: str, path: str | None = None) -> NetSuiteError:
    return NetSuiteError(400, "INVALID_PARAMETER", detail, path)


def nonexistent_field(field: str) -> NetSuiteError:
    # UNCONFIRMED wording; the code NONEXISTENT_FIELD is among the documented 400 codes.
    return NetSuiteError(
        400, "NONEXISTENT_FIELD", f"Invalid field name: {field}. Provide a valid field name.", field
    )


def not_found(detail: str = "The record instance does not exist.") -> NetSuiteError:
    # UNCONFIRMED: the code NONEXISTENT_ID (the status, 404, is HTTP's own for a missing
    # resource). Clients should decide on the status.
    return NetSuiteError(
        404, "NONEXISTENT_ID", f"{detail} Provide a valid record instance ID.", "id"
    )


def not_allowed(method: str, path: str) -> NetSuiteError:
    return NetSuiteError(405, "METHOD_NOT_ALLOWED", f"{method} is not supported on {path}.")


def insufficient_permission(detail: str) -> NetSuiteError:
    return NetSuiteError(403, "INSUFFICIENT_PERMISSION", detail)


def concurrency_exceeded(status: int) -> NetSuiteError:
    """The answer over the account's concurrency limit. REST's own answer is undocumented
    ("Concurrency Governance and Session Management",
    https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/subsect_1559222360.html, says
    only that every request counts toward the account limit); 429 is reported in the field, and so
    is 401 INVALID_LOGIN under overload. Which one the emulator sends is configurable
    (UNCONFIRMED either way), and the 429 body's code is UNCONFIRMED."""
    if status == 401:
        return invalid_login()
    return NetSuiteError(
        429,
        "CONCURRENCY_LIMIT_EXCEEDED",
        "The request could not be processed: the account's concurrency limit was exceeded.",
    )


def for_status(status: int, message: str | None) -> NetSuiteError:
    """An injected fault's error for its status (tests pick the status)."""
    if status == 401:
        return invalid_login()
    if status == 429:
        error = concurrency_exceeded(429)
        if message:
            error.detail = message
        return error
    code = "UNEXPECTED_ERROR" if status >= 500 else "INVALID_PARAMETER"  # UNCONFIRMED codes
    return NetSuiteError(status, code, message or TITLES.get(status, "Error"))
