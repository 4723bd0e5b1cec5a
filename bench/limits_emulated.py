"""The four invoicing providers as bench/provider_limits.py runs them: each emulator set to the
limit its provider documents, seeded, with a per-request latency, and read back afterwards.

The limits, from the providers' own pages:

- Stripe: "The basic rate limiter restricts the number of API requests per second as follows:
  Live mode: 100 operations; Sandbox: 25 operations" (https://docs.stripe.com/rate-limits).
  The bench uses the sandbox figure, 25/s: billbridge's emulator stands for a test-mode account
  (its keys are sk_test_...), and sandbox is where a bench against Stripe itself would run.
- QuickBooks Online: "500 requests per minute per realm ID" and "10 requests per second, per
  realm ID and app" (https://developer.intuit.com/app/developer/qbo/docs/learn/
  limits-and-throttles); 10 concurrent requests per realm and app (https://developer.intuit.com/
  hub/blog/2016/08/08/idg-concurrent-api-use-changes-coming-soon). The emulator models the
  per-minute limit only (a sliding minute, emulators/quickbooks/ratelimit.py), the bench's limit.
- BILL: "The concurrent rate limit for BILL API requests per developer key per organization is
  3" (BDC_1322) and 20,000 requests per developer key per hour (BDC_1144)
  (https://developer.bill.com/docs/api-rate-limits). The bench's limit is the concurrency; the
  hourly budget is reported as how long it lasts at the rate reached.
- NetSuite: the account's concurrency limit, 5 on the shared tier and developer accounts, every
  REST request counting ("Concurrency Governance and Session Management",
  https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/subsect_1559222360.html).

Latency. An emulator answers in about a millisecond, which makes a concurrency limit meaningless
(three requests in flight for a millisecond each) and hides whether the worker has enough
threads to fill a rate limit. Every emulator therefore answers after a fixed delay, armed as
each emulator's documented `delay` fault on its API paths (emulators/faults.py; for BILL and
NetSuite the request holds its place in the concurrency limit meanwhile). The defaults are a
choice, not a documented figure (no provider publishes its latency): 200 ms for Stripe,
QuickBooks and BILL, 300 ms for NetSuite, whose REST record calls commonly take a few hundred
milliseconds. `--latency` sets one value for all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from billbridge.activities.providers import billcom_client
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.emulators.billcom import BillcomEmulator
from billbridge.emulators.faults import Fault
from billbridge.emulators.netsuite import NetSuiteEmulator
from billbridge.emulators.netsuite.auth import TOKEN_PATH
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.samples import build_customer
from billbridge.starter.seed import seed_catalog, seed_customer, stripe_client
from billbridge.starter.seed_providers import seed_items_and_customers, store_emulator_credential
from billbridge.starter.seed_quickbooks import authorize_with_emulator, seed_quickbooks

STRIPE_PER_SECOND = 25.0  # sandbox
QUICKBOOKS_PER_MINUTE = 500
BILL_CONCURRENT = 3
BILL_PER_HOUR = 20_000
NETSUITE_CONCURRENT = 5
NETSUITE_REST = "/services/rest/"


@dataclass(frozen=True)
class Limit:
    kind: Literal["rate", "concurrency"]
    text: str
    per_second: float = 0.0
    concurrent: int = 0
    per_hour_budget: int = 0  # requests a client keeps to per hour besides (BILL's)


class InFlightSampler:
    """Requests in flight at an emulator (`probe`), sampled every `interval` seconds from a
    thread between start() and stop(); mean() weighs each sample by the time until the next."""

    def __init__(self, probe: Callable[[], int], interval: float = 0.005) -> None:
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._samples: list[tuple[float, int]] = []  # (unix time, requests in flight)
        self._thread = threading.Thread(target=self._run, name="in-flight-sampler", daemon=True)

    def _run(self) -> None:
        self._samples.append((time.time(), self._probe()))
        while not self._stop.wait(self._interval):
            self._samples.append((time.time(), self._probe()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self, since: float = float("-inf"), until: float = float("inf")) -> float:
        """The time-weighted mean of the samples taken between `since` and `until`."""
        area = span = 0.0
        for (at, value), (after, _) in zip(self._samples, self._samples[1:], strict=False):
            if since <= at and after <= until:
                area += value * (after - at)
                span += after - at
        return area / span if span else 0.0


@dataclass
class ProviderUnderTest:
    """One running, limited emulator and how to read it."""

    name: str  # the registry name (core/providers.py)
    title: str
    limit: Limit
    latency: float
    emulator: Any
    api_prefix: str  # the paths the latency applies to
    customer_id: str
    limited_requests: Callable[[], list[Any]]  # requests the limit counts, oldest first
    refused: Callable[[Any], bool]  # a request the emulator's limiter refused
    invoice_count: Callable[[], int]
    seed_provider: Callable[[Settings, Store, Mapping[str, str]], None]
    in_flight: Callable[[], int] | None = None

    def configure(self, settings: Settings) -> Settings:
        return replace(
            settings, api_bases={**settings.api_bases, self.name: self.emulator.base_url}
        )

    def seed(self, settings: Settings, store: Store, items: Mapping[str, str]) -> None:
        """Seed without latency (seeding is not measured), then arm it."""
        self.seed_provider(settings, store, items)
        if self.latency > 0:
            self.emulator.add_fault(
                Fault("delay", seconds=self.latency, count=None, path_prefix=self.api_prefix)
            )


def _customer(customer_id: str, provider: str) -> dict[str, Any]:
    return build_customer(
        customer_id, payment_provider=provider, email=f"{customer_id}@bench.test", name="Bench Co"
    )


@contextmanager
def stripe(
    latency: float | None, per_second: float | None = STRIPE_PER_SECOND
) -> Iterator[ProviderUnderTest]:
    """`per_second` None: the emulator limits nothing (bench/shared_rate.py's scaling)."""
    limit = (
        Limit("rate", f"{per_second:g} req/s (sandbox)", per_second)
        if per_second is not None
        else Limit("rate", "none")
    )
    with StripeEmulator(rate_limit_per_second=per_second) as emulator:

        def seed(settings: Settings, store: Store, items: Mapping[str, str]) -> None:
            client = stripe_client(emulator.base_url, settings.stripe_api_key)
            seed_catalog(client, store, items)
            seed_customer(client, store, _customer("cust_lim_stripe", "stripe_invoice"))

        yield ProviderUnderTest(
            name="stripe_invoice",
            title="Stripe Invoicing",
            limit=limit,
            latency=0.2 if latency is None else latency,
            emulator=emulator,
            api_prefix="/v1/",
            customer_id="cust_lim_stripe",
            limited_requests=emulator.requests,
            refused=lambda entry: entry.status == 429,
            invoice_count=lambda: len(emulator.invoices()),
            seed_provider=seed,
        )


@contextmanager
def quickbooks(latency: float | None) -> Iterator[ProviderUnderTest]:
    with QuickBooksEmulator(requests_per_minute=QUICKBOOKS_PER_MINUTE) as emulator:

        def seed(settings: Settings, store: Store, items: Mapping[str, str]) -> None:
            authorize_with_emulator(settings, store)
            seed_quickbooks(settings, store, items, [_customer("cust_lim_qbo", "quickbooks")])

        yield ProviderUnderTest(
            name="quickbooks",
            title="QuickBooks Online",
            limit=Limit(
                "rate", f"{QUICKBOOKS_PER_MINUTE} req/min per realm", QUICKBOOKS_PER_MINUTE / 60
            ),
            latency=0.2 if latency is None else latency,
            emulator=emulator,
            api_prefix="/v3/",
            customer_id="cust_lim_qbo",
            limited_requests=lambda: [r for r in emulator.requests() if r.path.startswith("/v3/")],
            refused=lambda entry: entry.status == 429,
            invoice_count=lambda: len(emulator.invoices()),
            seed_provider=seed,
        )


@contextmanager
def billcom(latency: float | None) -> Iterator[ProviderUnderTest]:
    with BillcomEmulator(
        concurrent_requests=BILL_CONCURRENT, requests_per_hour=BILL_PER_HOUR
    ) as emulator:

        def seed(settings: Settings, store: Store, items: Mapping[str, str]) -> None:
            # No stored credential: against a local base the client uses the emulator's test
            # account (activities/providers/billcom_client.py, EMULATOR_CREDENTIALS).
            seed_items_and_customers(
                settings, store, "bill.com", items, [_customer("cust_lim_bill", "bill.com")]
            )

        yield ProviderUnderTest(
            name="bill.com",
            title="BILL",
            limit=Limit(
                "concurrency",
                f"{BILL_CONCURRENT} concurrent (and {BILL_PER_HOUR:,}/h)",
                concurrent=BILL_CONCURRENT,
                per_hour_budget=billcom_client.REQUESTS_PER_HOUR,
            ),
            latency=0.2 if latency is None else latency,
            emulator=emulator,
            api_prefix="/v3/",
            customer_id="cust_lim_bill",
            limited_requests=lambda: [r for r in emulator.requests() if r.path.startswith("/v3/")],
            refused=lambda entry: entry.code in ("BDC_1322", "BDC_1144"),
            invoice_count=lambda: len(emulator.invoices()),
            seed_provider=seed,
            in_flight=emulator.in_flight,
        )


@contextmanager
def netsuite(latency: float | None) -> Iterator[ProviderUnderTest]:
    with NetSuiteEmulator(concurrency_limit=NETSUITE_CONCURRENT) as emulator:

        def seed(settings: Settings, store: Store, items: Mapping[str, str]) -> None:
            # The emulated account is OneWorld: customers and invoices name a subsidiary, the
            # default one (internal id 1), as `connections set netsuite_subsidiary=1` does.
            store.upsert_connection(
                "netsuite",
                "netsuite",
                settings=ConnectionSettings(netsuite_subsidiary="1").model_dump(mode="json"),
            )
            store_emulator_credential(settings, store, "netsuite", emulator.m2m_credentials())
            seed_items_and_customers(
                settings, store, "netsuite", items, [_customer("cust_lim_ns", "netsuite")]
            )

        def limited() -> list[Any]:
            # The token endpoint does not count toward the limit (emulators/netsuite).
            return [
                r
                for r in emulator.requests()
                if r.path.startswith(NETSUITE_REST) and r.path != TOKEN_PATH
            ]

        yield ProviderUnderTest(
            name="netsuite",
            title="NetSuite",
            limit=Limit(
                "concurrency", f"{NETSUITE_CONCURRENT} concurrent", concurrent=NETSUITE_CONCURRENT
            ),
            latency=0.3 if latency is None else latency,
            emulator=emulator,
            api_prefix=NETSUITE_REST,
            customer_id="cust_lim_ns",
            limited_requests=limited,
            refused=lambda entry: bool(entry.over_limit),
            invoice_count=lambda: len(emulator.invoices()),
            seed_provider=seed,
            in_flight=lambda: len(emulator.requests_in_flight()),
        )


@dataclass(frozen=True)
class Spec:
    start: Callable[[float | None], Any]  # a context manager yielding ProviderUnderTest
    default_invoices: int


PROVIDERS: dict[str, Spec] = {
    "stripe": Spec(stripe, 85),
    "quickbooks": Spec(quickbooks, 260),
    "billcom": Spec(billcom, 140),
    "netsuite": Spec(netsuite, 120),
}
