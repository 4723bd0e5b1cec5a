"""Azure Marketplace metering: the client (azure-identity + httpx) against the local emulator,
over HTTP on 127.0.0.1 (Entra ID over TLS with the emulator's throwaway CA).

Rules under test: https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis
and the OpenAPI model github.com/microsoft/commercial-marketplace-openapi,
Microsoft.Marketplace.Metering/2018-08-31/meteringapi.v1.json.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import jsonschema
import pytest
from azure.identity import ClientSecretCredential

from billbridge.activities.marketplaces.azure import (
    AzureEndpoints,
    AzureMarketplaceClient,
    azure_endpoints,
)
from billbridge.activities.marketplaces.base import (
    MarketplaceAccount,
    MarketplaceConfig,
    Outcome,
    PreparedReport,
    UsageRecord,
)
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ProviderAuthFailed,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from billbridge.emulators.azure_marketplace import (
    MARKETPLACE_RESOURCE_ID,
    AzureMarketplaceEmulator,
    Fault,
    LoggedRequest,
)

NOW = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
HOUR = NOW.replace(minute=0)
SUB_A = "11111111-2222-3333-4444-555555555555"
SUB_B = "66666666-7777-8888-9999-000000000000"
PLAN = "silver"
# The model's UsageEvent properties a SaaS event uses (resourceUri is for managed apps).
USAGE_EVENT_FIELDS = {"resourceId", "quantity", "dimension", "effectiveStartTime", "planId"}
# The model's BatchUsageEvent, restated as a JSON Schema (meteringapi.v1.json,
# components.schemas.BatchUsageEvent / UsageEvent): request 1..25 events; resourceId a uuid,
# quantity a number, effectiveStartTime a date-time; nothing else (a misspelt field would be
# ignored by a lenient server, so it fails here).
DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
BATCH_USAGE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["request"],
    "additionalProperties": False,
    "properties": {
        "request": {
            "type": "array",
            "minItems": 1,
            "maxItems": 25,
            "items": {
                "type": "object",
                "required": sorted(USAGE_EVENT_FIELDS),
                "additionalProperties": False,
                "properties": {
                    "resourceId": {
                        "type": "string",
                        "pattern": "^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$",
                    },
                    "quantity": {"type": "number", "exclusiveMinimum": 0},
                    "dimension": {"type": "string", "minLength": 1},
                    "effectiveStartTime": {
                        "type": "string",
                        "pattern": DATE_TIME,
                    },
                    "planId": {"type": "string", "minLength": 1},
                },
            },
        }
    },
}


@pytest.fixture
def emu() -> Iterator[AzureMarketplaceEmulator]:
    with AzureMarketplaceEmulator() as emulator:
        emulator.set_now(NOW)
        emulator.add_subscription(SUB_A, PLAN, ["tokens", "seats"])
        emulator.add_subscription(SUB_B, PLAN, ["tokens"])
        yield emulator


def make_client(emu: AzureMarketplaceEmulator, secret: str | None = None) -> AzureMarketplaceClient:
    return AzureMarketplaceClient(
        endpoints=AzureEndpoints(emu.base_url, emu.authority_url, emu.ca_file),
        tenant_id=emu.tenant_id,
        client_id=emu.client_id,
        client_secret=secret or emu.client_secret,
    )


@pytest.fixture
def client(emu: AzureMarketplaceEmulator) -> Iterator[AzureMarketplaceClient]:
    made = make_client(emu)
    yield made
    made.close()


def record(
    quantity: str,
    *,
    resource: str = SUB_A,
    dimension: str = "tokens",
    hour: datetime = HOUR,
    plan: str = PLAN,
) -> UsageRecord:
    return UsageRecord(
        record_id=f"cust-{resource[:4]}/{dimension}/{hour.isoformat()}",
        customer_id=f"cust-{resource[:4]}",
        account=MarketplaceAccount("azure", {"resource_id": resource, "plan_id": plan}),
        dimension=dimension,
        hour_start=hour,
        quantity=Decimal(quantity),
    )


def api_calls(emu: AzureMarketplaceEmulator, path: str) -> list[LoggedRequest]:
    return [entry for entry in emu.requests() if entry.path == path]


def assert_batches_match_the_model(emu: AzureMarketplaceEmulator) -> None:
    """Every batchUsageEvent body the emulator received is one Microsoft's model allows."""
    sent = api_calls(emu, "/api/batchUsageEvent")
    assert sent
    for entry in sent:
        jsonschema.validate(entry.body, BATCH_USAGE_EVENT_SCHEMA)


