"""The door: validate, store, then start the export workflow. The Python API a billing system calls.

Nothing invalid gets past the door (the error names the field) and nothing valid is lost after
it: the invoice is stored before the workflow starts, and the workflow id is derived from the
invoice id, so a repeated call never starts a second export.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import pydantic
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from billbridge.activities.store import InvoiceConflictError, Store
from billbridge.core.breakdown import InvoiceInconsistent, break_down
from billbridge.core.messages import ExportInvoiceInput, ExportResult, ExportStatus
from billbridge.core.models import (
    Customer,
    Invoice,
    format_validation_error,
    parse_invoice_payload,
)
from billbridge.core.money import InexactAmountError
from billbridge.core.text import unstorable_text
from billbridge.workflows.export_invoice import ExportInvoiceWorkflow, workflow_id
from billbridge.workflows.search_attributes import EXPORT_STATUS, INVOICE_ID


class InvalidPayload(ValueError):
    """A payload refused at the door; the message names every offending field."""


def parse_invoice(payload: Any) -> Invoice:
    """An Orb invoice, bare or inside its `invoice.issued` webhook envelope, that can export.

    Besides the model's field rules, every consistency rule the export applies (the lines add
    up to the total, adjustments to the adjusted subtotals, ...) runs here, so an invoice that
    could never export is refused before anything is stored, and its corrected version can be
    submitted under the same id.
    """
    if not isinstance(payload, str | bytes | dict):
        raise InvalidPayload("invalid invoice: expected a JSON object (an Orb invoice)")
    data = _loaded("invalid invoice: ", payload)
    refuse_unstorable_text("invalid invoice", data)
    try:
        invoice = parse_invoice_payload(data if isinstance(data, dict) else payload)
    except pydantic.ValidationError as err:
        raise InvalidPayload("invalid invoice: " + format_validation_error(err)) from err
    try:
        break_down(invoice, invoice.line_items)
    except (InvoiceInconsistent, InexactAmountError) as err:
        raise InvalidPayload(f"invalid invoice: {err}") from err
    return invoice


def _loaded(what: str, payload: Any) -> Any:
    """JSON text (str, or bytes in UTF-8) parsed; anything else as it is. `what` starts the
    refusal's message."""
    if not isinstance(payload, str | bytes):
        return payload
    try:
        return json.loads(payload)
    except json.JSONDecodeError as err:
        raise InvalidPayload(f"{what}not JSON: {err}") from err
    except UnicodeDecodeError as err:  # bytes in another encoding
        raise InvalidPayload(f"{what}not UTF-8 JSON text: {err}") from err


def refuse_unstorable_text(what: str, data: Any) -> None:
    """InvalidPayload naming every field whose text no store keeps (core/text.py)."""
    problems = list(unstorable_text(data))
    if problems:
        raise InvalidPayload(f"{what}: " + "\n".join(problems))


def parse_customers(payload: Any) -> list[Customer]:
    payload = _loaded("customers file is ", payload)
    items = payload.get("data", payload) if isinstance(payload, dict) else payload
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise InvalidPayload("customers: expected a customer object or a list of them")
    customers = []
    for index, item in enumerate(items):
        refuse_unstorable_text(f"invalid customer at [{index}]", item)
        try:
            customers.append(Customer.model_validate(item))
        except pydantic.ValidationError as err:
            raise InvalidPayload(
                f"invalid customer at [{index}]: " + format_validation_error(err)
            ) from err
    return customers


def upsert_customers(store: Store, payload: Any) -> Sequence[Customer]:
    customers = parse_customers(payload)
    store.upsert_customers(customers)
    return customers


def submit_invoice(store: Store, payload: Any) -> Invoice:
    """Validate and store an issued invoice; raises InvalidPayload naming the field.

    Submitting the same invoice again is a no-op; an invoice id seen before with other content is
    refused (an issued invoice is immutable, and the export already in hand would not match it).
    """
    return store_invoice(store, parse_invoice(payload))


def store_invoice(store: Store, invoice: Invoice) -> Invoice:
    """Store an invoice that passed parse_invoice (see submit_invoice)."""
    try:
        store.save_invoice(invoice)
    except InvoiceConflictError as err:
        raise InvalidPayload(f"invalid invoice: id: {err}") from err
    return invoice


async def start_export(
    client: Client,
    invoice_id: str,
    task_queue: str,
    *,
    attention_deadline: timedelta | None = None,
) -> WorkflowHandle[Any, ExportResult]:
    """Start (or find) the export of a stored invoice.

    A running export is reused; a finished one is never run again; a failed one may be started
    afresh (after its cause was fixed), which is safe because every provider write is idempotent.
    `attention_deadline`: how long it may wait for a fix (default 30 days) before failing.
    """
    wf_id = workflow_id(invoice_id)
    request = ExportInvoiceInput(invoice_id=invoice_id)
    if attention_deadline is not None:
        request.attention_deadline_seconds = int(attention_deadline.total_seconds())
    try:
        return await client.start_workflow(
            ExportInvoiceWorkflow.run,
            request,
            id=wf_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(INVOICE_ID, invoice_id)]),
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(wf_id, result_type=ExportResult)


