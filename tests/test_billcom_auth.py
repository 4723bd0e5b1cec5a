"""BILL sessions and credentials: one login per devKey and organization, a new one when BILL
says the session is invalid (BDC_1109), the login budget, sealed credentials verified by
`connections add` and `connections list`, and the sandbox and production hosts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.providers.billcom import BillcomInvoiceProvider
from billbridge.activities.providers.billcom_client import (
    PRODUCTION_API_BASE,
    SANDBOX_API_BASE,
    BillcomLimits,
    ProcessLimits,
    api_base_for,
)
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import (
    NEEDS_ATTENTION,
    ProviderAuthFailed,
    ProviderCustomerMissing,
    ProviderRateLimited,
)
from billbridge.core.providers import provider_entry
from billbridge.emulators.billcom import BillcomEmulator
from conftest import billbridge


@pytest.fixture
def bill() -> Iterator[BillcomEmulator]:
    with BillcomEmulator() as emulator:
        yield emulator


def provider(
    bill: BillcomEmulator,
    shared: ProcessLimits,
    credential: dict[str, object] | None = None,
    limits: BillcomLimits | None = None,
) -> BillcomInvoiceProvider:
    """A provider of the connection `credential` (None: the default, the emulator's account),
    with this test's own process-wide sessions and counters."""
    settings = Settings(api_bases={"bill.com": bill.base_url})
    text = json.dumps(credential) if credential is not None else None
    config = ConnectionConfig("bill.com", text, ConnectionSettings())
    return BillcomInvoiceProvider.from_settings(settings, config, limits=limits, shared=shared)


def logins(bill: BillcomEmulator) -> list[int]:
    return [r.status for r in bill.requests() if r.path == "/v3/login"]


def test_one_session_serves_every_provider_and_thread(bill: BillcomEmulator) -> None:
    shared = ProcessLimits()
    providers = [provider(bill, shared), provider(bill, shared, bill.credentials())]
    threads = [threading.Thread(target=providers[n % 2].check_credentials) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert logins(bill) == [200]
    sessions = {r.session for r in bill.requests() if r.path == "/v3/login/session"}
    assert len(sessions) == 1 and len([r for r in bill.requests() if r.status == 200]) == 9


def test_an_expired_session_logs_in_again_once_and_the_call_goes_through(
    bill: BillcomEmulator,
) -> None:
    shared = ProcessLimits()
    customer = bill.create_customer("Acme", "billing@acme.test")
    bill_provider = provider(bill, shared)
    bill_provider.check_credentials()
    bill.advance(36 * 60)  # 35 idle minutes end a session at BILL
    bill_provider.check_customer(customer)
    assert [(r.path, r.code) for r in bill.requests()][1:] == [
        ("/v3/login/session", None),
        (f"/v3/customers/{customer}", "BDC_1109"),
        ("/v3/login", None),
        (f"/v3/customers/{customer}", None),
    ]
    # Six threads meet the same expired session: one of them logs in, the others reuse it.
    bill.expire_sessions()
    threads = [
        threading.Thread(target=bill_provider.check_customer, args=(customer,)) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert logins(bill) == [200, 200, 200]


def test_the_login_budget_is_kept_before_bill_refuses(bill: BillcomEmulator) -> None:
    shared = ProcessLimits()
    customer = bill.create_customer("Acme", "billing@acme.test")
    limits = BillcomLimits(logins_per_hour=2)
    bill_provider = provider(bill, shared, limits=limits)
    bill_provider.check_customer(customer)
    bill.expire_sessions()
    bill_provider.check_customer(customer)
    bill.expire_sessions()
    with pytest.raises(ProviderRateLimited) as spent:
        bill_provider.check_customer(customer)
    assert spent.value.retryable and "login budget is spent" in str(spent.value)
    assert spent.value.retry_after is not None
    assert 0 < spent.value.retry_after.total_seconds() <= 3601
    assert bill.login_attempts == 2  # the third login was never sent
    # Five a minute, too (login is among BILL's 5-per-minute endpoints).
    bill.advance(61)
    quick = provider(bill, ProcessLimits())
    for _ in range(5):
        quick.check_credentials()
        bill.expire_sessions()
    with pytest.raises(ProviderRateLimited, match="5 logins in the last minute"):
        quick.check_credentials()


def test_refused_credentials_need_attention(bill: BillcomEmulator) -> None:
    shared = ProcessLimits()
    wrong_password = {**bill.credentials(), "password": "not-it"}
    with pytest.raises(ProviderAuthFailed, match="BDC_1101") as refused:
        provider(bill, shared, wrong_password).check_credentials()
    assert refused.value.type_name in NEEDS_ATTENTION
    assert "not-it" not in str(refused.value)
    other_environment = {**bill.credentials(), "devKey": "a-sandbox-key"}
    with pytest.raises(ProviderAuthFailed, match=r"BDC_1102.*each BILL environment"):
        provider(bill, shared, other_environment).check_credentials()


def test_a_credential_missing_fields_names_them_and_never_its_values(
    bill: BillcomEmulator,
) -> None:
    shared = ProcessLimits()
    partial = {"devKey": "dk-secret-value", "organizationId": "008x", "passwrd": "pw-secret"}
    with pytest.raises(ProviderAuthFailed) as incomplete:
        provider(bill, shared, partial).check_credentials()
    message = str(incomplete.value)
    assert "missing username, password" in message and "unknown field(s) passwrd" in message
    assert "secret" not in message
    assert bill.requests() == []  # nothing sent
    # A connection to the real BILL without a stored credential says how to add one.
    real = BillcomInvoiceProvider.from_settings(
        Settings(api_bases={"bill.com": PRODUCTION_API_BASE}),
        ConnectionConfig("bill.com", None, ConnectionSettings()),
    )
    with pytest.raises(ProviderAuthFailed, match=r"connections add bill\.com --api-key-file"):
        real.check_credentials()


def test_the_credential_picks_the_sandbox_or_production_gateway() -> None:
    assert provider_entry("bill.com").real_url == PRODUCTION_API_BASE
    cluster = Settings.from_env({"TEMPORAL_ADDRESS": "temporal:7233"})
    assert cluster.api_base("bill.com") == PRODUCTION_API_BASE
    assert api_base_for(PRODUCTION_API_BASE, "sandbox") == SANDBOX_API_BASE
    assert api_base_for(SANDBOX_API_BASE, "production") == PRODUCTION_API_BASE
    assert api_base_for(PRODUCTION_API_BASE, "") == PRODUCTION_API_BASE
    assert api_base_for("http://127.0.0.1:12113", "sandbox") == "http://127.0.0.1:12113"
    sandbox = {"devKey": "k", "organizationId": "o", "username": "u", "password": "p"}
    config = ConnectionConfig(
        "bill.com", json.dumps({**sandbox, "environment": "sandbox"}), ConnectionSettings()
    )
    built = BillcomInvoiceProvider.from_settings(cluster, config)
    assert built.client.base_url == SANDBOX_API_BASE


def test_connections_add_verifies_and_seals_the_credential(
    bill: BillcomEmulator, settings: Settings, tmp_path: Path
) -> None:
    env = {"BILLCOM_API_BASE": bill.gateway_url}
    settings = replace(settings, api_bases={**settings.api_bases, "bill.com": bill.gateway_url})
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**bill.credentials(), "password": "nope"}))
    refused = billbridge(
        settings, "connections", "add", "bill.com", "--api-key-file", str(wrong), env=env
    )
    assert refused.returncode == 1 and "credentials refused" in refused.stderr
    assert "BDC_1101" in refused.stderr

    good = tmp_path / "bill.json"
    good.write_text(json.dumps(bill.credentials()))
    added = billbridge(
        settings, "connections", "add", "bill.com", "--api-key-file", str(good), env=env
    )
    assert added.returncode == 0, added.stderr
    [report] = json.loads(added.stdout)
    assert report["health"] == "credentials accepted (just now)"
    assert report["credentials"] == "sealed in the store"
    assert bill.credentials()["password"] not in added.stdout

    listed = billbridge(settings, "connections", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    entry = next(c for c in json.loads(listed.stdout) if c["connection"] == "bill.com")
    assert entry["health"] == "credentials accepted" and entry["local_emulator"] is True
    assert entry["endpoint"] == bill.gateway_url


def test_a_missing_customer_is_told_apart_from_the_session(bill: BillcomEmulator) -> None:
    bill_provider = provider(bill, ProcessLimits())
    with pytest.raises(ProviderCustomerMissing, match="does not exist"):
        bill_provider.check_customer("0cu01nobody")
    assert logins(bill) == [200]
