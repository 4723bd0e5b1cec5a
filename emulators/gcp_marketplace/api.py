"""Service Control v1 `services.check` / `services.report` and Partner Procurement v1
`providers.entitlements.get` / `list`, as Google Cloud Marketplace SaaS uses them.

Sources:
- Marketplace flow: https://cloud.google.com/marketplace/docs/partners/integrated-saas/configure-usage-reports
  (entitlement -> usageReportingId; check, then report when checkErrors is empty; consumerId =
  usageReportingId; the same operationId for check and report; each report's startTime = the
  previous endTime; metricName "<service>/<metric>" as Google's codelab writes it:
  https://github.com/googlecodelabs/gcp-marketplace-integrated-saas
  python3/impl/step_6_usage_reporting/report.py).
- Service Control: https://cloud.google.com/service-infrastructure/docs/service-control/reference/rest/v1/services/report
  (ReportRequest <= 1 MB, no limit on the number of operations; reportErrors = partial
  failures, one per failed operation, a failed RPC = unknown outcome) and .../services/check
  (CheckResponse.checkErrors; CheckError codes: check_error.proto,
  https://github.com/googleapis/googleapis/blob/master/google/api/servicecontrol/v1/check_error.proto).
- Partner Procurement: the discovery document cloudcommerceprocurement.v1.json shipped in
  google-api-python-client (paths, `filter`/`pageSize`/`pageToken`, Entitlement fields).

Which CheckError / reportError code Google picks for a given Marketplace problem is not
documented: the choices below are marked UNCONFIRMED.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import wire
from .errors import GoogleError, rpc_number
from .state import BILLABLE_STATES, AcceptedOperation, Entitlement, Store, rfc3339

# https://cloud.google.com/service-infrastructure/docs/service-control/reference/rest/v1/services/report
# ("the ReportRequest size should be no larger than 1MB"; the same for CheckRequest).
MAX_BODY_BYTES = 1024 * 1024
SERVICE_CONFIG_ID = "2026-01-01r0"
SERVICE_ROLLOUT_ID = "2026-01-01r0"
# check_error.proto numbers, for clients that ask for numeric enums ("$alt=json;enum-encoding=int",
# which google-api-core's REST transports send: google/api_core/rest_helpers.py).
CHECK_ERROR_NUMBERS = {
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "SERVICE_NOT_ACTIVATED": 104,
    "BILLING_DISABLED": 107,
    "PROJECT_DELETED": 108,
    "PROJECT_INVALID": 114,
    "CONSUMER_INVALID": 125,
    "NAMESPACE_LOOKUP_UNAVAILABLE": 300,
    "SERVICE_STATUS_UNAVAILABLE": 301,
    "BILLING_STATUS_UNAVAILABLE": 302,
}
DEFAULT_PAGE_SIZE = 200  # "The default page size is 200." (discovery document, list.pageSize)


def parse_json(body: bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        # UNCONFIRMED: the status Google's front end gives an oversized body.
        raise GoogleError(
            "INVALID_ARGUMENT", f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."
        )
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise GoogleError(
            "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token."
        ) from None


@dataclass(frozen=True)
class Caller:
    numeric_enums: bool


def _service_metrics(store: Store, service_name: str, permission: str) -> set[str]:
    metrics = store.services.get(service_name)
    if metrics is None:
        # A service the caller does not own looks the same as one that does not exist: IAM
        # denies `servicemanagement.services.check/report` on it (both method pages).
        # UNCONFIRMED: Google's exact message.
        raise GoogleError(
            "PERMISSION_DENIED",
            f"Permission '{permission}' denied on service '{service_name}'.",
        )
    return metrics


def _consumer_problem(store: Store, consumer_id: str) -> tuple[str, str] | None:
    """(CheckError code, detail) when the consumer may not be billed; None when it may."""
    entitlement = store.by_usage_reporting_id(consumer_id)
    if entitlement is None:
        return "NOT_FOUND", f"Consumer '{consumer_id}' not found."  # UNCONFIRMED code
    if entitlement.state not in BILLABLE_STATES:
        # "If a customer's service is disabled before the startTime of a report Operation, the
        # services.check API call sends an error in the checkErrors[] object" (Marketplace page).
        # UNCONFIRMED: that the code is SERVICE_NOT_ACTIVATED.
        return (
            "SERVICE_NOT_ACTIVATED",
            f"Service '{entitlement.service_name}' is not activated for consumer "
            f"'{consumer_id}' (entitlement {entitlement.state}).",
        )
    return None


def check(store: Store, service_name: str, body: bytes, caller: Caller) -> dict[str, Any]:
    request = parse_json(body)
    op = wire.check_request(request)
    with store.lock:
        _service_metrics(store, service_name, "servicemanagement.services.check")
        if not op.consumer_id:
            raise GoogleError("INVALID_ARGUMENT", "operation.consumer_id is required.")
        errors: list[tuple[str, str]] = []
        injected = store.take_injected(store.check_errors, op.consumer_id)
        if injected is not None:
            errors.append((injected.code, injected.message))
        else:
            problem = _consumer_problem(store, op.consumer_id)
            if problem is not None:
                errors.append(problem)
    response: dict[str, Any] = {
        "operationId": op.operation_id,
        "serviceConfigId": SERVICE_CONFIG_ID,
        "serviceRolloutId": SERVICE_ROLLOUT_ID,
    }
    if errors:
        response["checkErrors"] = [
            {
                "code": CHECK_ERROR_NUMBERS.get(code, 0) if caller.numeric_enums else code,
                "subject": f"usageReportingId:{op.consumer_id}",
                "detail": detail,
            }
            for code, detail in errors
        ]
    return response


def _operation_error(
    store: Store, service_name: str, metrics: set[str], op: wire.Operation
) -> tuple[str, str] | None:
    """(google.rpc.Code name, message) when this operation cannot be taken; None when it can."""
    if not op.operation_id:
        return "INVALID_ARGUMENT", "operation_id is required."
    if not op.consumer_id:
        return "INVALID_ARGUMENT", "consumer_id is required."
    if op.start_time is None or op.end_time is None:
        return "INVALID_ARGUMENT", "start_time and end_time are required."
    if op.start_time > op.end_time:
        return "INVALID_ARGUMENT", "start_time must not be later than end_time."
    injected = store.take_injected(store.report_errors, op.consumer_id)
    if injected is not None:
        return injected.code, injected.message
    if store.by_usage_reporting_id(op.consumer_id) is None:
        return "NOT_FOUND", f"Consumer '{op.consumer_id}' not found."  # UNCONFIRMED code
    problem = _consumer_problem(store, op.consumer_id)
    if problem is not None:
        return "FAILED_PRECONDITION", problem[1]  # UNCONFIRMED code
    if not op.metric_value_sets:
        return "INVALID_ARGUMENT", "The operation has no metric_value_sets."
    for value_set in op.metric_value_sets:
        prefix, _, metric = value_set.metric_name.partition("/")
        if prefix != service_name or metric not in metrics:
            return (
                "INVALID_ARGUMENT",
                f"Metric '{value_set.metric_name}' is not defined for service '{service_name}'.",
            )
        for value in value_set.values:
            # Marketplace usage metrics are INT64 (the page's example; Producer Portal defines
            # them). UNCONFIRMED: that a double value is refused.
            if value.int64_value is None:
                return "INVALID_ARGUMENT", f"Metric '{value_set.metric_name}' takes int64Value."
            if value.int64_value < 0:  # UNCONFIRMED: usage is never negative
                return "INVALID_ARGUMENT", f"Metric '{value_set.metric_name}' is negative."
    return None


def report(store: Store, service_name: str, body: bytes) -> dict[str, Any]:
    operations = wire.report_request(parse_json(body))
    report_errors: list[dict[str, Any]] = []
    with store.lock:
        metrics = _service_metrics(store, service_name, "servicemanagement.services.report")
        received = rfc3339(store.now())
        for op in operations:
            error = _operation_error(store, service_name, metrics, op)
            if error is None:
                error = _take(store, service_name, op, received)
            if error is not None:
                code, message = error
                report_errors.append(
                    {
                        "operationId": op.operation_id,
                        "status": {"code": rpc_number(code), "message": message},
                    }
                )
    response: dict[str, Any] = {
        "serviceConfigId": SERVICE_CONFIG_ID,
        "serviceRolloutId": SERVICE_ROLLOUT_ID,
    }
    if report_errors:
        response["reportErrors"] = report_errors
    return response


def _take(
    store: Store, service_name: str, op: wire.Operation, received: str
) -> tuple[str, str] | None:
    """Accept the operation, counting an operationId once.

    UNCONFIRMED whether Service Control deduplicates by operationId (the Marketplace page only
    says it is "a unique string that your service instance generates"): the emulator counts a
    repeated operationId once and records the repeat, so a client that resends a saved report
    is shown to be safe against a server that does deduplicate, and `repeats()` shows it
    happened. A repeat with different content is refused (an emulator rule, UNCONFIRMED): it
    can only be a client bug.
    """
    earlier = store.accepted.get(op.operation_id)
    if earlier is not None:
        same = earlier.operation == op.raw or _content(earlier) == op.content()
        store.repeats.append(
            {"operationId": op.operation_id, "sameContent": same, "receivedAt": received}
        )
        if same:
            return None
        return (
            "INVALID_ARGUMENT",
            f"Operation '{op.operation_id}' was already reported with different content.",
        )
    store.accepted[op.operation_id] = AcceptedOperation(
        service_name=service_name,
        operation_id=op.operation_id,
        consumer_id=op.consumer_id,
        start_time=rfc3339(op.start_time) if op.start_time else "",
        end_time=rfc3339(op.end_time) if op.end_time else "",
        metrics={
            s.metric_name: sum(v.int64_value or 0 for v in s.values) for s in op.metric_value_sets
        },
        received_at=received,
        operation=op.raw,
    )
    return None


def _content(accepted: AcceptedOperation) -> tuple[Any, ...]:
    return wire.operation(accepted.operation, "operation").content()


# -- Partner Procurement --------------------------------------------------------------------------


def get_entitlement(store: Store, provider: str, entitlement_id: str) -> dict[str, Any]:
    with store.lock:
        entitlement = store.entitlements.get((provider, entitlement_id))
        if entitlement is None:
            raise GoogleError(
                "NOT_FOUND",
                f"Entitlement providers/{provider}/entitlements/{entitlement_id} not found.",
            )
        return entitlement.render()


_FILTER_KEYS = {
    "account": lambda e: (e.account, f"providers/{e.provider}/accounts/{e.account}"),
    "plan": lambda e: (e.plan,),
    "product": lambda e: (e.product,),
    "state": lambda e: (e.state, e.state.removeprefix("ENTITLEMENT_")),
}


def _predicates(text: str) -> list[tuple[str, bool, str]]:
    """`key=value` / `key!=value` terms joined by AND or a space (the discovery document's
    `filter` description). The emulator reads this subset: OR, NOT and parentheses are refused
    with INVALID_ARGUMENT (an emulator limit, not Google's)."""
    terms: list[tuple[str, bool, str]] = []
    for token in text.split():
        if token == "AND":
            continue
        negated = "!=" in token
        key, _, value = token.partition("!=" if negated else "=")
        value = value.strip('"')
        if token in ("OR", "NOT") or "(" in token or not value or key not in _FILTER_KEYS:
            raise GoogleError("INVALID_ARGUMENT", f"Unsupported filter term '{token}'.")
        terms.append((key, negated, value))
    return terms


def _matches(entitlement: Entitlement, terms: list[tuple[str, bool, str]]) -> bool:
    for key, negated, value in terms:
        values = _FILTER_KEYS[key](entitlement)
        # "the state name match is case-insensitive" (discovery document, list.filter)
        hit = any(v.lower() == value.lower() if key == "state" else v == value for v in values)
        if hit == negated:
            return False
    return True


def list_entitlements(store: Store, provider: str, params: Mapping[str, str]) -> dict[str, Any]:
    terms = _predicates(params.get("filter", ""))
    try:
        size = int(params.get("pageSize") or DEFAULT_PAGE_SIZE)
        start = int(params.get("pageToken") or 0)
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", "Invalid pageSize or pageToken.") from None
    with store.lock:
        found = [
            e.render()
            for (p, _), e in sorted(store.entitlements.items())
            if p == provider and _matches(e, terms)
        ]
    page = found[start : start + max(size, 1)]
    response: dict[str, Any] = {}
    if page:
        response["entitlements"] = page
    if start + len(page) < len(found):
        response["nextPageToken"] = str(start + len(page))
    return response
