"""The metering rules: subscriptions, one accepted event per resource + dimension + hour, the
24-hour window, and the per-event status the batch API answers.

Source (rules cited per line below):
https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis
("the page"), and its machine-readable model, the OpenAPI document Microsoft publishes:
https://github.com/microsoft/commercial-marketplace-openapi,
Microsoft.Marketplace.Metering/2018-08-31/meteringapi.v1.json ("the model").

Quantities: the model types `quantity` as `number`/`double`. The emulator keeps what a double
holds: the nearest binary64 to the decimal text sent, read back as its shortest decimal form
(so "0.1" stays 0.1, while text with more than 15-17 significant digits comes back changed,
as it would from Azure). UNCONFIRMED: how Azure stores quantities internally.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

# The page: "Usage events can only be emitted for the past 24 hours."
WINDOW = timedelta(hours=24)
# The page (batch): "The maximal number of events in a single batch is 25."; the model:
# BatchUsageEvent.request minItems 1, maxItems 25.
MAX_BATCH = 25
API_VERSION = "2018-08-31"  # the page: "Use 2018-08-31."
# The page's batch example: an item not accepted carries this messageTime.
NO_MESSAGE_TIME = "0001-01-01T00:00:00"

SUBSCRIBED = "Subscribed"
# SaaS subscription states (SaaS fulfillment API v2, saasSubscriptionStatus:
# https://learn.microsoft.com/partner-center/marketplace/partner-center-portal/pc-saas-fulfillment-subscription-api).
SUBSCRIPTION_STATES = ("PendingFulfillmentStart", "Subscribed", "Suspended", "Unsubscribed")


@dataclass
class Subscription:
    resource_id: str
    plan_id: str
    dimensions: frozenset[str]
    status: str = SUBSCRIBED
    client_id: str | None = None
    """The publisher app whose tokens may meter it (None: any app registered here)."""
    offer_id: str = "billbridge-offer"


@dataclass
class AcceptedEvent:
    usage_event_id: str
    resource_id: str
    plan_id: str
    dimension: str
    hour: datetime
    effective_start_time: str  # as the ISV sent it (the page: "as sent by the ISV")
    quantity: Decimal  # as Azure holds it (a double)
    message_time: datetime

    def message(self, status: str) -> dict[str, Any]:
        return {
            "usageEventId": self.usage_event_id,
            "status": status,
            "messageTime": iso(self.message_time),
            "resourceId": self.resource_id,
            "quantity": self.quantity,
            "dimension": self.dimension,
            "effectiveStartTime": self.effective_start_time,
            "planId": self.plan_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "usageEventId": self.usage_event_id,
            "resourceId": self.resource_id,
            "planId": self.plan_id,
            "dimension": self.dimension,
            "hour": self.hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "effectiveStartTime": self.effective_start_time,
            "quantity": self.quantity,
            "messageTime": iso(self.message_time),
        }


@dataclass
class Outcome:
    """One event's answer: its batch status and what goes with it."""

    status: str
    message: str = ""
    target: str = ""
    accepted: AcceptedEvent | None = None  # Accepted: the new event; Duplicate: the held one
    echo: dict[str, Any] = field(default_factory=dict)  # the request's fields, as sent


