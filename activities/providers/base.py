"""The one small interface every invoicing provider implements.

A provider is a module with a class implementing InvoiceProvider plus one registry entry
(activities/providers/__init__.py). It has two halves: `plan` is pure (the exact requests the
provider will receive, amounts in the provider's units) and `push` does the I/O, idempotently.
Between them `check_plan` proves the plan's totals equal the billing totals to the minor unit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from temporalio import activity

from billbridge.activities.oauth import GrantStore
from billbridge.activities.providers.gate import GateFactory
from billbridge.core.breakdown import InvoiceBreakdown
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import TotalMismatch
from billbridge.core.messages import PushResult
from billbridge.core.models import Customer, Invoice

# What list_exported yields; defined beside the comparison that reads it (pure, in core).
from billbridge.core.reconcile import ProviderInvoice as ProviderInvoice
from billbridge.core.timeouts import request_timeout

# The most provider invoices one `billbridge reconcile` reads: more is an error asking for a
# narrower --since, not an endless read.
MAX_RECONCILED = 100_000


@dataclass(frozen=True)
class ConnectionConfig:
    """One connection as a provider module sees it: its opened credential and its settings."""

    connection_id: str
    api_key: str | None  # None: the environment's default credential (e.g. STRIPE_API_KEY)
    settings: ConnectionSettings
    enabled: bool = True
    # The stored credential itself, for providers whose credential changes as it is used
    # (OAuth grants with rotating refresh tokens); None where the store is not at hand.
    credentials: GrantStore | None = None
    # The connections' gates (pause switch, shared request rate) in the store; None where the
    # store is not at hand: the module paces per process (activities/providers/gate.py).
    gates: GateFactory | None = None


@dataclass
class Plan:
    """What a push will write. Provider modules subclass it with their own request shapes."""

    provider: str
    invoice_id: str
    currency: str
    total_minor: int
    amount_due_minor: int
    line_amounts_minor: list[int] = field(default_factory=list)

    def requests(self) -> list[dict[str, Any]]:
        """The provider requests, for `--dry-run` (ids the provider assigns are placeholders)."""
        raise NotImplementedError

    def billing_totals(self) -> tuple[int, int, int]:
        """(sum of the lines, total, amount due) in the billing currency's ISO minor units, as
        check_plan compares them. Providers whose units differ from ISO 4217's (Stripe) convert
        back, less any rounding they recorded."""
        return sum(self.line_amounts_minor), self.total_minor, self.amount_due_minor


def heartbeat_running_activity(detail: str) -> None:
    """Heartbeat the Temporal activity this thread runs, if it has a heartbeat timeout.

    What a provider call heartbeats with outside `push` (e.g. resolving items while the push
    activity plans): the push is then already on the clock. Other steps have no heartbeat
    timeout and are left alone, and so is code outside any activity (the CLI's checks).
    """
    if activity.in_activity() and activity.info().heartbeat_timeout is not None:
        activity.heartbeat(detail)


def provider_request_timeout() -> float:
    """Seconds one provider request may take, all of it: PROVIDER_REQUEST_TIMEOUT, or less when
    the running activity's heartbeat timeout is short (core/timeouts.py)."""
    heartbeat = activity.info().heartbeat_timeout if activity.in_activity() else None
    return request_timeout(heartbeat).total_seconds()


@dataclass
class PushContext:
    """What push needs from its activity: resume data and progress callbacks."""

    invoice_id: str
    provider_customer_id: str
    push_started_at: float
    known_external_id: str | None = None
    # Whether an earlier attempt issued the known object, or asked the provider to (Stripe:
    # finalize). If it vanished, a draft is simply replaced, but an issued invoice may already
    # be with the customer: a person must look, never a silent second invoice.
    known_external_issued: bool = False
    # False only on the first attempt of the first push of this invoice: no earlier attempt can
    # have written anything, so the provider-side lookup for its objects can be skipped.
    may_have_written: bool = True
    # Called around every provider request (providers route it through their `_call`).
    heartbeat: Callable[[str], None] = heartbeat_running_activity
    remember_external_id: Callable[[str], None] = lambda external_id: None
    # (external id, where a person finds it): called before the request that issues it.
    remember_issued: Callable[[str, str], None] = lambda external_id, url: None


class InvoiceProvider(Protocol):
    name: str

    def check_credentials(self) -> None:
        """Raise ProviderAuthFailed unless the connection's credentials are accepted."""

    def check_customer(self, provider_customer_id: str) -> None:
        """Raise ProviderCustomerMissing unless the customer exists (and is not deleted)."""

    def find_or_create_customer(self, customer: Customer) -> str:
        """The provider customer for a billing customer: found by e-mail, else created."""

    def resolve_items(self, provider_item_ids: Collection[str]) -> dict[str, str]:
        """Mapped item id -> the id a line carries; ProviderItemMissing lists unknown ones."""

    def plan(
        self,
        invoice: Invoice,
        breakdown: InvoiceBreakdown,
        items: Mapping[str, str],
        provider_customer_id: str,
        now: float,
    ) -> Plan:
        """Pure: the requests that would export the invoice. `items`: mapping key -> the
        resolved provider item (see resolve_items); `now`: when the push began (unix time,
        fixed across retries so the requests stay identical under their idempotency keys)."""

    def push(self, plan: Plan, context: PushContext) -> PushResult:
        """Write the plan; safe to call again after any failure (idempotent)."""

    def export_ref(self, invoice: Invoice) -> str:
        """What the provider invoice of `invoice` carries that ties it back to it (the
        `ref` list_exported reports): its id, the external id made from it, its number."""

    def list_exported(self, since: datetime | None) -> Iterator[ProviderInvoice]:
        """The provider's invoices created at or after `since` (None: all) that carry a
        billbridge tie, read with the provider's list API page by page, every request through
        the module's own request path (pacing, deadlines, heartbeats). For
        `billbridge reconcile` (core/reconcile.py)."""


def check_plan(plan: Plan, breakdown: InvoiceBreakdown) -> None:
    """Nothing is written unless the plan adds up to the billing totals exactly."""
    planned, total, amount_due = plan.billing_totals()
    problems = []
    if planned != breakdown.total_minor:
        problems.append(f"lines add up to {planned}, billing total is {breakdown.total_minor}")
    if total != breakdown.total_minor:
        problems.append(f"plan total {total} != billing total {breakdown.total_minor}")
    if amount_due != breakdown.amount_due_minor:
        problems.append(
            f"plan amount due {amount_due} != billing amount due {breakdown.amount_due_minor}"
        )
    if problems:
        raise TotalMismatch(
            f"invoice {plan.invoice_id} ({plan.currency}, minor units): " + "; ".join(problems)
        )