# What an export that waits, and will go on by itself once someone acts, is waiting for.
HELD = {
    ExportStatus.NEEDS_ATTENTION: "waiting for a fix; see `billbridge attention list`",
    ExportStatus.PAUSED: "held: its connection is paused; see `billbridge provider status`",
}


async def export_result(
    handle: WorkflowHandle[Any, ExportResult], invoice_id: str, *, through_attention: bool = False
) -> ExportResult:
    """The export's outcome; a failed export comes back as status `failed` with its reason.

    An export that waits for a fix comes back as `needs_attention` with what to fix, one held
    by a paused connection as `paused` with the pause's reason, unless `through_attention`:
    then this waits on until the export ends.
    """
    finished = asyncio.ensure_future(handle.result())
    # The result arrives the moment the export ends, whatever the delay; the delay only paces
    # the status checks that notice an export waiting for a fix (each one a server call).
    delay = 0.5
    try:
        while True:
            done, _ = await asyncio.wait({finished}, timeout=delay)
            if done:
                return finished.result()
            delay = min(delay * 2, 2.0)
            if not through_attention and (status := await _export_status(handle)) in HELD:
                return await _attention_result(handle, invoice_id, ExportStatus(status))
    except WorkflowFailureError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        return ExportResult(invoice_id=invoice_id, status=ExportStatus.FAILED, reason=reason)
    finally:
        finished.cancel()


async def _export_status(handle: WorkflowHandle[Any, ExportResult]) -> str | None:
    """The ExportStatus search attribute: read from the server, no worker needed."""
    description = await handle.describe()
    return description.typed_search_attributes.get(EXPORT_STATUS)


async def _attention_result(
    handle: WorkflowHandle[Any, ExportResult], invoice_id: str, status: ExportStatus
) -> ExportResult:
    try:
        progress = await asyncio.wait_for(handle.query(ExportInvoiceWorkflow.progress), 10)
        provider, reason = progress.provider, progress.detail
    except Exception:  # no worker to answer: the status alone still says it waits
        provider, reason = "", HELD[status]
    return ExportResult(
        invoice_id=invoice_id,
        status=status,
        provider=provider,
        reason=reason,
    )


async def retry_export(client: Client, invoice_id: str) -> None:
    """Tell a waiting export that its problem was fixed; it runs its steps again."""
    await client.get_workflow_handle(workflow_id(invoice_id)).signal(ExportInvoiceWorkflow.retry)


async def retry_exports(client: Client, invoice_ids: Iterable[str]) -> int:
    """Signal the exports of these invoices that still run; returns how many were signalled."""
    count = 0
    for invoice_id in invoice_ids:
        try:
            await retry_export(client, invoice_id)
        except RPCError as err:  # finished since the store said it waits: nothing to resume
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        count += 1
    return count


async def retry_exports_concerned(
    client: Client,
    store: Store,
    *,
    connection_id: str | None = None,
    customer_ids: Iterable[str] | None = None,
) -> int:
    """After a fix, signal only the waiting exports it can concern (read from the store).

    A mapping or credential fix: the exports waiting on that connection. A customer fix: that
    customer's exports. Returns how many were signalled.
    """
    if connection_id is not None:
        # Export records are kept per provider; a connection's fix concerns the exports that
        # wait on its provider (with several connections of one provider, each checks again).
        row = store.get_connection(connection_id)
        connection_id = row.provider if row is not None else connection_id
    invoice_ids = store.waiting_invoice_ids(connection_id=connection_id, customer_ids=customer_ids)
    return await retry_exports(client, invoice_ids)


async def retry_waiting_exports(client: Client) -> int:
    """Signal every export that needs attention (`billbridge attention retry`: after a fix
    the store cannot tell apart, such as a deployed bug fix).

    Each one re-checks from the start; those whose problem remains wait again. Returns how many
    were signalled.
    """
    query = (
        f'{EXPORT_STATUS.name} = "{ExportStatus.NEEDS_ATTENTION}" AND ExecutionStatus = "Running"'
    )
    count = 0
    async for execution in client.list_workflows(query):
        if execution.workflow_type == "ExportInvoiceWorkflow":
            await client.get_workflow_handle(execution.id).signal(ExportInvoiceWorkflow.retry)
            count += 1
    return count


async def export_invoice(
    client: Client, store: Store, payload: Any, task_queue: str
) -> ExportResult:
    """Validate, store, export and wait: the one call a billing system needs."""
    invoice = submit_invoice(store, payload)
    handle = await start_export(client, invoice.id, task_queue)
    return await export_result(handle, invoice.id)
