"""The report activity against the Azure and Google Cloud emulators, through their official
clients: what each marketplace takes (Azure no zero hours, Google whole numbers with the
fraction carried), needs attention that keeps the hour and sends it as saved after the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from billbridge.activities.metering import MeteringActivities
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import ReportHoursInput
from billbridge.emulators.azure_marketplace import AzureMarketplaceEmulator
from billbridge.emulators.gcp_marketplace import GcpMarketplaceEmulator
from billbridge.starter.usage_door import ingest_usage, link_marketplace, set_dimension_mapping
from conftest import CODEC_TEST_KEY

CUSTOMER = "cust_cloud"
RESOURCE, PLAN = "0c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8", "gold"
PROVIDER, ENTITLEMENT, REPORTING_ID = "acme-saas", "ent-1", "project_number:123456"
SERVICE = "acme-saas.endpoints.acme-public.cloud.goog"


def storage_events(hour: datetime, gigabytes: list[str], tag: str) -> list[dict[str, Any]]:
    return [
        {
            "idempotency_key": f"{tag}-{n}",
            "customer_id": CUSTOMER,
            "event_name": "storage",
            "timestamp": (hour + timedelta(minutes=n + 1)).isoformat(),
            "properties": {"gb": amount},
        }
        for n, amount in enumerate(gigabytes)
    ]


def connect(
    store: Store,
    settings: Settings,
    marketplace: str,
    credentials: dict[str, str],
    account: dict[str, str],
    extra: dict[str, str] | None = None,
) -> None:
    sealed = SecretBox.from_settings(settings).seal(json.dumps(credentials), marketplace)
    store.upsert_connection(marketplace, marketplace, credentials_ref=sealed, settings=extra or {})
    set_dimension_mapping(
        store, marketplace, {"event_name": "storage", "property": "gb", "dimension": "storage_gb"}
    )
    link_marketplace(
        store,
        {
            "customer_id": CUSTOMER,
            "marketplace": marketplace,
            "connection_id": marketplace,
            "account": account,
        },
    )


def report(activities: MeteringActivities, marketplace: str, hours: list[datetime]) -> Any:
    return ActivityEnvironment().run(
        activities.report_metering_hours,
        ReportHoursInput(customer_id=CUSTOMER, marketplace=marketplace, hours=hours),
    )


@pytest.fixture
def sealing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureMarketplaceEmulator]:
    with AzureMarketplaceEmulator() as emulator:
        env = emulator.client_env()
        for name in ("AZURE_AUTHORITY_HOST", "AZURE_MARKETPLACE_CA_BUNDLE"):
            monkeypatch.setenv(name, env[name])
        emulator.add_subscription(RESOURCE, PLAN, ["storage_gb"])
        yield emulator


def test_azure_gets_no_zero_hours_and_a_kept_hour_goes_as_saved(
    store: Store, settings: Settings, azure: AzureMarketplaceEmulator, sealing: None
) -> None:
    settings = replace(settings, marketplace_endpoints={"azure": azure.base_url})
    connect(
        store,
        settings,
        "azure",
        {
            "tenant_id": azure.tenant_id,
            "client_id": azure.client_id,
            "client_secret": azure.client_secret,
        },
        {"resource_id": RESOURCE, "plan_id": PLAN},
    )
    activities = MeteringActivities(store, settings)
    first = hour_start(datetime.now(UTC)) - 5 * HOUR
    ingest_usage(store, storage_events(first, ["1.25", "0.5"], "a"))
    ingest_usage(store, storage_events(first + 2 * HOUR, ["4"], "b"))
    report(activities, "azure", [first, first + HOUR])
    # Azure refuses zero quantities: the empty hour is not sent.
    assert [(e["hour"], str(e["quantity"])) for e in azure.accepted()] == [
        (first.strftime("%Y-%m-%dT%H:%M:%SZ"), "1.75")
    ]

    azure.set_subscription_status(RESOURCE, "Suspended")
    with pytest.raises(ApplicationError) as refused:
        report(activities, "azure", [first + 2 * HOUR])
    assert refused.value.type == "MarketplaceNeedsAttention" and refused.value.non_retryable
    # More usage of that hour arrives meanwhile; the kept hour still goes as it was saved.
    ingest_usage(store, storage_events(first + 2 * HOUR, ["9"], "c"))
    azure.set_subscription_status(RESOURCE, "Subscribed")
    report(activities, "azure", [first + 2 * HOUR])
    held = {e["hour"]: Decimal(str(e["quantity"])) for e in azure.accepted()}
    assert held[(first + 2 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")] == 4
    record = store.ledger_record(f"{CUSTOMER}/storage_gb/{(first + 2 * HOUR).isoformat()}")
    assert record is not None and record.delivered and record.attempts == 2
    # The 9 GB that came later go with the next hour.
    report(activities, "azure", [first + 3 * HOUR])
    held = {e["hour"]: Decimal(str(e["quantity"])) for e in azure.accepted()}
    assert held[(first + 3 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")] == 9


def test_google_takes_whole_numbers_and_the_fraction_rides_along(
    store: Store, settings: Settings, sealing: None
) -> None:
    with GcpMarketplaceEmulator() as gcp:
        gcp.add_entitlement(PROVIDER, ENTITLEMENT, REPORTING_ID, SERVICE, ["storage_gb"])
        settings = replace(settings, marketplace_endpoints={"gcp": gcp.base_url})
        connect(
            store,
            settings,
            "gcp",
            {"service_account_json": gcp.service_account_json()},
            {"usage_reporting_id": REPORTING_ID, "service_name": SERVICE},
            {"provider_id": PROVIDER},
        )
        activities = MeteringActivities(store, settings)
        first = hour_start(datetime.now(UTC)) - 4 * HOUR
        ingest_usage(store, storage_events(first, ["1.6", "0.3"], "a"))  # 1.9
        ingest_usage(store, storage_events(first + HOUR, ["2.2"], "b"))  # 4.1 to date
        report(activities, "gcp", [first, first + HOUR, first + 2 * HOUR])
        sent = [int(op["metrics"][f"{SERVICE}/storage_gb"]) for op in gcp.accepted()]
    # 1 (0.9 carried), then 3 (4.1 - 1), then 0 (0.1 still owed): whole numbers, none lost.
    assert sent == [1, 3, 0]
