"""Google's error shape: ``{"error": {"code", "message", "status", "details"}}``.

Every Google REST API answers a failed request with this body, its HTTP status derived from
the canonical ``google.rpc.Code`` (https://cloud.google.com/apis/design/errors, "HTTP mapping";
the codes: https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto).
google-api-core builds its exception from it (`google.api_core.exceptions.from_http_response`:
class by HTTP status, message and details from the body), and so does googleapiclient's
HttpError (`_get_reason` reads error.message).
"""

from __future__ import annotations

import json
from typing import Any

from ..serving import Reply

JSON_CONTENT_TYPE = "application/json; charset=UTF-8"

# google.rpc.Code: name -> (number, HTTP status) per https://cloud.google.com/apis/design/errors.
RPC_CODES: dict[str, tuple[int, int]] = {
    "OK": (0, 200),
    "CANCELLED": (1, 499),
    "UNKNOWN": (2, 500),
    "INVALID_ARGUMENT": (3, 400),
    "DEADLINE_EXCEEDED": (4, 504),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "FAILED_PRECONDITION": (9, 400),
    "ABORTED": (10, 409),
    "OUT_OF_RANGE": (11, 400),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
    "DATA_LOSS": (15, 500),
    "UNAUTHENTICATED": (16, 401),
}

# The status an HTTP status stands for when a fault injects only the number.
_BY_HTTP: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def rpc_number(status: str) -> int:
    return RPC_CODES[status][0]


class GoogleError(Exception):
    """A whole request refused, rendered as Google's error body."""

    def __init__(
        self, status: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []

    @property
    def http_status(self) -> int:
        return RPC_CODES[self.status][1]

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def reply(self) -> Reply:
        return json_reply(self.http_status, self.body())


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}, body)


def for_status(http_status: int, message: str | None, retry_after: float | None) -> GoogleError:
    """The error an injected HTTP status stands for. A 429 carries a RetryInfo detail when the
    fault has a Retry-After (google.rpc.RetryInfo is how Google APIs say when to retry:
    https://github.com/googleapis/googleapis/blob/master/google/rpc/error_details.proto;
    UNCONFIRMED whether Service Control sets it, or a Retry-After header, on its 429s)."""
    status = _BY_HTTP.get(http_status, "INTERNAL" if http_status >= 500 else "INVALID_ARGUMENT")
    default = {
        "RESOURCE_EXHAUSTED": "Quota exceeded for quota metric 'Report requests' of service "
        "'servicecontrol.googleapis.com'.",
        "UNAVAILABLE": "The service is currently unavailable.",
        "UNAUTHENTICATED": "Request had invalid authentication credentials.",
        "PERMISSION_DENIED": "The caller does not have permission",
    }.get(status, f"Injected error {http_status}.")
    details: list[dict[str, Any]] = []
    if status == "RESOURCE_EXHAUSTED" and retry_after is not None:
        seconds = f"{retry_after:g}s"
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": seconds})
    error = GoogleError(status, message or default, details)
    return error
