"""QuickBooks-shaped API faults.

The Accounting API renders every failure as
``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}], "type": ...}, "time": ...}``.
``type`` names the class of failure (ValidationFault, AuthenticationFault, AuthorizationFault,
ThrottlingFault, SystemFault); ``code`` is a string; ``element`` appears only when the error
concerns one field. Codes and messages quoted in the brief are used as given; every other one is
marked UNCONFIRMED where it is defined.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..serving import retry_after_text

BUSINESS_VALIDATION = "A business validation error has occurred"


def now_iso() -> str:
    """The ``time`` field: local time with milliseconds and offset, as QuickBooks writes it."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class QuickBooksError(Exception):
    """An error that renders as a QuickBooks ``Fault`` response."""

    def __init__(
        self,
        status: int,
        fault_type: str,
        code: str,
        message: str,
        detail: str | None = None,
        element: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {message}: {detail}" if detail else f"{code} {message}")
        self.status = status
        self.fault_type = fault_type
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"Message": self.message}
        if self.detail is not None:
            error["Detail"] = self.detail
        error["code"] = self.code
        if self.element is not None:
            error["element"] = self.element
        return {"Fault": {"Error": [error], "type": self.fault_type}, "time": now_iso()}


def validation(
    code: str, message: str, detail: str | None = None, element: str | None = None
) -> QuickBooksError:
    # QuickBooks answers validation faults with HTTP 400 (older minor versions used 200).
    return QuickBooksError(400, "ValidationFault", code, message, detail, element)


def business(detail: str, element: str | None = None) -> QuickBooksError:
    """Code 6000, QuickBooks' catch-all business rule failure (lengths, formats, totals)."""
    return validation("6000", BUSINESS_VALIDATION, detail, element)


def required(element: str) -> QuickBooksError:
    # UNCONFIRMED: code 2020 and its wording for a missing required field.
    return validation(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        element,
    )


def invalid_property(detail: str, element: str | None = None) -> QuickBooksError:
    # UNCONFIRMED: code 2010 for malformed bodies and values of the wrong JSON type.
    return validation("2010", "Request has invalid or unsupported property", detail, element)


def not_found(entity: str, entity_id: str) -> QuickBooksError:
    # QuickBooks answers an unknown id with HTTP 400 and code 610, not with 404.
    return validation(
        "610", "Object Not Found", f"Object Not Found : {entity} {entity_id} does not exist"
    )


def invalid_reference(element: str, entity: str, entity_id: str, why: str) -> QuickBooksError:
    return validation(
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {entity} id {entity_id} {why}",
        element,
    )


def duplicate_name(element: str, name: str) -> QuickBooksError:
    return validation(
        "6240",
        "Duplicate Name Exists Error",
        f"The name supplied already exists. : Another object is already using the name {name!r}."
        " Please use a different name.",
        element,
    )


def stale_object(entity: str, entity_id: str, sync_token: str) -> QuickBooksError:
    return validation(
        "5010",
        "Stale Object Error",
        f"Stale Object Error : {entity} {entity_id} has SyncToken {sync_token}; "
        "someone else updated it first",
        "SyncToken",
    )


def duplicate_doc_number(doc_number: str, txn_id: str) -> QuickBooksError:
    return validation(
        "6140",
        "Duplicate Document Number Error",
        f"Duplicate Document Number Error : You must specify a different number. This number "
        f"has already been used. DocNumber={doc_number} is assigned to TxnType=Invoice with "
        f"TxnId={txn_id}",
        "DocNumber",
    )


def amount_mismatch(supplied: str) -> QuickBooksError:
    return validation(
        "6070",
        "Amount is not equal to UnitPrice * Qty",
        f"Amount is not equal to UnitPrice * Qty. Supplied value:{supplied}",
        "Amount",
    )


def query_parse(detail: str) -> QuickBooksError:
    return validation("4000", "Error parsing query", f"QueryParserError: {detail}")


def query_invalid(detail: str) -> QuickBooksError:
    # UNCONFIRMED: code 4001 for a query that parses but names an unknown property or entity.
    return validation("4001", "Invalid query", f"QueryValidationError: {detail}")


def authentication(why: str) -> QuickBooksError:
    return QuickBooksError(
        401,
        "AuthenticationFault",
        "3200",
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        why,
        headers={"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'},
    )


def authorization() -> QuickBooksError:
    return QuickBooksError(
        403,
        "AuthorizationFault",
        "3100",
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
    )


def throttled(retry_after: float | None) -> QuickBooksError:
    # UNCONFIRMED: the body; Intuit documents HTTP 429 but neither this text nor a Retry-After.
    headers = {"Retry-After": retry_after_text(retry_after)} if retry_after is not None else {}
    return QuickBooksError(
        429,
        "ThrottlingFault",
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached.",
        headers=headers,
    )


def system(status: int, message: str | None = None) -> QuickBooksError:
    # UNCONFIRMED: QuickBooks' 5xx bodies vary (gateway pages, SystemFault); this is the JSON one.
    return QuickBooksError(
        status,
        "SystemFault",
        "10000",
        message or "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred",
    )


def unsupported_operation(status: int, detail: str) -> QuickBooksError:
    # UNCONFIRMED: the body QuickBooks sends for an unknown URL (404) or wrong method (405).
    return QuickBooksError(status, "ValidationFault", "114", "Unsupported Operation", detail)


def for_status(status: int, message: str | None = None) -> QuickBooksError:
    """The body of an injected ``status`` fault, shaped like QuickBooks' own for that status."""
    if status == 429:
        err = throttled(None)
    elif status == 401:
        err = authentication("Token invalid")
    elif status == 403:
        err = authorization()
    elif status >= 500:
        err = system(status, message)
    else:
        err = validation("6000", BUSINESS_VALIDATION, message or "Injected fault")
    err.status = status
    if message is not None:
        err.message = message
    return err
