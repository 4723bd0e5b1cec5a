"""The demo's metering part: a few customers on the AWS, Azure and Google Cloud Marketplace
emulators, over a compressed clock.

Each customer's usage of the last three closed hours is ingested, its MarketplaceMeteringWorkflow
is started three hours back with no grace period, so the three hours are due at once, and is
then stopped (every closed hour reported, then the end). What the marketplace emulator accepted
is compared with what was ingested, after unit conversion: equal, or short by less than the
unit the marketplace cannot take (Google's whole numbers; AWS's 6 decimals), which stays owed.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import Client

from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import MeteringInput
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id

HOURS = 3
AWS_PRODUCT = "prod-billbridgedemo"
AWS_ACCOUNT, AWS_LICENSE = (
    "111122223333",
    "arn:aws:license-manager::294406891311:license:l-demo0001",
)
AZURE_RESOURCE, AZURE_PLAN = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910", "standard"
GCP_PROVIDER, GCP_SERVICE = "billbridge-demo", "billbridge-demo.endpoints.demo.cloud.goog"
# Event name -> (property summed, or None for a count; dimension; factor): gigabytes stored
# from bytes, and API calls counted.
MAPPINGS = {
    "upload": ("bytes", "storage_gb", Decimal("0.000000001")),
    "api_call": (None, "api_calls", Decimal(1)),
}
# What each marketplace cannot take stays owed: reported may be short of ingested by less than.
CARRY = {"aws": Decimal("0.000001"), "azure": Decimal("0.000001"), "gcp": Decimal(1)}


@dataclasses.dataclass
class MeteringRow:
    customer_id: str
    marketplace: str
    dimension: str
    ingested: str
    reported: str
    ok: bool


def _events(customer: str, first: datetime, seed: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for h in range(HOURS):
        hour = first + h * HOUR
        for n in range(3 + (seed + h) % 3):
            events.append(
                {
                    "idempotency_key": f"{customer}-{h}-up-{n}",
                    "customer_id": customer,
                    "event_name": "upload",
                    "timestamp": (hour + timedelta(minutes=7 * n + 1)).isoformat(),
                    "properties": {"bytes": 123_456_789 * (n + 1) + seed * 1_001},
                }
            )
        for n in range((seed * 5 + h * 3) % 9):
            events.append(
                {
                    "idempotency_key": f"{customer}-{h}-call-{n}",
                    "customer_id": customer,
                    "event_name": "api_call",
                    "timestamp": (hour + timedelta(minutes=n * 5 + 2)).isoformat(),
                    "properties": {},
                }
            )
    return events


def _ingested(events: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals = {dimension: Decimal(0) for _, dimension, _ in MAPPINGS.values()}
    for event in events:
        prop, dimension, factor = MAPPINGS[event["event_name"]]
        amount = Decimal(1) if prop is None else Decimal(event["properties"][prop])
        totals[dimension] += amount * factor
    return totals


@dataclasses.dataclass(frozen=True)
class MeteredCustomer:
    marketplace: str
    account: str
    """How the marketplace names the customer in what it holds: AWS account id, Azure
    resource id, Google usage reporting id."""


@dataclasses.dataclass(frozen=True)
class HeldRecord:
    """One hour's quantity of a dimension as the marketplace holds it."""

    dimension: str
    hour: datetime
    quantity: Decimal


