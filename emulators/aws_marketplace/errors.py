"""awsJson 1.1 errors as AWS Marketplace Metering answers them.

The body is ``{"__type": "<ExceptionName>", "message": "..."}``: botocore's JSON parser reads the
error code from ``__type`` (dropping any ``namespace#`` prefix) and the text from ``message``
(botocore/parsers.py, BaseJSONParser._do_error_parse). Statuses: the service's modeled
exceptions are client errors (HTTP 400) except InternalServiceErrorException, the only one
marked ``"fault": true`` in botocore's model (HTTP 500)
(botocore/data/meteringmarketplace/2016-01-14/service-2.json); ThrottlingException is 400 as in
AWS's common errors (https://docs.aws.amazon.com/marketplace/latest/APIReference/CommonErrors.html).
UNCONFIRMED: the per-error statuses of
https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html
("Errors") could not be read here; botocore decides by ``__type``, not by status, except that
any status >= 500 is a server error to its retry logic.
"""

from __future__ import annotations

import json
from typing import Any

from ..serving import Reply

CONTENT_TYPE = "application/x-amz-json-1.1"


class AwsError(Exception):
    """An error that renders as an awsJson error response."""

    def __init__(self, type_name: str, message: str, status: int = 400) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"__type": self.type_name, "message": self.message}

    def reply(self, request_id: str) -> Reply:
        return Reply(
            self.status,
            {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id},
            json.dumps(self.body()).encode(),
        )


# --- authentication (Coral's common errors; the exact texts are those AWS JSON services send,
# e.g. DynamoDB/Cognito: {"__type":"UnrecognizedClientException","message":"The security token
# included in the request is invalid."} with 400 (aws/aws-sdk-php#2444, aws/aws-sdk-js#284).
# UNCONFIRMED for this service specifically: no public trace of metering's own answer.


def missing_authentication() -> AwsError:
    return AwsError("MissingAuthenticationTokenException", "Missing Authentication Token")


def unrecognized_client() -> AwsError:
    return AwsError(
        "UnrecognizedClientException", "The security token included in the request is invalid."
    )


def invalid_signature(detail: str | None = None) -> AwsError:
    return AwsError(
        "InvalidSignatureException",
        detail
        or "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details.",
    )


def incomplete_signature(detail: str) -> AwsError:
    # https://docs.aws.amazon.com/marketplace/latest/APIReference/CommonErrors.html
    # IncompleteSignature: 400.
    return AwsError("IncompleteSignatureException", detail)


# --- request shape (Coral's validation errors; UNCONFIRMED wording for this service) -----------


def validation(messages: list[str]) -> AwsError:
    count = len(messages)
    noun = "error" if count == 1 else "errors"
    return AwsError(
        "ValidationException", f"{count} validation {noun} detected: " + "; ".join(messages)
    )


def serialization(detail: str) -> AwsError:
    return AwsError("SerializationException", detail)


def unknown_operation(target: str) -> AwsError:
    return AwsError("UnknownOperationException", f"Unknown operation {target!r}")


# --- the service's modeled exceptions -----------------------------------------------------------


def internal(message: str | None = None, status: int = 500) -> AwsError:
    return AwsError(
        "InternalServiceErrorException",
        message or "An internal error has occurred. Retry your request.",
        status,
    )


def throttling(message: str | None = None) -> AwsError:
    # ThrottlingException: 400 (CommonErrors.html and the BatchMeterUsage "Errors" list).
    return AwsError("ThrottlingException", message or "Rate exceeded")


def for_injected_status(status: int, message: str | None) -> AwsError:
    """What an injected ``status`` fault answers: 429 (and 400) as AWS throttles (400
    ThrottlingException: AWS never sends 429 here), 403 AccessDeniedException, anything else
    an InternalServiceErrorException with that status (500/503: a server-side failure)."""
    if status in (400, 429):
        return throttling(message)
    if status == 403:
        return AwsError("AccessDeniedException", message or "Access denied", 403)
    return internal(message, status)
