"""Connection gates: the pause switch and the request rate every worker process shares.

On both databases: turns are spaced by the rate across store handles (worker processes), a
paused connection grants none, a 429 slows the whole connection down and it recovers. Then two
worker processes against a rate-limited Stripe emulator: together they keep to the one rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from stores import (  # noqa: F401 (fixtures)
    both_database_urls,
    both_databases_store,
    throwaway_postgres,
)

from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.providers.billcom import BillcomInvoiceProvider
from billbridge.activities.providers.gate import MAX_TURN_WAIT, ConnectionGate, store_gates
from billbridge.activities.providers.netsuite import NetSuiteInvoiceProvider
from billbridge.activities.providers.stripe_invoice import StripeInvoiceProvider
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connection_control import window_outlook, window_warning
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import ProviderPaused, ProviderRateLimited
from billbridge.core.rates import MIN_FACTOR, RECOVERY_PER_SECOND
from billbridge.emulators.billcom import BillcomEmulator
from billbridge.emulators.netsuite import NetSuiteEmulator
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.starter.seed_quickbooks import authorize_with_emulator, quickbooks
from billbridge.workers.codec import generate_key

T0 = 1_800_000_000.0
SINCE = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def test_turns_of_two_store_handles_line_up_at_one_rate(store: Store, database_url: str) -> None:
    """Two handles on one database (two worker processes): their requests share the rate."""
    other = Store(database_url)
    try:
        delays = []
        for handle in (store, other, store, other, store):
            turn = handle.take_turn("stripe_invoice", 10.0, T0, MAX_TURN_WAIT)
            assert turn.paused is None
            delays.append(turn.delay)
    finally:
        other.close()
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    # Another connection has a line of its own.
    assert store.take_turn("quickbooks", 10.0, T0, MAX_TURN_WAIT).delay == 0.0


def test_a_turn_too_far_off_reserves_nothing(store: Store) -> None:
    for _ in range(3):
        store.take_turn("c", 1.0, T0, 2.0)
    refused = store.take_turn("c", 1.0, T0, 2.0)
    assert refused.delay is None
    assert refused.earliest == pytest.approx(T0 + 3.0)
    # Nothing was reserved: a second later the same turn is granted.
    assert store.take_turn("c", 1.0, T0 + 1.0, 2.0).delay == pytest.approx(2.0)


def test_a_paused_connection_grants_no_turn_until_resumed(store: Store) -> None:
    store.set_paused("stripe_invoice", True, "Stripe incident 1234", SINCE)
    for per_second in (10.0, None):  # rate-limited or not, the pause holds
        turn = store.take_turn("stripe_invoice", per_second, T0, MAX_TURN_WAIT)
        assert turn.paused is not None
        assert turn.paused.pause_reason == "Stripe incident 1234"
        assert turn.paused.paused_since == SINCE
    assert store.take_turn("quickbooks", 10.0, T0, MAX_TURN_WAIT).paused is None

    # Paused again with a new reason: the pause still dates from the first.
    later = SINCE.replace(hour=11)
    row = store.set_paused("stripe_invoice", True, "still investigating", later)
    assert (row.paused_since, row.pause_reason) == (SINCE, "still investigating")

    resumed = store.set_paused("stripe_invoice", False, "", later)
    assert resumed.paused is False and resumed.resumed_at == later
    assert store.take_turn("stripe_invoice", 10.0, T0, MAX_TURN_WAIT).delay == 0.0


def test_a_429_holds_everyone_for_its_retry_after_then_the_rate_recovers(store: Store) -> None:
    store.take_turn("c", 10.0, T0, MAX_TURN_WAIT)
    store.slow_down("c", 3.0, T0)
    gate = store.gate("c")
    assert gate is not None and gate.factor == 0.5 and gate.throttled_count == 1
    # No request before Retry-After, from any worker.
    assert store.take_turn("c", 10.0, T0, MAX_TURN_WAIT).delay == pytest.approx(3.0)
    # Then at half the rate: 0.2 s apart instead of 0.1.
    second = store.take_turn("c", 10.0, T0, MAX_TURN_WAIT).delay
    assert second == pytest.approx(3.2, abs=0.01)
    # Refusals in a row halve it down to MIN_FACTOR, never to nothing.
    for _ in range(10):
        store.slow_down("c", 0.0, T0)
    low = store.gate("c")
    assert low is not None and low.factor == MIN_FACTOR
    # It grows back with time: full rate again (1 - MIN_FACTOR) / RECOVERY_PER_SECOND later.
    later = T0 + (1 - MIN_FACTOR) / RECOVERY_PER_SECOND + 1
    store.take_turn("c", 10.0, later, 1000.0)
    recovered = store.gate("c")
    assert recovered is not None and recovered.factor == 1.0


def test_the_gate_raises_paused_and_rate_limited_with_the_wait(store: Store) -> None:
    slept: list[float] = []
    gate = ConnectionGate(store, "c", "Stripe", 1.0, clock=lambda: T0, sleep=slept.append)
    gate.before_request("creating the invoice")
    gate.before_request("adding lines")
    assert slept == [1.0]
    for _ in range(int(MAX_TURN_WAIT) - 1):
        gate.before_request("adding lines")
    with pytest.raises(ProviderRateLimited) as limited:
        gate.before_request("finalizing")
    assert limited.value.retry_after is not None
    assert limited.value.retry_after.total_seconds() == pytest.approx(MAX_TURN_WAIT + 1)

    store.set_paused("c", True, "maintenance window", SINCE)
    with pytest.raises(ProviderPaused) as paused:
        gate.before_request("finalizing")
    assert paused.value.connection_id == "c"
    assert "maintenance window" in str(paused.value) and "finalizing" in str(paused.value)


WORKER = textwrap.dedent(
    """
    import json, sys, threading
    from billbridge.activities.providers.gate import store_gates
    from billbridge.activities.providers.stripe_invoice import StripeInvoiceProvider
    from billbridge.activities.store import Store

    database_url, api_base, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(database_url)
    provider = StripeInvoiceProvider(
        "sk_test_gate_shared", api_base, connection_id="stripe_invoice", gates=store_gates(store)
    )
    errors = []

    def run():
        for _ in range(count):
            try:
                provider.check_credentials()
            except Exception as err:
                errors.append(repr(err))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(errors))
    """
)


def test_two_worker_processes_keep_to_one_rate_together(tmp_path: Path) -> None:
    """Each process alone would send 95% of Stripe's sandbox limit; both at once, paced only
    per process, would send 190% and meet 429s. Through the store's gate they share one rate:
    the emulator (25/s, Stripe's sandbox limit) refuses nothing."""
    database_url = f"sqlite:///{tmp_path / 'billbridge.db'}"
    Store(database_url).close()
    each = 5  # requests per thread: 8 threads x 2 processes x 5 = 80 requests, ~3.4 s
    with StripeEmulator(rate_limit_per_second=25.0) as emu:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, database_url, emu.base_url, str(each)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
        requests = [r for r in emu.requests() if r.path.startswith("/v1/customers")]
    assert [json.loads(out) for out in outputs] == [[], []]
    assert len(requests) == 2 * 8 * each
    assert [r.status for r in requests if r.status != 200] == []
    # One rate for both: the 80 requests spread over about 79 intervals of 1 / (0.95 x 25)
    # (3.3 s; arrivals jitter a little on a busy machine). Two rates would take half that.
    span = requests[-1].at - requests[0].at
    assert span >= 79 / 25 * 0.9


def test_a_429_from_stripe_slows_the_connection_for_every_worker(store: Store) -> None:
    with StripeEmulator(rate_limit_per_second=None) as emu:
        provider = StripeInvoiceProvider(
            "sk_test_gate_429",
            emu.base_url,
            connection_id="stripe_invoice",
            gates=store_gates(store),
        )
        emu.add_fault(Fault(kind="status", status=429, retry_after=2))
        with pytest.raises(ProviderRateLimited):
            provider.check_credentials()
    gate = store.gate("stripe_invoice")
    assert gate is not None and gate.factor == 0.5 and gate.throttled_count == 1
    # Every worker's next request waits out the Retry-After.
    turn = store.take_turn("stripe_invoice", 25.0, time.time(), MAX_TURN_WAIT)
    assert turn.delay is not None and turn.delay > 1.5


def test_a_marketplace_pause_warns_before_the_window_of_the_oldest_held_hour_closes() -> None:
    since = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    # The oldest hour a pause at 09:30 may hold is 08:00 (its report may not have gone out).
    assert window_outlook("aws", since) == datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    assert window_outlook("stripe_invoice", since) is None  # invoices do not expire
    assert window_warning("aws", since, datetime(2026, 12, 4, 4, 59, tzinfo=UTC)) == ""
    soon = window_warning("aws", since, datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    assert soon.startswith("resume before 2026-12-04 08:00 UTC")
    late = window_warning("aws", since, datetime(2026, 12, 4, 8, 0, tzinfo=UTC))
    assert "outlasted" in late and "goes out with the first hour still open" in late
    # AWS's month end comes first: usage of November closes at 06:00 UTC on December 1.
    month_end = datetime(2026, 11, 30, 22, 10, tzinfo=UTC)
    assert window_outlook("aws", month_end) == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    assert window_outlook("azure", month_end) == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


def test_no_request_reaches_a_paused_bill_netsuite_or_quickbooks(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each provider's request funnel asks the gate first: before a login, a token request or
    the call itself."""
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", generate_key())  # seals the QuickBooks grant
    gates = store_gates(store)
    with BillcomEmulator() as bill, NetSuiteEmulator() as ns, QuickBooksEmulator() as qbo:
        settings = replace(
            Settings.from_env({}, emulators=True),
            database_url=f"sqlite:///{tmp_path / 'qbo.db'}",
            api_bases={"bill.com": bill.base_url, "netsuite": ns.base_url},
            quickbooks_api_base=qbo.base_url,
        )
        providers: dict[str, Any] = {
            "bill.com": BillcomInvoiceProvider.from_settings(
                settings, ConnectionConfig("bill.com", None, ConnectionSettings(), gates=gates)
            ),
            "netsuite": NetSuiteInvoiceProvider.from_settings(
                settings,
                ConnectionConfig(
                    "netsuite",
                    json.dumps(ns.m2m_credentials()),
                    ConnectionSettings(),
                    gates=gates,
                ),
            ),
        }
        with Store(settings.database_url) as qbo_store:
            authorize_with_emulator(settings, qbo_store)
            quickbooks_provider = quickbooks(settings, qbo_store)
            quickbooks_provider._gate = ConnectionGate(store, "quickbooks", "QuickBooks", 7.9)
            providers["quickbooks"] = quickbooks_provider
            emulators = {"bill.com": bill, "netsuite": ns, "quickbooks": qbo}
            for name, provider in providers.items():
                store.set_paused(name, True, f"{name} incident", SINCE)
                before = len(emulators[name].requests())
                with pytest.raises(ProviderPaused, match=f"{name} incident"):
                    provider.check_credentials()
                assert len(emulators[name].requests()) == before, name
                store.set_paused(name, False, "", SINCE)
                provider.check_credentials()  # resumed: it goes through
                assert len(emulators[name].requests()) > before, name


def test_a_request_waiting_for_its_turn_does_not_go_once_paused(store: Store) -> None:
    def paused_meanwhile(seconds: float) -> None:
        store.set_paused("c", True, "paused while it waited", SINCE)

    gate = ConnectionGate(store, "c", "Stripe", 1.0, clock=lambda: T0, sleep=paused_meanwhile)
    gate.before_request("first")  # at once: no wait
    with pytest.raises(ProviderPaused, match="paused while it waited"):
        gate.before_request("second")  # waits a second for its turn, and the pause lands
