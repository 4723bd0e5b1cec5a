"""Pacing a worker's requests under Stripe's and QuickBooks' rate limits
(activities/providers/pacing.py): the pacer's arithmetic on a fake clock, then the providers'
requests through it against the emulators."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from billbridge.activities.providers import quickbooks as quickbooks_module
from billbridge.activities.providers import stripe_invoice
from billbridge.activities.providers.gate import PACED_SHARE, ConnectionGate, ProcessGate
from billbridge.activities.providers.pacing import RequestPacer, pacer_for
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import ProviderRateLimited
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.seed_quickbooks import authorize_with_emulator, quickbooks
from billbridge.workers.codec import generate_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def starts(pacer: RequestPacer, clock: FakeClock, arrivals: list[float]) -> list[float]:
    """When each request, arriving at these times (in order), starts."""
    out = []
    for at in arrivals:
        clock.now = at
        wait = pacer.reserve(max_wait=1e9)
        assert wait is not None
        out.append(at + wait)
    return out


def most_in_any_span(times: list[float], span: float) -> int:
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= span:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_requests_arriving_together_start_one_interval_apart() -> None:
    clock = FakeClock()
    pacer = RequestPacer(4.0, clock=clock)
    assert [pacer.reserve(10.0) for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]


def test_a_burst_starts_at_once_and_idle_time_banks_no_more_than_it() -> None:
    clock = FakeClock()
    pacer = RequestPacer(2.0, burst=3, clock=clock)
    assert [pacer.reserve(10.0) for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    clock.now += 3600  # an idle hour
    assert [pacer.reserve(10.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_a_start_further_than_max_wait_reserves_nothing() -> None:
    clock = FakeClock()
    pacer = RequestPacer(1.0, clock=clock)
    assert pacer.reserve(5.0) == 0.0
    assert pacer.reserve(5.0) == 1.0
    assert pacer.reserve(0.5) is None  # would start in 2 s
    assert pacer.reserve(5.0) == 2.0  # the refused one took no place


def test_wait_sleeps_until_the_reserved_start() -> None:
    clock = FakeClock()
    slept: list[float] = []
    pacer = RequestPacer(10.0, clock=clock, sleep=slept.append)
    assert [pacer.wait(1.0) for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert slept == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_span_holds_more_than_the_burst_plus_the_rate(seed: int) -> None:
    """QuickBooks' pace (95 % of 500 a minute, one at a time): whatever the arrivals, no minute
    holds more than 476 starts and no second more than 9, under Intuit's 500 and 10."""
    rng = random.Random(seed)
    clock = FakeClock()
    pacer = RequestPacer(500 / 60 * 0.95, clock=clock)
    arrivals, at = [], 0.0
    for _ in range(2000):  # bursts of up to 40 together, idle gaps of up to 20 s
        at += rng.choice([0.0, 0.0, 0.01, 0.3, rng.uniform(0, 20)])
        arrivals.append(at)
    started = starts(pacer, clock, arrivals)
    assert started == sorted(started)  # first come, first served
    assert most_in_any_span(started, 60.0) <= 476
    assert most_in_any_span(started, 1.0) <= 9


def test_one_pacer_per_account_and_rate() -> None:
    first = pacer_for(("test", "account-a"), 5.0)
    assert pacer_for(("test", "account-a"), 5.0) is first
    assert pacer_for(("test", "account-b"), 5.0) is not first
    assert pacer_for(("test", "account-a"), 6.0).per_second == 6.0