def test_token_request_goes_to_the_emulators_token_endpoint(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    client.check_credentials()

    requests = emu.requests()
    discovery, token, check = requests
    assert discovery.method == "GET"
    assert discovery.path == f"/{emu.tenant_id}/v2.0/.well-known/openid-configuration"
    assert token.method == "POST" and token.path == f"/{emu.tenant_id}/oauth2/v2.0/token"
    assert token.tls and token.status == 200
    assert token.body["grant_type"] == "client_credentials"
    assert token.body["client_id"] == emu.client_id
    assert token.body["scope"] == f"{MARKETPLACE_RESOURCE_ID}/.default"
    assert check.path == "/api/usageEvents" and check.status == 200
    assert check.query["api-version"] == "2018-08-31" and "usageStartDate" in check.query
    # The request log keeps no usable secret.
    logged = repr([entry.to_dict() for entry in requests])
    assert emu.client_secret not in logged
    assert check.authorization is not None and check.authorization.endswith("…")


def test_accepted_batch(emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient) -> None:
    records = [
        record("5"),
        record("2.5", dimension="seats"),
        record("7", resource=SUB_B),
        record("1", hour=HOUR - timedelta(hours=3)),
    ]
    report = client.prepare(records)
    results = client.send(report)

    assert [r.record_id for r in results] == [r.record_id for r in records]
    assert all(r.outcome is Outcome.ACCEPTED and r.marketplace_ref for r in results)
    sent = api_calls(emu, "/api/batchUsageEvent")[0]
    for item in sent.body["request"]:
        assert set(item) == USAGE_EVENT_FIELDS
    assert sent.body["request"][0]["effectiveStartTime"] == "2026-12-03T10:00:00Z"
    assert sent.request_id == report.payload["request_id"]
    held = {(a["resourceId"], a["dimension"], a["hour"]): a["quantity"] for a in emu.accepted()}
    assert held[(SUB_A, "seats", "2026-12-03T10:00:00Z")] == Decimal("2.5")
    assert sorted(a["usageEventId"] for a in emu.accepted()) == sorted(
        r.marketplace_ref for r in results
    )
    # Reported events read back from the API (per day, as the page's example).
    answer = httpx.get(f"{emu.base_url}/_emulator/accepted").json()
    assert len(answer) == 4
    assert_batches_match_the_model(emu)


def test_same_report_sent_again_is_a_duplicate_with_the_held_quantity(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    report = client.prepare([record("5.25")])
    first = client.send(report)
    again = client.send(report)  # a retried activity resends the saved request

    assert again[0].outcome is Outcome.DUPLICATE
    assert again[0].accepted_quantity == Decimal("5.25")
    assert again[0].marketplace_ref == first[0].marketplace_ref
    sends = api_calls(emu, "/api/batchUsageEvent")
    assert [s.request_id for s in sends] == [report.payload["request_id"]] * 2
    assert len(emu.accepted()) == 1
    assert_batches_match_the_model(emu)


def test_a_different_quantity_for_a_held_hour_is_refused_and_the_held_one_reported(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    client.send(client.prepare([record("5")]))
    # Another event in the same calendar hour (10:00-10:59:59), other quantity.
    results = client.send(client.prepare([record("7")]))

    assert results[0].outcome is Outcome.DUPLICATE
    assert results[0].accepted_quantity == Decimal("5")
    assert "Duplicate" in results[0].detail
    assert [a["quantity"] for a in emu.accepted()] == [Decimal("5")]


def test_zero_quantity_is_refused(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    assert client.reports_zero is False
    with pytest.raises(ValueError, match="> 0"):
        client.prepare([record("0")])
    # Sent anyway (a hand-written report), Azure answers InvalidQuantity for that event.
    report = client.prepare([record("1")])
    body = report.payload["body"].replace('"quantity":1', '"quantity":0')
    results = client.send(replace(report, payload={**report.payload, "body": body}))
    assert results[0].outcome is Outcome.NEEDS_ATTENTION
    assert results[0].detail.startswith("InvalidQuantity")
    assert emu.accepted() == []


def test_more_than_25_events_are_refused(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    hours = [HOUR - timedelta(hours=i) for i in range(13)]
    records = [record("1", hour=h) for h in hours] + [
        record("1", dimension="seats", hour=h) for h in hours
    ]
    assert len(records) == 26
    with pytest.raises(ValueError, match="at most 25"):
        client.prepare(records)
    first = client.prepare(records[:25])
    extra = client.prepare(records[25:])
    body = first.payload["body"][:-2] + "," + extra.payload["body"][len('{"request":[') :]
    too_many = PreparedReport(
        "azure", tuple(r.record_id for r in records), {**first.payload, "body": body}
    )
    with pytest.raises(ProviderRejected, match="more than 25"):
        client.send(too_many)
    assert emu.accepted() == []
    assert client.send(first)[24].outcome is Outcome.ACCEPTED


def test_usage_older_than_24_hours_is_expired(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    old = record("3", hour=HOUR - timedelta(hours=25))
    fresh = record("4", hour=HOUR - timedelta(hours=23))
    results = client.send(client.prepare([old, fresh]))

    assert results[0].outcome is Outcome.NEEDS_ATTENTION
    assert results[0].detail.startswith("window closed")
    assert results[1].outcome is Outcome.ACCEPTED
    assert_batches_match_the_model(emu)


def test_subscription_not_active_unknown_or_other_dimension_needs_attention(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    emu.set_subscription_status(SUB_B, "Suspended")
    results = client.send(
        client.prepare(
            [
                record("1", resource=SUB_B),
                record("1", resource="00000000-0000-0000-0000-000000000000"),
                record("1", dimension="gigabytes"),
                record("1"),
            ]
        )
    )
    outcomes = [(r.outcome, r.detail.split(":")[0]) for r in results]
    assert outcomes == [
        (Outcome.NEEDS_ATTENTION, "ResourceNotActive"),
        (Outcome.NEEDS_ATTENTION, "ResourceNotFound"),
        (Outcome.NEEDS_ATTENTION, "InvalidDimension"),
        (Outcome.ACCEPTED, "Accepted"),
    ]
    # Reactivated, the kept hour goes through.
    emu.set_subscription_status(SUB_B, "Subscribed")
    assert client.send(client.prepare([record("1", resource=SUB_B)]))[0].outcome is Outcome.ACCEPTED


def test_bad_token_is_refused(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    url = f"{emu.base_url}/api/batchUsageEvent?api-version=2018-08-31"
    body = client.prepare([record("1")]).payload["body"]
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        answer = httpx.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
        # The page: 403 when "the authorization token isn't provided, is invalid or expired".
        assert answer.status_code == 403
    # A token for another resource is refused too.
    other = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        emu.client_secret,
        authority=emu.authority_url,
        disable_instance_discovery=True,
        connection_verify=emu.ca_file,
    ).get_token("https://management.azure.com/.default")
    answer = httpx.post(url, content=body, headers={"Authorization": f"Bearer {other.token}"})
    assert answer.status_code == 403
    assert emu.accepted() == []


def test_expired_token_is_replaced_once(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    client.check_credentials()
    emu.expire_tokens()  # azure-identity still holds it as valid
    assert client.send(client.prepare([record("1")]))[0].outcome is Outcome.ACCEPTED
    statuses = [(e.path.rsplit("/", 1)[-1], e.status) for e in emu.requests()]
    # A new credential: discovery and a new token, then the same request once more.
    assert statuses[-4:] == [
        ("batchUsageEvent", 403),
        ("openid-configuration", 200),
        ("token", 200),
        ("batchUsageEvent", 200),
    ]


def test_wrong_secret_is_auth_failed(emu: AzureMarketplaceEmulator) -> None:
    client = make_client(emu, secret="not-the-secret")
    with pytest.raises(ProviderAuthFailed, match="AADSTS7000215"):
        client.check_credentials()
    token = next(e for e in emu.requests() if e.path.endswith("/token"))
    client.close()
    assert token.status == 401
    assert "not-the-secret" not in repr(token.to_dict())


def test_throttled_is_rate_limited_with_retry_after(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    emu.add_fault(Fault(kind="status", status=429, retry_after=7, path_prefix="/api/"))
    report = client.prepare([record("1")])
    with pytest.raises(ProviderRateLimited) as raised:
        client.send(report)
    assert raised.value.retry_after == timedelta(seconds=7)
    assert emu.accepted() == []
    assert client.send(report)[0].outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (Fault(kind="status", status=503), ProviderUnavailable),
        (Fault(kind="drop"), ProviderUnavailable),
        (Fault(kind="status", status=503, path_prefix="/token"), ProviderUnavailable),
        (
            Fault(kind="status", status=429, retry_after=3, path_prefix="/token"),
            ProviderRateLimited,
        ),
    ],
)
def test_outage_is_unavailable(
    emu: AzureMarketplaceEmulator,
    client: AzureMarketplaceClient,
    fault: Fault,
    raised: type[Exception],
) -> None:
    """API and Entra ID outages alike (path_prefix "/token": Entra's token endpoint)."""
    prefix = f"/{emu.tenant_id}/oauth2" if fault.path_prefix == "/token" else "/api/"
    emu.add_fault(replace(fault, path_prefix=prefix))
    with pytest.raises(raised) as caught:
        client.send(client.prepare([record("1")]))
    if isinstance(caught.value, ProviderRateLimited):
        assert caught.value.retry_after == timedelta(seconds=3)
    assert emu.accepted() == []


def test_unreachable_entra_is_unavailable() -> None:
    client = AzureMarketplaceClient(
        # Nothing listens on the discard port.
        endpoints=AzureEndpoints("http://127.0.0.1:9", "https://127.0.0.1:9", None),
        tenant_id="t",
        client_id="c",
        client_secret="s",
    )
    with pytest.raises(ProviderUnavailable):
        client.check_credentials()
    client.close()


def test_exact_decimal_quantities_are_conserved(
    emu: AzureMarketplaceEmulator, client: AzureMarketplaceClient
) -> None:
    ingested = ["0.1", "0.2", "1234.5678", "3", "0.000001", "99999999.99999"]
    records = [record(q, hour=HOUR - timedelta(hours=i)) for i, q in enumerate(ingested)]
    report = client.prepare(records)
    assert '"quantity":0.1,' in report.payload["body"]
    assert '"quantity":0.000001,' in report.payload["body"]
    results = client.send(report)

    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    held = sum((a["quantity"] for a in emu.accepted()), Decimal(0))
    assert held == sum((Decimal(q) for q in ingested), Decimal(0)) == Decimal("100001237.867791")
    sent = api_calls(emu, "/api/batchUsageEvent")[0]
    assert [i["quantity"] for i in sent.body["request"]] == [Decimal(q) for q in ingested]
    # PreparedReport is JSON-able as it is (saved in the ledger before sending).
    assert json.loads(json.dumps(report.payload)) == report.payload
    assert sent.body == json.loads(report.payload["body"], parse_float=Decimal)
    assert_batches_match_the_model(emu)
    # More digits than Azure's double holds would bill another number: refused before sending.
    with pytest.raises(ProviderRejected, match="double"):
        client.prepare([record("0.12345678901234567891")])


def test_metering_api_over_https_and_single_event_conflict(emu: AzureMarketplaceEmulator) -> None:
    token = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        emu.client_secret,
        authority=emu.authority_url,
        disable_instance_discovery=True,
        connection_verify=emu.ca_file,
    ).get_token(f"{MARKETPLACE_RESOURCE_ID}/.default")
    event = {
        "resourceId": SUB_A,
        "quantity": 5.0,
        "dimension": "tokens",
        "effectiveStartTime": "2026-12-03T10:15:00",
        "planId": PLAN,
    }
    with httpx.Client(
        verify=ssl.create_default_context(cafile=emu.ca_file), base_url=emu.authority_url
    ) as http:
        headers = {"Authorization": f"Bearer {token.token}"}
        url = "/api/usageEvent?api-version=2018-08-31"
        first = http.post(url, json=event, headers=headers)
        again = http.post(
            url, json={**event, "effectiveStartTime": "2026-12-03T10:00:01Z"}, headers=headers
        )
        zero = http.post(url, json={**event, "quantity": 0}, headers=headers)
        rows = http.get(
            "/api/usageEvents",
            params={"api-version": "2018-08-31", "usageStartDate": "2026-12-03"},
            headers=headers,
        )
    assert first.status_code == 200 and first.json()["status"] == "Accepted"
    assert again.status_code == 409
    conflict = again.json()
    assert conflict["code"] == "Conflict"
    assert (
        conflict["additionalInfo"]["acceptedMessage"]["usageEventId"]
        == first.json()["usageEventId"]
    )
    assert conflict["additionalInfo"]["acceptedMessage"]["status"] == "Duplicate"
    assert zero.status_code == 400 and zero.json()["details"][0]["code"] == "InvalidQuantity"
    assert rows.status_code == 200
    assert rows.json()[0]["submittedQuantity"] == 5.0
    assert rows.json()[0]["usageDate"] == "2026-12-03T00:00:00Z"
    assert all(e.tls for e in emu.requests())


def test_from_settings_reads_the_endpoints(
    emu: AzureMarketplaceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Settings.from_env({"TEMPORAL_ADDRESS": "temporal:7233"})
    assert azure_endpoints(cluster, {}) == AzureEndpoints(
        "https://marketplaceapi.microsoft.com", "https://login.microsoftonline.com"
    )
    assert azure_endpoints(Settings.from_env({}), {}).api_base == "http://127.0.0.1:12122"
    env = emu.client_env()
    for name in ("AZURE_AUTHORITY_HOST", "AZURE_MARKETPLACE_CA_BUNDLE"):
        monkeypatch.setenv(name, env[name])
    config = MarketplaceConfig(
        "azure",
        "azure",
        {
            "tenant_id": emu.tenant_id,
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
        },
    )
    settings = Settings(marketplace_endpoints={"azure": env["AZURE_MARKETPLACE_ENDPOINT"]})
    client = AzureMarketplaceClient.from_settings(settings, config)
    try:
        client.check_credentials()
    finally:
        client.close()
    assert [e.status for e in emu.requests()] == [200, 200, 200]
