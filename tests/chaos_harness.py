"""The chaos run: many exports and metering under worker kills, a server restart, injected
faults and a pause, then a reconciliation of what every provider and marketplace holds.

`make chaos` runs the full plan (tests/chaos_run.py: 500 invoices over the four invoicing
providers, metering for several customers on the three marketplaces); tests/test_chaos.py runs a
short one in CI. Everything is real: a Temporal dev server on a SQLite file, the worker as its
own process (SIGKILLed and started again), every provider's emulator, the store on SQLite.

Meanwhile, at moments drawn from a seeded random generator:
- the worker is SIGKILLed (`plan.kills` times) and started again a moment later;
- the dev server is stopped and started again on the same SQLite file, once;
- the emulators answer bursts of 5xx, 429s (with Retry-After), slow answers past the request
  deadline, and connections dropped before and after the provider executed the request;
- one connection is paused (`billbridge provider pause`, through its control workflow) and
  resumed.

The reconciliation reads each emulator's own state (not what billbridge recorded) and counts,
per invoicing provider: invoices expected, exported once, duplicated, missing, and those whose
total differs from the billing total; per marketplace: customer hours held once, twice or
missing, and the quantity ingested against the quantity held. It passes when nothing is
duplicated, missing or different.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.core.metering import HOUR, hour_start
from billbridge.core.metering_messages import MeteringInput
from billbridge.core.money import to_minor
from billbridge.core.reconcile import ExpectedInvoice, ProviderInvoice, Reconciliation, reconcile
from billbridge.emulators.aws_marketplace import AwsMarketplaceEmulator
from billbridge.emulators.azure_marketplace import AzureMarketplaceEmulator
from billbridge.emulators.billcom import BillcomEmulator
from billbridge.emulators.faults import Fault
from billbridge.emulators.gcp_marketplace import GcpMarketplaceEmulator
from billbridge.emulators.netsuite import NetSuiteEmulator
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.commands.provider import switch_and_wait
from billbridge.starter.demo import prepare_item_provider, prepare_quickbooks
from billbridge.starter.demo_metering import MeteredCustomer, held_records, seed_marketplaces
from billbridge.starter.door import start_export, submit_invoice
from billbridge.starter.samples import DemoSpec, SampleLine
from billbridge.starter.seed import seed_catalog, seed_customer, stripe_client
from billbridge.starter.usage_door import ingest_usage
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workers.dev_server import DevServer, free_port
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow, workflow_id
from conftest import CODEC_TEST_KEY, start_worker

INVOICING = ("stripe_invoice", "quickbooks", "bill.com", "netsuite")
MARKETPLACES = ("aws", "azure", "gcp")
# The share of the invoices each provider gets: Stripe, the most common, twice the others.
SHARES = {"stripe_invoice": 2, "quickbooks": 1, "bill.com": 1, "netsuite": 1}
CUSTOMERS_PER_PROVIDER = 4
ITEMS = {
    "item_api_calls": "API calls",
    "item_storage": "Storage GB-months",
    "item_seats": "Seats",
    "item_support": "Support",
}
# Metering counts whole API calls, so every hour's quantity is exact at every marketplace (none
# carries a fraction to the next hour) and can be compared hour by hour.
METERING = {"api_call": (None, "api_calls", Decimal(1))}


@dataclass(frozen=True)
class ChaosPlan:
    invoices: int = 500
    metered_per_marketplace: int = 2
    metered_hours: int = 3
    kills: int = 3
    server_restart: bool = True
    faults: bool = True
    pause: str | None = "quickbooks"
    pause_seconds: float = 8.0
    seed: int = 11
    # The chaos happens within this many seconds of the start; everything must finish by the
    # deadline (a kill costs in-flight pushes their 45 s heartbeat timeout).
    chaos_window: float = 60.0
    deadline: float = 900.0


@dataclass
class MarketplaceTally:
    hours_expected: int = 0
    hours_once: int = 0
    hours_twice: list[str] = field(default_factory=list)
    hours_missing: list[str] = field(default_factory=list)
    ingested: Decimal = Decimal(0)
    reported: Decimal = Decimal(0)

    @property
    def clean(self) -> bool:
        return not (self.hours_twice or self.hours_missing) and self.ingested == self.reported


@dataclass
class ChaosReport:
    providers: dict[str, Reconciliation]
    marketplaces: dict[str, MarketplaceTally]
    events: list[str]
    leaks: list[str]
    """Requests that reached the paused provider while it was paused."""
    unfinished: list[str]
    seconds: float

    @property
    def passed(self) -> bool:
        return (
            not self.unfinished
            and not self.leaks
            and all(_clean(t) for t in self.providers.values())
            and all(t.clean for t in self.marketplaces.values())
        )

    def lines(self) -> list[str]:
        out = [f"chaos run: {self.seconds:.0f} s; " + "; ".join(self.events)]
        out.append(
            f"{'provider':<16}{'expected':>9}{'once':>7}{'duplicated':>11}{'missing':>9}"
            f"{'total differs':>15}{'extra':>7}"
        )
        for name, t in self.providers.items():
            out.append(
                f"{name:<16}{t.expected:>9}{t.exported_once:>7}{len(t.duplicated):>11}"
                f"{len(t.missing):>9}{len(t.mismatched):>15}{len(t.extra):>7}"
            )
        out.append(
            f"{'marketplace':<16}{'hours':>9}{'once':>7}{'twice':>11}{'missing':>9}"
            f"{'ingested':>15}{'reported':>10}"
        )
        for name, m in self.marketplaces.items():
            out.append(
                f"{name:<16}{m.hours_expected:>9}{m.hours_once:>7}{len(m.hours_twice):>11}"
                f"{len(m.hours_missing):>9}{_plain(m.ingested):>15}{_plain(m.reported):>10}"
            )
        problems = [
            f"{name}: {kind} {ids[:5]}"
            for name, t in self.providers.items()
            for kind, ids in (
                ("duplicated", [f.invoice_id or f.ref for f in t.duplicated]),
                ("missing", [f.invoice_id or f.ref for f in t.missing]),
                ("total differs", [f"{f.invoice_id}: {f.note}" for f in t.mismatched]),
                ("extra", [f.ref for f in t.extra]),
            )
            if ids
        ] + [
            f"{name}: hours {kind} {hours[:5]}"
            for name, m in self.marketplaces.items()
            for kind, hours in (("twice", m.hours_twice), ("missing", m.hours_missing))
            if hours
        ]
        if self.unfinished:
            problems.append(f"unfinished workflows: {self.unfinished[:5]}")
        if self.leaks:
            problems.append(f"requests that reached the paused provider: {self.leaks[:5]}")
        out += problems or ["PASS: nothing duplicated, missing or different"]
        return out


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


# -- the invoices ------------------------------------------------------------------------------


def invoice_specs(plan: ChaosPlan, run: str) -> list[DemoSpec]:
    """`plan.invoices` invoices over the four providers, each with 1-5 lines of fractional
    quantities and prices, some with a credit; Stripe's in USD, EUR and JPY."""
    rng = random.Random(plan.seed)
    weights = [SHARES[name] for name in INVOICING]
    specs = []
    for n in range(plan.invoices):
        provider = rng.choices(INVOICING, weights)[0]
        currency = rng.choice(("USD", "EUR", "JPY")) if provider == "stripe_invoice" else "USD"
        customer = (
            f"cust_{_slug(provider)}_{currency.lower()}_{rng.randrange(CUSTOMERS_PER_PROVIDER)}"
        )
        lines = tuple(
            SampleLine(
                item,
                ITEMS[item],
                Decimal(rng.randrange(1, 500_000)) / 100,
                Decimal(rng.randrange(1, 9_999)) / (1 if currency == "JPY" else 1000),
            )
            for item in rng.sample(sorted(ITEMS), rng.randrange(1, len(ITEMS) + 1))
        )
        credits = Decimal(rng.randrange(0, 3)) if currency != "JPY" else Decimal(0)
        specs.append(
            DemoSpec(
                key=f"chaos_{n}",
                description="chaos",
                invoice_id=f"inv_chaos_{run}_{n:04d}",
                customer_id=f"{customer}_{run}",
                currency=currency,
                lines=lines,
                expected="exported",
                credits=credits,
                provider=provider,
            )
        )
    return specs