def seed_marketplaces(
    settings: Settings,
    store: Store,
    emulators: dict[str, Any],
    run: str,
    *,
    per_marketplace: int = 1,
    mappings: dict[str, tuple[str | None, str, Decimal]] | None = None,
) -> dict[str, MeteredCustomer]:
    """Connections, dimension mappings and `per_marketplace` linked customers (each subscribed
    at the marketplace) on the emulators this process started; customer id -> where."""
    box = SecretBox.from_settings(settings)
    mappings = mappings or MAPPINGS
    dimensions = [dimension for _, dimension, _ in mappings.values()]
    customers: dict[str, MeteredCustomer] = {}

    def connect(marketplace: str, credentials: dict[str, str], extra: dict[str, str]) -> None:
        sealed = box.seal(json.dumps(credentials), marketplace) if credentials else None
        store.upsert_connection(marketplace, marketplace, credentials_ref=sealed, settings=extra)
        for event_name, (prop, dimension, factor) in mappings.items():
            mapping = {"event_name": event_name, "dimension": dimension, "factor": str(factor)}
            if prop:
                mapping["property"] = prop
            set_dimension_mapping(store, marketplace, mapping)

    def link(marketplace: str, n: int, account: dict[str, str], name: str) -> None:
        customer = f"cust_{marketplace}_{run}" + (f"_{n}" if per_marketplace > 1 else "")
        link_marketplace(
            store,
            {
                "customer_id": customer,
                "marketplace": marketplace,
                "connection_id": marketplace,
                "account": account,
            },
        )
        customers[customer] = MeteredCustomer(marketplace, name)

    if aws := emulators.get("aws"):
        from billbridge.emulators.aws_marketplace import (
            DEFAULT_ACCESS_KEY_ID,
            DEFAULT_SECRET_ACCESS_KEY,
        )

        aws.add_product(AWS_PRODUCT, dimensions)
        keys = {
            "access_key_id": DEFAULT_ACCESS_KEY_ID,
            "secret_access_key": DEFAULT_SECRET_ACCESS_KEY,
        }
        connect("aws", keys, {"region": "us-east-1"})
        for n in range(per_marketplace):
            account = str(int(AWS_ACCOUNT) + n)
            # l-demo0001, l-demo0002, ...: a license belongs to one buyer account.
            license_arn = f"{AWS_LICENSE[:-4]}{n + 1:04d}"
            aws.subscribe(AWS_PRODUCT, customer_aws_account_id=account, license_arn=license_arn)
            link(
                "aws", n, {"customer_aws_account_id": account, "license_arn": license_arn}, account
            )
    if azure := emulators.get("azure"):
        secret = {
            "tenant_id": azure.tenant_id,
            "client_id": azure.client_id,
            "client_secret": azure.client_secret,
        }
        connect("azure", secret, {})
        for n in range(per_marketplace):
            resource = AZURE_RESOURCE if n == 0 else f"{AZURE_RESOURCE[:-4]}{n:04d}"  # one each
            azure.add_subscription(resource, AZURE_PLAN, dimensions)
            link("azure", n, {"resource_id": resource, "plan_id": AZURE_PLAN}, resource)
    if gcp := emulators.get("gcp"):
        connect(
            "gcp",
            {"service_account_json": gcp.service_account_json()},
            {"provider_id": GCP_PROVIDER},
        )
        for n in range(per_marketplace):
            reporting_id = f"project_number:{run}" + (f"{n}" if per_marketplace > 1 else "")
            gcp.add_entitlement(
                GCP_PROVIDER, f"ent-{run}-{n}", reporting_id, GCP_SERVICE, dimensions
            )
            link(
                "gcp",
                n,
                {"usage_reporting_id": reporting_id, "service_name": GCP_SERVICE},
                reporting_id,
            )
    return customers


def held_records(marketplace: str, emulator: Any, account: str) -> list[HeldRecord]:
    """What the marketplace emulator holds for one customer, hour by hour."""
    held: list[HeldRecord] = []
    if marketplace == "aws":
        for record in emulator.accepted():
            if record.customer_aws_account_id == account:
                held.append(HeldRecord(record.dimension, record.hour, record.quantity))
    elif marketplace == "azure":
        for event in emulator.accepted():
            if event["resourceId"] == account:
                hour = datetime.fromisoformat(event["hour"].replace("Z", "+00:00"))
                held.append(HeldRecord(event["dimension"], hour, Decimal(str(event["quantity"]))))
    else:
        for operation in emulator.accepted():
            if operation["consumerId"] == account:
                hour = hour_start(
                    datetime.fromisoformat(operation["startTime"].replace("Z", "+00:00"))
                )
                for name, value in operation["metrics"].items():
                    held.append(HeldRecord(name.rsplit("/", 1)[-1], hour, Decimal(value)))
    return held


def _reported(marketplace: str, emulator: Any, account: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for record in held_records(marketplace, emulator, account):
        totals[record.dimension] = totals.get(record.dimension, Decimal(0)) + record.quantity
    return totals


async def run_metering(
    settings: Settings, store: Store, client: Client, emulators: dict[str, Any], run: str
) -> list[MeteringRow]:
    """Meter the demo customers; one row per customer and dimension."""
    customers = seed_marketplaces(settings, store, emulators, run)
    first = hour_start(datetime.now(UTC)) - HOURS * HOUR
    ingested: dict[str, dict[str, Decimal]] = {}
    for seed, customer in enumerate(customers):
        events = _events(customer, first, seed)
        ingest_usage(store, events)
        ingested[customer] = _ingested(events)
    handles = []
    for customer, where in customers.items():
        marketplace = where.marketplace
        handle = await client.start_workflow(
            MarketplaceMeteringWorkflow.run,
            MeteringInput(
                customer_id=customer, marketplace=marketplace, grace_seconds=0, next_hour=first
            ),
            id=workflow_id(customer),
            task_queue=settings.task_queue,
        )
        await handle.signal(MarketplaceMeteringWorkflow.stop)
        handles.append(handle)
    for handle in handles:
        await handle.result()
    rows = []
    for customer, where in customers.items():
        marketplace = where.marketplace
        reported = _reported(marketplace, emulators[marketplace], where.account)
        for dimension, total in sorted(ingested[customer].items()):
            sent = reported.get(dimension, Decimal(0))
            ok = Decimal(0) <= total - sent < CARRY[marketplace]
            rows.append(
                MeteringRow(customer, marketplace, dimension, _text(total), _text(sent), ok)
            )
    return rows


def _text(amount: Decimal) -> str:
    return format(amount.normalize(), "f") if amount else "0"