def iso(moment: datetime) -> str:
    """UTC with 7 fractional digits and Z, as the page's examples write messageTime."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def as_double(value: Decimal) -> Decimal:
    """What a binary64 holds of `value`, in its shortest decimal text ("5.0", "0.1")."""
    return Decimal(repr(float(value)))


def parse_time(text: Any) -> datetime | None:
    """effectiveStartTime: ISO 8601; without an offset it is UTC (the page's examples,
    "2018-12-01T08:30:14", carry none: "time in UTC")."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Metering:
    """Subscriptions and accepted usage events; every method holds the one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.subscriptions: dict[str, Subscription] = {}
        self.events: dict[tuple[str, str, datetime], AcceptedEvent] = {}
        self.order: list[AcceptedEvent] = []

    def reset_events(self) -> None:
        with self.lock:
            self.events.clear()
            self.order.clear()

    def emit(self, item: Any, now: datetime, client_id: str) -> Outcome:
        """Apply the rules to one usage event, in this order: shape, quantity, time window,
        subscription, plan, dimension, duplicate. UNCONFIRMED: the order Azure checks in (the
        page lists statuses, not precedence)."""
        if not isinstance(item, dict):
            return Outcome("BadArgument", "The usage event must be a JSON object.", "request")
        echo = {
            key: item[key]
            for key in (
                "resourceId",
                "resourceUri",
                "quantity",
                "dimension",
                "effectiveStartTime",
                "planId",
            )
            if key in item
        }
        # The model: resourceId (SaaS subscription id) or resourceUri (managed apps), one of.
        resource = item.get("resourceId") or item.get("resourceUri")
        if not isinstance(resource, str) or not resource:
            return Outcome("BadArgument", "The resourceId is required.", "ResourceId", echo=echo)
        quantity = item.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
            return Outcome("BadArgument", "The quantity is required.", "Quantity", echo=echo)
        # The page: quantity "must be greater than 0"; status InvalidQuantity: "The quantity
        # passed is lower or equal to 0."
        if Decimal(quantity) <= 0:
            return Outcome(
                "InvalidQuantity",
                "The quantity passed is lower or equal to 0.",
                "Quantity",
                echo=echo,
            )
        dimension = item.get("dimension")
        if not isinstance(dimension, str) or not dimension:
            return Outcome("BadArgument", "The dimension is required.", "Dimension", echo=echo)
        plan_id = item.get("planId")
        if not isinstance(plan_id, str) or not plan_id:
            return Outcome("BadArgument", "The planId is required.", "PlanId", echo=echo)
        start = parse_time(item.get("effectiveStartTime"))
        if start is None:
            return Outcome(
                "BadArgument",
                "The effectiveStartTime is required, an ISO 8601 date and time.",
                "EffectiveStartTime",
                echo=echo,
            )
        # The page: effectiveStartTime is "from now and until 24 hours back"; older is
        # "Expired usage" (batch) / "Event has expired" (400, single).
        if start < now - WINDOW:
            return Outcome(
                "Expired",
                "The effectiveStartTime is more than 24 hours in the past. Event has expired.",
                "EffectiveStartTime",
                echo=echo,
            )
        # UNCONFIRMED: the status of a time in the future (the page only says "from now").
        if start > now:
            return Outcome(
                "BadArgument",
                "The effectiveStartTime is in the future.",
                "EffectiveStartTime",
                echo=echo,
            )
        with self.lock:
            sub = self.subscriptions.get(resource.lower())
            # "ResourceNotFound: The usage resource provided is invalid."
            if sub is None:
                return Outcome(
                    "ResourceNotFound",
                    "The usage resource provided is invalid.",
                    "ResourceId",
                    echo=echo,
                )
            # "ResourceNotAuthorized: You are not authorized to provide usage for this
            # resource." (an offer published with another Entra app: the page's 403 text).
            if sub.client_id is not None and sub.client_id.lower() != client_id.lower():
                return Outcome(
                    "ResourceNotAuthorized",
                    "You are not authorized to provide usage for this resource.",
                    "ResourceId",
                    echo=echo,
                )
            # The page (400): "SaaS subscription is not in Subscribed status."; the batch
            # status ResourceNotActive is in the contract's list and today's page, not in the
            # model's enum (UNCONFIRMED at the model).
            if sub.status != SUBSCRIBED:
                return Outcome(
                    "ResourceNotActive",
                    f"SaaS subscription is not in Subscribed status (it is {sub.status}).",
                    "ResourceId",
                    echo=echo,
                )
            # UNCONFIRMED: a planId other than the subscription's plan.
            if plan_id != sub.plan_id:
                return Outcome(
                    "BadArgument",
                    f"The planId '{plan_id}' is not the plan of this subscription.",
                    "PlanId",
                    echo=echo,
                )
            # "InvalidDimension: The dimension for which the usage is passed is invalid for
            # this offer/plan."
            if dimension not in sub.dimensions:
                return Outcome(
                    "InvalidDimension",
                    "The dimension for which the usage is passed is invalid for this offer/plan.",
                    "Dimension",
                    echo=echo,
                )
            # The page: "Only one usage event can be emitted for each hour of a calendar day
            # per resource and dimension" - a second one in 8:00-8:59:59 is a duplicate.
            hour = start.replace(minute=0, second=0, microsecond=0)
            key = (sub.resource_id.lower(), dimension, hour)
            held = self.events.get(key)
            if held is not None:
                return Outcome(
                    "Duplicate", "This usage event already exist.", accepted=held, echo=echo
                )
            event = AcceptedEvent(
                usage_event_id=str(uuid.uuid4()),
                resource_id=resource,
                plan_id=plan_id,
                dimension=dimension,
                hour=hour,
                effective_start_time=str(item["effectiveStartTime"]),
                quantity=as_double(Decimal(quantity)),
                message_time=now,
            )
            self.events[key] = event
            self.order.append(event)
            return Outcome("Accepted", accepted=event, echo=echo)

    def usage_events(
        self,
        start: datetime,
        end: datetime,
        filters: dict[str, str],
    ) -> list[dict[str, Any]]:
        """GET usageEvents: per day, resource, plan and dimension (the page's "retrieve usage
        events" example: usageDate at midnight, submittedQuantity, processedQuantity,
        submittedCount). UNCONFIRMED: Azure shows events there only after processing; the
        emulator shows them at once, as reconStatus Accepted."""
        rows: dict[tuple[str, str, str, datetime], dict[str, Any]] = {}
        with self.lock:
            for event in self.order:
                if not start <= event.hour <= end:
                    continue
                sub = self.subscriptions.get(event.resource_id.lower())
                offer = sub.offer_id if sub else ""
                wanted = {
                    "offerId": offer,
                    "planId": event.plan_id,
                    "dimension": event.dimension,
                    "reconStatus": "Accepted",
                }
                if any(
                    filters.get(name) not in (None, "", value) for name, value in wanted.items()
                ):
                    continue
                day = event.hour.replace(hour=0)
                key = (event.resource_id, event.plan_id, event.dimension, day)
                row = rows.setdefault(
                    key,
                    {
                        "usageDate": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "usageResourceId": event.resource_id,
                        "dimension": event.dimension,
                        "planId": event.plan_id,
                        "planName": event.plan_id,
                        "offerId": offer,
                        "offerName": offer,
                        "offerType": "SaaS",
                        "azureSubscriptionId": "",
                        "reconStatus": "Accepted",
                        "submittedQuantity": Decimal(0),
                        "processedQuantity": Decimal(0),
                        "submittedCount": 0,
                    },
                )
                row["submittedQuantity"] += event.quantity
                row["processedQuantity"] += event.quantity
                row["submittedCount"] += 1
        return list(rows.values())
