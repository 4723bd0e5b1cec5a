"""Stripe-shaped API errors.

Stripe renders every failure as ``{"error": {...}}`` with ``type``, ``message`` and, when they
apply, ``code``, ``param`` and ``doc_url`` (absent keys are omitted, not null), plus
``request_log_url``. The HTTP status carries the class of failure (400, 401, 404, 409, 429, 5xx).
"""

from __future__ import annotations

import time
from typing import Any

DOC_URL_BASE = "https://stripe.com/docs/error-codes/"
REQUEST_LOG_URL = "https://dashboard.stripe.com/test/logs/{request_id}?t={ts}"


class StripeError(Exception):
    """An error that renders as a Stripe API error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = DOC_URL_BASE + self.code
        err["message"] = self.message
        if self.param is not None:
            err["param"] = self.param
        err["request_log_url"] = REQUEST_LOG_URL.format(request_id=request_id, ts=int(time.time()))
        err["type"] = self.type
        return {"error": err}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def unknown(param: str) -> StripeError:
    return StripeError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def invalid_empty(param: str) -> StripeError:
    return StripeError(
        400,
        f"You passed an empty string for '{param}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{param}' cannot be unset. You should remove '{param}' "
        "from your request or supply a non-empty value.",
        code="parameter_invalid_empty",
        param=param,
    )


def exclusive(*params: str, path: str | None = None) -> StripeError:
    return StripeError(
        400,
        "You may only specify one of these parameters: " + ", ".join(params) + ".",
        code="parameters_exclusive",
        param=path or params[0],
    )


def no_such(kind: str, object_id: str, param: str | None = None) -> StripeError:
    """``resource_missing``: 404 when the id is in the URL, 400 when it was passed as a param."""
    return StripeError(
        404 if param is None else 400,
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param if param is not None else "id",
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or "
        "we can help at https://support.stripe.com/.",
    )


def api_error(message: str | None = None) -> StripeError:
    return StripeError(
        500,
        message
        or "Sorry, something went wrong. We've already been notified of the problem, but if "
        "you need any help, you can reach us at https://support.stripe.com/contact/.",
        type="api_error",
    )


RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


def rate_limited(message: str | None = None) -> StripeError:
    return StripeError(
        429,
        message or RATE_LIMIT_MESSAGE,
        code="rate_limit",
        headers={"Stripe-Rate-Limited-Reason": "global-rate"},
    )


def for_status(status: int, message: str | None = None) -> StripeError:
    """A plausible Stripe error for an arbitrary injected HTTP status."""
    if status == 429:
        return rate_limited(message)
    if status >= 500:
        err = api_error(message)
        err.status = status
        return err
    if status == 401:
        return StripeError(401, message or "Invalid API Key provided.")
    if status == 402:
        return StripeError(
            402, message or "Your card was declined.", type="card_error", code="card_declined"
        )
    if status == 404:
        return StripeError(404, message or "No such object.", code="resource_missing")
    if status == 409:
        return StripeError(
            409,
            message
            or "There is currently another in-progress request using this idempotent key "
            "(that probably means you submitted twice, and the other request is still going "
            "through). Please try again later.",
            type="idempotency_error",
            code="idempotency_key_in_use",
        )
    return StripeError(status, message or "Injected error.")
