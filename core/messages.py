"""Inputs and outputs of the export workflow and its activities.

They cross Temporal's history, so they carry ids, statuses and amounts only: never the invoice's
lines, a customer's name or e-mail, or a credential. One model per call so fields can be added
without breaking running workflows.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class ExportStatus(StrEnum):
    """Where an export stands; also the value of the `ExportStatus` search attribute."""

    RECEIVED = "received"
    MAPPING = "mapping"
    LINKING_CUSTOMER = "linking_customer"
    PUSHING = "pushing"
    EXPORTED = "exported"
    SKIPPED_ZERO_TOTAL = "skipped_zero_total"
    NOT_EXPORTED = "not_exported"
    FAILED = "failed"
    # Waiting for a person to fix something (a mapping, a customer link, credentials, a
    # disabled connection); the fix signals the workflow, which then goes on by itself.
    NEEDS_ATTENTION = "needs_attention"
    # Held while its connection is paused (`billbridge provider pause`); goes on when resumed.
    PAUSED = "paused"


FINAL_STATUSES = frozenset(
    {
        ExportStatus.EXPORTED,
        ExportStatus.SKIPPED_ZERO_TOTAL,
        ExportStatus.NOT_EXPORTED,
        ExportStatus.FAILED,
    }
)


DEFAULT_ATTENTION_DEADLINE_SECONDS = 30 * 86400


class ExportInvoiceInput(BaseModel):
    invoice_id: str
    # How long an export may wait for a fix before it fails with the reason.
    attention_deadline_seconds: int = DEFAULT_ATTENTION_DEADLINE_SECONDS


class Decision(BaseModel):
    """What the workflow does with an invoice; decided from the stored invoice and customer."""

    invoice_id: str
    customer_id: str
    status: ExportStatus  # RECEIVED means "go on and export"
    reason: str = ""
    provider: str = ""  # the customer's payment_provider, e.g. "stripe_invoice"
    connection_id: str = ""
    currency: str = ""
    billing_total: str = "0"
    line_count: int = 0


class StepInput(BaseModel):
    invoice_id: str
    provider: str
    connection_id: str


class MappingResult(BaseModel):
    mapped_keys: int
    line_count: int


class CustomerLinkResult(BaseModel):
    provider_customer_id: str


class PushInput(BaseModel):
    invoice_id: str
    provider: str
    connection_id: str
    provider_customer_id: str
    # When the workflow began pushing: a provider lookup for an object an earlier attempt made
    # (after its idempotency key may have expired) only needs to look from here on.
    push_started_at: float


class PushResult(BaseModel):
    external_id: str
    external_url: str = ""
    provider_total: str
    provider_amount_due: str
    provider_line_count: int
    request_count: int
    consolidated: bool = False
    note: str = ""  # what the provider did differently, e.g. an amount carried to a balance


class PrepareInput(BaseModel):
    invoice_id: str
    # When this pass began: the plan's "now" (due dates), fixed for the pass so the push
    # writes exactly the plan that was checked.
    push_started_at: float


class Prepared(BaseModel):
    """The prepare step's answer: the decision and, when it exports, the checked plan's digest.

    The plan itself stays in the worker (it can hold thousands of lines, and customer data);
    the push step reuses it when it runs on the same worker, and re-plans and compares the
    digest when it does not.
    """

    decision: Decision
    provider_customer_id: str = ""
    plan_digest: str = ""


class PushPlanInput(BaseModel):
    invoice_id: str
    provider: str
    connection_id: str
    provider_customer_id: str
    push_started_at: float
    plan_digest: str
    billing_total: str = ""


class RecordInput(BaseModel):
    invoice_id: str
    provider: str
    status: ExportStatus
    billing_total: str = ""
    error: str = ""
    push: PushResult | None = None


class ExportResult(BaseModel):
    """What `billbridge export` prints and the workflow returns."""

    invoice_id: str
    status: ExportStatus
    provider: str = ""
    reason: str = ""
    external_id: str = ""
    external_url: str = ""
    billing_total: str = ""
    provider_total: str = ""
    provider_amount_due: str = ""
    provider_line_count: int = 0
    request_count: int = 0


class Progress(BaseModel):
    """Answer of the workflow's `progress` query: the current step and the last problem seen."""

    invoice_id: str
    step: ExportStatus
    provider: str = ""
    detail: str = ""
