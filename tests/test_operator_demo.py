"""The demo keeps its own data folder: it never writes the user's store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.starter.demo import closing_lines, demo_settings
from conftest import billbridge


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator() as emulator:
        yield emulator


def test_demo_settings_never_name_the_users_store(tmp_path: Path) -> None:
    users = Settings.from_env(
        {"BILLBRIDGE_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://u@db/billing"}
    )
    demo = demo_settings(users, "abc123")
    assert demo.database_url == f"sqlite:///{tmp_path}/demo/billbridge.db"
    assert demo.task_queue == "billbridge-demo-abc123"  # a user's worker never takes its work
    assert demo.data_dir == users.data_dir  # the same payload key as a running server's UI


def test_demo_writes_its_own_store_not_the_users(
    settings: Settings, store: Store, tmp_path: Path, qbo: QuickBooksEmulator
) -> None:
    # The user's store, with something of theirs in it.
    store.set_mapping("stripe_invoice", "item_theirs", "prod_theirs")
    # The demo on the test's Temporal server and emulators (no fixed ports), with the user's
    # DATABASE_URL in its environment: it must ignore it.
    done = billbridge(
        settings,
        "demo",
        "--json",
        env={"BILLBRIDGE_DATA_DIR": str(tmp_path), "QUICKBOOKS_API_BASE": qbo.base_url},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["ok"] is True
    demo_url = f"sqlite:///{tmp_path}/demo/billbridge.db"
    assert result["store"] == demo_url
    # Metering on all three marketplace emulators: reported vs ingested per customer.
    metering = result["metering"]
    assert {row["marketplace"] for row in metering} == {"aws", "azure", "gcp"}
    assert all(
        set(row) == {"customer_id", "marketplace", "dimension", "ingested", "reported", "ok"}
        and row["ok"]
        for row in metering
    )

    assert store.list_exports() == []
    assert store.list_mappings("stripe_invoice") == {"item_theirs": "prod_theirs"}
    assert store.list_mappings("quickbooks") == {}
    assert store.get_connection("quickbooks") is None  # no demo grant in the user's store
    with Store(demo_url) as demo_store:
        assert len(demo_store.list_exports()) == len(result["invoices"])
        assert demo_store.get_connection("quickbooks") is not None


def test_demo_says_the_server_stops_only_when_it_started_it(tmp_path: Path) -> None:
    settings = demo_settings(Settings.from_env({"BILLBRIDGE_DATA_DIR": str(tmp_path)}), "r1")
    ui = "http://127.0.0.1:8233"
    started = "\n".join(closing_lines(settings, ui, server_stops=True))
    assert "the server stops with the demo" in started
    joined = "\n".join(closing_lines(settings, ui, server_stops=False))
    assert "stops" not in joined and f"Temporal UI: {ui}/namespaces/default/workflows" in joined
    assert f"DATABASE_URL=sqlite:///{tmp_path}/demo/billbridge.db" in joined