def test_stripe_worker_threads_stay_under_the_sandbox_limit() -> None:
    """Sixteen activity threads' requests to one test-mode account: without pacing they outrun
    the emulator's 25/s token bucket within a second; paced, Stripe refuses none."""
    threads, each = 16, 5
    failures: list[BaseException] = []
    with StripeEmulator(rate_limit_per_second=stripe_invoice.TEST_REQUESTS_PER_SECOND) as emu:
        provider = stripe_invoice.StripeInvoiceProvider("sk_test_pacing", emu.base_url)
        assert isinstance(provider.gate, ProcessGate) and provider.gate.pacer is not None
        assert provider.gate.pacer.per_second == pytest.approx(25 * PACED_SHARE)

        def check() -> None:
            try:
                for _ in range(each):
                    provider.check_credentials()
            except BaseException as err:  # reported by the assertion below
                failures.append(err)

        workers = [threading.Thread(target=check) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        statuses = [r.status for r in emu.requests()]
    assert failures == []
    assert len(statuses) == threads * each
    assert 429 not in statuses


def test_live_keys_are_paced_to_the_live_limit() -> None:
    provider = stripe_invoice.StripeInvoiceProvider("sk_live_pacing", "http://127.0.0.1:9")
    assert isinstance(provider.gate, ProcessGate) and provider.gate.pacer is not None
    assert provider.gate.pacer.per_second == pytest.approx(100 * PACED_SHARE)


class CountingPacer(RequestPacer):
    def __init__(self, per_second: float, *, max_wait_refused: bool = False) -> None:
        super().__init__(per_second)
        self.reserved = 0
        self.refuse = max_wait_refused

    def reserve(self, max_wait: float) -> float | None:
        if self.refuse:
            return None
        self.reserved += 1
        return super().reserve(max_wait)


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator(requests_per_minute=quickbooks_module.REQUESTS_PER_MINUTE) as emu:
        yield emu


@pytest.fixture
def qbo_settings(
    qbo: QuickBooksEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", generate_key())  # seals the grant
    return replace(
        Settings.from_env({}, emulators=True),
        database_url=f"sqlite:///{tmp_path / 'billbridge.db'}",
        quickbooks_api_base=qbo.base_url,
    )


def test_every_quickbooks_request_waits_for_the_connections_gate(
    qbo: QuickBooksEmulator, qbo_settings: Settings, store: Store
) -> None:
    authorize_with_emulator(qbo_settings, store)
    provider = quickbooks(qbo_settings, store)
    gate = provider.gate
    # A worker's provider: the connection's gate in the store, shared by every worker process.
    assert isinstance(gate, ConnectionGate)
    assert gate.connection_id == "quickbooks"
    assert gate.per_second == pytest.approx(500 / 60 * PACED_SHARE)
    counting = CountingPacer(1000.0)
    provider._gate = ProcessGate("QuickBooks", counting)
    before = len([r for r in qbo.requests() if r.path.startswith("/v3/")])
    provider.check_credentials()
    provider.company()
    sent = len([r for r in qbo.requests() if r.path.startswith("/v3/")]) - before
    assert sent >= 2
    assert counting.reserved == sent


def test_a_quickbooks_request_without_a_free_start_is_not_sent(
    qbo: QuickBooksEmulator, qbo_settings: Settings, store: Store
) -> None:
    authorize_with_emulator(qbo_settings, store)
    provider = quickbooks(qbo_settings, store)
    provider._gate = ProcessGate("QuickBooks", CountingPacer(1.0, max_wait_refused=True))
    before = len(qbo.requests())
    with pytest.raises(ProviderRateLimited) as raised:
        provider.check_credentials()
    assert raised.value.retry_after is not None
    assert len(qbo.requests()) == before


class SleepingPacer(RequestPacer):
    """Every request waits `seconds` for its start."""

    def __init__(self, seconds: float) -> None:
        super().__init__(1.0)
        self.seconds = seconds

    def wait(self, max_wait: float) -> float | None:
        time.sleep(self.seconds)
        return self.seconds


def test_the_access_token_is_taken_after_the_wait_for_the_pacer(
    qbo: QuickBooksEmulator, qbo_settings: Settings, store: Store
) -> None:
    """A token read before a long wait would have expired by the time the request goes."""
    qbo.set_access_token_ttl(1.0)
    authorize_with_emulator(qbo_settings, store)
    provider = quickbooks(qbo_settings, store)
    provider._gate = ProcessGate("QuickBooks", SleepingPacer(1.5))  # longer than a token lives
    before = len(qbo.requests())
    provider.check_credentials()
    statuses = [r.status for r in qbo.requests()[before:] if r.path.startswith("/v3/")]
    assert statuses == [200]