def _slug(provider: str) -> str:
    return provider.split("_")[0].replace(".", "")


# -- the worker process --------------------------------------------------------------------------


class WorkerProcess:
    """`python -m billbridge.workers.export_worker` (conftest.start_worker), started again after
    every kill."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_worker(self.settings, self.log)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Services:
    server: DevServer
    stripe: StripeEmulator
    quickbooks: QuickBooksEmulator
    bill: BillcomEmulator
    netsuite: NetSuiteEmulator
    marketplaces: dict[str, Any]

    def invoicing(self) -> dict[str, Any]:
        return {
            "stripe_invoice": self.stripe,
            "quickbooks": self.quickbooks,
            "bill.com": self.bill,
            "netsuite": self.netsuite,
        }


async def run_chaos(
    plan: ChaosPlan, workdir: Path, say: Callable[[str], None] = print
) -> ChaosReport:
    # The run changes this process's environment (the worker inherits it): put it back after,
    # or a later test's processes would trust this run's Azure emulator, gone by then.
    saved = dict(os.environ)
    try:
        return await _run_in_services(plan, workdir, say)
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _run_in_services(
    plan: ChaosPlan, workdir: Path, say: Callable[[str], None]
) -> ChaosReport:
    os.environ["BILLBRIDGE_CODEC_KEY"] = CODEC_TEST_KEY  # seals the seeded credentials
    run = f"{plan.seed}{random.Random().randrange(16**4):04x}"
    server = DevServer(workdir / "temporal", ui=False, port=free_port())
    with (
        server,
        StripeEmulator(rate_limit_per_second=25.0) as stripe,
        QuickBooksEmulator() as quickbooks,
        BillcomEmulator() as bill,
        NetSuiteEmulator() as netsuite,
        AwsMarketplaceEmulator(requests_per_second=None) as aws,
        AzureMarketplaceEmulator() as azure,
        GcpMarketplaceEmulator() as gcp,
    ):
        # Entra ID on the Azure emulator is served over TLS with a CA of its own: the worker
        # (which inherits this environment) trusts it as `billbridge server`'s would.
        os.environ.update({k: v for k, v in azure.client_env().items() if "ENDPOINT" not in k})
        services = Services(
            server, stripe, quickbooks, bill, netsuite, {"aws": aws, "azure": azure, "gcp": gcp}
        )
        settings = dataclasses.replace(
            Settings.from_env({}, emulators=True),
            temporal_address=server.address,
            data_dir=workdir,
            database_url=f"sqlite:///{workdir / 'billbridge.db'}",
            api_bases={name: emu.base_url for name, emu in services.invoicing().items()},
            marketplace_endpoints={
                name: emu.base_url for name, emu in services.marketplaces.items()
            },
            task_queue="billbridge-chaos",
            metering_gather_seconds=1.0,
        )
        return await _run(plan, run, settings, services, workdir, say)


async def _run(
    plan: ChaosPlan,
    run: str,
    settings: Settings,
    services: Services,
    workdir: Path,
    say: Callable[[str], None],
) -> ChaosReport:
    started = time.monotonic()
    store = Store(settings.database_url)
    specs = invoice_specs(plan, run)
    await asyncio.to_thread(_seed_invoicing, settings, store, services, specs)
    metered = seed_marketplaces(
        settings,
        store,
        services.marketplaces,
        run,
        per_marketplace=plan.metered_per_marketplace,
        mappings=METERING,
    )
    first_hour = hour_start(datetime.now(UTC)) - plan.metered_hours * HOUR
    ingested = _ingest(store, metered, first_hour, plan)
    say(f"seeded: {len(specs)} invoices, {len(metered)} metered customers")

    worker = WorkerProcess(settings, workdir / "worker.log")
    worker.start()
    client = await connect(
        settings.temporal_address or "",
        codec=load_codec(settings, {"BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY}),
    )
    events: list[str] = []
    leaks: list[str] = []
    try:
        exports = [
            (
                spec,
                await start_export(
                    client, submit_invoice(store, spec.build()).id, settings.task_queue
                ),
            )
            for spec in specs
        ]
        meters = [
            await _start_metering(client, settings, customer, where.marketplace, first_hour)
            for customer, where in metered.items()
        ]
        say(f"started {len(exports)} exports and {len(meters)} metering runs")
        await _chaos(plan, client, store, settings, services, worker, events, leaks, say)
        unfinished = await _finish(plan, client, exports, meters, started, say)
    finally:
        worker.stop()
        store.close()
    report = ChaosReport(
        providers=_tally_invoices(specs, services),
        marketplaces=_tally_metering(metered, ingested, services, first_hour, plan),
        events=events,
        leaks=leaks,
        unfinished=unfinished,
        seconds=time.monotonic() - started,
    )
    return report


def _seed_invoicing(
    settings: Settings, store: Store, services: Services, specs: list[DemoSpec]
) -> None:
    on = {name: [s for s in specs if s.provider == name] for name in INVOICING}
    stripe = stripe_client(services.stripe.base_url, settings.stripe_api_key)
    seed_catalog(stripe, store, ITEMS)
    for spec in {s.customer_id: s for s in on["stripe_invoice"]}.values():
        seed_customer(stripe, store, {**spec.build_customer(), "id": spec.customer_id})
    if on["quickbooks"]:
        assert prepare_quickbooks(settings, store, on["quickbooks"])
    for name in ("bill.com", "netsuite"):
        if on[name]:
            assert prepare_item_provider(settings, store, name, on[name])


def _ingest(
    store: Store, metered: dict[str, MeteredCustomer], first: datetime, plan: ChaosPlan
) -> dict[tuple[str, datetime], Decimal]:
    """Whole API calls, 1 to 20 an hour per customer; (customer, hour) -> calls."""
    rng = random.Random(plan.seed + 1)
    counts: dict[tuple[str, datetime], Decimal] = {}
    for customer in metered:
        events = []
        for h in range(plan.metered_hours):
            hour = first + h * HOUR
            calls = rng.randrange(1, 21)
            counts[(customer, hour)] = Decimal(calls)
            events += [
                {
                    "idempotency_key": f"{customer}-{h}-{n}",
                    "customer_id": customer,
                    "event_name": "api_call",
                    "timestamp": (hour + timedelta(seconds=60 * n + 7)).isoformat(),
                    "properties": {},
                }
                for n in range(calls)
            ]
        ingest_usage(store, events)
    return counts


async def _start_metering(
    client: Client, settings: Settings, customer: str, marketplace: str, first: datetime
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        MarketplaceMeteringWorkflow.run,
        MeteringInput(
            customer_id=customer, marketplace=marketplace, grace_seconds=0, next_hour=first
        ),
        id=workflow_id(customer),
        task_queue=settings.task_queue,
    )


async def _chaos(
    plan: ChaosPlan,
    client: Client,
    store: Store,
    settings: Settings,
    services: Services,
    worker: WorkerProcess,
    events: list[str],
    leaks: list[str],
    say: Callable[[str], None],
) -> None:
    """Kills, a server restart, faults and a pause at seeded moments of the chaos window;
    `leaks` gets the requests that reached the paused provider."""
    rng = random.Random(plan.seed + 2)
    moments: list[tuple[float, str]] = [
        (rng.uniform(3, plan.chaos_window), "kill") for _ in range(plan.kills)
    ]
    if plan.faults:  # each kind of fault once, at a provider or marketplace drawn at random
        moments += [(rng.uniform(1, plan.chaos_window), f"fault:{kind}") for kind in FAULTS]
    paused_at = rng.uniform(2, plan.chaos_window / 2)
    if plan.pause:
        moments.append((paused_at, "pause"))
    if plan.server_restart:
        # While the connection is paused (if one is): the pause must outlive the restart.
        restart_at = paused_at + 3 if plan.pause else rng.uniform(2, plan.chaos_window)
        moments.append((restart_at, "restart"))
    start = time.monotonic()

    def note(what: str) -> None:
        events.append(f"{time.monotonic() - start:.0f}s {what}")
        say(events[-1])

    pausing: asyncio.Task[None] | None = None
    for at, what in sorted(moments):
        await asyncio.sleep(max(0.0, at - (time.monotonic() - start)))
        if what == "pause" and plan.pause:
            # Alongside the rest: the switch waits for a worker, which may be down meanwhile.
            pausing = asyncio.create_task(
                _pause_and_resume(plan, client, store, settings, services, note, leaks)
            )
            continue
        if what == "kill":
            worker.kill()
            await asyncio.sleep(rng.uniform(0.5, 3))
            worker.start()
        elif what == "restart":
            await asyncio.to_thread(services.server.stop)
            await asyncio.sleep(2)
            await asyncio.to_thread(services.server.start)
        elif what.startswith("fault:"):
            what = _inject(rng, services, what.removeprefix("fault:"))
        note(what)
    if pausing is not None:
        await pausing


FAULTS = ("5xx", "429", "slow", "drop", "drop_after")
# A request that passed the gate before the pause and was on its way: it may arrive this late.
ON_THE_WIRE = 1.0


def _inject(rng: random.Random, services: Services, kind: str) -> str:
    """A burst of one kind of fault at one provider or marketplace."""
    name, emulator = rng.choice([*services.invoicing().items(), *services.marketplaces.items()])
    count = rng.randrange(2, 6)
    faults = {
        "5xx": Fault(kind="status", status=rng.choice((500, 502, 503)), count=count),
        "429": Fault(kind="status", status=429, count=count, retry_after=rng.choice((1, 2))),
        # Past every provider request's 25 s deadline: the request is given up and retried.
        "slow": Fault(kind="delay", seconds=27, count=1),
        "drop": Fault(kind="drop", count=count),
        "drop_after": Fault(kind="drop_after", count=count),
    }
    emulator.add_fault(faults[kind])
    return f"{kind} x{count if kind != 'slow' else 1} at {name}"


async def _pause_and_resume(
    plan: ChaosPlan,
    client: Client,
    store: Store,
    settings: Settings,
    services: Services,
    note: Callable[[str], None],
    leaks: list[str],
) -> None:
    """Pause the connection, hold it `plan.pause_seconds` (a restart of the server happens
    meanwhile), resume it; `leaks` gets every request that reached the provider while it was
    paused (a moment after the switch, for one already on the wire)."""
    assert plan.pause is not None
    emulator = services.invoicing()[plan.pause]
    paused_at = 0.0
    for pause in (True, False):
        if not pause:
            leaks += [
                f"{r.method} {r.path} at +{r.at - paused_at:.1f}s"
                for r in emulator.requests()
                if r.at > paused_at + ON_THE_WIRE
            ]
        # A worker may be down meanwhile: the switch waits for one.
        await switch_and_wait(
            client,
            settings.task_queue,
            store,
            plan.pause,
            plan.pause,
            pause=pause,
            reason="chaos: provider incident" if pause else "",
            within=120,
        )
        note(f"{plan.pause} {'paused' if pause else 'resumed'}")
        if pause:
            paused_at = time.time()
            await asyncio.sleep(plan.pause_seconds)


async def _finish(
    plan: ChaosPlan,
    client: Client,
    exports: list[tuple[DemoSpec, WorkflowHandle[Any, Any]]],
    meters: list[WorkflowHandle[Any, Any]],
    started: float,
    say: Callable[[str], None],
) -> list[str]:
    """Wait for every export, then stop the metering (every closed hour reported) and wait for
    it; the ids of workflows that did not end as they should by the deadline."""
    unfinished: list[str] = []
    left = lambda: max(1.0, plan.deadline - (time.monotonic() - started))  # noqa: E731

    async def outcome(handle: WorkflowHandle[Any, Any]) -> Any:
        try:
            return await asyncio.wait_for(handle.result(), left())
        except (TimeoutError, WorkflowFailureError) as err:
            return err

    results = await asyncio.gather(*(outcome(h) for _, h in exports))
    for (spec, _), result in zip(exports, results, strict=True):
        status = getattr(result, "status", None)
        if status != ExportStatus.EXPORTED:
            unfinished.append(f"{spec.invoice_id}: {status or result!r}")
    say(f"exports finished: {len(exports) - len(unfinished)}/{len(exports)} exported")
    for handle in meters:
        await handle.signal(MarketplaceMeteringWorkflow.stop)
    for handle, result in zip(
        meters, await asyncio.gather(*(outcome(h) for h in meters)), strict=True
    ):
        # Stopped with every closed hour reported: a reason left means it stopped waiting for
        # a person (needs attention), with hours still owed.
        if getattr(result, "status", None) != "stopped" or getattr(result, "reason", ""):
            unfinished.append(f"{handle.id}: {result!r}")
    return unfinished


# -- the reconciliation, from the emulators' own state -------------------------------------------


def _tally_invoices(specs: list[DemoSpec], services: Services) -> dict[str, Reconciliation]:
    """The comparison `billbridge reconcile` makes (core/reconcile.py), of each emulator's own
    invoices rather than its list API's."""
    now = datetime.now(UTC)
    return {
        name: reconcile(
            name,
            name,
            [
                ExpectedInvoice(
                    invoice_id=spec.invoice_id,
                    ref=_marker(spec),
                    total=Decimal(spec.build()["total"]),
                    currency=spec.currency,
                    exported_at=now,
                )
                for spec in specs
                if spec.provider == name
            ],
            _held_invoices(name, emulator),
            known_refs={_marker(spec) for spec in specs},
        )
        for name, emulator in services.invoicing().items()
    }


