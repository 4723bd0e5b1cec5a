"""ExportInvoiceWorkflow: one issued invoice, exported once to its customer's invoicing provider.

Orchestration only. The invoice stays in the store (payload and history limits, and customer data
out of history); the workflow carries its id and a small status. Two steps a pass:
prepare (decide: zero total, provider routing; mapping lookup; customer linking; plan; check)
-> push (write the checked plan, idempotently; record). Whatever a person can fix waits as
needs attention and resumes on a `retry` signal. An export whose connection is paused
(`billbridge provider pause`) holds as "paused" and goes on when the connection is resumed
(`provider_resumed`). The workflow never names a provider: the activities route by the
customer's payment_provider.

Histories started before the one-pass export ran five steps (decide -> mapping lookup ->
customer linking -> push -> record); they replay through `_export_in_five_steps`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from billbridge.core import activity_names as names
    from billbridge.core.errors import (
        NEEDS_ATTENTION,
        NON_RETRYABLE,
        ErrorContext,
        PlanChanged,
        ProviderPaused,
    )
    from billbridge.core.messages import (
        CustomerLinkResult,
        Decision,
        ExportInvoiceInput,
        ExportResult,
        ExportStatus,
        MappingResult,
        Prepared,
        PrepareInput,
        Progress,
        PushInput,
        PushPlanInput,
        PushResult,
        RecordInput,
        StepInput,
    )
    from billbridge.core.timeouts import PUSH_HEARTBEAT_TIMEOUT
    from billbridge.workflows.holds import (
        HOLD_RECHECK_FIRST,
        HOLD_RECHECK_MAX,
        connection_paused,
    )
    from billbridge.workflows.search_attributes import (
        CONNECTION_ID,
        CUSTOMER_ID,
        EXPORT_STATUS,
        INVOICE_ID,
        PROVIDER,
    )

# NON_RETRYABLE: the error types activities raise for problems a retry cannot fix; NEEDS_ATTENTION:
# those a person can fix, which wait instead of failing. Both are decided in core/errors.py
# (a pure module); anything else -- rate limits, 5xx, timeouts, a dead worker -- is retried.
# Marks histories written since exports wait for fixes (see _fail_or_wait).
NEEDS_ATTENTION_PATCH = "needs-attention"
# Marks histories written since an export runs in two steps a pass (prepare, push) and a
# `retry` signal that arrives during a pass counts (see _export_once).
ONE_PASS_PATCH = "one-pass-export"
# A plan that changed between prepare and push is planned again this many times in a row
# before the export waits for a person (something keeps changing the mappings).
MAX_PLAN_CHANGES = 3


T = TypeVar("T")
# What a failed step raises in the workflow: an ActivityError around the activity's error, or,
# for a local activity, the activity's ApplicationError itself.
StepError = ActivityError | ApplicationError


def _retry(maximum_interval: timedelta) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=maximum_interval,
        non_retryable_error_types=NON_RETRYABLE,
    )


async def _quick_step(name: str, arg: Any, result_type: type[T]) -> T:
    result: T = await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=timedelta(minutes=2),
        retry_policy=_retry(timedelta(minutes=1)),
    )
    return result


async def _prepare_step(arg: PrepareInput) -> Prepared:
    # A local activity: it runs on the worker that runs this workflow task and is recorded as
    # one marker, without a round trip through the task queue. It is short (store reads, a
    # customer check and item lookups cached per worker); it never heartbeats. Should the
    # worker die, the workflow task times out and another worker runs it again, which is safe
    # (its only writes, a customer link or creation, are idempotent).
    result: Prepared = await workflow.execute_local_activity(
        names.PREPARE_EXPORT,
        arg,
        result_type=Prepared,
        start_to_close_timeout=timedelta(minutes=2),
        retry_policy=_retry(timedelta(minutes=1)),
    )
    return result


async def _push_step(name: str, arg: PushInput | PushPlanInput) -> PushResult:
    # A push takes many provider calls; it heartbeats right before and after each one, and each
    # call ends within its deadline, well inside the heartbeat timeout (core/timeouts.py). So a
    # dead worker is noticed within the heartbeat timeout, the next attempt resumes where the
    # last one stopped, and an attempt never writes while its own retry runs.
    result: PushResult = await workflow.execute_activity(
        name,
        arg,
        result_type=PushResult,
        start_to_close_timeout=timedelta(minutes=30),
        heartbeat_timeout=PUSH_HEARTBEAT_TIMEOUT,
        retry_policy=_retry(timedelta(minutes=1)),
    )
    return result


def workflow_id(invoice_id: str) -> str:
    return f"export-invoice/{invoice_id}"


@workflow.defn
class ExportInvoiceWorkflow:
    def __init__(self) -> None:
        self._progress = Progress(invoice_id="", step=ExportStatus.RECEIVED)
        self._retry_requested = False
        self._one_pass = False
        self._plan_changes = 0
        self._resumed = False

    @workflow.query
    def progress(self) -> Progress:
        return self._progress

    def _step(self, step: ExportStatus, detail: str = "") -> None:
        self._progress = self._progress.model_copy(update={"step": step, "detail": detail})
        workflow.upsert_search_attributes([EXPORT_STATUS.value_set(step.value)])

    @workflow.signal
    def provider_resumed(self) -> None:
        """Sent when the connection this export is held for was resumed."""
        self._resumed = True

    @workflow.signal
    def retry(self) -> None:
        """Sent when something an export waits for was fixed; it tries again from the start."""
        self._retry_requested = True

    @workflow.run
    async def run(self, request: ExportInvoiceInput) -> ExportResult:
        self._progress = Progress(invoice_id=request.invoice_id, step=ExportStatus.RECEIVED)
        workflow.upsert_search_attributes(
            [
                INVOICE_ID.value_set(request.invoice_id),
                EXPORT_STATUS.value_set(ExportStatus.RECEIVED),
            ]
        )
        deadline = workflow.now() + timedelta(seconds=request.attention_deadline_seconds)
        while True:
            result = await self._export_once(request, deadline)
            if result is not None:
                return result

    async def _export_once(
        self, request: ExportInvoiceInput, deadline: datetime
    ) -> ExportResult | None:
        """One pass through the steps; None when it waited for a fix and should run again."""
        if not workflow.patched(ONE_PASS_PATCH):
            return await self._export_in_five_steps(request, deadline)
        self._one_pass = True
        # A fix signalled from here on counts, even while this pass is still failing.
        self._retry_requested = False
        invoice_id = request.invoice_id
        started = workflow.now().timestamp()
        try:
            prepared = await _prepare_step(
                PrepareInput(invoice_id=invoice_id, push_started_at=started)
            )
        # A local activity's failure arrives as its ApplicationError itself, not wrapped.
        except (ActivityError, ApplicationError) as err:  # unmapped items, unknown customer, ...
            if _error_type(err) == ProviderPaused.__name__:
                await self._hold(_decision_of(invoice_id, err), err)
                return None
            await self._fail_or_wait(_decision_of(invoice_id, err), err, deadline)
            return None
        decision = prepared.decision
        self._show_decision(decision)
        if decision.status != ExportStatus.RECEIVED:
            # Zero total, or not for an invoicing provider we export to (recorded by prepare).
            self._step(decision.status, decision.reason)
            return _result(decision, decision.status, reason=decision.reason)

        self._step(ExportStatus.PUSHING)
        try:
            push = await _push_step(
                names.PUSH_PLANNED_INVOICE,
                PushPlanInput(
                    invoice_id=invoice_id,
                    provider=decision.provider,
                    connection_id=decision.connection_id,
                    provider_customer_id=prepared.provider_customer_id,
                    push_started_at=started,
                    plan_digest=prepared.plan_digest,
                    billing_total=decision.billing_total,
                ),
            )
        except ActivityError as err:
            if _error_type(err) == PlanChanged.__name__ and self._plan_changes < MAX_PLAN_CHANGES:
                self._plan_changes += 1
                return None  # plan again at once
            if _error_type(err) == ProviderPaused.__name__:
                await self._hold(decision, err)
                return None  # resumed: from the start (the push resumes where it stopped)
            await self._fail_or_wait(decision, err, deadline)
            return None
        self._step(ExportStatus.EXPORTED, push.external_id)  # recorded by the push step
        return _result(decision, ExportStatus.EXPORTED, push=push)

    async def _hold(self, decision: Decision, err: StepError) -> None:
        """Hold while the connection is paused, visibly (ExportStatus "paused", ConnectionId,
        the pause's reason in `progress`), until it is resumed.

        Woken by `provider_resumed` (the connection's release, oldest first); should that miss
        this export (visibility lags), it asks the store itself, first after a minute, then
        less and less often, so a long pause costs a few events an hour.
        """
        cause = _cause(err)
        context = ErrorContext.of(cause) if isinstance(cause, ApplicationError) else ErrorContext()
        connection = context.connection_id or decision.connection_id
        if decision.customer_id or decision.provider:
            self._show_decision(decision)
        self._step(ExportStatus.PAUSED, _failure_message(err))
        workflow.upsert_search_attributes([CONNECTION_ID.value_set(connection)])
        recheck = HOLD_RECHECK_FIRST
        while not self._resumed:
            try:
                await workflow.wait_condition(lambda: self._resumed, timeout=recheck)
            except TimeoutError:
                if not await connection_paused(connection):
                    break
                recheck = min(recheck * 2, HOLD_RECHECK_MAX)
        self._resumed = False
        workflow.upsert_search_attributes([CONNECTION_ID.value_unset()])
        self._step(ExportStatus.RECEIVED, "resumed")

    def _show_decision(self, decision: Decision) -> None:
        """Customer and provider in the search attributes and the progress query."""
        attributes = [CUSTOMER_ID.value_set(decision.customer_id)]
        if decision.provider:
            attributes.append(PROVIDER.value_set(decision.provider))
            self._progress = self._progress.model_copy(update={"provider": decision.provider})
        workflow.upsert_search_attributes(attributes)

    async def _export_in_five_steps(
        self, request: ExportInvoiceInput, deadline: datetime
    ) -> ExportResult | None:
        """A pass as histories from before the one-pass export ran it."""
        invoice_id = request.invoice_id
        try:
            decision = await _quick_step(names.DECIDE, request, Decision)
        except ActivityError as err:  # not in the store, unknown customer, ...
            unknown = Decision(invoice_id=invoice_id, customer_id="", status=ExportStatus.FAILED)
            await self._fail_or_wait(unknown, err, deadline)
            return None
        workflow.upsert_search_attributes([CUSTOMER_ID.value_set(decision.customer_id)])
        if decision.provider:
            workflow.upsert_search_attributes([PROVIDER.value_set(decision.provider)])
            self._progress = self._progress.model_copy(update={"provider": decision.provider})

        if decision.status != ExportStatus.RECEIVED:
            # Zero total, or a customer whose provider is not an invoicing provider we export to.
            await self._record(decision, decision.status, error=decision.reason)
            self._step(decision.status, decision.reason)
            return _result(decision, decision.status, reason=decision.reason)

        step = StepInput(
            invoice_id=invoice_id,
            provider=decision.provider,
            connection_id=decision.connection_id,
        )
        try:
            self._step(ExportStatus.MAPPING)
            await _quick_step(names.LOOKUP_MAPPINGS, step, MappingResult)
            self._step(ExportStatus.LINKING_CUSTOMER)
            link = await _quick_step(names.LINK_CUSTOMER, step, CustomerLinkResult)
            self._step(ExportStatus.PUSHING)
            push = await _push_step(
                names.PUSH_INVOICE,
                PushInput(
                    invoice_id=invoice_id,
                    provider=decision.provider,
                    connection_id=decision.connection_id,
                    provider_customer_id=link.provider_customer_id,
                    push_started_at=workflow.now().timestamp(),
                ),
            )
        except ActivityError as err:
            if _error_type(err) == ProviderPaused.__name__:
                await self._hold(decision, err)
                return None
            await self._fail_or_wait(decision, err, deadline)
            return None

        await self._record(decision, ExportStatus.EXPORTED, push=push)
        self._step(ExportStatus.EXPORTED, push.external_id)
        return _result(decision, ExportStatus.EXPORTED, push=push)

    async def _fail_or_wait(self, decision: Decision, err: StepError, deadline: datetime) -> None:
        """Wait for a fix when a person can make one (needs attention); otherwise fail.

        Returns when a `retry` signal arrived; fails the workflow when the deadline passes.
        Histories from before needs-attention existed (no patch marker) keep failing at once.
        """
        if not (_needs_attention(err) and workflow.patched(NEEDS_ATTENTION_PATCH)):
            await self._fail(decision, err)
        if self._one_pass and (decision.customer_id or decision.provider):
            self._show_decision(decision)
        if not self._one_pass:
            # Histories from before: a fix only counted from here on (since the one-pass
            # export, one signalled during the failing pass counts too).
            self._retry_requested = False
        reason = _failure_message(err)
        await self._record(decision, ExportStatus.NEEDS_ATTENTION, error=reason)
        self._step(ExportStatus.NEEDS_ATTENTION, reason)
        remaining = deadline - workflow.now()
        try:
            if remaining <= timedelta(0):
                raise TimeoutError
            await workflow.wait_condition(lambda: self._retry_requested, timeout=remaining)
        except TimeoutError:
            await self._fail(decision, err, waited=True)

    async def _fail(self, decision: Decision, err: StepError, *, waited: bool = False) -> NoReturn:
        """Record why the export failed, show it in the UI, and fail the workflow with it."""
        reason = _failure_message(err)
        if waited:
            reason = f"nobody fixed it before the deadline: {reason}"
        await self._record(decision, ExportStatus.FAILED, error=reason)
        self._step(ExportStatus.FAILED, reason)
        raise ApplicationError(
            f"invoice {decision.invoice_id} was not exported: {reason}",
            type="ExportFailed",
            non_retryable=True,
        ) from err

    async def _record(
        self,
        decision: Decision,
        status: ExportStatus,
        *,
        error: str = "",
        push: PushResult | None = None,
    ) -> None:
        await _quick_step(
            names.RECORD_EXPORT,
            RecordInput(
                invoice_id=decision.invoice_id,
                provider=decision.provider or "none",
                status=status,
                billing_total=decision.billing_total,
                error=error,
                push=push,
            ),
            type(None),
        )


def _result(
    decision: Decision, status: ExportStatus, *, reason: str = "", push: PushResult | None = None
) -> ExportResult:
    result = ExportResult(
        invoice_id=decision.invoice_id,
        status=status,
        provider=decision.provider,
        reason=reason,
        billing_total=decision.billing_total,
    )
    if push is not None:
        result = result.model_copy(
            update={
                "reason": push.note,
                "external_id": push.external_id,
                "external_url": push.external_url,
                "provider_total": push.provider_total,
                "provider_amount_due": push.provider_amount_due,
                "provider_line_count": push.provider_line_count,
                "request_count": push.request_count,
            }
        )
    return result


def _decision_of(invoice_id: str, err: StepError) -> Decision:
    """What is known of an export whose prepare step failed: where the error says it was."""
    cause = _cause(err)
    context = ErrorContext.of(cause) if isinstance(cause, ApplicationError) else ErrorContext()
    return Decision(
        invoice_id=invoice_id,
        customer_id=context.customer_id,
        status=ExportStatus.FAILED,
        provider=context.provider,
        connection_id=context.provider,
    )


def _cause(err: StepError) -> BaseException | None:
    """The error an activity raised: the cause of an ActivityError, or a local activity's own."""
    return err.cause if isinstance(err, ActivityError) else err


def _error_type(err: StepError) -> str:
    cause = _cause(err)
    return (cause.type or "") if isinstance(cause, ApplicationError) else ""


def _needs_attention(err: StepError) -> bool:
    cause = _cause(err)
    return isinstance(cause, ApplicationError) and cause.type in NEEDS_ATTENTION


def _failure_message(err: StepError) -> str:
    cause = _cause(err)
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    return str(cause or err)
