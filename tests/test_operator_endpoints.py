"""Production never talks to a stand-in by accident: which endpoint each provider gets, and when
local emulators may start (core/config.py decides; starter/local_services.py starts them)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from billbridge.activities.providers import billcom_client, netsuite, quickbooks, stripe_invoice
from billbridge.activities.providers.base import ConnectionConfig
from billbridge.core.config import (
    QUICKBOOKS_API_URL,
    QUICKBOOKS_EMULATOR_PORT,
    STRIPE_API_URL,
    STRIPE_EMULATOR_PORT,
    Settings,
)
from billbridge.core.connections import ConnectionSettings
from billbridge.core.marketplaces import MARKETPLACE_ENTRIES
from billbridge.core.providers import PROVIDER_ENTRIES
from billbridge.starter.local_services import local_services
from billbridge.starter.seed import stripe_client
from billbridge.workers.dev_server import DevServer
from conftest import CODEC_TEST_KEY, billbridge, process_env

CLUSTER = {"TEMPORAL_ADDRESS": "temporal.internal:7233"}
# Emulators on any free port.
NO_FIXED_PORTS = {entry.name: 0 for entry in (*PROVIDER_ENTRIES, *MARKETPLACE_ENTRIES)}


def stripe_endpoint(settings: Settings) -> str:
    """The base URL the Stripe provider module itself ends up with."""
    config = ConnectionConfig("stripe_invoice", None, ConnectionSettings())
    return stripe_invoice.StripeInvoiceProvider.from_settings(settings, config).api_base


def test_a_cluster_means_the_real_providers() -> None:
    settings = Settings.from_env(CLUSTER)
    assert settings.emulators is False
    assert settings.stripe_api_base == STRIPE_API_URL == "https://api.stripe.com"
    assert settings.quickbooks_api_base == QUICKBOOKS_API_URL
    # The provider modules follow the setting without knowing the rule.
    assert stripe_endpoint(settings) == "https://api.stripe.com"
    assert quickbooks.api_base(settings) == "https://quickbooks.api.intuit.com"
    # ... and QuickBooks' OAuth endpoints are Intuit's for that base, not the emulator's.
    endpoints = quickbooks.oauth_endpoints(settings)
    assert endpoints.token_url == quickbooks.INTUIT_TOKEN_URL
    assert endpoints.authorize_url == quickbooks.INTUIT_AUTHORIZE_URL
    # Settings built any other way (the constructor, replace) follow the same rule.
    assert Settings(temporal_address="t:7233").stripe_api_base == STRIPE_API_URL
    embedded = Settings.from_env({})
    assert replace(embedded, temporal_address="127.0.0.1:7233").stripe_api_base is None


def test_emulators_only_on_the_embedded_default_or_when_asked() -> None:
    embedded = Settings.from_env({})
    assert embedded.emulators and embedded.uses_stripe_emulator
    assert embedded.endpoints() == {
        "stripe_invoice": f"http://127.0.0.1:{STRIPE_EMULATOR_PORT}",
        "quickbooks": f"http://127.0.0.1:{QUICKBOOKS_EMULATOR_PORT}",
        "bill.com": f"http://127.0.0.1:{billcom_client.LOCAL_EMULATOR_PORT}",
        "netsuite": f"http://127.0.0.1:{netsuite.LOCAL_EMULATOR_PORT}",
    }
    opted_in = Settings.from_env({**CLUSTER, "BILLBRIDGE_EMULATORS": "1"})
    assert opted_in.uses_stripe_emulator and opted_in.uses_quickbooks_emulator
    assert stripe_endpoint(opted_in) == f"http://127.0.0.1:{STRIPE_EMULATOR_PORT}"
    # `billbridge server` and `billbridge demo` ask for them whatever the environment says.
    assert Settings.from_env(CLUSTER, emulators=True).uses_stripe_emulator
    # An explicit base always wins; `0` turns emulators off on the embedded default too.
    explicit = Settings.from_env({"BILLBRIDGE_EMULATORS": "1", "STRIPE_API_BASE": "http://x:1"})
    assert explicit.stripe_api_base == "http://x:1"
    assert Settings.from_env({"BILLBRIDGE_EMULATORS": "0"}).stripe_api_base == STRIPE_API_URL
    with pytest.raises(ValueError, match="BILLBRIDGE_EMULATORS"):
        Settings.from_env({"BILLBRIDGE_EMULATORS": "maybe"})
    # The provider modules' own fallback ports are the ones the settings name.
    assert stripe_invoice.LOCAL_EMULATOR_PORT == STRIPE_EMULATOR_PORT
    assert quickbooks.LOCAL_EMULATOR_PORT == QUICKBOOKS_EMULATOR_PORT


def test_local_services_start_emulators_only_with_the_opt_in(
    temporal_server: DevServer,
) -> None:
    cluster = {"TEMPORAL_ADDRESS": temporal_server.address}
    with local_services(Settings.from_env(cluster), ports=NO_FIXED_PORTS) as services:
        assert services.emulators == []
        assert services.settings.stripe_api_base == STRIPE_API_URL
        assert services.settings.quickbooks_api_base == QUICKBOOKS_API_URL
        assert services.settings.marketplace_endpoint("azure") == (
            "https://marketplaceapi.microsoft.com"
        )

    opted_in = Settings.from_env({**cluster, "BILLBRIDGE_EMULATORS": "1"})
    with local_services(opted_in, ports=NO_FIXED_PORTS) as services:
        started = {e.connection: e for e in services.emulators}
        assert set(started) == set(NO_FIXED_PORTS)  # every provider and marketplace
        assert services.settings.marketplace_endpoint("aws") == started["aws"].url
        assert all(e.started for e in started.values())
        assert services.settings.stripe_api_base == started["stripe_invoice"].url
        # A real Stripe emulator answers there, through the official SDK.
        client = stripe_client(started["stripe_invoice"].url, "sk_test_anything")
        assert client.v1.customers.list().data == []


def test_connections_list_shows_each_endpoint(settings: Settings) -> None:
    # On a cluster (the test server) with STRIPE_API_BASE unset: real Stripe, real Intuit.
    # --no-verify: no health check, so no request leaves this machine.
    done = billbridge(settings, "connections", "list", "--no-verify", env={"STRIPE_API_BASE": ""})
    assert done.returncode == 0, done.stderr
    listed = {c["connection"]: c for c in json.loads(done.stdout)}
    assert listed["stripe_invoice"]["endpoint"] == "https://api.stripe.com"
    assert listed["stripe_invoice"]["local_emulator"] is False
    assert listed["quickbooks"]["endpoint"] == "https://quickbooks.api.intuit.com"
    assert listed["quickbooks"]["local_emulator"] is False

    opted_in = billbridge(
        settings,
        "connections",
        "list",
        "--no-verify",
        env={"STRIPE_API_BASE": "", "BILLBRIDGE_EMULATORS": "1"},
    )
    listed = {c["connection"]: c for c in json.loads(opted_in.stdout)}
    assert listed["stripe_invoice"]["endpoint"] == f"http://127.0.0.1:{STRIPE_EMULATOR_PORT}"
    assert listed["stripe_invoice"]["local_emulator"] is True

    # The test's own emulator: an explicit local base is reported as a local emulator too.
    explicit = billbridge(settings, "connections", "list", "--no-verify")
    listed = {c["connection"]: c for c in json.loads(explicit.stdout)}
    assert listed["stripe_invoice"]["endpoint"] == settings.stripe_api_base
    assert listed["stripe_invoice"]["local_emulator"] is True


@pytest.fixture
def worker_stderr() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def test_worker_on_a_cluster_exports_to_real_stripe_and_starts_no_emulator(
    settings: Settings, tmp_path: Path, worker_stderr: list[subprocess.Popen[str]]
) -> None:
    env = {**process_env(settings), "STRIPE_API_BASE": "", "BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY}
    process = subprocess.Popen(
        [sys.executable, "-c", "from billbridge.starter.cli import main; main(['worker'])"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    worker_stderr.append(process)
    seen: list[str] = []
    polling = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if "worker polling" in line:
                polling.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert polling.wait(60), "".join(seen)  # a bound on a hang, not a timing assertion
    process.terminate()
    assert process.wait(timeout=30) == 0
    reader.join(timeout=10)
    log = "".join(seen)
    assert "connection stripe_invoice exports to https://api.stripe.com (real provider)" in log
    assert "connection quickbooks exports to https://quickbooks.api.intuit.com" in log
    assert "EMULATOR" not in log and "Traceback" not in log