def _clean(report: Reconciliation) -> bool:
    return not (report.duplicated or report.missing or report.mismatched or report.extra)


def _marker(spec: DemoSpec) -> str:
    """What ties a provider invoice to its billing invoice at each provider."""
    if spec.provider == "bill.com":
        return str(spec.build()["invoice_number"])
    return spec.invoice_id


def _held_invoices(provider: str, emulator: Any) -> list[ProviderInvoice]:
    """Every invoice the emulator holds that carries one of billbridge's markers."""
    held: list[ProviderInvoice] = []
    for invoice in emulator.invoices():
        if provider == "stripe_invoice":
            currency = invoice["currency"].upper()
            ref = invoice["metadata"].get("billbridge_invoice_id")
            total = _from_minor(invoice["total"], currency)
            active = invoice["status"] not in ("void", "deleted")
            status = invoice["status"]
        elif provider == "quickbooks":
            note = invoice.get("PrivateNote") or ""
            ref = (
                note.removeprefix("billbridge invoice ") if note.startswith("billbridge") else None
            )
            total, currency = Decimal(str(invoice["TotalAmt"])), None
            active, status = True, ""
        elif provider == "bill.com":
            ref, total = invoice.get("invoiceNumber"), Decimal(str(invoice["totalAmount"]))
            currency, active = None, not invoice.get("archived")
            status = "archived" if invoice.get("archived") else ""
        else:
            ref, total = invoice.get("externalId"), Decimal(str(invoice.get("total", "0")))
            currency, active, status = None, True, ""
        if ref:
            held.append(
                ProviderInvoice(
                    provider_invoice_id=str(invoice.get("id") or invoice.get("Id")),
                    ref=ref,
                    total=total,
                    currency=currency,
                    status=status,
                    marked=provider in ("stripe_invoice", "quickbooks"),
                    active=active,
                )
            )
    return held


