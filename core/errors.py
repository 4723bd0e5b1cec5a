"""Every error an export step can raise, each with its retry decision written down.

Non-retryable errors are problems a retry cannot fix (bad data, a missing mapping, a provider
that rejects the request); the workflow lists their type names in its retry policies. Retryable
errors are passing conditions (rate limits, outages) that durable execution outlasts; a rate
limit carries the provider's Retry-After so the next attempt waits exactly that long.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from temporalio.exceptions import ApplicationError


class ExportError(Exception):
    """Base of billbridge's export errors; `type_name` is the Temporal error type."""

    retryable: ClassVar[bool] = False

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def to_application_error(self) -> ApplicationError:
        return ApplicationError(
            str(self),
            type=self.type_name,
            non_retryable=not self.retryable,
            next_retry_delay=getattr(self, "retry_after", None),
        )


# --- never retried: a person or the billing system must change something ---------------------


class InvalidInvoice(ExportError):
    """The stored invoice is missing or its amounts do not add up."""


class UnknownCustomer(ExportError):
    """The invoice's customer was never upserted into billbridge."""


class UnmappedItems(ExportError):
    """Billing items (or adjustment kinds) with no provider item mapped; lists every one."""


class ProviderItemMissing(ExportError):
    """A mapped provider item (product/price) does not exist at the provider."""


class ProviderCustomerMissing(ExportError):
    """The customer's payment_provider_id does not exist (or was deleted) at the provider."""


class ConnectionDisabled(ExportError):
    """The customer's connection is disabled; enabling it lets waiting exports go on."""


class TotalMismatch(ExportError):
    """What the provider would hold differs from the billing totals: a bug, nothing is written."""


class ProviderRejected(ExportError):
    """The provider refused the request as invalid (HTTP 400/404/idempotency conflict)."""


class ProviderAuthFailed(ExportError):
    """The provider refused the credentials (HTTP 401/403)."""


class ProviderLimitExceeded(ExportError):
    """The invoice exceeds a hard limit of the provider that consolidation cannot meet."""


class ProviderInvoiceMissing(ExportError):
    """The invoice an earlier attempt issued at the provider is gone there (deleted, another
    account, lost data): it may already be with the customer, so a person must decide."""


# What a person can fix: the export waits (needs attention) instead of failing.
NEEDS_ATTENTION = frozenset(
    cls.__name__
    for cls in (
        UnmappedItems,
        ProviderItemMissing,
        ProviderCustomerMissing,
        ProviderInvoiceMissing,
        ProviderAuthFailed,
        ConnectionDisabled,
        UnknownCustomer,
    )
)


# --- retried: passing conditions ----------------------------------------------------------------


class ProviderRateLimited(ExportError):
    """HTTP 429. Retried after the provider's Retry-After (or a default back-off)."""

    retryable = True

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after(value: str | None, default: timedelta) -> timedelta:
    """A Retry-After header in seconds (the form providers send); `default` when absent or
    unreadable, so a rate limit is never retried at once."""
    try:
        return timedelta(seconds=max(float(value), 0.0)) if value else default
    except ValueError:
        return default


class ProviderUnavailable(ExportError):
    """5xx, timeouts, dropped connections, lock conflicts. Retried with back-off."""

    retryable = True


# The workflow's retry policies list these as non-retryable.
NON_RETRYABLE = sorted(cls.__name__ for cls in ExportError.__subclasses__() if not cls.retryable)
