"""Every error an export step can raise, each with its retry decision written down.

Non-retryable errors are problems a retry cannot fix (bad data, a missing mapping, a provider
that rejects the request); the workflow lists their type names in its retry policies. Retryable
errors are passing conditions (rate limits, outages) that durable execution outlasts; a rate
limit carries the provider's Retry-After so the next attempt waits exactly that long.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError


class ExportError(Exception):
    """Base of billbridge's export errors; `type_name` is the Temporal error type.

    `provider` and `customer_id`, when the step that raised knew them, travel with the error
    (as its details) so that an export that waits for a fix is listed under the right
    connection and customer, and a fix signals exactly the exports it concerns.
    """

    retryable: ClassVar[bool] = False
    provider: str = ""
    customer_id: str = ""
    connection_id: str = ""

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def to_application_error(self) -> ApplicationError:
        return ApplicationError(
            str(self),
            ErrorContext(
                provider=self.provider,
                customer_id=self.customer_id,
                connection_id=self.connection_id,
            ).model_dump(),
            type=self.type_name,
            non_retryable=not self.retryable,
            next_retry_delay=getattr(self, "retry_after", None),
        )


class ErrorContext(BaseModel):
    """The details of an export error's ApplicationError: where it happened."""

    provider: str = ""
    customer_id: str = ""
    connection_id: str = ""

    @classmethod
    def of(cls, error: ApplicationError) -> ErrorContext:
        """The context an error carries; empty for errors raised before it existed."""
        details = error.details
        if details and isinstance(details[0], dict):
            try:
                return cls.model_validate(details[0])
            except ValueError:
                pass
        return cls()


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


class ConnectionAmbiguous(ExportError):
    """Several connections export to the customer's provider and the account does not say
    which (`billbridge settings set connection.<provider> ID`); the message names them."""


class TotalMismatch(ExportError):
    """What the provider would hold differs from the billing totals: a bug, nothing is written."""


class ProviderRejected(ExportError):
    """The provider refused the request as invalid (HTTP 400/404/idempotency conflict)."""


class ProviderAuthFailed(ExportError):
    """The provider refused the credentials (HTTP 401/403)."""


class ProviderLimitExceeded(ExportError):
    """The invoice exceeds a hard limit of the provider that consolidation cannot meet."""


class AmountNotChargeable(ExportError):
    """The provider cannot take or charge an amount as billed (Stripe: a fraction of a
    zero-decimal currency, a three-decimal amount not ending in 0, a fraction of ISK); the
    message names the rule. Never retried: the invoice must change, or the connection must
    allow a rounding line (`stripe_rounding_line=true`), which signals the waiting export."""


class UnexpectedError(ExportError):
    """A step failed the same unexpected way (a bug such as a KeyError) several attempts in a
    row. Retrying every minute forever would only fill the attempts table: the export waits
    with the error text until the fix is deployed and `billbridge attention retry` resumes it."""


class PlanChanged(ExportError):
    """What push would write differs from the plan that was checked (a mapping or the
    connection changed between the steps): the export plans again from the start."""


class ProviderSetupNeeded(ExportError):
    """The provider account is set up in a way that cannot take this invoice (QuickBooks:
    multicurrency off for a foreign-currency invoice, a customer in another currency, no tax
    code where the company needs one): the message names the setting to change. Not retried;
    the export waits until the setting or mapping is changed."""


class ProviderTotalsDiffer(ExportError):
    """The provider computed a total or tax that differs from the billing invoice (its tax
    settings or the mapped tax codes): nothing is kept at the provider, the message names the
    difference. Not retried; the export waits until a mapping or setting is changed."""


class ProviderBalanceUnexpected(ExportError):
    """The provider customer's balance holds amounts billbridge did not put there (a manual
    adjustment, a credit note, a voided invoice's returned balance, ...). Stripe applies the
    customer's whole balance when it finalizes an invoice, so finalizing would issue an amount
    due other than the billing one: nothing is finalized until a person settles the balance in
    Stripe, or lets the connection accept it (`connections set ... accept_stripe_balance=true`).
    Not retried: only a person changes the balance or the setting."""


class MarketplaceWindowClosed(ExportError):
    """The marketplace refuses usage this old (AWS `TimestampOutOfBoundsException`: older than
    24 h, or a billing month past its 06:00 UTC cut-off on the 1st; Azure `Expired`). Not
    retried: no retry makes the hour younger. A person decides what becomes of the hour (it
    stays in the ledger as not delivered)."""


class MarketplaceNeedsAttention(ExportError):
    """A marketplace refused records for a reason a person must fix (customer not subscribed,
    resource not active, unknown dimension, a duplicate holding another quantity). Not
    retried: the hours are kept in the ledger and sent as saved on the workflow's `retry`."""


class ProviderInvoiceMissing(ExportError):
    """The invoice an earlier attempt issued at the provider is gone there (deleted, another
    account, lost data): it may already be with the customer, so a person must decide."""


class ProviderPaused(ExportError):
    """An operator paused the connection (`billbridge provider pause`): nothing is sent to it.

    Not retried by Temporal and not a problem to fix: the workflow holds, visibly, until the
    connection is resumed, then carries on from where it stopped."""

    def __init__(self, message: str, connection_id: str) -> None:
        super().__init__(message)
        self.connection_id = connection_id


# What a person can fix: the export waits (needs attention) instead of failing.
NEEDS_ATTENTION = frozenset(
    cls.__name__
    for cls in (
        UnmappedItems,
        ProviderItemMissing,
        ProviderCustomerMissing,
        ProviderInvoiceMissing,
        MarketplaceWindowClosed,
        MarketplaceNeedsAttention,
        ProviderSetupNeeded,
        ProviderTotalsDiffer,
        ProviderBalanceUnexpected,
        ProviderAuthFailed,
        AmountNotChargeable,
        ConnectionDisabled,
        ConnectionAmbiguous,
        UnknownCustomer,
        UnexpectedError,
        # Only once the workflow planned again a few times and the plan still kept changing.
        PlanChanged,
    )
)

# Attempts of one step that may fail with an unexpected error before it waits as needs
# attention (1 s, 2 s, 4 s, 8 s apart: a transient glitch passes, a bug stops within 15 s).
UNEXPECTED_ERROR_ATTEMPTS = 5


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