def _from_minor(amount: int, currency: str) -> Decimal:
    return Decimal(amount) / to_minor(Decimal(1), currency)  # 100 for cents, 1 for JPY


def _tally_metering(
    metered: dict[str, MeteredCustomer],
    ingested: dict[tuple[str, datetime], Decimal],
    services: Services,
    first: datetime,
    plan: ChaosPlan,
) -> dict[str, MarketplaceTally]:
    tallies = {name: MarketplaceTally() for name in MARKETPLACES}
    for customer, where in metered.items():
        tally = tallies[where.marketplace]
        records = held_records(
            where.marketplace, services.marketplaces[where.marketplace], where.account
        )
        per_hour = Counter(r.hour for r in records if r.dimension == "api_calls")
        tally.reported += sum(
            (r.quantity for r in records if r.dimension == "api_calls"), Decimal(0)
        )
        for h in range(plan.metered_hours):
            hour = first + h * HOUR
            tally.hours_expected += 1
            tally.ingested += ingested[(customer, hour)]
            seen = per_hour.get(hour, 0)
            label = f"{customer} {hour:%H}:00"
            if seen == 0:
                tally.hours_missing.append(label)
            elif seen > 1:
                tally.hours_twice.append(label)
            else:
                tally.hours_once += 1
    return tallies
