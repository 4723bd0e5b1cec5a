"""Google Cloud Marketplace: GcpMarketplaceClient through the official clients
(google-cloud-service-control over REST, google-api-python-client's Partner Procurement) against
the emulator on a free port; every request the emulator receives is validated against the
discovery documents shipped in google-api-python-client, so a wrong field name fails here even
when the emulator would take it."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from temporalio.testing import ActivityEnvironment

from billbridge.activities.marketplaces.base import (
    MarketplaceAccount,
    MarketplaceConfig,
    Outcome,
    UsageRecord,
)
from billbridge.activities.marketplaces.gcp import (
    ENDPOINT_ENV,
    PROCUREMENT_URL,
    SERVICE_CONTROL_URL,
    GcpMarketplaceClient,
    endpoints,
    operation_id,
)
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderRateLimited,
    ProviderUnavailable,
)
from billbridge.emulators.gcp_marketplace import Fault, GcpMarketplaceEmulator, LoggedRequest

PROVIDER = "acme-saas"
SERVICE = "acme-analytics.gcpmarketplace.acme.example"
METRICS = ("requests", "storage_gib")
CONSUMER_A = "project_number:100000000001"
CONSUMER_B = "project_number:100000000002"
NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)
HOUR = datetime(2026, 12, 3, 9, tzinfo=UTC)


# -- the discovery documents as a request validator --------------------------------------------


def _document(name: str) -> dict[str, Any]:
    folder = resources.files("googleapiclient") / "discovery_cache" / "documents"
    return dict(json.loads((folder / f"{name}.json").read_text()))


DOCUMENTS = [_document("servicecontrol.v1"), _document("cloudcommerceprocurement.v1")]
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
# System parameters every Google API takes besides the document's own "parameters"
# (https://cloud.google.com/apis/docs/system-parameters); google-api-core's REST transports send
# "$alt=json;enum-encoding=int" (google/api_core/rest_helpers.py).
SYSTEM_PARAMETERS = frozenset({"$alt"})


def _methods(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from resource.get("methods", {}).values()
    for child in resource.get("resources", {}).values():
        yield from _methods(child)


def _find_method(method: str, path: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """(document, method description, path relative to the service root) for a request."""
    for doc in DOCUMENTS:
        relative = path.removeprefix("/" + doc["servicePath"])
        for described in _methods(doc):
            pattern = re.escape(described["flatPath"])
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
            if described["httpMethod"] == method and re.fullmatch(pattern, relative.lstrip("/")):
                return doc, described, relative.lstrip("/")
    return None


def _check_value(doc: dict[str, Any], value: Any, schema: dict[str, Any], at: str) -> list[str]:
    if "$ref" in schema:
        return _check_value(doc, value, doc["schemas"][schema["$ref"]], at)
    kind = schema.get("type")
    problems: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{at}: expected an object, got {value!r}"]
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                problems += _check_value(doc, item, properties[key], f"{at}.{key}")
            elif extra is not None:
                problems += _check_value(doc, item, extra, f"{at}[{key}]")
            elif properties is not None:
                problems.append(f"{at}: unknown property {key!r}")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{at}: expected an array, got {value!r}"]
        for i, item in enumerate(value):
            problems += _check_value(doc, item, schema["items"], f"{at}[{i}]")
    elif kind == "string":
        fmt = schema.get("format")
        if not isinstance(value, str):
            problems.append(f"{at}: expected a string ({fmt or 'string'}), got {value!r}")
        elif fmt == "google-datetime" and not RFC3339.match(value):
            problems.append(f"{at}: not an RFC 3339 timestamp: {value!r}")
        elif fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
            problems.append(f"{at}: not an {fmt} string: {value!r}")
        elif "enum" in schema and value not in schema["enum"]:
            problems.append(f"{at}: {value!r} is not one of {schema['enum']}")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{at}: expected an integer, got {value!r}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{at}: expected a number, got {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{at}: expected a boolean, got {value!r}")
    return problems


def _check_parameter(name: str, values: list[str], spec: dict[str, Any]) -> list[str]:
    problems = []
    for value in values:
        if spec.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
            problems.append(f"query {name}={value!r}: not an integer")
        if spec.get("type") == "boolean" and value not in ("true", "false"):
            problems.append(f"query {name}={value!r}: not a boolean")
        if "enum" in spec and value not in spec["enum"]:
            problems.append(f"query {name}={value!r}: not one of {spec['enum']}")
    return problems


def discovery_problems(request: LoggedRequest) -> list[str]:
    """What in `request` the providers' discovery documents do not allow."""
    if request.path.startswith("/_emulator/") or request.path == "/token":
        return []  # the emulator's own controls; the OAuth token endpoint is no discovery API
    found = _find_method(request.method, request.path)
    if found is None:
        return [f"{request.method} {request.path}: no such method in the discovery documents"]
    doc, method, relative = found
    problems: list[str] = []
    parameters = method.get("parameters", {})
    for name, spec in parameters.items():
        if spec["location"] == "path" and "pattern" in spec:
            # "v1/{+name}": the whole rest of the path is the parameter.
            template = method["path"]
            prefix = template[: template.index("{")]
            value = relative.removeprefix(prefix).split(":")[0]
            if template.endswith("}/entitlements"):
                value = value.removesuffix("/entitlements")
            if not re.fullmatch(spec["pattern"], value):
                problems.append(f"path parameter {name}={value!r} !~ {spec['pattern']}")
    for name, values in request.query.items():
        spec = parameters.get(name) or doc["parameters"].get(name)
        if spec is None:
            if name not in SYSTEM_PARAMETERS:
                problems.append(f"unknown query parameter {name!r}")
            continue
        problems += _check_parameter(name, values, spec)
    if "request" in method:
        problems += _check_value(doc, request.body, method["request"], method["id"])
    elif request.body is not None:
        problems.append(f"{method['id']} takes no body")
    return problems


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def gcp() -> Iterator[GcpMarketplaceEmulator]:
    with GcpMarketplaceEmulator(clock=lambda: NOW) as emulator:
        emulator.add_entitlement(PROVIDER, "ent-a", CONSUMER_A, SERVICE, METRICS)
        emulator.add_entitlement(PROVIDER, "ent-b", CONSUMER_B, SERVICE, METRICS)
        yield emulator
        # Every request of every test, against Google's own description of the APIs.
        problems = [
            f"{r.method} {r.path}: {p}" for r in emulator.requests() for p in discovery_problems(r)
        ]
        assert problems == []


