"""What the emulator holds: entitlements (Partner Procurement), each service's metrics, and the
operations Service Control accepted. Guarded by one lock; the API and the test controls both
go through it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Entitlement.state values (cloudcommerceprocurement.v1 discovery document, Entitlement.state).
ENTITLEMENT_STATES = frozenset(
    {
        "ENTITLEMENT_ACTIVATION_REQUESTED",
        "ENTITLEMENT_ACTIVE",
        "ENTITLEMENT_PENDING_CANCELLATION",
        "ENTITLEMENT_CANCELLED",
        "ENTITLEMENT_PENDING_PLAN_CHANGE",
        "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL",
        "ENTITLEMENT_SUSPENDED",
    }
)
# States in which the procured item is usable: ACTIVE ("usable and any associated billing events
# will start occurring"), PENDING_CANCELLATION ("an unexpired but non-renewing entitlement"),
# PENDING_PLAN_CHANGE and PENDING_PLAN_CHANGE_APPROVAL ("currently active") — the enum
# descriptions of Entitlement.state in the cloudcommerceprocurement.v1 discovery document.
# UNCONFIRMED: that Service Control bills exactly these.
BILLABLE_STATES = frozenset(
    {
        "ENTITLEMENT_ACTIVE",
        "ENTITLEMENT_PENDING_CANCELLATION",
        "ENTITLEMENT_PENDING_PLAN_CHANGE",
        "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL",
    }
)


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Entitlement:
    provider: str
    entitlement_id: str
    usage_reporting_id: str
    service_name: str
    product: str
    plan: str
    account: str
    state: str
    created: datetime
    updated: datetime

    def render(self) -> dict[str, Any]:
        """As Partner Procurement renders an Entitlement (field names from the discovery
        document; the example: https://cloud.google.com/marketplace/docs/partners/
        integrated-saas/configure-usage-reports)."""
        return {
            "name": f"providers/{self.provider}/entitlements/{self.entitlement_id}",
            "provider": self.provider,
            "account": f"providers/{self.provider}/accounts/{self.account}",
            "product": self.product,
            "plan": self.plan,
            "usageReportingId": self.usage_reporting_id,
            "state": self.state,
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.updated),
        }


@dataclass(frozen=True)
class AcceptedOperation:
    """One operation Service Control took, with its metric values."""

    service_name: str
    operation_id: str
    consumer_id: str
    start_time: str
    end_time: str
    metrics: dict[str, int]  # metricName -> the sum of its int64 values
    received_at: str
    operation: dict[str, Any]  # as received

    def to_dict(self) -> dict[str, Any]:
        return {
            "serviceName": self.service_name,
            "operationId": self.operation_id,
            "consumerId": self.consumer_id,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "metrics": {name: str(value) for name, value in self.metrics.items()},
            "receivedAt": self.received_at,
            "operation": self.operation,
        }


@dataclass
class InjectedError:
    """A per-operation reportError (or CheckError) the next matching operations get."""

    code: str
    message: str
    remaining: int
    consumer_id: str | None = None


@dataclass
class Store:
    clock: Callable[[], datetime]
    lock: threading.RLock = field(default_factory=threading.RLock)
    entitlements: dict[tuple[str, str], Entitlement] = field(default_factory=dict)
    services: dict[str, set[str]] = field(default_factory=dict)  # name -> metric names
    accepted: dict[str, AcceptedOperation] = field(default_factory=dict)  # by operationId
    repeats: list[dict[str, Any]] = field(default_factory=list)
    report_errors: deque[InjectedError] = field(default_factory=deque)
    check_errors: deque[InjectedError] = field(default_factory=deque)

    def now(self) -> datetime:
        return self.clock()

    def by_usage_reporting_id(self, usage_reporting_id: str) -> Entitlement | None:
        for entitlement in self.entitlements.values():
            if entitlement.usage_reporting_id == usage_reporting_id:
                return entitlement
        return None

    def take_injected(self, queue: deque[InjectedError], consumer_id: str) -> InjectedError | None:
        for injected in queue:
            if injected.consumer_id in (None, consumer_id):
                injected.remaining -= 1
                if injected.remaining <= 0:
                    queue.remove(injected)
                return injected
        return None

    def reset(self) -> None:
        self.entitlements.clear()
        self.services.clear()
        self.accepted.clear()
        self.repeats.clear()
        self.report_errors.clear()
        self.check_errors.clear()


def default_clock() -> datetime:
    return datetime.now(UTC)