@pytest.fixture
def marketplace(gcp: GcpMarketplaceEmulator) -> GcpMarketplaceClient:
    return GcpMarketplaceClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        service_control_endpoint=gcp.base_url,
        procurement_endpoint=gcp.base_url,
        provider_id=PROVIDER,
        timeout=timedelta(seconds=5),
    )


def record(
    consumer: str = CONSUMER_A,
    dimension: str = "requests",
    hour: int = 0,
    quantity: str = "150",
) -> UsageRecord:
    start = HOUR + timedelta(hours=hour)
    account = MarketplaceAccount(
        "gcp", {"usage_reporting_id": consumer, "service_name": SERVICE, "entitlement": "ent-a"}
    )
    return UsageRecord(
        record_id=f"{consumer}/{dimension}/{start.isoformat()}",
        customer_id=consumer,
        account=account,
        dimension=dimension,
        hour_start=start,
        quantity=Decimal(quantity),
    )


def posts(gcp: GcpMarketplaceEmulator, verb: str) -> list[LoggedRequest]:
    return [r for r in gcp.requests() if r.path.endswith(f":{verb}")]


# -- entitlements ----------------------------------------------------------------------------------


def test_entitlement_gives_the_usage_reporting_id(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    assert marketplace.resolve_usage_reporting_id(PROVIDER, "ent-a") == (
        CONSUMER_A,
        "ENTITLEMENT_ACTIVE",
    )
    gcp.set_entitlement_state(PROVIDER, "ent-b", "ENTITLEMENT_CANCELLED")
    assert marketplace.resolve_usage_reporting_id(PROVIDER, "ent-b") == (
        CONSUMER_B,
        "ENTITLEMENT_CANCELLED",
    )
    with pytest.raises(ProviderCustomerMissing):
        marketplace.resolve_usage_reporting_id(PROVIDER, "ent-unknown")
    marketplace.check_credentials()  # providers.entitlements.list, pageSize=1
    listed = gcp.requests()[-1]
    assert (listed.path, listed.query["pageSize"]) == (
        f"/v1/providers/{PROVIDER}/entitlements",
        ["1"],
    )


def test_entitlement_list_filter(gcp: GcpMarketplaceEmulator) -> None:
    url = f"{gcp.base_url}/v1/providers/{PROVIDER}/entitlements"
    active = requests.get(url, params={"filter": "state=active"}, timeout=5).json()
    assert [e["usageReportingId"] for e in active["entitlements"]] == [CONSUMER_A, CONSUMER_B]
    gcp.set_entitlement_state(PROVIDER, "ent-a", "ENTITLEMENT_SUSPENDED")
    active = requests.get(url, params={"filter": "state=ENTITLEMENT_ACTIVE"}, timeout=5).json()
    assert [e["name"] for e in active["entitlements"]] == [
        f"providers/{PROVIDER}/entitlements/ent-b"
    ]
    paged = requests.get(url, params={"pageSize": "1"}, timeout=5).json()
    assert len(paged["entitlements"]) == 1 and paged["nextPageToken"] == "1"


# -- check + report --------------------------------------------------------------------------------


def test_check_then_report_accepted(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    records = [record(hour=h, quantity=str(100 + h)) for h in range(3)]
    records.append(record(dimension="storage_gib", quantity="0"))  # an hour without usage
    report = marketplace.prepare(records)

    results = marketplace.send(report)

    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    assert [r.marketplace_ref for r in results] == [operation_id(r.record_id) for r in records]
    accepted = gcp.accepted()
    assert [(a["startTime"], a["endTime"], a["metrics"]) for a in accepted] == [
        (
            "2026-12-03T09:00:00.000000Z",
            "2026-12-03T10:00:00.000000Z",
            {f"{SERVICE}/requests": "100"},
        ),
        (
            "2026-12-03T10:00:00.000000Z",
            "2026-12-03T11:00:00.000000Z",
            {f"{SERVICE}/requests": "101"},
        ),
        (
            "2026-12-03T11:00:00.000000Z",
            "2026-12-03T12:00:00.000000Z",
            {f"{SERVICE}/requests": "102"},
        ),
        (
            "2026-12-03T09:00:00.000000Z",
            "2026-12-03T10:00:00.000000Z",
            {f"{SERVICE}/storage_gib": "0"},
        ),
    ]
    assert {a["consumerId"] for a in accepted} == {CONSUMER_A}
    # One check per operation with the report's operationId, then one report of all four,
    # exactly as saved in the ledger.
    checks = posts(gcp, "check")
    assert [c.body["operation"] for c in checks] == report.payload["operations"]
    (sent,) = posts(gcp, "report")
    assert sent.body == {"operations": report.payload["operations"]}
    assert sent.path == f"/v1/services/{SERVICE}:report"


def test_check_errors_need_attention_and_are_not_reported(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    gcp.set_entitlement_state(PROVIDER, "ent-b", "ENTITLEMENT_CANCELLED")
    records = [record(CONSUMER_A), record(CONSUMER_B), record(CONSUMER_A, hour=1)]
    gcp.fail_checks("BILLING_DISABLED", "billing is off", consumer_id=CONSUMER_A, count=1)

    results = marketplace.send(marketplace.prepare(records))

    assert [r.outcome for r in results] == [
        Outcome.NEEDS_ATTENTION,
        Outcome.NEEDS_ATTENTION,
        Outcome.ACCEPTED,
    ]
    assert results[0].detail.startswith("check BILLING_DISABLED")
    assert results[1].detail.startswith("check SERVICE_NOT_ACTIVATED")
    (sent,) = posts(gcp, "report")
    assert [op["operationId"] for op in sent.body["operations"]] == [results[2].marketplace_ref]
    assert [a["operationId"] for a in gcp.accepted()] == [results[2].marketplace_ref]
    # The REST transport asks for numeric enums, and the emulator answers with them.
    assert checks_codes(gcp) == [107, 104]


def checks_codes(gcp: GcpMarketplaceEmulator) -> list[int]:
    return [e["code"] for r in posts(gcp, "check") for e in r.response.get("checkErrors", [])]


def test_transient_check_error_retries(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    gcp.fail_checks("SERVICE_STATUS_UNAVAILABLE")
    (result,) = marketplace.send(marketplace.prepare([record()]))
    assert result.outcome is Outcome.RETRY
    assert posts(gcp, "report") == []


def test_report_errors_are_per_operation(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    records = [
        record(CONSUMER_A),
        record(CONSUMER_A, dimension="gpu_hours"),  # not a metric of the service
        record(CONSUMER_B),
    ]
    gcp.fail_report_operations("UNAVAILABLE", consumer_id=CONSUMER_B)

    results = marketplace.send(marketplace.prepare(records))

    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.NEEDS_ATTENTION,
        Outcome.RETRY,
    ]
    assert results[1].detail.startswith("report INVALID_ARGUMENT")
    assert results[2].detail.startswith("report UNAVAILABLE")
    assert [a["operationId"] for a in gcp.accepted()] == [results[0].marketplace_ref]

    # The retry resends the saved request: the hour taken before is counted once.
    again = marketplace.send(marketplace.prepare(records))
    assert [r.outcome for r in again] == [
        Outcome.ACCEPTED,
        Outcome.NEEDS_ATTENTION,
        Outcome.ACCEPTED,
    ]
    assert len(gcp.accepted()) == 2


def test_repeated_operation_id_counted_once(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    report = marketplace.prepare([record(hour=h) for h in range(2)])
    assert marketplace.prepare([record(hour=h) for h in range(2)]) == report  # pure

    first = marketplace.send(report)
    second = marketplace.send(report)

    assert first == second
    assert [a["metrics"] for a in gcp.accepted()] == [{f"{SERVICE}/requests": "150"}] * 2
    assert [r["sameContent"] for r in gcp.repeats()] == [True, True]
    listed = requests.get(f"{gcp.base_url}/_emulator/accepted", timeout=5).json()
    assert [a["operationId"] for a in listed["accepted"]] == [r.marketplace_ref for r in first]


# -- whole-request failures ------------------------------------------------------------------


def test_rate_limited(gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient) -> None:
    gcp.add_fault(Fault("status", status=429, retry_after=7, path_prefix="/v1/services/"))
    with pytest.raises(ProviderRateLimited) as raised:
        marketplace.send(marketplace.prepare([record()]))
    assert raised.value.retry_after == timedelta(seconds=7)
    (refused,) = gcp.requests()
    assert refused.response["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert gcp.accepted() == []
    # The same saved request goes through once the limit passes.
    (result,) = marketplace.send(marketplace.prepare([record()]))
    assert result.outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (Fault("status", status=503), ProviderUnavailable),
        (Fault("drop"), ProviderUnavailable),
        (Fault("status", status=403), ProviderAuthFailed),
        (Fault("status", status=401), ProviderAuthFailed),
    ],
)
def test_whole_request_failures(
    gcp: GcpMarketplaceEmulator,
    marketplace: GcpMarketplaceClient,
    fault: Fault,
    raised: type[Exception],
) -> None:
    fault.path_prefix = "/v1/services/"
    fault.skip = 1  # the check passes, the report fails
    gcp.add_fault(fault)
    with pytest.raises(raised):
        marketplace.send(marketplace.prepare([record()]))
    assert gcp.accepted() == []


def test_entitlement_lookup_rate_limited(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    gcp.add_fault(Fault("status", status=429, retry_after=3, path_prefix="/v1/providers/"))
    with pytest.raises(ProviderRateLimited) as raised:
        marketplace.resolve_usage_reporting_id(PROVIDER, "ent-a")
    assert raised.value.retry_after == timedelta(seconds=3)


# -- the request ----------------------------------------------------------------------------------


def test_integer_quantities(marketplace: GcpMarketplaceClient) -> None:
    assert GcpMarketplaceClient.integer_quantities
    payload = marketplace.prepare([record(quantity="2.000")]).payload
    values = payload["operations"][0]["metricValueSets"][0]["metricValues"]
    assert values == [{"int64Value": "2"}]
    with pytest.raises(ValueError, match="fraction"):
        marketplace.prepare([record(quantity="1.5")])
    with pytest.raises(ValueError, match="out of range"):
        marketplace.prepare([record(quantity="-1")])


def test_prepare_refuses_what_one_report_cannot_carry(marketplace: GcpMarketplaceClient) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        marketplace.prepare([record(hour=h) for h in range(101)])
    late = record()
    off_hour = UsageRecord(**{**late.__dict__, "hour_start": HOUR + timedelta(minutes=5)})
    with pytest.raises(ValueError, match="on the hour"):
        marketplace.prepare([off_hour])


def test_endpoints_from_the_settings() -> None:
    cluster = {"TEMPORAL_ADDRESS": "temporal:7233"}
    real = endpoints(Settings.from_env(cluster))
    assert (real.service_control, real.procurement) == (SERVICE_CONTROL_URL, PROCUREMENT_URL)
    assert endpoints(Settings.from_env({})).service_control == "http://127.0.0.1:12123"
    local = endpoints(Settings.from_env({**cluster, ENDPOINT_ENV: "http://127.0.0.1:9/"}))
    assert (local.service_control, local.procurement) == ("http://127.0.0.1:9",) * 2


def test_the_validator_catches_a_wrong_field_name(gcp: GcpMarketplaceEmulator) -> None:
    """The discovery check is what catches a client bug the emulator would forgive."""
    body = {
        "operations": [
            {
                "operationId": "x",
                "consumerId": CONSUMER_A,
                "startTime": "2026-12-03T09:00:00Z",
                "endTime": "2026-12-03T10:00:00Z",
                "metricValueSets": [
                    {"metricName": f"{SERVICE}/requests", "metricValues": [{"int64Value": 5}]}
                ],
                "userLabel": {},
            }
        ]
    }
    requests.post(f"{gcp.base_url}/v1/services/{SERVICE}:report", json=body, timeout=5)
    (sent,) = gcp.requests()
    problems = discovery_problems(sent)
    assert any("unknown property 'userLabel'" in p for p in problems)
    assert any("int64Value: expected a string" in p for p in problems)
    assert sent.response["error"]["status"] == "INVALID_ARGUMENT"  # the emulator refuses it too
    gcp.clear_requests()  # keep the fixture's own check to the clients' requests


# -- a service account key, its token grant and a disabled account --------------------------------


def test_service_account_key_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    email = "metering@acme-saas-billing.iam.gserviceaccount.com"
    with GcpMarketplaceEmulator(clock=lambda: NOW, require_bearer=True) as gcp:
        gcp.add_entitlement(PROVIDER, "ent-a", CONSUMER_A, SERVICE, METRICS)
        settings = Settings(marketplace_endpoints={"gcp": gcp.base_url})
        config = MarketplaceConfig(
            connection_id="gcp",
            marketplace="gcp",
            credentials={"service_account_json": gcp.service_account_json(email)},
            settings={"provider_id": PROVIDER},
        )
        marketplace = GcpMarketplaceClient.from_settings(settings, config)

        assert marketplace.resolve_usage_reporting_id(PROVIDER, "ent-a")[0] == CONSUMER_A
        (result,) = marketplace.send(marketplace.prepare([record()]))
        assert result.outcome is Outcome.ACCEPTED
        assert gcp.token_grants()[0] == {"iss": email, "ok": True, "error": None}
        # Bearer on every API request, cut short in the log; the signed assertion too.
        api_calls = [r for r in gcp.requests() if r.path.startswith("/v1/")]
        assert all(r.authorization and r.authorization.endswith("…") for r in api_calls)
        assert all(len(r.authorization or "") < 16 for r in api_calls)
        token_call = next(r for r in gcp.requests() if r.path == "/token")
        assert token_call.body["assertion"].endswith("…") and token_call.response is None

        gcp.disable_service_account(email)
        with pytest.raises(ProviderAuthFailed):
            marketplace.check_credentials()
        with pytest.raises(ProviderAuthFailed):
            marketplace.send(marketplace.prepare([record(hour=1)]))
        assert gcp.token_grants()[-1]["error"] == "invalid_grant"
        assert [r for r in gcp.requests() if discovery_problems(r)] == []


def test_unusable_key_is_an_auth_failure() -> None:
    config = MarketplaceConfig(
        connection_id="gcp", marketplace="gcp", credentials={"service_account_json": "{}"}
    )
    with pytest.raises(ProviderAuthFailed):
        GcpMarketplaceClient.from_settings(Settings.from_env({}), config)


def test_lost_reply_then_the_saved_report_again(
    gcp: GcpMarketplaceEmulator, marketplace: GcpMarketplaceClient
) -> None:
    """Google took the report but the reply was lost: the resend of the saved request (same
    operationIds) is counted once by the emulator; whether Google dedups is UNCONFIRMED."""
    report = marketplace.prepare([record(hour=h) for h in range(3)])
    gcp.add_fault(Fault("drop_after", path_prefix=f"/v1/services/{SERVICE}:report"))
    with pytest.raises(ProviderUnavailable):
        marketplace.send(report)
    assert len(gcp.accepted()) == 3

    assert [r.outcome for r in marketplace.send(report)] == [Outcome.ACCEPTED] * 3
    assert len(gcp.accepted()) == 3
    assert len(gcp.repeats()) == 3


def test_emulator_refuses_what_google_cannot_parse(gcp: GcpMarketplaceEmulator) -> None:
    url = f"{gcp.base_url}/v1/services/{SERVICE}:report"
    operation = {
        "operationId": "op-1",
        "consumerId": CONSUMER_A,
        "startTime": "2026-12-03 09:00:00",  # not RFC 3339
        "endTime": "2026-12-03T10:00:00Z",
        "metricValueSets": [
            {"metricName": f"{SERVICE}/requests", "metricValues": [{"int64Value": "5"}]}
        ],
    }
    bad_time = requests.post(url, json={"operations": [operation]}, timeout=5)
    assert (bad_time.status_code, bad_time.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    too_big = requests.post(url, data=b"{" + b" " * (1024 * 1024) + b"}", timeout=5)
    assert too_big.status_code == 400
    unknown_service = requests.post(
        f"{gcp.base_url}/v1/services/other.example.com:report", json={}, timeout=5
    )
    assert unknown_service.json()["error"]["status"] == "PERMISSION_DENIED"
    assert gcp.accepted() == []
    gcp.clear_requests()  # malformed on purpose: not for the discovery check


def test_every_request_heartbeats_inside_an_activity(
    gcp: GcpMarketplaceEmulator, gcp_endpoint_client: GcpMarketplaceClient
) -> None:
    """Before and after each call, so a long report batch never looks like a stuck activity;
    the request timeout follows the activity's heartbeat timeout (core/timeouts.py)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=9))
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])
    report = gcp_endpoint_client.prepare([record(hour=h) for h in range(2)])

    results = env.run(gcp_endpoint_client.send, report)

    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
    assert len(beats) == 6  # two checks and one report, each before and after
    assert beats[-1] == "gcp: report 2 operations: answered"
    assert env.run(gcp_endpoint_client._timeout) == 5.0  # 9 s x 5/9


@pytest.fixture
def gcp_endpoint_client(gcp: GcpMarketplaceEmulator) -> GcpMarketplaceClient:
    """A client that takes its request timeout from the running activity."""
    return GcpMarketplaceClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        service_control_endpoint=gcp.base_url,
        procurement_endpoint=gcp.base_url,
        provider_id=PROVIDER,
    )
